"""1,000-layer tanh networks: finite log-norms where 10^±100 overflows, slope = ½·log10 χ₁.

The 1,000 kernels of width 1024 (4.2 GB in float32) never exist at once: the library's forward step
and log-scaled backward walk visit 25 layers at a time, each chunk's kernels drawn from their
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


# Layers whose kernels exist at once: 25 unit draws (25 × 1024² float32 = 0.1 GB) and their scaled
# copies for the two σ_w² walked together (0.2 GB); all 1,000 layers would be 4.2 GB per network.
_CHUNK = 25


def _small_params(cfg, key):
    """Everything but the block kernels, the distributions of ``gradjax.nn.init_params``, and the
    (L,) keys the kernels are drawn from (``_unit_kernels``)."""
    ks = jax.random.split(key, 5)
    n, L, dt = cfg.width, cfg.depth, cfg.jnp_dtype
    small = {
        "embed": {"kernel": jax.random.normal(ks[0], (cfg.in_dim, n), dt) / math.sqrt(cfg.in_dim), "bias": jnp.zeros((n,), dt)},
        "bias": jax.random.normal(ks[2], (L, n), dt) * math.sqrt(cfg.sigma_b2),
        "readout": {"kernel": jax.random.normal(ks[3], (n, cfg.out_dim), dt) / math.sqrt(n),
                    "bias": jnp.zeros((cfg.out_dim,), dt)},
    }
    return small, jax.random.split(ks[1], L)


def _unit_kernels(cfg, layer_keys):
    """N(0, 1) entries (C, N, N) in the network's dtype for the layers whose keys are given, each
    from its own key; W_l = √(σ_w²/N) · this draw, so networks differing in σ_w² only share it."""
    return jax.lax.map(lambda kk: jax.random.normal(kk, (cfg.width, cfg.width), cfg.jnp_dtype), layer_keys)


def _kernel_scales(cfg, sigma_w2s):
    """(S,) √(σ_w²/N): the standard deviation of a kernel entry, per network."""
    return jnp.sqrt(jnp.asarray(sigma_w2s, cfg.jnp_dtype) / cfg.width)


@partial(jax.jit, static_argnums=0)
def _forward_chunk(cfg, h, layer_keys, bias, scales):
    """The library's forward step over one chunk of layers from states ``h`` (S, B, N), one network
    per kernel scale (S,), the kernels' unit draw shared: (hidden, preact), each (S, C, B, N)."""
    unit = _unit_kernels(cfg, layer_keys)

    def one(h, scale):
        def layer(h_, p):  # W_l = scale · unit draw, formed one layer at a time
            out = step(cfg, {}, {"kernel": p["kernel"] * scale, "bias": p["bias"]}, h_)
            return out[0], out

        return jax.lax.scan(layer, h, {"kernel": unit, "bias": bias})[1]

    return jax.vmap(one)(h, scales)


@partial(jax.jit, static_argnums=0)
def _backward_chunk(cfg, h0, hidden, preact, layer_keys, bias, u, scales):
    """The library's log-scaled backward walk over one chunk per network (leading axis S), kernels
    drawn again from their keys."""
    unit = _unit_kernels(cfg, layer_keys)

    def one(h0, hidden, preact, u, scale):
        blocks = {"kernel": unit * scale, "bias": bias}
        return backward_walk(cfg, {}, Forward(h0, blocks, hidden, preact), u, param_norms=True)

    return jax.vmap(one)(h0, hidden, preact, u, scales)


def chunked_grad_norms(cfg, small, layer_keys, x, t, loss, sigma_w2s, chunk=_CHUNK):
    """``gradjax.empirical.grad_norms`` (the same forward taps, loss cotangent and log-scaled
    backward walk) of the networks with weight variances ``sigma_w2s`` (S,) and otherwise the same
    parameters, with the blocks visited ``chunk`` layers at a time, each chunk's kernels drawn from
    their keys when needed (once for all S networks): O(chunk·N²) memory instead of O(L·N²).
    Returns (log10 ‖δ_l‖ (S, L), log10 ‖∂/∂W_l‖ (S, L))."""
    params = {"embed": small["embed"], "readout": small["readout"], "blocks": None}
    scales = _kernel_scales(cfg, sigma_w2s)
    h0, _ = unroll(cfg, params, x)
    h = jnp.broadcast_to(h0, scales.shape + h0.shape)
    spans = [(lo, min(lo + chunk, cfg.depth)) for lo in range(0, cfg.depth, chunk)]
    starts, taps = [], []
    for lo, hi in spans:
        starts.append(h)
        hidden, preact = _forward_chunk(cfg, h, layer_keys[lo:hi], small["bias"][lo:hi], scales)
        taps.append((hidden, preact))
        h = hidden[:, -1]
    _, g_L = jax.vmap(lambda h_: loss_cotangent(cfg, params, h_, t, loss))(h)
    u, s = jax.vmap(normalize)(g_L)
    log_h, log_w = [], []
    for (lo, hi), h0, (hidden, preact) in reversed(list(zip(spans, starts, taps))):
        walk = _backward_chunk(cfg, h0, hidden, preact, layer_keys[lo:hi], small["bias"][lo:hi], u, scales)
        log_h.insert(0, walk.log_out + s[:, None])
        log_w.insert(0, walk.log_params["kernel"] + s[:, None])
        u, s = walk.u0, s + walk.log0
    return jnp.concatenate(log_h, axis=1), jnp.concatenate(log_w, axis=1)


