import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax.config import NetConfig
from gradjax.empirical import activation_stats, c_profile, q_profile
from gradjax.empirical._seeds import data_key, default_inputs
from gradjax.empirical.activations import correlated_inputs
from gradjax.nn.stack import forward, init_params

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py

_init = jax.jit(init_params, static_argnums=0)  # compiled draws, as inside the measurements


def test_q_profile_and_stats_match_direct_forward_taps():
    # Independent computation in the test: nn.forward's taps, means taken here.
    cfg = NetConfig(depth=4, width=16, arch="resmlp", activation="tanh", sigma_w2=3.0, sigma_b2=0.1)
    q = q_profile(cfg, seeds=3, batch=8)
    st = activation_stats(cfg, seeds=3, batch=8)
    k = jax.random.key(2)
    _, taps = forward(cfg, _init(cfg, k), default_inputs(cfg, k, 8), taps=True)
    np.testing.assert_allclose(q[2], jnp.mean(taps.hidden**2, axis=(1, 2)), rtol=1e-5)
    a = jnp.tanh(taps.preact)
    np.testing.assert_allclose(st.mean[2], jnp.mean(a, axis=(1, 2)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(st.std[2], jnp.std(a, axis=(1, 2)), rtol=1e-5)
    # tanh' = 1 − tanh² < 1e-2  ⇔  |tanh| > √0.99
    np.testing.assert_allclose(st.saturation[2], jnp.mean(jnp.abs(a) > jnp.sqrt(0.99), axis=(1, 2)), atol=1e-7)
    assert bool(jnp.all(jnp.isnan(st.dead)))  # tanh is not a rectifier


def test_dead_units_of_relu_match_direct_count():
    cfg = NetConfig(depth=3, width=32, activation="relu", sigma_w2=2.0, sigma_b2=0.5)
    st = activation_stats(cfg, seeds=2, batch=8)
    k = jax.random.key(1)
    _, taps = forward(cfg, _init(cfg, k), default_inputs(cfg, k, 8), taps=True)
    np.testing.assert_allclose(st.dead[1], jnp.mean(jnp.all(taps.preact <= 0, axis=1), axis=-1))
    assert bool(jnp.all(jnp.isnan(st.saturation)))


def test_relu_q_profile_follows_length_map():
    # Closed form (Poole et al. 2016, arXiv:1606.05340; ReLU): q_l = σ_w² q_{l-1}/2 + σ_b², q_0 = mean x² ≈ 1.
    # Width 512, 8 seeds, batch 32: the seed-mean of q_l within 10%.
    cfg = NetConfig(depth=5, width=512, activation="relu", sigma_w2=1.6, sigma_b2=0.2)
    q = np.asarray(jnp.mean(q_profile(cfg, seeds=8, batch=32), axis=0))
    want, ql = [], 1.0
    for _ in range(cfg.depth):
        ql = cfg.sigma_w2 * ql / 2 + cfg.sigma_b2
        want.append(ql)
    np.testing.assert_allclose(q, want, rtol=0.1)


def test_c_profile_matches_direct_correlation_and_c0_limits():
    cfg = NetConfig(depth=3, width=64, activation="tanh", sigma_w2=1.5)
    c = c_profile(cfg, seeds=2, c0=0.3, pairs=4)
    k = jax.random.key(1)
    x1, x2 = correlated_inputs(cfg, jax.random.fold_in(data_key(k), 3), 4, 0.3)
    p = _init(cfg, k)
    h1 = forward(cfg, p, x1, taps=True)[1].hidden
    h2 = forward(cfg, p, x2, taps=True)[1].hidden
    direct = jnp.mean(jnp.sum(h1 * h2, -1) / jnp.sqrt(jnp.sum(h1**2, -1) * jnp.sum(h2**2, -1)), axis=-1)
    np.testing.assert_allclose(c[1], direct, rtol=1e-5)
    # c0 = 1: identical inputs stay perfectly correlated at every layer.
    np.testing.assert_allclose(c_profile(cfg, seeds=1, c0=1.0, pairs=2), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="c0"):
        c_profile(cfg, seeds=1, c0=1.5)
