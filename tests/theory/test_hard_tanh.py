"""hard_tanh mean-field quantities against scipy quadrature split at the kinks (float64, 1e-8).

φ(x) = clip(x, −1, 1) has kinks at x = ±1, i.e. at z = ±1/√q for x = √q z: every reference below is a
scipy adaptive quadrature given those points as breakpoints (and, for pairs, the kinks of the inner
integrand in z₂), then root-finding by scipy brentq for q* and the critical σ_w². Nothing here calls
the library's moment code.
"""

import math
import warnings

import pytest
from numpy.testing import assert_allclose
from scipy import integrate, optimize

from gradjax import theory as T
from gradjax.theory import gaussian as g


def _clip(x):
    return min(max(x, -1.0), 1.0)


def _inside(x):
    return float(abs(x) < 1.0)


def _normal(f, points):
    """E[f(z)], z ~ N(0, 1), adaptive quadrature with breakpoints."""
    dens = lambda x: f(x) * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        pts = sorted(p for p in points if abs(p) < 12)
        return integrate.quad(dens, -12, 12, points=pts or None, epsabs=1e-15, epsrel=1e-13, limit=400)[0]


def _kinks(q):
    return (-1 / math.sqrt(q), 1 / math.sqrt(q))


def V(q):
    """E[clip(√q z)²]."""
    return _normal(lambda z: _clip(math.sqrt(q) * z) ** 2, _kinks(q))


def D(q):
    """E[φ′(√q z)²] = P(|√q z| < 1)."""
    return _normal(lambda z: _inside(math.sqrt(q) * z), _kinks(q))


def pair(f, q, c):
    """E[f(u₁) f(u₂)], u of variance q and correlation c, nested quadrature split at every kink."""
    s = math.sqrt(1 - c * c)

    def inner(z1):
        return _normal(lambda z2: f(math.sqrt(q) * (c * z1 + s * z2)),
                       [(k - c * z1) / s for k in _kinks(q)])

    outer = list(_kinks(q)) + ([k / c for k in _kinks(q)] if c else [])
    return _normal(lambda z1: f(math.sqrt(q) * z1) * inner(z1), outer)


def q_star_ref(sw, sb):
    return optimize.brentq(lambda q: sw * V(q) + sb - q, 1e-6, 100.0, xtol=1e-15, rtol=1e-14)


@pytest.mark.parametrize("q", [0.05, 0.5, 1.0, 3.0, 30.0])
def test_moments_closed_forms(q):
    # The closed forms the library uses, E[φ²] = q(erf(k/√2) − 2kφ_N(k)) + 2Q(k) and E[φ′²] = erf(k/√2)
    # (k = 1/√q), against the split quadrature. (The unsplit 320-node rule was off by up to 13% in
    # E[φ′²] at q = 30.)
    assert_allclose(float(g.second_moment("hard_tanh", q)), V(q), rtol=1e-12)
    assert_allclose(float(g.derivative_moment("hard_tanh", q)), D(q), rtol=1e-12)
    assert_allclose(float(g.derivative_moment("hard_tanh", q, power=4)), D(q), rtol=1e-12)
    assert float(g.mean_moment("hard_tanh", q)) == 0.0


@pytest.mark.parametrize("q,c", [(1.0, 0.3), (0.5, -0.6), (1.5, 0.95), (2.0, 0.999), (4.0, 0.0)])
def test_pair_moments(q, c):
    assert_allclose(float(g.pair_moment("hard_tanh", q, q, c)), pair(_clip, q, c), rtol=1e-10, atol=1e-14)
    assert_allclose(float(g.derivative_pair_moment("hard_tanh", q, q, c)), pair(_inside, q, c), rtol=1e-10)


def test_pair_moments_at_c_one_and_price():
    # c = 1: the pair moments are the 1-D ones; ∂/∂c E[φφ] = q E[φ′φ′] (Price), also at c = 1.
    import jax

    q = 1.3
    assert_allclose(float(g.pair_moment("hard_tanh", q, q, 1.0)), V(q), rtol=1e-12)
    assert_allclose(float(g.derivative_pair_moment("hard_tanh", q, q, 1.0)), D(q), rtol=1e-12)
    for c in (0.4, 1.0):
        dP = jax.grad(lambda cc: g.pair_moment("hard_tanh", q, 0.7, cc))(c)
        want = math.sqrt(q * 0.7) * float(g.derivative_pair_moment("hard_tanh", q, 0.7, c))
        assert_allclose(float(dP), want, rtol=1e-12)


@pytest.mark.parametrize("sw,sb", [(1.5, 0.05), (2.5, 0.3), (0.8, 0.1)])
def test_q_map_chi1_c_map(sw, sb):
    q = 0.7
    assert_allclose(float(T.q_map("hard_tanh", sw, sb, q)), sw * V(q) + sb, rtol=1e-10)
    qs = q_star_ref(sw, sb)
    assert_allclose(float(T.q_star("hard_tanh", sw, sb)), qs, rtol=1e-9)
    assert_allclose(float(T.chi_1("hard_tanh", sw, sb)), sw * D(qs), rtol=1e-9)
    for c in (0.2, 0.7):
        want = (sw * pair(_clip, qs, c) + sb) / (sw * V(qs) + sb)
        assert_allclose(float(T.c_map("hard_tanh", sw, sb, c)), want, rtol=1e-9)


@pytest.mark.parametrize("sb", [0.05, 0.3])
def test_critical_sigma_w2(sb):
    # χ₁(σ_w²) = σ_w² P(|√q*(σ_w²) z| < 1) = 1 solved by brentq over the split quadrature.
    # (The unsplit rule put it 2% off at σ_b² = 0.3.)
    want = optimize.brentq(lambda sw: sw * D(q_star_ref(sw, sb)) - 1, 1.0, 10.0, xtol=1e-14, rtol=1e-13)
    assert_allclose(float(T.critical_sigma_w2("hard_tanh", sb)), want, rtol=1e-8)
