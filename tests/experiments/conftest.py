"""Shared helpers of the experiments tests: a persistent XLA cache and a subprocess runner."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.children import child_env, run_cache

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.fixture(scope="session")
def xla_cache(tmp_path_factory):
    """One compilation cache shared by the test subprocesses, so reruns skip XLA compilation: the test run's
    own (tests/conftest.py, shared by every worker and removed at the end of the run), else a fresh folder."""
    cache = run_cache()
    return Path(cache) if cache else tmp_path_factory.mktemp("xla-cache")


def run_script(args, *, env_extra=None, xla_flags=(), cache=None, timeout=240):
    """Runs run_fixture_sweep.py with ``args`` in a :func:`tests.children.child_env` (plus ``xla_flags``, and
    ``cache`` as its compilation cache when given); returns (returncode, parsed JSON or None, stderr)."""
    env = child_env(*xla_flags, **(env_extra or {}))
    if cache is not None:
        env.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    proc = subprocess.run([sys.executable, str(HERE / "run_fixture_sweep.py"), *map(str, args)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)
    out = None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        out = json.loads(lines[-1])
    return proc.returncode, out, proc.stderr
