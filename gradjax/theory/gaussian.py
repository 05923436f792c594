"""Gaussian expectations of activations: E[f(√q z)] and E[f(u₁) g(u₂)] for correlated pairs.

Every mean-field quantity in gradjax is one of a handful of Gaussian integrals of the activation
φ and its derivative φ′. They are computed here by a fixed composite Gauss–Legendre rule on the
standard-normal variable (jittable, vmappable, differentiable in q and c), and replaced by closed
forms where those exist (linear; relu / leaky_relu / prelu through the arc-cosine kernel; erf
through the arcsine kernel).

Quadrature. z ~ N(0, 1) is integrated over [−R, R] cut into panels of equal width with Gauss–Legendre
nodes in each panel, weighted by the normal density. Panels meet at 0, so activations with a kink
at the origin (elu, selu) are integrated piecewise-smoothly. The truncation error is the normal tail
beyond R (e^{-R²/2}). Measured accuracy (tests/theory/test_gaussian.py, against scipy quad):
E[tanh(√q z)²] to ~1e-12 relative for q ≤ 4 and ~1e-9 for q = 30 with the 1-D rule; the 2-D rule is
coarser (≲1e-8 for q ≤ 4). Activations with kinks away from 0 (hard_tanh at ±1/√q) converge only
algebraically (~1e-5).

For a pair, u₁ = √q₁ z₁ and u₂ = √q₂ (c z₁ + √(1−c²) z₂) with z₁, z₂ independent standard normals,
so E[u₁²] = q₁, E[u₂²] = q₂ and corr(u₁, u₂) = c.

References:
  Poole et al. 2016, "Exponential expressivity in deep neural networks through transient chaos",
  arXiv:1606.05340 (the q- and c-maps as Gaussian integrals).
  Cho & Saul 2009, "Kernel Methods for Deep Learning" (arc-cosine kernel of relu).
  Williams 1997, "Computing with infinite networks" (arcsine kernel of erf).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from gradjax.nn.activations import DEFAULT_LEAKY_SLOPE, DEFAULT_PRELU_SLOPE, SLOPED, resolve_activation

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

#: Activations with closed-form kernels (everything else is integrated numerically).
CLOSED_FORM = ("linear", "relu", "leaky_relu", "prelu", "erf")


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


def hermite_coefficients(f, q, order: int = _HERMITE_ORDER):
    """a_k = E[f(√q z) He_k(z)]/√k!, k = 0..order, by the 1-D rule.

    Returns:
      (order+1,) coefficients; Σ_k a_k² = E[f(√q z)²] (Parseval).
    """
    z, w = _rule()
    h = jnp.asarray(hermite_table(order))
    q = jnp.asarray(q, z.dtype)
    return h @ (w * f(_safe_sqrt(q) * z))


def mehler_series(f, g, q1, q2, order: int = _HERMITE_ORDER):
    """c ↦ E[f(u₁) g(u₂)] by Mehler's expansion Σ_k a_k b_k c^k (see module docstring).

    The coefficients are computed once (1-D rule) and the returned function evaluates the series:
    cheap inside fixed-point solves over c. The remainder beyond ``order`` is known exactly at c = 1
    (the 1-D integral of f(√q₁z) g(√q₂z)); it is carried as a c^{order+1} term, exact at c = 0 and 1.
    """
    a = hermite_coefficients(f, q1, order)
    b = hermite_coefficients(g, q2, order)
    z, w = _rule()
    q1, q2 = (jnp.asarray(v, z.dtype) for v in (q1, q2))
    ab = a * b
    rest = jnp.sum(w * f(_safe_sqrt(q1) * z) * g(_safe_sqrt(q2) * z)) - jnp.sum(ab)

    def series(c):
        powers = jnp.asarray(c, z.dtype) ** jnp.arange(order + 2, dtype=z.dtype)
        return jnp.sum(ab * powers[:-1]) + rest * powers[-1]

    return series


def mehler_pair(f, g, q1, q2, c, order: int = _HERMITE_ORDER):
    """E[f(u₁) g(u₂)] by Mehler's expansion (see :func:`mehler_series`)."""
    return mehler_series(f, g, q1, q2, order)(c)


# ---- activation moments (closed form where available) ------------------------------------------

def _slope(activation, slope):
    if slope is not None:
        return float(slope)
    return DEFAULT_LEAKY_SLOPE if activation == "leaky_relu" else DEFAULT_PRELU_SLOPE


def _arccos_kernels(c):
    """Arc-cosine kernels of degree 1 and 0 (Cho & Saul 2009) for unit variances.

    κ₁(c) = E[relu(u₁) relu(u₂)] = (sin θ + (π − θ) cos θ)/(2π), κ₀(c) = E[1{u₁>0} 1{u₂>0}] = (π − θ)/(2π),
    θ = arccos c.
    """
    c = jnp.clip(c, -1.0, 1.0)
    theta = jnp.arccos(c)
    return (_safe_sqrt(1.0 - c * c) + (jnp.pi - theta) * c) / (2 * jnp.pi), (jnp.pi - theta) / (2 * jnp.pi)


def pair_kernel(activation, q1, q2, *, derivative_of=False, slope=None):
    """c ↦ E[φ(u₁)φ(u₂)] (or E[φ′(u₁)φ′(u₂)] with ``derivative_of=True``) at fixed q₁, q₂.

    Closed forms where :func:`pair_moment` / :func:`derivative_pair_moment` have them, else the Mehler
    series with coefficients computed once (for solves over c).
    """
    if activation in CLOSED_FORM:
        fn = derivative_pair_moment if derivative_of else pair_moment
        return lambda c: fn(activation, q1, q2, c, slope=slope)
    f = resolve_activation(activation, slope=slope)
    if derivative_of:
        f = derivative(f)
    return mehler_series(f, f, q1, q2)


