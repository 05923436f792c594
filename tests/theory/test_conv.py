"""CNN mean field (gradjax.theory.conv) against closed forms, the mlp's recursion and measurement."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from gradjax import NetConfig
from gradjax import empirical as E
from gradjax import theory as T
from gradjax.theory import conv as TC
from tests.theory.test_spectra import atom_and_ks

# Compile-bound: see tests/conftest.py (module 43.7 → 39.1 CPU s beside a default run; six tests 0.6–1.6 s faster
# each). The two marked full_codegen below ran slower at level 0 (per-mode decay rates 5.7 → 9.7 CPU s,
# delta-orthogonal spectrum 11.3 → 11.9) and stay at the default.
pytestmark = pytest.mark.quick_codegen


def _cnn(**kw):
    base = dict(depth=12, width=64, arch="cnn", spatial=(16,), activation="tanh", sigma_w2=1.5, sigma_b2=0.1)
    base.update(kw)
    return NetConfig(**base)


def test_cnn_q_profile_equals_the_mlps_and_the_covariance_maps_diagonal():
    # Xiao et al. 2018 (arXiv:1806.05393), Sec. 2.2: with a translation-invariant input covariance
    # every position follows the mlp's length map. Two computations: the mlp recursion, and the
    # diagonal of the full spatial covariance map (pair moments + window average) from Σ_0 = q0·I.
    for act, sw, sb, init in [("tanh", 1.5, 0.1, "gaussian"), ("relu", 2.0, 0.0, "delta_orthogonal"),
                              ("erf", 3.0, 0.3, "gaussian")]:
        cnn = _cnn(activation=act, sigma_w2=sw, sigma_b2=sb, init=init, spatial=(3, 4))
        mlp = NetConfig(depth=12, width=64, activation=act, sigma_w2=sw, sigma_b2=sb)
        want = np.asarray(T.q_profile(mlp))
        np.testing.assert_allclose(T.q_profile(cnn), want, rtol=1e-12)
        cov = TC.spatial_covariance_profile(cnn, jnp.eye(12))
        np.testing.assert_allclose(np.diagonal(cov, axis1=1, axis2=2), want[:, None] * np.ones((1, 12)), rtol=1e-10)
        # mean field on both sides (the mlp default adds its finite-width drift, not modelled for the cnn)
        np.testing.assert_allclose(T.gradient_profile(cnn), T.gradient_profile(mlp, finite_width=False), rtol=1e-12)


def test_measured_cnn_q_profile_matches_theory():
    # width 64 channels × 16 positions, 16 seeds × 4 examples. The examples and positions of one seed
    # share its weights, so a seed's q_l carries its own gain fluctuation (O(1/√C) per layer); the seed
    # mean is compared within 4 standard errors of the mean across seeds plus 1% for the O(1/C)
    # finite-width bias of the mean.
    cfg = _cnn(depth=8, dtype="float64")
    per_seed = np.asarray(E.q_profile(cfg, seeds=16, batch=4))
    sem = per_seed.std(0, ddof=1) / math.sqrt(per_seed.shape[0])
    want = np.asarray(T.q_profile(cfg))
    assert np.all(np.abs(per_seed.mean(0) - want) < 4 * sem + 0.01 * want), (per_seed.mean(0), want, sem)


@pytest.mark.parametrize("spatial,k", [((16,), 3), ((6, 8), 3), ((7,), 5)], ids=str)
def test_averaging_eigenvalues_are_those_of_the_circulant_window_average(spatial, k):
    # Independent: the explicit P × P matrix of ε ↦ k^{−d} Σ_β ε(· + β), diagonalized numerically; it is
    # symmetric and circulant, so its eigenvalues are real and each Fourier mode is an eigenvector.
    cfg = _cnn(spatial=spatial, kernel_size=k)
    p = math.prod(spatial)
    a = _window_matrix(spatial, k)
    modes = np.fft.fftn(np.eye(p).reshape((p,) + spatial), axes=tuple(range(1, len(spatial) + 1))).reshape(p, p)
    lam = np.asarray(TC.averaging_eigenvalues(cfg)).reshape(-1)
    np.testing.assert_allclose(a @ modes.T, modes.T * lam[None, :], atol=1e-12)
    np.testing.assert_array_equal(TC.averaging_eigenvalues(cfg.with_(init="delta_orthogonal")), np.ones(spatial))


def test_mode_depth_scales_closed_forms():
    # relu at σ_w² = 2, σ_b² = 0: χ_c = χ_q = 1, so ξ_p = −1/ln λ_p, λ_p = (1 + 2 cos(2πp/16))/3; the
    # mean mode and every delta-orthogonal mode are marginal (inf).
    cfg = _cnn(activation="relu", sigma_w2=2.0, sigma_b2=0.0)
    lam = (1 + 2 * np.cos(2 * np.pi * np.arange(16) / 16)) / 3
    for kind in ("c", "q"):
        xi = np.asarray(TC.mode_depth_scales(cfg, kind))
        assert np.isinf(xi[0])
        np.testing.assert_allclose(xi[1:], -1 / np.log(np.abs(lam[1:])), rtol=1e-10)
        assert np.all(np.isinf(TC.mode_depth_scales(cfg.with_(init="delta_orthogonal"), kind)))
    # tanh off criticality: ξ_p = −1/ln(χ_c λ_p) with χ_c from the mlp theory.
    t = _cnn()
    np.testing.assert_allclose(TC.mode_depth_scales(t)[1], -1 / np.log(float(T.chi_c("tanh", 1.5, 0.1)) * lam[1]),
                               rtol=1e-10)


@pytest.mark.full_codegen  # compute-bound: 5.7 → 9.7 CPU s at quick codegen
def test_measured_per_mode_decay_rates_match_the_depth_scales():
    # relu gaussian cnn at σ_w² = 2, σ_b² = 0, 16 positions, 64 channels, 256 seeds × 32 examples. For relu
    # E[q_l(α)] = (σ_w²/2)·(A E q_{l−1})(α) exactly at any width (φ(h)² averages to q/2 for any symmetric h),
    # so the seed- and example-mean of the length profile is unbiased; its Fourier modes p = 1, 2, divided
    # by the mean mode, decay by λ_p per layer (ξ = 19.2 and 4.6 layers, Xiao et al. 2018, arXiv:1806.05393,
    # Sec. 3). Fitted over layers 1–24 (p = 1) and 1–8 (p = 2). Measured (seeds 0–255): ξ₁ = 18.7, ξ₂ = 4.62;
    # over 16 groups of 16 seeds the estimate spreads by 11 % (ξ₁) and 7.5 % (ξ₂) around 19.3 and 4.64, so the
    # standard error at 256 seeds is ≈ 3 % and 2 %: the 10 % bound is > 3 standard errors. (The mean over examples of each
    # example's q/mean_α q, used before, is biased low by 5 % at this width: ξ₁ = 18.3 ± 0.35 over 256
    # seeds, equally with the parameters drawn by jax.random.normal.)
    cfg = _cnn(depth=24, activation="relu", sigma_w2=2.0, sigma_b2=0.0, in_dim=16)
    a = np.arange(16)
    scale = 1 + 0.6 * np.cos(2 * np.pi * a / 16) + 0.4 * np.cos(4 * np.pi * a / 16 + 1)
    x = jax.random.normal(jax.random.key(7), (32, 16, 16)) * jnp.asarray(scale, jnp.float32)[None, :, None]
    groups = [np.diagonal(np.asarray(E.spatial_covariance(cfg, seeds=list(range(s, s + 64)), inputs=x), np.float64),
                          axis1=-2, axis2=-1).mean((0, 2)) for s in range(0, 256, 64)]  # 4 × (L, P) seed means
    f = np.fft.fft(np.mean(groups, axis=0), axis=-1)
    modes = np.abs(f) / np.abs(f[:, :1])
    xi = np.asarray(TC.mode_depth_scales(cfg, "q"))
    for p, stop in ((1, 24), (2, 8)):
        rate = np.polyfit(np.arange(stop), np.log(modes[:stop, p]), 1)[0]
        assert abs(-1 / rate / xi[p] - 1) < 0.10, (p, -1 / rate, xi[p])


def _nearest_neighbour_decorrelation(sigma):
    """1 − c(α, α+1) of covariances (L, P, P) over a ring of P positions: (L, P)."""
    q = np.diagonal(sigma, axis1=1, axis2=2)
    c = sigma / np.sqrt(q[:, :, None] * q[:, None, :])
    p = sigma.shape[-1]
    return 1 - np.stack([c[:, i, (i + 1) % p] for i in range(p)], axis=1)


def test_measured_tanh_correlation_modes_decay_at_the_predicted_depth_scales():
    # tanh gaussian cnn at σ_w² = 1.5, σ_b² = 0.1 (ordered: c* = 1, χ_c = 0.878), 16 positions, 64 channels,
    # 64 seeds × 32 inputs, depth 12. Inputs at q*: per channel a common part and a private part of weight
    # ε(α) = η(1 + 0.6 cos(2πα/16) + 0.4 cos(4πα/16 + 1))/2, η = 0.1, so 1 − c between neighbours varies along
    # the ring. The seed- and input-mean covariance gives the nearest-neighbour 1 − c_l(α); its Fourier modes
    # p = 1, 2 decay over ξ_p = −1/ln(χ_c λ_p) = 5.47 and 2.87 layers (Xiao et al. 2018, arXiv:1806.05393,
    # Sec. 3), fitted over the 12 layers. Measured (seeds 0–63): ξ₁ = 5.59 (+2.2 %), ξ₂ = 2.88 (+0.3 %);
    # groups of 32 seeds spread by ≈ 5 %. Why η is small: the mean field linearized around c* is what ξ_p describes; at η = 0.3 the exact
    # (nonlinear) covariance map itself decays faster, ξ₁ = 4.97 instead of 5.47 (−9 %), η = 0.1: −3.7 %. The
    # mean mode p = 0 is left out: finite width keeps a uniform floor of 1 − c (fluctuations re-injected every
    # layer, O(1/(N(1 − χ_c)))) that slows its apparent decay (ξ₀ 7.6–8.6 over seed groups vs 7.65).
    cfg = _cnn(in_dim=64)
    q_star = float(T.q_star("tanh", 1.5, 0.1))
    a = np.arange(16)
    eps = 0.1 * (1 + 0.6 * np.cos(2 * np.pi * a / 16) + 0.4 * np.cos(4 * np.pi * a / 16 + 1)) / 2
    k1, k2 = jax.random.split(jax.random.key(11))
    common, private = jax.random.normal(k1, (32, 1, 64)), jax.random.normal(k2, (32, 16, 64))
    x = math.sqrt(q_star) * (np.sqrt(1 - eps)[None, :, None] * common + np.sqrt(eps)[None, :, None] * private)
    sigma = np.asarray(E.spatial_covariance(cfg, seeds=64, inputs=jnp.asarray(x, jnp.float32)), np.float64)
    modes = np.abs(np.fft.fft(_nearest_neighbour_decorrelation(sigma.mean((0, 2))), axis=-1))
    xi = np.asarray(TC.mode_depth_scales(cfg, "c"))
    for p in (1, 2):
        measured = -1 / np.polyfit(np.arange(cfg.depth), np.log(modes[:, p]), 1)[0]
        assert abs(measured / xi[p] - 1) < 0.10, (p, measured, xi[p])


@pytest.mark.slow
@pytest.mark.full_codegen  # compute-bound: 11.3 → 11.9 CPU s at quick codegen
def test_tanh_delta_orthogonal_cnn_at_criticality_has_the_orthogonal_free_probability_spectrum():
    # Xiao et al. 2018, Sec. 4: a delta-orthogonal cnn's Jacobian is, position by position, an orthogonal
    # mlp's; at criticality its squared singular values follow the orthogonal density of Pennington et al.
    # 2017 (arXiv:1711.04735). 64 channels × 4 × 4 positions = 1,024 singular values per seed, 2 seeds,
    # depth 8, inputs scaled so that h_0 starts at q*; KS < 0.05.
    sb = 0.05
    sw = float(T.critical_sigma_w2("tanh", sb))
    cfg = NetConfig(depth=8, width=64, arch="cnn", spatial=(4, 4), init="delta_orthogonal", sigma_w2=sw, sigma_b2=sb,
                    in_dim=8)
    q = float(T.q_star("tanh", sw, sb))
    x = math.sqrt(q) * jax.random.normal(jax.random.key(3), (2, 1, 4, 4, 8))
    logsv = np.asarray(E.jacobian_spectrum(cfg, seeds=2, inputs=x, layers="end", method="gram"), np.float64)
    atom, ks = atom_and_ks(T.jacobian_density(cfg), 10.0 ** (2 * logsv.reshape(-1)))
    assert ks < 0.05 and atom < 0.05, (ks, atom)


def test_theory_refuses_what_it_does_not_model():
    tr = NetConfig(depth=4, width=8, arch="transformer", tokens=3)
    with pytest.raises(ValueError, match="arch"):  # q and gradient profiles of transformers: theory.attention
        T.c_profile(tr)
    with pytest.raises(ValueError, match="init"):
        T.jacobian_density(_cnn())
    with pytest.raises(ValueError, match="arch"):
        T.jacobian_density(NetConfig(depth=4, width=8, arch="resmlp"))
    with pytest.raises(ValueError, match="arch"):
        T.gradient_spread(_cnn())
    with pytest.raises(ValueError, match="arch"):
        TC.mode_depth_scales(NetConfig(depth=4, width=8))
    with pytest.raises(ValueError, match="kind"):
        TC.mode_depth_scales(_cnn(), "z")


def _window_matrix(spatial, k):
    """Explicit P × P matrix of v ↦ k^{−d} Σ_β v(· + β) on the torus (row-major positions)."""
    p = math.prod(spatial)
    idx = np.arange(p).reshape(spatial)
    a = np.zeros((p, p))
    for beta in np.ndindex(*(k,) * len(spatial)):
        shifted = np.roll(idx, tuple(k // 2 - b for b in beta), axis=tuple(range(len(spatial))))
        a[idx.reshape(-1), shifted.reshape(-1)] += 1.0 / k ** len(spatial)
    return a


@np.vectorize
def _tanh_v(q):
    """E tanh(√q z)² by adaptive quadrature (scipy; Gauss–Hermite converges slowly here: tanh has poles)."""
    return integrate.quad(lambda z: np.tanh(np.sqrt(q) * z) ** 2 * np.exp(-z * z / 2), -np.inf, np.inf,
                          epsabs=1e-14, epsrel=1e-13)[0] / np.sqrt(2 * np.pi)


@np.vectorize
def _tanh_mu1(q):
    """E tanh′(√q z)² by adaptive quadrature."""
    return integrate.quad(lambda z: (1 - np.tanh(np.sqrt(q) * z) ** 2) ** 2 * np.exp(-z * z / 2), -np.inf, np.inf,
                          epsabs=1e-14, epsrel=1e-13)[0] / np.sqrt(2 * np.pi)


def test_position_resolved_mean_field_against_an_explicit_matrix_recursion():
    # Independent computation: the per-position lengths and cotangent squares by numpy with the explicit
    # window matrix A (identity for delta-orthogonal) and scipy quadrature for the moments:
    # q_l = σ_w² A V(q_{l−1}) + σ_b²; g_{l−1} = σ_w² μ₁(q_{l−1}) ⊙ A g_l, g_L = μ₁(q_L) (the profile) or 1 (E σ²).
    rng = np.random.default_rng(0)
    q0 = rng.uniform(0.0, 1.5, size=(2, 3, 4))  # two inputs; positions start far from q* (0.57)
    for init in ("gaussian", "delta_orthogonal"):
        cfg = _cnn(depth=6, spatial=(3, 4), init=init, sigma_w2=1.76, sigma_b2=0.05)
        a = _window_matrix((3, 4), 3) if init == "gaussian" else np.eye(12)
        q = [q0.reshape(2, 12)]
        for _ in range(cfg.depth):
            q.append(1.76 * _tanh_v(q[-1]) @ a.T + 0.05)
        np.testing.assert_allclose(np.asarray(TC.position_q_profile(cfg, q0)).reshape(6, 2, 12), q[1:], rtol=1e-10)
        mu1 = [_tanh_mu1(x) for x in q]
        profile, sv2 = _cotangent_squares(mu1, a, mu1[-1]), _cotangent_squares(mu1, a, np.ones((2, 12)))
        tot = profile.sum((1, 2))
        np.testing.assert_allclose(TC.position_gradient_profile(cfg, q0), 0.5 * np.log10(tot[1:] / tot[-1]), atol=1e-10)
        np.testing.assert_allclose(TC.position_jacobian_sv2_mean(cfg, q0[1]), np.log10(sv2[:-1, 1].mean(-1)), atol=1e-10)


def _cotangent_squares(mu1, a, top):
    """(L + 1, …) g_l from g_L = top: g_{l−1} = σ_w² μ₁(q_{l−1}) ⊙ A g_l (σ_w² = 1.76)."""
    g = [top]
    for l in range(len(mu1) - 1, 0, -1):
        g.insert(0, 1.76 * mu1[l - 1] * (g[0] @ a))
    return np.asarray(g)


def test_position_resolved_mean_field_reduces_to_the_mlps_for_uniform_lengths_and_refuses_bad_shapes():
    # Every position at one q0: the mlp's recursion (gradjax.theory.gradient_profile, mean field; block_factors).
    for init in ("gaussian", "delta_orthogonal"):
        cfg = _cnn(depth=10, init=init)
        q0 = np.full((2, 16), 0.3)
        np.testing.assert_allclose(TC.position_gradient_profile(cfg, q0), T.gradient_profile(cfg, 0.3, finite_width=False),
                                   atol=1e-12)
        np.testing.assert_allclose(TC.position_jacobian_sv2_mean(cfg, q0[0]),
                                   np.cumsum(np.log10(np.asarray(T.block_factors(cfg, 0.3)))[::-1])[::-1], atol=1e-12)
    with pytest.raises(ValueError, match="q0 must have shape"):
        TC.position_gradient_profile(_cnn(), np.ones((2, 15)))
    with pytest.raises(ValueError, match="q0 must have shape"):
        TC.position_jacobian_sv2_mean(_cnn(), np.ones((2, 16)))
    with pytest.raises(ValueError, match="arch"):
        TC.position_q_profile(NetConfig(depth=4, width=8), np.ones(3))
