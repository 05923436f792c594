"""Any NNX module: a hand-written tanh MLP against the zoo's NetConfig MLP with the same weights,
against naive jax.grad with perturbations written here, seed k against a single run, and failures."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gradjax import empirical
from gradjax.config import NetConfig
from gradjax.empirical.model import (layer_paths, model_activation_stats, model_c_profile, model_grad_norms,
                                     model_gradient_profile, model_jacobian_spectral_density,
                                     model_jacobian_spectrum, model_q_profile)
from gradjax.nn.stack import init_params

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


CFG = NetConfig(arch="mlp", depth=4, width=12, in_dim=6, out_dim=3, activation="tanh", sigma_w2=1.5, sigma_b2=0.1)
SEEDS = [0, 3, 5]
# float32 agreement of two computations of the same quantity (zoo: blockwise log-scaled walk; model:
# plain autodiff), each a handful of float32 roundings per layer over L = 4 layers: 1e-5 (issue target),
# ~100 ulps of the O(1) log10 values compared.
ATOL32 = 1e-5


class HandMLP(nnx.Module):
    """The zoo's mlp written by hand: h_0 = x W_e + b_e, h_l = tanh(h_{l−1}) W_l + b_l, y = tanh(h_L) W_o + b_o."""

    def __init__(self, sizes, *, rngs: nnx.Rngs):
        d_in, n, depth, d_out = sizes
        self.embed = nnx.Linear(d_in, n, rngs=rngs)
        self.blocks = nnx.List([nnx.Linear(n, n, rngs=rngs) for _ in range(depth)])
        self.readout = nnx.Linear(n, d_out, rngs=rngs)

    def __call__(self, x):
        h = self.embed(x)
        for block in self.blocks:
            h = block(jnp.tanh(h))
        return self.readout(jnp.tanh(h))


def zoo_weights_mlp(rngs: nnx.Rngs) -> HandMLP:
    """A HandMLP holding the zoo's parameters for the key of ``rngs`` (init_params(CFG, key))."""
    key = rngs.default.key[...]
    p = init_params(CFG, key)
    m = HandMLP((CFG.in_dim, CFG.width, CFG.depth, CFG.out_dim), rngs=nnx.Rngs(0))
    m.embed.kernel[...], m.embed.bias[...] = p["embed"]["kernel"], p["embed"]["bias"]
    for l, b in enumerate(m.blocks):
        b.kernel[...], b.bias[...] = p["blocks"]["kernel"][l], p["blocks"]["bias"][l]
    m.readout.kernel[...], m.readout.bias[...] = p["readout"]["kernel"], p["readout"]["bias"]
    return m


def is_block(path) -> bool:
    return path[0] == "blocks"


def is_state(path) -> bool:
    return path[0] in ("embed", "blocks")


def _data(batch=8):
    x = jax.random.normal(jax.random.key(11), (batch, CFG.in_dim), jnp.float32)
    t = jax.random.normal(jax.random.key(12), (batch, CFG.out_dim), jnp.float32)
    return x, t


def test_layer_paths_default_selection_in_call_order():
    x, _ = _data()
    assert layer_paths(zoo_weights_mlp, x) == ("embed", "blocks/0", "blocks/1", "blocks/2", "blocks/3", "readout")
    assert layer_paths(zoo_weights_mlp, x, is_block) == ("blocks/0", "blocks/1", "blocks/2", "blocks/3")


def test_hand_written_mlp_gradient_profile_matches_zoo():
    x, t = _data()
    zoo = empirical.gradient_profile(CFG, SEEDS, inputs=x, targets=t, loss="mse")
    got = model_gradient_profile(zoo_weights_mlp, SEEDS, x, t, "mse", layers=is_block)
    np.testing.assert_allclose(got.hidden, zoo.hidden, atol=ATOL32)
    np.testing.assert_allclose(got.weights, zoo.weights, atol=ATOL32)
    np.testing.assert_allclose(got.biases, zoo.biases, atol=ATOL32)
    np.testing.assert_allclose(got.loss, zoo.loss, rtol=ATOL32)
    # the dispatching public form takes the factory in place of the config
    same = empirical.gradient_profile(zoo_weights_mlp, SEEDS, x, t, "mse", layers=is_block)
    np.testing.assert_array_equal(same.hidden, got.hidden)


