"""Small numeric helpers every recursion of ``gradjax.theory`` shares: the float cast of a (possibly traced)
number, the variance floor ε of the network's norms, and the second moment a norm leaves."""

from __future__ import annotations

import jax.numpy as jnp


def _f(x):
    """``x`` as a JAX float of the default float width (a config number may be a Python scalar or a tracer)."""
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _norm_eps():
    from gradjax.nn.norms import NORM_EPS  # the variance floor the network's norms use

    return NORM_EPS


def _mean_square_after_norm(v):
    """Second moment of norm(h) for an input of (centred) variance v: v/(v + ε), the network's ε."""
    return v / (v + _norm_eps())
