"""Circular convolution under a vmap over seeds: ``gradjax.nn.conv.circular_conv`` against XLA's convolution.

Workload: S seeds, each with its own 3×3 kernel (C → C channels), a batch of B feature maps H × W × C with
circular padding; the timed program is the gradient of Σ y² with respect to the seeds' kernels and inputs,
``jax.vmap`` over the seeds, as a cnn sweep computes it. Two ways:

* ``rolled-matmul``: ``gradjax.nn.conv.circular_conv`` (the k^d rolled copies of x stacked on the channel
  axis, one matrix product with the flattened kernel: under the vmap a batched matrix product);
* ``lax-conv`` (the naive way, what ``circular_conv`` was before): wrap padding + ``lax.conv_general_dilated``
  (under the vmap, a grouped convolution).

Both run at HIGHEST precision; the script checks they agree (relative error printed). Times: the median of
``--rounds`` warm calls each, compilation excluded.

Usage:  python benchmarks/bench_conv.py [--seeds 8 --batch 32 --size 8 --channels 16 --rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time


def _lax_circular_conv(x, kernel):
    import jax
    import jax.numpy as jnp

    r = kernel.shape[0] // 2
    xp = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="wrap")
    dn = jax.lax.conv_dimension_numbers(xp.shape, kernel.shape, ("NHWC", "HWIO", "NHWC"))
    return jax.lax.conv_general_dilated(xp, kernel, (1, 1), "VALID", dimension_numbers=dn,
                                        precision=jax.lax.Precision.HIGHEST)


def _median_seconds(fn, args, rounds):
    import jax

    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=8, help="H = W")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np

    from gradjax.nn.conv import circular_conv

    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (a.seeds, a.batch, a.size, a.size, a.channels))
    w = jax.random.normal(kw, (a.seeds, 3, 3, a.channels, a.channels)) / np.sqrt(9 * a.channels)

    def grad_of(conv):
        loss = lambda xs, ws: jnp.sum(conv(xs, ws) ** 2)  # noqa: E731
        return jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))

    ours, naive = grad_of(circular_conv), grad_of(_lax_circular_conv)
    gx, gw = ours(x, w)
    nx, nw = naive(x, w)
    err = max(float(jnp.max(jnp.abs(gx - nx)) / jnp.max(jnp.abs(nx))),
              float(jnp.max(jnp.abs(gw - nw)) / jnp.max(jnp.abs(nw))))
    t_ours = _median_seconds(ours, (x, w), a.rounds)
    t_naive = _median_seconds(naive, (x, w), a.rounds)
    print(f"S = {a.seeds}, B = {a.batch}, {a.size}×{a.size}×{a.channels}, 3×3 kernels, gradient of Σ y² "
          f"(vmap over seeds); max relative difference of the two gradients {err:.1e}")
    print("| method | ms per call (median) | × rolled-matmul |")
    print("|---|---:|---:|")
    print(f"| rolled-matmul (gradjax.nn.conv.circular_conv) | {1e3 * t_ours:.2f} | 1.00 |")
    print(f"| lax-conv (wrap pad + conv_general_dilated) | {1e3 * t_naive:.2f} | {t_naive / t_ours:.2f} |")


if __name__ == "__main__":
    main()
