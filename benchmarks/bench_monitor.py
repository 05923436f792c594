"""Step-time overhead of the gradient-flow monitor in an optax chain.

For a ResNet-style model (examples/resnet_digits.py: convolutions, batch norm, skips; digits 8×8)
and a transformer-style model (examples/gpt_sequence.py: causal attention, layer norm, MLP), one
jitted training step (loss, gradient, chain update, parameter update) is timed with the chain
``clip_by_global_norm → adam`` and with ``gradient_flow_monitor`` in front of it. The two steps
are timed in alternating rounds (A B A B …) so that the load of the machine falls on both alike;
each round is ``--steps`` steps, the reported time is the median per step over ``--rounds`` rounds.

Usage:  python benchmarks/bench_monitor.py [--rounds 15 --steps 20]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _models(args):
    import jax.numpy as jnp

    from examples import gpt_sequence, resnet_digits

    x, y = resnet_digits.digits(args.batch)
    res = (lambda rngs: resnet_digits.make_model(rngs, args.blocks, args.channels), jnp.asarray(x), jnp.asarray(y),
           resnet_digits.xent)
    tx, ty = gpt_sequence.repeat_task(args.batch, args.seq_len)
    gpt = (lambda rngs: gpt_sequence.make_model(rngs, args.layers, args.width, args.seq_len), jnp.asarray(tx),
           jnp.asarray(ty), gpt_sequence.next_token_xent)
    return {f"resnet (blocks={args.blocks}, C={args.channels}, B={args.batch})": res,
            f"transformer (layers={args.layers}, d={args.width}, T={args.seq_len}, B={args.batch})": gpt}


def _step_fn(factory, loss, monitored: bool, capacity: int):
    import jax
    import optax
    from flax import nnx

    from gradjax.empirical.model import pure_apply
    from gradjax.train.monitor import gradient_flow_monitor

    graphdef, params, rest = nnx.split(factory(nnx.Rngs(0)), nnx.Param, ...)
    apply = pure_apply(graphdef, params, rest)
    core = [optax.clip_by_global_norm(1.0), optax.adam(1e-3)]
    tx = optax.chain(*([gradient_flow_monitor(capacity)] if monitored else []), *core)
    p = nnx.to_pure_dict(params)

    @jax.jit
    def step(p, s, x, y):
        g = jax.grad(lambda q: loss(apply(q, x), y))(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    return step, p, tx.init(p)


def _time_round(step, p, s, x, y, n):
    import jax

    t0 = time.perf_counter()
    for _ in range(n):
        p, s = step(p, s, x, y)
    jax.block_until_ready(p)
    return (time.perf_counter() - t0) / n, p, s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=32)
    args = ap.parse_args(argv)
    import jax

    print(f"machine: {platform.machine()}, {jax.device_count()} {jax.default_backend()} device(s), "
          f"jax {jax.__version__}, python {platform.python_version()}")
    print("| model | chain | ms / step | overhead |\n|---|---|---:|---:|")
    for name, (factory, x, y, loss) in _models(args).items():
        runs = {}
        for monitored in (False, True):
            step, p, s = _step_fn(factory, loss, monitored, args.rounds * args.steps + 1)
            p, s = step(p, s, x, y)  # compile
            runs[monitored] = [step, p, s, []]
        for _ in range(args.rounds):
            for monitored in (False, True):
                r = runs[monitored]
                t, r[1], r[2] = _time_round(r[0], r[1], r[2], x, y, args.steps)
                r[3].append(t)
        base = statistics.median(runs[False][3])
        mon = statistics.median(runs[True][3])
        print(f"| {name} | clip → adam | {1e3 * base:.2f} | |")
        print(f"| {name} | monitor → clip → adam | {1e3 * mon:.2f} | {100 * (mon / base - 1):+.1f}% |")


if __name__ == "__main__":
    main()
