#!/usr/bin/env bash
# gradjax quick start: `bash run.sh demo` runs the main job, `bash run.sh test` runs the tests.
# On first use it makes a virtualenv in .venv (or $GRADJAX_VENV) and installs gradjax into it.
set -euo pipefail
cd "$(dirname "$0")"
venv="${GRADJAX_VENV:-.venv}"
py="${PYTHON:-python3}"
stamp="$venv/.gradjax-installed"
want="$(cat pyproject.toml | cksum)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "run.sh: installing gradjax and its dependencies into $venv (first run only) ..." >&2
    "$py" -m venv "$venv"
    log="$venv/install.log"
    if ! { "$venv/bin/python" -m pip install --upgrade pip && "$venv/bin/python" -m pip install -e ".[test]"; } > "$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "run.sh: installation failed; the full log is in $log" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
cmd="${1:-demo}"
shift || true
case "$cmd" in
    demo) exec "$venv/bin/gradjax" demo --out results/demo "$@" ;;
    test) exec "$venv/bin/python" -m pytest -q -n auto --dist loadfile "$@" ;;
    *)    exec "$venv/bin/gradjax" "$cmd" "$@" ;;
esac
