"""Gaussian expectations of activations: E[f(√q z)] and E[f(u₁) g(u₂)] for correlated pairs.

Every mean-field quantity in gradjax is one of a handful of Gaussian integrals of the activation
φ and its derivative φ′. Each activation has one record in :data:`MOMENTS` holding its closed forms
(second moment, mean, derivative moments, pair moment, derivative pair moment) and its kinks: linear;
relu / leaky_relu / prelu through the arc-cosine kernel; erf through the arcsine kernel; hard_tanh
through the normal CDF; and for the pair moments of hard_tanh, elu and selu, the conditional mean
E[φ(u₂) | u₁] in closed form, integrated over u₁ by a rule split at the kinks. Where a record has no
closed form the integral is computed by a fixed composite Gauss–Legendre rule on the standard-normal
variable, or, for pairs, by the Mehler series (jittable, vmappable, differentiable in q and c).

Quadrature. z ~ N(0, 1) is integrated over [−R, R] cut into panels of equal width with Gauss–Legendre
nodes in each panel, weighted by the normal density. Panels meet at 0, so the kinks at the origin of
elu and selu fall on panel edges; no rule straddles a kink: the relu family is in closed form, and
the kinks of hard_tanh, ±1/√q, which move with q, are breakpoints of its rules. The truncation error
is the normal tail beyond R (e^{-R²/2}). Measured accuracy (tests/theory/test_gaussian.py, against
scipy quad): E[tanh(√q z)²] to ~1e-12 relative for q ≤ 4 and ~1e-9 for q = 30 with the 1-D rule; the
2-D rule is coarser (≲1e-8 for q ≤ 4); the split pair rules ≲1e-12 up to c = 0.999
(tests/theory/test_hard_tanh.py, test_gaussian.py). The Mehler series is exact at c = 0 and c = 1 and
converges fast for smooth φ (tanh, gelu, softplus: 1e-9); for a φ′ with a jump it would converge
slowly as c → 1 (selu's E[φ′φ′] was off by 8e-4 at c = 0.99), which is why elu / selu use the split rule.

For a pair, u₁ = √q₁ z₁ and u₂ = √q₂ (c z₁ + √(1−c²) z₂) with z₁, z₂ independent standard normals,
so E[u₁²] = q₁, E[u₂²] = q₂ and corr(u₁, u₂) = c.

References:
  Poole et al. 2016, "Exponential expressivity in deep neural networks through transient chaos",
  arXiv:1606.05340 (the q- and c-maps as Gaussian integrals).
  Cho & Saul 2009, "Kernel Methods for Deep Learning" (arc-cosine kernel of relu).
  Williams 1997, "Computing with infinite networks" (arcsine kernel of erf).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gradjax.names import DEFAULT_LEAKY_SLOPE, DEFAULT_PRELU_SLOPE
from gradjax.nn.activations import SELU_ALPHA, SELU_SCALE, resolve_activation

# 1-D rule: panels of width 0.5 on [−10, 10] (tail mass beyond 10 is ~1.5e-23), 8 Gauss–Legendre
# nodes each: 320 nodes. Accuracy checked in tests/theory/test_gaussian.py.
_R_1D, _PANEL_1D, _NODES_1D = 10.0, 0.5, 8
# 2-D (product) rule: panels of width 1 on [−8, 8] (tail ~1.2e-15), 8 nodes each: 128² nodes.
# Coarser than the 1-D rule because the pair integrals sit inside fixed-point solves on grids.
_R_2D, _PANEL_2D, _NODES_2D = 8.0, 1.0, 8

# Mehler (Hermite) series for pair moments: E[f(u₁) g(u₂)] = Σ_k a_k b_k c^k with a_k, b_k the
# normalized Hermite coefficients of f(√q₁ ·), g(√q₂ ·). 160 terms, plus the exact remainder at
# c = 1 (from the 1-D rule) carried as a c^{K+1} term; checked against the 2-D rule and scipy dblquad
# in tests/theory/test_gaussian.py. A power series in c makes the c-map and its slope cheap to
# evaluate inside fixed-point solves.
_HERMITE_ORDER = 160

# Rule split at moving kinks (pair moments of hard_tanh, elu, selu): every segment between breakpoints is cut at
# these fractions, graded geometrically towards both ends (down to 1e-4 of the segment) so that the
# boundary layer of width ~√(1−c²) the conditional mean has near c = ±1 is resolved; 8 Gauss–Legendre
# nodes per sub-panel. Accuracy (1e-11 against scipy quad split at the kinks) checked in
# tests/theory/test_hard_tanh.py and test_gaussian.py.
_HALF_GRADING = (0.0, 1e-4, 1e-3, 5e-3, 0.02, 0.05, 0.1, 0.18, 0.27, 0.38)
_GRADING = np.concatenate([_HALF_GRADING, [0.5], 1.0 - np.asarray(_HALF_GRADING)[::-1]])
_NODES_KINKED = 8


@functools.lru_cache(maxsize=None)
def normal_rule(radius: float, panel: float, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss–Legendre nodes ``z`` and weights ``w`` for E[f(z)], z ~ N(0, 1).

    Returns:
      ``(z, w)``, both (n,) float64 numpy arrays, n = nodes · 2·radius/panel, Σ w ≈ 1.
    """
    x, w = np.polynomial.legendre.leggauss(nodes)
    n_panels = int(round(2 * radius / panel))
    left = -radius + panel * np.arange(n_panels)
    z = (left[:, None] + panel * (x[None, :] + 1.0) / 2.0).ravel()
    wz = np.tile(w * panel / 2.0, n_panels) * np.exp(-z * z / 2.0) / math.sqrt(2.0 * math.pi)
    return z, wz


