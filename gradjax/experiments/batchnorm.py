"""``batchnorm``: gradients explode through batch normalization at initialization, at the theory rate.

A deep MLP with batch normalization in every block (h_l = W_l φ(BN(h_{l−1})) + b_l) has, at
initialization and for any σ_w², gradients ∂loss/∂h_l that grow geometrically towards the input:
E‖δ‖² is multiplied by λ_B > 1 per layer (Yang et al. 2019; ``gradjax.theory.batchnorm_rate``: for
relu at large batch λ → π/(π−1), for linear φ exactly (B−2)/(B−3)). Layer normalization and no
normalization at the critical σ_w² keep them flat (mean-field factors from
``gradjax.theory.gradient_profile``). Measured: log10‖δ_l‖ per layer (``gradjax.empirical``), with the
projection loss Σ y·t / B on random targets t, the setting of the mean-field δ recursion (an mse
residual would carry the forward signal, see ``gradjax.empirical.gradients``), drawn relative to the
last layer; the per-layer growth rate is minus the least-squares slope of log10‖δ_l‖ against l over
layers 2 … L−2 (:func:`_fit_window`).

References:
  Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz 2019, "A Mean Field Theory of Batch
  Normalization", arXiv:1902.08129.
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232.
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np

import gradjax.empirical
import gradjax.theory
from gradjax.config import NetConfig
from gradjax.experiments import figures
from gradjax.experiments.registry import AgreementRow, Experiment, Grid
from gradjax.experiments.sweep import per_device

NAME = "batchnorm"
#: Critical weight variance of each activation without normalization (σ_b² = 0): χ₁ = 1.
SIGMA_W2 = {"relu": 2.0, "tanh": 1.0, "linear": 1.0}


def _config(cell) -> NetConfig:
    return NetConfig(depth=cell["depth"], width=cell["width"], activation=cell["activation"], init="gaussian",
                     sigma_w2=SIGMA_W2[cell["activation"]], sigma_b2=0.0, norm=cell["norm"], dtype=cell.dtype)


def _fit_window(depth: int) -> tuple[int, int]:
    """Layers [start, stop) of the slope fit: skip the first layer (input transient) and the last
    ones, where the loss cotangent has not yet been mixed by the blocks above."""
    return 1, max(2, depth - 2)


def _rate(log_norms: np.ndarray, depth: int) -> np.ndarray:
    """−(least-squares slope of log10‖δ_l‖ against l) over the fit window: (…, L) → (…)."""
    start, stop = _fit_window(depth)
    return np.asarray(gradjax.empirical.growth_rate(jnp.asarray(log_norms), start=start, stop=stop), dtype=float)


def theory(cell):
    cfg = _config(cell)
    prof = np.asarray(gradjax.theory.gradient_profile(cfg, batch=cell["batch"]))
    out = {"grad_norm_theory": (("layer",), prof, {"units": "log10", "what": "log10‖δ_l‖ − log10‖δ_L‖"}),
           "rate_theory": ((), np.asarray(_rate(prof, cfg.depth)), {"units": "log10 per layer"})}
    if cfg.norm == "batchnorm":
        lam = float(gradjax.theory.batchnorm_rate(cfg.activation, cell["batch"]))
        out["rate_theory"] = ((), np.asarray(0.5 * np.log10(lam)), {"units": "log10 per layer", "what": "½ log10 λ_B"})
    return out


def _profile(keys, *, cfg, batch):
    return gradjax.empirical.gradient_profile(cfg, seeds=keys, batch=batch).hidden  # projection loss


def measure(cell, keys):
    cfg = _config(cell)
    g = np.asarray(per_device(_profile, keys, cfg=cfg, batch=cell["batch"]), dtype=float)  # (S, L) log10
    return {"grad_norm": (("seed", "layer"), g, {"units": "log10", "what": "‖∂loss/∂h_l‖"}),
            "grad_norm_rel": (("seed", "layer"), gradjax.empirical.relative_profile(g), {"units": "log10", "what": "relative to layer L"}),
            "rate": (("seed",), _rate(g, cfg.depth), {"units": "log10 per layer"})}


def bytes_per_seed(cell) -> int:
    n, L, b = cell["width"], cell["depth"], cell["batch"]
    return 2 * 4 * L * (n * n + 4 * b * n)


def plot(results, out_dir):
    params = json.loads(results.attrs["params"])
    fig = figures.profile_figure(
        results, "grad_norm_rel", theory="grad_norm_theory", panel="activation", hue="norm",
        ylabel="log10 ‖δ_l‖ / ‖δ_L‖  (δ_l = ∂loss/∂h_l)", ncols=3,
        title=(f"Gradients at init (L={params['depth']}, N={params['width']}, B={params['batch']}):\n"
               "batchnorm explodes at ½ log10 λ_B per layer"))
    return [figures.save(fig, out_dir, "batchnorm_profiles")]


def agreement(results):
    params = json.loads(results.attrs["params"])
    rows = []
    for act in results.activation.values:
        for norm in results.norm.values:
            cur = results.sel(activation=act, norm=norm)
            if not np.isfinite(cur.rate.values).any():
                continue
            rows.append(AgreementRow(
                quantity="gradient growth per layer (log10)", where=f"{act}, {norm}, L={params['depth']}",
                theory=float(cur.rate_theory), measured=float(np.nanmedian(cur.rate.values)), tolerance=0.01,
                metric="absolute",
                note=(f"width {params['width']}, batch {params['batch']}, {results.sizes['seed']} seeds; theory "
                      + ("½ log10 λ_B (Yang et al. 2019)" if norm == "batchnorm" else "mean-field profile slope"))))
    return rows


def _grid(acts, norms, seeds, **params):
    return Grid(axes={"activation": acts, "norm": norms}, seeds=seeds, params=params)


EXPERIMENT = Experiment(
    name=NAME,
    description=(
        "Gradient explosion with batch normalization at initialization vs the theory rate λ_B; layernorm "
        "and no normalization for contrast.\n"
        "Pre-norm MLP at the critical σ_w² of each activation (relu 2, tanh 1; σ_b² = 0). Theory: per-layer "
        "factor λ_B of E‖δ‖² for batchnorm at batch size B (Yang et al. 2019, arXiv:1902.08129), mean-field "
        "factors for layernorm / none. Measured: log10‖∂loss/∂h_l‖ relative to the last layer, projection "
        "loss (the mean-field δ setting), median and 10–90% band over seeds."
    ),
    sizes={
        "tiny": _grid(("relu",), ("batchnorm", "none"), 2, depth=6, width=16, batch=8),
        "quick": _grid(("relu", "tanh"), ("batchnorm", "layernorm", "none"), 8, depth=32, width=128,
                       batch=32),
        "full": _grid(("relu", "tanh", "linear"), ("batchnorm", "layernorm", "none"), 32, depth=100, width=512,
                      batch=128),
    },
    theory=theory, measure=measure, plot=plot, agreement=agreement, bytes_per_seed=bytes_per_seed,
)
