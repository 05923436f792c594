"""Shared helpers of the experiments tests: a persistent XLA cache and a subprocess runner."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.fixture(scope="session")
def xla_cache(tmp_path_factory):
    """One compilation cache shared by the test subprocesses, so reruns skip XLA compilation."""
    return tmp_path_factory.mktemp("xla-cache")


def run_script(args, *, env_extra=None, cache=None, timeout=240):
    """Runs run_fixture_sweep.py with ``args``; returns (returncode, parsed JSON or None, stderr)."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    env["JAX_PLATFORMS"] = "cpu"
    if cache is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, str(HERE / "run_fixture_sweep.py"), *map(str, args)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)
    out = None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        out = json.loads(lines[-1])
    return proc.returncode, out, proc.stderr
