"""``saturation``: sigmoid and tanh gradients vanish with depth, the ReLU family's stay flat.

A depth-50 MLP at initialization, one standard initialization per activation:

* sigmoid, tanh: ``xavier_normal`` (square layers: σ_w² = 1, Glorot & Bengio 2010);
* relu, leaky_relu (slope 0.01), gelu: ``he_normal`` (σ_w² = 2, He et al. 2015);

and biases ~ N(0, σ_b² = 0.05) for all (the value of Schoenholz et al. 2017; with σ_b² = 0, tanh at
σ_w² = 1 sits exactly on the critical point, q_l → 0 and its gradient decays only like a power law).

Measured across seeds (``gradjax.empirical``): log10 ‖∂loss/∂h_l‖ per layer at the measurement's
defaults (the projection loss ⟨y, t⟩/B on unit Gaussian inputs and directions t), drawn relative to the
output layer's (``GradNorms.relative()``), and the fraction of saturated
units (|φ′| < 10⁻², sigmoid/tanh) or dead units (pre-activation ≤ 0 for the whole batch, ReLU family)
per layer. Theory (``gradjax.theory.gradient_profile``): the mean-field profile ½ Σ_{k>l} log10 f_k,
f_k = σ_w² E[φ′(√q_{k−1} z)²] along the q-trajectory, for the same loss and batch; the agreement
compares the fitted slope per layer. The line is ``gradient_profile``'s default form for an MLP: with
the finite-width drift at this width and batch (a few thousandths of a decade per layer here).

Why the loss matters: with an mse loss the relu / leaky_relu gradients rise by ≈ 0.4 decades over the
top ~10 layers and are flat below. The mse cotangent (y − t) W_outᵀ contains the forward signal φ(h_L),
and a positively homogeneous network has h_L ≈ J h_l (J = ∂h_L/∂h_l), so the cotangent is correlated
with the Jacobians it travels back through — against the gradient-independence assumption of the
theory, which therefore models only the projection loss (``gradjax.theory.gradient_profile`` refuses
``loss="mse"``). Measured at width 128, 16 seeds: rise at layer 1 of +0.42 decades (mse), +0.07
(cross-entropy with random labels), +0.05 (projection).

Why they vanish here: sigmoid's φ′ ≤ ¼ gives χ₁ = σ_w² E φ′² ≈ 0.06, a factor ≈ 0.24 per layer on
‖δ‖, with no saturation at all (its pre-activations stay small: the vanishing is the derivative's
ceiling, not saturation). tanh at σ_w² = 1, σ_b² > 0 is in the ordered phase (χ₁ < 1, slow
exponential decay). relu/leaky_relu with He init have χ₁ = 1 exactly (flat), at the price of half
the units being off for each input — and, as the inputs' correlation c_l → 1 with depth, more and
more units are off for the whole batch ("dead", ≈ 40 % by layer 30 at width 128); gelu with σ_w² = 2
is slightly ordered (its own critical σ_w² is larger), so its gradient vanishes too, more slowly. At
batch 64 gelu's measured slope sits below the prediction by an O(1/N) amount the finite-width theory
does not model (:data:`NOT_MODELLED`: measured at four widths, and the same with ``jax.random.normal``
draws); its agreement row shows both numbers and gives no verdict.

References:
  Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward neural networks" (AISTATS).
  He et al. 2015, "Delving Deep into Rectifiers", arXiv:1502.01852.
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232.
  Hanin 2018, "Which Neural Net Architectures Give Rise to Exploding and Vanishing Gradients?", arXiv:1801.03744.
  Lu et al. 2019, "Dying ReLU and Initialization", arXiv:1903.06733.
"""

from __future__ import annotations

import json

import numpy as np

import gradjax.empirical
import gradjax.theory
from gradjax.config import NetConfig
from gradjax.experiments import figures
from gradjax.experiments.registry import AgreementRow, Experiment, Grid
from gradjax.experiments.sweep import per_device

#: The standard initialization of each activation (see the module docstring).
INITS = {"sigmoid": "xavier_normal", "tanh": "xavier_normal", "relu": "he_normal", "leaky_relu": "he_normal",
         "gelu": "he_normal"}
