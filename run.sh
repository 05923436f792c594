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
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e ".[test]"
    echo "$want" > "$stamp"
fi
cmd="${1:-demo}"
shift || true
case "$cmd" in
    demo) exec "$venv/bin/gradjax" demo --out results/demo "$@" ;;
    test) exec "$venv/bin/python" -m pytest -q -n auto --dist loadfile "$@" ;;
    *)    exec "$venv/bin/gradjax" "$cmd" "$@" ;;
esac
