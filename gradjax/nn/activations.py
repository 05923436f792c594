"""Activation functions φ as a registry of plain JAX functions.

Every entry is a pure elementwise function ``phi(x) -> y``. Activations with a
parameter (``leaky_relu``'s slope, ``prelu``'s learnable slope) are built by
:func:`activation_fn`, which binds the parameter; ``prelu`` is evaluated with its
slope at initialization (the slope becomes a trainable parameter of the block).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import erf as _erf

from gradjax._validate import check_choice
from gradjax.names import DEFAULT_LEAKY_SLOPE, default_slope
from gradjax.names import SLOPED as SLOPED

Activation = Callable[[jax.Array], jax.Array]

# SELU constants (Klambauer et al. 2017, "Self-Normalizing Neural Networks", arXiv:1706.02515, Eq. 2).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def linear(x):
    return x


def sigmoid(x):
    return jax.nn.sigmoid(x)


def tanh(x):
    return jnp.tanh(x)


def hard_tanh(x):
    return jnp.clip(x, -1.0, 1.0)


def erf(x):
    return _erf(x)


def relu(x):
    return jnp.maximum(x, 0.0)


def leaky_relu(x, slope=DEFAULT_LEAKY_SLOPE):
    return jnp.where(x >= 0, x, slope * x)


def elu(x):
    # expm1 on min(x, 0) keeps the unused branch finite for large x (no inf*0 in gradients).
    return jnp.where(x > 0, x, jnp.expm1(jnp.minimum(x, 0.0)))


def selu(x):
    return SELU_SCALE * jnp.where(x > 0, x, SELU_ALPHA * jnp.expm1(jnp.minimum(x, 0.0)))


def gelu(x):
    # Exact form x·Φ(x) (Hendrycks & Gimpel 2016, arXiv:1606.08415), not the tanh approximation,
    # so that Gaussian expectations in theory/ integrate the same function the network applies.
    return jax.nn.gelu(x, approximate=False)


def silu(x):
    return x * jax.nn.sigmoid(x)


def softplus(x):
    return jax.nn.softplus(x)


ACTIVATIONS: dict[str, Activation] = {
    "linear": linear,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "hard_tanh": hard_tanh,
    "erf": erf,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "prelu": leaky_relu,  # same function; its slope is a learnable block parameter
    "elu": elu,
    "selu": selu,
    "gelu": gelu,
    "silu": silu,
    "softplus": softplus,
}

#: Saturating activations (|φ'| → 0 for large |x|): saturation fraction applies.
SATURATING = ("sigmoid", "tanh", "hard_tanh", "erf")
#: Rectifier family: dead-unit fraction applies.
RECTIFIERS = ("relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "silu", "softplus")


def get_activation(name: str, *, slope: float | None = None) -> Activation:
    """Returns φ for a registry name, binding ``slope`` for leaky_relu / prelu.

    Raises:
      ValueError: unknown name (the message lists the options and the closest match).
    """
    check_choice("activation", name, tuple(ACTIVATIONS))
    fn = ACTIVATIONS[name]
    if name in SLOPED:
        return functools.partial(fn, slope=default_slope(name) if slope is None else slope)
    return fn


def block_activation(cfg, params: dict) -> Activation:
    """φ as a block applies it: prelu with the block's own (learnable) ``slope`` parameter, every other
    activation as ``cfg`` names it (leaky_relu with ``cfg.leaky_slope``)."""
    slope = params["slope"] if cfg.activation == "prelu" else cfg.leaky_slope
    return get_activation(cfg.activation, slope=slope)


def resolve_activation(activation, *, slope: float | None = None) -> Activation:
    """A registry name or a callable → a callable φ (callables pass through)."""
    if callable(activation):
        return activation
    if isinstance(activation, str):
        return get_activation(activation, slope=slope)
    raise TypeError(
        f"activation must be a registry name (one of {sorted(ACTIVATIONS)}) or a callable, "
        f"got {activation!r} of type {type(activation).__name__}"
    )
