"""Ensembles: S independently initialized networks at once, with a leading seed axis.

Seed k of ``seeds=S`` is ``jax.random.key(k)``, so member k is bit-identical to
``Network(cfg, rngs=nnx.Rngs(params=jax.random.key(k)))``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gradjax.config import NetConfig
from gradjax.nn.stack import Network, forward, input_shape, params_of


def seed_keys(seeds) -> jax.Array:
    """``seeds`` → a typed key array (S,).

    Args:
      seeds: an int S (keys ``jax.random.key(0..S-1)``), a sequence of ints, or a key array
        (typed ``jax.random.key`` keys, or raw uint32 keys of shape (S, 2)).
    """
    if isinstance(seeds, (bool, np.bool_)):
        raise TypeError(f"seeds must be an int >= 1, a list of ints or a key array, got {seeds!r}")
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ValueError(f"seeds must be an int >= 1 (the number of seeds), got {seeds!r}")
        return jax.vmap(jax.random.key)(jnp.arange(int(seeds)))
    if isinstance(seeds, (list, tuple)):
        if not seeds or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seeds):
            raise TypeError(f"seeds as a list must be a non-empty list of ints, got {seeds!r}")
        return jax.vmap(jax.random.key)(jnp.asarray(seeds, dtype=jnp.uint32))
    if isinstance(seeds, jax.Array):
        if jnp.issubdtype(seeds.dtype, jax.dtypes.prng_key):
            if seeds.ndim != 1:
                raise ValueError(f"seeds as a key array must have shape (S,), got {seeds.shape}")
            return seeds
        if seeds.dtype == jnp.uint32 and seeds.ndim == 2 and seeds.shape[1] == 2:
            return jax.random.wrap_key_data(seeds)
    raise TypeError(
        f"seeds must be an int >= 1, a list of ints or a key array (S,), got {seeds!r} of type {type(seeds).__name__}"
    )


def make_ensemble(cfg: NetConfig, seeds) -> Network:
    """S networks built at once by ``nnx.vmap`` of the constructor over keys.

    Returns:
      A :class:`Network` whose parameters carry a leading seed axis S (block kernels (S, L, N, N)).
      Apply it member-wise with :func:`ensemble_forward` (a ``vmap`` over the seed axis).
    """
    keys = seed_keys(seeds)

    @nnx.vmap(in_axes=0, out_axes=0)
    def build(key):
        return Network(cfg, rngs=nnx.Rngs(params=key))

    return build(keys)


def ensemble_params(cfg: NetConfig, seeds) -> dict:
    """Parameters of :func:`make_ensemble` as a plain dict with a leading seed axis."""
    return params_of(make_ensemble(cfg, seeds))


def ensemble_forward(cfg: NetConfig, params: dict, x: jax.Array, *, taps: bool = False):
    """Applies every member: ``x`` (B, ...) shared, or (S, B, ...) one batch per member."""
    shared = x.ndim == len(input_shape(cfg, 1))
    return jax.vmap(lambda p, xx: forward(cfg, p, xx, taps=taps), in_axes=(0, None if shared else 0))(params, x)
