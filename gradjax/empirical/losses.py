"""Loss registry: ``loss_fn(name_or_callable) -> f(y, targets) -> scalar``.

The gradient measurements and the training loop share these losses, so their signature is
stable: ``f(y, targets)`` with ``y`` (B, out_dim) network outputs and returns a scalar.

``projection`` (⟨y, t⟩/B) is the default of the gradient measurements: its cotangent at the output
is t/B whatever the network computes, the setting of the mean-field backward recursion
(``gradjax.theory.gradient_profile``). ``mse`` and ``xent`` are the training losses; their output
cotangent depends on the forward pass (y − t, softmax(y) − t).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from gradjax._validate import check_choice

Loss = Callable[[jax.Array, jax.Array], jax.Array]


def mse(y: jax.Array, targets: jax.Array) -> jax.Array:
    """½ · mean over the batch of Σ_outputs (y − t)².

    Args:
      y: (B, out_dim) outputs.
      targets: (B, out_dim) targets.

    Returns:
      Scalar loss (linear units).
    """
    if targets.shape != y.shape:
        raise ValueError(f"mse targets must have the outputs' shape {tuple(y.shape)}, got {tuple(targets.shape)}")
    return 0.5 * jnp.mean(jnp.sum(jnp.square(y - targets.astype(y.dtype)), axis=-1))


def projection(y: jax.Array, targets: jax.Array) -> jax.Array:
    """⟨y, t⟩ / B: the sum over batch and outputs of y·t, divided by the batch size B.

    Its cotangent at y is t/B, independent of the network: with random t the gradient entering the
    top layer is a direction drawn independently of the weights, as the mean-field δ recursion
    assumes (Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232, Sec. 4).

    Args:
      y: (B, out_dim) outputs.
      targets: (B, out_dim) projection directions (unit Gaussian by default in the measurements).

    Returns:
      Scalar (linear units).
    """
    if targets.shape != y.shape:
        raise ValueError(f"projection targets must have the outputs' shape {tuple(y.shape)}, got {tuple(targets.shape)}")
    return jnp.sum(y * targets.astype(y.dtype)) / y.shape[0]


def xent(y: jax.Array, targets: jax.Array) -> jax.Array:
    """Softmax cross-entropy, mean over the batch.

    Args:
      y: (B, out_dim) logits.
      targets: (B,) integer labels in [0, out_dim), or (B, out_dim) one-hot / probability targets.

    Returns:
      Scalar loss in nats.
    """
    logp = jax.nn.log_softmax(y, axis=-1)
    if jnp.issubdtype(targets.dtype, jnp.integer):
        if targets.shape != y.shape[:1]:
            raise ValueError(f"xent integer labels must have shape {tuple(y.shape[:1])}, got {tuple(targets.shape)}")
        picked = jnp.take_along_axis(logp, targets[:, None], axis=-1)[:, 0]
        return -jnp.mean(picked)
    if targets.shape != y.shape:
        raise ValueError(
            f"xent targets must be integer labels {tuple(y.shape[:1])} or one-hot {tuple(y.shape)}, got {tuple(targets.shape)}"
        )
    return -jnp.mean(jnp.sum(targets.astype(y.dtype) * logp, axis=-1))


LOSSES: dict[str, Loss] = {"projection": projection, "mse": mse, "xent": xent}
#: Loss of the gradient measurements when none is given: the one the mean-field theory models.
DEFAULT_LOSS = "projection"


def loss_fn(loss) -> Loss:
    """A registry name (``"projection"``, ``"mse"``, ``"xent"``) or a callable ``f(y, targets) -> scalar`` → the callable.

    Raises:
      ValueError: unknown name (lists the options). TypeError: neither a string nor a callable.
    """
    if callable(loss):
        return loss
    if isinstance(loss, str):
        check_choice("loss", loss, tuple(LOSSES))
        return LOSSES[loss]
    raise TypeError(
        f"loss must be one of {sorted(LOSSES)} or a callable f(y, targets) -> scalar, got {loss!r} "
        f"of type {type(loss).__name__}"
    )
