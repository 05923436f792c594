#!/usr/bin/env bash
# Reproduce every figure at full size on one machine (meant for one GPU), then write the report.
#
#   bash scripts/reproduce_all.sh [OUT]          # OUT defaults to results/
#
# Resumable: rerunning skips finished cells (each cell is one netCDF file under OUT/full/<name>/cells).
# Extra flags for every run can be passed in GRADJAX_RUN_FLAGS, e.g. GRADJAX_RUN_FLAGS="--seeds 256".
# A run whose cells partly failed is reported at the end; the other experiments still run.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-results}"
gradjax="${GRADJAX:-gradjax}"            # or: GRADJAX=".venv/bin/gradjax"
failed=()
for name in $($gradjax list --names); do
    echo "=== $name ($(date -u +%H:%M:%S) UTC)"
    # shellcheck disable=SC2086  # GRADJAX_RUN_FLAGS is a list of flags
    if ! $gradjax run "$name" --full --out "$out" ${GRADJAX_RUN_FLAGS:-}; then
        failed+=("$name")
    fi
done
$gradjax report --full --out "$out"
if [ ${#failed[@]} -gt 0 ]; then
    echo "experiments with failed cells (see $out/full/<name>/cells/*.failed.json): ${failed[*]}" >&2
    exit 1
fi
