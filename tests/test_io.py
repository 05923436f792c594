"""Results store: atomic cell files, corrupt/foreign detection, one-call loading of a results folder.

Cells here are built by hand (numpy), so every expected value is the value written.
"""

import json

import numpy as np
import pytest
import xarray as xr

from gradjax import io

GRID = {"activation": ["tanh", "relu"], "depth": [2, 3]}  # grid order: tanh before relu (not alphabetical)


def _cell(activation, depth, *, seeds=3, experiment="demo-exp", size="tiny", fp=None):
    rng = np.random.default_rng(depth * 10 + len(activation))
    ds = xr.Dataset(
        {"q": (("seed", "layer"), rng.normal(size=(seeds, depth))), "q_theory": (("layer",), np.arange(depth) + 0.5)},
        coords={"seed": np.arange(seeds), "layer": np.arange(1, depth + 1), "activation": activation, "depth": depth},
    )
    coords = {"activation": activation, "depth": depth}
    ds.attrs = {
        "gradjax_format": io.FORMAT, "experiment": experiment, "size": size,
        "cell_id": f"activation={activation},depth={depth}",
        "fingerprint": fp or io.fingerprint(experiment=experiment, size=size, coords=coords, params={},
                                            seeds=range(seeds), dtype="float32"),
        "grid": io.grid_attr(GRID), "provenance": io.to_json({"cell": coords, "command": "test"}),
    }
    return ds


def _write_all(root, cells=(("tanh", 2), ("tanh", 3), ("relu", 2), ("relu", 3)), **kw):
    for act, depth in cells:
        ds = _cell(act, depth, **kw)
        io.write_cell(io.cell_path(root, "tiny", "demo-exp", ds.attrs["cell_id"]), ds)


def test_write_read_roundtrip_is_exact(tmp_path):
    ds = _cell("tanh", 3)
    path = io.write_cell(tmp_path / "c.nc", ds)
    back = io.read_cell(path, experiment="demo-exp", size="tiny", fingerprint=ds.attrs["fingerprint"])
    xr.testing.assert_identical(back.drop_attrs(), ds.drop_attrs())
    assert json.loads(back.attrs["provenance"]) == {"cell": {"activation": "tanh", "depth": 3}, "command": "test"}
    assert [p.name for p in tmp_path.iterdir()] == ["c.nc"]  # no temporary file left behind


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = io.write_cell(tmp_path / "c.nc", _cell("tanh", 2))
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", boom)
    with pytest.raises(OSError, match="disk full"):
        io.write_cell(path, _cell("tanh", 3))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.nc"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file_is_reported(tmp_path, damage):
    path = io.write_cell(tmp_path / "c.nc", _cell("tanh", 2))
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a netcdf file" * 50, "empty": b""}[damage])
    with pytest.raises(io.CorruptResultError, match="c.nc"):
        io.read_cell(path)


def test_foreign_files_are_reported(tmp_path):
    plain = tmp_path / "plain.nc"
    xr.Dataset({"x": ("a", np.arange(3))}).to_netcdf(plain, engine=io.ENGINE)
    with pytest.raises(io.ForeignResultError, match="not a gradjax cell"):
        io.read_cell(plain)
    path = io.write_cell(tmp_path / "c.nc", _cell("tanh", 2))
    with pytest.raises(io.ForeignResultError, match="fingerprint"):
        io.read_cell(path, fingerprint="0" * 16)
    with pytest.raises(io.ForeignResultError, match="experiment"):
        io.read_cell(path, experiment="other")


def test_fingerprint_changes_with_what_determines_the_numbers():
    base = dict(experiment="e", size="tiny", coords={"a": 1}, params={"width": 8}, seeds=range(4), dtype="float32")
    fp = io.fingerprint(**base)
    assert fp == io.fingerprint(**base)
    for change in ({"seeds": range(5)}, {"dtype": "float64"}, {"params": {"width": 16}}, {"coords": {"a": 2}},
                   {"size": "quick"}):
        assert io.fingerprint(**{**base, **change}) != fp, change


def test_load_results_merges_cells_by_label_in_grid_order(tmp_path):
    _write_all(tmp_path)
    ds = io.load_results("demo-exp", root=tmp_path)
    assert list(ds.activation.values) == ["tanh", "relu"]  # grid order, not sorted
    assert list(ds.depth.values) == [2, 3]
    assert ds.q.dims == ("activation", "depth", "seed", "layer")
    assert ds.sizes["layer"] == 3  # depth-2 cells are NaN at layer 3
    for act, depth in (("tanh", 2), ("relu", 3)):
        expected = _cell(act, depth).q.values
        got = ds.q.sel(activation=act, depth=depth).values
        np.testing.assert_array_equal(got[:, :depth], expected)
        assert np.isnan(got[:, depth:]).all()
    assert ds.q_theory.dims == ("activation", "depth", "layer")
    assert len(json.loads(ds.attrs["provenance"])) == 4
    assert ds.attrs["experiment"] == "demo-exp" and ds.attrs["size"] == "tiny"
    assert json.loads(ds.attrs["params"]) == {}  # the hand-built provenance records no params


def test_load_results_ignores_temporary_files_and_reports_failed_cells(tmp_path):
    _write_all(tmp_path, cells=(("tanh", 2),))
    cells = io.cells_dir(tmp_path, "tiny", "demo-exp")
    (cells / ".activation=relu,depth=2.nc.abc.tmp").write_bytes(b"half a file")
    io.write_json(cells / "activation=relu,depth=3.failed.json", {"error": "RuntimeError: boom"})
    ds = io.load_results(cells.parent)
    assert list(ds.activation.values) == ["tanh"]
    assert json.loads(ds.attrs["failed_cells"]) == {"activation=relu,depth=3": "RuntimeError: boom"}


def test_load_results_by_name_prefers_the_largest_size(tmp_path):
    _write_all(tmp_path, cells=(("tanh", 2),))
    ds_q = _cell("relu", 3, size="quick")
    io.write_cell(io.cell_path(tmp_path, "quick", "demo-exp", "x"), ds_q)
    assert io.load_results("demo-exp", root=tmp_path).attrs["size"] == "quick"
    assert io.load_results("demo-exp", root=tmp_path, size="tiny").attrs["size"] == "tiny"
    with pytest.raises(FileNotFoundError, match="no results for 'nothing'"):
        io.load_results("nothing", root=tmp_path)


def test_load_results_refuses_a_mixed_folder(tmp_path):
    _write_all(tmp_path, cells=(("tanh", 2),))
    other = _cell("relu", 2, experiment="other-exp")
    io.write_cell(io.cell_path(tmp_path, "tiny", "demo-exp", "stray"), other)
    with pytest.raises(io.ForeignResultError, match="other-exp"):
        io.load_results("demo-exp", root=tmp_path)


def test_provenance_records_versions_devices_and_git():
    rec = io.provenance(experiment="e", size="tiny", coords={"a": 1}, params={}, seeds=[0, 1], dtype="float32",
                        command="gradjax run e --tiny", wall_time_s=1.5)
    for key in ("gradjax", "jax", "jaxlib", "flax", "optax", "python"):
        assert rec["versions"][key], key
    assert rec["devices"]["used"] >= 1 and rec["devices"]["kind"]
    assert set(rec["git"]) == {"commit", "dirty"}
    assert rec["seeds"] == [0, 1] and rec["command"] == "gradjax run e --tiny"
    json.loads(io.to_json(rec))  # serializable
