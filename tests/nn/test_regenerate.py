"""Networks that are never stored: per-block keys, kernels drawn whole or by tiles inside products."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax.config import NetConfig
from gradjax.nn.blocks import init_block
from gradjax.nn.init import IID, INITIALIZERS
from gradjax.nn.regenerate import tiled_kernel
from gradjax.nn.stack import block_keys, init_params


pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


@pytest.mark.parametrize("arch,init", [("mlp", "gaussian"), ("resmlp", "gaussian"), ("cnn", "gaussian"),
                                       ("cnn", "delta_orthogonal")])
def test_block_keys_give_the_stored_blocks(arch, init):
    extra = dict(spatial=(5, 3)) if arch == "cnn" else {}
    cfg = NetConfig(depth=5, width=6, arch=arch, init=init, sigma_b2=0.1, **extra)
    key = jax.random.key(4)
    stored = init_params(cfg, key)["blocks"]
    drawn = jax.vmap(lambda k: init_block(cfg, k))(block_keys(cfg, key))
    for name in stored:
        assert np.array_equal(stored[name], drawn[name]), name


def test_block_keys_refuse_the_rnn():
    with pytest.raises(ValueError, match="arch must be one of \\['mlp', 'resmlp', 'cnn'\\] for per-block keys"):
        block_keys(NetConfig(depth=3, width=4, arch="rnn"), jax.random.key(0))


@pytest.mark.parametrize("init", sorted(IID))
def test_tiled_kernel_products_match_the_dense_kernel(init):
    """x W, its jvp and vjp (the transposed product), batched over a leading axis, against the
    dense kernel in float64: equal to a few ulps (only the summation order may differ)."""
    key, n, tile = jax.random.key(2), 32, 8
    tk = tiled_kernel(init, key, (n, n), 1.5, jnp.float64, tile)
    w = INITIALIZERS[init](key, (n, n), 1.5, jnp.float64)
    assert np.array_equal(tk.dense(), w)
    x = jax.random.normal(jax.random.key(1), (4, 3, n), jnp.float64)
    f_t = lambda a: jnp.tanh(a) @ tk  # noqa: E731
    f_d = lambda a: jnp.tanh(a) @ w  # noqa: E731
    tol = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jax.jit(f_t)(x), f_d(x), **tol)
    np.testing.assert_allclose(jax.jvp(f_t, (x,), (x,))[1], jax.jvp(f_d, (x,), (x,))[1], **tol)
    vjp = lambda f: jax.vmap(lambda a: jax.vjp(f, a)[1](a)[0])(x)  # noqa: E731
    np.testing.assert_allclose(vjp(f_t), vjp(f_d), **tol)
    # A kernel per network (keys batched), as when seeds are vmapped.
    keys = jax.random.split(key, 4)
    per_key = jax.vmap(lambda k, a: a @ tiled_kernel(init, k, (n, n), 1.5, jnp.float64, tile))(keys, x)
    np.testing.assert_allclose(per_key, jnp.stack([x[i] @ INITIALIZERS[init](keys[i], (n, n), 1.5, jnp.float64)
                                                   for i in range(4)]), **tol)


def test_tiled_kernel_refuses_what_it_cannot_draw_by_tiles():
    with pytest.raises(ValueError, match="init must be one of .* to draw a kernel by tiles"):
        tiled_kernel("orthogonal", jax.random.key(0), (8, 8), 1.0, jnp.float32, 4)
    with pytest.raises(ValueError, match="tile must be a positive int dividing"):
        tiled_kernel("gaussian", jax.random.key(0), (8, 8), 1.0, jnp.float32, 3)
