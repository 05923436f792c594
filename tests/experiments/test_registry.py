"""The experiment protocol: validated grids, cells, and a registry that fails loudly."""

import math

import pytest

from gradjax.experiments import catalog
from gradjax.experiments.registry import AgreementRow, Cell, Experiment, Grid


def _noop_measure(cell, keys):
    return {}


def _noop_plot(results, out_dir):
    return []


def _exp(name="demo-exp", **kw):
    g = Grid(axes={"activation": ("tanh", "relu"), "depth": (2, 3)}, seeds=2, params={"width": 4})
    return Experiment(name=name, description="A test experiment.\nMore text.", sizes={"tiny": g, "quick": g, "full": g},
                      measure=_noop_measure, plot=_noop_plot, **kw)


def test_grid_is_a_cartesian_product_in_order():
    g = Grid(axes={"a": ("x", "y"), "b": (1, 2, 3)}, seeds=1)
    pts = g.points()
    assert len(pts) == 6
    assert pts[0] == {"a": "x", "b": 1} and pts[1] == {"a": "x", "b": 2} and pts[-1] == {"a": "y", "b": 3}


def test_grid_promotes_mixed_numbers_to_float_and_accepts_explicit_cells():
    assert Grid(axes={"sigma_w2": (1, 2.5)}).axes["sigma_w2"] == (1.0, 2.5)
    g = Grid(cells=({"init": "he", "sigma_w2": 2}, {"init": "small", "sigma_w2": 0.1}))
    assert g.points() == ({"init": "he", "sigma_w2": 2.0}, {"init": "small", "sigma_w2": 0.1})


@pytest.mark.parametrize("kw, err", [
    ({}, ValueError),                                               # neither axes nor cells
    ({"axes": {"a": (1,)}, "cells": ({"a": 1},)}, ValueError),      # both
    ({"axes": {"a": ()}}, ValueError),                               # empty axis
    ({"axes": {"a": (1, 1)}}, ValueError),                           # repeated value
    ({"axes": {"a": (True,)}}, TypeError),                           # bool
    ({"axes": {"a": (math.nan,)}}, ValueError),                      # non-finite
    ({"axes": {"seed": (1,)}}, ValueError),                          # reserved name
    ({"axes": {"Bad-Name": (1,)}}, ValueError),
    ({"axes": {"a": ("x", 1)}}, TypeError),                          # mixed kinds
    ({"axes": {"a": (1,)}, "seeds": 0}, ValueError),
    ({"axes": {"a": (1,)}, "params": {"a": 2}}, ValueError),         # name both coordinate and param
    ({"cells": ({"a": 1}, {"b": 2})}, ValueError),                   # cells with different keys
])
def test_grid_rejects_bad_input(kw, err):
    with pytest.raises(err):
        Grid(**kw)


def test_cell_lookup_and_id():
    c = Cell("e", "tiny", {"activation": "tanh", "sigma_w2": 1.5}, {"width": 8}, "float32")
    assert c["activation"] == "tanh" and c["width"] == 8 and c.get("nope", 3) == 3
    assert c.id == "activation=tanh,sigma_w2=1.5"
    with pytest.raises(KeyError, match="width"):  # the message lists what exists
        c["depth"]
    assert Cell("e", "tiny", {"name": "a/b c"}, {}).id == "name=a_b_c"  # safe as a file name
    long = Cell("e", "tiny", {"name": "x" * 400}, {}).id
    assert len(long) == 180 and long != Cell("e", "tiny", {"name": "x" * 401}, {}).id


def test_experiment_validation():
    with pytest.raises(ValueError, match="kebab-case"):
        _exp(name="Bad_Name")
    g = Grid(axes={"a": (1,)})
    with pytest.raises(ValueError, match="sizes"):
        Experiment("x", "d", {"tiny": g}, measure=_noop_measure, plot=_noop_plot)
    with pytest.raises(TypeError, match="measure"):
        Experiment("x", "d", {"tiny": g, "quick": g, "full": g}, measure=None, plot=_noop_plot)
    exp = _exp()
    assert exp.summary == "A test experiment."
    cells = exp.cells("tiny", dtype="float64")
    assert len(cells) == 4 and cells[0].dtype == "float64" and cells[0]["width"] == 4
    with pytest.raises(ValueError, match="size"):
        exp.cells("huge")
    g2 = Grid(axes={"name": ("a/b", "a_b")})  # distinct values, same file name
    clash = Experiment("x", "d", {"tiny": g2, "quick": g2, "full": g2}, measure=_noop_measure, plot=_noop_plot)
    with pytest.raises(ValueError, match="share the file name"):
        clash.cells("tiny")


def test_catalog_get_unknown_lists_options_and_closest():
    exp = catalog.register(_exp("demo-exp"), replace=True)
    try:
        assert catalog.get("demo-exp") is exp and "demo-exp" in catalog.names()
        with pytest.raises(ValueError, match="already registered"):
            catalog.register(_exp("demo-exp"))
        with pytest.raises(ValueError, match="already registered"):
            catalog.register(_exp("phase-diagram"), replace=True)  # the package's own stay
        with pytest.raises(ValueError, match=r"unknown experiment 'demo-ex'.*demo-exp.*did you mean 'demo-exp'"):
            catalog.get("demo-ex")
        with pytest.raises(ValueError, match="did you mean 'demo-exp'"):
            catalog.get("demo_exp")
    finally:
        catalog.unregister("demo-exp")
    assert "demo-exp" not in catalog.names()


def test_the_catalog_lists_every_experiment_module_once():
    import pkgutil

    import gradjax.experiments

    modules = {m.name for m in pkgutil.iter_modules(gradjax.experiments.__path__)}
    infrastructure = {"catalog", "registry", "sweep", "figures", "flow_figures", "report", "hosts", "estimates"}
    assert {n.replace("-", "_") for n in catalog.names()} == modules - infrastructure
    assert len(set(catalog.names())) == len(catalog.EXPERIMENTS)


def test_agreement_row_error_and_verdict():
    r = AgreementRow("slope", "tanh", theory=2.0, measured=2.1, tolerance=0.1)
    assert r.error == pytest.approx(0.05) and r.agrees is True  # |2.1 − 2| / 2
    assert AgreementRow("x", "y", 1.0, 1.5, tolerance=0.1, metric="absolute").agrees is False
    assert AgreementRow("x", "y", 0.0, 0.0).error == 0.0 and AgreementRow("x", "y", 0.0, 1.0).error == math.inf
    assert AgreementRow("x", "y", 1.0, 1.0).agrees is None
    with pytest.raises(ValueError, match="metric"):
        AgreementRow("x", "y", 1.0, 1.0, metric="weird")
