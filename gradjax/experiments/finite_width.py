"""``finite-width``: the spread of log gradient norms across seeds, against depth, width and batch.

Mean-field theory predicts the *typical* gradient norm; at finite width N each block multiplies
‖δ‖² (summed over a batch of B examples) by a random factor whose relative variance v_l is derived in
``gradjax.theory.gradients`` (module docstring): Hanin's (3 μ₂/μ₁² − 1)/N at B = 1 (relu: 5/N), and
for B examples through the same weights (directions independent) the per-example part divided by B
plus what the examples share — the weights, and the derivative pattern as far as their
pre-activations are correlated, growing as their back-propagated directions align with depth. So
log‖δ_l‖ − log‖δ_L‖ has a standard deviation across initializations of

    ½ √(Σ_{k>l} v_k) / ln 10   (log10 units; ``gradjax.theory.gradient_spread``),

and its mean sits off mean field by the drift Σ_{k>l} shift_k/(2 ln 10) (``gradient_profile``'s
finite-width form minus ``finite_width=False``; ``gradjax.theory.finite_width_shift``): −v_k/2, the forward
length's own drift and the batch sum's re-weighting of the examples by their forward length (tanh: positive
at B > 1), and the shift from the forward and backward pass sharing W_l (tanh: towards vanishing).

Setup: MLP at initialization, three networks — relu with He init (σ_w² = 2, σ_b² = 0, Hanin's case),
tanh at its critical point with xavier_normal (σ_w² = 1, σ_b² = 0) and chaotic tanh (σ_w² = 4,
σ_b² = 0.3) — each at several widths N and batches B, measured at the defaults of
``gradjax.empirical.gradient_profile`` (projection loss ⟨y, t⟩/B with Gaussian t: the cotangent
entering the network is independent of the weights, the setting of the theory). Measured: the std
across seeds of log10 ‖δ_l‖ − log10 ‖δ_L‖ for every layer, with a bootstrap 10–90 % band of that std
(resampling seeds), against the theory line; the spread after all L − 1 blocks against the width and
against the batch. Every cell is measured twice on the same seeds: the networks themselves, and their
gradient-independence control (``backward="independent"``: the same forward pass, each block's backward
Jacobian through an independent copy of its weights), the setting the theory assumes. The agreement table
compares, per cell with N ≥ 64, the full-depth spread and the drift (seed mean minus the mean-field value)
within 25%, for the networks (``theory.gradient_spread`` / ``gradient_profile``) and for the control (the same
with ``backward="independent"``). At B ≥ N the forward pass fixes every W_l on the whole input space (the span of
the batch's inputs), outside the theory's derivation; it is drawn and compared there as well, where it was measured
to hold (``gradjax.theory.gradient_spread``).

The shared weights between examples (``gradjax.theory.gradients``, module docstring). The control has
gradient independence's law. The networks differ from it at B > 1 by what the weights shared by the two passes
do between examples. Critical tanh: each example's backward component along another example's input carries
that example's forward gains, which move the other example's log-norm the opposite way, so two examples' log-norms
covary less than under gradient independence; a batch then spreads less and re-weights its examples more. relu:
each example's component along its own input is conserved and carries its own forward gains, which the strongly
correlated examples share, so they covary more; a batch spreads more and drifts further down. The theory predicts
both (L = 30, 8192 seeds, measured against predicted: critical tanh, N = 64, B = 8, spread 0.115 against 0.118, drift
−0.031 against −0.030, the control 0.133 against 0.136; relu, N = 64, drift −0.114 against −0.114 at B = 8 and
−0.082 against −0.082 at B = 64, the control −0.065 against −0.060). N = 16 is outside the regime (Σ v ≈ 1) and
drawn only.

References:
  Hanin 2018, "Which Neural Net Architectures Give Rise to Exploding and Vanishing Gradients?",
  arXiv:1801.03744 (Thm 1: the variance of log‖δ‖² grows with Σ 1/n_l).
  Hanin & Nica 2019, "Products of Many Large Random Matrices and Gradients in Deep Neural Networks",
  arXiv:1812.05994 (log-normal limit for depth/width fixed).
"""

from __future__ import annotations

import json

import numpy as np
from matplotlib.ticker import MaxNLocator

import gradjax.empirical
import gradjax.theory
from gradjax.config import NetConfig
from gradjax.experiments import figures
from gradjax.experiments.registry import AgreementRow, Experiment, Grid
from gradjax.experiments.sweep import per_device

