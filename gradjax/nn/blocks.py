"""One block of the stack, as a pure function of its parameters and as a Flax NNX module.

A block maps the pre-activation state ``h`` (B, N) to the next one (see ``NetConfig``):

* mlp / rnn: ``h' = W φ(x) + b (+ drive)``
* resmlp:    ``h' = h + α (W φ(x) + b)``
* cnn:       ``h' = W ∗ φ(h) + b``, a circular convolution of the feature map (``gradjax.nn.conv``)
* transformer: attention and MLP branches on T tokens (``gradjax.nn.attention``)

The state is flattened per example, (B, D) with D = ``cfg.state_size``; cnn and transformer blocks
reshape it to (B, *spatial, N) or (B, T, N) inside.

where ``x = norm(h)`` for ``norm_position="pre"`` (``x = h`` otherwise), and for
``norm_position="post"`` the block output is normalized instead. ``drive`` is the recurrent net's
input term ``U x_t``. The pure form :func:`block_apply` is what the empirical walker differentiates
block by block; :class:`Block` holds the same parameters as ``nnx.Param`` and calls it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from flax import nnx

if TYPE_CHECKING:  # config imports the registries of this package
    from gradjax.config import NetConfig

from gradjax.nn import attention, conv
from gradjax.nn.activations import get_activation
from gradjax.nn.init import get_initializer

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


def _phi(cfg: NetConfig, params: dict):
    if cfg.activation == "prelu":
        slope = params["slope"]
        return lambda x: jnp.where(x >= 0, x, slope * x)
    return get_activation(cfg.activation, slope=cfg.leaky_slope)


def _norm(cfg: NetConfig, params: dict, x: jax.Array) -> jax.Array:
    return normalize(cfg.norm, x, params.get("norm_scale"), params.get("norm_bias"))


def block_taps(cfg: NetConfig, params: dict, h: jax.Array, drive: jax.Array | None = None):
    """One block with its tap.

    Args:
      cfg: the network.
      params: one block's parameters: ``kernel`` (N, N), ``bias`` (N,), and where present
        ``slope`` () (prelu), ``norm_scale`` (N,), ``norm_bias`` (N,).
      h: (B, N) incoming state h_{l-1}.
      drive: (B, N) recurrent input term U x_t (rnn only).

    Returns:
      ``(h_next, preact)``, both (B, N): the new state h_l and the argument of φ in this block.
    """
    if cfg.arch == "cnn":
        return conv_block_taps(cfg, params, h)
    if cfg.arch == "transformer":
        return attention.block_taps(cfg, params, h)
    pre = cfg.norm != "none" and cfg.norm_position == "pre"
    post = cfg.norm != "none" and cfg.norm_position == "post"
    x = _norm(cfg, params, h) if pre else h
    branch = _phi(cfg, params)(x) @ params["kernel"] + params["bias"][None, :]
    if drive is not None:
        branch = branch + drive
    out = h + jnp.asarray(cfg.alpha, h.dtype) * branch if cfg.arch == "resmlp" else branch
    if post:
        out = _norm(cfg, params, out)
    return out, x


def conv_block_taps(cfg: NetConfig, params: dict, h: jax.Array):
    """cnn block ``h_l = W_l ∗ φ(h_{l-1}) + b_l`` on the flattened state ``h`` (B, D): ``(h_l, h_{l-1})``.

    ``params``: ``kernel`` (k,)·d + (N, N), ``bias`` (N,) and ``slope`` () for prelu.
    """
    fmap = h.reshape((h.shape[0],) + cfg.spatial + (cfg.width,))
    out = conv.add_bias(conv.circular_conv(_phi(cfg, params)(fmap), params["kernel"]), params["bias"])
    return out.reshape(h.shape), h


def block_apply(cfg: NetConfig, params: dict, h: jax.Array, drive: jax.Array | None = None) -> jax.Array:
    """One block on its own: ``h_{l-1} (B, N) -> h_l (B, N)``; see :func:`block_taps`."""
    return block_taps(cfg, params, h, drive)[0]


def init_block(cfg: NetConfig, key: jax.Array) -> dict:
    """Draws one block's parameters (a plain dict, see :func:`block_taps`)."""
    n, dt = cfg.width, cfg.jnp_dtype
    if cfg.arch == "transformer":
        return attention.init_block(cfg, key)
    kw, kb = jax.random.split(key)
    if cfg.arch == "cnn":
        shape = conv.kernel_shape(len(cfg.spatial), cfg.kernel_size, n, n)
        kernel = conv.CONV_INITIALIZERS[cfg.init](kw, shape, cfg.sigma_w2, dt)
    else:
        kernel = get_initializer(cfg.init)(kw, (n, n), cfg.sigma_w2, dt)
    p = {
        "kernel": kernel,
        "bias": jax.random.normal(kb, (n,), dt) * jnp.sqrt(jnp.asarray(cfg.sigma_b2, dt)),
    }
    if cfg.activation == "prelu":
        p["slope"] = jnp.asarray(cfg.leaky_slope, dt)
    if cfg.norm != "none":
        p["norm_scale"] = jnp.ones((n,), dt)
        if cfg.norm != "rmsnorm":
            p["norm_bias"] = jnp.zeros((n,), dt)
    return p


class Block(nnx.Module):
    """One block as an NNX module; parameters as in :func:`init_block`.

    Built ``L`` at a time (stacked on a leading axis) by ``nnx.vmap`` over split rngs in
    :class:`gradjax.nn.stack.Network`.
    """

    def __init__(self, cfg: NetConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        for name, value in init_block(cfg, rngs.params()).items():
            setattr(self, name, nnx.Param(value))

    def params(self) -> dict:
        return nnx.to_pure_dict(nnx.state(self, nnx.Param))

    def __call__(self, h: jax.Array, drive: jax.Array | None = None) -> jax.Array:
        return block_apply(self.cfg, self.params(), h, drive)
