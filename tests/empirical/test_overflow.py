"""1,000-layer tanh networks: finite log-norms where 10^±100 overflows, slope = ½·log10 χ₁."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax.config import NetConfig
from gradjax.empirical import grad_norms, growth_rate

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


def _params(cfg, key):
    """Parameters of the 1,000-layer net, the distributions of ``gradjax.nn.init_params``, drawn
    layer by layer under ``lax.map`` with the fast "rbg" generator: 4 GB of kernels without the
    temporaries of one (L, N, N) draw (which peak at several times that)."""
    ks = jax.random.split(key, 5)
    n, L = cfg.width, cfg.depth
    scale = math.sqrt(cfg.sigma_w2 / n)
    draw = jax.jit(lambda k: jax.lax.map(lambda kk: jax.random.normal(kk, (n, n)) * scale, jax.random.split(k, L)))
    return {
        "embed": {"kernel": jax.random.normal(ks[0], (cfg.in_dim, n)) / math.sqrt(cfg.in_dim), "bias": jnp.zeros((n,))},
        "blocks": {
            "kernel": draw(ks[1]),
            "bias": jax.random.normal(ks[2], (L, n)) * math.sqrt(cfg.sigma_b2),
        },
        "readout": {"kernel": jax.random.normal(ks[3], (n, cfg.out_dim)) / math.sqrt(n), "bias": jnp.zeros((cfg.out_dim,))},
    }


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
    params = _params(cfg, jax.random.key(0, impl="rbg"))
    kx, kt = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (4, cfg.in_dim))
    t = jax.random.normal(kt, (4, cfg.out_dim))
    g = jax.jit(grad_norms, static_argnums=(0, 4))(cfg, params, x, t, projection_loss)
    del params
    assert bool(jnp.all(jnp.isfinite(g.hidden))) and bool(jnp.all(jnp.isfinite(g.weights)))
    span = float(g.hidden[0] - g.hidden[-1])
    assert abs(span) > 40  # the profile spans more than float32's whole range (1e-38 … 3e38)
    want = 0.5 * math.log10(chi1_tanh(sigma_w2, 0.3))
    got = float(growth_rate(g.hidden.astype(jnp.float64), start=100, stop=990))
    assert abs(got - want) <= 0.05 * abs(want), (got, want)
