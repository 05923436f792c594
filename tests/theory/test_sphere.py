"""Quadrature over the batch-norm sphere S_B = {x : Σx = 0, ‖x‖² = B} against closed forms and scipy.

Closed forms (v uniform on the unit sphere of R^n, n = B − 1, x_i = √B ⟨v, G e_i⟩ with |G e_i|² = (B−1)/B,
⟨G e_1, G e_2⟩ = −1/B, and E⟨v,a⟩²⟨v,b⟩² = (|a|²|b|² + 2⟨a,b⟩²)/(n(n+2))):
E x₁² = 1, E x₁⁴ = 3(B−1)/(B+1), E x₁x₂ = −1/(B−1), E x₁²x₂² = ((B−1)² + 2)/((B−1)(B+1)).
Scale-free integrands (an orthant, a degree-2 homogeneous product) have the same mean on S_B as under
the Gaussian N(0, B/(B−1)·G) whose radius is independent of the direction: the orthant probability
1/4 + arcsin(ρ)/(2π) (Sheppard) and the arc-cosine kernel (Cho & Saul 2009), ρ = −1/(B−1).
"""

import math
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import integrate, special

from gradjax.theory import sphere as S

_BATCHES = [4, 5, 8, 64, 1000]


@pytest.mark.parametrize("B", _BATCHES)
def test_polynomial_moments(B):
    x, w = S.marginal_rule(B)
    x1, x2, w2 = S.pair_rule(B)
    assert_allclose([w.sum(), w2.sum()], [1.0, 1.0], rtol=1e-14)
    assert_allclose(np.sum(w * x * x), 1.0, rtol=1e-12)
    assert_allclose(np.sum(w * x**4), 3 * (B - 1) / (B + 1), rtol=1e-12)
    assert_allclose(np.sum(w2 * x2 * x2), 1.0, rtol=1e-12)
    assert_allclose(np.sum(w2 * x1 * x2), -1 / (B - 1), rtol=1e-10)
    assert_allclose(np.sum(w2 * x1**2 * x2**2), ((B - 1) ** 2 + 2) / ((B - 1) * (B + 1)), rtol=1e-12)


@pytest.mark.parametrize("B", _BATCHES)
def test_kinked_integrands_at_zero(B):
    # Kinks at 0 (relu): the rule is split there; the references are exact.
    rho = -1 / (B - 1)
    x, w = S.marginal_rule(B, (0.0,))
    x1, x2, w2 = S.pair_rule(B, (0.0,))
    # E|x₁| = √(B−1) Γ(n/2)/(√π Γ((n+1)/2)), n = B − 1 (first absolute moment of a sphere coordinate)
    n = B - 1
    e_abs = math.sqrt(n) * math.exp(special.gammaln(n / 2) - special.gammaln((n + 1) / 2)) / math.sqrt(math.pi)
    assert_allclose(np.sum(w * np.abs(x)), e_abs, rtol=1e-10)
    assert_allclose(np.sum(w2 * (x1 > 0) * (x2 > 0)), 0.25 + math.asin(rho) / (2 * math.pi), rtol=1e-10)
    theta = math.acos(rho)
    kappa1 = (math.sin(theta) + (math.pi - theta) * rho) / (2 * math.pi)
    assert_allclose(np.sum(w2 * np.maximum(x1, 0) * np.maximum(x2, 0)), kappa1, rtol=1e-10)


def _quad(f, lo, hi, points):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        pts = sorted(p for p in points if lo < p < hi)
        return integrate.quad(f, lo, hi, points=pts or None, epsabs=1e-14, epsrel=1e-12, limit=200)[0]


def _density_1d(dim):
    """Density of the first coordinate of a uniform point on the unit sphere of R^dim on (−1, 1)."""
    norm = special.beta(0.5, (dim - 1) / 2)
    return lambda t: (1 - t * t) ** ((dim - 3) / 2) / norm


def _scipy_pair(f, g, B, kinks):
    """E[f(x₁) g(x₂)] by nested scipy quadrature over t = x₁/√(B−1) and the conditional coordinate u."""
    r, rho = math.sqrt(B - 1), -1 / (B - 1)
    p_t, p_u = _density_1d(B - 1), _density_1d(B - 2)

    def inner(t):
        spread = math.sqrt((1 - rho * rho) * (1 - t * t))
        pts = [(k / r - rho * t) / spread for k in kinks]
        return _quad(lambda u: g(r * (rho * t + spread * u)) * p_u(u), -1, 1, pts)

    tangent = [rho * k / r + s * math.sqrt((1 - (k / r) ** 2) * (1 - rho * rho)) for k in kinks for s in (-1, 1)
               if abs(k) < r]
    return _quad(lambda t: f(r * t) * p_t(t) * inner(t), -1, 1, [k / r for k in kinks] + tangent)


@pytest.mark.parametrize("B", [6, 9])
def test_kinks_at_plus_minus_one_match_scipy(B):
    # hard_tanh-type kinks at ±1: clip², the indicator pair, and a smooth (tanh) pair for contrast.
    kinks = (-1.0, 1.0)
    r = math.sqrt(B - 1)
    x, w = S.marginal_rule(B, kinks)
    ref = _quad(lambda t: min(max(r * t, -1), 1) ** 2 * _density_1d(B - 1)(t), -1, 1, [-1 / r, 1 / r])
    assert_allclose(np.sum(w * np.clip(x, -1, 1) ** 2), ref, rtol=1e-10)
    x1, x2, w2 = S.pair_rule(B, kinks)
    inside = lambda v: float(abs(v) < 1)  # noqa: E731
    assert_allclose(np.sum(w2 * (np.abs(x1) < 1) * (np.abs(x2) < 1)), _scipy_pair(inside, inside, B, kinks),
                    rtol=1e-9)
    clip = lambda v: min(max(v, -1.0), 1.0)  # noqa: E731
    assert_allclose(np.sum(w2 * np.clip(x1, -1, 1) * np.clip(x2, -1, 1)), _scipy_pair(clip, clip, B, kinks),
                    rtol=1e-9)
    x1, x2, w2 = S.pair_rule(B)
    assert_allclose(np.sum(w2 * np.tanh(x1) * np.tanh(x2)), _scipy_pair(math.tanh, math.tanh, B, ()), rtol=1e-10)
