"""Stacks of blocks — MLP, residual MLP and vanilla RNN — as one NNX module and pure functions.

Parameters as a plain dict (``params_of(model)``)::

    {"embed":   {"kernel": (in_dim, N), "bias": (N,)},        # rnn: {"kernel": U (in_dim, N)}
     "blocks":  {"kernel": (L, N, N), "bias": (L, N), ...},   # rnn: no leading L (shared weights)
     "readout": {"kernel": (N, out_dim), "bias": (out_dim,)}}

Inputs: ``x`` (B, in_dim) for mlp/resmlp and (B, L, in_dim) for rnn (one input per time step).
The stack is walked as ``h_0, xs = unroll(cfg, params, x)`` then
``h_l, preact_l = step(cfg, params, xs[l], h_{l-1})`` for l = 1..L, and ``y = readout(...)``: the
same contract for every arch, which the empirical engine differentiates block by block.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from gradjax.config import NetConfig
from gradjax.nn import conv
from gradjax.nn.activations import get_activation
from gradjax.nn.blocks import Block, block_taps, scale_block, unit_config
from gradjax.nn.sampling import standard_normal


class Taps(NamedTuple):
    """What the forward pass records. ``h0`` (B, D); ``hidden``, ``preact`` (L, B, D), D = ``cfg.state_size``."""

    h0: jax.Array
    hidden: jax.Array  # h_l after block l (entry l-1)
    preact: jax.Array  # argument of φ inside block l (entry l-1)


def input_shape(cfg: NetConfig, batch: int) -> tuple[int, ...]:
    """Shape of one input batch: (B, in_dim); (B, L, in_dim) for rnn; (B, *spatial, in_dim) for cnn;
    (B, tokens, in_dim) for transformer."""
    if cfg.arch == "rnn":
        return (batch, cfg.depth, cfg.in_dim)
    if cfg.arch == "cnn":
        return (batch,) + cfg.spatial + (cfg.in_dim,)
    if cfg.arch == "transformer":
        return (batch, cfg.tokens, cfg.in_dim)
    return (batch, cfg.in_dim)


def embed_fan_in(cfg: NetConfig) -> int:
    """Inputs feeding one unit of h_0: in_dim, or k^d·in_dim for the cnn's convolutional input layer."""
    return cfg.kernel_size ** len(cfg.spatial) * cfg.in_dim if cfg.arch == "cnn" else cfg.in_dim


def _check_input(cfg: NetConfig, x: jax.Array) -> None:
    want = input_shape(cfg, x.shape[0] if x.ndim else -1)
    if x.shape != want:
        raise ValueError(f"x must have shape {('B',) + want[1:]} for arch={cfg.arch!r}, got {tuple(x.shape)}")


def unroll(cfg: NetConfig, params: dict, x: jax.Array):
    """Input layer and per-step inputs.

    Returns:
      ``(h0, xs)``: ``h0`` (B, N) the state entering block 1, and ``xs`` a pytree with leading
      axis L holding what changes from step to step — the block parameters (mlp/resmlp) or the
      drive ``U x_t`` (rnn, under key ``"drive"``, (L, B, N)).
    """
    _check_input(cfg, x)
    x = x.astype(cfg.jnp_dtype)
    e = params["embed"]
    if cfg.arch == "rnn":
        drive = jnp.einsum("btd,dn->tbn", x, e["kernel"])
        return jnp.zeros((x.shape[0], cfg.width), cfg.jnp_dtype), {"drive": drive}
    if cfg.arch == "cnn":  # a circular convolution of the input channels, same kernel size
        k = e["kernel"].reshape(conv.kernel_shape(len(cfg.spatial), cfg.kernel_size, cfg.in_dim, cfg.width))
        h0 = conv.add_bias(conv.circular_conv(x, k), e["bias"])
    else:  # mlp, resmlp; transformer: token-wise
        h0 = conv.add_bias(x @ e["kernel"], e["bias"])
    return h0.reshape(x.shape[0], -1), params["blocks"]


def step(cfg: NetConfig, params: dict, x_l, h: jax.Array):
    """Block l on state ``h`` (B, N) with its per-step input ``x_l`` (a slice of ``unroll``'s xs).

    Returns ``(h_l, preact_l)``, both (B, N).
    """
    if cfg.arch == "rnn":
        return block_taps(cfg, params["blocks"], h, x_l["drive"])
    return block_taps(cfg, x_l, h)


def readout(cfg: NetConfig, params: dict, h: jax.Array) -> jax.Array:
    """``y = φ(h_L) W_out + b_out``: (B, D) -> (B, out_dim). prelu uses its initial slope here.

    cnn: φ(h_L) is global-average-pooled over the spatial positions first; transformer: the linear
    head reads the mean over tokens of h_L (no φ: the blocks end in a residual sum or a norm).
    """
    r = params["readout"]
    if cfg.arch == "transformer":
        return jnp.mean(h.reshape(h.shape[0], cfg.tokens, cfg.width), axis=1) @ r["kernel"] + r["bias"][None, :]
    a = get_activation(cfg.activation, slope=cfg.leaky_slope)(h)
    if cfg.arch == "cnn":
        a = jnp.mean(a.reshape(h.shape[0], -1, cfg.width), axis=1)
    return a @ r["kernel"] + r["bias"][None, :]


def check_segment(cfg: NetConfig, segment) -> None:
    """Raises ValueError unless ``segment`` (blocks per rematerialized segment) is a positive int dividing ``cfg.depth``."""
    if isinstance(segment, bool) or not isinstance(segment, int) or segment < 1 or cfg.depth % segment:
        raise ValueError(f"segment must be a positive int dividing depth={cfg.depth}, got {segment!r}")


