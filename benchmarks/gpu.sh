#!/usr/bin/env bash
# The GPU measurements of issue 4 in one command, for a session that is lent an H100/H200:
#   W1 (L=64, N=512, S=32) all methods, then the S=64, N=1024, L=128 memory test.
# Uses the machine's own python3 with JAX (CUDA) and Flax; gradjax from this checkout via PYTHONPATH.
# Output goes to $OUT (or ./bench-out) as text files; paste the tables into benchmarks/RESULTS.md
# with the card's name (nvidia-smi's line is printed first).
set -uo pipefail
out="${OUT:-bench-out}"; mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
py="${PYTHON:-python3}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; "$py" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"; } 2>&1 | tee "$out/env.txt"
timeout "${W1_TIMEOUT:-300}" "$py" benchmarks/bench_empirical.py --L 64 --N 512 --S 32 --B 128 --b-layers 4 --repeats 3 2>&1 | tee "$out/w1.txt"
timeout "${MEM_TIMEOUT:-240}" "$py" benchmarks/bench_memory.py --L 128 --N 1024 --S 64 2>&1 | tee "$out/memory.txt"