@functools.lru_cache(maxsize=None)
def hermite_table(order: int = _HERMITE_ORDER) -> np.ndarray:
    """Normalized probabilists' Hermite polynomials He_k(z)/√k! at the 1-D nodes: (order+1, n).

    Three-term recurrence h_{k+1} = (z h_k − √k h_{k−1})/√(k+1), stable for the normalized family.
    """
    z, _ = normal_rule(_R_1D, _PANEL_1D, _NODES_1D)
    h = np.zeros((order + 1, z.size))
    h[0] = 1.0
    if order >= 1:
        h[1] = z
    for k in range(1, order):
        h[k + 1] = (z * h[k] - math.sqrt(k) * h[k - 1]) / math.sqrt(k + 1)
    return h


def _rule(two_d: bool = False):
    z, w = normal_rule(_R_2D, _PANEL_2D, _NODES_2D) if two_d else normal_rule(_R_1D, _PANEL_1D, _NODES_1D)
    return jnp.asarray(z), jnp.asarray(w)


def _safe_sqrt(x):
    # √ at 0 has an infinite derivative; the clamp keeps gradients finite (the integrands below are
    # smooth in q, so the clamped value only affects q = 0 exactly).
    return jnp.sqrt(jnp.maximum(x, 1e-300 if jnp.asarray(x).dtype == jnp.float64 else 1e-37))


def derivative(f):
    """φ′ of an elementwise φ, elementwise, any shape (autodiff of Σφ, exact for elementwise φ)."""
    return jax.grad(lambda x: jnp.sum(f(x)))


def expect(f, q):
    """E[f(√q z)], z ~ N(0, 1), by the 1-D composite Gauss–Legendre rule.

    Args:
      f: elementwise function.
      q: () variance (≥ 0).

    Returns:
      () the expectation.
    """
    z, w = _rule()
    q = jnp.asarray(q, z.dtype)
    return jnp.sum(w * f(_safe_sqrt(q) * z))


