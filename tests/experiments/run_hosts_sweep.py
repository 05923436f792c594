"""One host of a multi-host sweep of the fixture experiment, under ``jax.distributed`` on the CPU.

usage: python run_hosts_sweep.py ROOT PORT INDEX COUNT [--fail-cell CELL_ID] [--size tiny]

Host INDEX of COUNT connects to the coordinator on 127.0.0.1:PORT (host 0 runs it) and runs
``run_sweep``. ``--fail-cell`` makes writing that cell raise ``OSError`` (a full disk), which leaves the
sweep of the host that owns the cell: the failure the multi-host protocol must report to every host.
Prints one JSON line: ``{"computed": [...]}`` on success, or ``{"error_type": ..., "error": ...}``
(exit status 1) when the sweep raised.
"""

import argparse
import errno
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `tests.`

import jax  # noqa: E402

from gradjax import io  # noqa: E402
from gradjax.experiments.sweep import run_sweep  # noqa: E402
from tests.experiments import fixture_experiment  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("port")
    p.add_argument("index", type=int)
    p.add_argument("count", type=int)
    p.add_argument("--fail-cell", default=None)
    p.add_argument("--size", default="tiny")
    a = p.parse_args()
    # heartbeat 10 s: a host that dies without raising aborts the others quickly (not what is tested here)
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{a.port}", num_processes=a.count,
                               process_id=a.index, heartbeat_timeout_seconds=10)
    if a.fail_cell is not None:
        real_write = io.write_cell

        def write_cell(path, ds):
            if ds.attrs.get("cell_id") == a.fail_cell:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real_write(path, ds)

        io.write_cell = write_cell
    try:
        rep = run_sweep(fixture_experiment.EXPERIMENT, a.size, root=a.root, quiet=True, command="test")
    except Exception as e:
        print(json.dumps({"error_type": type(e).__name__, "error": str(e)}))
        sys.exit(1)
    print(json.dumps({"computed": rep.computed, "failed": rep.failed}))


if __name__ == "__main__":
    main()
