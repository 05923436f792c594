"""Sharding the seed axis over 8 simulated CPU devices gives the same numbers as one device.

A subprocess sets XLA_FLAGS=--xla_force_host_platform_device_count=8 before importing JAX and runs
the fixture experiment's tiny sweep (tanh cells only) on one device and on all eight with 6 seeds (so
the 8-way shards need padding), and on two devices in chunks of 2 seeds per call.
"""

import json

import numpy as np
import pytest
import xarray as xr

from gradjax import io
from tests.children import child_env
from tests.experiments import fixture_experiment as fx
from tests.experiments.conftest import run_script

EIGHT = "--xla_force_host_platform_device_count=8"


@pytest.mark.slow
def test_eight_devices_equal_one_device(tmp_path, xla_cache):
    rc, reps, err = run_script([tmp_path / "one", "--devices", "1", "--seeds", "6", "--activation", "tanh",
                                "--also", f"{tmp_path / 'eight'}::", "--also", f"{tmp_path / 'two-chunked'}:2:2"],
                               xla_flags=(EIGHT,), cache=xla_cache)
    assert rc == 0, err
    reports = dict(zip(("one", "eight", "two-chunked"), reps))
    assert all(r["device_count"] == 8 for r in reports.values())
    assert set(reports["one"]["shard_sizes"]) == {1}
    assert set(reports["eight"]["shard_sizes"]) == {8}  # every call was sharded over all 8 devices
    assert set(reports["eight"]["out_shards"]) == {8}  # and computed there (per_device), not replicated
    assert reports["two-chunked"]["shard_sizes"] == [2] * 6  # 2 cells × 3 calls (seeds 0-1, 2-3, 4-5)
    one = io.load_results(fx.NAME, root=tmp_path / "one")
    for name, n_dev in (("eight", 8), ("two-chunked", 2)):
        other = io.load_results(fx.NAME, root=tmp_path / name)
        xr.testing.assert_identical(one.drop_attrs(), other.drop_attrs())
        assert {r["devices"]["used"] for r in json.loads(other.attrs["provenance"])} == {n_dev}
    assert np.isfinite(one.q.values).all()


_EMPIRICAL_SCRIPT = """
import json, numpy as np, jax
from gradjax import empirical
from gradjax.config import NetConfig
from gradjax.experiments.sweep import per_device, seed_mesh, shard_seeds
from gradjax.nn import seed_keys

def grad(keys, cfg):
    return empirical.gradient_profile(cfg, seeds=keys, batch=8).hidden

cfg = NetConfig(depth=4, width=16)
keys = seed_keys(8)
one = grad(keys, cfg)
eight = per_device(grad, shard_seeds(keys, seed_mesh()), cfg=cfg)
print(json.dumps({"equal": bool(np.array_equal(np.asarray(one), np.asarray(eight))),
                  "devices": len(eight.sharding.device_set), "spec": list(eight.sharding.spec)}))
"""


@pytest.mark.slow
def test_per_device_runs_the_empirical_engine_sharded_with_the_same_numbers():
    """gradjax.empirical loops over seed groups itself; per_device still splits it across devices."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _EMPIRICAL_SCRIPT], capture_output=True, text=True,
                          env=child_env(EIGHT), timeout=240)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"equal": True, "devices": 8, "spec": ["seed"]}