#: The networks: NetConfig fields of each (σ_b² = 0 unless given).
NETS = {
    "relu-he": {"activation": "relu", "init": "he_normal"},
    "tanh-critical": {"activation": "tanh", "init": "xavier_normal"},
    "tanh-chaotic": {"activation": "tanh", "init": "gaussian", "sigma_w2": 4.0, "sigma_b2": 0.3},
}
LABELS = {"relu-he": "relu, He (σ_w²=2)", "tanh-critical": "tanh, σ_w²=1, σ_b²=0 (critical)",
          "tanh-chaotic": "tanh, σ_w²=4, σ_b²=0.3 (chaotic)"}
BOOTSTRAP = 400  # resamples of the seeds for the band of the std (its 10–90 % quantiles settle by ~200)
BOOTSTRAP_SEED = 0  # fixed: the band of a stored result is reproducible
REL_TOL = 0.25  # agreement tolerance on spread and drift (relative to the prediction)
DRIFT_SE = 2  # the drift rows add this many standard errors of the measured seed mean (sd/√S) to REL_TOL·|drift|
MIN_ROW_WIDTH = 64  # narrower cells are drawn, not tabled: Σ v_k is not small there


def config_of(cell) -> NetConfig:
    return NetConfig(depth=cell["depth"], width=cell["width"], dtype=cell.dtype, **NETS[cell["net"]])


def theory(cell):
    cfg = config_of(cell)
    b = cell["batch"]
    mf = np.asarray(gradjax.theory.gradient_profile(cfg, batch=b, finite_width=False))
    fw = np.asarray(gradjax.theory.gradient_profile(cfg, batch=b, finite_width=True))
    fw_control = np.asarray(gradjax.theory.gradient_profile(cfg, batch=b, finite_width=True, backward="independent"))
    spread = np.asarray(gradjax.theory.gradient_spread(cfg, batch=b))
    spread_control = np.asarray(gradjax.theory.gradient_spread(cfg, batch=b, backward="independent"))
    what = "std across seeds of log10‖δ_l‖ − log10‖δ_L‖"
    return {
        "spread_theory": (("layer",), spread, {"units": "log10", "what": what}),
        "spread_control_theory": (("layer",), spread_control, {"units": "log10", "what": what + ", backward through "
                                                               "independent copies of the weights"}),
        "grad_theory": (("layer",), fw, {"units": "log10", "what": "mean of log10‖δ_l‖/‖δ_L‖, finite width"}),
        "grad_control_theory": (("layer",), fw_control, {"units": "log10", "what": "mean of log10‖δ_l‖/‖δ_L‖, "
                                                         "finite width, backward through independent copies"}),
        "grad_meanfield_theory": (("layer",), mf, {"units": "log10", "what": "mean field (N → ∞)"}),
    }


def _grad(keys, cfg, batch, backward):
    return gradjax.empirical.gradient_profile(cfg, seeds=keys, batch=batch, backward=backward).hidden


def measure(cell, keys):
    cfg, b = config_of(cell), cell["batch"]
    g = per_device(_grad, keys, cfg=cfg, batch=b, backward="shared")
    c = per_device(_grad, keys, cfg=cfg, batch=b, backward="independent")
    return {"grad": (("seed", "layer"), g, {"units": "log10", "what": "‖∂loss/∂h_l‖, projection loss ⟨y,t⟩/B"}),
            "grad_control": (("seed", "layer"), c, {"units": "log10", "what": "the same networks' ‖∂loss/∂h_l‖ "
                                                    "with the backward pass through independent copies of the "
                                                    "weights (gradient independence)"})}


def _relative(da):
    """(S, L) numpy: log10 ‖δ_l‖ − log10 ‖δ_L‖ per seed (seeds with a missing value dropped)."""
    g = da.transpose("seed", "layer").values
    return gradjax.empirical.relative_profile(g[np.all(np.isfinite(g), axis=1)])


