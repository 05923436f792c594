"""Batch, layer and RMS normalization of a (B, N) state: the norms every block type applies."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Variance floor inside every norm, the default of PyTorch and Flax norm layers.
NORM_EPS = 1e-5


def normalize(kind: str, x: jax.Array, scale: jax.Array, bias: jax.Array | None) -> jax.Array:
    """Batch / layer / RMS normalization of ``x`` (B, N) with per-feature ``scale``, ``bias`` (N,).

    batchnorm uses the statistics of the batch (axis 0) and is differentiated through them, as at
    initialization in training mode (Ioffe & Szegedy 2015, arXiv:1502.03167); layernorm and rmsnorm
    normalize each example over its features (Ba et al. 2016, arXiv:1607.06450; Zhang & Sennrich
    2019, arXiv:1910.07467).
    """
    if kind == "none":
        return x
    if kind == "batchnorm":
        mu = jnp.mean(x, axis=0, keepdims=True)
        var = jnp.mean(jnp.square(x - mu), axis=0, keepdims=True)
        y = (x - mu) * jax.lax.rsqrt(var + NORM_EPS)
    elif kind == "layernorm":
        mu = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mu), axis=-1, keepdims=True)
        y = (x - mu) * jax.lax.rsqrt(var + NORM_EPS)
    elif kind == "rmsnorm":
        y = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + NORM_EPS)
    else:  # unreachable through a validated NetConfig
        raise ValueError(f"norm must be one of ['none', 'batchnorm', 'layernorm', 'rmsnorm'], got {kind!r}")
    y = y * scale[None, :]
    return y if bias is None else y + bias[None, :]
