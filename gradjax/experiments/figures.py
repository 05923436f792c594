"""Figures from stored results: theory as lines, measurement as median with a 10–90 % band.

Everything here draws what :func:`gradjax.io.load_results` returns; nothing imports JAX or computes
a prediction. Figures are built with matplotlib's object-oriented API (``matplotlib.figure.Figure``,
no ``pyplot``), so drawing never touches a global backend or opens a window.

Conventions, shared by every experiment's figure:

* theory: a solid line in the curve's colour (:func:`theory_line`);
* measurement: the median across seeds as dots joined by a thin line, with the 10–90 % quantile
  band across seeds shaded in the same colour (:func:`median_band`);
* one colour per value of the "hue" coordinate (:func:`colors`), one panel per value of the "panel"
  coordinate (:func:`panels`), and a legend entry explaining the two styles (:func:`style_legend`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

BAND = (0.1, 0.9)  # quantiles of the shaded band across seeds (10–90 %), as the issue specifies
BAND_ALPHA = 0.25  # band opacity: light enough to show overlapping bands
DPI = 150  # raster resolution of saved figures: sharp in a README at ~800 px wide
PANEL_SIZE = (4.0, 3.2)  # inches per panel
SEED_DIM = "seed"
LABELS = {  # how coordinate names are written on figures
    "sigma_w2": "σ_w²", "sigma_b2": "σ_b²", "depth": "L", "width": "N", "layer": "layer l", "alpha": "α",
    "activation": "φ", "init": "init", "norm": "norm", "step": "step", "seed": "seed",
}


def coord_label(name: str, value=None) -> str:
    """``"σ_w²"`` for ``coord_label("sigma_w2")``; ``"σ_w²=2"`` for ``coord_label("sigma_w2", 2.0)``."""
    text = LABELS.get(name, name)
    if value is None:
        return text
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    elif isinstance(value, (float, np.floating)):
        value = f"{float(value):.4g}"
    return f"{text}={value}"


def panels(n: int, *, ncols: int = 3, sharex: bool = False, sharey: bool = False,
           panel_size: tuple[float, float] = PANEL_SIZE):
    """A figure with ``n`` panels on a grid of at most ``ncols`` columns.

    Returns:
      ``(fig, axes)``: a ``Figure`` and a flat list of ``n`` axes (unused grid slots are hidden).
    """
    if n < 1:
        raise ValueError(f"panels needs n >= 1, got {n}")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)
    flat = list(grid.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def colors(values: Sequence, cmap: str | None = None) -> dict:
    """Maps each value to a colour: matplotlib's default cycle, or ``cmap`` sampled evenly."""
    values = list(values)
    if cmap is None and len(values) <= 10:
        return {v: f"C{i}" for i, v in enumerate(values)}
    from matplotlib import colormaps

    cm = colormaps[cmap or "viridis"]
    return {v: cm(i / max(1, len(values) - 1)) for i, v in enumerate(values)}


def seed_quantiles(values, *, dim: str = SEED_DIM, q: Sequence[float] = (BAND[0], 0.5, BAND[1])):
    """NaN-aware quantiles across seeds.

    Args:
      values: ``xarray.DataArray`` with a ``dim`` dimension, or a numpy array with seeds on axis 0.

    Returns:
      numpy array (len(q), ...) — the quantiles of the remaining axes (all-NaN columns give NaN).
    """
    if hasattr(values, "dims"):
        arr = np.asarray(values.transpose(dim, ...).values, dtype=float)
    else:
        arr = np.asarray(values, dtype=float)
    out = np.full((len(q),) + arr.shape[1:], np.nan)
    ok = np.isfinite(arr).any(axis=0)
    if ok.any():
        out[:, ok] = np.nanquantile(arr[:, ok], q, axis=0)
    return out


def median_band(ax, x, values, *, color=None, label: str | None = None, dim: str = SEED_DIM,
                band: Sequence[float] = BAND, marker: str = "o", markersize: float = 3.0):
    """Measurement: median across seeds (dots + thin line) and the ``band`` quantile range shaded.

    Args:
      ax: matplotlib axes.
      x: (n,) positions.
      values: (S, n) seeds first, or a DataArray with a ``dim`` dimension and one other dimension.
      color, label: curve colour and legend label.

    Returns:
      The median line (``Line2D``).
    """
    lo, med, hi = seed_quantiles(values, dim=dim, q=(band[0], 0.5, band[1]))
    x = np.asarray(x)
    (line,) = ax.plot(x, med, linestyle="-", linewidth=0.8, marker=marker, markersize=markersize, color=color,
                      label=label)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=BAND_ALPHA, linewidth=0)
    return line