def expect_split(f, q, kinks=()):
    """E[f(√q z)], z ~ N(0, 1), by a rule split at the kinks of f: the points z = k/√q, k in ``kinks``.

    A Gauss–Legendre panel that straddles a kink of f (where f or f′ jumps) converges slowly, so every
    segment between the breakpoints ±R and k/√q is cut into sub-panels graded towards both ends (the
    rule of the pair moments; 1e-11 against closed forms in tests/theory/test_gaussian.py). Without
    kinks this is :func:`expect`.

    Args:
      f: elementwise function.
      q: () variance (≥ 0).
      kinks: the points x where f(x) is not smooth (``closed_forms(activation).kinks`` for an
        activation's moments).

    Returns:
      () the expectation.
    """
    if not kinks:
        return expect(f, q)
    cuts = jnp.clip(_kink_cuts(q, kinks), -_R_1D, _R_1D)
    r = jnp.full((1,), _R_1D, cuts.dtype)
    z, w = _graded_rule(jnp.sort(jnp.concatenate([-r, r, cuts])))
    return jnp.sum(w * f(_safe_sqrt(jnp.asarray(q, z.dtype)) * z))


def expect_pair(f, g, q1, q2, c):
    """E[f(u₁) g(u₂)] for u₁ = √q₁ z₁, u₂ = √q₂ (c z₁ + √(1−c²) z₂), by the 2-D product rule.

    Args:
      f, g: elementwise functions.
      q1, q2: () variances; c: () correlation in [−1, 1].

    Returns:
      () the expectation.
    """
    z, w = _rule(two_d=True)
    q1, q2, c = (jnp.asarray(v, z.dtype) for v in (q1, q2, c))
    s = _safe_sqrt(1.0 - c * c)
    z1, z2 = z[:, None], z[None, :]
    u1 = _safe_sqrt(q1) * z1
    u2 = _safe_sqrt(q2) * (c * z1 + s * z2)
    return jnp.sum(w[:, None] * w[None, :] * f(u1) * g(u2))


def _cut_rule(cuts):
    """The 1-D rule with every panel also cut at the points ``cuts`` (z units, (K,), may be traced) that fall
    inside it: (P·(K+1)·nodes,) nodes and weights, static in size (a cut outside a panel gives an empty piece)."""
    x, wx = np.polynomial.legendre.leggauss(_NODES_1D)
    a = jnp.asarray(-_R_1D + _PANEL_1D * np.arange(int(round(2 * _R_1D / _PANEL_1D))), cuts.dtype)
    b = a + _PANEL_1D
    edges = jnp.concatenate([a[:, None], jnp.clip(jnp.sort(cuts)[None, :], a[:, None], b[:, None]), b[:, None]], axis=1)
    lo, hi = edges[:, :-1].ravel(), edges[:, 1:].ravel()
    z = (lo[:, None] + (hi - lo)[:, None] * (jnp.asarray(x, cuts.dtype)[None, :] + 1) / 2).ravel()
    return z, ((hi - lo)[:, None] / 2 * jnp.asarray(wx, cuts.dtype)[None, :]).ravel() * _normal_pdf(z)


def _moving(kinks):
    """The kinks that a rule must be cut at: x = 0 maps to z = 0 at every q, already a panel edge of the 1-D rule."""
    return tuple(k for k in kinks if k != 0.0)


def _kink_cuts(q, kinks):
    """z = k/√q of every kink k of f(√q z) (clamped to ±R for q → 0)."""
    s = _safe_sqrt(jnp.asarray(q, float))
    return jnp.stack([k / jnp.maximum(s, 1.0 / _R_1D) for k in kinks])


def _hermite_at(z, order):
    """Normalized He_k(z)/√k!, k = 0..order, at traced nodes (the recurrence of :func:`hermite_table`)."""
    def step(carry, k):
        prev, h = carry
        nxt = (z * h - jnp.sqrt(k) * prev) / jnp.sqrt(k + 1)
        return (h, nxt), nxt

    _, rest = jax.lax.scan(step, (jnp.ones_like(z), z), jnp.arange(1, order, dtype=z.dtype))
    return jnp.concatenate([jnp.ones_like(z)[None], z[None], rest])


