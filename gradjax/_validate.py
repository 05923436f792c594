"""Shared validation helpers: every error names the field, the bad value and what is allowed.

Numbers may arrive traced (a ``NetConfig`` rebuilt inside ``jax.jit`` / ``jax.vmap`` over σ_w²):
a tracer's value cannot be checked, so only what it can say (its shape and dtype) is; concrete
values, Python or 0-d arrays, are checked in full.
"""

from __future__ import annotations

import difflib
import math
import numbers

import jax
import numpy as np


def check_choice(field: str, value, options) -> None:
    """Raises ValueError/TypeError unless ``value`` is one of ``options`` (suggests the closest)."""
    options = tuple(options)
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string, one of {list(options)}, got {value!r}")
    if value not in options:
        close = difflib.get_close_matches(value, options, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{field} must be one of {list(options)}, got {value!r}{hint}")


def check_int(field: str, value, *, minimum: int = 1) -> None:
    """Raises unless ``value`` is an integer (not bool) ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{field} must be an integer >= {minimum}, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{field} must be an integer >= {minimum}, got {value!r}")


def is_traced(value) -> bool:
    """True for a JAX tracer (a value known only by shape and dtype inside a transformation)."""
    return isinstance(value, jax.core.Tracer)


def real_number(field: str, value):
    """A real scalar as a Python float, or a traced real scalar as it is.

    Raises:
      TypeError: not a real scalar (bool, string, complex, an array of shape other than ()).
    """
    if isinstance(value, (jax.Array, np.ndarray, np.generic)) and not isinstance(value, bool):
        if np.shape(value) != () or not (np.issubdtype(value.dtype, np.floating)
                                         or np.issubdtype(value.dtype, np.integer)):
            raise TypeError(f"{field} must be a real scalar, got an array of shape {np.shape(value)} "
                            f"and dtype {value.dtype}")
        return value if is_traced(value) else float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{field} must be a finite real number, got {value!r} of type {type(value).__name__}")
    return float(value)


def check_real(field: str, value, *, minimum: float | None = 0.0, strict: bool = False,
               maximum: float | None = None) -> None:
    """Raises unless ``value`` is a finite real number in the allowed range (a tracer: a real scalar)."""
    value = real_number(field, value)
    if is_traced(value):
        return
    if not math.isfinite(value):
        raise ValueError(f"{field} must be a finite real number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{field} must be {op} {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{field} must be <= {maximum}, got {value!r}")
