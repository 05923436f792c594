"""``residual``: plain vs residual networks with branch scale α = 1 and α = 1/√L, up to 1,000 layers.

A residual block h_l = h_{l−1} + α (W_l φ(h_{l−1}) + b_l) multiplies E‖δ‖² by f = 1 + α² σ_w² E φ′²
per block (mean field; ``gradjax.theory.gradient_profile``). With He-initialized relu (σ_w² = 2,
E φ′² = ½) and α = 1 that is a factor 2 per block — gradients explode exponentially with depth even
though the plain network at the same σ_w² is exactly critical (f = 1); with α = 1/√L the product
∏(1 + 1/L) stays below e for every depth. For tanh (σ_w² = 1) the residual stream grows (q_l ~ l),
φ′ shrinks along it, and the α = 1 explosion is sub-exponential (Yang & Schoenholz 2017). The same
factors set the mean squared singular value of the end-to-end Jacobian J = ∂h_L/∂h_0,
E[λ] = ∏_l f_l, whose measured spectrum is drawn as a histogram of log10 λ.

Measured: log10‖∂loss/∂h_l‖ per layer with the projection loss Σ y·t / B (the mean-field δ setting,
see ``gradjax.empirical.gradients``), relative to the last layer; singular values of J by SVD in the
working precision (one example's state). Theory lines include Hanin's finite-width drift of the mean
log-norm (``finite_width=True``). A network's mean λ is heavy-tailed across networks (plain relu at
L = 100, N = 128), so the agreement compares the log-normal estimate of log10 E[mean λ] over the seeds
(``gradjax.experiments.estimates``) within 3 of its standard errors — the whole tolerance for the plain
relu net, whose E[λ] = 1 is exact at any width; the residual nets add the mean field's allowance.

References:
  He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
  Yang & Schoenholz 2017, "Mean Field Residual Networks: On the Edge of Chaos", arXiv:1712.08969.
  Hanin & Rolnick 2018, "How to Start Training: The Effect of Initialization and Architecture",
  arXiv:1803.01719 (scaled residual branches keep the output variance bounded).
"""

from __future__ import annotations

import json

import numpy as np

import gradjax.empirical
import gradjax.theory
from gradjax.config import NetConfig
from gradjax.experiments import estimates, figures
from gradjax.experiments.registry import AgreementRow, Experiment, Grid
from gradjax.experiments.sweep import per_device

NAME = "residual"
#: Critical σ_w² of the plain network (σ_b² = 0): He for relu, 1 for tanh.
SIGMA_W2 = {"relu": 2.0, "tanh": 1.0}
#: variant → (arch, residual_scale).
VARIANTS = {"plain": ("mlp", None), "residual": ("resmlp", 1.0), "residual-scaled": ("resmlp", "1/sqrt(L)")}
# λ more than this many decades below a seed's largest are float32 SVD rounding noise (relu's exact
# zeros land there too): not histogrammed.
_FLOOR = 12.0
LABELS = {"plain": "plain", "residual": "residual, α = 1", "residual-scaled": "residual, α = 1/√L"}


def _config(cell) -> NetConfig:
    arch, alpha = VARIANTS[cell["variant"]]
    return NetConfig(depth=cell["depth"], width=cell["width"], arch=arch, residual_scale=alpha,
                     activation=cell["activation"], init="gaussian", sigma_w2=SIGMA_W2[cell["activation"]],
                     sigma_b2=0.0, dtype=cell.dtype)


def theory(cell):
    cfg = _config(cell)
    prof = np.asarray(gradjax.theory.gradient_profile(cfg, batch=cell["batch"], finite_width=True))
    f = gradjax.theory.block_factors(cfg)
    return {
        "grad_norm_theory": (("layer",), prof, {"units": "log10", "what": "E log10‖δ_l‖/‖δ_L‖, with width drift"}),
        "log10_mean_lambda_theory": ((), np.asarray(np.sum(np.log10(np.asarray(f)))),
                                     {"units": "log10", "what": "log10 E[λ] of JJᵀ = Σ log10 f_l"}),
    }


def _profile(keys, *, cfg, batch):
    return gradjax.empirical.gradient_profile(cfg, seeds=keys, batch=batch).hidden  # projection loss


