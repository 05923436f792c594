"""Runs the fixture experiment's sweep in a fresh process (for the sharding and kill/resume tests).

usage: python run_fixture_sweep.py ROOT [--size tiny] [--seeds S] [--devices K] [--seeds-per-call N]
                                        [--kill-on-replace N] [--dtype float32] [--activation NAME]
                                        [--also ROOT:DEVICES:SEEDS_PER_CALL ...]

Prints one JSON line: the sweep report plus ``device_count`` and the device-set sizes the keys were
sharded over (with ``--also``, a list of such reports, one per sweep, run in this one process).
``--activation`` keeps one activation of the grid (fewer compilations). ``--kill-on-replace N`` SIGKILLs the process just before the N-th atomic rename (a
kill in the middle of writing a cell).
"""

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `tests.`

import jax  # noqa: E402

from gradjax.experiments.sweep import run_sweep  # noqa: E402
from tests.experiments import fixture_experiment  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--size", default="tiny")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--devices", type=int, default=None)
    p.add_argument("--seeds-per-call", type=int, default=None)
    p.add_argument("--kill-on-replace", type=int, default=None)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--activation", default=None)
    p.add_argument("--also", action="append", default=[])
    a = p.parse_args()

    shard_sizes, out_shards = [], []
    base = fixture_experiment.EXPERIMENT

    def measure(cell, keys):
        shard_sizes.append(len(keys.sharding.device_set))
        out = base.measure(cell, keys)
        q = out["q"][1]
        out_shards.append(len(q.sharding.device_set) if tuple(q.sharding.spec) == ("seed",) else 1)
        return out

    exp = dataclasses.replace(base, measure=measure)
    if a.activation:
        grid = base.sizes[a.size]
        grid = dataclasses.replace(grid, axes={**grid.axes, "activation": (a.activation,)})
        exp = dataclasses.replace(exp, sizes={**base.sizes, a.size: grid})
    if a.kill_on_replace is not None:
        real_replace, calls = os.replace, []

        def replace(src, dst):
            calls.append(dst)
            if len(calls) == a.kill_on_replace:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst)

        os.replace = replace
    def sweep(root, n_devices, seeds_per_call):
        shard_sizes.clear()
        out_shards.clear()
        devices = jax.devices()[:n_devices] if n_devices else None
        rep = run_sweep(exp, a.size, seeds=a.seeds, root=root, dtype=a.dtype, devices=devices,
                        seeds_per_call=seeds_per_call, quiet=True, command="test")
        return {"computed": rep.computed, "skipped": rep.skipped, "failed": rep.failed,
                "device_count": jax.device_count(), "shard_sizes": list(shard_sizes),
                "out_shards": list(out_shards)}

    first = sweep(a.root, a.devices, a.seeds_per_call)
    if not a.also:
        print(json.dumps(first))
        return
    reports = [first]
    for spec in a.also:
        root, n_dev, spc = spec.split(":")
        reports.append(sweep(root, int(n_dev) if n_dev else None, int(spc) if spc else None))
    print(json.dumps(reports))


if __name__ == "__main__":
    main()