def hermite_coefficients(f, q, order: int = _HERMITE_ORDER, kinks=()):
    """a_k = E[f(√q z) He_k(z)]/√k!, k = 0..order, by the 1-D rule (its panels cut at the kinks k/√q of f).

    Returns:
      (order+1,) coefficients; Σ_k a_k² = E[f(√q z)²] (Parseval).
    """
    kinks = _moving(kinks)
    if kinks:
        z, w = _cut_rule(_kink_cuts(q, kinks))
        return _hermite_at(z, order) @ (w * f(_safe_sqrt(jnp.asarray(q, z.dtype)) * z))
    z, w = _rule()
    h = jnp.asarray(hermite_table(order))
    q = jnp.asarray(q, z.dtype)
    return h @ (w * f(_safe_sqrt(q) * z))


def mehler_series(f, g, q1, q2, order: int = _HERMITE_ORDER, kinks=()):
    """c ↦ E[f(u₁) g(u₂)] by Mehler's expansion Σ_k a_k b_k c^k (see module docstring).

    The coefficients are computed once (1-D rule) and the returned function evaluates the series:
    cheap inside fixed-point solves over c. The remainder beyond ``order`` is known exactly at c = 1
    (the 1-D integral of f(√q₁z) g(√q₂z)); it is carried as a c^{order+1} term, exact at c = 0 and 1.
    ``kinks``: the points x where f or g is not smooth; every integral's panels are cut at them (a panel
    straddling hard_tanh's ±1/√q cost up to 10% in E[φ′(u₁)² φ(u₂)²]).
    """
    kinks = _moving(kinks)
    a = hermite_coefficients(f, q1, order, kinks)
    b = hermite_coefficients(g, q2, order, kinks)
    z, w = _cut_rule(jnp.concatenate([_kink_cuts(q1, kinks), _kink_cuts(q2, kinks)])) if kinks else _rule()
    q1, q2 = (jnp.asarray(v, z.dtype) for v in (q1, q2))
    ab = a * b
    rest = jnp.sum(w * f(_safe_sqrt(q1) * z) * g(_safe_sqrt(q2) * z)) - jnp.sum(ab)

    def series(c):
        powers = jnp.asarray(c, z.dtype) ** jnp.arange(order + 2, dtype=z.dtype)
        return jnp.sum(ab * powers[:-1]) + rest * powers[-1]

    return series


def mehler_pair(f, g, q1, q2, c, order: int = _HERMITE_ORDER, kinks=()):
    """E[f(u₁) g(u₂)] by Mehler's expansion (see :func:`mehler_series`)."""
    return mehler_series(f, g, q1, q2, order, kinks)(c)


# ---- activation moments: one table of closed forms per activation -----------------------------

def _ndtr(x):
    return jax.scipy.special.ndtr(x)


def _normal_pdf(x):
    return jnp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _arccos_kernels(c):
    """Arc-cosine kernels of degree 1 and 0 (Cho & Saul 2009) for unit variances.

    κ₁(c) = E[relu(u₁) relu(u₂)] = (sin θ + (π − θ) cos θ)/(2π), κ₀(c) = E[1{u₁>0} 1{u₂>0}] = (π − θ)/(2π),
    θ = arccos c.
    """
    c = jnp.clip(c, -1.0, 1.0)
    theta = jnp.arccos(c)
    return (_safe_sqrt(1.0 - c * c) + (jnp.pi - theta) * c) / (2 * jnp.pi), (jnp.pi - theta) / (2 * jnp.pi)


# Piecewise-linear φ(x) = a x + (1 − a) relu(x) (relu: a = 0; leaky_relu / prelu: a = the slope).
def _pl_second(q, a):
    return (1 + a * a) * q / 2


def _pl_mean(q, a):
    return (1 - a) * jnp.sqrt(q / (2 * jnp.pi))


def _pl_derivative(q, power, a):
    return (1 + a**power) / 2 + 0.0 * q


def _pl_pair(q1, q2, c, a):
    # E[u₁ relu(u₂)] = √(q₁q₂) c/2, so E[φ(u₁)φ(u₂)] = √(q₁q₂)[a c + (1−a)² κ₁(c)].
    return jnp.sqrt(q1 * q2) * (a * c + (1 - a) ** 2 * _arccos_kernels(c)[0])


