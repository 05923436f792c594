"""Sharding the seed axis over 8 simulated CPU devices gives the same numbers as one device.

A subprocess sets XLA_FLAGS=--xla_force_host_platform_device_count=8 before importing JAX and runs
the fixture experiment's tiny sweep twice — on one device and on all eight — with 6 seeds (so the
8-way shards need padding) — and once on two devices in chunks of 4 seeds per call (4 + 2).
"""

import json

import numpy as np
import pytest
import xarray as xr

from gradjax import io
from tests.experiments import fixture_experiment as fx
from tests.experiments.conftest import run_script

EIGHT = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}


@pytest.mark.slow
def test_eight_devices_equal_one_device(tmp_path, xla_cache):
    runs = {"one": ["--devices", "1"], "eight": [], "two-chunked": ["--devices", "2", "--seeds-per-call", "4"]}
    reports = {}
    for name, extra in runs.items():
        rc, rep, err = run_script([tmp_path / name, "--seeds", "6", *extra], env_extra=EIGHT, cache=xla_cache)
        assert rc == 0, err
        reports[name] = rep
    assert all(r["device_count"] == 8 for r in reports.values())
    assert set(reports["one"]["shard_sizes"]) == {1}
    assert set(reports["eight"]["shard_sizes"]) == {8}  # every call was sharded over all 8 devices
    assert reports["two-chunked"]["shard_sizes"] == [2] * 8  # 4 cells × 2 calls (seeds 0-3, then 4-5)
    one = io.load_results(fx.NAME, root=tmp_path / "one")
    for name, n_dev in (("eight", 8), ("two-chunked", 2)):
        other = io.load_results(fx.NAME, root=tmp_path / name)
        xr.testing.assert_identical(one.drop_attrs(), other.drop_attrs())
        assert {r["devices"]["used"] for r in json.loads(other.attrs["provenance"])} == {n_dev}
    assert np.isfinite(one.q.values).all()
