"""Transformer blocks on T tokens of width N: softmax attention and an MLP, each a (scaled) branch.

One block maps the flattened state h (B, T·N) to the next. With ``n(·)`` the block's norm
(``cfg.norm``: none / layernorm / rmsnorm over each token's N features), α = ``cfg.alpha`` and
``Attn``, ``MLP`` below:

* pre-norm:  ``y = h + α·Attn(n(h))``,  ``h' = y + α·MLP(n'(y))``
* post-norm: ``y = n(h + α·Attn(h))``,  ``h' = n'(y + α·MLP(y))``
* ``residual_scale="none"`` drops the skip: ``y = Attn(n(h))`` (pre) or ``n(Attn(h))`` (post), and so on.
* ``mlp=False``: the block is its attention half only (``h' = y``).

``Attn(x) = concat_heads(softmax(Q Kᵀ/√d) V) W_O + b_O`` with Q = x W_Q, K = x W_K, V = x W_V split into
H heads of size d = N/H; ``MLP(x) = φ(x W_1 + b_1) W_2 + b_2`` with hidden width N. Every N × N
matrix is drawn by ``cfg.init`` with ``cfg.sigma_w2``; biases ~ N(0, σ_b²).

Parameter names of one block: ``query``, ``key``, ``value``, ``kernel`` (W_O) and ``bias`` (b_O) of the
attention; ``mlp_in``, ``mlp_in_bias``, ``mlp_out``, ``mlp_out_bias`` of the MLP; ``norm_scale``,
``norm_bias`` (attention's norm) and ``mlp_norm_scale``, ``mlp_norm_bias`` (MLP's norm).

References:
  Vaswani et al. 2017, "Attention Is All You Need", arXiv:1706.03762.
  Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture", arXiv:2002.04745 (pre/post).
  Noci et al. 2022, "Signal Propagation in Transformers: Theoretical Perspectives and the Role of Rank
  Collapse", arXiv:2206.03126 (residual branches scaled by α).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

if TYPE_CHECKING:
    from gradjax.config import NetConfig

from gradjax.nn.activations import block_activation
from gradjax.nn.conv import add_bias
from gradjax.nn.init import get_initializer
from gradjax.nn.norms import normalize
from gradjax.nn.sampling import standard_normal

_MATRICES = ("query", "key", "value", "kernel")
_MLP_MATRICES = ("mlp_in", "mlp_out")


def _token_norm(cfg: NetConfig, x: jax.Array, scale, bias) -> jax.Array:
    """``cfg.norm`` over each token's features: x (B, T, N)."""
    b, t, n = x.shape
    y = normalize(cfg.norm, x.reshape(b * t, n), scale, bias)
    return y.reshape(b, t, n)


def attention_weights(cfg: NetConfig, params: dict, x: jax.Array) -> jax.Array:
    """Softmax attention matrices ``softmax(Q Kᵀ/√d)``: x (B, T, N) → (B, H, T, T), rows summing to 1."""
    b, t, n = x.shape
    d = n // cfg.heads
    q = (x @ params["query"]).reshape(b, t, cfg.heads, d)
    k = (x @ params["key"]).reshape(b, t, cfg.heads, d)
    logits = jnp.einsum("bthd,bshd->bhts", q, k, precision=jax.lax.Precision.HIGHEST) / jnp.sqrt(jnp.asarray(d, x.dtype))
    return jax.nn.softmax(logits, axis=-1)


def attend(cfg: NetConfig, params: dict, x: jax.Array) -> jax.Array:
    """Multi-head softmax attention ``Attn(x)``: (B, T, N) → (B, T, N)."""
    b, t, n = x.shape
    a = attention_weights(cfg, params, x)
    v = (x @ params["value"]).reshape(b, t, cfg.heads, n // cfg.heads)
    out = jnp.einsum("bhts,bshd->bthd", a, v, precision=jax.lax.Precision.HIGHEST).reshape(b, t, n)
    return add_bias(out @ params["kernel"], params["bias"])


def _mlp(cfg: NetConfig, params: dict, x: jax.Array):
    """``(MLP(x), preact)`` with preact = x W_1 + b_1 (the argument of φ)."""
    pre = add_bias(x @ params["mlp_in"], params["mlp_in_bias"])
    return add_bias(block_activation(cfg, params)(pre) @ params["mlp_out"], params["mlp_out_bias"]), pre


def _sublayer(cfg: NetConfig, h: jax.Array, branch, scale, bias):
    """One residual (or plain) sublayer with the configured norm position: returns ``(out, aux)``."""
    alpha = jnp.asarray(cfg.alpha, h.dtype)
    x = _token_norm(cfg, h, scale, bias) if cfg.pre_norm else h
    r, aux = branch(x)
    out = h + alpha * r if cfg.skip else r
    return (_token_norm(cfg, out, scale, bias) if cfg.post_norm else out), aux


def block_taps(cfg: NetConfig, params: dict, h: jax.Array):
    """One transformer block on the flattened state ``h`` (B, T·N).

    Returns:
      ``(h_l, preact)``, both (B, T·N): preact is the MLP's argument of φ (``mlp=True``), else the
      attention's input (after a pre-norm).
    """
    x = h.reshape(h.shape[0], cfg.tokens, cfg.width)

    def attn_branch(z):
        return attend(cfg, params, z), z

    y, attn_in = _sublayer(cfg, x, attn_branch, params.get("norm_scale"), params.get("norm_bias"))
    if not cfg.mlp:
        return y.reshape(h.shape), attn_in.reshape(h.shape)
    out, pre = _sublayer(cfg, y, lambda z: _mlp(cfg, params, z), params.get("mlp_norm_scale"),
                         params.get("mlp_norm_bias"))
    return out.reshape(h.shape), pre.reshape(h.shape)


def init_block(cfg: NetConfig, key: jax.Array) -> dict:
    """Draws one transformer block's parameters (names in the module docstring)."""
    n, dt = cfg.width, cfg.jnp_dtype
    init = get_initializer(cfg.init)
    names = _MATRICES + (_MLP_MATRICES if cfg.mlp else ())
    biases = ("bias",) + (("mlp_in_bias", "mlp_out_bias") if cfg.mlp else ())
    keys = jax.random.split(key, len(names) + len(biases))
    p = {name: init(k, (n, n), cfg.sigma_w2, dt) for name, k in zip(names, keys)}
    sb = jnp.sqrt(jnp.asarray(cfg.sigma_b2, dt))
    p.update({name: standard_normal(k, (n,), dt, sb) for name, k in zip(biases, keys[len(names):])})
    if cfg.activation == "prelu" and cfg.mlp:
        p["slope"] = jnp.asarray(cfg.leaky_slope, dt)
    if cfg.norm != "none":
        for prefix in ("",) + (("mlp_",) if cfg.mlp else ()):
            p[prefix + "norm_scale"] = jnp.ones((n,), dt)
            if cfg.norm != "rmsnorm":
                p[prefix + "norm_bias"] = jnp.zeros((n,), dt)
    return p
