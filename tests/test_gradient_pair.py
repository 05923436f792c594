"""``theory.gradient_profile`` and ``empirical.gradient_profile``: one quantity, compared at the defaults.

The pair shares the loss (projection ⟨y, t⟩/B), the batch and the units (log10 ‖δ_l‖/‖δ_L‖ via
``GradNorms.relative()``), so a comparison needs no argument beyond the seed count.
"""

import inspect

import numpy as np

import gradjax.empirical as E
import gradjax.theory as T
from gradjax import NetConfig


def _defaults(fn):
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}


def test_the_pair_has_the_same_loss_and_batch_defaults():
    th, em = _defaults(T.gradient_profile), _defaults(E.gradient_profile)
    assert th["loss"] == em["loss"] == "projection"
    assert th["batch"] == em["batch"]
    assert _defaults(T.gradient_spread)["batch"] == em["batch"]


def test_relu_he_measured_median_matches_the_default_theory_within_0p05_decades():
    # relu / He, L = 50, N = 256, every default (projection loss, batch 64, float32): the seed median of
    # log10 ‖δ_l‖/‖δ_L‖ within 0.05 decades of theory.gradient_profile(cfg) at every layer. 16 seeds: the
    # median's standard error at layer 1 is ≈ 1.25 · 0.094/√16 ≈ 0.03 decades (0.094: gradient_spread).
    cfg = NetConfig(depth=50, width=256, activation="relu", init="he_normal")
    measured = np.median(np.asarray(E.gradient_profile(cfg, seeds=16).relative(), float), axis=0)
    predicted = np.asarray(T.gradient_profile(cfg), float)
    assert np.max(np.abs(measured - predicted)) < 0.05, np.abs(measured - predicted).max()


def test_resmlp_relu_slope_matches_the_default_theory_within_5_percent():
    # resmlp relu, α = 0.3, σ_w² = 2, L = 50, N = 256, 8 seeds, defaults: the fitted slope of the seed-median
    # profile within 5% of the theory's (mean field: ½ log10(1 + α²σ_w²/2) ≈ 0.0187 per layer).
    cfg = NetConfig(depth=50, width=256, arch="resmlp", residual_scale=0.3, activation="relu", init="he_normal")
    measured = np.median(np.asarray(E.gradient_profile(cfg, seeds=8).relative(), float), axis=0)
    predicted = np.asarray(T.gradient_profile(cfg), float)
    s_m, s_t = float(E.fitted_slope(measured)), float(E.fitted_slope(predicted))
    assert abs(s_m / s_t - 1) < 0.05, (s_m, s_t)