def _pl_derivative_pair(q1, q2, c, a):
    return a + (1 - a) ** 2 * _arccos_kernels(c)[1] + 0.0 * q1 * q2


def _relu_form(fn):
    """The piecewise-linear form at slope 0 (relu ignores ``slope``)."""
    return lambda *args: fn(*args[:-1], 0.0)


def _erf_derivative(q, power, a):
    # φ′ = (2/√π) e^{−x²}: E[φ′^p] = (2/√π)^p E[e^{−p q z²}] = (2/√π)^p / √(1 + 2pq).
    return (2 / math.sqrt(math.pi)) ** power / jnp.sqrt(1 + 2 * power * q)


def _hard_tanh_second(q, a):
    # E[clip(√q z)²] = q E[z² 1{|z|<k}] + P(|z|>k), k = 1/√q: q(erf(k/√2) − 2kφ_N(k)) + erfc(k/√2).
    s = _safe_sqrt(q)
    k = 1.0 / s
    return q * jax.scipy.special.erf(k / math.sqrt(2)) - 2 * s * _normal_pdf(k) + jax.scipy.special.erfc(k / math.sqrt(2))


def _hard_tanh_derivative(q, power, a):
    # φ′ = 1{|x| < 1}, so every power has the same mean P(|√q z| < 1) = erf(1/√(2q)).
    return jax.scipy.special.erf(1.0 / (math.sqrt(2) * _safe_sqrt(q)))


def _graded_rule(breaks):
    """Normal-weighted Gauss–Legendre nodes on [breaks[0], breaks[-1]], every segment between
    consecutive breakpoints cut into sub-panels graded towards both ends (_GRADING).

    Args:
      breaks: (k,) sorted breakpoints (may be traced; equal neighbours give empty segments).
    Returns:
      ``(z, w)``: (n,) each, Σ w f(z) ≈ ∫ f(z) φ_N(z) dz over the range.
    """
    x, wx = np.polynomial.legendre.leggauss(_NODES_KINKED)
    g = jnp.asarray(_GRADING, breaks.dtype)
    lo, hi = breaks[:-1], breaks[1:]
    edges = lo[:, None] + (hi - lo)[:, None] * g[None, :]  # (k−1, m+1)
    a, b = edges[:, :-1].ravel(), edges[:, 1:].ravel()
    z = (a[:, None] + (b - a)[:, None] * (jnp.asarray(x, breaks.dtype)[None, :] + 1) / 2).ravel()
    w = ((b - a)[:, None] / 2 * jnp.asarray(wx, breaks.dtype)[None, :]).ravel() * _normal_pdf(z)
    return z, w


def _hard_tanh_conditional(mu, sig):
    """(E[clip(Y)], P(|Y| < 1)) for Y ~ N(μ, σ²): E[clip(Y)] = −P(Y < −1) + P(Y > 1) + E[Y 1{|Y| < 1}],
    E[Y 1{|Y|<1}] = μ p_in − σ(φ_N(hi) − φ_N(lo))."""
    lo, hi = (-1.0 - mu) / sig, (1.0 - mu) / sig
    p_in = _ndtr(hi) - _ndtr(lo)
    return _ndtr(-hi) - _ndtr(lo) + mu * p_in - sig * (_normal_pdf(hi) - _normal_pdf(lo)), p_in


def _exp_linear_conditional(scale, alpha):
    """(E[φ(Y)], E[φ′(Y)]) for Y ~ N(μ, σ²), φ(x) = λ x (x > 0), λ α (eˣ − 1) (x < 0) (elu: λ = α = 1):
    E[Y 1{Y>0}] = μΦ(d) + σφ_N(d), E[e^Y 1{Y<0}] = e^{μ+σ²/2} Φ(−d − σ), d = μ/σ (in log space, so that
    large μ does not overflow)."""

    def conditional(mu, sig):
        d = mu / sig
        tail = jnp.exp(mu + 0.5 * sig * sig + jax.scipy.special.log_ndtr(-d - sig))
        pos = _ndtr(d)
        return scale * (mu * pos + sig * _normal_pdf(d) + alpha * (tail - (1.0 - pos))), scale * (pos + alpha * tail)

    return conditional


