"""cnn and transformer blocks: against independent computations, shapes over every allowed combination."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gradjax.config import CNN_INITS, NetConfig
from gradjax.nn.attention import attend, attention_weights
from gradjax.nn.blocks import block_apply
from gradjax.nn.conv import circular_conv, conv_gaussian, delta_orthogonal
from gradjax.nn.ensemble import ensemble_params
from gradjax.nn.stack import Network, forward, input_shape, params_of, readout, unroll


pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py

_DIMENSIONS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}


@jax.jit  # one program per shape
def _conv_by_lax(x, w):
    """y[α] = Σ_β x[α + β − r] W[β]: XLA's convolution of the input padded by wrapping (independent of the
    rolled copies that circular_conv multiplies)."""
    d = x.ndim - 2
    r = w.shape[0] // 2
    xp = jnp.pad(x, ((0, 0),) + ((r, r),) * d + ((0, 0),), mode="wrap")
    dn = jax.lax.conv_dimension_numbers(xp.shape, w.shape, _DIMENSIONS[d])
    return jax.lax.conv_general_dilated(xp, w, (1,) * d, "VALID", dimension_numbers=dn,
                                        precision=jax.lax.Precision.HIGHEST)


@pytest.mark.parametrize("spatial,k", [((7,), 3), ((5, 6), 3), ((5, 5), 5)], ids=str)
def test_circular_conv_equals_xlas_convolution_of_the_wrapped_input(spatial, k):
    x = jax.random.normal(jax.random.key(0), (2,) + spatial + (3,), jnp.float64)
    w = jax.random.normal(jax.random.key(1), (k,) * len(spatial) + (3, 4), jnp.float64)
    np.testing.assert_allclose(circular_conv(x, w), _conv_by_lax(x, w), rtol=1e-12, atol=1e-12)


def test_cnn_block_is_translation_equivariant():
    cfg = NetConfig(depth=2, width=4, arch="cnn", spatial=(5, 6), dtype="float64", sigma_b2=0.1)
    p = jax.tree.map(lambda a: a[0], params_of(Network(cfg, rngs=nnx.Rngs(params=jax.random.key(0))))["blocks"])
    h = jax.random.normal(jax.random.key(1), (2, 5, 6, 4), jnp.float64)
    shift = lambda a: jnp.roll(a, (2, -1), axis=(1, 2))  # noqa: E731
    out = block_apply(cfg, p, h.reshape(2, -1)).reshape(h.shape)
    np.testing.assert_allclose(block_apply(cfg, p, shift(h).reshape(2, -1)).reshape(h.shape), shift(out), atol=1e-12)


def test_gaussian_kernel_variance_has_fan_in_k_d_c():
    # 3×3 kernel, 256 input channels: fan-in 9·256; 2.4M entries, sampling error of the variance ~0.1%
    w = conv_gaussian(jax.random.key(0), (3, 3, 256, 1024), 1.7, jnp.float64)
    assert abs(float(jnp.var(w)) * 9 * 256 / 1.7 - 1) < 0.01


def test_delta_orthogonal_is_scaled_orthogonal_at_the_centre_zero_elsewhere():
    w = delta_orthogonal(jax.random.key(0), (5, 3, 16, 16), 2.5, jnp.float64)
    np.testing.assert_allclose(w[2, 1].T @ w[2, 1], 2.5 * np.eye(16), atol=1e-12)
    assert float(jnp.sum(jnp.abs(w))) == pytest.approx(float(jnp.sum(jnp.abs(w[2, 1]))))


def _cnn(act, init, spatial):
    return NetConfig(depth=3, width=6, in_dim=2, out_dim=3, arch="cnn", activation=act, init=init, spatial=spatial)


def _transformer(act, norm, position, skip, mlp):
    return NetConfig(depth=3, width=6, in_dim=5, out_dim=3, arch="transformer", tokens=4, heads=2, activation=act,
                     norm=norm, norm_position=position, residual_scale=skip, mlp=mlp, sigma_b2=0.1)


# each init with 1-D and 2-D maps (activations are the dense zoo's, tested in test_zoo.py)
CNN_CASES = [_cnn(a, i, s) for a, (i, s) in zip(("tanh", "prelu"), itertools.product(CNN_INITS, [(5,), (3, 4)]))]
# every norm at both positions, with and without skip and MLP (each value of each field, 6 configs)
TRANSFORMER_CASES = [_transformer("prelu" if i % 2 else "tanh", n, p, (1.0, "none")[i % 2], bool((i // 2) % 2 == 0))
                     for i, (n, p) in enumerate(itertools.product(("none", "layernorm", "rmsnorm"), ("pre", "post")))]


def test_every_cnn_and_transformer_combination_runs():
    for i, cfg in enumerate(CNN_CASES + TRANSFORMER_CASES):
        params = params_of(Network(cfg, rngs=nnx.Rngs(params=jax.random.key(i))))
        x = jax.random.normal(jax.random.key(99), input_shape(cfg, 4))
        y, taps = jax.jit(lambda p, x, c=cfg: forward(c, p, x, taps=True))(params, x)
        assert y.shape == (4, 3)
        assert taps.hidden.shape == taps.preact.shape == (3, 4, cfg.state_size)
        assert bool(jnp.all(jnp.isfinite(y))), cfg


@pytest.mark.parametrize("cfg", [CNN_CASES[1], TRANSFORMER_CASES[0], TRANSFORMER_CASES[3]], ids=str)
def test_block_apply_reproduces_forward(cfg):
    cfg = cfg.with_(dtype="float64")  # float64: the comparison is of the composition, not of float32 roundings
    params = params_of(Network(cfg, rngs=nnx.Rngs(params=jax.random.key(3))))
    x = jax.random.normal(jax.random.key(4), input_shape(cfg, 6))
    y, taps = forward(cfg, params, x, taps=True)
    h, _ = unroll(cfg, params, x)
    for l in range(cfg.depth):
        h = block_apply(cfg, jax.tree.map(lambda a: a[l], params["blocks"]), h)
        np.testing.assert_allclose(h, taps.hidden[l], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(readout(cfg, params, h), y, rtol=1e-12, atol=1e-12)


def test_attention_equals_a_per_head_loop():
    cfg = NetConfig(depth=1, width=6, arch="transformer", tokens=5, heads=3, dtype="float64", sigma_b2=0.2)
    p = jax.tree.map(lambda a: a[0], params_of(Network(cfg, rngs=nnx.Rngs(params=jax.random.key(0))))["blocks"])
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 5, 6), jnp.float64))
    q, k, v = (x @ np.asarray(p[n]) for n in ("query", "key", "value"))
    heads = []
    for hd in range(3):
        s = slice(2 * hd, 2 * hd + 2)
        logits = q[..., s] @ np.swapaxes(k[..., s], -1, -2) / np.sqrt(2.0)
        a = np.exp(logits - logits.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        heads.append(a @ v[..., s])
    want = np.concatenate(heads, axis=-1) @ np.asarray(p["kernel"]) + np.asarray(p["bias"])
    np.testing.assert_allclose(attend(cfg, p, jnp.asarray(x)), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jnp.sum(attention_weights(cfg, p, jnp.asarray(x)), -1), 1.0, rtol=1e-12)


def test_post_norm_block_outputs_normalised_tokens():
    cfg = _transformer("tanh", "layernorm", "post", 1.0, True).with_(dtype="float64")
    params = params_of(Network(cfg, rngs=nnx.Rngs(params=jax.random.key(0))))
    _, taps = forward(cfg, params, jax.random.normal(jax.random.key(1), input_shape(cfg, 2)), taps=True)
    tokens = taps.hidden.reshape(3, 2, 4, 6)
    # layernorm with unit scale and zero bias: every token has mean 0 and variance v/(v + 1e-5)
    np.testing.assert_allclose(jnp.mean(tokens, -1), 0.0, atol=1e-12)
    np.testing.assert_allclose(jnp.var(tokens, -1), 1.0, atol=1e-3)


@pytest.mark.parametrize("cfg", [CNN_CASES[1], TRANSFORMER_CASES[5]], ids=str)
def test_ensemble_member_equals_single(cfg):
    ens = ensemble_params(cfg, 3)
    for k in range(3):
        single = params_of(Network(cfg, rngs=nnx.Rngs(params=jax.random.key(k))))
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[k], b), ens, single)
