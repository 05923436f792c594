"""Predicted gradient profiles: closed forms, and slopes / spreads against direct simulation.

The simulation differentiates the network itself (gradjax.nn's unroll/step/readout, the contract that
``forward`` runs) with respect to additive perturbations of every h_l: δ_l = ∂loss/∂h_l, for a random
linear loss on the output. Nothing from gradjax.empirical is used.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

from gradjax import NetConfig
from gradjax import theory as T
from gradjax.theory import gradients as G
from gradjax.nn import ensemble_params, input_shape, readout, step, unroll


def simulate_log_norms(cfg, seeds, batch, chunk=4, key=1000):
    """log10 ‖δ_l‖ per example: (S, B, L), seeds 0..S−1 (built in chunks to bound memory)."""

    @jax.jit
    def run(params, keys):
        def one(p, k):
            kx, kr = jax.random.split(k)
            x = jax.random.normal(kx, input_shape(cfg, batch), cfg.jnp_dtype)
            r = jax.random.normal(kr, (batch, cfg.out_dim), cfg.jnp_dtype)

            def loss(eps):
                h, xs = unroll(cfg, p, x)

                def body(h, inp):
                    x_l, e = inp
                    h, _ = step(cfg, p, x_l, h)
                    return h + e, None

                h, _ = jax.lax.scan(body, h, (xs, eps))
                return jnp.sum(readout(cfg, p, h) * r)

            d = jax.grad(loss)(jnp.zeros((cfg.depth, batch, cfg.width), cfg.jnp_dtype))
            return 0.5 * jnp.log10(jnp.sum(d.astype(jnp.float64) ** 2, axis=2)).T

        return jax.vmap(one)(params, keys)

    out = []
    for s0 in range(0, seeds, chunk):
        p = ensemble_params(cfg, list(range(s0, s0 + chunk)))
        out.append(run(p, jax.vmap(jax.random.key)(jnp.arange(key + s0, key + s0 + chunk))))
    return np.concatenate(out)


def _slope(y, lo, hi):
    return np.polyfit(np.arange(lo, hi), y[lo:hi], 1)[0]


# ---- closed forms --------------------------------------------------------------------------------

def test_profile_closed_forms():
    L = 7
    cfg = NetConfig(depth=L, width=16, activation="relu", sigma_w2=2.6, sigma_b2=0.1, dtype="float64")
    # relu: every factor is χ₁ = σ_w²/2 whatever q is, so entry l−1 = ½ (L − l) log10(σ_w²/2)
    want = 0.5 * (L - np.arange(1, L + 1)) * math.log10(1.3)
    assert_allclose(np.asarray(T.gradient_profile(cfg, finite_width=False)), want, rtol=1e-12, atol=1e-15)
    assert float(T.gradient_profile(cfg)[-1]) == 0.0
    # residual relu: 1 + α² σ_w²/2 per block
    res = cfg.with_(arch="resmlp", residual_scale=0.5)
    want = 0.5 * (L - np.arange(1, L + 1)) * math.log10(1 + 0.25 * 1.3)
    assert_allclose(np.asarray(T.gradient_profile(res, finite_width=False)), want, rtol=1e-12, atol=1e-15)
    # rnn with a linear activation: σ_w² per step
    rnn = NetConfig(depth=L, width=16, arch="rnn", activation="linear", sigma_w2=0.8, dtype="float64")
    assert_allclose(np.asarray(T.gradient_profile(rnn)), 0.5 * (L - np.arange(1, L + 1)) * math.log10(0.8),
                    rtol=1e-12, atol=1e-15)


def test_batchnorm_rates_closed_forms():
    # Yang et al. 2019 (arXiv:1902.08129): linear (B−2)/(B−3); relu → π/(π−1) as B → ∞.
    for B in (5, 8, 32, 128):
        assert_allclose(float(T.batchnorm_rate("linear", B)), (B - 2) / (B - 3), rtol=1e-12)
    assert_allclose(float(T.batchnorm_rate("relu", 10**6)), math.pi / (math.pi - 1), rtol=1e-5)
    # large-B limit for a general φ: E[φ′(z)²]/Var φ(z) (tanh, by the module's 1-D integrals here)
    from gradjax.theory import gaussian as g

    lim = float(g.derivative_moment("tanh", 1.0)) / float(g.second_moment("tanh", 1.0))
    assert_allclose(float(T.batchnorm_rate("tanh", 10**6)), lim, rtol=1e-5)
    # independent of σ_w², σ_b² (normalisation removes the scale), so the profile is a straight line
    for sw in (0.5, 3.0):
        cfg = NetConfig(depth=6, width=8, activation="relu", norm="batchnorm", sigma_w2=sw, sigma_b2=0.2)
        prof = np.asarray(T.gradient_profile(cfg, batch=32))
        assert_allclose(np.diff(prof), -0.5 * math.log10(float(T.batchnorm_rate("relu", 32))), rtol=1e-12)
    with pytest.raises(ValueError, match="batch_size"):
        T.batchnorm_rate("relu", 3)


def test_layernorm_factor():
    # pre-norm mlp: φ sees unit variance, the norm's Jacobian divides by q: f = σ_w² E φ′(z)² / q,
    # with q = σ_w² E φ(z)² + σ_b² after the first block (ε = 1e-5 of the network included).
    from gradjax.theory import gaussian as g

    cfg = NetConfig(depth=5, width=8, norm="layernorm", sigma_w2=2.0, sigma_b2=0.1, dtype="float64")
    eps = 1e-5
    q = 1.0
    for _ in range(4):  # q_l = σ_w² E φ(√(q/(q+ε)) z)² + σ_b², settled after one block to ~1e-5·ε
        q = 2.0 * float(g.second_moment("tanh", q / (q + eps))) + 0.1
    qx = q / (q + eps)
    f = 2.0 * float(g.derivative_moment("tanh", qx)) / (q + eps)
    assert_allclose(np.diff(np.asarray(T.gradient_profile(cfg)))[1:], -0.5 * math.log10(f), rtol=1e-10)


@pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py
def test_profile_is_jittable_without_retrace():
    cfg = NetConfig(depth=4, width=8, sigma_w2=1.5, sigma_b2=0.1)
    T.gradient_profile(cfg, 1.0)
    n = T.gradient_profile._cache_size()
    T.gradient_profile(cfg, 2.0)
    assert T.gradient_profile._cache_size() == n
    # vmappable over q0
    assert jax.vmap(lambda q: T.gradient_profile(cfg, q))(jnp.array([0.5, 1.0, 2.0])).shape == (3, 4)


# ---- against simulation --------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("kw,batch", [
    (dict(sigma_w2=4.0, sigma_b2=0.05), 8),                                # tanh chaotic, χ₁ ≈ 1.35
    (dict(sigma_w2=1.2, sigma_b2=0.3), 8),                                 # tanh ordered
    (dict(arch="resmlp", sigma_w2=2.0, sigma_b2=0.05), 8),                 # residual, q growing
    (dict(activation="relu", norm="batchnorm", sigma_w2=2.0), 32),         # BN relu, λ_32
    (dict(activation="linear", norm="batchnorm", sigma_w2=1.0), 8),        # BN linear, (B−2)/(B−3)
])
def test_slope_matches_simulation_at_width_1024(kw, batch):
    # width 1024, 8 seeds, depth 12, norms summed over the batch: slope of the mean log10‖δ_l‖ over
    # layers 1..11 within 5% of the predicted slope (measured ≤ 2.3% with 16 seeds, depth 16).
    cfg = NetConfig(depth=12, width=1024, dtype="float32", **kw)
    y = simulate_log_norms(cfg, seeds=8, batch=batch, chunk=2)  # (S, B, L) per example; 2 seeds per call: memory
    norms = 0.5 * np.log10(np.sum(10.0 ** (2 * y), axis=1))  # batch-summed ‖δ_l‖, (S, L)
    m = (norms - norms[:, -1:]).mean(0)
    pred = np.asarray(T.gradient_profile(cfg.with_(dtype="float64"), batch=batch))
    s_mc, s_th = _slope(m, 0, 11), _slope(pred, 0, 11)
    assert abs(s_mc / s_th - 1) < 0.05, (s_mc, s_th)


@pytest.mark.slow
@pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py
def test_finite_width_drift_and_spread():
    # Chaotic tanh (σ_w² = 4, σ_b² = 0.05), per-example norms (one input per ratio: batch=1 in the theory),
    # 128 seeds × 4 examples, depth 16, width 128, float32.
    # Spread: the std over seeds of log10‖δ_l‖/‖δ_L‖ per example, averaged over the 4 examples, within
    # max(15%, 2 standard errors) of gradient_spread at l = 1 and 9. The standard error of that average is
    # at most the mean of the examples' own, ½√(2/(S−1) + γ₂/S) each (γ₂: excess kurtosis), ≈ 6–7% at S = 128.
    # One-off with 256 seeds: measured/predicted 1.013 (l = 1) and 1.016 (l = 9).
    # Drift: the mean over seeds and examples minus the mean-field value at l = 1 within 25% of the
    # predicted drift (finite_width=True minus False) plus two standard errors of the mean (from the
    # per-seed example means, so the examples' correlation through the shared weights is counted), and
    # mean field alone more than three standard errors away. One-off, 256 seeds: the fitted slope of the
    # mean profile is −0.0613 per layer against −0.0609 (finite width) and −0.0654 (mean field).
    from gradjax.experiments.finite_width import std_relative_error

    S = 128
    cfg = NetConfig(depth=16, width=128, sigma_w2=4.0, sigma_b2=0.05, dtype="float32")
    y = simulate_log_norms(cfg, seeds=S, batch=4, chunk=16)
    rel = y - y[..., -1:]  # (S, 4, L)
    c64 = cfg.with_(dtype="float64")
    sd = rel.std(0, ddof=1).mean(0)
    sp = np.asarray(T.gradient_spread(c64, batch=1))
    for l in (0, 8):
        se = np.mean([std_relative_error(rel[:, b, l]) for b in range(4)])
        assert abs(sd[l] / sp[l] - 1) < max(0.15, 2 * se), (l, sd[l], sp[l], se)
    mf = float(T.gradient_profile(c64, finite_width=False)[0])
    drift_th = float(T.gradient_profile(c64, batch=1, finite_width=True)[0]) - mf
    per_seed = rel[:, :, 0].mean(1)
    drift, se = per_seed.mean() - mf, per_seed.std(ddof=1) / np.sqrt(S)
    assert abs(drift - drift_th) < 0.25 * abs(drift_th) + 2 * se, (drift, drift_th, se)
    assert abs(drift) > 3 * se, (drift, se)


def test_profile_models_only_the_projection_loss():
    cfg = NetConfig(depth=4, width=8, activation="relu", sigma_w2=2.0)
    assert float(T.gradient_profile(cfg, loss="projection")[0]) == float(T.gradient_profile(cfg)[0])
    for bad in ("mse", "xent", lambda y, t: (y * t).sum()):
        with pytest.raises(ValueError, match="loss must be one of"):
            T.gradient_profile(cfg, loss=bad)
        with pytest.raises(ValueError, match="loss must be one of"):
            T.gradient_spread(cfg, loss=bad)


@pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py
def test_finite_width_refuses_what_it_does_not_model():
    for kw, field in ((dict(arch="rnn"), "arch"), (dict(norm="layernorm"), "norm"), (dict(norm="batchnorm"), "norm")):
        cfg = NetConfig(depth=4, width=8, **kw)
        with pytest.raises(ValueError, match=field):
            T.gradient_spread(cfg)
        with pytest.raises(ValueError, match=field):
            T.gradient_profile(cfg, finite_width=True)
        T.gradient_profile(cfg)  # the mean-field profile itself is modelled
    with pytest.raises(ValueError, match="batch"):
        T.gradient_spread(NetConfig(depth=4, width=8), batch=0)
    # B ≥ N (the forward pass fixes every W_l on the whole input space): outside the derivation, answered (measured to
    # hold at N = 64, B = 64 and 128: module docstring), finite.
    for b in (8, 9):
        assert np.all(np.isfinite(np.asarray(T.gradient_spread(NetConfig(depth=4, width=8), batch=b))))
    assert np.all(np.isfinite(np.asarray(T.gradient_profile(NetConfig(depth=4, width=8), batch=8, finite_width=True))))


def test_effective_batch_is_the_log_normal_expectation():
    # B_eff = 1/E Σ_b w_b², w_b = e^{Y_b}/Σ e^{Y}, Y_b i.i.d. N(0, σ²): against a Monte Carlo of the weights
    # (2·10⁵ draws of B log-norms, within 4 standard errors), the limits σ² = 0 (B) and B = 1 (1), and a 4× finer
    # grid (1e-10). The interpolation it replaced, (B + e^{σ²} − 1)/e^{σ²}, gave 1.35 at B = 8, σ² = 3 (here 2.63).
    from gradjax.theory.gradients import _effective_batch

    rng = np.random.default_rng(7)
    for B in (2, 8, 64):
        assert float(_effective_batch(float(B), jnp.asarray(0.0))) == pytest.approx(B, rel=1e-12)
        for s2 in (0.3, 1.0, 3.0, 10.0):
            y = rng.standard_normal((200_000, B)) * math.sqrt(s2)
            w = np.exp(y - y.max(1, keepdims=True))
            q = np.sum((w / w.sum(1, keepdims=True)) ** 2, axis=1)
            mc, se = 1 / q.mean(), q.std() / math.sqrt(q.size) / q.mean() ** 2
            got = float(_effective_batch(float(B), jnp.asarray(s2)))
            assert abs(got - mc) < 4 * se + 1e-9, (B, s2, got, mc, se)
    assert float(_effective_batch(1.0, jnp.asarray(5.0))) == 1.0
    # beyond the grids' range (Σ v ≫ 1) σ² is held at 50: finite, between 1 and B, also for an infinite σ²
    assert float(_effective_batch(64.0, jnp.asarray(1e8))) == float(_effective_batch(64.0, jnp.asarray(jnp.inf)))
    assert 1.0 < float(_effective_batch(64.0, jnp.asarray(jnp.inf))) < 1.5
    fine = T.gradients._BEFF_NODES
    try:
        T.gradients._BEFF_NODES = (4 * fine[0], 4 * fine[1])
        ref = float(_effective_batch(64.0, jnp.asarray(50.0)))
    finally:
        T.gradients._BEFF_NODES = fine
    assert float(_effective_batch(64.0, jnp.asarray(50.0))) == pytest.approx(ref, rel=1e-10)


@pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py
@pytest.mark.parametrize("activation,own", [("tanh", 2.0), ("relu", 5.0)])
def test_finite_width_terms_of_a_vanishing_network_have_their_small_q_limit(activation, own):
    # σ_w² = 0.5, σ_b² = 0: q_l halves (tanh) or quarters (relu) per block (tanh ≈ 1e-16 by block 50, relu 1e-30;
    # below float32's range by block 130 and 65). Near q = 0 tanh is linear, where ρ ≡ 1 (no shift), and relu
    # has ρ ≡ 1 at every q: the shift must vanish at the top blocks, not grow, and every term stays finite.
    # (Evaluating q_z at a floor of 1e-12 on both sides of the ratio q_z,l/q_z,l−1 made ρ double per block:
    # +602 decades at tanh L = 50, N = 64 in the finite-width profile against −7.49 for the mean field; q² under-
    # flowing in the forward length's variance made relu's profile NaN.)
    for depth in (50, 400):  # 400: q² below float64's range (the tests run with 64-bit JAX on), as float32's at 50
        cfg = NetConfig(depth=depth, width=64, activation=activation, sigma_w2=0.5, sigma_b2=0.0, dtype="float64")
        shift = np.asarray(T.gradients._shared_weight_shift(cfg, None, 1.0))
        assert np.all(np.isfinite(shift)) and np.all(shift <= 0)
        assert np.max(np.abs(shift[-10:])) < 1e-6, shift[-10:]
        fw = np.asarray(T.gradient_profile(cfg, batch=64, finite_width=True))
        mf = np.asarray(T.gradient_profile(cfg, batch=64, finite_width=False))
        # what is left is −v/2 at most: v ≤ (3μ₂/μ₁² − 1)/N, 2/N for near-linear tanh and 5/N for relu (log10 of
        # the norm: ÷ 2 ln 10 once more)
        assert np.all(np.isfinite(fw)) and -own * depth / (4 * 64 * math.log(10)) < fw[0] - mf[0] < 0, (fw[0], mf[0])


@pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py
def test_independent_backward_drops_only_the_shared_weight_shift():
    # backward="independent" models the backward pass through independent copies of the weights: the same mean
    # field, and a finite-width drift without the shared-weight shift Δ (module docstring): the two profiles
    # differ by Σ_{k>l} Δ_k/(2 ln 10), plus at B > 1 the batch's re-weighting by what the shared weights add between
    # examples, −(1 − 1/B)(Σ_{j>k} X_kj + ½ X_kk), X = K + J.
    cfg = NetConfig(depth=6, width=8, activation="tanh", sigma_w2=1.3, sigma_b2=0.05, dtype="float64")
    mf = {b: np.asarray(T.gradient_profile(cfg, batch=4, finite_width=False, backward=b)) for b in T.gradients.BACKWARDS}
    assert_allclose(mf["shared"], mf["independent"], rtol=0, atol=0)
    K = np.asarray(jax.jit(T.gradients._cross_example_covariance)(cfg, None, 1.0))
    B = 4  # each example's shift Δ, and the batch's re-weighting of examples that share less, −(1 − 1/B) Σ_{j>k} K_kj
    own, copy = (np.asarray(T.gradient_profile(cfg, batch=B, finite_width=True, backward=b))
                 for b in ("shared", "independent"))
    delta = np.asarray(jax.jit(T.gradients._shared_weight_shift)(cfg, None, 1.0))
    assert np.all(delta < 0)  # tanh: ρ < 1, a shift towards vanishing
    delta = (delta - (1 - 1 / B) * np.triu(K, 1).sum(1)) / (2 * math.log(10))
    want = np.concatenate([np.cumsum(delta[::-1])[::-1][1:], [0.0]])  # entry l−1: Σ_{k>l} of the block shifts
    assert_allclose(own - copy, want, rtol=1e-12, atol=1e-15)
    # at B > 1 the network's spread is below the control's: the examples share less (K ≤ 0 for tanh)
    sp_own, sp_copy = (np.asarray(T.gradient_spread(cfg, batch=7, backward=b)) for b in ("shared", "independent"))
    assert np.all(sp_own[:-2] < sp_copy[:-2]) and sp_own[-1] == sp_copy[-1] == 0
    assert np.all(np.isfinite(np.asarray(T.gradient_spread(cfg, batch=8, backward="independent"))))
    # relu: K = 0, and each example's own direction J (diagonal included) re-weighs the batch; the network's spread is
    # above the control's (the examples share more)
    relu = cfg.with_(activation="relu", sigma_w2=2.0, sigma_b2=0.0)
    J = np.asarray(jax.jit(T.gradients._own_direction_covariance)(relu, None, 1.0))
    assert J.sum() > 0 and np.all(np.diag(J) > 0)
    own, copy = (np.asarray(T.gradient_profile(relu, batch=B, finite_width=True, backward=b))
                 for b in ("shared", "independent"))
    delta = np.asarray(jax.jit(T.gradients._shared_weight_shift)(relu, None, 1.0))
    delta = (delta - (1 - 1 / B) * (np.triu(J, 1).sum(1) + 0.5 * np.diag(J))) / (2 * math.log(10))
    want = np.concatenate([np.cumsum(delta[::-1])[::-1][1:], [0.0]])
    assert_allclose(own - copy, want, rtol=1e-12, atol=1e-15)
    sp_own, sp_copy = (np.asarray(T.gradient_spread(relu, batch=7, backward=b)) for b in ("shared", "independent"))
    assert np.all(sp_own[:-1] > sp_copy[:-1])
    for f in (T.gradient_profile, T.gradient_spread):
        with pytest.raises(ValueError, match=r"backward must be one of \['shared', 'independent'\], got 'own'"):
            f(cfg, batch=4, backward="own")


def _paired_backward(n, batch, depth, sigma_w2, sigma_b2, seeds, control="copy", key=2000, chunk=64, act="tanh"):
    """Squared norms of δ_1 and δ_L per example for a tanh (or ``act="relu"``) MLP (h_0 = x W_in, x unit Gaussian, in_dim = n, out_dim =
    n, projection loss), float32: (S, 2, B) ‖δ_1‖² — [:, 0] the network itself, [:, 1] the same forward pass with
    the backward pass through a control — and (S, B) ‖δ_L‖² (the same for both). ``control``: "copy", an
    independent copy W′_l of every block weight (gradient independence, exactly); "span", only the span of each
    block's inputs redrawn, W_l + P_X(W′_l − W_l) (given the forward pass W_l(I − P_X) already has the independent
    law, so this has gradient independence's law too, paired more closely with the network seed by seed)."""

    phi = {"tanh": jnp.tanh, "relu": jax.nn.relu}[act]
    dphi = {"tanh": lambda h: 1 - jnp.tanh(h) ** 2, "relu": lambda h: (h > 0).astype(h.dtype)}[act]

    def one(k):
        k = jax.random.split(k, 7)
        f32 = jnp.float32
        x, t = jax.random.normal(k[0], (batch, n), f32), jax.random.normal(k[1], (batch, n), f32)
        w_in, w_out = (jax.random.normal(kk, (n, n), f32) / math.sqrt(n) for kk in (k[2], k[5]))
        w = jax.random.normal(k[3], (depth, n, n), f32) * math.sqrt(sigma_w2 / n)
        w_copy = jax.random.normal(k[6], (depth, n, n), f32) * math.sqrt(sigma_w2 / n)
        b = jax.random.normal(k[4], (depth, n), f32) * math.sqrt(sigma_b2)
        h0 = x @ w_in
        _, hs = jax.lax.scan(lambda h, wb: (phi(h) @ wb[0] + wb[1][None],) * 2, h0, (w, b))
        h_in = jnp.concatenate([h0[None], hs[:-1]])  # h_{l−1}, the input of block l
        d_top = dphi(hs[-1]) * ((t / batch) @ w_out.T)

        def span_redrawn(wl, wc, h):
            p, _ = jnp.linalg.qr(phi(h).T)  # (n, B): an orthonormal basis of the block's inputs
            return wl + p @ (p.T @ (wc - wl))

        def bottom(ws):
            def back(d, inp):
                return dphi(inp[1]) * (d @ inp[0].T), None
            d1, _ = jax.lax.scan(back, d_top, (ws[1:], h_in[1:]), reverse=True)  # blocks L..2: δ_L → δ_1
            return jnp.sum(d1**2, 1)

        other = w_copy if control == "copy" else jax.vmap(span_redrawn)(w, w_copy, h_in)
        return jnp.stack([bottom(w), bottom(other)]), jnp.sum(d_top**2, 1)

    run = jax.jit(jax.vmap(one))
    out = [run(jax.vmap(jax.random.key)(jnp.arange(s, s + chunk) + key)) for s in range(0, seeds, chunk)]
    return tuple(np.concatenate([np.asarray(o[i]) for o in out]) for i in (0, 1))


