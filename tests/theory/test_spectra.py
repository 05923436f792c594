"""Jacobian spectra from free probability: closed forms, moments, and direct products of D W matrices."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

from gradjax import NetConfig
from gradjax import theory as T


def _integrals(s):
    """∫ρ, mean and variance of the returned density, atom included (the module's cell masses)."""
    pdf = np.asarray(s.mass)
    g = np.asarray(s.grid)
    a, loc = float(s.atom_mass), float(s.atom_loc)
    tot = pdf.sum() + a
    mean = (pdf * g).sum() + a * loc
    return tot, mean, (pdf * g * g).sum() + a * loc * loc - mean**2


def _fuss_catalan(L):
    # Fuss–Catalan law of a product of L square Ginibre matrices: mean 1, variance L (from the moments
    # C((L+1)k, k)/(Lk + 1)), upper edge (L+1)^{L+1}/L^L (Pennington et al. 2017, arXiv:1711.04735).
    return 1.0, float(L), (L + 1) ** (L + 1) / L**L


@pytest.mark.parametrize("L", [1, 2, 8, 32])
def test_linear_gaussian_is_fuss_catalan(L):
    cfg = NetConfig(depth=L, width=8, activation="linear", init="gaussian", sigma_w2=1.0)
    s = T.jacobian_density(cfg)
    mean, var, edge = _fuss_catalan(L)
    assert_allclose([float(s.mean), float(s.var)], [mean, var], rtol=1e-12)
    assert_allclose(float(s.edge), edge, rtol=1e-9)
    tot, m, v = _integrals(s)
    assert_allclose([tot, m, v], [1.0, mean, var], rtol=1e-3)
    if L == 1:  # Marchenko–Pastur with ratio 1: ρ(λ) = √(λ(4 − λ))/(2πλ)
        g = np.asarray(s.grid)
        assert_allclose(np.asarray(s.density), np.sqrt(g * (4 - g)) / (2 * np.pi * g), rtol=1e-6, atol=1e-9)


def test_linear_orthogonal_is_a_point_mass():
    cfg = NetConfig(depth=6, width=8, activation="linear", init="orthogonal", sigma_w2=1.0)
    s = T.jacobian_density(cfg)
    assert float(s.atom_mass) == 1.0 and float(s.atom_loc) == 1.0 and float(s.var) == 0.0
    assert float(s.edge) == 1.0 and float(jnp.max(s.density)) == 0.0


@pytest.mark.parametrize("act,init,sw,sb", [
    ("tanh", "gaussian", 1.7, 0.05), ("tanh", "orthogonal", 1.7, 0.05),
    ("relu", "gaussian", 2.0, 0.0), ("relu", "orthogonal", 2.0, 0.0),
])
def test_density_integrates_to_closed_form_moments(act, init, sw, sb):
    # ∫ρ + atom = 1, and the numerically integrated mean / variance match m₁ = χ₁^L and
    # var = m₁² L(μ₂/μ₁² − 1 − s₁) within 1e-3 relative, for L = 2 and 32. (relu + orthogonal at L = 2
    # is a product of two free projections: its density diverges as (edge − λ)^{-1/2} at the upper
    # edge, which the quadrature resolves only to ~4e-3; checked at L = 8 instead.)
    for L in ((8, 32) if (act, init) == ("relu", "orthogonal") else (2, 32)):
        cfg = NetConfig(depth=L, width=8, activation=act, init=init, sigma_w2=sw, sigma_b2=sb)
        s = T.jacobian_density(cfg)
        assert not bool(jnp.any(jnp.isnan(s.density)))
        tot, m, v = _integrals(s)
        assert_allclose([tot, m, v], [1.0, float(s.mean), float(s.var)], rtol=1e-3)
        assert_allclose(float(s.mean), float(T.chi_1(act, sw, sb)) ** L, rtol=1e-12)
    if act == "relu":
        assert_allclose(float(s.atom_mass), 0.5, rtol=1e-12)  # half the units are off: rank N/2


@pytest.mark.parametrize("act,init,sw,sb", [
    ("tanh", "orthogonal", 1.05, 1e-4), ("tanh", "gaussian", 1.05, 1e-4), ("relu", "gaussian", 2.0, 0.0),
    ("erf", "gaussian", 1.5, 0.05),
])
def test_deep_density_keeps_its_mass_and_variance(act, init, sw, sb):
    # At L = 64..256 most of the mass lies at λ far below float64's range (F(λ) ~ λ^{1/(L+1)} at 0), and
    # the mean and variance are carried by the few eigenvalues near the edge. The reference: total mass
    # 1 (atom: P(φ′ = 0), 1/2 for relu, else 0), and the closed-form moments m₁ = (σ_w² μ₁)^L, var =
    # m₁² L (μ₂/μ₁² − 1 − s₁) recomputed here from φ′'s moments by an independent numpy quadrature.
    z, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / w.sum()
    q = float(T.q_star(act, sw, sb))
    u = np.sqrt(q) * z
    dphi2 = {"tanh": 1 / np.cosh(u) ** 4, "relu": (u > 0).astype(float),
             "erf": 4 / np.pi * np.exp(-2 * u * u)}[act]
    mu1, mu2 = float(np.sum(w * dphi2)), float(np.sum(w * dphi2**2))
    s1 = 0.0 if init == "orthogonal" else -1.0
    # tanh + orthogonal: L = 64 only, for time (its law has a gap at 0 where each point costs the Newton
    # cap; measured mass errors at 128 / 256: 4e-6 / 6.5e-5, notes in JacobianDensity.mass_error)
    for L in ((64,) if init == "orthogonal" else (64, 128, 256)):
        s = T.jacobian_density(NetConfig(depth=L, width=8, activation=act, init=init, sigma_w2=sw, sigma_b2=sb))
        tot, m, v = _integrals(s)
        m1 = (sw * mu1) ** L
        assert_allclose(float(s.mass_error), tot - 1.0, rtol=1e-9, atol=1e-15)  # the error it reports is the error
        # erf's bound is its own (see JacobianDensity.mass_error); every other case within 1e-4
        assert abs(tot - 1.0) < (1e-3 if act == "erf" else 1e-4), (L, tot)
        assert_allclose(float(s.atom_mass), 0.5 if act == "relu" else 0.0, rtol=1e-12)
        # relu: exact moments; tanh/erf: Gauss–Hermite on a smooth φ′², ~1e-12 relative per moment, × L
        assert_allclose(m, m1, rtol=1e-5)
        assert_allclose(v, m1**2 * L * (mu2 / mu1**2 - 1.0 - s1), rtol=1e-5)
        assert np.all(np.isfinite(np.asarray(s.log10_grid)))  # also where λ itself underflows (relu, erf)


# ---- direct products ---------------------------------------------------------------------------

def _simulate(cfg, n, seeds, q, at=None):
    """Eigenvalues of JJᵀ, J = ∏ diag(φ′(h_l)) W_l along a width-n network started at variance q.

    ``at``: depths (≤ cfg.depth) at which to read the spectrum of the product so far, one array per
    depth (default: cfg.depth alone). A shallower network is the first layers of the deeper one
    (the same random stream), so one walk serves every depth.
    """
    at = (cfg.depth,) if at is None else tuple(at)
    phi = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0)}[cfg.activation]
    dphi = {"tanh": lambda x: 1 / np.cosh(x) ** 2, "relu": lambda x: (x > 0).astype(float)}[cfg.activation]
    out = {L: [] for L in at}
    for s in range(seeds):
        rng = np.random.default_rng(s)
        h = math.sqrt(q) * rng.standard_normal(n)
        J = np.eye(n)
        for L in range(1, max(at) + 1):
            if cfg.init == "orthogonal":  # Haar: QR of a Gaussian matrix with the sign of diag R fixed
                Q, R = np.linalg.qr(rng.standard_normal((n, n)))
                W = math.sqrt(cfg.sigma_w2) * Q * np.sign(np.diag(R))[None, :]
            else:
                W = rng.standard_normal((n, n)) * math.sqrt(cfg.sigma_w2 / n)
            h = W @ phi(h) + math.sqrt(cfg.sigma_b2) * rng.standard_normal(n)
            J = dphi(h)[:, None] * (W @ J)
            if L in out:
                out[L].append(np.linalg.eigvalsh(J @ J.T))
    eigs = [np.concatenate(out[L]) for L in at]
    return eigs if len(at) > 1 else eigs[0]


