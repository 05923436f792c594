"""Every registered experiment runs at its tiny size, stores a results file per cell, and draws.

The catalog imports every experiment module (gradjax/experiments/catalog.py); the test
fixture experiment is checked the same way, so the protocol is exercised even before any real
experiment exists. Each tiny run must take seconds (it runs in CI).
"""

import json
from pathlib import Path

import pytest

from gradjax import io
from gradjax.experiments import catalog
from gradjax.experiments.registry import AgreementRow
from gradjax.experiments.sweep import run_sweep
from tests.experiments import fixture_experiment as fx

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


NAMES = [*catalog.names(), fx.NAME]


@pytest.mark.parametrize("name", NAMES)
def test_tiny_run_produces_results_and_a_figure(name, tmp_path):
    exp = fx.EXPERIMENT if name == fx.NAME else catalog.get(name)
    rep = run_sweep(exp, "tiny", root=tmp_path, quiet=True, command=f"gradjax run {name} --tiny")
    assert rep.ok, rep.failed
    files = io.cell_files(io.cells_dir(tmp_path, "tiny", name))
    assert len(files) == len(exp.cells("tiny"))
    results = io.load_results(rep.folder)
    assert results.attrs["experiment"] == name
    assert len(json.loads(results.attrs["provenance"])) == len(files)
    figures = exp.plot(results, rep.folder)
    assert figures, f"{name}.plot drew nothing"
    for f in figures:
        assert Path(f).is_file() and Path(f).stat().st_size > 0
        assert Path(f).resolve().parent == rep.folder.resolve()
    if exp.agreement is not None:
        rows = exp.agreement(results)
        assert all(isinstance(r, AgreementRow) for r in rows)


def test_every_experiment_has_a_module_named_after_it():
    import importlib

    for name in catalog.names():
        module = importlib.import_module(f"gradjax.experiments.{name.replace('-', '_')}")
        assert any(getattr(module, attr, None) is catalog.get(name) for attr in dir(module)), name
