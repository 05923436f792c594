"""Both example models run end to end at tiny size through every measurement, unmodified."""

import numpy as np
import pytest

from examples import gpt_sequence, resnet_digits
from tests.children import child_env


@pytest.mark.slow
def test_resnet_digits_example_runs(tmp_path):
    out = resnet_digits.main(["--seeds", "2", "--blocks", "1", "--channels", "4", "--batch", "16", "--steps", "4",
                              "--k", "4", "--out", str(tmp_path)])
    assert out["gradients"].hidden.shape == (2, 4)  # stem, two convolutions, head
    assert np.all(np.isfinite(np.asarray(out["gradients"].hidden)))
    assert out["record"].log10_norms.shape == (4, 6)  # stem, blocks/0/{conv1,bn1,conv2,bn2}, head
    assert out["figure"].exists()


@pytest.mark.slow
def test_gpt_sequence_example_runs(tmp_path):
    out = gpt_sequence.main(["--seeds", "2", "--layers", "1", "--width", "8", "--seq-len", "8", "--batch", "8",
                             "--steps", "4", "--k", "4", "--out", str(tmp_path)])
    assert out["gradients"].hidden.shape == (2, 1)
    assert np.asarray(out["hessian"].top).shape == (2, 2, 3)  # seeds × (all, blocks/0) × top 3
    assert out["losses"][-1] < out["losses"][0]
    assert out["figure"].exists()


@pytest.mark.slow
def test_bench_monitor_runs_at_toy_size():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "benchmarks/bench_monitor.py", "--rounds", "1", "--steps", "1", "--blocks",
                          "1", "--channels", "4", "--width", "8", "--seq-len", "8", "--batch", "8"], cwd=root,
                         env=child_env(PYTHONPATH=str(root)), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("| monitor → clip → adam |") == 2
