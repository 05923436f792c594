"""The benchmark scripts run end to end at toy sizes (their numbers are recorded in benchmarks/RESULTS.md)."""

import subprocess
import sys
from pathlib import Path

from tests.children import child_env

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=child_env(PYTHONPATH=str(ROOT)), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_bench_empirical_runs_every_method_and_prints_the_ratios():
    out = _run("benchmarks/bench_empirical.py", "--L", "3", "--N", "8", "--S", "2", "--B", "4", "--repeats", "1",
               "--b-layers", "2")
    for m in ("draw", "gradjax-end", "naive-end", "gradjax-all", "naive-all", "floor-all", "gradjax-grad", "naive-grad"):
        assert f"| {m} |" in out
    assert "timed 2 of 3 layers ([0, 2]), extrapolated ×1.50" in out
    for line in ("- end-to-end: naive (a) / gradjax =", "- all layers: naive (b) / gradjax =", "- gradients: naive (c) / gradjax ="):
        assert line in out
    for m in ("torch-jacrev", "torch-sweep"):  # the PyTorch peers run, or say why not
        assert f"| {m} |" in out or f"{m:14s} skipped: PyTorch is not installed" in out


def test_bench_memory_analyses_the_plain_program_and_runs_gradjax():
    out = _run("benchmarks/bench_memory.py", "--L", "3", "--N", "8", "--S", "2")
    # The plain program's output is the S·L Jacobians (N × N float32 each): 2·3·8·8·4 bytes = 1.5 KiB.
    assert "plain vmap(jacfwd): XLA memory analysis" in out and "outputs 1.5 KiB" in out
    assert "gradjax jacobian_spectrum(layers='all', weights='stored'): output (2, 3, 8)" in out


def test_bench_theory_grid_runs_and_prints_the_ratios():
    out = _run("benchmarks/bench_theory_grid.py", "--n", "3", "--depth", "4", "--static-points", "1")
    for m in ("vmap-grid", "loop", "loop-static"):
        assert f"| {m} |" in out
    assert "9 of 9 points timed" in out
    assert "- loop / vmap-grid = **" in out and "- loop-static / (vmap-grid incl. its compilation) = **" in out
