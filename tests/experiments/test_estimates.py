"""Seed statistics of the agreement rows: per-network log-mean, log-normal mean, bootstrap error.

References are computed in the tests: numpy's direct mean of λ = s², the log-normal mean
exp(μ + σ²/2) of the law the samples are drawn from, and the closed-form bootstrap standard error of
a sample mean, s·√((S − 1)/S)/√S (Efron & Tibshirani 1993, ch. 6).
"""

import math

import numpy as np
import pytest

from gradjax.experiments import estimates


def test_log10_mean_square_matches_direct_mean():
    rng = np.random.default_rng(1)
    sv = rng.normal(scale=2.0, size=(3, 16))  # log10 singular values over ±6 decades
    sv[0, :4] = -np.inf  # exact zeros count in the mean over all N
    lam = np.where(np.isfinite(sv), 10.0 ** (2 * np.where(np.isfinite(sv), sv, 0.0)), 0.0)
    np.testing.assert_allclose(estimates.log10_mean_square(sv), np.log10(lam.mean(axis=-1)), atol=1e-10)


def test_log10_mean_square_survives_huge_values_and_marks_absent_seeds():
    sv = np.full((3, 8), 200.0)  # λ = 1e400 overflows float64; the log-mean does not
    sv[2, 0] = np.nan  # a seed absent from the file
    got = estimates.log10_mean_square(sv)
    assert got[:2] == pytest.approx([400.0, 400.0]) and np.isnan(got[2])
    assert estimates.log10_mean_square(np.full((1, 4), -np.inf))[0] == -np.inf  # all zeros: λ̄ = 0


def test_log_normal_mean_is_mean_plus_half_variance():
    y = np.array([0.1, -0.3, 0.4, 0.0])  # log10 X
    ln = y * math.log(10)
    want = (ln.mean() + ln.var(ddof=1) / 2) / math.log(10)
    want_se = math.sqrt(ln.var(ddof=1) / 4 + ln.var(ddof=1) ** 2 / 6) / math.log(10)
    est, se = estimates.log_normal_mean(np.append(y, np.nan))  # the NaN seed is left out
    assert est == pytest.approx(want, abs=1e-12) and se == pytest.approx(want_se, abs=1e-12)


def test_log_normal_mean_covers_the_true_mean_where_the_plain_mean_falls_short():
    # X = exp(μ + σ z), σ² = 2 (relu Jacobians at L/N ≈ 0.5–1), S = 8 seeds, 4,000 replications.
    # True log10 E X = (μ + σ²/2)/ln 10. The tolerance band (Student t at 3σ on Cox's SE) covers it in
    # ≥ 98.5 % of replications (99.7 % nominal; the normal approximation of the estimator at S = 8 costs
    # a little), while the plain pooled mean lands below the truth in two replications out of three.
    rng = np.random.default_rng(0)
    mu, sig2, S, reps = 0.3, 2.0, 8, 4000
    truth = (mu + sig2 / 2) / math.log(10)
    y = (mu + math.sqrt(sig2) * rng.standard_normal((reps, S))) / math.log(10)
    covered = 0
    for row in y:
        est, se = estimates.log_normal_mean(row)
        covered += abs(est - truth) <= estimates.statistical_tolerance(se, S)
    assert covered / reps > 0.985
    plain = np.log10(np.mean(10.0**y, axis=1))
    assert np.mean(plain < truth) > 0.6  # measured 0.66: two draws in three fall short


def test_bootstrap_error_of_a_mean_matches_its_closed_form():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(32)
    want = x.std(ddof=0) / math.sqrt(x.size)  # the bootstrap SE of a mean, exactly, as resamples → ∞
    got = estimates.bootstrap_error(np.mean, x, resamples=4000)
    assert got == pytest.approx(want, rel=0.05)  # 4,000 resamples: ≈ 1.1 % relative error
    assert estimates.bootstrap_error(np.mean, x) == estimates.bootstrap_error(np.mean, x)  # deterministic


def test_bootstrap_error_takes_per_seed_rows_and_drops_non_finite_seeds():
    x = np.array([[0.0, 1.0], [1.0, 2.0], [np.nan, 0.0], [2.0, 3.0]])
    se = estimates.bootstrap_error(lambda v: float(np.median(v[:, 0])), x)
    assert np.isfinite(se) and se > 0


def test_statistical_tolerance_and_refusals():
    # Student t quantiles at two-sided 0.27 % (scipy.stats.t.ppf(0.99865, ν)): 4.53 at ν = 7, 3.0 as ν → ∞.
    assert estimates.se_multiple(8) == pytest.approx(4.53, abs=0.01)
    assert estimates.se_multiple(10**6) == pytest.approx(3.0, abs=1e-3)
    assert estimates.statistical_tolerance(0.1, 10**6) == pytest.approx(0.3, abs=1e-4)
    assert estimates.statistical_tolerance(0.1, 10**6, 0.4) == pytest.approx(0.5, abs=1e-4)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        estimates.log_normal_mean([0.3, np.nan])
    with pytest.raises(ValueError, match="seeds must be at least 2"):
        estimates.se_multiple(1)


def test_mean_error_is_the_sample_std_over_root_s():
    # closed form: values 1, 2, 3, 4 have mean 2.5, Σ(x − 2.5)² = 5, sample variance 5/3, so s.e. = √(5/3)/2
    from gradjax.experiments.estimates import mean_error
    assert mean_error([1.0, 2.0, 3.0, 4.0]) == pytest.approx((5 / 3) ** 0.5 / 2, rel=1e-15)
