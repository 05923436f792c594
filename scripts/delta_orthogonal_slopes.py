"""Fitted gradient-profile slopes of the ``delta-orthogonal`` experiment's networks over widths, beside the theory.

The experiment's own measurement (``gradjax.empirical.gradient_profile`` on the first 8 training digits, projection
loss, float32, kernels regenerated per sweep) at the experiment's critical point (q* = 1/L), for both inits, against
``gradjax.theory.position_gradient_profile`` from the digits' own per-position q0. The numbers quoted in
``gradjax/experiments/delta_orthogonal.py`` for L = 32 (8 seeds; 16, 64, 256 channels) come from:

    PYTHONPATH=. python scripts/delta_orthogonal_slopes.py --depth 32 --seeds 8 --widths 16 64 256
"""

import argparse

import jax.numpy as jnp
import numpy as np

import gradjax.empirical as E
import gradjax.experiments.delta_orthogonal as experiment
import gradjax.theory as T


class _Cell(dict):
    dtype = "float32"


def slopes(depth: int, width: int, init: str, seeds: int, x):
    """(theory slope, measured seed mean, its standard error) of log10 ‖δ_l‖ − log10 ‖δ_L‖ per layer."""
    cfg = experiment.config_of(_Cell(depth=depth, width=width, init=init))
    q0 = experiment._input_lengths(cfg, np.asarray(x))
    theory = float(E.fitted_slope(np.asarray(T.position_gradient_profile(cfg, q0))))
    g = E.gradient_profile(cfg, seeds=seeds, inputs=x, segment=E.segment_length(depth), weights="regenerated").hidden
    s = np.asarray(E.fitted_slope(E.relative_profile(np.asarray(g))))
    return theory, float(s.mean()), float(s.std(ddof=1) / np.sqrt(seeds))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=32)
    p.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--seeds", type=int, default=8)
    a = p.parse_args()
    x = jnp.asarray(experiment._digits(8))
    print("init             width   theory    measured ± s.e.")
    for init in ("gaussian", "delta_orthogonal"):
        for w in a.widths:
            t, m, se = slopes(a.depth, w, init, a.seeds, x)
            print(f"{init:16s} {w:5d}   {t:.5f}   {m:.5f} ± {se:.5f}", flush=True)


if __name__ == "__main__":
    main()