def test_hand_written_mlp_activation_statistics_and_q_match_zoo():
    x, _ = _data()
    zoo = empirical.activation_stats(CFG, SEEDS, inputs=x)
    # zoo block l's statistics are those of φ(h_{l−1}): the taps embed, blocks 0..L−2 under tanh
    prev = lambda path: path == ("embed",) or (len(path) == 2 and path[0] == "blocks" and path[1] < CFG.depth - 1)  # noqa: E731
    got = model_activation_stats(zoo_weights_mlp, SEEDS, x, layers=prev, activation="tanh")
    for name in ("mean", "std", "saturation"):
        np.testing.assert_allclose(getattr(got, name), getattr(zoo, name), atol=ATOL32, err_msg=name)
    assert np.all(np.isnan(got.dead))  # tanh is not a rectifier
    np.testing.assert_allclose(model_q_profile(zoo_weights_mlp, SEEDS, x, layers=is_block),
                               empirical.q_profile(CFG, SEEDS, inputs=x), rtol=ATOL32)


def test_hand_written_mlp_jacobian_singular_values_match_zoo():
    x, _ = _data(batch=1)
    zoo = np.asarray(empirical.jacobian_spectrum(CFG, SEEDS, inputs=x, method="svd"))  # (S, L, N), l = 0..L−1
    got = np.asarray(model_jacobian_spectrum(zoo_weights_mlp, SEEDS, x, is_state, method="svd"))
    # compare singular values (linear) relative to the largest one of each Jacobian: float32 svd resolves ε·σ_max
    z, g = 10.0 ** zoo, 10.0 ** got
    np.testing.assert_allclose(g / z[..., :1], z / z[..., :1], atol=ATOL32)


def _naive_norms(m: HandMLP, x, t):
    """log10 ‖∂loss/∂h_l‖ for l = 1..L and ‖∂loss/∂W_l‖ by jax.grad with perturbations added by hand."""
    def loss(eps, kernels):
        h = m.embed(x)
        for block, e, kern in zip(m.blocks, eps, kernels):
            h = jnp.tanh(h) @ kern + block.bias[...][None, :] + e
        return 0.5 * jnp.mean(jnp.sum((m.readout(jnp.tanh(h)) - t) ** 2, axis=-1))

    eps = [jnp.zeros((x.shape[0], CFG.width), jnp.float32) for _ in range(CFG.depth)]
    g_eps, g_k = jax.grad(loss, argnums=(0, 1))(eps, [b.kernel[...] for b in m.blocks])
    return (np.log10([np.linalg.norm(np.asarray(g, np.float64)) for g in g_eps]),
            np.log10([np.linalg.norm(np.asarray(g, np.float64)) for g in g_k]))


def test_per_layer_gradient_norms_match_naive_jax_grad():
    x, t = _data()
    m = zoo_weights_mlp(nnx.Rngs(jax.random.key(2)))
    got = model_grad_norms(m, x, t, "mse", is_block)
    hidden, weights = _naive_norms(m, x, t)
    np.testing.assert_allclose(got.hidden, hidden, atol=ATOL32)
    np.testing.assert_allclose(got.weights, weights, atol=ATOL32)


def _random_mlp(rngs: nnx.Rngs) -> HandMLP:
    return HandMLP((5, 8, 3, 2), rngs=rngs)


def test_seed_k_equals_a_single_run_on_make_model_rngs_k():
    x = jax.random.normal(jax.random.key(1), (6, 5), jnp.float32)
    t = jax.random.normal(jax.random.key(2), (6, 2), jnp.float32)
    many = model_gradient_profile(_random_mlp, [4, 1, 7], x, t, seed_batch=1)
    for i, k in enumerate([4, 1, 7]):
        one = jax.jit(lambda: model_grad_norms(_random_mlp(nnx.Rngs(k)), x, t))()
        # the same parameters and arithmetic; XLA may fuse the two programs differently: a few float32 ulps.
        # The layers are a chain, so the values are log-scaled sums of per-layer log10 factors of O(1):
        # their last-bit differences are absolute (a few ulps of 1, ~2e-7), also where the sum is near 0.
        np.testing.assert_allclose(many.hidden[i], one.hidden, rtol=4e-7, atol=2.4e-7)
        np.testing.assert_allclose(many.weights[i], one.weights, rtol=4e-7, atol=2.4e-7)