def _own_and_independent_backward(n, batch, depth, sigma_w2, sigma_b2, seeds, key=2000):
    """log10 ‖δ_1‖/‖δ_L‖ (batch-summed), (S, 2): column 0 the network itself, column 1 the same forward pass with
    the backward pass through an independent copy W′_l of every block weight (:func:`_paired_backward`; 64 seeds
    per call: ≈ 0.25 GB of weights and states at B = 64)."""
    d1, d_top = _paired_backward(n, batch, depth, sigma_w2, sigma_b2, seeds, key=key)
    return 0.5 * np.log10(d1.sum(-1) / d_top.sum(-1)[:, None])


@pytest.mark.slow
def test_finite_width_drift_from_shared_weights_at_one_input():
    # Critical tanh (σ_w² = 1, σ_b² = 0), N = 64, L = 30, B = 1, 768 seeds (float32). The forward pass fixes
    # W_l along its input, so the backward pass through the network's own weights differs from one through
    # an independent copy (the same forward pass, paired) by the predicted shared-weight shift; without it
    # (gradient independence) the difference would be 0. Tolerance: 25% of the shift plus two standard
    # errors of the paired mean (sd/√S ≈ 0.010). One-off, 4096 seeds: −0.043 ± 0.004 measured vs −0.052
    # predicted; own-weight drift −0.123 ± 0.004 vs −0.130 predicted (mean field alone: 0).
    S, n, L = 768, 64, 30
    y = _own_and_independent_backward(n, 1, L, 1.0, 0.0, S)
    cfg = NetConfig(depth=L, width=n, activation="tanh", init="xavier_normal", dtype="float64")
    shift = float(np.sum(np.asarray(G._shared_weight_shift(cfg, None, 1.0))[1:])) / (2 * math.log(10))
    diff = y[:, 0] - y[:, 1]
    se = diff.std(ddof=1) / np.sqrt(S)
    assert abs(diff.mean() - shift) < 0.25 * abs(shift) + 2 * se, (diff.mean(), shift, se)
    assert abs(shift) > 0.25 * abs(shift) + 2 * se  # the check can tell the shift from gradient independence
    mf = float(T.gradient_profile(cfg, batch=1, finite_width=False)[0])
    drift = float(T.gradient_profile(cfg, batch=1, finite_width=True)[0]) - mf
    se_own = y[:, 0].std(ddof=1) / np.sqrt(S)
    assert abs(y[:, 0].mean() - mf - drift) < 0.25 * abs(drift) + 2 * se_own, (y[:, 0].mean() - mf, drift, se_own)


