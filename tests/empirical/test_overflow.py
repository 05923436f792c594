"""1,000-layer tanh networks: finite log-norms where 10^±100 overflows, slope = ½·log10 χ₁.

The 1,000 kernels of width 1024 (4.2 GB in float32) never exist at once: the library's forward step
and log-scaled backward walk visit 100 layers at a time, each chunk's kernels drawn from their
per-layer keys when needed (and again on the way back), so a test stays under 1 GB.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from functools import partial

from gradjax.config import NetConfig
from gradjax.empirical import grad_norms, growth_rate
from gradjax.empirical.propagate import Forward, backward_walk, loss_cotangent, normalize
from gradjax.nn.stack import step, unroll

# Gauss–Hermite nodes for E_z[f(z)], z ~ N(0, 1): 101 nodes integrate the smooth tanh integrands
# below to ~1e-12 at the q values met here (q* < 10).
_Z, _W = np.polynomial.hermite_e.hermegauss(101)
_W = _W / _W.sum()


def gauss(f):
    return float(np.sum(_W * f(_Z)))


def chi1_tanh(sigma_w2, sigma_b2, q0=1.0, iters=2000):
    """χ₁ = σ_w² E[φ'(√q* z)²] at the fixed point q* of q ← σ_w² E[φ(√q z)²] + σ_b²
    (Schoenholz et al. 2017, arXiv:1611.01232, Eqs. 3 and 5), by quadrature in the test."""
    q = q0
    for _ in range(iters):
        q = sigma_w2 * gauss(lambda z: np.tanh(np.sqrt(q) * z) ** 2) + sigma_b2
    return sigma_w2 * gauss(lambda z: 1.0 / np.cosh(np.sqrt(q) * z) ** 4)


_CHUNK = 100  # layers whose kernels exist at once: 100 × 1024² float32 = 0.4 GB (all 1,000 would be 4.2 GB)


def _small_params(cfg, key):
    """Everything but the block kernels, the distributions of ``gradjax.nn.init_params``, and the
    (L,) keys the kernels are drawn from (``_kernels``)."""
    ks = jax.random.split(key, 5)
    n, L, dt = cfg.width, cfg.depth, cfg.jnp_dtype
    small = {
        "embed": {"kernel": jax.random.normal(ks[0], (cfg.in_dim, n), dt) / math.sqrt(cfg.in_dim), "bias": jnp.zeros((n,), dt)},
        "bias": jax.random.normal(ks[2], (L, n), dt) * math.sqrt(cfg.sigma_b2),
        "readout": {"kernel": jax.random.normal(ks[3], (n, cfg.out_dim), dt) / math.sqrt(n),
                    "bias": jnp.zeros((cfg.out_dim,), dt)},
    }
    return small, jax.random.split(ks[1], L)


def _kernels(cfg, layer_keys):
    """The kernels W_l ~ N(0, σ_w²/N) of the layers whose keys are given: (C, N, N) in the network's
    dtype, each from its own key."""
    scale = math.sqrt(cfg.sigma_w2 / cfg.width)
    return jax.lax.map(lambda kk: jax.random.normal(kk, (cfg.width, cfg.width), cfg.jnp_dtype) * scale, layer_keys)


@partial(jax.jit, static_argnums=0)
def _forward_chunk(cfg, h, layer_keys, bias):
    """The library's forward step over one chunk of layers from state ``h``: (hidden, preact), each (C, B, N)."""
    blocks = {"kernel": _kernels(cfg, layer_keys), "bias": bias}
    return jax.lax.scan(lambda h_, p: (lambda o: (o[0], o))(step(cfg, {}, p, h_)), h, blocks)[1]


@partial(jax.jit, static_argnums=0)
def _backward_chunk(cfg, h0, hidden, preact, layer_keys, bias, u):
    """The library's log-scaled backward walk over one chunk, kernels drawn again from their keys."""
    blocks = {"kernel": _kernels(cfg, layer_keys), "bias": bias}
    return backward_walk(cfg, {}, Forward(h0, blocks, hidden, preact), u, param_norms=True)


def chunked_grad_norms(cfg, small, layer_keys, x, t, loss, chunk=_CHUNK):
    """``gradjax.empirical.grad_norms`` (the same forward taps, loss cotangent and log-scaled
    backward walk) with the blocks visited ``chunk`` layers at a time, each chunk's kernels drawn
    from their keys when needed: O(chunk·N²) memory instead of O(L·N²). Returns
    (log10 ‖δ_l‖ (L,), log10 ‖∂/∂W_l‖ (L,))."""
    params = {"embed": small["embed"], "readout": small["readout"], "blocks": None}
    h, _ = unroll(cfg, params, x)
    spans = [(lo, min(lo + chunk, cfg.depth)) for lo in range(0, cfg.depth, chunk)]
    starts, taps = [], []
    for lo, hi in spans:
        starts.append(h)
        hidden, preact = _forward_chunk(cfg, h, layer_keys[lo:hi], small["bias"][lo:hi])
        taps.append((hidden, preact))
        h = hidden[-1]
    _, g_L = loss_cotangent(cfg, params, h, t, loss)
    u, s = normalize(g_L)
    log_h, log_w = [], []
    for (lo, hi), h0, (hidden, preact) in reversed(list(zip(spans, starts, taps))):
        walk = _backward_chunk(cfg, h0, hidden, preact, layer_keys[lo:hi], small["bias"][lo:hi], u)
        log_h.insert(0, walk.log_out + s)
        log_w.insert(0, walk.log_params["kernel"] + s)
        u, s = walk.u0, s + walk.log0
    return jnp.concatenate(log_h), jnp.concatenate(log_w)


def projection_loss(y, t):
    """⟨y, t⟩ / B: an output cotangent independent of the network, the setting of the mean-field δ recursion."""
    return jnp.sum(y * t) / y.shape[0]


@pytest.mark.slow
@pytest.mark.parametrize("sigma_w2", [4.0, 0.5], ids=["exploding", "vanishing"])
def test_thousand_layer_tanh_is_finite_and_grows_by_sqrt_chi1(sigma_w2):
    # Width 1024, ONE seed, batch 4, float32, 1,000 layers, σ_b² = 0.3. The slope is fitted over
    # layers 100..990 (after the transient of q_l from q_0 = 1 to q*, before the readout). The
    # total change (~10^±100) is far outside float32 (1e±38). Tolerance 5% (the bound;
    # the finite-width drift of E log‖δ‖ is ≈ 3% at N = 1024, measured in the issue).
    cfg = NetConfig(depth=1000, width=1024, activation="tanh", sigma_w2=sigma_w2, sigma_b2=0.3)
    small, layer_keys = _small_params(cfg, jax.random.key(0, impl="rbg"))
    kx, kt = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (4, cfg.in_dim), cfg.jnp_dtype)
    t = jax.random.normal(kt, (4, cfg.out_dim), cfg.jnp_dtype)
    hidden, weights = chunked_grad_norms(cfg, small, layer_keys, x, t, projection_loss)
    assert bool(jnp.all(jnp.isfinite(hidden))) and bool(jnp.all(jnp.isfinite(weights)))
    span = float(hidden[0] - hidden[-1])
    assert abs(span) > 40  # the profile spans more than float32's whole range (1e-38 … 3e38)
    want = 0.5 * math.log10(chi1_tanh(sigma_w2, 0.3))
    got = float(growth_rate(hidden.astype(jnp.float64), start=100, stop=990))
    assert abs(got - want) <= 0.05 * abs(want), (got, want)


