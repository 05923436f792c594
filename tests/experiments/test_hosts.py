"""Multi-host sweeps stop, never hang: the host protocol, in memory and with real jax.distributed processes."""

import json
import socket
import subprocess
import sys
import time

import pytest

from gradjax import io
from gradjax.experiments.hosts import HostFailedError, HostSync
from tests.children import child_env
from tests.experiments import fixture_experiment as fx
from tests.experiments.conftest import HERE, REPO


class MemoryStore:
    """The two calls of the coordination service's key-value store the protocol uses, in one process."""

    def __init__(self):
        self.kv = {}

    def key_value_set(self, key, value, allow_overwrite=False):
        assert allow_overwrite or key not in self.kv, key  # the coordination service refuses to overwrite
        self.kv[key] = value

    def key_value_dir_get(self, prefix):
        return [(k, v) for k, v in sorted(self.kv.items()) if k.startswith(prefix)]


def _hosts(n, **kw):
    store = MemoryStore()
    return [HostSync(store, "exp/tiny", i, n, **kw) for i in range(n)]


def test_a_failed_host_stops_the_others_at_their_next_cell_and_at_the_end():
    h0, h1, h2 = _hosts(3)
    for h, cell in ((h0, "a"), (h1, "b"), (h2, "c")):
        h.start_cell(cell)
    h1.fail(OSError(28, "No space left on device"))
    with pytest.raises(HostFailedError, match=r"host 1 of 3 failed at cell 'b': OSError: \[Errno 28\] No space"):
        h0.start_cell("d")
    with pytest.raises(HostFailedError, match="host 1 of 3 failed at cell 'b'"):
        h2.finish()


def test_a_host_failing_before_any_cell_is_named_so():
    h0, h1 = _hosts(2)
    h1.fail(ValueError("a foreign file in the way"))
    with pytest.raises(HostFailedError, match="host 1 of 2 failed before its first cell: ValueError: a foreign"):
        h0.finish()


def test_a_host_stopped_by_another_does_not_hide_the_original():
    h0, h1, h2 = _hosts(3)
    h2.start_cell("c")
    h2.fail(RuntimeError("boom"))
    with pytest.raises(HostFailedError) as stopped:
        h0.start_cell("a")
    h0.fail(stopped.value)  # what run_sweep does with any exception leaving it
    with pytest.raises(HostFailedError, match="host 2 of 3 failed at cell 'c': RuntimeError: boom"):
        h1.finish()


def test_finish_returns_once_every_host_is_done():
    hs = _hosts(3, timeout_s=5.0, poll_s=0.01)
    for h in hs[1:]:  # publish "done" without waiting (finish would wait for host 0)
        h._set("state", {"state": "done", "failed_cells": []})
    t0 = time.monotonic()
    hs[0].finish()  # every state is "done": returns at the first read
    assert time.monotonic() - t0 < 1.0


def test_finish_times_out_naming_the_missing_host_and_its_cell():
    h0, h1 = _hosts(2, timeout_s=0.3, poll_s=0.05)
    h1.start_cell("sigma_w2=2.0")
    t0 = time.monotonic()
    with pytest.raises(HostFailedError, match=r"host\(s\) \[1\] of 2 not done after 0.3 s \(host 1 at cell 'sigma_w2=2.0'\)"):
        h0.finish()
    assert 0.3 <= time.monotonic() - t0 < 5.0


def test_a_single_host_needs_no_store():
    h = HostSync(None, "exp/tiny", 0, 1)
    h.start_cell("a")
    h.fail(RuntimeError("x"))
    h.finish()
    with pytest.raises(ValueError, match="timeout_s must be a positive number"):
        HostSync(None, "exp/tiny", 0, 1, timeout_s=0)


# ---- real processes: jax.distributed on the CPU ----------------------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_hosts(root, count, cache, extra=(), timeout=90):
    """Starts ``count`` hosts at once; returns (wall seconds, [(returncode, JSON)]), killing them all on a hang."""
    env = child_env(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    port = str(_free_port())
    t0 = time.monotonic()
    procs = [subprocess.Popen([sys.executable, str(HERE / "run_hosts_sweep.py"), str(root), port, str(i), str(count),
                               *extra], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(count)]
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=max(1.0, timeout - (time.monotonic() - t0)))
            lines = stdout.strip().splitlines()
            out.append((p.returncode, json.loads(lines[-1]) if lines else {"stderr": stderr[-2000:]}))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"multi-host sweep still running after {timeout} s: a host is waiting forever")
    return time.monotonic() - t0, out


def test_hosts_finish_together_and_fill_one_folder(tmp_path, xla_cache):
    wall, out = _run_hosts(tmp_path, 2, xla_cache)
    assert [rc for rc, _ in out] == [0, 0], out
    ids = [c.id for c in fx.EXPERIMENT.cells("tiny")]
    assert [o["computed"] for _, o in out] == [ids[0::2], ids[1::2]]
    assert sorted(p.stem for p in io.cell_files(io.cells_dir(tmp_path, "tiny", fx.NAME))) == sorted(ids)


def test_a_host_that_raises_stops_every_host_naming_it_and_its_cell(tmp_path, xla_cache):
    """Three hosts; host 1 owns cell 1 of the tiny grid and cannot write it (ENOSPC)."""
    ids = [c.id for c in fx.EXPERIMENT.cells("tiny")]  # host i owns ids[i::3]
    wall, out = _run_hosts(tmp_path, 3, xla_cache, extra=("--fail-cell", ids[1]))
    assert [rc for rc, _ in out] == [1, 1, 1], out
    assert out[1][1]["error_type"] == "OSError" and "No space left" in out[1][1]["error"]
    for i in (0, 2):
        assert out[i][1]["error_type"] == "HostFailedError", out[i]
        assert f"host 1 of 3 failed at cell {ids[1]!r}: OSError: [Errno 28] No space left" in out[i][1]["error"]
    # finished cells stay on disk, readable; the failed one is absent
    on_disk = {p.stem for p in io.cell_files(io.cells_dir(tmp_path, "tiny", fx.NAME))}
    assert ids[1] not in on_disk and {ids[0], ids[2]} <= on_disk
    print(f"3 hosts, one failing: all stopped after {wall:.1f} s")
