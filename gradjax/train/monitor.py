"""A gradient-flow monitor for any optax chain: per-layer log10 gradient norms at every step.

``gradient_flow_monitor(capacity)`` is an ``optax.GradientTransformation`` that passes its updates
through unchanged (the very same arrays) and records, in its state, log10 of the norm of the
updates reaching it for every parameter group — by default the module that owns the parameter
(the leaf's path without its last key, e.g. ``blocks/2/mlp`` for ``blocks/2/mlp/kernel``). Put it
first in a chain to record raw gradients, after ``optax.clip_by_global_norm`` to record clipped
ones, or twice::

    tx = optax.chain(gradient_flow_monitor(steps), optax.clip_by_global_norm(1.0),
                     gradient_flow_monitor(steps), optax.adam(1e-3))
    ...
    raw, clipped = gradient_flow_records(opt_state)   # each: steps × groups, labels

Groups whose leaves carry a leading layer axis (a stack of blocks scanned with ``nnx.scan``, or
gradjax's own ``"blocks"``) are split along it with ``stacked=("blocks",)``: one group per layer.

The record is a ring buffer of the last ``capacity`` steps (a (capacity, G) array, nan before a
step is recorded), so the state has a fixed shape and the update compiles once. Norms are taken
overflow-safe (:func:`gradjax.empirical.propagate.normalize`) and combined in log space.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradjax._validate import check_int
from gradjax.empirical.propagate import log10_norm


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def owner_group(path: tuple) -> str:
    """Default group of a leaf: its path without the last key (the owning module); a top-level leaf is its own group."""
    names = [_key_name(k) for k in path]
    return "/".join(names[:-1]) or "/".join(names)


def _leaf_groups(tree, group: Callable, stacked: tuple) -> tuple[tuple[str, ...], list]:
    """``(labels, per-leaf assignment)``: each leaf's group index, or a list of L indices for a stacked leaf."""
    labels: list[str] = []
    assign = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        g = group(path)
        if g in stacked:
            if np.ndim(leaf) == 0:
                raise ValueError(f"stacked group {g!r} has a scalar leaf {owner_group(path + (None,))!r}: "
                                 "no leading layer axis to split")
            names = [f"{g}/{l}" for l in range(np.shape(leaf)[0])]
        else:
            names = [g]
        idx = []
        for name in names:
            if name not in labels:
                labels.append(name)
            idx.append(labels.index(name))
        assign.append(idx if g in stacked else idx[0])
    return tuple(labels), assign


def group_log10_norms(tree, group: Callable = owner_group, stacked: tuple = ()) -> jax.Array:
    """(G,) log10 of the Frobenius norm of each group's leaves (−inf for an all-zero group).

    Each leaf's norm is taken overflow-safe, then combined as log10 √(Σ 10^{2 s_i}) with a max shift.
    """
    labels, assign = _leaf_groups(tree, group, stacked)
    parts: list[list] = [[] for _ in labels]
    for leaf, a in zip(jax.tree.leaves(tree), assign):
        if isinstance(a, list):
            per_layer = jax.vmap(log10_norm)(leaf)
            for l, gi in enumerate(a):
                parts[gi].append(per_layer[l])
        else:
            parts[a].append(log10_norm(leaf))
    out = []
    for p in parts:
        s = jnp.stack(p).astype(jnp.float32)
        top = jnp.max(s)
        safe = jnp.where(jnp.isfinite(top), top, 0.0)
        out.append(jnp.where(jnp.isfinite(top), safe + 0.5 * jnp.log10(jnp.sum(10.0 ** (2 * (s - safe)))), top))
    return jnp.stack(out)


@functools.partial(jax.tree_util.register_dataclass, data_fields=["log10_norms", "count"], meta_fields=["labels"])
@dataclasses.dataclass(frozen=True)
class GradientFlowState:
    """State of :func:`gradient_flow_monitor`.

    Attributes:
      log10_norms: (capacity, G) float32, row (t − 1) mod capacity holds step t's log10 group norms (nan before).
      count: () int32 steps recorded so far.
      labels: (G,) group labels (static).
    """

    log10_norms: jax.Array
    count: jax.Array
    labels: tuple


def gradient_flow_monitor(capacity: int, *, group: Callable = owner_group, stacked: tuple = ()) -> optax.GradientTransformation:
    """Records per-group log10 norms of the updates at every step; passes the updates through unchanged.

    Args:
      capacity: steps kept (a ring buffer of the last ``capacity`` steps).
      group: ``group(path) -> label`` for a leaf's key path (default :func:`owner_group`).
      stacked: group labels whose leaves carry a leading layer axis, split into ``label/0``, ``label/1``….

    Returns:
      An ``optax.GradientTransformation``; read its record with :func:`gradient_flow_records`.
    """
    check_int("capacity", capacity)
    stacked = tuple(stacked)

    def init(params):
        labels, _ = _leaf_groups(params, group, stacked)
        return GradientFlowState(jnp.full((capacity, len(labels)), jnp.nan, jnp.float32), jnp.zeros((), jnp.int32),
                                 labels)

    def update(updates, state, params=None):
        del params
        row = group_log10_norms(updates, group, stacked)
        norms = jax.lax.dynamic_update_slice(state.log10_norms, row[None], (state.count % capacity, jnp.zeros((), jnp.int32)))
        return updates, GradientFlowState(norms, state.count + 1, state.labels)

    return optax.GradientTransformation(init, update)


class GradientFlowRecord(NamedTuple):
    """A monitor's record in step order.

    Attributes:
      step: (T,) 1-based update numbers. log10_norms: (…, T, G) log10 group norms (a leading seed
      axis where the optimizer state was vmapped). labels: (G,) group labels.
    """

    step: np.ndarray
    log10_norms: np.ndarray
    labels: tuple


def gradient_flow_states(opt_state) -> list[GradientFlowState]:
    """Every :class:`GradientFlowState` inside an optimizer state, in chain order."""
    return [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, GradientFlowState))
            if isinstance(s, GradientFlowState)]


def gradient_flow_record(state: GradientFlowState) -> GradientFlowRecord:
    """The ring buffer of one monitor state unrolled into step order (last ``capacity`` steps)."""
    norms, count = np.asarray(state.log10_norms), np.asarray(state.count)
    n = int(np.max(count))
    if np.any(count != n):
        raise ValueError(f"the seeds' monitors recorded different numbers of steps: {sorted(set(count.ravel().tolist()))}")
    cap = norms.shape[-2]
    steps = np.arange(max(1, n - cap + 1), n + 1)
    return GradientFlowRecord(steps, np.take(norms, (steps - 1) % cap, axis=-2), state.labels)


def gradient_flow_records(opt_state) -> list[GradientFlowRecord]:
    """:func:`gradient_flow_record` of every monitor in ``opt_state`` (chain order).

    Raises:
      ValueError: the state holds no monitor.
    """
    states = gradient_flow_states(opt_state)
    if not states:
        raise ValueError("opt_state holds no gradient_flow_monitor state: add gradient_flow_monitor(...) to the chain")
    return [gradient_flow_record(s) for s in states]
