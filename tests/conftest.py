"""Strict test settings: rank promotion raises, float64 available, a `key` fixture."""

import jax
import pytest

jax.config.update("jax_enable_x64", True)  # float64 configs are tested; float32 paths cast explicitly
jax.config.update("jax_numpy_rank_promotion", "raise")

# One BLAS thread per test process. `run.sh test` runs one pytest-xdist worker per core, so a
# worker's OpenBLAS threads only compete with the other worker's (and spin while they wait): on
# 2 cores a 1000 × 1000 numpy QR took 0.74 s with one thread and 27 s with the default two under
# load. Thread counts change how LAPACK blocks its work, not what a test claims.
from threadpoolctl import threadpool_limits  # noqa: E402

threadpool_limits(limits=1, user_api="blas")


@pytest.fixture
def key():
    return jax.random.key(0)


def rtol_for(dtype) -> float:
    """Relative tolerance keyed by dtype (float32 ~ 5e-3 statistical / 1e-4 exact paths; float64 1e-8)."""
    return 1e-8 if str(dtype) == "float64" else 5e-3


# ---- per-test time and peak memory (opt-in: GRADJAX_TEST_PROFILE=path.jsonl) ------------------
# Linux resets a process's peak resident set (VmHWM) when "5" is written to /proc/self/clear_refs,
# so the peak read after a test is that test's own high-water mark in its worker process (memory the
# worker already held, e.g. compiled programs, is included: an upper bound on the test's own need).
import json as _json  # noqa: E402
import os as _os  # noqa: E402
import time as _time  # noqa: E402

_PROFILE = _os.environ.get("GRADJAX_TEST_PROFILE")


def _status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return None


def _rss_bytes():
    return _status_bytes("VmRSS:")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not _PROFILE:
        yield
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    before = _rss_bytes()
    t0 = _time.perf_counter()
    yield
    row = {"test": item.nodeid, "seconds": round(_time.perf_counter() - t0, 3), "rss_before": before,
           "peak_rss": _status_bytes("VmHWM:"), "worker": _os.environ.get("PYTEST_XDIST_WORKER", "main")}
    with open(_PROFILE, "a") as f:
        f.write(_json.dumps(row) + "\n")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs and traced functions after each test module.

    A pytest-xdist worker runs many modules in one process; without this its resident memory grows
    with every program compiled before (a worker was once seen at 11.8 GB). Programs are rarely
    shared between modules, so recompiling costs little.
    """
    yield
    _release()


def _release():
    """Compiled programs dropped, then the freed heap handed back to the OS: without ``malloc_trim``
    glibc keeps the pages, the resident size does not fall, and the check below would fire again
    after every test (recompiling what the next test shares)."""
    import ctypes
    import gc

    jax.clear_caches()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the programs are still dropped
        pass


# A worker that runs a long module accumulates compiled programs between the module-end releases
# above (tests/empirical/test_jacobians.py alone grew one process to 2.1 GB, each test's own need
# ≤ 0.4 GB). Past this resident size the programs are dropped after the test as well.
_RELEASE_ABOVE_BYTES = 1_200_000_000


@pytest.fixture(autouse=True)
def _bound_worker_memory():
    yield
    rss = _rss_bytes()
    if rss is not None and rss > _RELEASE_ABOVE_BYTES:
        _release()
