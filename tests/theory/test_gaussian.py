"""Gaussian expectations: quadrature accuracy against scipy, closed forms against independent integrals."""

import math

import jax
import jax.numpy as jnp
import pytest
import warnings
from numpy.testing import assert_allclose
from scipy import integrate, special

from gradjax.nn.activations import resolve_activation
from gradjax.theory import gaussian as g

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py (module 21.7 → 19.5 CPU s beside a default run)


def _quad_normal(f, points=(0.0,)):
    """E[f(z)], z ~ N(0,1), by adaptive scipy quadrature (independent of the rule under test)."""
    dens = lambda x: f(x) * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)  # tails of e^{-x²/2} hit underflow
        return integrate.quad(dens, -12, 12, points=list(points), epsabs=1e-15, epsrel=1e-13, limit=400)[0]


def _quad_pair(f, gfun, q1, q2, c):
    """E[f(u1) g(u2)] by nested scipy quadrature, breakpoints at the kinks of relu-type g."""
    s = math.sqrt(1 - c * c)

    def inner(z1):
        kink = -c * z1 / s if s > 0 else 0.0
        return _quad_normal(lambda z2: gfun(math.sqrt(q2) * (c * z1 + s * z2)), points=(kink,))

    return _quad_normal(lambda z1: f(math.sqrt(q1) * z1) * inner(z1))


def test_rule_integrates_normal_moments():
    z, w = g.normal_rule(10.0, 0.5, 8)
    # Moments of N(0,1): 1, 0, 1, 0, 3, 15 for z^6 (closed form (k−1)!!).
    assert_allclose([w.sum(), (w * z).sum(), (w * z**2).sum(), (w * z**4).sum(), (w * z**6).sum()],
                    [1, 0, 1, 3, 15], atol=1e-13)


@pytest.mark.parametrize("q,rtol", [(0.5, 1e-11), (1.0, 1e-11), (4.0, 1e-11), (30.0, 1e-8)])
def test_expect_tanh_matches_scipy(q, rtol):
    ref = _quad_normal(lambda x: math.tanh(math.sqrt(q) * x) ** 2)
    assert_allclose(float(g.expect(lambda x: jnp.tanh(x) ** 2, q)), ref, rtol=rtol)


def _sig(x):
    return 1 / (1 + math.exp(-x))


# Independent float reference implementations (φ, φ′) written from the textbook formulas.
_REF = {
    "sigmoid": (_sig, lambda x: _sig(x) * (1 - _sig(x))),
    "gelu": (lambda x: x * special.ndtr(x), lambda x: special.ndtr(x) + x * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) + x * _sig(x) * (1 - _sig(x))),
    "softplus": (lambda x: math.log1p(math.exp(-abs(x))) + max(x, 0.0), _sig),
    "elu": (lambda x: x if x > 0 else math.expm1(x), lambda x: 1.0 if x > 0 else math.exp(x)),
}


@pytest.mark.parametrize("act", sorted(_REF))
def test_second_and_derivative_moments_match_scipy(act):
    f, fp = _REF[act]
    for q in (0.3, 2.0):
        ref = _quad_normal(lambda x: f(math.sqrt(q) * x) ** 2)
        refd = _quad_normal(lambda x: fp(math.sqrt(q) * x) ** 2)
        assert_allclose(float(g.second_moment(act, q)), ref, rtol=1e-9)
        assert_allclose(float(g.derivative_moment(act, q)), refd, rtol=1e-9)


def test_closed_forms_match_quadrature():
    # erf: E[erf(√q z)²] = (2/π) arcsin(2q/(1+2q)) (Williams 1997) vs scipy; E[erf′²] = (4/π)/√(1+4q).
    for q in (0.2, 1.0, 3.0):
        ref = _quad_normal(lambda x: special.erf(math.sqrt(q) * x) ** 2)
        assert_allclose(float(g.second_moment("erf", q)), ref, rtol=1e-10)
        refd = _quad_normal(lambda x: (2 / math.sqrt(math.pi) * math.exp(-q * x * x)) ** 2)
        assert_allclose(float(g.derivative_moment("erf", q)), refd, rtol=1e-10)
        # relu: E[relu²] = q/2, leaky (a=0.1): (1+a²)q/2, both against scipy.
        assert_allclose(float(g.second_moment("relu", q)), _quad_normal(lambda x: max(x, 0) ** 2 * q), rtol=1e-10)
        lk = lambda x: x if x >= 0 else 0.1 * x  # noqa: E731
        assert_allclose(float(g.second_moment("leaky_relu", q, slope=0.1)),
                        _quad_normal(lambda x: lk(math.sqrt(q) * x) ** 2), rtol=1e-10)


