"""Weight initializers as a registry of plain functions ``init(key, shape, sigma_w2, dtype) -> W``.

Every scheme draws through :mod:`gradjax.nn.sampling` (unit-scale Gaussian or uniform entries), then scales.

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
from gradjax.nn.sampling import standard_normal, standard_normal_tile, uniform, uniform_tile

Initializer = Callable[..., jax.Array]

# The i.i.d. schemes: the unit distribution of the entries ("normal": N(0, 1); "uniform": U[−1, 1),
# variance 1/3) and Var W_ij as a function of (fan_in, fan_out, σ_w²). Each scheme's function below
# is its unit draw times its scale, so a tile of W can be drawn alone (:func:`iid_tile`).
IID: dict[str, tuple[str, Callable]] = {
    "gaussian": ("normal", lambda fan_in, fan_out, sigma_w2: sigma_w2 / fan_in),
    "xavier_normal": ("normal", lambda fan_in, fan_out, sigma_w2: 2.0 / (fan_in + fan_out)),
    "xavier_uniform": ("uniform", lambda fan_in, fan_out, sigma_w2: 2.0 / (fan_in + fan_out)),
    "he_normal": ("normal", lambda fan_in, fan_out, sigma_w2: 2.0 / fan_in),
    "he_uniform": ("uniform", lambda fan_in, fan_out, sigma_w2: 2.0 / fan_in),
    "lecun_normal": ("normal", lambda fan_in, fan_out, sigma_w2: 1.0 / fan_in),
}
_UNIT_VARIANCE = {"normal": 1.0, "uniform": 1.0 / 3.0}


def iid_scale(init: str, shape, sigma_w2, dtype) -> jax.Array:
    """The factor that turns scheme ``init``'s unit draw into W: √(Var W_ij / Var unit) (applied in float32)."""
    dist, variance = IID[init]
    return jnp.sqrt(jnp.asarray(variance(shape[0], shape[1], sigma_w2) / _UNIT_VARIANCE[dist])).astype(dtype)


def iid_tile(init: str, key, shape, rows: tuple, cols: tuple, sigma_w2, dtype=jnp.float32) -> jax.Array:
    """``get_initializer(init)(key, shape, sigma_w2, dtype)[r0:r0+R, c0:c0+C]`` drawn alone, bit-identical
    (``rows``, ``cols`` = ``(start, size)`` as in :func:`gradjax.nn.sampling.random_bits_tile`)."""
    scale = iid_scale(init, shape, sigma_w2, dtype)
    if IID[init][0] == "normal":
        return standard_normal_tile(key, shape, rows, cols, dtype, scale)
    return uniform_tile(key, shape, rows, cols, dtype, -1.0, 1.0, scale)


def _iid(init: str, key, shape, sigma_w2, dtype) -> jax.Array:
    scale = iid_scale(init, shape, sigma_w2, dtype)
    if IID[init][0] == "normal":
        return standard_normal(key, shape, dtype, scale)
    return uniform(key, shape, dtype, -1.0, 1.0, scale)


def gaussian(key, shape, sigma_w2, dtype=jnp.float32):
    """W_ij ~ N(0, σ_w²/fan_in)."""
    return _iid("gaussian", key, shape, sigma_w2, dtype)


def orthogonal(key, shape, sigma_w2, dtype=jnp.float32):
    """W = σ_w · Q with Q Haar-orthogonal (WᵀW = σ_w² I when fan_in ≥ fan_out).

    Q is the QR factor of a Gaussian matrix with the signs of R's diagonal moved into Q, which makes
    it Haar-distributed (Mezzadri 2007, "How to generate random matrices from the classical compact
    groups", arXiv:math-ph/0609050). The Gaussian is drawn in float32 (the same for every dtype);
    the factorization runs in ``dtype``. Not drawable tile by tile: every entry of Q depends on the
    whole Gaussian matrix.
    """
    tall = (max(shape), min(shape))
    a = standard_normal(key, tall, jnp.float64 if dtype == jnp.float64 else jnp.float32)
    q, r = jnp.linalg.qr(a)
    q = q * jnp.sign(jnp.diagonal(r))[None, :]
    q = q if shape[0] >= shape[1] else q.T
    return (q * jnp.sqrt(sigma_w2)).astype(dtype)


def xavier_normal(key, shape, sigma_w2=None, dtype=jnp.float32):
    """W_ij ~ N(0, 2/(fan_in + fan_out)) (untruncated, so the variance is exactly the formula)."""
    return _iid("xavier_normal", key, shape, sigma_w2, dtype)


def xavier_uniform(key, shape, sigma_w2=None, dtype=jnp.float32):
    """W_ij ~ U(−a, a), a = √(6/(fan_in + fan_out)): Var = 2/(fan_in + fan_out)."""
    return _iid("xavier_uniform", key, shape, sigma_w2, dtype)


def he_normal(key, shape, sigma_w2=None, dtype=jnp.float32):
    """W_ij ~ N(0, 2/fan_in)."""
    return _iid("he_normal", key, shape, sigma_w2, dtype)


def he_uniform(key, shape, sigma_w2=None, dtype=jnp.float32):
    """W_ij ~ U(−a, a), a = √(6/fan_in): Var = 2/fan_in."""
    return _iid("he_uniform", key, shape, sigma_w2, dtype)


def lecun_normal(key, shape, sigma_w2=None, dtype=jnp.float32):
    """W_ij ~ N(0, 1/fan_in)."""
    return _iid("lecun_normal", key, shape, sigma_w2, dtype)


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