def _split_pair_moments(activation, conditional, kinks, q1, q2, c):
    """(E[φ(u₁)φ(u₂)], E[φ′(u₁)φ′(u₂)]) by a 1-D rule split at the kinks, for φ with a closed-form
    conditional mean.

    Given z₁, u₂ ~ N(μ, σ²) with μ = √q₂ c z₁, σ² = q₂(1 − c²), so E[φ(u₂) | z₁] and E[φ′(u₂) | z₁] are
    closed forms (``conditional``). What is left is a 1-D integral over z₁ of a function that is smooth
    between the kinks k/√q₁ of φ(√q₁ z₁) and the points k/(c√q₂) where the conditional mean crosses the
    kinks of φ (a kink itself as c → ±1): the rule is split at all of them, graded towards them.
    """
    s1, s2 = _safe_sqrt(q1), _safe_sqrt(q2)
    k1 = 1.0 / jnp.maximum(s1, 1.0 / _R_1D)
    kc = jnp.sign(c) / jnp.maximum(jnp.abs(c) * s2, 1.0 / _R_1D)
    r = jnp.full_like(k1, _R_1D)
    breaks = [-r, r] + [jnp.clip(k * v, -r, r) for k in kinks for v in (k1, kc)]
    z, w = _graded_rule(jnp.sort(jnp.stack(breaks)))
    m, md = conditional(s2 * c * z, _safe_sqrt(q2 * (1.0 - c * c)))
    f = resolve_activation(activation)
    u1 = s1 * z
    return jnp.sum(w * f(u1) * m), jnp.sum(w * derivative(f)(u1) * md)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _split_pair(activation, conditional, kinks, q1, q2, c):
    """E[φ(u₁)φ(u₂)] of :func:`_split_pair_moments`, with ∂/∂c by Price's theorem: √(q₁q₂) E[φ′(u₁)φ′(u₂)]
    (exact also at c = ±1, where the conditional variance q₂(1 − c²) vanishes)."""
    return _split_pair_moments(activation, conditional, kinks, q1, q2, c)[0]


@_split_pair.defjvp
def _split_pair_jvp(activation, conditional, kinks, primals, tangents):
    q1, q2, c = primals
    t1, t2, tc = tangents
    value, dq = jax.jvp(lambda a, b: _split_pair_moments(activation, conditional, kinks, a, b, c)[0],
                        (q1, q2), (t1, t2))
    price = jnp.sqrt(q1 * q2) * _split_pair_moments(activation, conditional, kinks, q1, q2, c)[1]
    return value, dq + price * tc


def _split_forms(activation, conditional, kinks):
    """The pair and derivative-pair forms of an activation with a closed-form conditional mean."""

    def pair(q1, q2, c, a):
        return _split_pair(activation, conditional, kinks, *(jnp.asarray(v, float) for v in (q1, q2, c)))

    def derivative_pair(q1, q2, c, a):
        return _split_pair_moments(activation, conditional, kinks, q1, q2, c)[1]

    return {"pair": pair, "derivative_pair": derivative_pair, "kinks": kinks}


@dataclasses.dataclass(frozen=True)
class ClosedForms:
    """The closed forms of one activation's Gaussian moments; None where there is none (quadrature).

    Every form takes the activation's slope as its last argument (ignored by activations without one).

    Attributes:
      second: (q, a) ↦ E[φ(√q z)²].
      mean: (q, a) ↦ E[φ(√q z)].
      derivative: (q, power, a) ↦ E[φ′(√q z)^power].
      pair: (q₁, q₂, c, a) ↦ E[φ(u₁)φ(u₂)].
      derivative_pair: (q₁, q₂, c, a) ↦ E[φ′(u₁)φ′(u₂)].
      kinks: the points x where φ or φ′ is not smooth (fixed in x; numerical rules split there).
    """

    second: Callable | None = None
    mean: Callable | None = None
    derivative: Callable | None = None
    pair: Callable | None = None
    derivative_pair: Callable | None = None
    kinks: tuple[float, ...] = ()