def atom_and_ks(s, eig):
    """(atom error, continuous KS): the predicted law against eigenvalues, the two parts compared apart.

    eigvalsh locates an eigenvalue only to its backward error, |Δλ| ≤ n·eps·λ_max (Golub & Van Loan,
    Matrix Computations, §8.1): below ``lo`` = 10× that bound an eigenvalue is "zero to rounding" (an
    exact 0 on one machine, ±1e-17 on another). So the fraction of eigenvalues below ``lo`` is compared
    with the predicted mass below it (the atom plus the continuous mass there, which deep products make
    sizeable: F(λ) ~ λ^{1/(L+1)} at 0), and the eigenvalues above ``lo`` with the predicted mass
    between lo and λ (KS distance of the two cumulative masses above lo, on the scale of the whole
    law, so the count below lo does not shift them). Neither part depends on how a machine rounds a
    zero.
    """
    pdf = np.asarray(s.mass)
    cdf = float(s.atom_mass) + np.cumsum(pdf) - 0.5 * pdf
    grid = np.asarray(s.grid)
    F = lambda x: np.interp(x, grid, cdf, left=float(s.atom_mass), right=1.0)  # noqa: E731
    x = np.sort(eig)
    n = x.size
    lo = 10 * n * np.finfo(np.float64).eps * max(float(x[-1]), float(s.edge))
    keep = x >= lo
    atom_err = abs(float(F(lo)) - (~keep).mean())
    if not keep.any():
        return atom_err, 0.0
    fc = F(x[keep]) - F(lo)  # predicted mass in [lo, λ]
    i = np.arange(1, keep.sum() + 1)
    return atom_err, float(max(np.max(np.abs(fc - i / n)), np.max(np.abs(fc - (i - 1) / n))))


