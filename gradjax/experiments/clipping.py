"""``clipping``: a vanilla RNN in the exploding phase, trained with and without gradient clipping.

Setting: tanh RNN ``h_t = W tanh(h_{t−1}) + U x_t + b`` with σ_w² far beyond the critical value, on the
adding problem of length T (the gradient must cross up to T steps). Theory (mean field, at
initialization): back-propagated through one time step, E‖δ_t‖² grows by χ₁ = σ_w² E[φ′(√q* z)²] > 1,
where q* is the fixed point of the recurrent length map with the input drive acting as a bias
(σ_b² + q_in); ``gradjax.theory.gradient_profile`` gives the whole expected profile from h_0 = 0. So
the gradient norm with respect to early states explodes as χ₁^{(T−t)/2}. Measured: that profile at
initialization on a batch of the task, and then training with SGD + momentum — without clipping and
with ``optax.clip_by_global_norm(c)`` at several thresholds c — recording the training loss, the
global gradient norm before clipping, the fraction of updates that were clipped, and which seeds
diverged (a non-finite loss or update).

The claim (Pascanu et al. 2013): without clipping, the rare huge gradients of the exploding phase
throw the parameters far away and many runs diverge; rescaling the gradient to norm ≤ c bounds every
step and removes the divergences. There is no theory for the divergence fraction; the agreement row
compares only the initial per-step growth rate with ½·log10 χ₁.

References:
  Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent neural networks",
  arXiv:1211.5063.
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232 (χ₁).
  Chen, Pennington & Schoenholz 2018, "Dynamical Isometry and a Mean Field Theory of RNNs",
  arXiv:1806.05394 (mean-field theory of recurrent networks).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import gradjax.empirical
import gradjax.theory
import gradjax.train
from gradjax.config import NetConfig
from gradjax.experiments import estimates, figures
from gradjax.experiments.registry import AgreementRow, Experiment, Grid
from gradjax.experiments.sweep import per_device
from gradjax.nn.ensemble import ensemble_params

NAME = "clipping"
#: ½-MSE of the best constant predictor on the adding problem: ½·Var(u₁ + u₂) = ½·2/12 (u ~ U(0, 1)).
ADDING_BASELINE = 1.0 / 12.0
#: Value of the ``clip_norm`` coordinate meaning "no clipping"; other values are thresholds c written as text.
NO_CLIP = "none"
#: Adding problem: (value, marker) per step in, one number out.
_IN_DIM, _OUT_DIM = 2, 1
#: The mean field's allowance on the growth rate (log10 per step) at the quick width: one W shared by
#: every step is not modelled at finite width. Measured at width 32, 64 seeds: median 0.125 ± 0.003
#: against 0.131 (the same with jax.random.normal draws: 0.126).
MEAN_FIELD_TOL = 0.02
#: Examples measuring the gradient profile at initialization (the first ones of the training set).
_PROFILE_BATCH = 256


def _config(cell) -> NetConfig:
    return NetConfig(depth=cell["seq_len"], width=cell["width"], arch="rnn", in_dim=_IN_DIM, out_dim=_OUT_DIM,
                     activation="tanh", init="gaussian", sigma_w2=float(cell["sigma_w2"]),
                     sigma_b2=float(cell["sigma_b2"]), dtype=cell.dtype)


def _train_config(cell) -> gradjax.train.TrainConfig:
    clip = cell["clip_norm"]
    kw = {} if clip == NO_CLIP else {"clip": "global_norm", "clip_value": float(clip)}
    return gradjax.train.TrainConfig(optimizer="momentum", learning_rate=cell["learning_rate"], momentum=0.9,
                                     steps=cell["steps"], batch_size=cell["batch"], log_every=cell["log_every"],
                                     **kw)


def _data(seq_len: int, n_train: int) -> gradjax.train.Dataset:
    # One fixed data set for every seed and cell (seed 0 of the generator): seeds differ in their
    # weights and minibatch order only.
    return gradjax.train.adding_problem(seq_len=seq_len, n_train=n_train, n_test=max(256, n_train // 4), seed=0)


def _drive_variance(data: gradjax.train.Dataset) -> float:
    """q_in: mean over examples and steps of ‖x_t‖²/in_dim — the variance of the drive U x_t per unit
    when U ~ N(0, 1/in_dim) (the rnn's input kernel)."""
    x = np.asarray(data.x_train, dtype=float)
    return float(np.mean(np.sum(x * x, axis=-1)) / x.shape[-1])


def theory(cell):
    cfg = _config(cell)
    q_in = _drive_variance(_data(cell["seq_len"], cell["n_train"]))
    sb2_eff = cfg.sigma_b2 + q_in
    chi1 = float(gradjax.theory.chi_1("tanh", cfg.sigma_w2, sb2_eff))
    prof = np.asarray(gradjax.theory.gradient_profile(cfg, q_in=q_in), dtype=float)
    return {
        "grad_profile_theory": (("layer",), prof, {"units": "log10", "what": "log10‖δ_t‖ − log10‖δ_T‖ at init"}),
        "chi1_theory": ((), np.asarray(chi1), {"what": "χ₁ at q* of the recurrent map, σ_b² + q_in as bias"}),
        "rate_theory": ((), np.asarray(0.5 * np.log10(chi1)), {"units": "log10 per step"}),
        "critical_sigma_w2_theory": ((), np.asarray(float(gradjax.theory.critical_sigma_w2("tanh", sb2_eff)))),
        "q_in": ((), np.asarray(q_in), {"what": "input-drive variance per unit"}),
    }


def _init_profile(keys, *, cfg, seq_len, n_train):
    """(S, T) log10‖∂loss/∂h_t‖ of every seed's freshly initialized network on the first examples."""
    data = _data(seq_len, n_train)
    x = jnp.asarray(data.x_train[:_PROFILE_BATCH], cfg.jnp_dtype)
    y = jnp.asarray(data.y_train[:_PROFILE_BATCH], cfg.jnp_dtype)
    params = ensemble_params(cfg, keys)
    return jax.vmap(lambda p: gradjax.empirical.grad_norms(cfg, p, x, y, "mse").hidden)(params)


def _train(keys, *, cfg, tc, seq_len, n_train):
    """Per-seed histories: loss, test loss, pre-clip gradient norm, clip fraction (S, T_rows); diverged_at (S,)."""
    hist = gradjax.train.train(cfg, tc, _data(seq_len, n_train), seeds=keys, eval_size=_PROFILE_BATCH,
                               progress=False)
    rows = lambda a: np.asarray(a, dtype=float).T  # noqa: E731 — (T_rows, S) → (S, T_rows)
    return (rows(hist.loss), rows(hist.test_loss), rows(hist.grad_norm), rows(hist.clip_fraction),
            np.asarray(hist.diverged_at))


def measure(cell, keys):
    cfg, tc = _config(cell), _train_config(cell)
    data_kw = {"seq_len": cell["seq_len"], "n_train": cell["n_train"]}
    prof = np.asarray(per_device(_init_profile, keys, cfg=cfg, **data_kw))
    # gradjax.train.train is a host loop (one jitted chunk per history row, rows read back to numpy), so
    # it cannot run inside per_device's shard_map; called directly, its jitted chunks follow the keys'
    # sharding over the seed mesh, so every device trains its own seeds.
    loss, test_loss, gnorm, frac, div_at = _train(keys, cfg=cfg, tc=tc, **data_kw)
    step_c = {"step": np.asarray(tc.row_steps)}
    row = lambda a, what, **attrs: xr.DataArray(np.asarray(a), dims=("seed", "step"), coords=step_c,  # noqa: E731
                                                attrs={"what": what, **attrs})
    div_at = np.asarray(div_at)
    return {
        "init_grad_norm": (("seed", "layer"), prof, {"units": "log10", "what": "‖∂loss/∂h_t‖ at initialization"}),
        "loss": row(loss, "½-MSE on the training examples (NaN after divergence)"),
        "test_loss": row(test_loss, "½-MSE on the test examples"),
        "grad_norm": row(np.log10(gnorm), "global norm of the last minibatch gradient, before clipping",
                         units="log10"),
        "clip_fraction": row(frac, "fraction of the updates since the previous row that were clipped"),
        "diverged": (("seed",), (div_at >= 0).astype(float), {"what": "1 if the run diverged"}),
        "diverged_at": (("seed",), div_at.astype(float), {"what": "update at which it diverged, −1 never"}),
    }


# ---- figure and agreement ------------------------------------------------------------------------


def _clip_label(c: str) -> str:
    return "no clipping" if c == NO_CLIP else f"clip ‖g‖ ≤ {c}"


def _fit_window(n: int) -> tuple[int, int]:
    """Time steps [start, stop) of the growth-rate fit: skip the first quarter (q_t still rising from
    h_0 = 0) and the last step (the readout's own cotangent)."""
    return n // 4, n - 1


def _rates(results) -> np.ndarray:
    """(S,) measured growth per step of the initial profile (the same for every cell; first one used)."""
    prof = results.init_grad_norm.isel(clip_norm=0).transpose("seed", "layer").values
    start, stop = _fit_window(prof.shape[-1])
    return np.asarray(gradjax.empirical.growth_rate(jnp.asarray(prof), start=start, stop=stop), dtype=float)


def plot(results, out_dir):
    p = json.loads(results.attrs["params"])
    clips = list(results["clip_norm"].values)
    cmap = figures.colors(clips)
    first = results.isel(clip_norm=0)
    fig, axes = figures.panels(4, ncols=2, panel_size=(5.4, 3.8))

    ax = axes[0]
    layer = results.layer.values
    meas = first.init_grad_norm.transpose("seed", "layer")
    top = np.nanmedian(meas.values[:, -1])
    figures.median_band(ax, layer, meas, color="C0", label="measured at init")
    figures.theory_line(ax, layer, first.grad_profile_theory.values + top, color="k",
                        label=f"mean field (χ₁={float(first.chi1_theory):.2f}), anchored at t=T")
    ax.set_xlabel("time step t")
    ax.set_ylabel("log10 ‖∂loss/∂h_t‖")
    ax.set_title(f"at init: σ_w²={p['sigma_w2']:g} vs critical {float(first.critical_sigma_w2_theory):.2f} "
                 "(input drive as bias)", fontsize="medium")
    ax.legend(loc="upper right", fontsize="small")

    ax = axes[1]
    for c in clips:
        sub = results.sel(clip_norm=c)
        figures.median_band(ax, sub.step.values, sub.loss.transpose("seed", "step"), color=cmap[c],
                            label=_clip_label(c), markersize=2)
    ax.axhline(ADDING_BASELINE, color="0.4", linestyle="--", linewidth=0.8, label="predict the mean (1/12)")
    ax.set_yscale("log")
    ax.set_xlabel("update")
    ax.set_ylabel("training loss (½-MSE)")
    ax.set_title("loss (diverged seeds drop out: NaN)", fontsize="medium")
    figures.style_legend(ax, theory=False, loc="upper right")

    ax = axes[2]
    for c in clips:
        sub = results.sel(clip_norm=c)
        figures.median_band(ax, sub.step.values, sub.grad_norm.transpose("seed", "step"), color=cmap[c],
                            label=_clip_label(c), markersize=2)
        if c != NO_CLIP:
            ax.axhline(np.log10(float(c)), color=cmap[c], linestyle=":", linewidth=0.9)
    ax.set_xlabel("update")
    ax.set_ylabel("log10 ‖g‖ before clipping")
    ax.set_title("global gradient norm (dotted: thresholds)", fontsize="medium")
    figures.style_legend(ax, theory=False, loc="upper right")

    ax = axes[3]
    frac = results.diverged.transpose("clip_norm", "seed").values
    x = np.arange(len(clips))
    ax.bar(x, np.nanmean(frac, axis=1), color=[cmap[c] for c in clips], alpha=0.8)
    for i, c in enumerate(clips):
        final = results.sel(clip_norm=c).test_loss.isel(step=-1).values
        med = np.nanmedian(final) if np.isfinite(final).any() else np.nan
        ax.text(i, np.nanmean(frac[i]) + 0.02, f"{int(np.nansum(frac[i]))}/{frac.shape[1]}\nloss {med:.3g}",
                ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [_clip_label(c).replace("clip ", "") for c in clips], fontsize=8)
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("fraction of seeds diverged")
    ax.set_title("diverged seeds (text: count, median final test loss of the rest)", fontsize="small")
    fig.suptitle(f"tanh RNN, adding problem T={p['seq_len']}, width {p['width']}, SGD momentum 0.9, "
                 f"η={p['learning_rate']}, batch {p['batch']}, {results.sizes['seed']} seeds")
    return [figures.save(fig, out_dir, "clipping")]


def agreement(results):
    p = json.loads(results.attrs["params"])
    rate = _rates(results)
    first = results.isel(clip_norm=0)
    start, stop = _fit_window(results.sizes["layer"])
    se = estimates.bootstrap_error(np.median, rate)
    s = int(np.isfinite(rate).sum())
    return [AgreementRow(
        quantity="gradient growth per time step at init (log10) vs ½ log10 χ₁",
        where=f"tanh RNN, σ_w²={p['sigma_w2']}, T={p['seq_len']}", theory=float(first.rate_theory),
        measured=float(np.nanmedian(rate)), tolerance=estimates.statistical_tolerance(se, s, MEAN_FIELD_TOL),
        metric="absolute",
        note=f"width {p['width']}, median of the seeds' rates (bootstrap SE), fit over steps {start + 1}..{stop}; "
             f"{estimates.tolerance_note(se, s, MEAN_FIELD_TOL, 'for the mean field at this width')}")]


def _grid(clips, seeds, **params):
    return Grid(axes={"clip_norm": tuple(clips)}, seeds=seeds,
                params={"sigma_w2": 9.0, "sigma_b2": 0.0, "learning_rate": 0.2, **params})


EXPERIMENT = Experiment(
    name=NAME,
    description=(
        "Exploding RNN (tanh, σ_w² = 9) on the adding problem, trained with and without clip_by_global_norm: "
        "loss curves, gradient norms, diverged seeds.\n"
        "Theory: at initialization the back-propagated gradient grows by ½ log10 χ₁ per time step "
        "(χ₁ > 1: the exploding phase; Schoenholz et al. 2017, arXiv:1611.01232, applied to the recurrent "
        "map with the input drive as bias). Measured: that profile at initialization, then SGD-momentum "
        "training without clipping and with ‖g‖ ≤ c for several c (Pascanu et al. 2013, arXiv:1211.5063). "
        "Without clipping most seeds diverge; clipping bounds every step and keeps them finite. The "
        "divergence fraction has no theory counterpart, so the only agreement row is the initial rate."
    ),
    sizes={
        # tiny: one threshold, so one compiled training program (each costs seconds to compile)
        "tiny": _grid(("0.3",), 2, seq_len=10, width=8, batch=16, n_train=64, steps=4, log_every=2),
        "quick": _grid((NO_CLIP, "3", "0.3"), 8, seq_len=50, width=32, batch=64, n_train=1024, steps=300,
                       log_every=20),
        "full": _grid((NO_CLIP, "10", "3", "1", "0.3", "0.1"), 64, seq_len=60, width=64, batch=64,
                      n_train=4096, steps=2000, log_every=50),
    },
    theory=theory, measure=measure, plot=plot, agreement=agreement, headline=False,
)