@pytest.mark.parametrize("act,fn", [
    ("relu", lambda x: max(x, 0.0)),
    ("leaky_relu", lambda x: x if x >= 0 else 0.01 * x),
    ("erf", special.erf),
])
def test_pair_closed_forms_match_nested_quad(act, fn):
    # Arc-cosine (Cho & Saul 2009) / arcsine (Williams 1997) kernels vs nested scipy quadrature.
    for q1, q2, c in [(1.0, 1.0, 0.3), (0.5, 2.0, -0.6), (1.5, 1.5, 0.95)]:
        ref = _quad_pair(fn, fn, q1, q2, c)
        assert_allclose(float(g.pair_moment(act, q1, q2, c)), ref, rtol=1e-8, atol=1e-12)


def test_relu_derivative_pair_is_arccos_degree_zero():
    # E[1{u1>0} 1{u2>0}] = (π − arccos c)/(2π): orthant probability of a bivariate normal (Sheppard).
    for c in (-0.9, 0.0, 0.4, 0.99):
        assert_allclose(float(g.derivative_pair_moment("relu", 1.0, 2.0, c)), (math.pi - math.acos(c)) / (2 * math.pi),
                        rtol=1e-13)


@pytest.mark.parametrize("act", ["tanh", "gelu", "softplus"])
def test_mehler_series_matches_two_d_rule_and_scipy(act):
    f = resolve_activation(act)
    fp = g.derivative(f)
    for q1, q2, c in [(1.0, 1.0, 0.5), (2.0, 2.0, 0.97), (0.5, 3.0, -0.4)]:
        series = float(g.pair_moment(act, q1, q2, c))
        rule = float(g.expect_pair(f, f, q1, q2, c))
        assert_allclose(series, rule, rtol=1e-8, atol=1e-13)
        assert_allclose(float(g.derivative_pair_moment(act, q1, q2, c)), float(g.expect_pair(fp, fp, q1, q2, c)),
                        rtol=1e-8)


def test_mehler_tanh_matches_nested_quad():
    for q, c in [(1.0, 0.5), (2.5, 0.9)]:
        ref = _quad_pair(math.tanh, math.tanh, q, q, c)
        assert_allclose(float(g.pair_moment("tanh", q, q, c)), ref, rtol=1e-9)


def test_q_derivative_is_stein_form():
    # d/dq E[φ(√q z)²] = E[φ′² + φφ″] (Stein / heat equation), φ = tanh: φ′ = sech², φ″ = −2 tanh sech².
    for q in (0.5, 2.0):
        sech2 = lambda x: 1 / math.cosh(x) ** 2  # noqa: E731
        ref = _quad_normal(lambda x: sech2(math.sqrt(q) * x) ** 2
                           - 2 * math.tanh(math.sqrt(q) * x) ** 2 * sech2(math.sqrt(q) * x))
        assert_allclose(float(g.q_map_slope_kernel("tanh", q)), ref, rtol=1e-10)


def test_price_theorem_derivative_in_c():
    # ∂/∂c E[φ(u1)φ(u2)] = √(q1 q2) E[φ′(u1)φ′(u2)] (Price 1958), tanh through the series.
    q1, q2, c = 1.3, 0.7, 0.4
    dP = jax.grad(lambda cc: g.pair_moment("tanh", q1, q2, cc))(c)
    assert_allclose(float(dP), math.sqrt(q1 * q2) * float(g.derivative_pair_moment("tanh", q1, q2, c)), rtol=1e-9)


_SELU = (1.0507009873554805, 1.6732632423543772)  # λ, α: Klambauer et al. 2017, arXiv:1706.02515, Eq. 2
_EXP_LINEAR = {  # (φ, φ′) written from the definitions
    "elu": (lambda x: x if x > 0 else math.expm1(x), lambda x: 1.0 if x > 0 else math.exp(x)),
    "selu": (lambda x: _SELU[0] * (x if x > 0 else _SELU[1] * math.expm1(x)),
             lambda x: _SELU[0] * (1.0 if x > 0 else _SELU[1] * math.exp(x))),
}