@pytest.mark.slow
def test_finite_width_drift_reweighting_under_gradient_independence():
    # Critical tanh, N = 64, L = 30, B = 64, 256 seeds, backward through an independent copy of every W_l (the
    # setting in which the forward-length terms are derived). The batch sum weighs each example by its own
    # ‖δ_b‖², which its forward length moves: the drift of the mean log10 ‖δ_1‖/‖δ_L‖ is positive. Predicted:
    # gradient_profile's finite-width drift with backward="independent", within 25% plus two standard errors
    # (sd/√S ≈ 0.007); −v/2 alone (the drift without the forward length) is rejected. One-off, 1024 seeds:
    # +0.025 ± 0.003 measured vs +0.025 predicted (−v/2 alone: −0.027).
    S, n, L, B = 256, 64, 30, 64
    y = _own_and_independent_backward(n, B, L, 1.0, 0.0, S)[:, 1]
    cfg = NetConfig(depth=L, width=n, activation="tanh", init="xavier_normal", dtype="float64")
    mf = float(T.gradient_profile(cfg, batch=B, finite_width=False)[0])
    drift_th = float(T.gradient_profile(cfg, batch=B, finite_width=True, backward="independent")[0]) - mf
    v_only = -float(np.sum(np.asarray(T.finite_width_variance(cfg, batch=B))[1:])) / (4 * math.log(10))
    drift, se = y.mean() - mf, y.std(ddof=1) / np.sqrt(S)
    assert abs(drift - drift_th) < 0.25 * abs(drift_th) + 2 * se, (drift, drift_th, se)
    assert abs(drift - v_only) > 4 * se, (drift, v_only, se)


