"""Shared pieces of the examples: a plain optax loop on an NNX model with the gradient-flow monitor,
a printed profile table, and the monitor's heatmap."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import optax
from flax import nnx


def print_profile(title: str, labels, values) -> None:
    """Prints the 10/50/90% quantiles across seeds of (S, L) values per labelled layer."""
    q = np.nanquantile(np.asarray(values, np.float64), [0.1, 0.5, 0.9], axis=0)
    print(title)
    for i, lab in enumerate(labels):
        print(f"  {lab:<28s} {q[1, i]:+8.3f}   [{q[0, i]:+8.3f}, {q[2, i]:+8.3f}]")


def train_with_monitor(model: nnx.Module, x, y, loss, *, steps: int, lr: float, batch: int = 32):
    """Adam on minibatches with ``gradient_flow_monitor`` first in the chain; returns (optimizer state, losses)."""
    from gradjax.empirical.model import pure_apply
    from gradjax.train.monitor import gradient_flow_monitor

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    apply = pure_apply(graphdef, params, rest)
    p = nnx.to_pure_dict(params)
    tx = optax.chain(gradient_flow_monitor(steps), optax.clip_by_global_norm(1.0), optax.adam(lr))
    state = tx.init(p)

    @jax.jit
    def step(p, state, xb, yb):
        value, g = jax.value_and_grad(lambda q: loss(apply(q, xb), yb))(p)
        u, state = tx.update(g, state, p)
        return optax.apply_updates(p, u), state, value

    rng = np.random.default_rng(0)
    losses = []
    for _ in range(steps):
        idx = rng.choice(len(x), size=min(batch, len(x)), replace=False)
        p, state, value = step(p, state, x[idx], y[idx])
        losses.append(float(value))
    return state, losses


def save_heatmap(record, path: Path, title: str, theory=None):
    from gradjax.experiments.flow_figures import gradient_flow_heatmap

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = gradient_flow_heatmap(record, title=title, theory=theory)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    print(f"heatmap: {path}")
    return path


def train_and_show_flow(model: nnx.Module, x, y, loss, *, steps: int, lr: float, path: Path, title: str):
    """:func:`train_with_monitor`, then the monitor's record printed in one line and drawn by
    :func:`save_heatmap`. Returns ``(record, losses, figure path)``."""
    from gradjax.train.monitor import gradient_flow_records

    opt_state, losses = train_with_monitor(model, x, y, loss, steps=steps, lr=lr)
    (rec,) = gradient_flow_records(opt_state)
    print(f"training: loss {losses[0]:.3f} → {losses[-1]:.3f} over {steps} steps; "
          f"monitor recorded {rec.log10_norms.shape[0]} steps × {len(rec.labels)} layers")
    return rec, losses, save_heatmap(rec, path, title)
