import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax.config import NetConfig
from gradjax.empirical import fitted_slope, grad_norms, gradient_profile, growth_rate
from gradjax.empirical._seeds import _run_chunk
from gradjax.empirical.losses import loss_fn
from gradjax.nn.stack import init_params, input_shape
from tests.empirical.reference import reference_grad_norms, to64

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


LN10 = math.log(10.0)
# Relative error allowed on a norm: float32 against the exact (float64) reference; float64 against itself.
RTOL = {"float32": 1e-4, "float64": 1e-10}

# Every arch × norm × norm position × residual option (resmlp: a fixed α and the 1/√L rule), small
# sizes; activations cycle through the registry so that prelu's block slope and non-smooth ones appear.
_ACTS = ["tanh", "relu", "prelu", "gelu", "selu", "sigmoid", "leaky_relu", "elu", "silu", "softplus", "erf", "hard_tanh"]


def _cases():
    cases = []
    for arch in ("mlp", "resmlp", "rnn"):
        norms = ("none", "layernorm", "rmsnorm") if arch == "rnn" else ("none", "batchnorm", "layernorm", "rmsnorm")
        for norm in norms:
            for pos in (("pre",) if norm == "none" else ("pre", "post")):
                # resmlp alternates a fixed α and the 1/√L rule (both appear with and without norms).
                res = (0.7, "1/sqrt(L)")[len(cases) % 2] if arch == "resmlp" else None
                cases.append(dict(arch=arch, norm=norm, norm_position=pos, residual_scale=res,
                                  activation=_ACTS[len(cases) % len(_ACTS)]))
    # cnn (1-D and 2-D maps, both inits) and transformer (pre/post norm, scaled / no skip, with and
    # without MLP): the same walker, checked against the same jax.grad / jacrev references.
    cases += [
        dict(arch="cnn", norm="none", norm_position="pre", residual_scale=None, activation="tanh", spatial=(4,)),
        dict(arch="cnn", norm="none", norm_position="pre", residual_scale=None, activation="relu", spatial=(3, 3),
             init="delta_orthogonal", sigma_w2=1.3),
        dict(arch="transformer", norm="layernorm", norm_position="pre", residual_scale=0.7, activation="gelu",
             tokens=3),
        dict(arch="transformer", norm="layernorm", norm_position="post", residual_scale=1.0, activation="tanh",
             tokens=3, mlp=False),
        dict(arch="transformer", norm="none", norm_position="pre", residual_scale="none", activation="tanh",
             tokens=4, mlp=False),
    ]
    return cases


CASES = _cases()


def _ids(c):
    keys = ("arch", "norm", "norm_position", "residual_scale", "activation", "spatial", "init", "tokens", "mlp")
    return "-".join(str(c[k]) for k in keys if k in c)


def _setup(case, dtype, loss, seed=0):
    cfg = NetConfig(depth=3, width=5, in_dim=4, out_dim=3, sigma_b2=0.2, dtype=dtype, **case)
    params = init_params(cfg, jax.random.key(seed))
    kx, kt = jax.random.split(jax.random.key(100 + seed))
    x = jax.random.normal(kx, input_shape(cfg, 4), cfg.jnp_dtype)
    t = jax.random.randint(kt, (4,), 0, 3) if loss == "xent" else jax.random.normal(kt, (4, 3), cfg.jnp_dtype)
    return cfg, params, x, t


def _check(got, ref_linear, rtol, scale):
    got = np.asarray(got, np.float64)
    # Norms below 1e-9 of the network's gradient scale are zero up to rounding (e.g. a bias right
    # before a batchnorm, whose gradient vanishes identically): no digits to compare; both sides tiny.
    sel = ref_linear > 1e-9 * scale
    assert np.all(got[~sel] < np.log10(scale) - 6)
    # |Δ log10 n| ≤ rtol/ln10 ⇔ relative error of the norm ≤ rtol (to first order).
    np.testing.assert_allclose(got[sel], np.log10(ref_linear[sel]), rtol=0, atol=rtol / LN10)


_grad_norms = jax.jit(grad_norms, static_argnums=(0, 4))


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_grad_norms_match_jax_grad_float64(case):
    loss = "xent" if len(_ids(case)) % 2 else "mse"
    cfg, params, x, t = _setup(case, "float64", loss)
    got = _grad_norms(cfg, params, x, t, loss)
    hidden, per = reference_grad_norms(cfg, params, x, t, loss_fn(loss))
    scale = hidden.max()
    _check(got.hidden, hidden, RTOL["float64"], scale)
    for k, v in per.items():
        _check(got.params[k], v, RTOL["float64"], scale)
    np.testing.assert_array_equal(got.weights, got.params["kernel"])


@pytest.mark.parametrize("case", [c for c in CASES if c["norm"] in ("none", "batchnorm") or c["arch"] == "rnn"][::3], ids=_ids)
def test_grad_norms_float32_within_rtol_of_exact(case):
    cfg, params, x, t = _setup(case, "float32", "mse", seed=1)
    got = _grad_norms(cfg, params, x, t, "mse")
    cfg64, p64 = to64(cfg, params)
    hidden, per = reference_grad_norms(cfg64, p64, x.astype(jnp.float64), t.astype(jnp.float64), loss_fn("mse"))
    _check(got.hidden, hidden, RTOL["float32"], hidden.max())
    _check(got.weights, per["kernel"], RTOL["float32"], hidden.max())


