"""What each theory function models, checked on a config's structure before it answers.

Every theory function that takes a ``NetConfig`` calls :func:`requires` first with the structure it
models (``arch``, ``norm``, ``init``, …), so a config outside it raises a ``ValueError`` naming the
field, the value, what is modelled and why — instead of a number for another network. Only structure
fields (strings, static under ``jax.jit``) are read: the checks hold when σ_w², σ_b², α are traced.
"""

from __future__ import annotations

from collections.abc import Mapping


def requires(cfg, what: str, *, why: Mapping[str, str] | None = None, **allowed) -> None:
    """Raises ``ValueError`` unless every named structure field of ``cfg`` has an allowed value.

    Args:
      cfg: a ``NetConfig``.
      what: the function asking (named in the message), e.g. ``"theory.jacobian_density"``.
      why: field → the reason the other values are not modelled (added to the message).
      **allowed: field → tuple of the values ``what`` models, e.g. ``arch=("mlp",)``.

    Example::

        requires(cfg, "theory.jacobian_density", arch=("mlp",), norm=("none",),
                 why={"arch": "the residual spectrum is not implemented"})
    """
    why = why or {}
    for field, values in allowed.items():
        value = getattr(cfg, field)
        if value not in values:
            reason = f" ({why[field]})" if field in why else ""
            raise ValueError(f"{what} models {field} in {list(values)}, got {field}={value!r}{reason}")
