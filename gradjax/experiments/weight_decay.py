"""``weight-decay``: none / L2 / L1 / decoupled decay on a deep tanh MLP started in the chaotic phase.

Setting: tanh MLP initialized at (σ_w², σ_b²) in the chaotic phase (χ₁ > 1: per-layer gradient norms
spread apart across the depth), trained on the digits with SGD + momentum, with

* ``none``: no regularization;
* ``l2``: the coupled penalty (λ₂/2)·Σ‖W‖² in the loss (its gradient λ₂·W goes through the momentum);
* ``l1``: the coupled penalty λ₁·Σ|W|;
* ``decoupled``: W ← W − η λ W applied after the momentum (Loshchilov & Hutter 2019).

Strengths are chosen to act on the same scale: under momentum β a steady gradient is amplified by
1/(1 − β) = 10, so λ₂ = λ·(1 − β) gives coupled L2 the decoupled decay's shrink rate; λ₁ = λ₂·E|W|
(E|W| = √(2σ_w²/(πN)) at initialization) matches L1's push per entry to L2's at the start.

Measured (median and 10–90 % band across seeds): the weight norms ‖W_l‖ and the effective
σ_w²(l) = ‖W_l‖²_F / N (the variance the mean-field theory would assign to layer l's weights), the
per-layer log10 gradient norms ‖∂loss/∂W_l‖ during training (their spread across layers is the
"gradient-norm band"), and the test accuracy. Theory: only the reference line — the critical σ_w² at
this σ_b² (χ₁ = 1), which the shrinking effective σ_w² crosses; trained weights are not Gaussian,
so no mean-field rate is claimed after training and the experiment has no agreement rows.

References:
  Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", arXiv:1711.05101.
  Krogh & Hertz 1991, "A Simple Weight Decay Can Improve Generalization", NeurIPS 4.
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232 (critical line).
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

import gradjax.theory
import gradjax.train
from gradjax.config import NetConfig
from gradjax.experiments import figures
from gradjax.experiments.registry import Experiment, Grid

NAME = "weight-decay"
REGULARIZERS = ("none", "l2", "l1", "decoupled")
#: Heavy-ball coefficient of the optimizer (SGD + momentum).
MOMENTUM = 0.9
#: Digits: 64 pixels in, 10 classes out.
_IN_DIM, _OUT_DIM = 64, 10
#: Chance accuracy on the 10 digit classes.
CHANCE = 0.1


def _config(cell) -> NetConfig:
    return NetConfig(depth=cell["depth"], width=cell["width"], in_dim=_IN_DIM, out_dim=_OUT_DIM, activation="tanh",
                     init="gaussian", sigma_w2=float(cell["sigma_w2"]), sigma_b2=float(cell["sigma_b2"]),
                     dtype=cell.dtype)


def strengths(cell) -> dict:
    """{"l2": λ₂, "l1": λ₁, "decoupled": λ} from the size's ``decay`` λ (see the module docstring).

    ``cell``: a Cell or any mapping with "decay", "sigma_w2" and "width".
    """
    lam = float(cell["decay"])
    l2 = lam * (1.0 - MOMENTUM)
    mean_abs_w = np.sqrt(2.0 * float(cell["sigma_w2"]) / (np.pi * cell["width"]))  # E|W| of N(0, σ_w²/N)
    return {"l2": l2, "l1": l2 * mean_abs_w, "decoupled": lam}


def _train_config(cell) -> gradjax.train.TrainConfig:
    reg, lam = cell["regularizer"], strengths(cell)
    kw = {"none": {}, "l2": {"l2": lam["l2"]}, "l1": {"l1": lam["l1"]},
          "decoupled": {"weight_decay": lam["decoupled"]}}[reg]
    return gradjax.train.TrainConfig(optimizer="momentum", learning_rate=cell["learning_rate"], momentum=MOMENTUM,
                                     steps=cell["steps"], batch_size=cell["batch"], log_every=cell["log_every"],
                                     **kw)


def theory(cell):
    sb2 = float(cell["sigma_b2"])
    return {
        "critical_sigma_w2_theory": ((), np.asarray(float(gradjax.theory.critical_sigma_w2("tanh", sb2))),
                                     {"what": "σ_w² with χ₁ = 1 at this σ_b²"}),
        "chi1_init_theory": ((), np.asarray(float(gradjax.theory.chi_1("tanh", float(cell["sigma_w2"]), sb2))),
                             {"what": "χ₁ at initialization"}),
    }


def _train(keys, *, cfg, tc):
    """(S, T) accuracy, loss; (S, T, L) weight norms (linear) and log10 weight-gradient norms."""
    hist = gradjax.train.train(cfg, tc, gradjax.train.load_digits(), seeds=keys, progress=False)
    st = lambda a: np.moveaxis(np.asarray(a, dtype=float), 1, 0)  # noqa: E731 — (T, S, …) → (S, T, …)
    return st(hist.accuracy), st(hist.loss), st(hist.weight_norms), st(hist.layer_grad_norms)


def measure(cell, keys):
    cfg, tc = _config(cell), _train_config(cell)
    # gradjax.train.train is a host loop (one jitted chunk per history row, rows read back to numpy), so
    # it cannot run inside per_device's shard_map; called directly, its jitted chunks follow the keys'
    # sharding over the seed mesh, so every device trains its own seeds.
    acc, loss, wn, gn = _train(keys, cfg=cfg, tc=tc)
    steps = np.asarray(tc.row_steps)
    layer = np.arange(1, cfg.depth + 1)
    c2 = {"step": steps}
    c3 = {"step": steps, "layer": layer}
    return {
        "accuracy": xr.DataArray(np.asarray(acc), dims=("seed", "step"), coords=c2, attrs={"what": "test accuracy"}),
        "loss": xr.DataArray(np.asarray(loss), dims=("seed", "step"), coords=c2,
                             attrs={"what": "training cross-entropy (data term only)"}),
        "weight_norm": xr.DataArray(np.asarray(wn), dims=("seed", "step", "layer"), coords=c3,
                                    attrs={"what": "‖W_l‖ Frobenius", "units": "linear"}),
        "grad_norm": xr.DataArray(np.asarray(gn), dims=("seed", "step", "layer"), coords=c3,
                                  attrs={"what": "‖∂loss/∂W_l‖ on the training set", "units": "log10"}),
    }


# ---- figure --------------------------------------------------------------------------------------


def _label(reg: str, p: dict) -> str:
    lam = strengths(p)  # the size's params hold every setting strengths reads
    return {"none": "none", "l2": f"L2 λ₂={lam['l2']:.3g}", "l1": f"L1 λ₁={lam['l1']:.2g}",
            "decoupled": f"decoupled λ={lam['decoupled']:.3g}"}[reg]


def plot(results, out_dir):
    p = json.loads(results.attrs["params"])
    regs = list(results.regularizer.values)
    cmap = figures.colors(regs)
    steps = results.step.values
    n = p["width"]
    crit = float(results.critical_sigma_w2_theory.isel(regularizer=0))
    fig, axes = figures.panels(6, ncols=3, panel_size=(4.6, 3.5))

    def each(ax, fn, **kw):
        for r in regs:
            sub = results.sel(regularizer=r)
            x, v = fn(sub)
            figures.median_band(ax, x, v, color=cmap[r], label=_label(r, p), markersize=2, **kw)

    ax = axes[0]
    each(ax, lambda s: (steps, np.sqrt((s.weight_norm ** 2).sum("layer")).transpose("seed", "step")))
    ax.set_xlabel("update")
    ax.set_ylabel("√Σ_l ‖W_l‖² (all blocks)")
    ax.set_title("total weight norm", fontsize="medium")
    figures.style_legend(ax, theory=False, loc="lower left")

    ax = axes[1]
    each(ax, lambda s: (steps, ((s.weight_norm ** 2) / n).mean("layer").transpose("seed", "step")))
    ax.axhline(crit, color="k", linewidth=1.8, label=f"critical σ_w²={crit:.2f} (χ₁=1)")
    ax.axhline(p["sigma_w2"], color="0.5", linestyle=":", linewidth=1.0, label=f"initial σ_w²={p['sigma_w2']:g}")
    ax.set_xlabel("update")
    ax.set_ylabel("effective σ_w² = mean_l ‖W_l‖²/N")
    ax.set_title("decay shrinks σ_w²: chaotic → across χ₁=1 → ordered", fontsize="medium")
    h, lab = ax.get_legend_handles_labels()
    ax.legend(h[-2:], lab[-2:], fontsize="small", loc="lower left")

    ax = axes[2]
    each(ax, lambda s: (steps, (s.grad_norm.max("layer") - s.grad_norm.min("layer")).transpose("seed", "step")))
    ax.set_xlabel("update")
    ax.set_ylabel("max_l − min_l log10 ‖∂loss/∂W_l‖")
    ax.set_title("width of the per-layer gradient-norm band", fontsize="medium")

    ax = axes[3]
    layer = results.layer.values
    for r in regs:
        sub = results.sel(regularizer=r)
        last = sub.grad_norm.isel(step=-1).transpose("seed", "layer")
        figures.median_band(ax, layer, last, color=cmap[r], label=_label(r, p), markersize=2)
    ax.set_xlabel(figures.coord_label("layer"))
    ax.set_ylabel("log10 ‖∂loss/∂W_l‖")
    ax.set_title(f"per-layer gradient norms after {int(steps[-1])} updates", fontsize="medium")

    ax = axes[4]
    for r in regs:
        sub = results.sel(regularizer=r)
        figures.median_band(ax, layer, (sub.weight_norm.isel(step=-1) ** 2 / n).transpose("seed", "layer"),
                            color=cmap[r], label=_label(r, p), markersize=2)
    ax.axhline(crit, color="k", linewidth=1.8)
    ax.axhline(p["sigma_w2"], color="0.5", linestyle=":", linewidth=1.0)
    ax.set_xlabel(figures.coord_label("layer"))
    ax.set_ylabel("‖W_l‖²/N at the end")
    ax.set_title("effective σ_w² per layer at the end", fontsize="medium")

    ax = axes[5]
    each(ax, lambda s: (steps, s.accuracy.transpose("seed", "step")))
    ax.axhline(CHANCE, color="0.6", linestyle=":", linewidth=0.8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("update")
    ax.set_ylabel("test accuracy")
    ax.set_title("test accuracy", fontsize="medium")
    fig.suptitle(f"tanh MLP on digits, depth {p['depth']}, width {n}, init σ_w²={p['sigma_w2']:g}, "
                 f"σ_b²={p['sigma_b2']:g} (chaotic, χ₁={float(results.chi1_init_theory.isel(regularizer=0)):.2f}); "
                 f"SGD momentum {MOMENTUM}, η={p['learning_rate']}, {results.sizes['seed']} seeds")
    return [figures.save(fig, out_dir, "weight_decay")]


def _grid(seeds, regularizers=REGULARIZERS, decay=0.2, **params):
    return Grid(axes={"regularizer": tuple(regularizers)}, seeds=seeds,
                params={"sigma_w2": 4.0, "sigma_b2": 0.3, "learning_rate": 1e-2, "decay": decay, **params})


EXPERIMENT = Experiment(
    name=NAME,
    description=(
        "None / L2 / L1 / decoupled weight decay on a deep tanh MLP started in the chaotic phase: weight norms, "
        "per-layer gradient-norm bands, accuracy.\n"
        "Digits, SGD with momentum. Strengths act on one scale (λ₂ = λ(1 − β) for coupled L2 under momentum "
        "β; λ₁ = λ₂·E|W|). Decay shrinks the weights: the effective σ_w² = ‖W_l‖²/N moves from the "
        "chaotic side across the critical line (theory: χ₁ = 1, Schoenholz et al. 2017, arXiv:1611.01232) "
        "into the ordered side if training goes on long enough; the spread of per-layer gradient norms "
        "tends to narrow, though with few seeds the band is noisy. Decoupled decay follows Loshchilov & "
        "Hutter 2019 (arXiv:1711.05101). Trained weights are not Gaussian, so no mean-field rate is claimed: "
        "no agreement rows."
    ),
    sizes={
        # tiny: one regularizer, so one compiled training program (each costs seconds to compile)
        "tiny": _grid(2, regularizers=("decoupled",), depth=4, width=8, batch=32, steps=4, log_every=2),
        "quick": _grid(4, depth=30, width=32, batch=128, steps=300, log_every=25),
        # λ scaled with the run length so that η·λ·steps (the decay's total log-shrink, 0.6 in quick) stays alike
        "full": _grid(16, depth=50, width=128, batch=128, steps=3000, log_every=100, decay=0.02),
    },
    theory=theory, measure=measure, plot=plot, agreement=None, headline=False,
)
