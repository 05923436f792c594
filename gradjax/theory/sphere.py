"""Expectations over the batch-normalization sphere S_B = {x ∈ R^B : Σ x = 0, ‖x‖² = B}.

Batch normalization maps one feature over a batch of B examples onto S_B; at the BSB1 fixed point of a
batch-normalized network its output is uniform on S_B (Yang et al. 2019). Every per-layer quantity of the
batch-norm gradient recursion is an expectation of f(x₁) or f(x₁)g(x₂) under the one- and
two-coordinate marginals of that uniform law, computed here by quadrature over the exact marginals:

* one coordinate: x₁ = √(B−1) t with t the first coordinate of a uniform point on the unit sphere of
  R^{B−1}, density ∝ (1 − t²)^{(B−4)/2} on [−1, 1]. With t = sin θ the weight is cos^{B−3} θ dθ, smooth
  for every integer B ≥ 3.
* two coordinates: given t, x₂ = √(B−1)(ρ t + √(1−ρ²) √(1−t²) u), ρ = −1/(B−1) (the correlation of two
  coordinates on S_B), with u the first coordinate of a uniform point on the unit sphere of R^{B−2},
  density ∝ (1 − u²)^{(B−5)/2}; u = sin β gives the weight cos^{B−4} β dβ.

Both variables are integrated by composite Gauss–Legendre rules whose panels are split at the kinks of
the integrand (where φ or φ′ is not smooth: x₁ = k, x₂ = k, and the values of t where the line x₂ = k
touches the edge of the conditional range), each panel mapped by t = a + (b−a)(1 − cos πs)/2 so that the
square-root behaviour at a panel end (the marginal's edge, a kink entering the range) becomes smooth.
For large B the marginals concentrate (x₁ → N(0, 1)); the range is cut where the density falls below
e^{−R²/2·(1−3/(B−1))}, R = 10 (tail ≲ 1e-21). The rules are plain arrays computed once per (B, kinks).

References:
  Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz 2019, "A Mean Field Theory of Batch
  Normalization", arXiv:1902.08129.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

# Range cut in x units (see module docstring) and the panels: the cut range is divided into _PANELS
# equal panels before the kink splits are added, with _NODES Gauss–Legendre nodes each. Accuracy
# (≲1e-10 against closed forms and scipy quad of the exact marginal densities) checked in tests/theory/test_sphere.py.
_R = 10.0
_PANELS = 24
_NODES = 12


def _half_range(dim: int) -> float:
    """Largest angle kept for the first coordinate of a uniform point on the unit sphere of R^dim."""
    return math.asin(min(1.0, _R / math.sqrt(dim)))


def _panel_rule(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on consecutive panels [edges[i], edges[i+1]], each through the
    map a + (b−a)(1 − cos πs)/2 (nodes cluster at both panel ends). Returns (n,), (n,)."""
    s, ws = np.polynomial.legendre.leggauss(_NODES)
    s, ws = (s + 1) / 2, ws / 2  # on [0, 1]
    a, b = edges[:-1, None], edges[1:, None]
    x = a + (b - a) * (1 - np.cos(np.pi * s)) / 2
    w = (b - a) * np.pi / 2 * np.sin(np.pi * s) * ws
    return x.ravel(), w.ravel()


def _angle_edges(limit: float, splits) -> np.ndarray:
    """Panel edges on [−limit, limit]: _PANELS equal panels plus the split angles inside."""
    inside = [v for v in splits if -limit < v < limit]
    return np.unique(np.concatenate([np.linspace(-limit, limit, _PANELS + 1), inside]))


def _angle_rule(dim: int, splits) -> tuple[np.ndarray, np.ndarray]:
    """Nodes sin θ and normalized weights for the first coordinate of a uniform point on the unit
    sphere of R^dim (density ∝ (1−t²)^{(dim−3)/2}, weight cos^{dim−2} θ dθ), split at ``splits`` (angles)."""
    theta, w = _panel_rule(_angle_edges(_half_range(dim), splits))
    w = w * np.exp((dim - 2) * 0.5 * np.log1p(-np.sin(theta) ** 2))
    return np.sin(theta), w / w.sum()


def _tangent_points(kink: float, rho: float) -> list[float]:
    """t where x₂ = kink touches the edge of the conditional range of x₂ given t (|K| < 1 only)."""
    if abs(kink) >= 1.0:
        return []
    r = math.sqrt((1 - kink * kink) * (1 - rho * rho))
    return [rho * kink - r, rho * kink + r]


@functools.lru_cache(maxsize=None)
def marginal_rule(batch_size: int, kinks: tuple[float, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature for E[f(x₁)], x uniform on S_B: nodes x (n,) and weights w (n,), Σ w = 1.

    Args:
      batch_size: B ≥ 4.
      kinks: points x where f is not smooth (panels are split there).
    """
    scale = math.sqrt(batch_size - 1)
    t, w = _angle_rule(batch_size - 1, [math.asin(k / scale) for k in kinks if abs(k) < scale])
    return scale * t, w


@functools.lru_cache(maxsize=None)
def pair_rule(batch_size: int, kinks: tuple[float, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quadrature for E[f(x₁) g(x₂)], x uniform on S_B: nodes x₁, x₂ (n,) and weights w (n,), Σ w = 1.

    Args:
      batch_size: B ≥ 4.
      kinks: points where f or g is not smooth (the same set for both).
    """
    scale = math.sqrt(batch_size - 1)
    rho = -1.0 / (batch_size - 1)
    ks = [k / scale for k in kinks]
    outer = [math.asin(v) for k in ks if abs(k) < 1 for v in [k] + _tangent_points(k, rho)]
    t, wt = _angle_rule(batch_size - 1, outer)
    x1, x2, w = [], [], []
    for ti, wi in zip(t, wt):
        spread = math.sqrt((1 - rho * rho) * (1 - ti * ti))
        inner = [math.asin((k - rho * ti) / spread) for k in ks if abs(k - rho * ti) < spread]
        u, wu = _angle_rule(batch_size - 2, inner)
        x1.append(np.full_like(u, scale * ti))
        x2.append(scale * (rho * ti + spread * u))
        w.append(wi * wu)
    return np.concatenate(x1), np.concatenate(x2), np.concatenate(w)


def _as_operands(arrays):
    """The rule as arrays XLA treats as opaque: without the barrier a jitted expectation whose
    inputs are all constants is constant-folded node by node at compile time (seconds for 10⁵ nodes)."""
    return jax.lax.optimization_barrier(tuple(jnp.asarray(v) for v in arrays))


def expect_marginal(f, batch_size: int, kinks: tuple[float, ...] = ()):
    """E[f(x₁)] for x uniform on S_B (f elementwise JAX function; may close over traced numbers).

    Returns:
      () the expectation (linear units).
    """
    x, w = _as_operands(marginal_rule(batch_size, tuple(kinks)))
    return jnp.sum(w * f(x))


def expect_pair(f, g, batch_size: int, kinks: tuple[float, ...] = ()):
    """E[f(x₁) g(x₂)] for x uniform on S_B (two distinct coordinates).

    Returns:
      () the expectation (linear units).
    """
    x1, x2, w = _as_operands(pair_rule(batch_size, tuple(kinks)))
    return jnp.sum(w * f(x1) * g(x2))
