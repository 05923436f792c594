"""Lanczos tridiagonalization of a symmetric operator given only by its products, and the spectral
quadrature it yields: shared by the Jacobian spectra (GᵀG) and the Hessian spectra (H).

From a unit start vector v, k steps build an orthonormal basis V of the Krylov space
span{v, Av, …, A^{k−1}v} and the k × k tridiagonal T = Vᵀ A V. With T = Q Θ Qᵀ:

* the Ritz values θ_j (eigenvalues of T) converge to the extreme eigenvalues of A first;
* Σ_j Q_{0j}² f(θ_j) is the k-node Gauss quadrature of vᵀ f(A) v, exact for polynomials f of
  degree < 2k; its mean over v uniform on the unit sphere is tr f(A) / n (stochastic Lanczos
  quadrature).

References:
  Golub & Van Loan, "Matrix Computations", 4th ed., Sec. 10.1 (Lanczos), 10.3 (reorthogonalization).
  Golub & Meurant, "Matrices, Moments and Quadrature with Applications", 2010 (Gauss quadrature).
  Ubaru, Chen & Saad 2017, "Fast estimation of tr(f(A)) via stochastic Lanczos quadrature",
  SIAM J. Matrix Anal. Appl. 38(4).
  Ghorbani, Krishnan & Xiao 2019, "An Investigation into Neural Net Optimization via Hessian
  Eigenvalue Density", arXiv:1901.10159 (the weights are Q_{0j}², the squared first components).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from gradjax.empirical._seeds import normal_draw


# Breakdown threshold, in units of ε·‖A v‖: a residual this small after reorthogonalization is
# rounding noise (n ≲ 10^4 rounding errors of size ε‖Av‖ stay below 100·ε‖Av‖ in norm in practice).
BREAKDOWN_RTOL = 100.0


def lanczos_tridiagonal(matvec: Callable[[jax.Array], jax.Array], v0: jax.Array, k: int) -> jax.Array:
    """k Lanczos steps on the symmetric operator ``matvec`` from the unit vector ``v0`` (n,).

    Full reorthogonalization (twice, "twice is enough", Parlett). After a breakdown (an invariant
    subspace found before k steps) the remaining steps are zero and decouple from the first block,
    whose Ritz values are then exact.

    Args:
      matvec: w (n,) → A w (n,), A symmetric; jittable.
      v0: (n,) unit start vector.
      k: steps (1 ≤ k ≤ n).

    Returns:
      (k, k) the tridiagonal matrix T = Vᵀ A V.
    """
    n, dt = v0.shape[0], v0.dtype

    def body(carry, j):
        V, alphas, betas = carry
        v = V[j]
        w = matvec(v)
        w_norm = jnp.linalg.norm(w)
        a = jnp.dot(w, v)
        mask = (jnp.arange(k) <= j).astype(dt)[:, None]
        for _ in range(2):
            w = w - (mask * V).T @ ((mask * V) @ w)
        b = jnp.linalg.norm(w)
        nxt = jnp.minimum(j + 1, k - 1)
        # A residual at rounding level of A v is a breakdown, not a direction: normalizing it would
        # add a vector that is not orthogonal to V to working precision.
        ok = (j + 1 < k) & (b > BREAKDOWN_RTOL * jnp.finfo(dt).eps * w_norm)
        V = V.at[nxt].set(jnp.where(ok, w / jnp.where(b > 0, b, 1.0), V[nxt]))
        return (V, alphas.at[j].set(a), betas.at[j].set(jnp.where(ok, b, 0.0))), None

    init = (jnp.zeros((k, n), dt).at[0].set(v0), jnp.zeros((k,), dt), jnp.zeros((k,), dt))
    (_, alphas, betas), _ = jax.lax.scan(body, init, jnp.arange(k))
    return jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)


def gauss_quadrature(tri: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Nodes and weights of the Gauss quadrature of a Lanczos matrix ``tri`` (k, k).

    Returns:
      ``(θ (k,), w (k,))``: Ritz values (ascending) and weights Q_{0j}² (summing to 1), so that
      Σ_j w_j f(θ_j) ≈ vᵀ f(A) v for the start vector v.
    """
    theta, q = jnp.linalg.eigh(tri)
    return theta, q[0] ** 2


def unit_probe(key: jax.Array, n: int, dtype) -> jax.Array:
    """A vector (n,) uniform on the unit sphere (a normalized Gaussian)."""
    v = normal_draw(key, (n,), dtype)
    return v / jnp.linalg.norm(v)


def smoothed_density(nodes: jax.Array, weights: jax.Array, grid, bandwidth: float) -> jax.Array:
    """Σ_j w_j N(x; node_j, bandwidth²) on ``grid`` (m,): a quadrature's distribution smoothed by a Gaussian.

    Args:
      nodes, weights: (…, K) quadrature nodes and weights; non-finite nodes (unresolved, or padding)
        contribute nothing.
      grid: (m,) points, in the nodes' units. bandwidth: > 0, the Gaussian's width in those units.

    Returns:
      (…, m) density.
    """
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth!r}")
    grid = jnp.asarray(grid, weights.dtype)
    finite = jnp.isfinite(nodes)
    lead = (1,) * (finite.ndim - 1)
    z = (grid.reshape(lead + (-1, 1)) - jnp.where(finite, nodes, 0)[..., None, :]) / bandwidth
    kern = jnp.where(finite[..., None, :], jnp.exp(-0.5 * z**2), 0) / (bandwidth * jnp.sqrt(2 * jnp.pi))
    return jnp.sum(kern * weights[..., None, :], axis=-1)


def orthogonal_probes(key: jax.Array, p: int, n: int, dtype) -> jax.Array:
    """(p, n) unit probes, orthonormal in blocks of n (Haar-distributed: QR of a Gaussian with signs fixed).

    Each probe is uniform on the sphere, so the SLQ average stays unbiased; orthogonality removes the
    variance of the estimate of tr f(A)/n by the factor (n − p)/(n − 1) (sampling directions without
    replacement), and p = n orthonormal probes give tr f(A)/n exactly up to the quadrature.
    """
    blocks = []
    for i in range(-(-p // n)):
        g = normal_draw(jax.random.fold_in(key, i), (n, min(n, p - i * n)), dtype)
        q, r = jnp.linalg.qr(g)
        blocks.append((q * jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(dtype)[None, :]).T)
    return jnp.concatenate(blocks, axis=0)