def projection_loss(y, t):
    """⟨y, t⟩ / B: an output cotangent independent of the network, the setting of the mean-field δ recursion."""
    return jnp.sum(y * t) / y.shape[0]


@pytest.mark.slow
def test_thousand_layer_tanh_is_finite_and_grows_by_sqrt_chi1():
    # Width 1024, ONE seed, batch 4, float32, 1,000 layers, σ_b² = 0.3, at σ_w² = 4 (exploding) and
    # 0.5 (vanishing): two networks whose kernels are the same unit draws scaled by √(σ_w²/N) (drawn
    # once per chunk for both: the draws are most of the run time). The slope is fitted over
    # layers 100..990 (after the transient of q_l from q_0 = 1 to q*, before the readout). The
    # total change (~10^±100) is far outside float32 (1e±38). Tolerance 5% (the bound;
    # the finite-width drift of E log‖δ‖ is ≈ 3% at N = 1024, measured in the issue).
    sigma_w2s = (4.0, 0.5)
    cfg = NetConfig(depth=1000, width=1024, activation="tanh", sigma_b2=0.3)
    small, layer_keys = _small_params(cfg, jax.random.key(0, impl="rbg"))
    kx, kt = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (4, cfg.in_dim), cfg.jnp_dtype)
    t = jax.random.normal(kt, (4, cfg.out_dim), cfg.jnp_dtype)
    hidden, weights = chunked_grad_norms(cfg, small, layer_keys, x, t, projection_loss, sigma_w2s)
    for i, sigma_w2 in enumerate(sigma_w2s):
        assert bool(jnp.all(jnp.isfinite(hidden[i]))) and bool(jnp.all(jnp.isfinite(weights[i]))), sigma_w2
        span = float(hidden[i, 0] - hidden[i, -1])
        assert abs(span) > 40, (sigma_w2, span)  # the profile spans more than float32's whole range (1e-38 … 3e38)
        want = 0.5 * math.log10(chi1_tanh(sigma_w2, 0.3))
        got = float(growth_rate(hidden[i].astype(jnp.float64), start=100, stop=990))
        assert abs(got - want) <= 0.05 * abs(want), (sigma_w2, got, want)


def test_chunked_walk_is_grad_norms():
    # The chunked walk above against the library's one-sweep grad_norms on the same stored weights
    # (depth 10, width 32, float32; chunks of 3, 3, 3, 1 layers): only the split of the log-scale between chunks differs, a
    # rounding of ~1e-7 relative per chunk boundary in log10 units.
    cfg = NetConfig(depth=10, width=32, activation="tanh", sigma_w2=4.0, sigma_b2=0.3)
    small, layer_keys = _small_params(cfg, jax.random.key(0, impl="rbg"))
    blocks = {"kernel": _unit_kernels(cfg, layer_keys) * _kernel_scales(cfg, [cfg.sigma_w2])[0], "bias": small["bias"]}
    params = {"embed": small["embed"], "blocks": blocks, "readout": small["readout"]}
    x = jax.random.normal(jax.random.key(1), (4, cfg.in_dim), cfg.jnp_dtype)
    t = jax.random.normal(jax.random.key(2), (4, cfg.out_dim), cfg.jnp_dtype)
    want = grad_norms(cfg, params, x, t, projection_loss)
    hidden, weights = chunked_grad_norms(cfg, small, layer_keys, x, t, projection_loss, [cfg.sigma_w2], chunk=3)
    np.testing.assert_allclose(hidden[0], want.hidden, rtol=0, atol=1e-5)
    np.testing.assert_allclose(weights[0], want.weights, rtol=0, atol=1e-5)


def test_a_non_finite_tensor_is_a_failure_not_a_vanished_gradient():
    # A diverged seed's cotangent holds nan (or inf): its log-norm must be nan (recorded as failed),
    # not −inf (which reads as a vanished gradient); an all-zero tensor stays −inf.
    g = jnp.ones((3, 4))
    for bad in (jnp.nan, jnp.inf):
        unit, log = normalize(g.at[1, 2].set(bad))
        assert bool(jnp.isnan(log)), (bad, log)
    assert float(normalize(jnp.zeros((3, 4)))[1]) == -math.inf
    np.testing.assert_allclose(float(normalize(g)[1]), math.log10(math.sqrt(12.0)), rtol=1e-6)
