"""The environment of the test suite's subprocesses: the run's XLA cache and quick code generation.

Subprocess tests check what their programs do (files written, equal numbers between two child runs,
the tables a benchmark prints at toy size), never how fast the programs run, and at those sizes a
child spends most of its CPU time compiling. So every child compiles at LLVM optimization level 0
(the same XLA programs, less optimized machine code; a cold tiny fixture sweep took 12.8 s of CPU at
the default level and 5.8 s at level 0 on the 2-core CPU) and reads and writes the run's
compilation cache (tests/conftest.py makes it, shared by the workers, removed at the end of the run),
so a program compiled by one child is read back by the next. Numbers are only compared between
children started this way, never with the test process's own.
"""

from __future__ import annotations

import os

#: XLA flag: LLVM optimization level of the CPU programs (default 2 or 3).
QUICK_CODEGEN = "--xla_backend_optimization_level=0"


def run_cache() -> str | None:
    """The test run's compilation cache folder (tests/conftest.py), or None where it is turned off."""
    cache = os.environ.get("GRADJAX_TEST_XLA_CACHE", "")
    return cache if cache and cache.lower() != "off" else None


def child_env(*xla_flags: str, **extra: str) -> dict:
    """``os.environ`` for a child process: CPU only, ``QUICK_CODEGEN`` plus ``xla_flags`` as its only
    XLA_FLAGS, the run's compilation cache (unless turned off), then ``extra`` variables."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join((QUICK_CODEGEN, *xla_flags)))
    cache = run_cache()
    if cache:
        env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
    env.update(extra)
    return env
