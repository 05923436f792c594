"""Log-scaled cotangents for any NNX module: deep float32 MLPs whose plain-autodiff gradients overflow
or underflow, against a float64 backward recursion written here; equality with plain autodiff where
that is finite; the refusal of taps inside residual branches; the seed vmap and chunking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gradjax.empirical.model import (Chain, _grad_norms, _per_seed_bytes, chain_break, model_grad_norms,
                                     model_gradient_profile, plan_of, plan_taps, split_model)
from gradjax.empirical.losses import loss_fn

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


EPS32 = float(np.finfo(np.float32).eps)


class DeepMLP(nnx.Module):
    """h_0 = x W_0, h_l = φ(h_{l−1}) W_l + b_l (l = 1..L), y = φ(h_L) W_o; φ = tanh or the identity.

    Kernels N(0, σ_w²/fan_in), biases N(0, σ_b²) (none when σ_b² = 0).
    """

    def __init__(self, sizes, sigma_w2, sigma_b2, act, *, rngs: nnx.Rngs):
        d_in, n, depth, d_out = sizes
        kernel = lambda fan_in: nnx.initializers.normal(np.sqrt(sigma_w2 / fan_in))  # noqa: E731
        bias = dict(use_bias=sigma_b2 > 0, bias_init=nnx.initializers.normal(np.sqrt(sigma_b2)))
        self.act = act
        self.embed = nnx.Linear(d_in, n, use_bias=False, kernel_init=kernel(d_in), rngs=rngs)
        self.blocks = nnx.List([nnx.Linear(n, n, kernel_init=kernel(n), **bias, rngs=rngs) for _ in range(depth)])
        self.readout = nnx.Linear(n, d_out, use_bias=False, kernel_init=kernel(n), rngs=rngs)

    def __call__(self, x):
        h = self.embed(x)
        for block in self.blocks:
            h = block(self.act(h))
        return self.readout(self.act(h))


def identity(h):
    return h


def reference_log_norms(m: DeepMLP, x, t) -> np.ndarray:
    """log10 ‖∂loss/∂h‖ at embed, blocks 1..L and readout, loss = ⟨y, t⟩/B, in float64 numpy: the
    backward recursion δ_{l−1} = (δ_l W_lᵀ) ⊙ φ'(h_{l−1}) written out (an independent computation)."""
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    tanh = m.act is jnp.tanh
    dphi = (lambda h: 1.0 - np.tanh(h) ** 2) if tanh else (lambda h: np.ones_like(h))
    phi = np.tanh if tanh else (lambda h: h)
    hs = [f64(x) @ f64(m.embed.kernel[...])]
    for b in m.blocks:
        hs.append(phi(hs[-1]) @ f64(b.kernel[...]) + (f64(b.bias[...]) if b.use_bias else 0.0))
    deltas = [f64(t) / x.shape[0]]  # ∂loss/∂y
    kernels = [f64(b.kernel[...]) for b in m.blocks] + [f64(m.readout.kernel[...])]
    for h, w in zip(hs[::-1], kernels[::-1]):
        deltas.append((deltas[-1] @ w.T) * dphi(h))
    # ‖d‖ = max|d|·‖d/max|d|‖: the sum of squares of entries near 1e-170 would underflow even in float64
    return np.array([np.log10(np.abs(d).max()) + np.log10(np.linalg.norm(d / np.abs(d).max())) for d in deltas[::-1]])


def log_tolerance(depth: int, width: int, top: float) -> float:
    """Worst-case float32 rounding of the log-scaled measurement against exact arithmetic: every layer's
    forward and backward steps (length-N dot products, a tanh, a normalization) are each off by at most
    (N + 4)·ε relative, (2N + 8)·ε/ln 10 in log10 per layer; the running sum of L log-factors of size
    up to |top| decades adds at most L·|top|·ε."""
    return depth * ((2 * width + 8) * EPS32 / np.log(10) + abs(top) * EPS32)


def _data(batch, d_in, d_out, x_scale=1.0):
    x = x_scale * jax.random.normal(jax.random.key(21), (batch, d_in), jnp.float32)
    t = jax.random.normal(jax.random.key(22), (batch, d_out), jnp.float32)
    return x, t


