"""Both example models run end to end at tiny size through every measurement, unmodified.

Each example runs as its users run it, in a fresh Python process (no 64-bit JAX, no test settings),
started by :func:`tests.children.child_env`; the process prints what the tests check as one JSON line.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.children import child_env

ROOT = Path(__file__).resolve().parents[2]

# Runs examples/<name>.py's main(argv) and prints the measured quantities the tests check.
_RUN_EXAMPLE = """
import json, sys
import numpy as np
from examples import {name}
out = {name}.main(sys.argv[1:])
print(json.dumps({{"hidden": np.asarray(out["gradients"].hidden, float).tolist(),
                   "hessian_top": np.asarray(out["hessian"].top, float).tolist(),
                   "record": list(np.shape(out["record"].log10_norms)),
                   "losses": [float(v) for v in out["losses"]], "figure": str(out["figure"])}}))
"""


def _run_example(name, *args):
    out = subprocess.run([sys.executable, "-c", _RUN_EXAMPLE.format(name=name), *map(str, args)], cwd=ROOT,
                         env=child_env(PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_resnet_digits_example_runs(tmp_path):
    out = _run_example("resnet_digits", "--seeds", "2", "--blocks", "1", "--channels", "4", "--batch", "16", "--steps",
                       "4", "--k", "4", "--out", tmp_path)
    hidden = np.asarray(out["hidden"])
    assert hidden.shape == (2, 4)  # stem, two convolutions, head
    assert np.all(np.isfinite(hidden))
    assert out["record"] == [4, 6]  # stem, blocks/0/{conv1,bn1,conv2,bn2}, head
    assert Path(out["figure"]).exists()


@pytest.mark.slow
def test_gpt_sequence_example_runs(tmp_path):
    out = _run_example("gpt_sequence", "--seeds", "2", "--layers", "1", "--width", "8", "--seq-len", "8", "--batch", "8",
                       "--steps", "4", "--k", "4", "--out", tmp_path)
    assert np.asarray(out["hidden"]).shape == (2, 1)
    assert np.asarray(out["hessian_top"]).shape == (2, 2, 3)  # seeds × (all, blocks/0) × top 3
    assert out["losses"][-1] < out["losses"][0]
    assert Path(out["figure"]).exists()


@pytest.mark.slow
def test_bench_monitor_runs_at_toy_size():
    out = subprocess.run([sys.executable, "benchmarks/bench_monitor.py", "--rounds", "1", "--steps", "1", "--blocks",
                          "1", "--channels", "4", "--width", "8", "--seq-len", "8", "--batch", "8"], cwd=ROOT,
                         env=child_env(PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("| monitor → clip → adam |") == 2
