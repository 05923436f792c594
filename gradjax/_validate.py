"""Shared validation helpers: every error names the field, the bad value and what is allowed."""

from __future__ import annotations

import difflib
import math
import numbers


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


def check_real(field: str, value, *, minimum: float | None = 0.0, strict: bool = False,
               maximum: float | None = None) -> None:
    """Raises unless ``value`` is a finite real number in the allowed range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{field} must be a finite real number, got {value!r} of type {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{field} must be a finite real number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{field} must be {op} {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{field} must be <= {maximum}, got {value!r}")
