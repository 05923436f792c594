"""The ``gradjax`` command: every subcommand's --help, bad input as one line, a tiny run end to end."""

import os
import subprocess
import sys

import pytest

from gradjax import cli, io
from gradjax.experiments import catalog
from tests.experiments import fixture_experiment as fx


pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


@pytest.fixture
def registered(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADJAX_CACHE_DIR", "off")  # no compilation cache in the user's home from tests
    tiny = fx.EXPERIMENT.sizes["tiny"]  # every size tiny: the demo's quick run reuses the compiled programs
    exp = fx.ensure_registered(headline=True, sizes={"tiny": tiny, "quick": tiny, "full": tiny})
    yield exp
    catalog.unregister(exp.name)


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("gradjax: error: ") and "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("cmd", [[], ["list"], ["run"], ["plot"], ["report"], ["demo"]])
def test_help_everywhere(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([*cmd, "--help"])
    assert e.value.code == 0
    assert "usage: gradjax" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["run", "no-such-experiment", "--tiny"], "unknown experiment 'no-such-experiment'"),
    (["run", "test-signl", "--tiny"], "did you mean 'test-signal'"),
    (["run", "test-signal", "--seeds", "0"], "--seeds: expected a positive integer, got '0'"),
    (["run", "test-signal", "--seeds", "-3"], "expected a positive integer"),
    (["run", "test-signal", "--seeds", "many"], "expected a positive integer, got 'many'"),
    (["run", "test-signal", "--tiny", "--quick"], "not allowed with"),
    (["run", "test-signal", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["plot", "nope"], "unknown experiment 'nope'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "required"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, capsys, registered):
    assert cli.main(argv) == cli.EXIT_USAGE
    assert needle in _one_error_line(capsys)


def test_unwritable_output_dir(tmp_path, capsys, registered):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder cannot be made inside a file, whoever runs the test (even root)
    assert cli.main(["run", fx.NAME, "--tiny", "--out", str(blocker / "results"), "--quiet"]) == cli.EXIT_USAGE
    assert "cannot write results to" in _one_error_line(capsys)


def test_plot_and_report_without_results(tmp_path, capsys, registered):
    assert cli.main(["plot", fx.NAME, "--out", str(tmp_path)]) == cli.EXIT_USAGE
    assert "no results for 'test-signal'" in _one_error_line(capsys)
    assert cli.main(["report", "--out", str(tmp_path)]) == cli.EXIT_USAGE
    assert "no results" in _one_error_line(capsys)


def test_no_traceback_from_the_installed_entry_point(tmp_path):
    env = dict(os.environ, GRADJAX_CACHE_DIR="off")
    proc = subprocess.run([sys.executable, "-m", "gradjax.cli", "run", "nope", "--quick"], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == cli.EXIT_USAGE
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert "unknown experiment 'nope'" in proc.stderr


def test_list_run_plot_report_demo(tmp_path, capsys, registered, monkeypatch):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert fx.NAME in out and "Pre-activation length" in out
    assert cli.main(["list", "--names"]) == 0
    assert fx.NAME in capsys.readouterr().out.split()

    out_dir = tmp_path / "res"
    assert cli.main(["run", fx.NAME, "--tiny", "--out", str(out_dir), "--quiet"]) == 0
    folder = io.experiment_dir(out_dir, "tiny", fx.NAME)
    assert len(io.cell_files(folder / "cells")) == 4 and (folder / "q_profile.png").stat().st_size > 0
    rec = __import__("json").loads(io.load_results(folder).attrs["provenance"])[0]
    assert rec["command"] == f"gradjax run {fx.NAME} --tiny --seeds 3 --dtype float32 --out {out_dir}"

    (folder / "q_profile.png").unlink()
    assert cli.main(["plot", fx.NAME, "--out", str(out_dir)]) == 0
    assert (folder / "q_profile.png").exists()

    capsys.readouterr()
    assert cli.main(["report", "--out", str(out_dir)]) == 0
    md = (out_dir / "tiny" / "report.md").read_text()
    assert "![test-signal](test-signal/q_profile.png)" in md
    assert "| [test-signal](#test-signal) | q_L | tanh, σ_w²=1.0 |" in md and "width 8 |" in md and "Reproduce: `gradjax run test-signal --tiny" in md
    assert (out_dir / "tiny" / "report.html").exists()

    # A failing cell: exit 1, the others saved, one line per failed cell on stderr.
    monkeypatch.setenv("GRADJAX_TEST_FAIL_AT", fx.EXPERIMENT.cells("tiny")[0].id)
    assert cli.main(["run", fx.NAME, "--tiny", "--out", str(tmp_path / "f"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "failed: RuntimeError: requested failure" in err and "Traceback" not in err
    monkeypatch.delenv("GRADJAX_TEST_FAIL_AT")

    # demo: the quick size of headline experiments, then the report. Only the fixture is shown to the
    # demo here (the real experiments' quick sizes take minutes; each runs at tiny size in
    # tests/experiments/test_every_experiment.py).
    monkeypatch.setattr(catalog, "names", lambda: (fx.NAME,))
    assert cli.main(["demo", "--out", str(out_dir), "--quiet"]) == 0
    assert (out_dir / "quick" / "report.md").exists()
    assert len(io.cell_files(io.cells_dir(out_dir, "quick", fx.NAME))) == 4
