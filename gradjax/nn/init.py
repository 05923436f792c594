"""Weight initializers as a registry of plain functions ``init(key, shape, sigma_w2, dtype) -> W``.

``shape`` is ``(fan_in, fan_out)``; the layer computes ``h @ W``. Every scheme draws i.i.d. entries
(or a scaled orthogonal matrix) with the variance written beside it. :func:`weight_sigma_w2` gives
the *effective* σ_w² = fan_in · Var W of a scheme, the quantity mean-field theory uses.

References:
  Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward neural networks".
  He et al. 2015, "Delving Deep into Rectifiers", arXiv:1502.01852.
  LeCun et al. 1998, "Efficient BackProp".
  Saxe et al. 2013, "Exact solutions to the nonlinear dynamics of learning", arXiv:1312.6120.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from gradjax._validate import check_choice
from gradjax.names import SCALED as SCALED
from gradjax.names import weight_sigma_w2 as weight_sigma_w2

Initializer = Callable[..., jax.Array]


def gaussian(key, shape, sigma_w2, dtype=jnp.float32):
    """W_ij ~ N(0, σ_w²/fan_in)."""
    return jax.random.normal(key, shape, dtype) * jnp.sqrt(sigma_w2 / shape[0]).astype(dtype)


def orthogonal(key, shape, sigma_w2, dtype=jnp.float32):
    """W = σ_w · Q with Q Haar-orthogonal (WᵀW = σ_w² I when fan_in ≥ fan_out)."""
    q = jax.nn.initializers.orthogonal(scale=1.0)(key, shape, jnp.float64 if dtype == jnp.float64 else jnp.float32)
    return (q * jnp.sqrt(sigma_w2)).astype(dtype)


def xavier_normal(key, shape, sigma_w2=None, dtype=jnp.float32):
    """W_ij ~ N(0, 2/(fan_in + fan_out)) (untruncated, so the variance is exactly the formula)."""
    return jax.random.normal(key, shape, dtype) * math.sqrt(2.0 / (shape[0] + shape[1]))


def xavier_uniform(key, shape, sigma_w2=None, dtype=jnp.float32):
    """W_ij ~ U(−a, a), a = √(6/(fan_in + fan_out)): Var = 2/(fan_in + fan_out)."""
    a = math.sqrt(6.0 / (shape[0] + shape[1]))
    return jax.random.uniform(key, shape, dtype, -a, a)


def he_normal(key, shape, sigma_w2=None, dtype=jnp.float32):
    """W_ij ~ N(0, 2/fan_in)."""
    return jax.random.normal(key, shape, dtype) * math.sqrt(2.0 / shape[0])


def he_uniform(key, shape, sigma_w2=None, dtype=jnp.float32):
    """W_ij ~ U(−a, a), a = √(6/fan_in): Var = 2/fan_in."""
    a = math.sqrt(6.0 / shape[0])
    return jax.random.uniform(key, shape, dtype, -a, a)


def lecun_normal(key, shape, sigma_w2=None, dtype=jnp.float32):
    """W_ij ~ N(0, 1/fan_in)."""
    return jax.random.normal(key, shape, dtype) * math.sqrt(1.0 / shape[0])


INITIALIZERS: dict[str, Initializer] = {
    "gaussian": gaussian,
    "orthogonal": orthogonal,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "lecun_normal": lecun_normal,
}


def get_initializer(name: str) -> Initializer:
    check_choice("init", name, tuple(INITIALIZERS))
    return INITIALIZERS[name]
