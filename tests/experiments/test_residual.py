"""residual helpers: the pooled mean of λ from log10 singular values, computed without overflow.

Reference: numpy's mean of λ = s² computed directly in this test (values small enough not to overflow).
"""

import numpy as np
import pytest

from gradjax.experiments import residual


def test_log10_mean_lambda_matches_direct_mean():
    rng = np.random.default_rng(1)
    sv = rng.normal(scale=2.0, size=(3, 16))  # log10 singular values over ±6 decades
    sv[0, :4] = -np.inf  # exact zeros count in the mean, not in the histogram
    u, mean = residual._log10_lambda(sv)
    lam = np.where(np.isfinite(sv), 10.0 ** (2 * np.where(np.isfinite(sv), sv, 0.0)), 0.0)
    assert mean == pytest.approx(np.log10(lam.mean()), abs=1e-10)
    assert np.all(np.isfinite(u)) and u.size <= 44


def test_log10_mean_lambda_survives_huge_values():
    sv = np.full((2, 8), 200.0)  # λ = 1e400 overflows float64; the log-mean does not
    _, mean = residual._log10_lambda(sv)
    assert mean == pytest.approx(400.0)
