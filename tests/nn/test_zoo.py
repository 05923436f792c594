import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gradjax.config import NetConfig, DENSE_ARCHS as ARCHS, NORMS, NORM_POSITIONS
from gradjax.nn.activations import ACTIVATIONS
from gradjax.nn.blocks import block_apply
from gradjax.nn.ensemble import ensemble_forward, ensemble_params, make_ensemble, seed_keys
from gradjax.nn.init import INITIALIZERS, get_initializer, weight_sigma_w2
from gradjax.nn.stack import Network, forward, input_shape, params_of, unroll, step, readout

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py (module measured 82.4 → 71.2 CPU s)


def _combos():
    for arch, act, init, norm in itertools.product(ARCHS, ACTIVATIONS, INITIALIZERS, NORMS):
        yield arch, act, init, norm


def _build(arch, act, init, norm, **kw):
    return NetConfig(depth=3, width=6, in_dim=5, out_dim=2, arch=arch, activation=act, init=init, norm=norm, **kw)


def test_every_allowed_combination_runs_and_disallowed_raise():
    """activation × init × norm × arch: shapes and finite outputs (forward eager, depth 3, width 6).

    The parameters are drawn with jit on (each random draw is one cached program per shape; under
    ``disable_jit`` its cipher rounds run primitive by primitive, 5× slower); the forward pass, a
    different program for every combination, runs eagerly rather than compiling each.
    """
    built = refused = 0
    for arch, act, init, norm in _combos():
        try:
            cfg = _build(arch, act, init, norm)
        except ValueError as e:
            assert arch == "rnn" and norm == "batchnorm" and "norm" in str(e)
            refused += 1
            continue
        params = params_of(Network(cfg, rngs=nnx.Rngs(params=jax.random.key(built))))
        x = jax.random.normal(jax.random.key(99), input_shape(cfg, 4))
        with jax.disable_jit():
            y, taps = forward(cfg, params, x, taps=True)
        assert y.shape == (4, 2) and y.dtype == jnp.float32
        assert taps.hidden.shape == taps.preact.shape == (3, 4, 6)
        assert bool(jnp.all(jnp.isfinite(y))), (arch, act, init, norm)
        built += 1
    assert refused == len(ACTIVATIONS) * len(INITIALIZERS)  # rnn + batchnorm only
    assert built == len(ARCHS) * len(ACTIVATIONS) * len(INITIALIZERS) * len(NORMS) - refused


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("position", NORM_POSITIONS)
def test_block_apply_reproduces_forward(arch, position):
    norm = "layernorm" if arch == "rnn" else "batchnorm"
    cfg = NetConfig(depth=5, width=7, in_dim=3, out_dim=2, arch=arch, norm=norm, norm_position=position,
                    activation="prelu", sigma_b2=0.1)
    params = params_of(Network(cfg, rngs=nnx.Rngs(params=jax.random.key(3))))
    x = jax.random.normal(jax.random.key(4), input_shape(cfg, 6))
    y, taps = jax.jit(lambda p, x: forward(cfg, p, x, taps=True))(params, x)
    h, xs = unroll(cfg, params, x)
    for l in range(cfg.depth):
        if arch == "rnn":
            h = block_apply(cfg, params["blocks"], h, xs["drive"][l])
        else:
            h = block_apply(cfg, jax.tree.map(lambda a: a[l], params["blocks"]), h)
        np.testing.assert_allclose(h, taps.hidden[l], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(readout(cfg, params, h), y, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("init", sorted(INITIALIZERS))
def test_init_variance_matches_formula(init):
    """Width 512: empirical Var W within 3% of the scheme's formula (fan_in = fan_out = 512)."""
    n, sw2 = 512, 1.7
    w = get_initializer(init)(jax.random.key(0), (n, n), sw2, jnp.float32)
    formula = {  # closed forms, written independently of gradjax.nn.init.weight_sigma_w2
        "gaussian": sw2 / n, "orthogonal": sw2 / n, "xavier_normal": 2 / (2 * n), "xavier_uniform": 2 / (2 * n),
        "he_normal": 2 / n, "he_uniform": 2 / n, "lecun_normal": 1 / n,
    }[init]
    assert abs(float(jnp.var(w)) / formula - 1) < 0.03
    assert weight_sigma_w2(init, n, n, sw2) == pytest.approx(formula * n)


def test_orthogonal_is_scaled_orthogonal():
    w = get_initializer("orthogonal")(jax.random.key(1), (128, 128), 2.5, jnp.float64)
    np.testing.assert_allclose(w.T @ w, 2.5 * np.eye(128), atol=1e-12)


def test_bias_variance():
    cfg = NetConfig(depth=64, width=512, sigma_b2=0.3)
    p = params_of(Network(cfg, rngs=nnx.Rngs(params=jax.random.key(0))))
    assert abs(float(jnp.var(p["blocks"]["bias"])) / 0.3 - 1) < 0.03


@pytest.mark.parametrize("arch", ARCHS)
def test_ensemble_member_equals_single(arch):
    cfg = NetConfig(depth=3, width=5, arch=arch, init="orthogonal", sigma_b2=0.2)
    ens = ensemble_params(cfg, 4)
    for k in range(4):
        single = params_of(Network(cfg, rngs=nnx.Rngs(params=jax.random.key(k))))
        for a, b in zip(jax.tree.leaves(ens), jax.tree.leaves(single)):
            np.testing.assert_array_equal(a[k], b)
    # different seeds are independent draws, same seeds bit-identical
    assert not np.array_equal(ens["blocks"]["kernel"][0], ens["blocks"]["kernel"][1])
    again = ensemble_params(cfg, seed_keys([0, 1, 2, 3]))
    jax.tree.map(np.testing.assert_array_equal, ens, again)
    x = jnp.ones(input_shape(cfg, 2))
    ys = ensemble_forward(cfg, ens, x)
    assert ys.shape == (4, 2, 5)
    # vmapped and single forward may reassociate every dot product and residual sum: each of the
    # L + 2 layers adds at most ~N float32 roundings of the output's scale (Higham, Accuracy and
    # Stability of Numerical Algorithms, §3.1), so the difference is bounded by (L + 2)·N·eps·max|y|.
    one = forward(cfg, jax.tree.map(lambda a: a[2], ens), x)
    tol = 4 * (cfg.depth + 2) * cfg.width * np.finfo(np.float32).eps * float(jnp.max(jnp.abs(one)))
    np.testing.assert_allclose(ys[2], one, rtol=0, atol=tol)


def test_ensemble_kernel_shape():
    ens = make_ensemble(NetConfig(depth=3, width=4), 2)
    assert params_of(ens)["blocks"]["kernel"].shape == (2, 3, 4, 4)


@pytest.mark.parametrize("bad", [0, -2, True, 2.0, "3", [], jnp.zeros((3,))])
def test_bad_seeds(bad):
    with pytest.raises((TypeError, ValueError), match="seeds"):
        seed_keys(bad)


def test_float64_network():
    cfg = NetConfig(depth=2, width=4, dtype="float64")
    p = params_of(Network(cfg, rngs=nnx.Rngs(params=jax.random.key(0))))
    assert p["blocks"]["kernel"].dtype == jnp.float64
    assert forward(cfg, p, jnp.ones((2, 4))).dtype == jnp.float64


def test_bad_input_shape():
    cfg = NetConfig(depth=2, width=4, arch="rnn", in_dim=3)
    p = params_of(Network(cfg, rngs=nnx.Rngs(params=jax.random.key(0))))
    with pytest.raises(ValueError, match="x must have shape"):
        forward(cfg, p, jnp.ones((2, 3)))
