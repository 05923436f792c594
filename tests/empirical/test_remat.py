"""Rematerialization: segmented walks and checkpointed forwards give the stored numbers with memory ∝ √L."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax.config import NetConfig
from gradjax.empirical import gradient_profile, grad_norms, segment_length
from gradjax.nn.regenerate import keyed_params
from gradjax.nn.stack import forward, init_params, input_shape

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


CNN = NetConfig(depth=12, width=4, arch="cnn", spatial=(4, 3), in_dim=2, activation="tanh", sigma_w2=1.6,
                sigma_b2=0.05, init="delta_orthogonal", dtype="float64")


def test_segment_length_is_the_divisor_nearest_sqrt_depth():
    # Divisors by hand: 12 → {3, 4} around 3.46 (4 is nearer); 1000 → {25, 40} around 31.6; 10000 → 100; 7 → 1.
    assert [segment_length(d) for d in (12, 16, 1000, 10000, 7, 1)] == [3, 4, 25, 100, 1, 1]


@pytest.mark.parametrize("cfg", [CNN, NetConfig(depth=12, width=8, arch="rnn", in_dim=3, dtype="float64")],
                         ids=lambda c: c.arch)
def test_segmented_walk_equals_the_stored_walk(cfg):
    # Float64: the segmented walk renormalizes the unit cotangent once per segment, nothing else differs.
    key = jax.random.key(3)
    params = init_params(cfg, key)
    x = jax.random.normal(jax.random.key(1), input_shape(cfg, 3), jnp.float64)
    t = jax.random.normal(jax.random.key(2), (3, cfg.out_dim), jnp.float64)
    norms = jax.jit(grad_norms, static_argnames=("loss", "segment"))
    want = norms(cfg, params, x, t)
    got = norms(cfg, params, x, t, segment=4)
    for name in ("hidden", "weights", "biases", "input", "loss"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12, atol=1e-12, err_msg=name)
    if cfg.arch != "rnn":  # the rnn's one shared block has no per-block key
        keyed = norms(cfg, keyed_params(cfg, key, params), x, t, segment=3)
        np.testing.assert_allclose(keyed.hidden, want.hidden, rtol=1e-12, atol=1e-12)


def test_checkpointed_forward_and_its_gradient_equal_the_plain_ones():
    params = init_params(CNN, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), input_shape(CNN, 2), jnp.float64)
    f = lambda p, seg: jnp.sum(forward(CNN, p, x, segment=seg) ** 2)  # noqa: E731
    grad = jax.jit(jax.value_and_grad(f), static_argnums=1)
    (y_plain, g_plain), (y_seg, g_seg) = grad(params, None), grad(params, 3)
    np.testing.assert_allclose(y_seg, y_plain, rtol=1e-13)
    for a, b in zip(jax.tree.leaves(g_seg), jax.tree.leaves(g_plain)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_segment_must_divide_the_depth():
    params = init_params(CNN, jax.random.key(0))
    x = jnp.zeros(input_shape(CNN, 1))
    with pytest.raises(ValueError, match="segment must be a positive int dividing depth=12, got 5"):
        grad_norms(CNN, params, x, jnp.zeros((1, 1)), segment=5)
    with pytest.raises(ValueError, match="segment must be a positive int dividing depth=12, got 0"):
        forward(CNN, params, x, segment=0)
    with pytest.raises(ValueError, match="segment must be a positive int dividing depth=12, got 5"):
        gradient_profile(CNN, seeds=1, segment=5)
    with pytest.raises(ValueError, match="weights='regenerated' needs arch"):
        gradient_profile(NetConfig(depth=2, width=4, arch="rnn"), seeds=1, weights="regenerated")


def _held_bytes(cfg: NetConfig, segment, weights: str) -> int:
    """XLA's compiled memory (arguments + temporaries) of one network's gradient profile. Stored: the
    parameters are arguments; regenerated: every parameter but the block kernels, drawn from their keys."""
    x = jnp.zeros(input_shape(cfg, 4), cfg.jnp_dtype)
    t = jnp.zeros((4, cfg.out_dim), cfg.jnp_dtype)
    shapes = jax.eval_shape(lambda k: init_params(cfg, k), jax.random.key(0))
    params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    if weights == "regenerated":
        params["blocks"] = {k: v for k, v in params["blocks"].items() if k != "kernel"}

    def profile(params, key):
        p = keyed_params(cfg, key, params) if weights == "regenerated" else params
        return grad_norms(cfg, p, x, t, segment=segment).hidden

    mem = jax.jit(profile).lower(params, jax.random.key(0)).compile().memory_analysis()
    return mem.argument_size_in_bytes + mem.temp_size_in_bytes


def test_remat_memory_grows_as_sqrt_depth_and_stored_memory_as_depth():
    # Compiled (not run) at depths 16 and 256, 8 channels on 4 × 4 maps, batch 4. Stored walk: the L
    # kernels (9·64 numbers each) and 3L states (4·128 each) grow 16×. Segments of √L with kernels drawn
    # from their keys: L/K + 3K states = 16 → 64 (4× = √16) and one kernel; bound 1.25·√16.
    cfg = NetConfig(depth=16, width=8, arch="cnn", spatial=(4, 4), activation="tanh", sigma_w2=1.6, sigma_b2=0.05,
                    dtype="float32")
    deep = cfg.with_(depth=256)
    stored = _held_bytes(deep, None, "stored") / _held_bytes(cfg, None, "stored")
    remat = _held_bytes(deep, 16, "regenerated") / _held_bytes(cfg, 4, "regenerated")
    assert stored > 12, stored
    assert remat < 1.25 * math.sqrt(16), remat
