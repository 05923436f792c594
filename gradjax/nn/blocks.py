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

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from gradjax.config import NUMBER_FIELDS, SCALED_INITS, NetConfig
from gradjax.nn import attention, conv
from gradjax.nn.activations import block_activation
from gradjax.nn.init import get_initializer
from gradjax.nn.norms import NORM_EPS as NORM_EPS
from gradjax.nn.norms import normalize as normalize
from gradjax.nn.sampling import standard_normal

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
    x = _norm(cfg, params, h) if cfg.pre_norm else h
    branch = block_activation(cfg, params)(x) @ params["kernel"] + params["bias"][None, :]
    if drive is not None:
        branch = branch + drive
    out = h + jnp.asarray(cfg.alpha, h.dtype) * branch if cfg.arch == "resmlp" else branch
    if cfg.post_norm:
        out = _norm(cfg, params, out)
    return out, x


def conv_block_taps(cfg: NetConfig, params: dict, h: jax.Array):
    """cnn block ``h_l = W_l ∗ φ(h_{l-1}) + b_l`` on the flattened state ``h`` (B, D): ``(h_l, h_{l-1})``.

    ``params``: ``kernel`` (k,)·d + (N, N), ``bias`` (N,) and ``slope`` () for prelu.
    """
    fmap = h.reshape((h.shape[0],) + cfg.spatial + (cfg.width,))
    out = conv.add_bias(conv.circular_conv(block_activation(cfg, params)(fmap), params["kernel"]), params["bias"])
    return out.reshape(h.shape), h


def block_apply(cfg: NetConfig, params: dict, h: jax.Array, drive: jax.Array | None = None) -> jax.Array:
    """One block on its own: ``h_{l-1} (B, N) -> h_l (B, N)``; see :func:`block_taps`."""
    return block_taps(cfg, params, h, drive)[0]


def _draw_block(cfg: NetConfig, key: jax.Array) -> dict:
    """One block's parameters drawn at ``cfg``'s numbers (concrete)."""
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
        "bias": standard_normal(kb, (n,), dt, jnp.sqrt(jnp.asarray(cfg.sigma_b2, dt))),
    }
    if cfg.activation == "prelu":
        p["slope"] = jnp.asarray(cfg.leaky_slope, dt)
    if cfg.norm != "none":
        p["norm_scale"] = jnp.ones((n,), dt)
        if cfg.norm != "rmsnorm":
            p["norm_bias"] = jnp.zeros((n,), dt)
    return p


def unit_config(cfg: NetConfig) -> NetConfig:
    """``cfg``'s structure at unit numbers (σ_w² = 1 for the scaled schemes, σ_b² = 1, α = 1, slope 1):
    the network whose parameters :func:`scale_block` scales. Concrete even where ``cfg``'s numbers
    are traced."""
    structure = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in NUMBER_FIELDS}
    rule = cfg.residual_scale if isinstance(cfg.residual_scale, str) else None
    slope = 1.0 if cfg.leaky_slope is not None else None
    return NetConfig(**structure, sigma_b2=1.0, residual_scale=rule, leaky_slope=slope)


def unit_block(cfg: NetConfig, key: jax.Array) -> dict:
    """One block's parameters drawn at unit numbers (:func:`unit_config`): weights of ``cfg.init`` at
    σ_w² = 1 (the fixed-variance schemes at their own variance), biases ~ N(0, 1), a prelu slope of 1.

    Reads only the structure of ``cfg`` (never its numbers), so it draws the same arrays for every
    σ_w², σ_b², α and slope: :func:`scale_block` turns them into the parameters of ``cfg``.
    """
    return _draw_block(unit_config(cfg), key)


def scale_block(cfg: NetConfig, unit: dict) -> dict:
    """Block parameters of ``cfg`` from unit draws (:func:`unit_block`), any leading axes: every weight
    matrix × √σ_w² (scaled schemes), every bias × √σ_b², the prelu slope × ``leaky_slope``; norm
    parameters as drawn.

    The one place where a config's numbers enter its parameters; they may be traced (a σ_w² axis
    under ``jax.vmap`` scales one draw).
    """
    dt = unit[next(iter(unit))].dtype
    w = jnp.sqrt(jnp.asarray(cfg.sigma_w2, dt)) if cfg.init in SCALED_INITS else None
    b = jnp.sqrt(jnp.asarray(cfg.sigma_b2, dt))
    out = {}
    for name, v in unit.items():
        if "norm_" in name:
            out[name] = v
        elif name == "slope":
            out[name] = v * jnp.asarray(cfg.leaky_slope, dt)
        elif name.endswith("bias"):
            out[name] = v * b
        else:
            out[name] = v if w is None else v * w
    return out


def init_block(cfg: NetConfig, key: jax.Array) -> dict:
    """Draws one block's parameters (a plain dict, see :func:`block_taps`): unit draws, scaled."""
    return scale_block(cfg, unit_block(cfg, key))


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
