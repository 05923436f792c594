"""A (σ_w², σ_b²) grid of mean-field gradient profiles: one vmapped call against the per-point loop.

Workload: tanh MLP, depth L = 50, a 64 × 64 grid σ_w² ∈ [0.5, 4], σ_b² ∈ [0, 0.5], float64 theory,
``gradjax.theory.gradient_profile`` (L,) at every point. Three ways:

* ``vmap-grid``: ``jax.vmap(jax.vmap(...))`` over the traced numbers of one ``NetConfig``: one
  compilation, one call for the whole grid.
* ``loop``: a Python loop over the points calling ``gradient_profile(cfg.with_(...))``; configs
  differing only in numbers share one compilation, so each point costs a dispatch and a run.
* ``loop-static``: the loop as it was while a config was static under ``jit`` (every point a new XLA
  program): ``jax.jit(gradient_profile, static_argnums=0)``, timed on ``--static-points`` points and
  extrapolated to the grid.

Times: compilation (first call minus a warm call) reported apart; grid times are warm.

Usage:  python benchmarks/bench_theory_grid.py [--n 64 --depth 50 --static-points 4]
"""

from __future__ import annotations

import argparse
import time


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=64, help="grid points per axis")
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--static-points", type=int, default=4, help="points of the static-config loop timed")
    p.add_argument("--loop-points", type=int, default=0, help="points of the loop timed (0: the whole grid)")
    a = p.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    import gradjax
    from gradjax.config import NetConfig

    cfg = NetConfig(depth=a.depth, width=256, activation="tanh")
    sw2 = jnp.linspace(0.5, 4.0, a.n)
    sb2 = jnp.linspace(0.0, 0.5, a.n)
    prof = gradjax.theory.gradient_profile

    grid_fn = jax.jit(lambda s, b: jax.vmap(lambda x: jax.vmap(lambda y: prof(cfg.with_(sigma_w2=x, sigma_b2=y)))(b))(s))
    first, t_first = _timed(lambda: grid_fn(sw2, sb2).block_until_ready())
    grid, t_grid = _timed(lambda: grid_fn(sw2 * 1.0, sb2 * 1.0).block_until_ready())

    points = [(float(x), float(y)) for x in sw2 for y in sb2]
    n_loop = a.loop_points or len(points)
    step = max(1, len(points) // n_loop)
    sel = points[::step][:n_loop]
    _, t_loop_first = _timed(lambda: prof(cfg.with_(sigma_w2=sel[0][0], sigma_b2=sel[0][1])).block_until_ready())
    loop_vals = []

    def run_loop():
        for x, y in sel:
            loop_vals.append(prof(cfg.with_(sigma_w2=x, sigma_b2=y)))
        loop_vals[-1].block_until_ready()

    _, t_loop = _timed(run_loop)
    t_loop_grid = t_loop * len(points) / len(sel)
    # the loop's values equal the grid's (float64, same program batched or not)
    idx = [points.index(pt) for pt in sel]
    err = float(np.max(np.abs(np.stack(loop_vals) - np.asarray(grid).reshape(len(points), -1)[idx])))

    static = jax.jit(lambda c: prof(c), static_argnums=0)
    sp = points[:: max(1, len(points) // a.static_points)][: a.static_points]
    _, t_static = _timed(lambda: [static(cfg.with_(sigma_w2=x, sigma_b2=y)).block_until_ready() for x, y in sp])
    t_static_grid = t_static * len(points) / len(sp)

    print(f"tanh MLP, depth {a.depth}, {a.n} × {a.n} (σ_w², σ_b²) grid, float64; "
          f"{jax.devices()[0].platform}, jax {jax.__version__}")
    print()
    print("| method | compile (s) | grid (s) | note |")
    print("|---|---:|---:|---|")
    print(f"| vmap-grid | {t_first - t_grid:.2f} | {t_grid:.3f} | one call, (n, n, L) = {tuple(grid.shape)} |")
    print(f"| loop | {t_loop_first:.2f} | {t_loop_grid:.2f} | {len(sel)} of {len(points)} points timed"
          + ("" if len(sel) == len(points) else ", extrapolated") + f"; max |loop − grid| = {err:.1e} |")
    print(f"| loop-static | — | {t_static_grid:.0f} | config static under jit: {len(sp)} points timed "
          f"({t_static / len(sp):.2f} s each, compilation included), extrapolated |")
    print()
    print(f"- loop / vmap-grid = **{t_loop_grid / t_grid:.0f}×** (warm)")
    print(f"- loop-static / (vmap-grid incl. its compilation) = **{t_static_grid / t_first:.0f}×**")


if __name__ == "__main__":
    main()