def ks_distance(s, eig):
    """The larger of :func:`atom_and_ks`'s two distances."""
    return max(atom_and_ks(s, eig))


@pytest.mark.slow
@pytest.mark.parametrize("act,sw,sb", [("tanh", 1.7, 0.05), ("relu", 2.0, 0.0)])
@pytest.mark.parametrize("init", ["gaussian", "orthogonal"])
def test_density_matches_direct_products(act, sw, sb, init):
    # N = 1000, 1 seed (1000 eigenvalues; eigenvalues repel, so the empirical CDF is far tighter than
    # for i.i.d. samples), L = 2 and 8: the mass at zero (relu: the atom of inactive units) within 0.05
    # of the predicted mass (binomial std of 1000 unit states: 0.016), and the rest within KS 0.05.
    q = float(T.q_star(act, sw, sb))
    cfg = NetConfig(depth=8, width=1000, activation=act, init=init, sigma_w2=sw, sigma_b2=sb)
    for L, eig in zip((2, 8), _simulate(cfg, 1000, 1, q, at=(2, 8))):  # depth 2 = the first 2 layers of 8
        atom, ks = atom_and_ks(T.jacobian_density(cfg.with_(depth=L)), eig)
        assert atom < 0.05 and ks < 0.05, (L, atom, ks)


@pytest.mark.slow
def test_ks_distance_falls_with_width_at_depth_32():
    # tanh, orthogonal (dynamical isometry), L = 32, 1 seed: N = 100, 200, 400.
    act, sw, sb = "tanh", 1.7, 0.05
    q = float(T.q_star(act, sw, sb))
    cfg = NetConfig(depth=32, width=8, activation=act, init="orthogonal", sigma_w2=sw, sigma_b2=sb)
    s = T.jacobian_density(cfg)
    ds = [ks_distance(s, _simulate(cfg, n, 1, q)) for n in (100, 200, 400)]
    assert ds[2] < ds[0] and ds[2] < 0.05, ds


def test_spectrum_without_x64_matches_float64():
    """With 64-bit JAX off the density still solves in float64 (scoped), equal to the x64 result."""
    import jax as _jax

    from gradjax.config import NetConfig as _NetConfig
    from gradjax.theory import jacobian_density as _spectrum

    cfg = _NetConfig(depth=4, width=8, activation="tanh", sigma_w2=1.2)
    ref = _spectrum(cfg)
    _jax.config.update("jax_enable_x64", False)
    try:
        got = _spectrum(cfg)
    finally:
        _jax.config.update("jax_enable_x64", True)
    assert np.all(np.isfinite(np.asarray(got.density)))
    np.testing.assert_allclose(np.asarray(got.density), np.asarray(ref.density), rtol=1e-12)
    np.testing.assert_allclose(float(got.edge), float(ref.edge), rtol=1e-12)


@pytest.mark.parametrize("sw", [1.0, 0.8])
def test_orthogonal_tanh_at_zero_length_is_a_point_mass(sw):
    # σ_b² = 0, σ_w² ≤ 1: tanh's q* = 0 (at σ_w² = 1 approached algebraically: the solve stops at
    # ~1e-17), where φ′(0)² = 1 in every unit (φ′(√q z)² = 1 − O(q)), so J = ∏ W_l with W_l = σ_w·Haar
    # orthogonal and every squared singular value is σ_w^{2L} (closed form: a point mass).
    L = 6
    cfg = NetConfig(depth=L, width=8, activation="tanh", init="orthogonal", sigma_w2=sw, sigma_b2=0.0)
    s = T.jacobian_density(cfg)
    assert float(T.q_star("tanh", sw, 0.0)) < 1e-15
    for f in s:
        assert bool(jnp.all(jnp.isfinite(jnp.asarray(f)))), s
    assert_allclose([float(s.atom_mass), float(s.atom_loc), float(s.mean)], [1.0, sw**L, sw**L], rtol=1e-12)
    assert abs(float(s.var)) < 1e-20 and float(jnp.max(s.density)) == 0.0