def test_cross_example_covariance_against_a_direct_sum():
    # K_lk (module docstring: the shared weights between examples), recomputed here from its definition with
    # Gauss–Hermite moments, finite differences for s = d ln μ₁/d ln q and a = d ln Q/d ln q, and explicit loops:
    # M_lk = (2/N²) Σ_{l ≤ i < k} ∏_{m=l}^{i−1} Λ_m (q_z,i/q_i) s_{k−1} ∏_{m=i}^{k−2} a_m, Λ = q_z m₁⁴/(V μ₁),
    # K = M + Mᵀ. With a bias (q_z < q) and a non-fixed-point q0, so that every index and factor is exercised.
    z, w = np.polynomial.hermite_e.hermegauss(160)
    w = w / w.sum()
    sw, sb, n, L, q0 = 1.6, 0.1, 16, 7, 2.5

    def mom(q):
        t = np.tanh(np.sqrt(q) * z)
        d = 1 - t**2
        return (w * t * t).sum(), (w * d).sum(), (w * d * d).sum()  # V, m₁, μ₁

    def dln(f, q, e=1e-6):
        return (np.log(f(q * (1 + e))) - np.log(f(q * (1 - e)))) / (np.log1p(e) - np.log1p(-e))

    q = [q0]
    for _ in range(L):
        q.append(sw * mom(q[-1])[0] + sb)
    s = [dln(lambda t: mom(t)[2], q[h]) for h in range(L + 1)]
    a = [dln(lambda t: sw * mom(t)[0] + sb, q[h]) for h in range(L + 1)]
    lam = [(q[i] - sb) * mom(q[i])[1] ** 4 / (mom(q[i])[0] * mom(q[i])[2]) for i in range(L + 1)]
    M = np.zeros((L, L))
    for l in range(1, L + 1):  # blocks l < k; b's gain noise at h_i, l ≤ i ≤ k − 1, reaches a's τ_l and b's block k
        for k in range(l + 1, L + 1):
            for i in range(l, k):
                M[l - 1, k - 1] += (np.prod(lam[l:i]) * (q[i] - sb) / q[i] * s[k - 1] * np.prod(a[i:k - 1])
                                    * 2 / n**2)
    cfg = NetConfig(depth=L, width=n, activation="tanh", sigma_w2=sw, sigma_b2=sb, dtype="float64")
    K = np.asarray(jax.jit(G._cross_example_covariance)(cfg, q0, 1.0))
    assert np.abs(M).max() > 1e-3  # not a comparison of zeros
    assert_allclose(K, M + M.T, rtol=1e-6, atol=1e-12)
    assert np.all(np.triu(K, 1) <= 0) and np.all(np.diag(K) == 0)  # tanh: s < 0, a shift towards sharing less
    for act, s2 in (("relu", 2.0), ("linear", 1.0)):  # scale-free: s ≡ 0, so nothing reaches the other example
        other = cfg.with_(activation=act, sigma_w2=s2, sigma_b2=0.0)
        zero = jax.jit(G._cross_example_covariance)(other, None, 1.0)
        assert_allclose(np.asarray(zero), 0.0, atol=1e-12)