def _spectrum(keys, *, cfg):
    return gradjax.empirical.jacobian_spectrum(cfg, seeds=keys, layers="end", method="svd")[:, 0, :]


def measure(cell, keys):
    cfg = _config(cell)
    g = np.asarray(per_device(_profile, keys, cfg=cfg, batch=cell["batch"]), dtype=float)  # (S, L)
    sv = np.asarray(per_device(_spectrum, keys, cfg=cfg), dtype=float)  # (S, N)
    return {"grad_norm": (("seed", "layer"), g, {"units": "log10", "what": "‖∂loss/∂h_l‖"}),
            "grad_norm_rel": (("seed", "layer"), gradjax.empirical.relative_profile(g), {"units": "log10", "what": "relative to layer L"}),
            "log10_sv": (("seed", "index"), sv, {"units": "log10", "what": "singular values of ∂h_L/∂h_0"})}


def bytes_per_seed(cell) -> int:
    n, L, b = cell["width"], cell["depth"], cell["batch"]
    return 2 * 4 * (L * (n * n + 4 * b * n) + 8 * n * n)


# ---- figures and agreement -----------------------------------------------------------------------

def _log10_lambda(sv):
    """Resolved log10 λ (= 2 log10 s, within ``_FLOOR`` decades of each seed's largest λ) pooled over
    the seeds present (the histogram's values)."""
    sv = np.asarray(sv, dtype=float)
    sv = sv[np.isfinite(sv).any(axis=-1)]
    if sv.size == 0:
        return np.array([])
    u = 2 * sv  # −inf for exact zeros
    resolved = np.isfinite(u) & (u > np.max(u, axis=-1, keepdims=True) - _FLOOR)
    return u[resolved]


def _plot_profiles(results, out_dir, act, params):
    fig = figures.profile_figure(
        results.sel(activation=act), "grad_norm_rel", theory="grad_norm_theory", panel="depth", hue="variant",
        ylabel="log10 ‖δ_l‖ / ‖δ_L‖", ncols=3,
        title=f"{act}, σ_w²={SIGMA_W2[act]:g}, width {params['width']}: gradient-norm profiles, plain vs residual")
    return figures.save(fig, out_dir, f"residual_profiles_{act}")


def _plot_spectra(results, out_dir, act, params):
    ds = results.sel(activation=act)
    depths = list(ds.depth.values)
    variants = list(ds.variant.values)
    cmap = figures.colors(variants)
    fig, axes = figures.panels(len(depths), ncols=3)
    for ax, d in zip(axes, depths):
        for v in variants:
            cur = ds.sel(depth=d, variant=v)
            u = _log10_lambda(cur.log10_sv.transpose("seed", "index").values)
            if u.size == 0:
                continue
            figures.histogram(ax, u, bins=40, color=cmap[v], label=LABELS.get(v, v))
            ax.axvline(float(cur.log10_mean_lambda_theory), color=cmap[v], linewidth=1.8)
        ax.set_xlabel(f"log10 λ  (resolved: λ ≥ 1e-{_FLOOR:g}·max)")
        ax.set_ylabel("density of log10 λ")
        ax.set_title(figures.coord_label("depth", d), fontsize="medium")
        handles, labels = ax.get_legend_handles_labels()
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="0.3", linewidth=1.8))
        labels.append("theory log10 E[λ] = Σ log10 f_l")
        ax.legend(handles, labels, fontsize="x-small", loc="upper left")
    fig.suptitle(f"{act}, width {params['width']}: squared singular values λ of ∂h_L/∂h_0 (measured, pooled over "
                 f"{results.sizes['seed']} seeds)")
    return figures.save(fig, out_dir, f"residual_spectra_{act}")


def plot(results, out_dir):
    params = json.loads(results.attrs["params"])
    paths = []
    for act in results.activation.values:
        if not np.isfinite(results.sel(activation=act).grad_norm_rel.values).any():
            continue
        paths.append(_plot_profiles(results, out_dir, str(act), params))
        paths.append(_plot_spectra(results, out_dir, str(act), params))
    return paths


