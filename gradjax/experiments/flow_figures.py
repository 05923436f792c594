"""The gradient-flow monitor's figure: one layer × step heatmap of log10 gradient norms.

Draws a :class:`gradjax.train.monitor.GradientFlowRecord` (or any (T, G) / (S, T, G) array with its
labels); computes nothing but a median over seeds. Where the network's config is known, a theory
profile (per-layer log10 values, e.g. ``gradjax.theory.gradient_profile(cfg)`` anchored at the
measured last layer) is drawn as a line beside the heatmap, layer by layer.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def gradient_flow_heatmap(record, *, title: str = "", theory=None, theory_labels=None) -> Figure:
    """Layer × step heatmap of ``record.log10_norms`` (median over a leading seed axis if present).

    Args:
      record: ``GradientFlowRecord`` (fields ``step`` (T,), ``log10_norms`` (T, G) or (S, T, G), ``labels`` (G,)).
      title: the figure's title.
      theory: optional (G',) log10 values predicted per layer, drawn on a side panel against the
        measured first-step values.
      theory_labels: the G' labels ``theory`` belongs to (default: the first G' record labels).

    Returns:
      A matplotlib ``Figure``.
    """
    norms = np.asarray(record.log10_norms, np.float64)
    if norms.ndim == 3:
        norms = np.nanmedian(np.where(np.isfinite(norms), norms, np.nan), axis=0)
    labels = list(record.labels)
    steps = np.asarray(record.step)
    fig = Figure(figsize=(9.0, 0.35 * len(labels) + 2.0))
    if theory is None:
        ax = fig.add_subplot(1, 1, 1)
    else:
        gs = fig.add_gridspec(1, 2, width_ratios=(4, 1), wspace=0.05)
        ax = fig.add_subplot(gs[0])
    mesh = ax.pcolormesh(steps, np.arange(len(labels)), norms.T, shading="nearest", cmap="viridis")
    ax.set_yticks(np.arange(len(labels)), labels, fontsize=7)
    ax.set_xlabel("step")
    ax.set_title(title)
    fig.colorbar(mesh, ax=ax, label="log10 ‖∂loss/∂θ_layer‖", pad=0.01 if theory is None else 0.12)
    if theory is not None:
        side = fig.add_subplot(gs[1], sharey=ax)
        tl = list(theory_labels) if theory_labels is not None else labels[:len(theory)]
        rows = [labels.index(t) for t in tl]
        side.plot(np.asarray(theory), rows, "k--", label="theory")
        side.plot(norms[0, rows], rows, "o", ms=3, label=f"step {steps[0]}")
        side.tick_params(labelleft=False)
        side.set_xlabel("log10")
        side.legend(fontsize=7)
    return fig