def _zero_mean(q, a):
    return 0.0 * q


_PIECEWISE_LINEAR = ClosedForms(second=_pl_second, mean=_pl_mean, derivative=_pl_derivative, pair=_pl_pair,
                                derivative_pair=_pl_derivative_pair, kinks=(0.0,))

#: Closed forms per registry activation (every name of ``gradjax.nn.ACTIVATIONS`` has an entry).
MOMENTS: dict[str, ClosedForms] = {
    "linear": ClosedForms(
        second=lambda q, a: q + 0.0, mean=_zero_mean, derivative=lambda q, p, a: jnp.ones_like(q),
        pair=lambda q1, q2, c, a: jnp.sqrt(q1 * q2) * c,
        derivative_pair=lambda q1, q2, c, a: jnp.ones_like(c * q1 * q2)),
    "relu": ClosedForms(second=_relu_form(_pl_second), mean=_relu_form(_pl_mean),
                        derivative=_relu_form(_pl_derivative), pair=_relu_form(_pl_pair),
                        derivative_pair=_relu_form(_pl_derivative_pair), kinks=(0.0,)),
    "leaky_relu": _PIECEWISE_LINEAR,
    "prelu": _PIECEWISE_LINEAR,
    "erf": ClosedForms(  # arcsine kernel (Williams 1997)
        second=lambda q, a: 2 / jnp.pi * jnp.arcsin(2 * q / (1 + 2 * q)), mean=_zero_mean,
        derivative=_erf_derivative,
        pair=lambda q1, q2, c, a: 2 / jnp.pi * jnp.arcsin(2 * jnp.sqrt(q1 * q2) * c / jnp.sqrt((1 + 2 * q1) * (1 + 2 * q2))),
        derivative_pair=lambda q1, q2, c, a: 4 / jnp.pi / jnp.sqrt((1 + 2 * q1) * (1 + 2 * q2) - 4 * q1 * q2 * c * c)),
    "hard_tanh": ClosedForms(
        second=_hard_tanh_second, mean=_zero_mean, derivative=_hard_tanh_derivative,
        **_split_forms("hard_tanh", _hard_tanh_conditional, (-1.0, 1.0))),
    "tanh": ClosedForms(mean=_zero_mean),
    "sigmoid": ClosedForms(),
    "elu": ClosedForms(**_split_forms("elu", _exp_linear_conditional(1.0, 1.0), (0.0,))),  # φ″ jumps at 0
    "selu": ClosedForms(**_split_forms("selu", _exp_linear_conditional(SELU_SCALE, SELU_ALPHA), (0.0,))),  # φ′ jumps
    "gelu": ClosedForms(),
    "silu": ClosedForms(),
    "softplus": ClosedForms(),
}

#: Activations whose kernels (pair moments) are closed forms; the others are integrated numerically.
CLOSED_FORM = tuple(name for name, forms in MOMENTS.items() if forms.pair is not None)


def closed_forms(activation) -> ClosedForms:
    """The table entry of a registry name; an empty record (all numerical, no kinks) for a callable."""
    if callable(activation):
        return ClosedForms()
    resolve_activation(activation)  # unknown names raise, listing the options
    return MOMENTS[activation]


def _slope(activation, slope):
    """The slope the forms receive: the given one, else the registry default (0 where unused)."""
    if slope is not None:
        return slope
    return {"leaky_relu": DEFAULT_LEAKY_SLOPE, "prelu": DEFAULT_PRELU_SLOPE}.get(activation, 0.0)


def _phi(activation, slope, derivative_of=False):
    f = resolve_activation(activation, slope=slope)
    return derivative(f) if derivative_of else f


def pair_kernel(activation, q1, q2, *, derivative_of=False, slope=None):
    """c ↦ E[φ(u₁)φ(u₂)] (or E[φ′(u₁)φ′(u₂)] with ``derivative_of=True``) at fixed q₁, q₂.

    Closed forms where the table has them, else the Mehler series with coefficients computed once
    (for solves over c).
    """
    forms = closed_forms(activation)
    form = forms.derivative_pair if derivative_of else forms.pair
    if form is not None:
        a = _slope(activation, slope)
        return lambda c: form(q1, q2, c, a)
    f = _phi(activation, slope, derivative_of)
    return mehler_series(f, f, q1, q2)


