"""Mean field of convolutional stacks: the spatial covariance, its Fourier modes, their depth scales.

For a cnn ``h_l = W_l ∗ φ(h_{l−1}) + b_l`` with circular padding and C → ∞ channels, the covariance
of one input's pre-activations across spatial positions, Σ_l(α, α') = E[h_l(α, c) h_l(α', c)], follows

    Σ_l = σ_w² A ⋆ C[Σ_{l−1}] + σ_b²,   C[Σ](α, α') = E[φ(u_α) φ(u_α')],  u ~ N(0, Σ),

where (A ⋆ M)(α, α') = k^{−d} Σ_β M(α + β, α' + β) averages along the diagonal over the kernel's window
(gaussian kernels: weights at different offsets β are independent), and A = identity for a
delta-orthogonal kernel, whose only non-zero tap is the centre. Each entry's own map is the mlp's q/c
map, so the diagonal (q_l at every position) follows the mlp's length map when the input is
translation invariant (:func:`gradjax.theory.q_profile` models the cnn as the mlp). Linearized around
the fixed point (q*, c*), a deviation that varies along the positions as the Fourier mode p decays by
χ·λ_p per layer, with λ_p the eigenvalue of the window average,

    λ_p = ∏_i (1/k) Σ_{β=−r..r} cos(2π p_i β / H_i)    (gaussian; λ_p = 1 for delta-orthogonal),

χ = χ_c (off-diagonal: correlations) or the q-map slope χ_q (diagonal), so its depth scale is
ξ_p = −1/ln|χ λ_p|. At criticality (χ_c = 1) the mean mode is marginal in both inits; every other
mode of a gaussian cnn dies over ξ_p layers, while delta-orthogonal kernels keep them all (λ_p = 1).

Inputs that are not translation invariant (images: blank background, bright strokes) start each
position at its own length q_0(α). The diagonal of the covariance map closes on itself (A ⋆ M on the
diagonal reads only M's diagonal), so the per-position lengths follow

    q_l(α) = σ_w² (A V(q_{l−1}))(α) + σ_b²,   V(q) = E[φ(√q z)²],   (A v)(α) = k^{−d} Σ_β v(α + β),

and, under gradient independence, the per-position mean square of a cotangent travels back as
g_{l−1}(α) = σ_w² E[φ′(√q_{l−1}(α) z)²] (A g_l)(α) (the window is symmetric, so Aᵀ = A). A
delta-orthogonal kernel (A = identity) keeps every position on its own mlp trajectory: χ₁ differs from
position to position (positions of a blank background start at q ≈ 0, where tanh's χ₁ ≈ σ_w² > 1), so the
expected norms are sums of per-position products, not the product at the mean length
(:func:`position_q_profile`, :func:`position_gradient_profile`, :func:`position_jacobian_sv2_mean`).

References:
  Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington 2018, "Dynamical Isometry and a Mean Field
  Theory of CNNs: How to Train 10,000-Layer Vanilla Convolutional Neural Networks", arXiv:1806.05393,
  Sec. 2.2–3 (covariance map and its Fourier decomposition), Sec. 4 (delta-orthogonal kernels).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp

from gradjax.theory import gaussian as _g
from gradjax.theory.meanfield import _depth_scale, _f, _q_eval, _q_map_slope, chi_c, q_star

MODE_KINDS = ("c", "q")


def _require_cnn(cfg, what: str) -> None:
    if cfg.arch != "cnn":
        raise ValueError(f"{what} models arch='cnn', got arch={cfg.arch!r}")


def averaging_eigenvalues(cfg) -> jax.Array:
    """λ_p of the kernel's window average for every spatial Fourier mode p.

    Args:
      cfg: a cnn (static).

    Returns:
      ``cfg.spatial``-shaped λ_p, mode p at index p (numpy FFT order); ones for delta_orthogonal.
    """
    _require_cnn(cfg, "averaging_eigenvalues")
    if cfg.init == "delta_orthogonal":
        return jnp.ones(cfg.spatial)
    r = cfg.kernel_size // 2
    out = jnp.ones(())
    for i, n in enumerate(cfg.spatial):
        p = jnp.arange(n, dtype=_f(0.0).dtype)
        lam = sum(jnp.cos(2 * jnp.pi * p * b / n) for b in range(-r, r + 1)) / cfg.kernel_size
        out = out[..., None] * lam.reshape((1,) * i + (n,))
    return out


def _fixed_point_slope(cfg, kind: str):
    sw, sb = _f(cfg.sigma_w2), _f(cfg.sigma_b2)
    if kind == "c":
        return chi_c(cfg.activation, sw, sb, slope=cfg.leaky_slope)
    q = _q_eval(q_star(cfg.activation, sw, sb, slope=cfg.leaky_slope))
    return _q_map_slope(cfg.activation, sw, jnp.maximum(q, 1e-30), cfg.leaky_slope)


def mode_depth_scales(cfg, kind: str = "c") -> jax.Array:
    """Depth scale ξ_p = −1/ln|χ λ_p| of every spatial Fourier mode p (layers).

    Args:
      cfg: a cnn.
      kind: "c" (correlations between positions, χ = χ_c) or "q" (the per-position length, χ = the
        q-map slope at q*).

    Returns:
      ``cfg.spatial``-shaped ξ_p in layers: inf where |χ λ_p| ≥ 1, 0 where λ_p = 0.

    References: Xiao et al. 2018, arXiv:1806.05393, Sec. 3 (Eq. 3.6–3.8).
    """
    _require_cnn(cfg, "mode_depth_scales")
    if kind not in MODE_KINDS:
        raise ValueError(f"kind must be one of {list(MODE_KINDS)}, got {kind!r}")
    return _depth_scale(jnp.abs(_fixed_point_slope(cfg, kind) * averaging_eigenvalues(cfg)))


def _circular_window_mean(kernel_size: int, v: jax.Array, d: int, groups: int) -> jax.Array:
    """k^{−d} Σ_β v shifted by β (circular) on each of the last ``groups`` groups of d axes at once."""
    r = kernel_size // 2
    axes = tuple(range(v.ndim - groups * d, v.ndim))
    acc = jnp.zeros_like(v)
    for beta in itertools.product(range(-r, r + 1), repeat=d):
        acc = acc + jnp.roll(v, tuple(-b for b in beta) * groups, axis=axes)
    return acc / kernel_size**d


def _window_average(kernel_size: int, m: jax.Array) -> jax.Array:
    """(A ⋆ M)(α, α') = k^{−d} Σ_β M(α + β, α' + β) for M of shape spatial + spatial (circular)."""
    return _circular_window_mean(kernel_size, m, m.ndim // 2, groups=2)


def covariance_map(cfg, sigma: jax.Array) -> jax.Array:
    """One cnn block on the spatial covariance: Σ ↦ σ_w² A ⋆ C[Σ] + σ_b².

    Args:
      cfg: a cnn.
      sigma: (P, P) covariance of h over the P = prod(spatial) positions (row-major order).

    Returns:
      (P, P) the next covariance (linear units).
    """
    p = math.prod(cfg.spatial)
    q = jnp.diagonal(sigma)
    q1, q2 = q[:, None] * jnp.ones((1, p)), jnp.ones((p, 1)) * q[None, :]
    c = jnp.clip(sigma / jnp.sqrt(jnp.where(q1 * q2 > 0, q1 * q2, 1.0)), -1.0, 1.0)
    pair = jax.vmap(lambda a, b, cc: _g.pair_moment(cfg.activation, a, b, cc, slope=cfg.leaky_slope))
    k = pair(q1.reshape(-1), q2.reshape(-1), c.reshape(-1)).reshape(cfg.spatial * 2)
    k = k if cfg.init == "delta_orthogonal" else _window_average(cfg.kernel_size, k)
    out = _f(cfg.sigma_w2) * k + _f(cfg.sigma_b2)
    return out.reshape(p, p)


@jax.jit
def spatial_covariance_profile(cfg, sigma0: jax.Array) -> jax.Array:
    """Σ_l after every block, from the covariance ``sigma0`` (P, P) of h_0 (the transient included).

    Returns:
      (L, P, P), entry l−1 after block l (linear units).

    References: Xiao et al. 2018, arXiv:1806.05393, Eq. 2.5.
    """
    _require_cnn(cfg, "spatial_covariance_profile")
    _, out = jax.lax.scan(lambda s, _: (covariance_map(cfg, s),) * 2, _f(sigma0), None, length=cfg.depth)
    return out


def input_covariance(cfg, x: jax.Array) -> jax.Array:
    """Covariance of h_0 over positions for one input ``x`` (*spatial, in_dim) through the cnn's
    convolutional input layer (kernel entries N(0, 1/(k^d·in_dim)), zero bias): A ⋆ (x xᵀ/in_dim).

    Returns:
      (P, P) Σ_0.
    """
    _require_cnn(cfg, "input_covariance")
    flat = _f(x).reshape(-1, cfg.in_dim)
    gram = (flat @ flat.T / cfg.in_dim).reshape(cfg.spatial * 2)
    p = math.prod(cfg.spatial)
    return _window_average(cfg.kernel_size, gram).reshape(p, p)


def _window_mean(cfg, v: jax.Array) -> jax.Array:
    """(A v)(α) = k^{−d} Σ_β v(α + β) over the trailing ``cfg.spatial`` axes of ``v`` (circular); v itself for
    delta-orthogonal kernels (A = identity)."""
    if cfg.init == "delta_orthogonal":
        return v
    return _circular_window_mean(cfg.kernel_size, v, len(cfg.spatial), groups=1)


def _check_position_lengths(cfg, q0, what: str, batched: bool) -> jax.Array:
    _require_cnn(cfg, what)
    q0 = _f(q0)
    d = len(cfg.spatial)
    if q0.shape[q0.ndim - d:] != cfg.spatial or q0.ndim > d + int(batched):
        allowed = f"{cfg.spatial} or (B,) + {cfg.spatial}" if batched else f"{cfg.spatial}"
        raise ValueError(f"q0 must have shape {allowed} (the per-position second moments of h_0), got {q0.shape}")
    return q0


def _position_lengths(cfg, q0: jax.Array) -> jax.Array:
    """(L + 1, *q0.shape): q_l at every position for l = 0..L (entry 0 is q0)."""
    sw, sb = _f(cfg.sigma_w2), _f(cfg.sigma_b2)
    v = jnp.vectorize(lambda q: _g.second_moment(cfg.activation, q, slope=cfg.leaky_slope))

    def step(q, _):
        nxt = sw * _window_mean(cfg, v(q)) + sb
        return nxt, nxt

    _, qs = jax.lax.scan(step, q0, None, length=cfg.depth)
    return jnp.concatenate([q0[None], qs], axis=0)


def _derivative_moments(cfg, q: jax.Array) -> jax.Array:
    """μ₁(q) = E[φ′(√q z)²] elementwise over an array of lengths."""
    return jnp.vectorize(lambda t: _g.derivative_moment(cfg.activation, t, slope=cfg.leaky_slope))(q)


def _position_cotangent_squares(cfg, q: jax.Array, top: jax.Array) -> jax.Array:
    """(L + 1, …) g_l at every position from g_L = ``top``: g_{l−1} = σ_w² μ₁(q_{l−1}) · A g_l (entry l for h_l)."""
    sw = _f(cfg.sigma_w2)
    mu1 = _derivative_moments(cfg, q[:-1])

    def step(g, m):
        nxt = sw * m * _window_mean(cfg, g)
        return nxt, nxt

    _, gs = jax.lax.scan(step, top, mu1, reverse=True)
    return jnp.concatenate([gs, top[None]], axis=0)


@jax.jit
def position_q_profile(cfg, q0: jax.Array) -> jax.Array:
    """Per-position pre-activation length q_l(α) after every block, from each position's own q_0(α).

    q_l(α) = σ_w² (A V(q_{l−1}))(α) + σ_b² (module docstring): the diagonal of
    :func:`spatial_covariance_profile`, which it equals, at O(P) instead of O(P²) work per block.

    Args:
      cfg: a cnn.
      q0: ``cfg.spatial`` or (B,) + ``cfg.spatial``: the second moment of h_0 at every position (for an
        image through the cnn's input layer, the diagonal of :func:`input_covariance`).

    Returns:
      (L,) + q0.shape, entry l−1 after block l (linear units).

    References: Xiao et al. 2018, arXiv:1806.05393, Eq. 2.5 (its diagonal).
    """
    return _position_lengths(cfg, _check_position_lengths(cfg, q0, "position_q_profile", batched=True))[1:]


@jax.jit
def position_gradient_profile(cfg, q0: jax.Array) -> jax.Array:
    """Expected log10 ‖∂loss/∂h_l‖ − log10 ‖∂loss/∂h_L‖ for inputs whose positions start at their own lengths.

    Mean field with gradient independence (module docstring): ‖δ_l‖² summed over the examples, positions
    and channels; the projection loss reaches h_L through the global-average-pool readout, so
    E δ_L(α)² ∝ E[φ′(√q_L(α) z)²] (the same constant at every position and example). The quantity of
    ``gradjax.empirical.gradient_profile(cfg, seeds, inputs=x).relative()`` for the batch ``x`` whose
    per-position lengths are ``q0``. With q0 the same at every position it is
    :func:`gradjax.theory.gradient_profile` (mean field, ``finite_width=False``) at that q0.

    Args:
      cfg: a cnn.
      q0: ``cfg.spatial`` (one input) or (B,) + ``cfg.spatial`` (a batch, summed over): second moment of h_0
        at every position.

    Returns:
      (L,) log10 units, entry l−1 for h_l (the last entry is 0).

    References: Xiao et al. 2018, arXiv:1806.05393, Sec. 2–3; Schoenholz et al. 2017, arXiv:1611.01232
    (the backward recursion, Sec. 4).
    """
    q = _position_lengths(cfg, _check_position_lengths(cfg, q0, "position_gradient_profile", batched=True))
    top = _derivative_moments(cfg, q[-1])
    tot = jnp.sum(_position_cotangent_squares(cfg, q, top).reshape(cfg.depth + 1, -1), axis=1)
    return 0.5 * jnp.log10(tot[1:] / tot[-1])


@jax.jit
def position_jacobian_sv2_mean(cfg, q0: jax.Array) -> jax.Array:
    """log10 of the mean squared singular value of ∂h_L/∂h_l, l = 0..L−1, for one input.

    E σ² = tr(Jᵀ J)/(P·N) is the position mean of g_l for g_L = 1 (module docstring). For a
    delta-orthogonal cnn the Jacobian is block-diagonal over positions, and this is the mean over
    positions of Π_k χ₁(q_{k−1}(α)) — not Π_k χ₁ at the mean length, the mean field of the first moment of
    the density of :func:`gradjax.theory.jacobian_density` when every position starts at one q0.

    Args:
      cfg: a cnn.
      q0: ``cfg.spatial``: second moment of h_0 at every position for the input.

    Returns:
      (L,) log10 units, entry l for ∂h_L/∂h_l.

    References: Xiao et al. 2018, arXiv:1806.05393, Sec. 4; Pennington, Schoenholz & Ganguli 2017,
    arXiv:1711.04735 (the mean of the squared singular values is Π χ₁).
    """
    q = _position_lengths(cfg, _check_position_lengths(cfg, q0, "position_jacobian_sv2_mean", batched=False))
    g = _position_cotangent_squares(cfg, q, jnp.ones_like(q0))
    return jnp.log10(jnp.mean(g.reshape(cfg.depth + 1, -1), axis=1))[:-1]