@pytest.mark.parametrize("case", [
    # tanh in the ordered phase (σ_w² = 0.1, σ_b² = 0.05): ‖δ‖ shrinks ≈ 0.5 decades a layer, ~50
    # decades over L = 100, below float32's smallest subnormal (1.4e-45): plain autodiff underflows to 0.
    ("vanishing", (6, 16, 100, 3), 0.1, 0.05, jnp.tanh, 1.0),
    # linear at σ_w² = 16: ‖δ‖ grows ≈ 0.6 decades a layer, ~58 decades over L = 100, above float32's
    # max (3.4e38): plain autodiff overflows. Inputs of 1e-30 keep the forward pass (growing at the same
    # rate) finite.
    ("exploding", (6, 16, 100, 3), 16.0, 0.0, identity, 1e-30),
])
def test_deep_float32_mlp_log_scaled_where_plain_autodiff_fails(case):
    name, sizes, sw2, sb2, act, x_scale = case
    x, t = _data(4, sizes[0], sizes[3], x_scale)
    m = DeepMLP(sizes, sw2, sb2, act, rngs=nnx.Rngs(0))
    plain = np.asarray(model_grad_norms(m, x, t, log_scale=False).hidden)
    got = np.asarray(model_grad_norms(m, x, t).hidden)  # "auto": every Linear of an MLP is a chain
    if name == "vanishing":
        assert np.isneginf(plain[0])  # underflowed to exactly 0
    else:
        assert not np.isfinite(plain[0])  # overflowed to inf (nan after inf − inf)
    ref = reference_log_norms(m, x, t)
    assert abs(ref[0]) > 45  # the fixture lies outside float32's range (the reference is float64)
    np.testing.assert_allclose(got, ref, atol=log_tolerance(sizes[2], sizes[1], ref[0]))


def _small(rngs):
    return DeepMLP((5, 12, 4, 3), 1.5, 0.1, jnp.tanh, rngs=rngs)


@pytest.mark.parametrize("dtype, atol", [
    # float32: two roundings of the same O(1) log10 values over L = 4 layers (as the zoo comparison)
    (jnp.float32, 1e-5),
    # float64: the same, ε = 2.2e-16 instead of 1.2e-7
    (jnp.float64, 1e-12),
])
def test_log_scaled_equals_plain_autodiff_on_a_small_model(dtype, atol):
    x, t = _data(8, 5, 3)
    x, t = x.astype(dtype), t.astype(dtype)
    m = _small(nnx.Rngs(3))
    if dtype == jnp.float64:
        nnx.update(m, jax.tree.map(lambda a: a.astype(dtype), nnx.state(m)))
    plain = model_grad_norms(m, x, t, "mse", log_scale=False)
    log = model_grad_norms(m, x, t, "mse", log_scale=True)
    for field in ("hidden", "weights", "input", "loss"):
        np.testing.assert_allclose(getattr(log, field), getattr(plain, field), atol=atol, err_msg=field)
    # biases: nan at embed and readout (none) in both, equal at the blocks
    np.testing.assert_allclose(log.biases, plain.biases, atol=atol)


class ResBlock(nnx.Module):
    """h + fc2(relu(fc1(h))): a residual block, its Linears inside the branch. relu is a jitted function
    under a custom_jvp, so the chain test inlines one sub-program at every block (each call its own)."""

    def __init__(self, n, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(n, n, rngs=rngs)
        self.fc2 = nnx.Linear(n, n, rngs=rngs)

    def __call__(self, h):
        return h + self.fc2(nnx.relu(self.fc1(h)))


class ResNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.embed = nnx.Linear(5, 8, rngs=rngs)
        self.blocks = nnx.List([ResBlock(8, rngs=rngs) for _ in range(4)])
        self.readout = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.readout(h)


def whole_blocks(path) -> bool:
    return path in (("embed",), ("readout",)) or (path[0] == "blocks" and len(path) == 2)


def test_taps_inside_residual_branches_are_refused_whole_blocks_are_a_chain():
    x, t = _data(6, 5, 2)
    # default selection: every Linear, fc1/fc2 inside the branches; embed's output bypasses fc1 by the skip
    why = chain_break(ResNet, x)
    assert why is not None and why.startswith("embed reaches the model's output") and "blocks/0/fc1" in why
    with pytest.raises(ValueError, match=r"log_scale=True needs the selected layers to form a chain.*layers="):
        model_gradient_profile(ResNet, 2, x, t, log_scale=True)
    m = ResNet(nnx.Rngs(0))
    plain = model_grad_norms(m, x, t, log_scale=False)
    np.testing.assert_array_equal(model_grad_norms(m, x, t).hidden, plain.hidden)  # "auto": plain autodiff
    # the refusal is needed: the same taps log-scaled without the test give other numbers
    unchecked = _grad_norms(*split_model(m), plan_of(m, x), x, t, loss_fn("projection"),
                            Chain(None, frozenset(), False))
    assert np.max(np.abs(np.asarray(unchecked.hidden) - np.asarray(plain.hidden))) > 0.05
    # whole blocks (their outputs after the skip addition) are a chain: log-scaled equals plain
    assert chain_break(ResNet, x, whole_blocks) is None
    log = model_grad_norms(m, x, t, layers=whole_blocks, log_scale=True)
    ref = model_grad_norms(m, x, t, layers=whole_blocks, log_scale=False)
    for field in ("hidden", "weights", "input"):
        np.testing.assert_allclose(getattr(log, field), getattr(ref, field), atol=1e-5, err_msg=field)


class Twice(nnx.Module):
    """One Linear called twice: a chain of taps, but its kernel's gradient mixes both calls."""

    def __init__(self, rngs: nnx.Rngs):
        self.lin = nnx.Linear(6, 6, rngs=rngs)
        self.out = nnx.Linear(6, 2, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.lin(jnp.tanh(self.lin(x)))))