SATURATING = ("sigmoid", "tanh")
SIGMA_B2 = 0.05  # bias variance (Schoenholz et al. 2017's choice; puts tanh at σ_w² = 1 in the ordered phase)
# Agreement tolerance on the fitted slope (log10 per layer): 10 % of the predicted slope plus 0.003
# (about the seed-median's wobble of a 16-seed, width-128 profile over 50 layers).
REL_TOL, ABS_TOL = 0.10, 0.003
#: Activations whose finite-batch profile the theory does not model, with why (the row shows theory and
#: measurement and gives no verdict). gelu (neither odd nor scale-free) at batch B > 1 departs from the
#: mean field by an O(1/N) amount of the opposite sign to the predicted drift; measured (per-seed fitted
#: slopes, mean ± SE, depth 50, σ_b² = 0.05, B = 64): N = 64: 0.0750 ± 0.0053, 128: 0.081 ± 0.003
#: (48 seeds, with jax.random.normal draws 0.080 ± 0.002), 256: 0.0882 ± 0.0020, 512: 0.0899 ± 0.0017,
#: against 0.0942 (mean field) and 0.0958 at N = 128 (with the drift); at B = 1, N = 128 the theory
#: holds: 0.0939 ± 0.0029 against 0.0978.
NOT_MODELLED = {
    "gelu": "not modelled: gelu at batch > 1 departs from the mean field by O(1/N), opposite to the predicted "
            "drift (per-seed slope 0.075, 0.081, 0.088, 0.090 at N = 64, 128, 256, 512 vs 0.094); the theory "
            "holds at batch 1 (N = 128: 0.094 ± 0.003 vs 0.098)",
}


def config_of(cell) -> NetConfig:
    act = cell["activation"]
    return NetConfig(depth=cell["depth"], width=cell["width"], activation=act, init=INITS[act], sigma_b2=SIGMA_B2,
                     dtype=cell.dtype)


def theory(cell):
    cfg = config_of(cell)
    return {
        "grad_theory": (("layer",), np.asarray(gradjax.theory.gradient_profile(cfg, batch=cell["batch"])),
                        {"units": "log10", "relative_to": "layer L", "note": "mean field with the width-N, batch-B drift"}),
    }


def _measure(keys, cfg, batch):
    g = gradjax.empirical.gradient_profile(cfg, seeds=keys, batch=batch).hidden
    st = gradjax.empirical.activation_stats(cfg, seeds=keys, batch=batch)
    return g, st.saturation, st.dead


def measure(cell, keys):
    g, sat, dead = per_device(_measure, keys, cfg=config_of(cell), batch=cell["batch"])
    return {
        "grad": (("seed", "layer"), g, {"units": "log10", "what": "‖∂loss/∂h_l‖, projection loss ⟨y,t⟩/B"}),
        "saturated": (("seed", "layer"), sat, {"units": "fraction", "what": "|φ′(preact)| < 1e-2"}),
        "dead": (("seed", "layer"), dead, {"units": "fraction", "what": "units with preact ≤ 0 on the whole batch"}),
    }


def _relative(results, act):
    """(S, L) measured log10 ‖δ_l‖ − log10 ‖δ_L‖ per seed (numpy)."""
    return gradjax.empirical.relative_profile(results["grad"].sel(activation=act).transpose("seed", "layer").values)