def test_chunked_walk_is_grad_norms():
    # The chunked walk above against the library's one-sweep grad_norms on the same stored weights
    # (depth 10, width 32, float32; chunks of 3, 3, 3, 1 layers): only the split of the log-scale between chunks differs, a
    # rounding of ~1e-7 relative per chunk boundary in log10 units.
    cfg = NetConfig(depth=10, width=32, activation="tanh", sigma_w2=4.0, sigma_b2=0.3)
    small, layer_keys = _small_params(cfg, jax.random.key(0, impl="rbg"))
    blocks = {"kernel": _kernels(cfg, layer_keys), "bias": small["bias"]}
    params = {"embed": small["embed"], "blocks": blocks, "readout": small["readout"]}
    x = jax.random.normal(jax.random.key(1), (4, cfg.in_dim), cfg.jnp_dtype)
    t = jax.random.normal(jax.random.key(2), (4, cfg.out_dim), cfg.jnp_dtype)
    want = grad_norms(cfg, params, x, t, projection_loss)
    hidden, weights = chunked_grad_norms(cfg, small, layer_keys, x, t, projection_loss, chunk=3)
    np.testing.assert_allclose(hidden, want.hidden, rtol=0, atol=1e-5)
    np.testing.assert_allclose(weights, want.weights, rtol=0, atol=1e-5)


def test_a_non_finite_tensor_is_a_failure_not_a_vanished_gradient():
    # A diverged seed's cotangent holds nan (or inf): its log-norm must be nan (recorded as failed),
    # not −inf (which reads as a vanished gradient); an all-zero tensor stays −inf.
    g = jnp.ones((3, 4))
    for bad in (jnp.nan, jnp.inf):
        unit, log = normalize(g.at[1, 2].set(bad))
        assert bool(jnp.isnan(log)), (bad, log)
    assert float(normalize(jnp.zeros((3, 4)))[1]) == -math.inf
    np.testing.assert_allclose(float(normalize(g)[1]), math.log10(math.sqrt(12.0)), rtol=1e-6)