def test_shared_parameter_is_nan_under_log_scale_hidden_still_exact():
    x, t = _data(4, 6, 2)
    m = Twice(nnx.Rngs(1))
    plain = model_grad_norms(m, x, t, log_scale=False)
    log = model_grad_norms(m, x, t, log_scale=True)
    np.testing.assert_allclose(log.hidden, plain.hidden, atol=1e-5)  # lin, lin#2, out
    np.testing.assert_allclose(log.input, plain.input, atol=1e-5)
    w = np.asarray(log.weights)
    assert np.all(np.isnan(w[:2])) and np.all(np.isfinite(np.asarray(plain.weights)))
    np.testing.assert_allclose(w[2], plain.weights[2], atol=1e-5)  # out's kernel: used once


def test_log_scaled_under_seed_vmap_and_chunks_equals_single_runs():
    make = lambda rngs: DeepMLP((6, 8, 6, 3), 0.25, 0.05, jnp.tanh, rngs=rngs)  # noqa: E731
    x, t = _data(4, 6, 3)
    seeds = [5, 0, 2]
    per_seed = _per_seed_bytes(plan_taps(make, x), x)
    runs = [model_gradient_profile(make, seeds, x, t, log_scale=True, seed_batch=3),  # one vmapped group
            # one seed at a time, two seeds a chunk (the last chunk padded)
            model_gradient_profile(make, seeds, x, t, log_scale=True, seed_batch=1, max_bytes=2 * per_seed)]
    for i, k in enumerate(seeds):
        one = model_grad_norms(make(nnx.Rngs(k)), x, t, log_scale=True)
        for r in runs:
            # the same arithmetic, compiled against op by op: a few float32 ulps of O(1…10) log10 values
            np.testing.assert_allclose(r.hidden[i], one.hidden, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(r.weights[i], one.weights, rtol=1e-6, atol=1e-6)


def test_log_scale_argument_is_validated():
    x, t = _data(4, 5, 3)
    with pytest.raises(ValueError, match=r"log_scale must be one of \['auto', True, False\], got 'yes'"):
        model_gradient_profile(_small, 2, x, t, log_scale="yes")


class Looped(nnx.Module):
    """Linear, a fori_loop of three tanh steps (one opaque equation to the chain test), Linear."""

    def __init__(self, rngs: nnx.Rngs):
        self.a = nnx.Linear(5, 6, rngs=rngs)
        self.b = nnx.Linear(6, 3, rngs=rngs)

    def __call__(self, x):
        return self.b(jax.lax.fori_loop(0, 3, lambda i, h: jnp.tanh(h), self.a(x)))


def test_a_loop_between_taps_keeps_the_chain():
    x, t = _data(4, 5, 3)
    assert chain_break(Looped, x) is None
    m = Looped(nnx.Rngs(2))
    log, plain = model_grad_norms(m, x, t, log_scale=True), model_grad_norms(m, x, t, log_scale=False)
    for field in ("hidden", "weights", "biases", "input"):
        np.testing.assert_allclose(getattr(log, field), getattr(plain, field), atol=1e-5, err_msg=field)
