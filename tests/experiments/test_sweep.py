"""Sweeps in-process: results, seed chunking, resume, failing cells, corrupt and foreign files.

Uses the fixture experiment (tests/experiments/fixture_experiment.py), tiny size: 4 cells × 3 seeds,
width 8, depth 3 — two XLA compilations for the whole module.
"""

import dataclasses
import shutil

import jax
import numpy as np
import pytest
import xarray as xr

from gradjax import io
from gradjax.experiments import sweep
from gradjax.experiments.registry import Experiment, Grid
from tests.experiments import fixture_experiment as fx

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


EXP = fx.EXPERIMENT


def _data(ds):
    """The numbers of a merged Dataset, without provenance (wall times differ between runs)."""
    return ds.drop_attrs()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    rep = sweep.run_sweep(EXP, "tiny", root=root, quiet=True, command="test")
    assert rep.ok and len(rep.computed) == 4
    return root


@pytest.fixture
def counter(tmp_path, monkeypatch):
    path = tmp_path / "calls.txt"
    monkeypatch.setenv("GRADJAX_TEST_COUNTER", str(path))
    return lambda: path.read_text().split() if path.exists() else []


def _copy(reference, tmp_path):
    shutil.copytree(reference, tmp_path / "r")
    return tmp_path / "r"


def test_sweep_writes_one_file_per_cell_with_provenance(reference):
    files = io.cell_files(io.cells_dir(reference, "tiny", fx.NAME))
    assert len(files) == 4
    cell = io.read_cell(files[0])
    rec = __import__("json").loads(cell.attrs["provenance"])
    assert rec["seeds"] == [0, 1, 2] and rec["dtype"] == "float32" and rec["command"] == "test"
    assert rec["devices"]["used"] == 1 and rec["wall_time_s"] >= 0 and rec["versions"]["jax"] == jax.__version__
    ds = io.load_results(fx.NAME, root=reference)
    assert ds.q.dims == ("activation", "sigma_w2", "depth", "seed", "layer")
    assert list(ds.seed.values) == [0, 1, 2] and list(ds.layer.values) == [1, 2, 3]


def test_seed_k_is_key_k_whatever_the_chunking(reference):
    """Seed k of the sweep equals a direct single-seed call with jax.random.key(k)."""
    ds = io.load_results(fx.NAME, root=reference)
    cell = EXP.cells("tiny")[0]
    keys = jax.numpy.stack([jax.random.key(k) for k in range(3)])
    keys = sweep.shard_seeds(keys, sweep.seed_mesh())  # placed as the sweep places them: reuses its compilation
    direct = fx.q_profile(keys, cell["sigma_w2"], cell["sigma_b2"], activation="tanh", depth=3, width=8, batch=8,
                          dtype="float32")
    np.testing.assert_array_equal(ds.q.sel(activation="tanh", sigma_w2=cell["sigma_w2"], depth=3).values, direct)
    chunked, used = sweep.measure_seeds(EXP, cell, [0, 1, 2], seeds_per_call=2)
    assert used == 2
    np.testing.assert_array_equal(chunked["q"].values, ds.q.sel(activation="tanh", sigma_w2=1.0, depth=3).values)


def test_theory_is_stored_beside_the_measurement(reference):
    ds = io.load_results(fx.NAME, root=reference)
    cell = EXP.cells("tiny")[-1]
    np.testing.assert_array_equal(ds.q_theory.sel(**cell.coords).values, fx.theory(cell)["q_theory"][1])


def test_rerun_skips_finished_cells(reference, tmp_path, counter):
    root = _copy(reference, tmp_path)
    rep = sweep.run_sweep(EXP, "tiny", root=root, quiet=True)
    assert rep.computed == [] and len(rep.skipped) == 4 and counter() == []


def test_a_failing_cell_is_recorded_and_the_others_are_kept(reference, tmp_path, counter, monkeypatch):
    bad = EXP.cells("tiny")[1].id
    monkeypatch.setenv("GRADJAX_TEST_FAIL_AT", bad)
    rep = sweep.run_sweep(EXP, "tiny", root=tmp_path, quiet=True)
    assert list(rep.failed) == [bad] and "requested failure" in rep.failed[bad] and len(rep.computed) == 3
    marker = io.failed_path(tmp_path, "tiny", fx.NAME, bad)
    assert "Traceback" in __import__("json").loads(marker.read_text())["traceback"]
    partial = io.load_results(fx.NAME, root=tmp_path)
    assert bad in partial.attrs["failed_cells"]
    monkeypatch.delenv("GRADJAX_TEST_FAIL_AT")
    rep = sweep.run_sweep(EXP, "tiny", root=tmp_path, quiet=True)
    assert rep.computed == [bad] and rep.ok and not marker.exists()
    xr.testing.assert_identical(_data(io.load_results(fx.NAME, root=tmp_path)),
                                _data(io.load_results(fx.NAME, root=reference)))