class SqrtGate(nnx.Module):
    """Scales its input by √s with s ~ N(0, 1) drawn per seed: nan exactly for the seeds with s < 0."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.lin = nnx.Linear(5, 4, rngs=rngs)
        self.s = nnx.Param(jax.random.normal(rngs.params(), ()))
        self.out = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.sqrt(self.s[...]) * self.lin(x))


def test_nan_in_one_seed_stays_in_that_seed():
    x = jax.random.normal(jax.random.key(1), (4, 5), jnp.float32)
    seeds = list(range(6))
    make = lambda rngs: SqrtGate(rngs=rngs)  # noqa: E731
    s = np.array([float(make(nnx.Rngs(k)).s[...]) for k in seeds])
    assert (s < 0).any() and (s > 0).any()  # the fixture has both kinds of seeds
    g = model_gradient_profile(make, seeds, x)
    bad = np.isnan(np.asarray(g.hidden[:, 0]))
    np.testing.assert_array_equal(bad, s < 0)
    assert np.all(np.isfinite(np.asarray(g.hidden)[s > 0]))


class WithSpare(nnx.Module):
    """A linear layer that the forward pass never calls."""

    def __init__(self, rngs: nnx.Rngs):
        self.used = nnx.Linear(5, 2, rngs=rngs)
        self.spare = nnx.Linear(5, 2, rngs=rngs)

    def __call__(self, x):
        return self.used(x)


def test_failures_get_clear_errors():
    x = jnp.ones((4, 5), jnp.float32)
    with pytest.raises(ValueError, match=r"inputs of shape \(4, 7\).*do not run through"):
        model_gradient_profile(_random_mlp, 2, jnp.ones((4, 7), jnp.float32))
    with pytest.raises(ValueError, match=r"matches none of the model's modules: .*embed \(Linear\)"):
        model_gradient_profile(_random_mlp, 2, x, layers=nnx.Conv)
    with pytest.raises(ValueError, match="calls none of them"):
        model_q_profile(WithSpare, 2, x, layers=lambda path: path == ("spare",))
    with pytest.raises(TypeError, match="layers must be"):
        model_q_profile(_random_mlp, 2, x, layers=3)
    with pytest.raises(ValueError, match="inputs is required"):
        model_q_profile(_random_mlp, 2)
    with pytest.raises(ValueError, match="real-valued inputs"):
        model_c_profile(_random_mlp, 2, inputs=jnp.ones((4, 5), jnp.int32))


def test_matrix_free_jacobian_spectra_match_exact():
    x = jax.random.normal(jax.random.key(1), (1, 5), jnp.float64)
    exact = np.asarray(model_jacobian_spectrum(_random_mlp, 2, x, method="svd", dtype="float64"))
    top = np.asarray(model_jacobian_spectrum(_random_mlp, 2, x, method="lanczos", dtype="float64", k=8))
    # hidden layers 8 wide, output 2: full Krylov space (k = 8 ≥ rank) gives the exact top values
    np.testing.assert_allclose(top[..., :2], exact[..., :2], atol=1e-8)
    q = model_jacobian_spectral_density(_random_mlp, 2, x, dtype="float64", k=8, probes=3)
    np.testing.assert_allclose(np.asarray(q.weights).sum(-1), 1.0, rtol=1e-10)
    assert q.log10_sv.shape == (2, 4, 3 * 8)


def test_c_profile_of_identical_inputs_is_one():
    x = jnp.ones((4, 5), jnp.float64)
    c = np.asarray(model_c_profile(_random_mlp, 2, 1.0, inputs=x))
    np.testing.assert_allclose(c, 1.0, rtol=1e-6)  # c0 = 1: the two inputs are equal, every layer's c is 1