def plot(results, out_dir):
    acts = [str(a) for a in results.activation.values]
    cmap = figures.colors(acts)
    layers = results.layer.values
    fig, (ax_g, ax_s) = figures.panels(2, ncols=2, panel_size=(5.2, 3.8))
    for act in acts:
        sub = results.sel(activation=act)
        label = f"{act} ({INITS[act]}, σ_w²={2 if INITS[act] == 'he_normal' else 1})"
        figures.median_band(ax_g, layers, _relative(results, act), color=cmap[act], label=label)
        figures.theory_line(ax_g, layers, sub["grad_theory"].values, color=cmap[act])
        frac = sub["saturated"] if act in SATURATING else sub["dead"]
        kind = "saturated" if act in SATURATING else "dead"
        figures.median_band(ax_s, layers, frac.transpose("seed", "layer"), color=cmap[act], label=f"{act}: {kind}")
    ax_g.set_xlabel(figures.coord_label("layer"))
    ax_g.set_ylabel("log10 ‖∂loss/∂h_l‖ − log10 ‖∂loss/∂h_L‖")
    ax_g.set_title("gradient norm per layer (relative to the output)", fontsize="medium")
    figures.style_legend(ax_g, loc="lower right")
    ax_s.set_xlabel(figures.coord_label("layer"))
    ax_s.set_ylabel("fraction of units")
    ax_s.set_title("saturated (|φ′|<1e-2; sigmoid, tanh) / dead (ReLU family)", fontsize="medium")
    fractions = np.concatenate([results["saturated"].values.ravel(), results["dead"].values.ravel(), [0.02]])
    top = np.nanmax(fractions)  # one of the two is all-nan when a grid has only one family
    ax_s.set_ylim(-0.02 * top, 1.15 * top)
    figures.style_legend(ax_s, theory=False, loc="upper left")
    p = json.loads(results.attrs["params"])
    fig.suptitle(f"MLP depth {p['depth']}, width {p['width']}, σ_b²={SIGMA_B2}, {results.sizes['seed']} seeds")
    return [figures.save(fig, out_dir, "saturation")]


def agreement(results):
    p = json.loads(results.attrs["params"])
    rows = []
    for act in [str(a) for a in results.activation.values]:
        th = results["grad_theory"].sel(activation=act).values
        meas = np.median(_relative(results, act), axis=0)
        t = float(gradjax.empirical.fitted_slope(th))
        note = (f"width {p['width']}, batch {p['batch']}, {results.sizes['seed']} seeds, seed median of the profile "
                "relative to layer L; projection loss, theory at the same width and batch")
        modelled = act not in NOT_MODELLED
        rows.append(AgreementRow(
            quantity="fitted slope of log10‖δ_l‖ per layer", where=f"{act}, {INITS[act]}, L={p['depth']}",
            theory=t, measured=float(gradjax.empirical.fitted_slope(meas)),
            tolerance=REL_TOL * abs(t) + ABS_TOL if modelled else None, metric="absolute",
            note=note + ("; tolerance 10% of theory + 0.003" if modelled else "; " + NOT_MODELLED[act]),
        ))
    return rows


def _grid(activations, seeds, **params):
    return Grid(axes={"activation": activations}, seeds=seeds, params=params)


_ALL = ("sigmoid", "tanh", "relu", "leaky_relu", "gelu")

EXPERIMENT = Experiment(
    name="saturation",
    description=(
        "Per-layer gradient norms at depth 50: sigmoid and tanh (xavier, σ_w²=1) vanish, relu/leaky_relu (He, "
        "σ_w²=2) stay flat, gelu (He) vanishes slowly; with saturated/dead-unit fractions per layer.\n"
        "Theory lines: mean-field profile ½Σ log10 σ_w²E[φ′²] along the q-trajectory with the finite-width drift; σ_b²=0.05 for all; projection "
        "loss ⟨y,t⟩/B on Gaussian inputs/directions (the measurement's default, the loss the mean field models). Sigmoid's vanishing comes from φ′ ≤ ¼ (χ₁ ≈ 0.06), not from saturation: at "
        "this init its units are not saturated, and tanh's saturated fraction is also small; the ReLU family "
        "pays for flat gradients with dead units: as the inputs' correlation grows with depth, units go off for the "
        "whole batch (≈40 % by layer 30 at width 128). With an mse loss instead, the relu-family gradients rise "
        "≈0.4 decades over the top ~10 layers (the loss cotangent contains the forward signal, which a "
        "positively homogeneous net aligns with its Jacobian), which the mean field does not model."
    ),
    sizes={
        "tiny": _grid(("relu",), 2, depth=4, width=8, batch=4),
        "quick": _grid(_ALL, 16, depth=50, width=128, batch=64),
        "full": _grid(_ALL, 128, depth=50, width=1024, batch=256),
    },
    theory=theory, measure=measure, plot=plot, agreement=agreement,
    bytes_per_seed=lambda cell: 8 * cell["depth"] * (cell["width"] ** 2 + 4 * cell["batch"] * cell["width"]),
    headline=True,
)
