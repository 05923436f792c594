#!/usr/bin/env bash
# Several GPUs in one machine.
#
# One process sees every local GPU: the sweep shards each cell's seed axis over all of them along a
# 1-D jax.sharding mesh ("seed"), with the same numbers as on one device. Nothing to configure:
#
#   bash scripts/multi_gpu.sh NAME [OUT]
#
# To use only some GPUs, restrict what JAX sees, e.g. CUDA_VISIBLE_DEVICES=0,1 (NVIDIA) or
# HIP_VISIBLE_DEVICES (AMD). The provenance of every cell records the device kind and count used.
#
# Alternative for many small experiments: one process per GPU, one experiment each, e.g.
#   CUDA_VISIBLE_DEVICES=0 gradjax run saturation --full &
#   CUDA_VISIBLE_DEVICES=1 gradjax run init-schemes --full &
#   wait
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: bash scripts/multi_gpu.sh NAME [OUT]}"
out="${2:-results}"
# Let JAX allocate memory as needed: the sweep sizes seed chunks from the free memory it reports.
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
python -c "import jax; print('devices:', jax.local_devices())"
gradjax run "$name" --full --out "$out"