def test_own_direction_covariance_against_a_direct_sum():
    # J (_own_direction_covariance) recomputed from its definition: relu's Gaussian pair moments in closed form (the
    # arc-cosine kernels, Cho & Saul 2009: E[relu(u)relu(v)] = q(sin θ + (π − θ) cos θ)/2π,
    # E[relu(u)²relu(v)²] = q²(3 sin θ cos θ + (π − θ)(1 + 2cos²θ))/2π, E[relu(u)² 1(v > 0)] = q(π − θ + sin θ cos θ)/2π,
    # P(u > 0, v > 0) = (π − θ)/2π, cos θ = c), the examples' backward overlap ρ by the module docstring's recursion,
    # and explicit loops over blocks i, j and patterns p. With a bias (the decay σ_b²/q_z) and q0 off the fixed point.
    sw, sb, n, L, q0, out = 2.0, 0.05, 16, 7, 1.7, 16
    q, c = [q0], [0.0]
    for _ in range(L):
        th = np.arccos(np.clip(c[-1], -1, 1))
        k = sw * q[-1] * (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi) + sb
        q.append(sw * q[-1] / 2 + sb)
        c.append(k / q[-1])
    th = np.arccos(np.clip(c, -1, 1))
    both = (np.pi - th) / (2 * np.pi)  # P(u > 0, v > 0) = E[φ′φ′] = E[φ′²φ′²] at pattern p
    V = np.array(q) / 2
    c_alpha = ((np.array(q) ** 2 * (3 * np.sin(th) * np.cos(th) + (np.pi - th) * (1 + 2 * np.cos(th) ** 2)) / (2 * np.pi))
               / V**2 - 1) / n
    c_ag = ((np.array(q) * (np.pi - th + np.sin(th) * np.cos(th)) / (2 * np.pi)) / (V * 0.5) - 1) / n
    kappa, m = both / 0.25, both
    shared = lambda p, rho: (kappa[p] * (1 + 2 * rho) - 1) / n  # noqa: E731
    step = lambda p, rho: ((kappa[p] * (1 + 2 * rho) / n + (m[p] / 0.5) ** 2 * rho * (1 - 1 / n))  # noqa: E731
                           / (1 + shared(p, rho)))
    rho = {L: step(L, 1.0 / out)}  # δ_L: the readout's step from the directions t_b (overlap 1/out_dim)
    for l in range(L, 0, -1):  # block l: δ_l → δ_{l−1} through D_{l−1}
        rho[l - 1] = step(l - 1, rho[l])
    c_gamma = {p: shared(p, rho[p + 1]) for p in range(1, L)}
    c_gamma[L] = shared(L, 1.0 / out)
    eps = 2.0 / n  # 1/(N μ₁), μ₁ = ½
    decay = {m_: 1 - eps - sb / (q[m_ + 1] - sb) for m_ in range(1, L)}  # step to pattern m, bias of block m + 1

    def H(i, p):
        return eps * np.prod([decay[m_] for m_ in range(i, p)]) if p >= i else 0.0

    D = {p: c_alpha[p] + c_gamma[p] - 2 * c_ag[p] for p in range(1, L + 1)}
    E = {p: c_ag[p] - c_gamma[p] for p in range(1, L + 1)}
    J = np.zeros((L, L))
    for i in range(1, L + 1):
        for j in range(1, L + 1):
            J[i - 1, j - 1] = sum(H(i, p) * H(j, p) * D[p] for p in range(max(i, j), L + 1))
            if j <= i - 1:
                J[i - 1, j - 1] += H(j, i - 1) * E[i - 1]
            if i <= j - 1:
                J[i - 1, j - 1] += H(i, j - 1) * E[j - 1]
    cfg = NetConfig(depth=L, width=n, activation="relu", sigma_w2=sw, sigma_b2=sb, out_dim=out, dtype="float64")
    got = np.asarray(jax.jit(G._own_direction_covariance)(cfg, q0, 1.0))
    assert np.abs(J).max() > 1e-3 and J.sum() > 0  # not a comparison of zeros; relu's examples share more
    assert_allclose(got, J, rtol=1e-6, atol=1e-12)
    for act in ("tanh", "gelu", "leaky_relu"):  # no own-direction conservation: not derived, zeros
        other = cfg.with_(activation=act)
        assert_allclose(np.asarray(jax.jit(G._own_direction_covariance)(other, None, 1.0)), 0.0, atol=0)


