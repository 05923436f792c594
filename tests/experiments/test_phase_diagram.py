"""phase-diagram: the fitted growth rate and the transient-aware theory rate.

References: the window rate must equal the least-squares slope (numpy.polyfit, computed here) of
``gradjax.theory.gradient_profile`` — the library's mean-field profile — over the same layers.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import gradjax.empirical
import gradjax.theory
from gradjax.config import NetConfig
from gradjax.experiments import phase_diagram as pd


def test_growth_rate_on_several_leading_axes_is_minus_the_polyfit_slope():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 4, 20))
    start = 7
    want = np.array([[-np.polyfit(np.arange(20 - start), row[start:], 1)[0] for row in block] for block in v])
    np.testing.assert_allclose(gradjax.empirical.growth_rate(jnp.asarray(v), start=start), want, rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("sb2", [0.05, 0.0])
def test_window_rate_matches_the_library_profile(sb2):
    depth = 12
    start = pd._fit_start(depth)
    cfg = NetConfig(depth=depth, width=64, activation="tanh", sigma_b2=sb2)
    meas = jnp.asarray([0.8, 2.5, 4.0])
    got = pd._theory_arrays(cfg, meas, meas, start=start)[3]
    for s, g in zip(meas, got):
        prof = np.asarray(gradjax.theory.gradient_profile(cfg.with_(sigma_w2=float(s)), finite_width=False), dtype=float)
        want = -np.polyfit(np.arange(depth - start), prof[start:], 1)[0]
        assert float(g) == pytest.approx(want, abs=1e-10)
