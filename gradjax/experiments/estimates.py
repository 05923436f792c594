"""Seed statistics behind the agreement rows: an estimate and its standard error from S seeds.

A row whose measurement is a statistic of S random networks agrees with the theory when the two differ
by less than :func:`se_multiple` standard errors of that statistic, estimated from the same S seeds:
the tolerance then says how well the measurement can resolve the theory at this size, and it shrinks
as seeds are added. Two estimators:

* :func:`bootstrap_error` for well-behaved statistics (medians, fitted slopes of a median profile):
  the standard deviation of the statistic over resamplings of the seeds (Efron & Tibshirani 1993,
  "An Introduction to the Bootstrap", ch. 6).
* :func:`log_normal_mean` for means of heavy-tailed per-network quantities (the mean squared singular
  value of a deep relu Jacobian): the plain mean of a few log-normal samples is dominated by the rare
  large ones and falls short of the ensemble mean in most draws, and resampling cannot see tails the
  sample missed. ln X is close to Gaussian across networks (a sum of per-layer log-factors; Hanin &
  Nica 2019, "Products of many large random matrices and gradients in deep neural networks",
  arXiv:1812.05994), so ln E[X] = μ + σ²/2 is estimated from the sample mean and variance of ln X
  with Cox's standard error (Zhou & Gao 1997, "Confidence intervals for the log-normal mean",
  Statistics in Medicine 16:783–790).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import scipy.special  # not scipy.stats: its import takes ~1 s of every process that loads the experiments

#: Two-sided probability that a statistic lands outside its tolerance by chance: that of ±3σ for a
#: normal law (0.27 %), so across a report of ~100 rows a row outside it is very unlikely to be chance.
CHANCE_LEVEL = 2 * float(scipy.special.ndtr(-3.0))  # = 2 scipy.stats.norm.sf(3.0), the same float
#: Resamplings of the seed axis in :func:`bootstrap_error` (the error of a bootstrap SE from B
#: resamplings is ≈ 1/√(2B) relative: 2 % at 1,000).
BOOTSTRAP_RESAMPLES = 1000
#: The resampling generator's seed: a row's tolerance is a deterministic function of its stored data.
BOOTSTRAP_SEED = 0


def log10_mean_square(log10_sv) -> np.ndarray:
    """Per network: log10 of the mean of σ² over its singular values, from log10 σ (…, N) → (…).

    Computed around each network's largest value, so λ = σ² spanning hundreds of decades neither
    overflows nor underflows; exact zeros (log10 σ = −inf: relu's off units) count as λ = 0 in the
    mean over all N. A network with a NaN value gives NaN.
    """
    u = 2.0 * np.asarray(log10_sv, dtype=float)
    top = np.max(np.where(np.isnan(u), -np.inf, u), axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    total = np.sum(np.where(np.isfinite(u), 10.0 ** (u - top), 0.0), axis=-1)
    with np.errstate(divide="ignore"):
        out = top[..., 0] + np.log10(total / u.shape[-1])
    return np.where(np.any(np.isnan(u), axis=-1), np.nan, out)


def se_multiple(seeds: int) -> float:
    """Standard errors spanned by a tolerance when the SE is itself estimated from ``seeds`` seeds:
    Student's t quantile with S − 1 degrees of freedom at :data:`CHANCE_LEVEL` (4.5 at S = 8, 3.7 at
    S = 16, 3.1 at S = 64; 3 as S → ∞)."""
    if seeds < 2:
        raise ValueError(f"seeds must be at least 2 to estimate a standard error, got {seeds}")
    return float(scipy.special.stdtrit(seeds - 1, 1 - CHANCE_LEVEL / 2))  # scipy.stats.t.ppf's own function


def statistical_tolerance(standard_error: float, seeds: int, model: float = 0.0) -> float:
    """Tolerance of a row: :func:`se_multiple` standard errors of the measurement (estimated from
    ``seeds`` seeds), combined in quadrature with ``model``, the theory's own stated accuracy at this
    size (0 where it is exact)."""
    return math.hypot(se_multiple(seeds) * float(standard_error), float(model))


def tolerance_note(standard_error: float, seeds: int, model: float = 0.0, model_why: str = "") -> str:
    """How a row's tolerance was made, for its note: the SE, the seed count, the multiple, the model term."""
    text = f"tolerance {se_multiple(seeds):.2g} × SE {standard_error:.2g} ({seeds} seeds, Student t at 3σ)"
    return text + (f" ⊕ {model:.2g} {model_why}" if model else (f", {model_why}" if model_why else ""))


def mean_error(values) -> float:
    """Standard error of the mean of (S,) per-seed values: sample std (ddof = 1) / √S, same units."""
    v = np.asarray(values)  # in the values' own dtype
    return float(np.std(v, ddof=1) / np.sqrt(len(v)))


def _finite_seeds(values: np.ndarray) -> np.ndarray:
    """Seeds (leading axis) whose values are all finite; refuses fewer than two."""
    v = np.asarray(values, dtype=float)
    keep = np.all(np.isfinite(v.reshape(v.shape[0], -1)), axis=1) if v.ndim > 1 else np.isfinite(v)
    if keep.sum() < 2:
        raise ValueError(f"values must hold at least 2 seeds with finite values, got {int(keep.sum())} of {v.shape[0]}")
    return v[keep]


def bootstrap_error(statistic: Callable[[np.ndarray], float], values, *, resamples: int = BOOTSTRAP_RESAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> float:
    """Bootstrap standard error of ``statistic(values)`` over the seed axis.

    Args:
      statistic: maps an (S, …) array of per-seed values to a scalar (e.g. the fitted slope of the
        seed-median profile).
      values: (S, …) per-seed values; seeds with a non-finite value are left out.
      resamples: number of resamplings with replacement of the S seeds.
      seed: seed of the resampling generator (deterministic result).

    Returns:
      The standard deviation of the statistic over the resamplings (same units as the statistic).
    """
    v = _finite_seeds(values)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.shape[0], size=(resamples, v.shape[0]))
    stats = np.asarray([statistic(v[i]) for i in idx], dtype=float)
    return float(np.std(stats, ddof=1))


def log_normal_mean(log10_values) -> tuple[float, float]:
    """log10 E[X] and its standard error from per-seed log10 X_s, X log-normal across seeds.

    With Y = ln X ~ N(μ, σ²): ln E[X] = μ + σ²/2, estimated by Ȳ + s²/2 with variance
    s²/S + s⁴/(2(S − 1)) (Cox's method; module docstring).

    Args:
      log10_values: (S,) log10 X_s, one per seed; non-finite seeds are left out.

    Returns:
      (estimate, standard error), both in log10 units.
    """
    y = _finite_seeds(np.ravel(log10_values)) * math.log(10.0)
    s = y.size
    var = float(np.var(y, ddof=1))
    estimate = float(np.mean(y)) + var / 2
    se = math.sqrt(var / s + var**2 / (2 * (s - 1)))
    return estimate / math.log(10.0), se / math.log(10.0)