def _pair_log_norms(n, depth, seeds, key=3000, act="tanh"):
    """Per-example ln ‖δ_1‖²/‖δ_L‖² of B = 2 examples, (S, 2, 2): [:, 0] the network itself (critical tanh, σ_w² = 1,
    or relu at He, σ_w² = 2; σ_b² = 0), [:, 1] the span-redrawn control of :func:`_paired_backward`, paired seed by
    seed (256 seeds per call: ≈ 0.25 GB of weights and their span-redrawn copies)."""
    sw = {"tanh": 1.0, "relu": 2.0}[act]
    d1, d_top = _paired_backward(n, 2, depth, sw, 0.0, seeds, control="span", key=key, chunk=256, act=act)
    return np.log(d1 / d_top[:, None, :])


@pytest.mark.slow
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_shared_weights_change_the_covariance_of_two_examples(act):
    # N = 32, L = 16 (the regime of N = 64, L = 30: Σ v ≈ 1), B = 2, 8192 seeds, float32. The covariance of the two
    # examples' ln ‖δ_1‖²/‖δ_L‖² differs from gradient independence's by Σ_{k,l ≥ 2} (K + J)_kl (module docstring;
    # gradient independence: 0). Critical tanh: each example's component along the other's input carries the other's
    # forward gains, which move the other's log-norm the opposite way (K < 0, J = 0). relu (He): each example's
    # component along its own input carries its own forward gains, and the two examples' gains are nearly the same
    # (c → 1): J > 0, K = 0. Measured: the paired difference real − control of the sample covariances, within 30% of
    # the sum plus two bootstrap standard errors, and more than three standard errors from 0 on the predicted side.
    # Here: tanh −0.084 ± 0.018 against −0.120 (16384 other seeds, one-off: −0.105 ± 0.012); relu +0.151 ± 0.040
    # against +0.195 (8192 other seeds: +0.137 ± 0.036; at N = 64, L = 30 in float64, 4096 seeds: +0.202 ± 0.049
    # against +0.201).
    S, n, L = 8192, 32, 16
    y = _pair_log_norms(n, L, S, act=act)  # (S, 2 runs, 2 examples)

    def diff(i):
        return np.cov(y[i, 0, 0], y[i, 0, 1])[0, 1] - np.cov(y[i, 1, 0], y[i, 1, 1])[0, 1]

    rng = np.random.default_rng(0)
    se = np.std([diff(rng.integers(0, S, S)) for _ in range(200)])
    measured = diff(np.arange(S))
    init = {"tanh": "xavier_normal", "relu": "he_normal"}[act]
    cfg = NetConfig(depth=L, width=n, activation=act, init=init, dtype="float64")
    pred = float(np.asarray(G._examples_covariance(cfg, None, 1.0))[1:, 1:].sum())
    assert abs(measured - pred) < 0.3 * abs(pred) + 2 * se, (measured, pred, se)
    assert measured * np.sign(pred) > 3 * se, (measured, pred, se)
