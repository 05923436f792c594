"""Kill-and-resume: a sweep killed in a subprocess, then rerun, ends with exactly the results of an
uninterrupted run, loses at most the cell in flight, never leaves a corrupt file, and recomputes no
finished cell (counted through the fixture's GRADJAX_TEST_COUNTER hook).
"""

import pytest
import xarray as xr

from gradjax import io
from tests.experiments import fixture_experiment as fx
from tests.experiments.conftest import run_script

CELLS = [c.id for c in fx.EXPERIMENT.cells("tiny")]


def _calls(path):
    return path.read_text().split() if path.exists() else []


@pytest.mark.slow
def test_kill_mid_cell_and_mid_write_then_resume(tmp_path, xla_cache):
    ref_root, root, counter = tmp_path / "reference", tmp_path / "run", tmp_path / "calls.txt"
    rc, rep, err = run_script([ref_root], cache=xla_cache)
    assert rc == 0, err

    # 1. Killed (SIGKILL) while measuring the third cell: two cells saved, nothing else on disk.
    rc, _, _ = run_script([root], cache=xla_cache,
                          env_extra={"GRADJAX_TEST_KILL_AT": CELLS[2], "GRADJAX_TEST_COUNTER": str(counter)})
    assert rc == -9
    assert _calls(counter) == CELLS[:3]
    cells = io.cells_dir(root, "tiny", fx.NAME)
    assert [p.name for p in io.cell_files(cells)] == sorted(f"{c}.nc" for c in CELLS[:2])
    assert not [p for p in cells.iterdir() if p.name.startswith(".")]

    # 2. Resumed, then killed inside the atomic write of its second cell (just before the rename):
    #    the half-done cell exists only as a hidden temporary file, the folder still loads.
    rc, _, _ = run_script([root, "--kill-on-replace", "2"], cache=xla_cache,
                          env_extra={"GRADJAX_TEST_COUNTER": str(counter)})
    assert rc == -9
    assert _calls(counter) == CELLS[:3] + CELLS[2:4]
    assert len(io.cell_files(cells)) == 3
    assert any(p.name.startswith(f".{CELLS[3]}.nc.") for p in cells.iterdir())
    assert io.load_results(fx.NAME, root=root).sizes["activation"] == 2

    # 3. Resumed to the end: only the missing cell is computed.
    rc, rep, err = run_script([root], cache=xla_cache, env_extra={"GRADJAX_TEST_COUNTER": str(counter)})
    assert rc == 0, err
    assert rep["computed"] == [CELLS[3]] and sorted(rep["skipped"]) == sorted(CELLS[:3])
    assert _calls(counter) == CELLS[:3] + CELLS[2:4] + [CELLS[3]]
    xr.testing.assert_identical(io.load_results(fx.NAME, root=root).drop_attrs(),
                                io.load_results(fx.NAME, root=ref_root).drop_attrs())