def pair_moment(activation, q1, q2, c, *, slope=None):
    """E[φ(u₁) φ(u₂)] (the kernel of the c-map), closed form where available (:data:`MOMENTS`).

    Closed forms: linear √(q₁q₂) c; leaky/prelu with slope a (relu: a = 0)
    √(q₁q₂)[a c + (1−a)² κ₁(c)] (φ(x) = a x + (1−a) relu(x), E[u₁ relu(u₂)] = √(q₁q₂) c/2);
    erf (2/π) arcsin(2√(q₁q₂) c / √((1+2q₁)(1+2q₂))) (Williams 1997); hard_tanh, elu, selu: the
    conditional mean E[φ(u₂) | u₁] in closed form, integrated over u₁ by a rule split at the kinks.

    Args:
      activation: registry name or elementwise callable.
      q1, q2: () variances; c: () correlation.
      slope: negative-side slope for leaky_relu / prelu (default: the registry default).
    Returns:
      () E[φ(u₁) φ(u₂)] (linear units).
    """
    return pair_kernel(activation, q1, q2, slope=slope)(c)


def derivative_pair_moment(activation, q1, q2, c, *, slope=None):
    """E[φ′(u₁) φ′(u₂)] (times σ_w² it is the slope of the c-map, by Price's theorem).

    Closed forms: linear 1; leaky/prelu a + (1−a)² κ₀(c) (relu: κ₀(c)); erf
    (4/π)/√((1+2q₁)(1+2q₂) − 4q₁q₂c²); hard_tanh (P(|u₁| < 1, |u₂| < 1)), elu, selu as in
    :func:`pair_moment`.
    """
    return pair_kernel(activation, q1, q2, derivative_of=True, slope=slope)(c)


def second_moment(activation, q, *, slope=None):
    """E[φ(√q z)²] (the q-map kernel V(q)), closed form where available.

    Closed forms: linear q; relu q/2; leaky/prelu (1+a²) q/2; erf (2/π) arcsin(2q/(1+2q));
    hard_tanh q(erf(k/√2) − 2kφ_N(k)) + erfc(k/√2), k = 1/√q.
    """
    form = closed_forms(activation).second
    if form is not None:
        return form(q, _slope(activation, slope))
    f = _phi(activation, slope)
    return expect(lambda x: f(x) ** 2, q)


def mean_moment(activation, q, *, slope=None):
    """E[φ(√q z)]; closed form 0 for odd activations, √(q/(2π)) relu, (1−a)√(q/(2π)) leaky."""
    form = closed_forms(activation).mean
    if form is not None:
        return form(q, _slope(activation, slope))
    return expect(_phi(activation, slope), q)


def derivative_moment(activation, q, *, power=2, slope=None):
    """E[φ′(√q z)^power] (power 2: χ₁/σ_w²; power 4: the μ₂ of the Jacobian spectrum).

    Closed forms: linear 1; relu 1/2; leaky/prelu (1 + a^power)/2; erf (2/√π)^power/√(1 + 2·power·q);
    hard_tanh erf(1/√(2q)).
    """
    q = jnp.asarray(q, dtype=jnp.result_type(float))
    form = closed_forms(activation).derivative
    if form is not None:
        return form(q, power, _slope(activation, slope))
    f = _phi(activation, slope, derivative_of=True)
    return expect(lambda x: f(x) ** power, q)


def q_map_slope_kernel(activation, q, *, slope=None):
    """dV/dq of V(q) = E[φ(√q z)²]: E[φ′² + φ φ″] for smooth φ (by Stein's lemma), computed by
    autodiff of V (so kinks of φ, where φ″ has point masses, are handled exactly)."""
    return jax.grad(lambda qq: second_moment(activation, qq, slope=slope))(jnp.asarray(q, dtype=float))
