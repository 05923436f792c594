"""phase-diagram helpers: the fitted growth rate and the transient-aware theory rate.

References: the window rate must equal the least-squares slope (numpy.polyfit, computed here) of
``gradjax.theory.gradient_profile`` — the library's mean-field profile — over the same layers.
"""

import numpy as np
import pytest

import gradjax.theory
from gradjax.config import NetConfig
from gradjax.experiments import phase_diagram as pd


def test_growth_rate_is_minus_the_polyfit_slope():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 4, 20))
    start = 7
    want = np.array([[-np.polyfit(np.arange(20 - start), row[start:], 1)[0] for row in block] for block in v])
    np.testing.assert_allclose(pd._growth_rate(v, start), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sw2,sb2", [(0.8, 0.05), (2.5, 0.3), (4.0, 0.0)])
def test_window_rate_matches_the_library_profile(sw2, sb2):
    depth = 12
    start = pd._fit_start(depth)
    cfg = NetConfig(depth=depth, width=64, activation="tanh", sigma_w2=sw2, sigma_b2=sb2)
    prof = np.asarray(gradjax.theory.gradient_profile(cfg, finite_width=False), dtype=float)  # mean field
    want = -np.polyfit(np.arange(depth - start), prof[start:], 1)[0]
    got = float(pd._window_rate("tanh", sw2, sb2, depth, start))
    # float32/float64 theory either way: agreement to 1e-5 log10 per layer
    assert got == pytest.approx(want, abs=1e-5)