@pytest.mark.parametrize("act", sorted(_EXP_LINEAR))
def test_exp_linear_pair_moments_near_c_one(act):
    # elu / selu: closed-form conditional mean, rule split at the kink; nested scipy quad split at the
    # kink as the reference, up to c = 0.999 (the Mehler series they used before was off by 8e-4 in
    # selu's E[φ′φ′] at c = 0.99), then Price's theorem through autodiff, also at c = 1.
    f, fp = _EXP_LINEAR[act]
    for q1, q2, c in [(1.0, 1.0, 0.5), (1.0, 1.0, 0.99), (2.0, 2.0, 0.999), (0.5, 3.0, -0.7)]:
        assert_allclose(float(g.pair_moment(act, q1, q2, c)), _quad_pair(f, f, q1, q2, c), rtol=1e-10)
        assert_allclose(float(g.derivative_pair_moment(act, q1, q2, c)), _quad_pair(fp, fp, q1, q2, c), rtol=1e-10)
    q = 1.3
    assert_allclose(float(g.pair_moment(act, q, q, 1.0)), float(g.second_moment(act, q)), rtol=1e-12)
    assert_allclose(float(g.derivative_pair_moment(act, q, q, 1.0)), float(g.derivative_moment(act, q)), rtol=1e-12)
    for c in (0.3, 1.0):
        dP = jax.grad(lambda cc: g.pair_moment(act, q, 0.8, cc))(c)
        assert_allclose(float(dP), math.sqrt(q * 0.8) * float(g.derivative_pair_moment(act, q, 0.8, c)), rtol=1e-12)


@pytest.mark.parametrize("q", [0.05, 0.3, 0.7, 1.0, 2.5, 40.0])
def test_expect_split_at_moving_kinks_matches_closed_forms(q):
    """E[(φ′φ)²] of hard_tanh (kinks ±1/√q move with q) and relu (kink at 0) against closed forms:
    hard_tanh: q ∫_{−k}^{k} z² φ_N(z) dz = q (erf(k/√2) − 2k φ_N(k)), k = 1/√q; relu: q/2.
    elu (φ″ jumps at 0; e^{4x} is steep at large q) against its closed form."""
    k = 1.0 / math.sqrt(q)
    want = q * (math.erf(k / math.sqrt(2)) - 2 * k * math.exp(-k * k / 2) / math.sqrt(2 * math.pi))
    for name, ref in (("hard_tanh", want), ("relu", q / 2)):
        phi = resolve_activation(name)
        d = g.derivative(phi)
        got = g.expect_split(lambda x: (d(x) * phi(x)) ** 2, q, g.closed_forms(name).kinks)
        assert abs(float(got) - ref) <= 1e-11 * max(ref, 1e-3), (name, float(got), ref)
    # elu: (φ′φ)² = x² (x > 0), e^{4x} − 2e^{3x} + e^{2x} (x < 0); E[e^{ax} 1{x<0}] = e^{a²q/2} Φ(−a√q)
    tail = lambda a: math.exp(a * a * q / 2 + special.log_ndtr(-a * math.sqrt(q)))  # noqa: E731
    ref = q / 2 + tail(4) - 2 * tail(3) + tail(2)
    phi = resolve_activation("elu")
    d = g.derivative(phi)
    got = g.expect_split(lambda x: (d(x) * phi(x)) ** 2, q, g.closed_forms("elu").kinks)
    assert abs(float(got) - ref) <= 1e-10 * ref


@pytest.mark.parametrize("q, c", [(0.5, 0.7), (2.0, 0.3)])
def test_mehler_pair_cut_at_moving_kinks_matches_a_split_double_integral(q, c):
    """E[φ′(u₁)² φ(u₂)²] of hard_tanh (kinks ±1/√q, inside the rule's panels unless q = 1) against a nested
    scipy quad split at the kinks (inner: z₂ at (±1/√q − c z₁)/√(1−c²); outer: z₁ at ±1/√q). Unsplit panels
    were off by 5% at q = 2."""
    s, r = math.sqrt(q), math.sqrt(1 - c * c)
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731

    def inner(z1):
        pts = sorted([-12.0, 12.0] + [(k / s - c * z1) / r for k in (-1, 1) if abs((k / s - c * z1) / r) < 12])
        return sum(integrate.quad(lambda z2: min(abs(s * (c * z1 + r * z2)), 1.0) ** 2 * pdf(z2), a, b, epsabs=1e-13)[0]
                   for a, b in zip(pts[:-1], pts[1:]))

    # φ′(√q z₁)² = 1 only between the kinks: the outer integral runs over [−1/√q, 1/√q]
    ref = integrate.quad(lambda z1: inner(z1) * pdf(z1), -1 / s, 1 / s, epsabs=1e-12, limit=200)[0]
    phi = resolve_activation("hard_tanh")
    d = g.derivative(phi)
    got = g.mehler_pair(lambda x: d(x) ** 2, lambda x: phi(x) ** 2, q, q, c, kinks=g.closed_forms("hard_tanh").kinks)
    assert abs(float(got) - ref) <= 1e-10, (float(got), ref)
