"""Mean-field maps and fixed points: closed forms, independent scipy/numpy numerics, Monte Carlo."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import integrate, optimize, special

from gradjax import NetConfig
from gradjax import theory as T
from gradjax.nn import forward, init_params, input_shape
from gradjax.nn.activations import ACTIVATIONS


pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


def _quad_normal(f):
    dens = lambda x: f(x) * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        return integrate.quad(dens, -12, 12, points=[0.0], epsabs=1e-15, epsrel=1e-13, limit=400)[0]


# Independent references written with math/scipy: (φ, φ′) for tanh and erf.
_REF = {
    "tanh": (math.tanh, lambda x: 1 / math.cosh(x) ** 2),
    "erf": (special.erf, lambda x: 2 / math.sqrt(math.pi) * math.exp(-x * x)),
}
_NP = {"tanh": np.tanh, "erf": special.erf}


def _ref_q_star(act, sw, sb):
    f = _REF[act][0]
    G = lambda q: sw * _quad_normal(lambda x: f(math.sqrt(q) * x) ** 2) + sb - q  # noqa: E731
    return optimize.brentq(G, 1e-12, sw + sb + 1.0, xtol=1e-15, rtol=1e-14)


def _ref_chi1(act, sw, sb):
    q = _ref_q_star(act, sw, sb)
    return sw * _quad_normal(lambda x: _REF[act][1](math.sqrt(q) * x) ** 2)


def _ref_c_star(act, sw, sb):
    """c* by brentq on a fine 2-D trapezoid rule (spectrally accurate for these analytic integrands)."""
    q = _ref_q_star(act, sw, sb)
    z = np.arange(-9.0, 9.0 + 1e-9, 0.02)
    w = np.exp(-z * z / 2) * 0.02 / math.sqrt(2 * math.pi)
    f = _NP[act]
    z1, z2 = z[:, None], z[None, :]

    def F(c):
        u2 = math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
        pair = np.sum(w[:, None] * w[None, :] * f(math.sqrt(q) * z1) * f(u2))
        return (sw * pair + sb) / q - c

    return optimize.brentq(F, 0.0, 1 - 1e-9, xtol=1e-14)


# ---- closed forms --------------------------------------------------------------------------------

def test_relu_closed_forms():
    for sw, sb in [(1.0, 0.1), (1.9, 0.3), (0.5, 0.0)]:
        q = 0.7
        assert_allclose(float(T.q_map("relu", sw, sb, q)), sw * q / 2 + sb, rtol=1e-14)
        assert_allclose(float(T.chi_1("relu", sw, sb)), sw / 2, rtol=1e-14)
        # fixed point of q ↦ σ_w² q/2 + σ_b²
        assert_allclose(float(T.q_star("relu", sw, sb)), sb / (1 - sw / 2), rtol=1e-12, atol=1e-300)
        # c-map = arc-cosine kernel (Cho & Saul 2009): E[relu relu] = q (sin θ + (π−θ) c)/(2π)
        for c in (0.0, 0.5, 0.9):
            th = math.acos(c)
            k = q * (math.sin(th) + (math.pi - th) * c) / (2 * math.pi)
            assert_allclose(float(T.c_map("relu", sw, sb, c, q=q)), (sw * k + sb) / (sw * q / 2 + sb), rtol=1e-13)
    # relu above criticality: the length map escapes; everything stays finite or inf, never nan
    assert float(T.q_star("relu", 2.5, 0.1)) == math.inf
    assert float(T.c_star("relu", 2.5, 0.1)) == 1.0
    assert float(T.depth_scale_c("relu", 2.5, 0.1)) == math.inf
    assert_allclose(float(T.critical_sigma_w2("relu", 0.3)), 2.0, rtol=1e-12)


def test_erf_q_map_is_arcsine_kernel():
    # E[erf(√q z)²] = (2/π) arcsin(2q/(1+2q)) (Williams 1997), checked against scipy here.
    for q in (0.1, 1.0, 5.0):
        ref = 1.3 * _quad_normal(lambda x: special.erf(math.sqrt(q) * x) ** 2) + 0.2
        assert_allclose(float(T.q_map("erf", 1.3, 0.2, q)), ref, rtol=1e-11)
        assert_allclose(float(T.q_map("erf", 1.3, 0.2, q)), 1.3 * 2 / math.pi * math.asin(2 * q / (1 + 2 * q)) + 0.2,
                        rtol=1e-14)


def test_linear_fixed_points():
    # linear: q* = σ_b²/(1 − σ_w²), χ₁ = σ_w², critical σ_w² = 1.
    assert_allclose(float(T.q_star("linear", 0.5, 0.2)), 0.4, rtol=1e-12)
    assert_allclose(float(T.chi_1("linear", 0.5, 0.2)), 0.5, rtol=1e-14)
    assert_allclose(float(T.critical_sigma_w2("linear", 0.2)), 1.0, rtol=1e-12)


# ---- independent numerics --------------------------------------------------------------------------

@pytest.mark.parametrize("act", ["tanh", "erf"])
def test_fixed_points_on_a_grid_match_scipy(act):
    for sw in (0.8, 1.5, 2.5, 4.0):
        for sb in (0.05, 0.3):
            assert_allclose(float(T.q_star(act, sw, sb)), _ref_q_star(act, sw, sb), rtol=1e-6)
            chi = _ref_chi1(act, sw, sb)
            assert_allclose(float(T.chi_1(act, sw, sb)), chi, rtol=1e-6)
            c_ref = _ref_c_star(act, sw, sb) if chi > 1 else 1.0  # ordered: c* = 1
            assert_allclose(float(T.c_star(act, sw, sb)), c_ref, rtol=1e-6)


def test_tanh_critical_line_matches_scipy_root():
    # Schoenholz et al. 2017 (arXiv:1611.01232, Fig. 1) report ≈ 1.76 at σ_b² = 0.05; here an
    # independent root of χ₁(σ_w²) = 1 with scipy quadrature and brentq.
    ref = optimize.brentq(lambda sw: _ref_chi1("tanh", sw, 0.05) - 1, 1.2, 2.5, xtol=1e-13)
    got = float(T.critical_sigma_w2("tanh", 0.05))
    assert_allclose(got, ref, rtol=1e-7)
    assert round(got, 4) == 1.7610 == round(ref, 4)
    assert int(T.phase("tanh", got, 0.05, tol=1e-5)) == 1
    assert int(T.phase("tanh", 1.5, 0.05)) == 0 and int(T.phase("tanh", 2.0, 0.05)) == 2


@pytest.mark.parametrize("act", ["tanh", "erf"])
def test_critical_line_matches_parametric_form(act):
    # (odd activations: a single stable q*; gelu's length map can have several fixed points, and the
    # library's χ₁ is taken at the one reached from q0 = 1)
    # On the line: σ_w² = 1/E[φ′(√q z)²], σ_b² = q − σ_w² E[φ(√q z)²] (Schoenholz et al. 2017, Sec. 3).
    from gradjax.theory import gaussian as g

    for q in (0.3, 1.0, 2.0):
        sw = 1.0 / float(g.derivative_moment(act, q))
        sb = q - sw * float(g.second_moment(act, q))
        if sb < 0:
            continue
        assert_allclose(float(T.critical_sigma_w2(act, sb)), sw, rtol=1e-7)


def test_critical_point_at_a_given_fixed_point():
    # σ_w² = 1/E[φ′(√q z)²], σ_b² = q − σ_w² E[φ(√q z)²] (Schoenholz et al. 2017, Sec. 3), against scipy
    # quadrature written here; for tanh at small q the series E tanh² = q − 2q² + 17q³/3, E tanh′⁴ =
    # 1 − 2q + 7q² − … gives σ_b² = (4/3) q³ + O(q⁴), a difference of numbers equal to relative q².
    from scipy.integrate import quad

    def ref(phi, dphi, q):
        gauss = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
        mu1 = quad(lambda z: gauss(z) * dphi(math.sqrt(q) * z) ** 2, -np.inf, np.inf, epsabs=0, epsrel=1e-13)[0]
        v = quad(lambda z: gauss(z) * phi(math.sqrt(q) * z) ** 2, -np.inf, np.inf, epsabs=0, epsrel=1e-13)[0]
        return 1 / mu1, q - v / mu1

    tanh, dtanh = math.tanh, lambda x: 1 - math.tanh(x) ** 2
    for q in (0.57, 1 / 8, 1 / 128, 1e-3):
        sw, sb = T.critical_point("tanh", q)
        sw_ref, sb_ref = ref(tanh, dtanh, q)
        assert_allclose(sw, sw_ref, rtol=1e-12)
        assert_allclose(sb, sb_ref, rtol=1e-6 if q < 0.01 else 1e-10)  # the reference's own cancellation
        if q <= 1e-3:
            assert_allclose(sb, 4 / 3 * q**3, rtol=10 * q)  # the O(q⁴) remainder is relative O(q)
        # and it is a critical point whose length map has q as its fixed point (the library's own solvers)
        with jax.enable_x64(True):
            assert_allclose(float(T.chi_1("tanh", sw, sb)), 1.0, rtol=1e-9)
            assert_allclose(float(T.q_star("tanh", sw, sb)), q, rtol=1e-6)
    assert_allclose(T.critical_point("relu", 0.3), (2.0, 0.0), atol=1e-12)  # E relu′² = 1/2, E relu² = q/2
    with pytest.raises(ValueError, match="q_star must be a finite number > 0"):
        T.critical_point("tanh", 0.0)
    with pytest.raises(ValueError, match="no critical point"):  # E σ(x)² ≥ 1/4 with σ_w² ≈ 16: σ_b² < 0
        T.critical_point("sigmoid", 0.1)


def test_depth_scales_and_degenerate_cases():
    # Ordered tanh at σ_b² = 0: q* = 0 exactly, χ₁ = σ_w² φ′(0)² = σ_w², ξ_q = −1/ln σ_w² (linearised map).
    assert float(T.q_star("tanh", 0.5, 0.0)) == 0.0
    assert_allclose(float(T.depth_scale_q("tanh", 0.5, 0.0)), -1 / math.log(0.5), rtol=1e-8)
    assert_allclose(float(T.depth_scale_c("tanh", 0.5, 0.0)), -1 / math.log(0.5), rtol=1e-8)
    # Critical point σ_w² = 1, σ_b² = 0: ξ_c = inf (not nan).
    assert float(T.depth_scale_c("tanh", 1.0, 0.0)) == math.inf
    # ξ_c = −1/ln χ_c, and χ_c = χ₁ in the ordered phase.
    assert_allclose(float(T.chi_c("tanh", 1.2, 0.1)), float(T.chi_1("tanh", 1.2, 0.1)), rtol=1e-12)
    assert_allclose(float(T.depth_scale_c("tanh", 1.2, 0.1)), -1 / math.log(float(T.chi_1("tanh", 1.2, 0.1))),
                    rtol=1e-10)
    # χ_c by autodiff of the c-map at c* (chaotic phase) equals the Price-theorem form.
    sw, sb = 2.5, 0.1
    cs = T.c_star("tanh", sw, sb)
    slope = jax.grad(lambda c: T.c_map("tanh", sw, sb, c))(cs)
    assert_allclose(float(slope), float(T.chi_c("tanh", sw, sb)), rtol=1e-8)
    # ξ_q: slope of the q-map at q* by autodiff of the map
    q = T.q_star("tanh", sw, sb)
    s = jax.grad(lambda qq: T.q_map("tanh", sw, sb, qq))(q)
    assert_allclose(float(T.depth_scale_q("tanh", sw, sb)), -1 / math.log(float(s)), rtol=1e-10)


@pytest.mark.slow
def test_grid_is_finite_for_every_kind_of_activation():
    # One representative per code path (closed form, sloped, saturating, kinked, smooth rectifier);
    # tanh and relu grids are covered above. ~3 s of compilation each.
    sw = jnp.linspace(0.25, 4.0, 8)
    sb = jnp.array([0.0, 0.01, 0.3, 1.0])
    for act in ("linear", "leaky_relu", "sigmoid", "hard_tanh", "selu", "gelu", "softplus"):
        assert act in ACTIVATIONS
        f = jax.jit(jax.vmap(jax.vmap(lambda a, b: (T.q_star(act, a, b), T.chi_1(act, a, b),
                                                    T.depth_scale_c(act, a, b)), (None, 0)), (0, None)))
        q, chi, xi = f(sw, sb)
        for name, v in (("q*", q), ("chi_1", chi), ("xi_c", xi)):
            assert not bool(jnp.any(jnp.isnan(v))), (act, name)
        assert bool(jnp.all(q >= 0)) and bool(jnp.all(chi >= 0)) and bool(jnp.all(xi >= 0)), act


def test_phase_diagram_grid_64_and_no_recompile():
    sw = jnp.linspace(0.5, 4.0, 64)
    sb = jnp.linspace(0.0, 1.0, 64)
    traces = []

    def cell(a, b):
        traces.append(1)  # runs once per trace
        return T.chi_1("tanh", a, b), T.depth_scale_c("tanh", a, b)

    grid = jax.jit(jax.vmap(jax.vmap(cell, (None, 0)), (0, None)))
    chi, xi = grid(sw, sb)
    chi2, _ = grid(sw * 1.0001, sb)
    assert len(traces) == 1  # second call reuses the compiled grid
    assert chi.shape == (64, 64) and not bool(jnp.any(jnp.isnan(xi)))
    assert bool(jnp.all(jnp.diff(chi, axis=0) > 0))  # χ₁ grows with σ_w² at fixed σ_b²
    # The library's own jitted functions are not retraced on a second call with new values.
    T.chi_1("tanh", 1.1, 0.2)
    n = T.chi_1._cache_size()
    T.chi_1("tanh", 1.3, 0.4)
    assert T.chi_1._cache_size() == n


def test_grad_chi1_matches_finite_differences():
    for act, sw, sb in [("tanh", 1.5, 0.05), ("erf", 2.0, 0.3), ("gelu", 1.5, 0.1)]:
        g = jax.grad(lambda s: T.chi_1(act, s, sb))(sw)
        h = 1e-5
        fd = (T.chi_1(act, sw + h, sb) - T.chi_1(act, sw - h, sb)) / (2 * h)
        assert_allclose(float(g), float(fd), rtol=1e-6)


# ---- profiles ----------------------------------------------------------------------------------

def test_q_profile_recursions():
    cfg = NetConfig(depth=6, width=8, activation="relu", sigma_w2=1.5, sigma_b2=0.1, dtype="float64")
    want, q = [], 1.0
    for _ in range(6):
        q = 1.5 * q / 2 + 0.1
        want.append(q)
    assert_allclose(np.asarray(T.q_profile(cfg)), want, rtol=1e-13)
    res = cfg.with_(arch="resmlp", residual_scale=0.5)
    want, q = [], 2.0
    for _ in range(6):
        q = q + 0.25 * (1.5 * q / 2 + 0.1)
        want.append(q)
    assert_allclose(np.asarray(T.q_profile(res, q0=2.0)), want, rtol=1e-13)
    rnn = cfg.with_(arch="rnn")
    want, q = [], 0.0
    for _ in range(6):
        q = 1.5 * q / 2 + 0.1 + 0.7
        want.append(q)
    assert_allclose(np.asarray(T.q_profile(rnn, q_in=0.7)), want, rtol=1e-13)
    # the profile converges to q*
    tanh = NetConfig(depth=250, width=8, sigma_w2=3.0, sigma_b2=0.05)  # ξ_c ≈ 9 layers
    assert_allclose(float(T.q_profile(tanh)[-1]), float(T.q_star("tanh", 3.0, 0.05)), rtol=1e-9)
    assert_allclose(float(T.c_profile(tanh, c0=0.9)[-1]), float(T.c_star("tanh", 3.0, 0.05)), rtol=1e-6)


def _mc_moments(cfg, seeds, batch, c0=None):
    """mean(h_l²) per layer (and the correlation of paired examples) in simulated networks."""
    qs, cs = [], []
    for s in range(seeds):
        kp, kx, kz = jax.random.split(jax.random.key(100 + s), 3)
        params = init_params(cfg, kp)
        x = jax.random.normal(kx, input_shape(cfg, batch), jnp.float64)
        if c0 is not None:  # rows 2i and 2i+1 have correlation c0
            x = x.reshape((batch // 2, 2) + x.shape[1:])
            x = x.at[:, 1].set(c0 * x[:, 0] + math.sqrt(1 - c0 * c0) * x[:, 1]).reshape((batch,) + x.shape[2:])
        _, taps = forward(cfg, params, x, taps=True)
        h = np.asarray(taps.hidden)  # (L, B, N)
        qs.append(np.mean(h**2, axis=(1, 2)))
        if c0 is not None:
            a, b = h[:, 0::2], h[:, 1::2]
            cs.append(np.mean(np.sum(a * b, -1), 1) / np.sqrt(np.mean(np.sum(a * a, -1), 1) * np.mean(np.sum(b * b, -1), 1)))
    return np.mean(qs, 0), (np.mean(cs, 0) if c0 is not None else None)


@pytest.mark.parametrize("kw", [
    dict(),
    dict(arch="resmlp", residual_scale=0.5),
    dict(arch="rnn"),
    dict(norm="layernorm"),
    dict(norm="rmsnorm", norm_position="post"),
    dict(norm="batchnorm"),
    dict(arch="resmlp", norm="batchnorm", norm_position="post", residual_scale=0.5),
])
def test_q_profile_matches_simulation(kw):
    # width 512, batch 64, 3 seeds: mean(h_l²) within 4% of the prediction at every layer.
    cfg = NetConfig(depth=6, width=512, sigma_w2=1.8, sigma_b2=0.1, dtype="float64", **kw)
    q_mc, _ = _mc_moments(cfg, seeds=3, batch=64)
    assert_allclose(q_mc, np.asarray(T.q_profile(cfg)), rtol=0.04)


@pytest.mark.parametrize("kw", [dict(), dict(arch="resmlp", residual_scale=0.5), dict(arch="rnn"),
                                dict(norm="layernorm", activation="relu", sigma_w2=2.5)])
def test_c_profile_matches_simulation(kw):
    # width 512, 32 pairs, 3 seeds: correlation within 0.03 absolute at every layer.
    base = dict(depth=6, width=512, sigma_w2=2.5, sigma_b2=0.05, dtype="float64")
    base.update(kw)
    cfg = NetConfig(**base)
    _, c_mc = _mc_moments(cfg, seeds=3, batch=64, c0=0.6)
    assert_allclose(c_mc, np.asarray(T.c_profile(cfg, c0=0.6)), atol=0.03)


@pytest.mark.parametrize("q0", [1.0, 3.0])
@pytest.mark.parametrize("ulps", [-2, 0, 2])
def test_relu_critical_every_q_is_fixed(q0, ulps):
    # relu at σ_w² = 2, σ_b² = 0: q_map(q) = q for every q (closed form σ_w² q/2), so the attractor
    # reached from q0 is q0 itself. σ_w² a few ulps off 2 is the same map to rounding: a solve that
    # tests G(q0) == 0 exactly would send it to 0 or inf by one machine's last bit (a q* of 0 made the
    # relu Jacobian spectrum lose its atom on another machine).
    sw = 2.0 * (1 + ulps * np.finfo(np.float64).eps)
    assert_allclose(float(T.q_star("relu", sw, 0.0, q0=q0)), q0, rtol=1e-14)