def pair_moment(activation, q1, q2, c, *, slope=None):
    """E[φ(u₁) φ(u₂)] (the kernel of the c-map), closed form where available.

    Closed forms: linear √(q₁q₂) c; leaky/prelu with slope a (relu: a = 0)
    √(q₁q₂)[a c + (1−a)² κ₁(c)] (φ(x) = a x + (1−a) relu(x), E[u₁ relu(u₂)] = √(q₁q₂) c/2);
    erf (2/π) arcsin(2√(q₁q₂) c / √((1+2q₁)(1+2q₂))) (Williams 1997).

    Args:
      activation: registry name or elementwise callable.
      q1, q2: () variances; c: () correlation.
      slope: negative-side slope for leaky_relu / prelu (default: the registry default).
    Returns:
      () E[φ(u₁) φ(u₂)] (linear units).
    """
    if activation == "linear":
        return jnp.sqrt(q1 * q2) * c
    if activation == "relu" or activation in SLOPED:
        a = 0.0 if activation == "relu" else _slope(activation, slope)
        return jnp.sqrt(q1 * q2) * (a * c + (1 - a) ** 2 * _arccos_kernels(c)[0])
    if activation == "erf":
        return 2 / jnp.pi * jnp.arcsin(2 * jnp.sqrt(q1 * q2) * c / jnp.sqrt((1 + 2 * q1) * (1 + 2 * q2)))
    f = resolve_activation(activation, slope=slope)
    return mehler_pair(f, f, q1, q2, c)


def derivative_pair_moment(activation, q1, q2, c, *, slope=None):
    """E[φ′(u₁) φ′(u₂)] (times σ_w² it is the slope of the c-map, by Price's theorem).

    Closed forms: linear 1; leaky/prelu a + (1−a)² κ₀(c) (relu: κ₀(c)); erf
    (4/π)/√((1+2q₁)(1+2q₂) − 4q₁q₂c²).
    """
    if activation == "linear":
        return jnp.ones_like(jnp.asarray(c * q1 * q2))
    if activation == "relu" or activation in SLOPED:
        a = 0.0 if activation == "relu" else _slope(activation, slope)
        return a + (1 - a) ** 2 * _arccos_kernels(c)[1] + 0.0 * q1 * q2
    if activation == "erf":
        return 4 / jnp.pi / jnp.sqrt((1 + 2 * q1) * (1 + 2 * q2) - 4 * q1 * q2 * c * c)
    f = derivative(resolve_activation(activation, slope=slope))
    return mehler_pair(f, f, q1, q2, c)


def second_moment(activation, q, *, slope=None):
    """E[φ(√q z)²] (the q-map kernel V(q)), closed form where available.

    Closed forms: linear q; relu q/2; leaky/prelu (1+a²) q/2; erf (2/π) arcsin(2q/(1+2q)).
    """
    if activation == "linear":
        return q + 0.0
    if activation == "relu":
        return q / 2
    if activation in SLOPED:
        a = _slope(activation, slope)
        return (1 + a * a) * q / 2
    if activation == "erf":
        return 2 / jnp.pi * jnp.arcsin(2 * q / (1 + 2 * q))
    f = resolve_activation(activation, slope=slope)
    return expect(lambda x: f(x) ** 2, q)


def mean_moment(activation, q, *, slope=None):
    """E[φ(√q z)]; closed form 0 for odd activations, √(q/(2π)) relu, (1−a)√(q/(2π)) leaky."""
    if activation in ("linear", "erf", "tanh", "hard_tanh"):
        return 0.0 * q
    if activation == "relu" or activation in SLOPED:
        a = 0.0 if activation == "relu" else _slope(activation, slope)
        return (1 - a) * jnp.sqrt(q / (2 * jnp.pi))
    f = resolve_activation(activation, slope=slope)
    return expect(f, q)


def derivative_moment(activation, q, *, power=2, slope=None):
    """E[φ′(√q z)^power] (power 2: χ₁/σ_w²; power 4: the μ₂ of the Jacobian spectrum).

    Closed forms: linear 1; relu 1/2; leaky/prelu (1 + a^power)/2; erf (power 2) (4/π)/√(1+4q).
    """
    if activation == "linear":
        return jnp.ones_like(jnp.asarray(q, dtype=float))
    if activation == "relu":
        return 0.5 + 0.0 * q
    if activation in SLOPED:
        a = _slope(activation, slope)
        return (1 + a ** power) / 2 + 0.0 * q
    if activation == "erf" and power == 2:
        return 4 / jnp.pi / jnp.sqrt(1 + 4 * q)
    f = derivative(resolve_activation(activation, slope=slope))
    return expect(lambda x: f(x) ** power, q)


def nonzero_derivative_mass(activation, q, *, slope=None):
    """P(φ′(√q z) ≠ 0): 1/2 for relu, 1 for activations whose derivative never vanishes."""
    if activation == "relu":
        return 0.5 + 0.0 * q
    f = derivative(resolve_activation(activation, slope=slope))
    return expect(lambda x: (f(x) != 0).astype(x.dtype), q)


def q_map_slope_kernel(activation, q, *, slope=None):
    """dV/dq of V(q) = E[φ(√q z)²]: E[φ′² + φ φ″] for smooth φ (by Stein's lemma), computed by
    autodiff of V (so kinks of φ, where φ″ has point masses, are handled exactly)."""
    return jax.grad(lambda qq: second_moment(activation, qq, slope=slope))(jnp.asarray(q, dtype=float))