def test_corrupt_file_is_reported_set_aside_and_recomputed(reference, tmp_path, counter):
    root = _copy(reference, tmp_path)
    victim = io.cell_files(io.cells_dir(root, "tiny", fx.NAME))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.warns(sweep.CorruptResultWarning, match=victim.name):
        rep = sweep.run_sweep(EXP, "tiny", root=root, quiet=True)
    assert rep.corrupt == [victim] and len(rep.computed) == 1 and len(counter()) == 1
    assert victim.with_name(victim.name + ".corrupt").exists()
    xr.testing.assert_identical(_data(io.load_results(fx.NAME, root=root)),
                                _data(io.load_results(fx.NAME, root=reference)))


def test_foreign_file_stops_the_run_before_any_work(reference, tmp_path, counter):
    root = _copy(reference, tmp_path)
    with pytest.raises(io.ForeignResultError, match="--overwrite"):
        sweep.run_sweep(EXP, "tiny", root=root, seeds=2, quiet=True)  # files hold 3 seeds
    assert counter() == []
    rep = sweep.run_sweep(EXP, "tiny", root=root, seeds=2, quiet=True, overwrite=True)
    assert len(rep.computed) == 4
    ds = io.load_results(fx.NAME, root=root)
    assert list(ds.seed.values) == [0, 1]
    xr.testing.assert_identical(ds.q, io.load_results(fx.NAME, root=reference).q.sel(seed=[0, 1]))


def test_hosts_split_the_cells_into_one_folder(reference, tmp_path):
    """Two processes (as under jax.distributed) take alternate cells and fill one folder."""
    reps = [sweep.run_sweep(EXP, "tiny", root=tmp_path, quiet=True, process_index=i, process_count=2)
            for i in (0, 1)]
    ids = [c.id for c in EXP.cells("tiny")]
    assert reps[0].computed == ids[0::2] and reps[1].computed == ids[1::2]
    xr.testing.assert_identical(_data(io.load_results(fx.NAME, root=tmp_path)),
                                _data(io.load_results(fx.NAME, root=reference)))


def test_files_outside_the_grid_are_reported(reference, tmp_path, counter):
    root = _copy(reference, tmp_path)
    cells = io.cells_dir(root, "tiny", fx.NAME)
    shutil.copy(io.cell_files(cells)[0], cells / "activation=gelu,sigma_w2=1.0,depth=3.nc")
    with pytest.warns(sweep.StaleResultWarning, match="activation=gelu"):
        rep = sweep.run_sweep(EXP, "tiny", root=root, quiet=True)
    assert rep.computed == [] and counter() == []


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="seeds must be an integer >= 1"):
        sweep.run_sweep(EXP, "tiny", root=tmp_path, seeds=0)
    with pytest.raises(ValueError, match="size must be one of"):
        sweep.run_sweep(EXP, "medium", root=tmp_path)
    with pytest.raises(TypeError, match="experiment must be an Experiment"):
        sweep.run_sweep("no-such-experiment", "tiny", root=tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="cannot write results"):
        sweep.run_sweep(EXP, "tiny", root=blocker / "sub")


# ---- chunking logic, with a measurement that is the seed itself (no compilation) -------------------


def _seed_echo(cell, keys):
    """Returns each member's seed (from its key) — shows exactly which seed went where."""
    if len(keys) > cell["max_chunk"]:
        raise RuntimeError("RESOURCE_EXHAUSTED: out of memory (simulated)")
    return {"s": (("seed",), np.asarray(jax.random.key_data(keys))[:, -1])}


ECHO = Experiment("seed-echo", "Seed echo.", {s: Grid(axes={"a": (1,)}, seeds=7, params={"max_chunk": 3})
                                              for s in ("tiny", "quick", "full")},
                  measure=_seed_echo, plot=lambda r, o: [])


def test_out_of_memory_halves_the_chunk_and_keeps_the_seed_order():
    cell = ECHO.cells("tiny")[0]
    out, used = sweep.measure_seeds(ECHO, cell, list(range(7)))
    assert used == 3  # 7 → 3 (halved, rounded down to a multiple of the 1 device): the first size ≤ 3
    np.testing.assert_array_equal(out["s"].values, np.arange(7))
    np.testing.assert_array_equal(out["s"].seed.values, np.arange(7))


def test_measure_must_return_a_leading_seed_axis():
    bad = dataclasses.replace(ECHO, measure=lambda c, k: {"s": (("layer",), np.zeros(len(k)))})
    with pytest.raises(ValueError, match="leading dimension 'seed'"):
        sweep.measure_seeds(bad, bad.cells("tiny")[0], [0, 1])


@pytest.mark.parametrize("n, dev, per_seed, free, req, want", [
    (10, 1, None, None, None, 10),       # no estimate: all seeds in one call
    (10, 4, None, None, None, 12),       # rounded up to a multiple of the device count (padding)
    (100, 1, 1000, 20_000, None, 10),    # half of 20 kB free / 1 kB per seed
    (100, 4, 1000, 20_000, None, 40),    # per device
    (100, 1, None, None, 7, 7),          # explicit cap
    (100, 4, 10**9, 1000, None, 4),      # never below one seed per device
])
def test_plan_seeds_per_call(n, dev, per_seed, free, req, want):
    assert sweep.plan_seeds_per_call(n, dev, bytes_per_seed=per_seed, free=free, requested=req) == want