def forward(cfg: NetConfig, params: dict, x: jax.Array, *, taps: bool = False, segment: int | None = None):
    """The whole network: ``y`` (B, out_dim), or ``(y, Taps)`` with ``taps=True``.

    The L blocks run under ``jax.lax.scan`` (one compiled block, any depth). With ``segment`` = K (a
    divisor of L, not with ``taps``) they run as L/K segments of K blocks, each segment's scan under
    ``jax.checkpoint``: differentiating the network then keeps the L/K segment inputs and re-runs one
    segment at a time in the backward pass, K states of it alive — memory ∝ L/K + K instead of L
    block states (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost",
    arXiv:1604.06174); the same outputs.
    """
    h0, xs = unroll(cfg, params, x)

    def body(h, x_l):
        h_next, pre = step(cfg, params, x_l, h)
        return h_next, (h_next, pre) if taps else None

    if segment is None:
        h_last, rec = jax.lax.scan(body, h0, xs)
    else:
        if taps:
            raise ValueError("segment needs taps=False (a segmented forward keeps no per-block states), got taps=True")
        check_segment(cfg, segment)
        run = jax.checkpoint(lambda h, xs_s: (jax.lax.scan(body, h, xs_s)[0], None))
        split = lambda a: a.reshape((cfg.depth // segment, segment) + a.shape[1:])  # noqa: E731
        h_last, rec = jax.lax.scan(run, h0, jax.tree.map(split, xs))
    y = readout(cfg, params, h_last)
    return (y, Taps(h0, rec[0], rec[1])) if taps else y


def scale_params(cfg: NetConfig, unit: dict) -> dict:
    """The parameters of ``cfg`` from those of ``unit_config(cfg)`` (any leading seed axes): every block
    scaled by :func:`gradjax.nn.blocks.scale_block`; input layer and readout do not depend on the numbers."""
    return {**unit, "blocks": scale_block(cfg, unit["blocks"])}


def init_params(cfg: NetConfig, key: jax.Array) -> dict:
    """Draws all parameters as a plain dict (the same values :class:`Network` holds for ``key``).

    The draw is made at unit numbers and scaled (:func:`scale_params`), so ``cfg``'s σ_w², σ_b², α and
    slope may be traced: ``jax.vmap(lambda s: init_params(cfg.with_(sigma_w2=s), key))`` draws once.
    """
    return scale_params(cfg, params_of(Network(unit_config(cfg), rngs=nnx.Rngs(params=key))))


#: Archs whose L blocks each draw from their own key with one kernel (see :func:`block_keys`).
KEYED_ARCHS = ("mlp", "resmlp", "cnn")


def block_keys(cfg: NetConfig, key: jax.Array) -> jax.Array:
    """(L,) keys: block l of ``init_params(cfg, key)`` is ``init_block(cfg, block_keys(cfg, key)[l])``, bit-identical.

    What :class:`Network` does with ``nnx.Rngs(params=key)``: the input layer takes draw 0 of the
    stream (``fold_in(key, 0)``), ``nnx.split_rngs`` splits draw 1 into L keys, and each block takes
    draw 0 of its own stream. With these keys a block's parameters can be drawn where they are used
    (``gradjax.nn.regenerate``) instead of stored. mlp, resmlp and cnn (the rnn has one shared block;
    the transformer's blocks are several matrices each).
    """
    if cfg.arch not in KEYED_ARCHS:
        raise ValueError(f"arch must be one of {list(KEYED_ARCHS)} for per-block keys, got {cfg.arch!r}")
    split = jax.random.split(jax.random.fold_in(key, 1), cfg.depth)
    return jax.vmap(lambda k: jax.random.fold_in(k, 0))(split)


class _Dense(nnx.Module):
    """``x W + b`` with W ~ N(0, 1/fan_in) (LeCun), b = 0: the input layer and the readout."""

    def __init__(self, fan_in: int, fan_out: int, dtype, *, bias: bool = True, rngs: nnx.Rngs):
        self.kernel = nnx.Param(standard_normal(rngs.params(), (fan_in, fan_out), dtype, 1.0 / math.sqrt(fan_in)))
        if bias:
            self.bias = nnx.Param(jnp.zeros((fan_out,), dtype))


class Network(nnx.Module):
    """A stack of ``cfg.depth`` blocks with input layer and readout (see module docstring).

    The L blocks of mlp/resmlp are built by ``nnx.vmap`` over ``nnx.split_rngs(splits=L)``, so
    their parameters are stacked on a leading axis; the rnn has one block shared over time.

    Args:
      cfg: the network.
      rngs: ``nnx.Rngs`` with a ``params`` stream (keyword-only).
    """

    def __init__(self, cfg: NetConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        dt = cfg.jnp_dtype
        self.embed = _Dense(embed_fan_in(cfg), cfg.width, dt, bias=cfg.arch != "rnn", rngs=rngs)
        if cfg.arch == "rnn":
            self.blocks = Block(cfg, rngs=rngs)
        else:
            @nnx.split_rngs(splits=cfg.depth)
            @nnx.vmap(in_axes=(0,), out_axes=0)
            def make_blocks(r: nnx.Rngs) -> Block:
                return Block(cfg, rngs=r)

            self.blocks = make_blocks(rngs)
        self.readout = _Dense(cfg.width, cfg.out_dim, dt, rngs=rngs)

    def params(self) -> dict:
        return params_of(self)

    def __call__(self, x: jax.Array, *, taps: bool = False):
        return forward(self.cfg, self.params(), x, taps=taps)


def params_of(model: nnx.Module) -> dict:
    """The model's ``nnx.Param`` values as a plain nested dict of arrays."""
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))
