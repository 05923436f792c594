"""The gradient-independence control: ``gradient_profile(..., backward="independent")``.

The same networks and forward pass, each block's backward Jacobian taken with an independent copy of its
weights at the real derivatives. Checked against a hand-written backward pass (mlp, resmlp), against
autodiff of a surrogate network whose values are the real forward pass and whose Jacobians are the copy's
(cnn too), and in law against the mean-field finite-width theory, whose setting it is.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose

import gradjax.theory as T
from gradjax.config import NetConfig
from gradjax.empirical import grad_norms, gradient_profile
from gradjax.empirical._seeds import backward_key, default_inputs
from gradjax.empirical.gradients import default_targets
from gradjax.nn.blocks import block_apply
from gradjax.nn.stack import init_params, readout, unroll

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py

B = 3
CASES = {
    "mlp": NetConfig(depth=5, width=12, activation="tanh", sigma_w2=1.5, sigma_b2=0.1, dtype="float64"),
    "resmlp": NetConfig(arch="resmlp", depth=5, width=12, activation="tanh", sigma_w2=1.5, sigma_b2=0.1, residual_scale=0.5,
                        dtype="float64"),
    "cnn": NetConfig(arch="cnn", depth=4, width=4, spatial=(6,), kernel_size=3, activation="tanh", sigma_w2=1.5,
                     sigma_b2=0.1, dtype="float64"),
}


def _setup(cfg, seed):
    key = jax.random.key(seed)
    params, copy = init_params(cfg, key), init_params(cfg, backward_key(key))
    x = default_inputs(cfg, key, B)
    t = default_targets(cfg, key, B, "projection")
    return params, copy, x, t


def _hand_independent(cfg, params, copy, x, t):
    """log10 ‖δ_l‖, l = 0..L, written out: forward with W_l, backward δ_{l−1} = φ′(h_{l−1}) ⊙ (δ_l W′_lᵀ)
    (mlp), δ_l + α φ′(h_{l−1}) ⊙ (δ_l W′_lᵀ) (resmlp); δ_L from the projection loss ⟨y, t⟩/B."""
    dphi = lambda h: 1.0 - jnp.tanh(h) ** 2  # noqa: E731
    K, b = params["blocks"]["kernel"], params["blocks"]["bias"]
    Kc = copy["blocks"]["kernel"]
    h = [x @ params["embed"]["kernel"] + params["embed"]["bias"][None, :]]
    for l in range(cfg.depth):
        branch = jnp.tanh(h[-1]) @ K[l] + b[l][None, :]
        h.append(h[-1] + cfg.alpha * branch if cfg.arch == "resmlp" else branch)
    d = dphi(h[-1]) * ((t / B) @ params["readout"]["kernel"].T)
    logs = [jnp.log10(jnp.linalg.norm(d))]
    for l in reversed(range(cfg.depth)):
        g = dphi(h[l]) * (d @ Kc[l].T)
        d = d + cfg.alpha * g if cfg.arch == "resmlp" else g
        logs.append(jnp.log10(jnp.linalg.norm(d)))
    return np.asarray(logs[::-1])


def _surrogate_independent(cfg, params, copy, x, t):
    """log10 ‖δ_l‖, l = 1..L, by autodiff of a network whose value at every block is the real one and
    whose Jacobian in h_{l−1} is the copy's: h_l = real_l + copy(h_{l−1}) − stop_gradient(copy(h_{l−1}))."""
    h0, xs = unroll(cfg, params, x)
    n = cfg.depth

    def loss(eps):
        h = h0
        for l in range(n):
            real = jax.tree.map(lambda a: a[l], xs)
            cp = jax.tree.map(lambda a: a[l], copy["blocks"])
            h_real = block_apply(cfg, real, jax.lax.stop_gradient(h))
            c = block_apply(cfg, cp, h)
            h = h_real + c - jax.lax.stop_gradient(c) + eps[l]
        return jnp.sum(readout(cfg, params, h) * t) / B

    d = jax.grad(loss)(jnp.zeros((n,) + h0.shape, h0.dtype))
    return np.asarray(jnp.log10(jnp.sqrt(jnp.sum(d**2, axis=(1, 2)))))


@pytest.mark.parametrize("arch", ["mlp", "resmlp"])
def test_matches_a_hand_written_backward_through_the_copy(arch):
    # float64: the library's log-scaled walk against the plain products above, to 1e-12 in log10.
    cfg = CASES[arch]
    for seed in (0, 3):
        params, copy, x, t = _setup(cfg, seed)
        got = gradient_profile(cfg, seeds=[seed], batch=B, backward="independent")
        want = _hand_independent(cfg, params, copy, x, t)
        assert_allclose(np.asarray(got.hidden[0]), want[1:], rtol=0, atol=1e-12)
        assert_allclose(float(got.input[0]), want[0], rtol=0, atol=1e-12)
        # with the network's own weights in place of the copy the same hand-written pass is the gradient
        shared = gradient_profile(cfg, seeds=[seed], batch=B)
        assert_allclose(np.asarray(shared.hidden[0]), _hand_independent(cfg, params, params, x, t)[1:], atol=1e-12)