def test_gradient_profile_members_equal_single_networks_and_chunking_is_bitwise():
    cfg = NetConfig(depth=4, width=16, arch="resmlp", norm="layernorm", sigma_b2=0.1)
    prof = gradient_profile(cfg, seeds=5, batch=8)
    assert prof.hidden.shape == prof.weights.shape == prof.biases.shape == (5, 4)
    # Member k is the network of jax.random.key(k) on its own default data.
    from gradjax.empirical._seeds import default_inputs
    from gradjax.empirical.gradients import default_targets

    k3 = jax.random.key(3)
    x3 = default_inputs(cfg, k3, 8)
    one = _grad_norms(cfg, init_params(cfg, k3), x3, default_targets(cfg, k3, 8, "projection"), "projection")
    # Jitted ensemble vs an eager single network: float32 roundings differ per product; a crude worst case
    # (2L + 2)·N·ε₃₂ = 10·16·6e-8 ≈ 1e-5 over the forward and backward sweeps, ×4 for layernorm's
    # division and square root.
    np.testing.assert_allclose(prof.hidden[3], one.hidden, rtol=4e-5)
    n_compiled = _run_chunk._cache_size()
    again = gradient_profile(cfg, seeds=5, batch=8)
    assert _run_chunk._cache_size() == n_compiled  # no recompilation on the second call
    with pytest.warns(UserWarning, match="one seed needs about"):
        chunked = gradient_profile(cfg, seeds=5, batch=8, max_bytes=1)  # one seed per chunk
    with pytest.warns(UserWarning) as caught:  # the vmapped group shrinks to fit, and says so
        grouped = gradient_profile(cfg, seeds=5, batch=8, max_bytes=1, seed_batch=2)
    said = " | ".join(str(w.message) for w in caught)
    assert "one seed needs about" in said and "seed_batch=2 vmapped seeds need" in said and "vmapping 1 at a time" in said
    np.testing.assert_allclose(grouped.hidden, prof.hidden, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(prof), jax.tree.leaves(chunked)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(prof), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)  # same seeds → same bits


def test_gradient_profile_inputs_targets_and_losses():
    cfg = NetConfig(depth=3, width=8, out_dim=3)
    x = jax.random.normal(jax.random.key(1), (2, 6, 8))
    labels = jnp.asarray([[0, 1, 2, 0, 1, 2], [2, 2, 1, 1, 0, 0]])
    per_seed = gradient_profile(cfg, seeds=2, inputs=x, targets=labels, loss="xent")
    ref = _grad_norms(cfg, init_params(cfg, jax.random.key(1)), x[1], labels[1], "xent")
    np.testing.assert_allclose(per_seed.hidden[1], ref.hidden, rtol=1e-6)
    shared = gradient_profile(cfg, seeds=[4, 7], inputs=x[0], loss=lambda y, t: jnp.mean(y * t))
    assert shared.hidden.shape == (2, 3) and bool(jnp.all(jnp.isfinite(shared.hidden)))
    with pytest.raises(ValueError, match="inputs must have shape"):
        gradient_profile(cfg, seeds=2, inputs=jnp.zeros((3, 3, 6, 8)))


@pytest.mark.full_codegen  # width-1024 draws: compute-bound
def test_relu_at_sigma_w2_2_keeps_mean_squared_delta_flat():
    # He et al. 2015 (arXiv:1502.01852, Eq. 13): with σ_w² = 2, E‖δ_{l-1}‖² = E‖δ_l‖² for ReLU, for
    # an output cotangent independent of the weights (a random projection loss; with mse the
    # residual y − t carries the forward signal and ‖δ_l‖² grows with L − l like the second moment
    # of a product of random matrices). Width 256, 32 seeds, batch 16, depth 16: the seed-mean of
    # ‖δ_l‖² (linear) drifts by the finite-width spread only (≈ 0.04 in log10 per standard
    # deviation here); tolerance 0.15 in log10.
    cfg = NetConfig(depth=16, width=256, activation="relu", sigma_w2=2.0)
    prof = gradient_profile(cfg, seeds=32, batch=16)  # default loss: projection
    ms = jnp.mean(10.0 ** (2 * prof.hidden.astype(jnp.float64)), axis=0)
    assert abs(float(jnp.log10(ms[0] / ms[-1]))) < 0.15
    assert abs(float(fitted_slope(jnp.log10(ms)))) < 0.15 / cfg.depth


def test_summaries_closed_forms():
    # A straight line a + b·l has fitted slope b exactly; growth_rate is its negative.
    l = jnp.arange(10.0)
    lines = jnp.stack([2.0 - 0.3 * l, 1.0 + 0.1 * l])
    np.testing.assert_allclose(fitted_slope(lines), [-0.3, 0.1], rtol=1e-12)
    np.testing.assert_allclose(growth_rate(lines, start=2), [0.3, -0.1], rtol=1e-12)


def test_relative_profile_is_the_norm_ratio_to_the_last_layer():
    # log10(‖δ_l‖/‖δ_L‖) = log10‖δ_l‖ − log10‖δ_L‖: written out on a (S, L) array, JAX and NumPy alike
    from gradjax.empirical import relative_profile

    g = np.array([[1.0, 0.5, 2.0], [-3.0, -1.0, -2.0]])
    want = np.array([[-1.0, -1.5, 0.0], [-1.0, 1.0, 0.0]])
    np.testing.assert_array_equal(relative_profile(g), want)
    assert isinstance(relative_profile(g), np.ndarray)
    cfg = NetConfig(depth=3, width=8)
    prof = gradient_profile(cfg, seeds=2, batch=4)
    np.testing.assert_array_equal(prof.relative(), prof.hidden - prof.hidden[:, -1:])