def _std_band(rel):
    """Sample std across seeds (axis 0) and its bootstrap 10–90 % quantiles: (3, …) lo, std, hi."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    s = rel.shape[0]
    boots = np.stack([rel[rng.integers(0, s, s)].std(axis=0, ddof=1) for _ in range(BOOTSTRAP)])
    lo, hi = np.quantile(boots, figures.BAND, axis=0)
    return np.stack([lo, rel.std(axis=0, ddof=1), hi])


def _values(results, name):
    return [v.item() if hasattr(v, "item") else v for v in results[name].values]


def _against(ax, results, net, axis):
    """Full-depth spread of ``net`` against ``axis`` ("width" or "batch"), one line per value of the other."""
    other = "batch" if axis == "width" else "width"
    xs = _values(results, axis)
    for i, o in enumerate(_values(results, other)):
        sel = {"net": net, other: o}
        th = [float(results["spread_theory"].sel(**sel, **{axis: x}).values[0]) for x in xs]
        th_control = [float(results["spread_control_theory"].sel(**sel, **{axis: x}).values[0]) for x in xs]
        band = np.stack([_std_band(_relative(results["grad"].sel(**sel, **{axis: x})))[:, 0] for x in xs])
        control = [float(_relative(results["grad_control"].sel(**sel, **{axis: x}))[:, 0].std(ddof=1)) for x in xs]
        color = f"C{i}"
        figures.theory_line(ax, xs, th, color=color)
        figures.theory_line(ax, xs, th_control, color=color, linestyle=":", linewidth=1.2)
        ax.plot(xs, band[:, 1], marker="o", markersize=3, linewidth=0.8, color=color, label=f"{other} {o}")
        ax.fill_between(xs, band[:, 0], band[:, 2], color=color, alpha=figures.BAND_ALPHA, linewidth=0)
        ax.plot(xs, control, marker="x", markersize=3, linewidth=0.8, linestyle="--", color=color)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(figures.coord_label(axis))
    ax.set_title(f"{LABELS[net]}: against {axis}", fontsize="small")


def plot(results, out_dir):
    nets = _values(results, "net")
    widths, batches = _values(results, "width"), _values(results, "batch")
    L = json.loads(results.attrs["params"])["depth"]
    fig, axes = figures.panels(3 * len(nets), ncols=3, panel_size=(4.4, 3.4))
    cmap = figures.colors(widths, cmap="viridis" if len(widths) > 6 else None)
    for r, net in enumerate(nets):
        ax = axes[3 * r]
        b = batches[-1]
        for w in widths:
            sub = results.sel(net=net, width=w, batch=b)
            blocks = L - sub.layer.values  # blocks traversed from h_L back to h_l
            lo, sd, hi = _std_band(_relative(sub["grad"]))
            ax.plot(blocks, sd, marker="o", markersize=2, linewidth=0.8, color=cmap[w], label=f"N={w}")
            ax.fill_between(blocks, lo, hi, color=cmap[w], alpha=figures.BAND_ALPHA, linewidth=0)
            figures.theory_line(ax, blocks, sub["spread_theory"].values, color=cmap[w])
            figures.theory_line(ax, blocks, sub["spread_control_theory"].values, color=cmap[w], linestyle=":",
                                linewidth=1.2)
        ax.set_xlabel("blocks traversed  L − l")
        ax.set_ylabel("std across seeds of log10‖δ_l‖/‖δ_L‖")
        ax.set_title(f"{LABELS[net]}, batch {b}", fontsize="small")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _legend(ax)
        for k, axis in enumerate(("width", "batch")):
            _against(axes[3 * r + 1 + k], results, net, axis)
            axes[3 * r + 1 + k].set_ylabel(f"spread after L−1 = {L - 1} blocks")
            _legend(axes[3 * r + 1 + k], control=True)
    fig.suptitle(f"Finite-width spread of log gradient norms (MLP, L={L}, {results.sizes['seed']} seeds, "
                 "projection loss ⟨y,t⟩/B): against depth, width and batch")
    return [figures.save(fig, out_dir, "finite_width")]


def _legend(ax, control=False):
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="0.3", linewidth=1.8),
                Line2D([], [], color="0.3", linewidth=0.8, marker="o", markersize=3)]
    labels += ["theory", "measured std (bootstrap 10–90%)"]
    handles.append(Line2D([], [], color="0.3", linewidth=1.2, linestyle=":"))
    labels.append("theory, independent copies")
    if control:
        handles.append(Line2D([], [], color="0.3", linewidth=0.8, linestyle="--", marker="x", markersize=3))
        labels.append("measured, independent copies")
    ax.legend(handles, labels, fontsize="x-small", loc="best")


def agreement(results):
    L = json.loads(results.attrs["params"])["depth"]
    rows = []
    for net in _values(results, "net"):
        for w in [w for w in _values(results, "width") if w >= MIN_ROW_WIDTH]:
            for b in _values(results, "batch"):
                sub = results.sel(net=net, width=w, batch=b)
                where = f"{net}, N={w}, B={b}, L={L}"
                mf = float(sub["grad_meanfield_theory"].values[0])
                for name, suffix, label in (("grad", "", ""), ("grad_control", "_control",
                                                               ", backward through independent copies")):
                    rel = _relative(sub[name])[:, 0]
                    s = rel.shape[0]
                    sd = float(rel.std(ddof=1))
                    spread = float(sub[f"spread{suffix}_theory"].values[0])
                    if np.isfinite(spread):  # a non-finite prediction gives no row
                        rows.append(AgreementRow(
                            quantity=f"std across seeds of log10‖δ_1‖/‖δ_L‖{label}", where=where,
                            theory=spread, measured=sd, tolerance=REL_TOL,
                            note=f"{s} seeds, standard error of the std {100 * std_relative_error(rel):.1f}% "
                                 f"(½√(2/(S−1) + γ₂/S)); "
                                 + ("gradient independence, which the control has" if suffix else
                                    "with the weights shared between examples (K and J)")))
                    drift = float(sub[f"grad{suffix}_theory"].values[0]) - mf
                    se = sd / np.sqrt(s)
                    rows.append(AgreementRow(
                        quantity=f"finite-width drift of mean log10‖δ_1‖/‖δ_L‖ below mean field{label}", where=where,
                        theory=drift, measured=float(rel.mean()) - mf, tolerance=REL_TOL * abs(drift) + DRIFT_SE * se,
                        metric="absolute",
                        note=f"{s} seeds; tolerance 25% of the prediction + {DRIFT_SE} standard errors of the "
                             f"measured mean ({se:.4f}): at B ≥ 8 and N = 256 the drift is a few thousandths of a "
                             "decade" + ("; without the shared-weight terms (Δ, K)" if suffix else "")))
    return rows


def std_relative_error(x):
    """Standard error of the sample std of ``x`` (S,), relative to it: ½ √(2/(S−1) + γ₂/S).

    Var(s²) = σ⁴ (2/(S−1) + γ₂/S) for a sample of excess kurtosis γ₂, and s.e.(s)/σ is half the relative
    s.e. of s² (delta method); a Gaussian sample (γ₂ = 0) gives 1/√(2(S−1)), 4.4% at S = 256.
    """
    x = np.asarray(x, float)
    S = x.shape[0]
    d = x - x.mean()
    g2 = float(np.mean(d**4) / np.mean(d**2) ** 2 - 3.0)
    return 0.5 * float(np.sqrt(max(2.0 / (S - 1) + g2 / S, 0.0)))


def _grid(nets, widths, batches, seeds, depth):
    return Grid(axes={"net": nets, "width": widths, "batch": batches}, seeds=seeds, params={"depth": depth})


EXPERIMENT = Experiment(
    name="finite-width",
    description=(
        "Spread (std across seeds) and drift of log10 gradient norms vs depth, width and batch: measured against "
        "½√(Σ v_k)/ln10 and Σ shift_k/(2 ln10) (−v_k/2 plus the forward-length and shared-weight shifts), v_k the "
        "per-block relative variance at width N and batch B (Hanin's (3μ₂/μ₁²−1)/N at B=1), for relu (He), "
        "critical tanh and chaotic tanh.\n"
        "Measured at gradjax.empirical's defaults (projection loss ⟨y,t⟩/B: a cotangent independent of the "
        "weights, the theory's setting). The band is a bootstrap 10–90% interval of the std over seeds. A batch "
        "averages the per-example fluctuation (∝ 1/B) but not what the examples share: the weights, the derivative "
        "pattern as far as their inputs are correlated, and their back-propagated directions, which align with "
        "depth. The theory treats the backward pass's weights as independent of the forward pass's (gradient "
        "independence), and every cell is measured twice: the networks, and their gradient-independence control "
        "(backward through independent copies of the weights; theory with backward='independent'). At B > 1 the "
        "shared weights change two examples' covariance, and the theory carries it: lower for critical tanh (each "
        "example's component along the other's input), higher for relu (each one's own component, conserved, "
        "carries its forward gains, which the correlated examples share). At B ≥ N the forward pass fixes the "
        "weights on the whole input space, outside the derivation, where the same prediction was measured to "
        "hold. The drift adds the forward length's drift, the examples' re-weighting by their "
        "forward length, and for the networks the shared weights' shift per example (exact at B = 1)."
    ),
    sizes={
        "tiny": _grid(("relu-he",), (4, 8), (4,), 4, 4),  # B = N = 4 and B < N
        "quick": _grid(tuple(NETS), (16, 64, 256), (1, 8, 64), 256, 30),
        "full": _grid(tuple(NETS), (16, 32, 64, 128, 256, 512, 1024), (1, 4, 16, 64, 256), 1024, 100),
    },
    theory=theory, measure=measure, plot=plot, agreement=agreement,
    bytes_per_seed=lambda cell: 8 * cell["depth"] * (2 * cell["width"] ** 2 + 4 * cell["batch"] * cell["width"]),
)