def agreement(results):
    params = json.loads(results.attrs["params"])
    rows = []
    for act in results.activation.values:
        for v in results.variant.values:
            for d in results.depth.values:
                cur = results.sel(activation=act, variant=v, depth=d)
                g = cur.grad_norm_rel.transpose("seed", "layer").values
                ok = np.isfinite(g[:, 0])
                if not ok.any():
                    continue
                th = float(cur.grad_norm_theory.values[0])
                note = f"width {params['width']}, {int(ok.sum())} seeds"
                where = f"{act}, {LABELS.get(str(v), v)}, L={int(d)}"
                rows.append(AgreementRow(quantity="log10 ‖δ_1‖/‖δ_L‖ (growth over the network)", where=where,
                                         theory=th, measured=float(np.median(g[ok, 0])),
                                         tolerance=max(0.2, 0.05 * abs(th)), metric="absolute", note=note))
                rows.append(_spectrum_row(cur, str(act), str(v), where, params["width"]))
    return rows


def _spectrum_row(cur, activation: str, variant: str, where: str, width: int) -> AgreementRow:
    """log10 E[λ] of JJᵀ: the log-normal estimate over the seeds of each network's mean λ, against Σ log10 f_l.

    The plain relu net (σ_b² = 0, Gaussian W) is exact at any width — a unit's sign flip maps W to an
    equally likely W and swaps its φ′ between 0 and 1, so every block multiplies E‖u D W‖² by σ_w²/2
    whatever came before — and its tolerance is the sampling error alone. The residual blocks are mean
    field here: max(0.3, 5 % of the prediction) decades for the model, combined with the sampling error.
    """
    th = float(cur.log10_mean_lambda_theory)
    per_seed = estimates.log10_mean_square(cur.log10_sv.transpose("seed", "index").values)
    est, se = estimates.log_normal_mean(per_seed)
    exact = activation == "relu" and variant == "plain"
    model = 0.0 if exact else max(0.3, 0.05 * abs(th))
    s = int(np.isfinite(per_seed).sum())
    why = "exact at any width" if exact else "decades of mean field"
    return AgreementRow(quantity="log10 E[λ] of JJᵀ (end-to-end)", where=where, theory=th, measured=est,
                        tolerance=estimates.statistical_tolerance(se, s, model), metric="absolute",
                        note=f"width {width}: log-normal estimate of log10 E[mean λ] over the seeds; "
                             f"{estimates.tolerance_note(se, s, model, why)}")


def _grid(acts, depths, seeds, skip=(), **params):
    cells = [{"activation": a, "variant": v, "depth": d} for a in acts for v in VARIANTS for d in depths
             if (a, v, d) not in skip]
    return Grid(cells=cells, seeds=seeds, params=params)


EXPERIMENT = Experiment(
    name=NAME,
    description=(
        "Plain vs residual networks with α = 1 and α = 1/√L, depth up to 1,000: gradient-norm profiles "
        "(theory + measured) and end-to-end Jacobian spectra.\n"
        "He-initialized relu (σ_w² = 2) and tanh (σ_w² = 1), σ_b² = 0. Residual blocks multiply E‖δ‖² by "
        "1 + α² σ_w² E φ′² per layer: relu with α = 1 explodes by 2× per layer while the plain network is flat "
        "and α = 1/√L stays within a factor e; tanh's α = 1 growth is sub-exponential (Yang & Schoenholz 2017, "
        "arXiv:1712.08969). The relu α = 1 network at L = 1,000 is left out of the full grid: its forward "
        "signal grows as 2^L and overflows float32 (run it with --dtype float64)."
    ),
    sizes={
        # tiny: one variant, since each variant is its own compiled program (seconds each)
        "tiny": _grid(("relu",), (4,), 2, skip={("relu", "plain", 4), ("relu", "residual", 4)}, width=16, batch=8),
        "quick": _grid(("relu",), (10, 100), 16, width=128, batch=32),
        "full": _grid(("relu", "tanh"), (10, 100, 1000), 32, skip={("relu", "residual", 1000)}, width=512, batch=64),
    },
    theory=theory, measure=measure, plot=plot, agreement=agreement, bytes_per_seed=bytes_per_seed,
)
