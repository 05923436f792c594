"""Free-probability density of the squared singular values of an MLP's input-output Jacobian.

At the fixed point, J = ∏_l D_l W_l with D_l = diag φ′(h_l), h_l ~ N(0, q*), and W_l Gaussian (i.i.d.
entries of variance σ_w²/N) or scaled Haar-orthogonal. In the large-width limit the factors are free,
so the S-transform of JJᵀ is the product

    S_{JJᵀ}(m) = [S_{WWᵀ}(m) · S_{D²}(m)]^L,  S_{WWᵀ} = 1/(σ_w²(1+m)) (Gaussian) or 1/σ_w² (orthogonal),
    S_{D²}(m) = (1+m) / (m · M_{D²}^{-1}(m)),  M_{D²}(z) = E[d/(z − d)],  d = φ′(√q* x)², x ~ N(0, 1).

Parametrising by the point z where M_{D²}(z) = m (explicit: m is a Gaussian integral of z) gives the
inverse of JJᵀ's moment transform in closed form,

    λ(z) = (1+m)/m · (σ_w² m z · s(m))^L,   s = 1 (Gaussian) or 1/(1+m) (orthogonal),

and the density from the solution z of λ(z) = λ on the physical branch: ρ(λ) = |Im m|/(π λ), because
G(λ) = (1 + M(λ))/λ and ρ = −Im G/π. The upper edge is the minimum of λ(z) over real z > max d (where
the real solution disappears); the bulk is followed downwards from the edge by Newton's method in the
complex plane, starting on the square-root branch z ≈ z_c + i√(2(λ_c − λ)/λ″(z_c)) and continuing from
each grid point to the next (the conjugate branch gives the same |Im m|).

The d-distribution is represented by a fine composite Gauss–Legendre rule in x (``_SPECTRUM_RULE``).
Moments in closed form: m₁ = χ₁^L, var/m₁² = L(μ₂/μ₁² − 1 − s₁), μ_k = E d^k, s₁ = −1 (Gaussian), 0
(orthogonal). A zero-derivative mass p₀ = P(φ′ = 0) (relu: 1/2) makes JJᵀ singular: an atom of mass
p₀ at λ = 0, reported separately; the continuous density integrates to 1 − p₀. Linear φ with
orthogonal weights is a point mass at σ_w^{2L} (all singular values equal).

References:
  Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through dynamical
  isometry: theory and practice", arXiv:1711.04735.
  Pennington, Schoenholz & Ganguli 2018, "The emergence of spectral universality in deep networks",
  arXiv:1802.09979.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradjax.nn.activations import resolve_activation
from gradjax.theory import gaussian as _g
from gradjax.theory.meanfield import _Q_EVAL_INF, _f, q_star
from gradjax.theory.support import requires

# d-distribution: panels of width 0.05 on [−10, 10], 8 Gauss–Legendre nodes each (3200 atoms): M_{D²}
# must stay smooth for z close to the real axis, which the sparse 320-node rule is not.
_SPECTRUM_RULE = (10.0, 0.05, 8)
#: Number of λ points of the returned density.
DEFAULT_POINTS = 2000
# Newton per grid point, from the previous point's solution, until the step is below _NEWTON_RTOL·|z|
# (a few iterations in the bulk; the deepest points, tens of decades apart in λ, need up to ~100; a
# fixed 24 left the first points unconverged and added 2e-3 of spurious mass at L = 64).
_NEWTON_RTOL = 1e-13
_NEWTON_MAX = 200
# Edge search: z = d_max (1 + e^u) on a grid of u, then Newton on dλ/du.
_EDGE_U = (-30.0, 20.0, 4000)
# What the free-product model covers: J = ∏ D_l W_l needs independent (free) W_l and no norm.
_MODELS = {"arch": ("mlp", "cnn"), "norm": ("none",)}
_WHY = {
    "arch": "J = ∏ D_l W_l with independent W_l: an rnn reuses one W at every step (not free), the "
            "transformer is not a product of free factors, and the residual spectrum of J = ∏ (1 + α D_l W_l) (Tarnowski et al. 2019, arXiv:1809.08848) is not "
            "implemented",
    "norm": "a norm adds a data-dependent projection and rescaling to every block",
}
# Smallest λ whose density per unit λ is returned (below it λ and 1/λ leave float64's range).
_TINY = 1e-300
# The grid is λ = edge·t^{_MAP_POWER·(L+1)}: power 1 makes the λ^{−L/(L+1)} law at 0 flat in t, but
# activations whose φ′² has a power-law mass near 0 (erf: φ′² ∝ e^{−2qx²}) are more singular there;
# power 2 keeps ∫ρ + atom = 1 within 1e-4 for L ≤ 256 (tests/theory/test_spectra.py; power 1 lost 5e-3).
_MAP_POWER = 2.0
_LN10 = math.log(10.0)


# var/(m₁² L) below this is zero to rounding (μ₂/μ₁² − 1 of a constant φ′² rounds to ~1e-16).
_DEGENERATE_VAR = 1e-12


class JacobianDensity(NamedTuple):
    """Squared singular values of the end-to-end Jacobian (eigenvalues of JJᵀ).

    Attributes:
      grid: (n,) λ ascending, in [0, edge) (0 where λ underflows float64: below ~1e-308, which deep
        networks reach — ``log10_grid`` holds every point).
      density: (n,) ρ(λ) of the continuous part (linear units per unit λ; 0 where ``grid`` is 0).
      weights: (n,) quadrature weights on ``grid``: ∫ f(λ) ρ(λ) dλ ≈ Σ weights·f(grid)·density wherever
        λ is representable (0 elsewhere; use ``mass`` for integrals that must count every point).
      mass: (n,) ρ's mass of each grid cell, computed without λ (never underflows): ∫ f ρ dλ ≈
        Σ mass·f(grid); Σ mass + atom_mass = 1 up to ``mass_error``.
        The rule: midpoints in u with λ = edge·t^{2(L+1)}, t = 1 − (1 − u)² (resolves both the
        growth at 0 and the edge).
      mean: () m₁ = χ₁^L (closed form, includes every atom).
      var: () variance (closed form).
      edge: () upper edge of the support.
      atom_mass: () mass of the point mass at ``atom_loc`` (1 − ∫ρ).
      atom_loc: () its location (0, or σ_w^{2L} for linear φ with orthogonal weights).
      log10_grid: (n,) log10 λ of ``grid`` (finite also where λ underflows).
      mass_error: () Σ mass + atom_mass − 1, the quadrature's error on the total mass (which is exactly 1).
        Measured at L ∈ {64, 128, 256} with the default points: ≤ 1e-5 for relu (He) and tanh
        (Gaussian), ≤ 7e-5 for tanh (orthogonal); erf, whose φ′² = (4/π)e^{−2qx²} puts a power law of
        mass near 0 and makes ρ singular beyond the grid's map at λ → 0, 3e-5 / 2.2e-4 / 8.8e-4
        (σ_w² = 1.5, σ_b² = 0.05). More ``points`` shrink it (erf L = 256: 2.5e-4 at 8000).
    """

    grid: jax.Array
    density: jax.Array
    weights: jax.Array
    mean: jax.Array
    var: jax.Array
    edge: jax.Array
    atom_mass: jax.Array
    atom_loc: jax.Array
    mass: jax.Array
    log10_grid: jax.Array
    mass_error: jax.Array


def _d_atoms(activation, slope, q):
    """Atoms d_i = φ′(√q x_i)² and weights of the d-distribution."""
    z, w = _g.normal_rule(*_SPECTRUM_RULE)
    z, w = jnp.asarray(z), jnp.asarray(w)
    dphi = _g.derivative(resolve_activation(activation, slope=slope))
    d = dphi(jnp.sqrt(q) * z) ** 2
    return d, w / jnp.sum(w)


def _lam_of_z(orthogonal, depth, sw, d, w, z):
    """log λ(z) (complex or real z) and m = M_{D²}(z)."""
    m = jnp.sum(w * d / (z - d))
    base = sw * m * z
    if orthogonal:
        base = base / (1 + m)
    return jnp.log1p(m) - jnp.log(m) + depth * jnp.log(base), m


def _orthogonal(cfg, what) -> bool:
    """Whether the free-probability factor is Haar-orthogonal; refuses what this module does not model.

    A delta-orthogonal cnn is σ_w·Q_l at every position, so its Jacobian is the orthogonal mlp's per
    position (Xiao et al. 2018, arXiv:1806.05393, Sec. 4); a gaussian cnn's is not modelled here, nor
    are residual, recurrent or transformer stacks, nor norms.
    """
    requires(cfg, what, why=_WHY, **_MODELS)
    if cfg.arch == "cnn":
        requires(cfg, f"{what} for arch='cnn'", init=("delta_orthogonal",),
                 why={"init": "a gaussian kernel's per-position factors are not free"})
    return cfg.init in ("orthogonal", "delta_orthogonal")


def jacobian_moments(cfg, q):
    """Closed-form (mean, variance) of the eigenvalues of JJᵀ: m₁ = (σ_w² μ₁)^L,
    var = m₁² L (μ₂/μ₁² − 1 − s₁) with μ_k = E φ′(√q z)^{2k}, s₁ = −1 Gaussian / 0 orthogonal.

    Raises:
      ValueError: ``cfg`` is not a plain MLP (arch "mlp", norm "none").

    References: Pennington et al. 2018, arXiv:1802.09979, Eq. 11–12.
    """
    mu1 = _g.derivative_moment(cfg.activation, q, slope=cfg.leaky_slope)
    mu2 = _g.derivative_moment(cfg.activation, q, power=4, slope=cfg.leaky_slope)
    s1 = 0.0 if _orthogonal(cfg, "theory.jacobian_moments") else -1.0
    L = cfg.depth
    m1 = (_f(cfg.sigma_w2) * mu1) ** L
    return m1, m1**2 * L * (mu2 / mu1**2 - 1.0 - s1)


def _grid_map(points, depth, dtype):
    """Midpoints u ∈ (0, 1), t = 1 − (1 − u)², and d log λ/du for λ = edge·t^{2(L+1)} (``_MAP_POWER``).

    The power of t flattens the λ^{−L/(L+1)} growth at 0; t = 1 − (1 − u)² also makes the
    edge flat: near it edge − λ ∝ (1 − u)², which turns the √(edge − λ) vanishing (and the
    (edge − λ)^{−1/2} divergence of products of projections) into a smooth integrand in u.
    """
    u = (jnp.arange(points, dtype=dtype) + 0.5) / points
    t = 1.0 - (1.0 - u) ** 2
    p = _MAP_POWER * (depth + 1.0)
    return p * jnp.log(t), p * 2.0 * (1.0 - u) / t


@functools.partial(jax.jit, static_argnames=("activation", "orthogonal", "points"))
def _density(activation, slope, orthogonal, points, depth, sw, q):
    """(log λ grid, |Im m|/π, d log λ/du, edge, atom at 0) — depth, σ_w², q traced: one compile serves all."""
    depth = _f(depth)
    d, w = _d_atoms(activation, slope, q)
    atom0 = jnp.sum(jnp.where(d > 0, 0.0, w))
    dmax = jnp.max(d)
    lam_z = lambda z: _lam_of_z(orthogonal, depth, sw, d, w, z)[0]  # noqa: E731

    # Upper edge: minimum of log λ over real z > d_max.
    lam_u = lambda u: lam_z(dmax * (1 + jnp.exp(u)))  # noqa: E731
    us = jnp.linspace(*_EDGE_U)
    u0 = us[jnp.argmin(jax.vmap(lam_u)(us))]
    g1, g2 = jax.grad(lam_u), jax.grad(jax.grad(lam_u))

    def refine(_, u):
        h = g2(u)
        return jnp.where(h > 0, u - g1(u) / jnp.where(h > 0, h, 1.0), u)

    u_c = jax.lax.fori_loop(0, 20, refine, u0)
    z_c = dmax * (1 + jnp.exp(u_c))
    log_edge = lam_u(u_c)
    edge = jnp.exp(log_edge)
    curv = jax.grad(jax.grad(lambda z: jnp.exp(lam_z(z))))(z_c)  # λ″(z_c) > 0 at the minimum

    # Bulk: descend from the edge; Newton on exp(log λ(z) − log λ_target) − 1 (branch-cut free). The
    # targets are log λ, never λ: at depth 256 most of the mass lies below the smallest float64.
    log_t, dlog = _grid_map(points, depth, sw.dtype)
    log_grid = (log_edge + log_t)[::-1]
    cz = jnp.complex128 if sw.dtype == jnp.float64 else jnp.complex64

    def solve(z, target):
        def newton(state):
            z, _, it = state
            f, df = jax.jvp(lam_z, (z,), (jnp.ones_like(z),))
            e = jnp.exp(f - target)
            step = (e - 1.0) / (e * df)
            # damp large steps to stay on the branch being followed
            r = jnp.abs(step)
            lim = 0.5 * jnp.abs(z)
            step = jnp.where(r > lim, step * lim / jnp.where(r > 0, r, 1.0), step)
            ok = jnp.isfinite(step)
            return jnp.where(ok, z - step, z), jnp.where(ok, jnp.abs(step), 0.0), it + 1

        def going(state):
            z, moved, it = state
            return (it < _NEWTON_MAX) & (moved > _NEWTON_RTOL * jnp.abs(z))

        z = jax.lax.while_loop(going, newton, (z, jnp.asarray(jnp.inf, sw.dtype), 0))[0]
        im = jnp.abs(jnp.imag(_lam_of_z(orthogonal, depth, sw, d, w, z)[1])) / jnp.pi
        return z, jnp.where(jnp.isfinite(im), im, 0.0)

    lam0 = jnp.exp(log_grid[0])
    z_start = (z_c + 1j * jnp.sqrt(2 * jnp.maximum(edge - lam0, 0.0) / curv)).astype(cz)
    _, im_m = jax.lax.scan(solve, z_start, log_grid)
    return log_grid[::-1], im_m[::-1], dlog, edge, atom0


def jacobian_density(cfg, *, q0=None, points=DEFAULT_POINTS):
    """Density of the squared singular values of J = ∏ D_l W_l for the MLP ``cfg`` at its fixed point.

    Theory only: the measured counterpart is a different quantity, the per-layer log10 singular
    values of finite networks (``gradjax.empirical.jacobian_spectrum``), compared with this density by
    histogram or by its moments.

    Args:
      cfg: the network (structure static, numbers traced). Gaussian-class weights for every ``init``
        but "orthogonal".
      q0: () pre-activation variance at which D is evaluated in every layer (default q* of the
        length map; q* = inf is evaluated in the asymptotic regime).
      points: number of λ points (static).

    Returns:
      :class:`JacobianDensity` (linear units).

    The work runs in jitted pieces whose static arguments are (activation, orthogonal, points), so
    networks differing only in depth, σ_w², σ_b², slope or q0 share one compilation; the function
    itself may also be called under ``jax.jit`` or ``jax.vmap`` over the config's numbers.

    The density solve (edge search, Newton continuation in the complex plane) needs float64: with
    64-bit JAX disabled it runs inside a scoped ``jax.enable_x64(True)`` and returns float64 arrays
    (in float32 the continuation loses the physical branch and returns nan).

    Raises:
      ValueError: ``cfg`` is not a plain MLP: arch "mlp" and norm "none" only (an rnn's shared W is not
        free; residual spectra (Tarnowski et al. 2019, arXiv:1809.08848) are not implemented).

    References: Pennington et al. 2017, arXiv:1711.04735; Pennington et al. 2018, arXiv:1802.09979.
    """
    _orthogonal(cfg, "theory.jacobian_density")  # refuses first, before any work
    if not jax.config.jax_enable_x64:
        with jax.enable_x64(True):
            return _jacobian_density(cfg, q0, points)
    return _jacobian_density(cfg, q0, points)


def _jacobian_density(cfg, q0, points):
    sw = _f(cfg.sigma_w2)
    q = q_star(cfg.activation, sw, _f(cfg.sigma_b2), slope=cfg.leaky_slope) if q0 is None else _f(q0)
    q = jnp.where(jnp.isinf(q), _Q_EVAL_INF, q)
    m1, var = jacobian_moments(cfg, q)
    orthogonal = _orthogonal(cfg, "theory.jacobian_density")
    if cfg.activation == "linear" and orthogonal:
        return _point_mass(m1, points)
    log_grid, im_m, dlog, edge, atom0 = _density(cfg.activation, cfg.leaky_slope, orthogonal, points, cfg.depth, sw, q)
    grid = jnp.exp(log_grid)
    representable = grid > _TINY
    # ρ(λ) dλ = |Im m|/(π λ) · λ d log λ: the mass of a cell needs no λ, the density per unit λ does.
    density = jnp.where(representable, im_m / jnp.where(representable, grid, 1.0), 0.0)
    weights = jnp.where(representable, grid * dlog / points, 0.0)
    mass = im_m * dlog / points
    spectrum = JacobianDensity(grid, density, weights, m1, var, edge, atom0, jnp.zeros_like(edge), mass,
                                log_grid / _LN10, jnp.sum(mass) + atom0 - 1.0)
    if not orthogonal:
        return spectrum
    # Orthogonal weights with a constant φ′² (e.g. tanh at q* = 0, where every φ′(0)² = 1): every
    # singular value equals (σ_w² φ′²)^{L/2}, a point mass at m₁ (var = 0 in closed form). The
    # continuation has no bulk to follow there, so the point mass is selected (q may be traced).
    degenerate = var <= _DEGENERATE_VAR * m1**2 * cfg.depth
    return jax.tree.map(lambda a, b: jnp.where(degenerate, a, b), _point_mass(m1, points), spectrum)


def _point_mass(loc, points):
    """All of JJᵀ's eigenvalues at ``loc``: atom of mass 1, no continuous part (same fields as the density)."""
    grid = loc * (jnp.arange(points, dtype=loc.dtype) + 0.5) / points
    zeros = jnp.zeros_like(grid)
    return JacobianDensity(grid, zeros, zeros, loc, loc * 0.0, loc, jnp.ones_like(loc), loc, zeros, jnp.log10(grid),
                            jnp.zeros_like(loc))