@pytest.mark.parametrize("arch", list(CASES))
def test_matches_autodiff_of_a_surrogate_with_the_copys_jacobians(arch):
    cfg = CASES[arch]
    params, copy, x, t = _setup(cfg, 1)
    got = grad_norms(cfg, params, x, t, backward_blocks=copy["blocks"])
    assert_allclose(np.asarray(got.hidden), _surrogate_independent(cfg, params, copy, x, t), rtol=0, atol=1e-12)


def test_same_forward_pass_other_backward():
    # The loss (a function of the forward pass only) and δ_L are the shared run's; every δ below differs.
    cfg = CASES["mlp"]
    shared = gradient_profile(cfg, seeds=4, batch=B)
    indep = gradient_profile(cfg, seeds=4, batch=B, backward="independent")
    assert_allclose(np.asarray(indep.loss), np.asarray(shared.loss), rtol=1e-14)
    assert_allclose(np.asarray(indep.hidden[:, -1]), np.asarray(shared.hidden[:, -1]), rtol=1e-14)
    assert np.all(np.abs(np.asarray(indep.hidden[:, :-1] - shared.hidden[:, :-1])) > 1e-6)


@pytest.mark.parametrize("arch,variants", [
    ("mlp", (dict(segment=2), dict(weights="regenerated"))),
    ("cnn", (dict(weights="regenerated", segment=2),)),
])
def test_segments_and_regenerated_weights_give_the_same_control(arch, variants):
    # The copy is drawn the same way whether the kernels are stored or regenerated from their keys, and
    # rematerialized segments walk back through the same copy.
    cfg = CASES[arch].with_(depth=4)
    ref = gradient_profile(cfg, seeds=3, batch=B, backward="independent")
    for kw in variants:
        got = gradient_profile(cfg, seeds=3, batch=B, backward="independent", **kw)
        assert_allclose(np.asarray(got.hidden), np.asarray(ref.hidden), rtol=0, atol=1e-12, err_msg=str(kw))
        assert_allclose(np.asarray(got.weights), np.asarray(ref.weights), rtol=0, atol=1e-12, err_msg=str(kw))


@pytest.mark.parametrize("kw,field", [
    (dict(arch="rnn"), "arch"), (dict(arch="transformer", tokens=4, heads=2), "arch"),
    (dict(norm="layernorm"), "norm"), (dict(norm="batchnorm"), "norm"),
])
def test_refuses_what_is_not_gradient_independence(kw, field):
    cfg = NetConfig(depth=3, width=8, **kw)
    with pytest.raises(ValueError, match=f"backward='independent' needs {field} in"):
        gradient_profile(cfg, seeds=1, batch=4, backward="independent")
    params = init_params(cfg, jax.random.key(0))
    with pytest.raises(ValueError, match=f"backward='independent' needs {field} in"):  # the per-network form too
        grad_norms(cfg, params, default_inputs(cfg, jax.random.key(0), 4), None, backward_blocks=params["blocks"])


def test_rejects_an_unknown_backward():
    with pytest.raises(ValueError, match="backward must be one of"):
        gradient_profile(CASES["mlp"], seeds=1, batch=B, backward="independant")


@pytest.mark.slow
@pytest.mark.full_codegen  # compute-bound: 2048 networks of 30 layers
def test_finite_width_drift_of_the_control_and_of_the_network_at_one_input():
    # Critical tanh (σ_w² = 1, σ_b² = 0), N = 64, L = 30, batch 1, 1024 seeds each, float64.
    # The theory's finite-width drift of log10‖δ_1‖/‖δ_L‖ without the shared-weight shift Δ is the setting of the
    # control; with it, the network's (gradjax.theory.gradients, module docstring). Both within 3 standard
    # errors of the seed mean (≈ 0.0074 each), and the two measurements apart by more than 3 standard errors of
    # their difference (Δ = −0.052 predicted). One-off, 8192 seeds with a paired control (this module's
    # construction redrawn only on the span of each block's inputs, which has the same law given the forward
    # pass): control −0.0714 ± 0.0026 against −0.0776, network −0.1226 ± 0.0026 against −0.1296.
    cfg = NetConfig(depth=30, width=64, activation="tanh", init="xavier_normal", dtype="float64")
    mf = float(T.gradient_profile(cfg, finite_width=False)[0])
    shift = np.asarray(T.gradients._shared_weight_shift(cfg, None, 1.0))[1:].sum() / (2 * np.log(10))
    full = float(T.gradient_profile(cfg, batch=1)[0]) - mf
    seeds = list(range(1024))
    rel = {b: np.asarray(gradient_profile(cfg, seeds=seeds, batch=1, backward=b).relative()[:, 0])
           for b in ("shared", "independent")}
    se = {b: r.std(ddof=1) / np.sqrt(len(r)) for b, r in rel.items()}
    drift = {b: r.mean() - mf for b, r in rel.items()}
    assert abs(drift["independent"] - (full - shift)) < 3 * se["independent"], (drift, full - shift, se)
    assert abs(drift["shared"] - full) < 3 * se["shared"], (drift, full, se)
    assert drift["shared"] - drift["independent"] < -3 * np.hypot(se["shared"], se["independent"]), (drift, se)
