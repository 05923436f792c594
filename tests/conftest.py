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


# ---- per-test time, CPU, compilations and peak memory (opt-in: GRADJAX_TEST_PROFILE=path.jsonl) ----
# Linux resets a process's peak resident set (VmHWM) when "5" is written to /proc/self/clear_refs,
# so the peak read after a test is that test's own high-water mark in its worker process (memory the
# worker already held, e.g. compiled programs, is included: an upper bound on the test's own need).
# Wall seconds depend on what else the machine runs; the process's CPU seconds (user + system, all
# its threads) and the count and seconds of XLA compilations do not, so a run on a busy machine
# still says what the suite costs: the sum of CPU seconds over the workers (and the subprocesses a
# test runs, counted apart), divided by the number of cores, estimates the suite's wall time on an
# idle machine.
import json as _json  # noqa: E402
import os as _os  # noqa: E402
import resource as _resource  # noqa: E402
import time as _time  # noqa: E402

_PROFILE = _os.environ.get("GRADJAX_TEST_PROFILE")

# jax.monitoring event names (jax/_src/dispatch.py, jax/_src/compiler.py). A backend compilation
# that the persistent cache answers still reports its (short) duration, and a cache hit besides.
_JAX_DURATIONS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_seconds",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_seconds",
    "/jax/core/compile/backend_compile_duration": "compile_seconds",
}
_JAX_COUNTS = {
    "/jax/core/compile/backend_compile_duration": "compiles",
    "/jax/compilation_cache/cache_hits": "cache_hits",
}
_counters = dict.fromkeys([*_JAX_DURATIONS.values(), *_JAX_COUNTS.values()], 0)


def _on_duration(event, seconds, **_):
    if event in _JAX_DURATIONS:
        _counters[_JAX_DURATIONS[event]] += seconds
    if event in _JAX_COUNTS:
        _counters[_JAX_COUNTS[event]] += 1


def _on_event(event, **_):
    if event in _JAX_COUNTS:
        _counters[_JAX_COUNTS[event]] += 1


if _PROFILE:
    jax.monitoring.register_event_duration_secs_listener(_on_duration)
    jax.monitoring.register_event_listener(_on_event)


def _status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return None


def _rss_bytes():
    return _status_bytes("VmRSS:")


def _cpu_seconds(who=_resource.RUSAGE_SELF):
    r = _resource.getrusage(who)
    return r.ru_utime + r.ru_stime


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
    counted = dict(_counters)
    t0, c0, k0 = _time.perf_counter(), _cpu_seconds(), _cpu_seconds(_resource.RUSAGE_CHILDREN)
    yield
    row = {"test": item.nodeid, "seconds": round(_time.perf_counter() - t0, 3),
           "cpu_seconds": round(_cpu_seconds() - c0, 3),
           "child_cpu_seconds": round(_cpu_seconds(_resource.RUSAGE_CHILDREN) - k0, 3), "rss_before": before,
           "peak_rss": _status_bytes("VmHWM:"), "worker": _os.environ.get("PYTEST_XDIST_WORKER", "main")}
    row.update({k: round(v - counted[k], 3) for k, v in _counters.items()})
    with open(_PROFILE, "a") as f:
        f.write(_json.dumps(row) + "\n")


# ---- one compilation cache per test run, shared by its workers, removed at the end --------------
# Tests compile the same XLA programs again and again: after the module-end release below, in both
# workers, and in different tests with equal shapes. With JAX's persistent cache in a folder made
# fresh for this run, a program compiled once is read back from disk by every later compilation of
# it in the run. Nothing survives the run (the folder is removed at exit), so a change in the
# library can never be hidden by a program compiled before it. GRADJAX_TEST_XLA_CACHE=off turns it
# off (e.g. to measure what it saves).
_XLA_CACHE_ENV = "GRADJAX_TEST_XLA_CACHE"


def pytest_configure(config):
    import shutil
    import tempfile

    where = _os.environ.get(_XLA_CACHE_ENV, "")
    if where.lower() == "off":
        return
    if "PYTEST_XDIST_WORKER" not in _os.environ:  # the controller (or a serial run) makes the folder
        where = tempfile.mkdtemp(prefix="gradjax-test-xla-")
        _os.environ[_XLA_CACHE_ENV] = where  # workers are started after this and inherit it
        config.add_cleanup(lambda: shutil.rmtree(where, ignore_errors=True))
    if where:
        jax.config.update("jax_compilation_cache_dir", where)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # every program
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # whatever its size


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs and traced functions after each test module.

    A pytest-xdist worker runs many modules in one process; without this its resident memory grows
    with every program compiled before (a worker was once seen at 11.8 GB). Programs are rarely
    shared between modules, so recompiling costs little.
    """
    yield
    _release()
    _floor["rss"] = _rss_bytes()


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
# ≤ 0.4 GB). When the resident size has grown this much past what it was after the last release,
# the programs are dropped after the test as well. Growth, not an absolute size: a worker whose
# resident floor has crept up (heap fragmentation, imported modules) would otherwise release, and
# recompile everything, after every single test while freeing nothing.
_RELEASE_GROWTH_BYTES = 900_000_000
_floor = {"rss": None}


@pytest.fixture(autouse=True)
def _bound_worker_memory():
    if _floor["rss"] is None:
        _floor["rss"] = _rss_bytes()
    yield
    rss = _rss_bytes()
    if rss is not None and _floor["rss"] is not None and rss > _floor["rss"] + _RELEASE_GROWTH_BYTES:
        _release()
        _floor["rss"] = _rss_bytes()


# ---- quick code generation for compile-bound tests -----------------------------------------------
# Most tests run small programs once: their time goes to XLA compiling them (62% of the suite's test
# seconds), mostly to LLVM optimizing the CPU code. A module marked `pytestmark =
# pytest.mark.quick_codegen` runs its tests and its module-scoped fixtures with
# `jax_disable_most_optimizations` (XLA's LLVM level 0, no expensive passes): the same XLA programs,
# compiled to less optimized machine code (float results may differ in the last bits, as they may
# between two machines). Measured on the idle 2-core CPU over every module: the marked modules take
# 216 s less in all (e.g. the tiny experiments 158 → 102 s), while compute-bound modules (random draws
# at width 1024, deep spectra) run up to 7× slower at level 0 and stay unmarked;
# `pytest.mark.full_codegen` exempts one test of a marked module, `quick_codegen` on a test marks it
# alone. Tests assert numbers with tolerances derived from the computation, which hold for any code
# generation; bitwise comparisons compare programs compiled at the same level (a reference that a
# module fixture drew at level 2 once differed in the last bit from the test's run at level 0). The
# persistent cache keys on the compile options, so the two levels never share an entry.


def _quick(node) -> bool:
    return node.get_closest_marker("quick_codegen") is not None and node.get_closest_marker("full_codegen") is None


def _set_quick_codegen(on: bool) -> bool:
    before = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", on)
    return before


@pytest.fixture(autouse=True, scope="module")
def _quick_codegen_module(request):
    """A marked module's module-scoped fixtures compile at its level too (set up after this one), so a
    reference a fixture computes and the test's own result come from programs of the same level."""
    before = _set_quick_codegen(_quick(request.node))
    yield
    _set_quick_codegen(before)


@pytest.fixture(autouse=True)
def _quick_codegen(request):
    before = _set_quick_codegen(_quick(request.node))
    yield
    _set_quick_codegen(before)