def theory_line(ax, x, y, *, color=None, label: str | None = None, linestyle: str = "-", linewidth: float = 1.8):
    """Theory: a solid line."""
    (line,) = ax.plot(np.asarray(x), np.asarray(y, dtype=float), linestyle=linestyle, linewidth=linewidth,
                      color=color, label=label, alpha=0.9)
    return line


def histogram(ax, samples, *, bins=50, range=None, color=None, label: str | None = None, log: bool = False,
              density: bool = True):
    """Measurement as a distribution: the histogram of ``samples`` pooled over seeds (NaN dropped).

    Drawn as a filled step outline in ``color``; put the theory density over it with
    :func:`theory_line`. ``log=True`` uses a log count axis (for heavy-tailed spectra).

    Returns:
      ``(counts, edges)`` as numpy arrays.
    """
    x = np.asarray(samples.values if hasattr(samples, "values") else samples, dtype=float).ravel()
    x = x[np.isfinite(x)]
    counts, edges = np.histogram(x, bins=bins, range=range, density=density)
    ax.stairs(counts, edges, fill=True, alpha=BAND_ALPHA, color=color)
    ax.stairs(counts, edges, color=color, label=label, linewidth=0.8)
    if log:
        ax.set_yscale("log")
    return counts, edges


def style_legend(ax, *, theory: bool = True, measured: bool = True, loc: str = "best", dashed: str | None = None,
                 **kw):
    """A legend with the curves' labels plus entries explaining the line styles (``dashed``: what dashed
    theory lines are, when a panel has them)."""
    handles, labels = ax.get_legend_handles_labels()
    if theory:
        handles.append(Line2D([], [], color="0.3", linewidth=1.8))
        labels.append("theory")
    if dashed:
        handles.append(Line2D([], [], color="0.3", linewidth=1.8, linestyle="--"))
        labels.append(dashed)
    if measured:
        handles.append(Line2D([], [], color="0.3", linewidth=0.8, marker="o", markersize=3))
        labels.append(f"measured (median, {int(BAND[0] * 100)}–{int(BAND[1] * 100)}% band)")
    return ax.legend(handles, labels, loc=loc, fontsize="small", **kw)


def profile_figure(results, measured: str, *, theory: str | None = None, x: str = "layer",
                   panel: str | None = None, hue: str | None = None, fixed: dict | None = None,
                   ylabel: str | None = None, title: str | None = None, ncols: int = 3, logy: bool = False):
    """Per-layer (or per-``x``) profiles: one panel per ``panel`` value, one colour per ``hue`` value.

    Args:
      results: merged Dataset (``gradjax.io.load_results``).
      measured: name of a variable with dims (seed, x) after selecting ``fixed``, panel and hue.
      theory: name of the matching seed-free variable, or None.
      x: the horizontal dimension (default ``layer``).
      panel, hue: grid coordinates to split by (None: a single panel / colour).
      fixed: ``{coord: value}`` selected first (``results.sel(**fixed)``) for the other grid axes.
      ylabel, title: labels; ``logy`` for a log y axis (for linear magnitudes).

    Returns:
      The ``Figure``.
    """
    ds = results.sel(**fixed) if fixed else results
    panel_values = list(ds[panel].values) if panel else [None]
    hue_values = list(ds[hue].values) if hue else [None]
    cmap = colors(hue_values)
    fig, axes = panels(len(panel_values), ncols=ncols)
    for ax, pv in zip(axes, panel_values):
        sub = ds.sel({panel: pv}) if panel else ds
        for hv in hue_values:
            cur = sub.sel({hue: hv}) if hue else sub
            meas = cur[measured].dropna(x, how="all")
            if meas.size == 0:
                continue
            curve_label = coord_label(hue, hv) if hue else None
            median_band(ax, meas[x].values, meas.transpose(SEED_DIM, x), color=cmap[hv], label=curve_label)
            if theory is not None and theory in cur:
                th = cur[theory].dropna(x, how="all")
                theory_line(ax, th[x].values, th.values, color=cmap[hv])
        ax.set_xlabel(coord_label(x))
        if np.issubdtype(np.asarray(ds[x].values).dtype, np.integer):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ylabel:
            ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        if panel:
            ax.set_title(coord_label(panel, pv), fontsize="medium")
        style_legend(ax, theory=theory is not None)
    if title:
        fig.suptitle(title)
    return fig


def save(fig: Figure, out_dir, name: str, *, formats: Sequence[str] = ("png",)) -> Path:
    """Saves ``fig`` as ``<out_dir>/<name>.<format>`` (first format returned) and frees it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        fig.savefig(path, dpi=DPI)
        paths.append(path)
    fig.clear()
    return paths[0]
