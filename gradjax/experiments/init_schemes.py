"""``init-schemes``: how the weight initialization decides whether gradients vanish, explode or flow.

Six schemes for tanh and relu MLPs at several depths, at initialization (σ_b² = 0):

======== ===================== =====================================================
name     ``NetConfig.init``     effective σ_w² (= fan_in · Var W, square layers)
======== ===================== =====================================================
small    gaussian               0.5
large    gaussian               4
xavier   xavier_normal          1 (Glorot & Bengio 2010)
he       he_normal              2 (He et al. 2015)
orthog.  orthogonal             1 for tanh, 2 for relu (scaled Haar-orthogonal, Saxe et al. 2013)
lecun    lecun_normal           1 (LeCun et al. 1998)
======== ===================== =====================================================

(Xavier and LeCun coincide for square layers; both are kept because users ask for them by name.)
The networks are digits-shaped (64 inputs, 10 outputs, hidden width N).

Measured across seeds (``gradjax.empirical``), theory beside it (``gradjax.theory``):

1. **Gradient-norm profiles** log10 ‖∂loss/∂h_l‖ − log10 ‖∂loss/∂h_L‖ (``gradjax.empirical.gradient_profile``
   at its defaults: the projection loss ⟨y, t⟩/B on unit Gaussian inputs and directions t) against the
   mean-field profile ½ Σ_{k>l} log10 σ_w² E[φ′(√q_{k−1} z)²] of the same loss and batch, with the
   finite-width drift at the cell's width (``gradjax.theory.gradient_profile``'s defaults).
2. **End-to-end Jacobian spectrum**: log10 singular values of ∂h_L/∂h_0 (``layers="end"``, exact SVD),
   pooled over seeds, against the free-probability density of Pennington et al. 2017/2018
   (``gradjax.theory.jacobian_density``). That density assumes every layer sits at one q; it is
   evaluated at the geometric mean of the layers' q along the mean-field trajectory from q₀ = 1 (= q*
   once the trajectory has converged; tanh at σ_w² ≤ 1 drifts to q* = 0 only like 1/l, so there the
   line is an approximation). relu's Jacobian is singular (φ′ = 0 on half the units): its atom at 0
   is not drawn; the histogram counts only singular values within 6 decades of each seed's largest
   (float32 SVD resolves ~7), normalized by all N so areas compare with the theory's 1 − p₀.
3. **Histograms of activations φ(h_l) and back-propagated gradients ∂loss/∂h_l** (Glorot & Bengio
   2010, Figs. 3–7) for five layers spread over the smallest depth, on 256 digits images with their
   labels (cross-entropy), pooled over seeds. The gradients are drawn as log10 |∂loss/∂h_l| relative
   to the rms gradient at the top layer — the same information as Glorot's linear histograms
   (the spread of the distribution per layer) on a scale that survives 10⁻³⁰ vanishing; values
   outside the bins' range are counted in the end bins. At the smallest depth the networks are also
   trained on digits (``gradjax.train``, SGD with momentum, ``train_steps`` updates, batch 64) and
   the same histograms are drawn after training, with the test accuracy in the panel titles.

The mean squared singular value of one network is heavy-tailed across networks (relu at L = 50,
N = 64: log10 of it has a standard deviation of 0.64 decades, measured over 400 seeds, the same with
``jax.random.normal`` draws), so a plain mean over 8 seeds falls short of the ensemble mean in most
draws. The agreement row takes the log-normal estimate over the seeds (``estimates.log_normal_mean``)
with a tolerance of 3 of its standard errors; for relu the theory is exact at any width (a unit's sign
flip maps W to an equally likely W), so that is the whole tolerance; tanh adds 0.3 decades for the
mean field. All i.i.d. normal schemes share one unit draw (they differ by a scale), so their relu
rows move together.

References:
  Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward neural networks" (AISTATS).
  He et al. 2015, "Delving Deep into Rectifiers", arXiv:1502.01852.
  Saxe, McClelland & Ganguli 2013, "Exact solutions to the nonlinear dynamics of learning in deep linear
  neural networks", arXiv:1312.6120.
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232.
  Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through dynamical
  isometry", arXiv:1711.04735; 2018, "The emergence of spectral universality in deep networks", arXiv:1802.09979.
"""

from __future__ import annotations

import functools
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
from gradjax.nn import forward, get_activation, init_params

SCHEMES = ("small", "large", "xavier", "he", "orthogonal", "lecun")
SMALL_SIGMA_W2, LARGE_SIGMA_W2 = 0.5, 4.0  # "small" and "large" Gaussian scales (σ_w²)
IN_DIM, OUT_DIM = 64, 10  # digits: 8×8 pixels, 10 classes
N_STAGES = 5  # layers shown in the histograms (Glorot & Bengio 2010 had five hidden layers)
HIST_EXAMPLES = 256  # digits images whose activations and gradients fill the histograms
ACT_RANGE = {"tanh": (-1.0, 1.0), "relu": (0.0, 4.0)}  # histogram ranges of φ(h_l); relu tail clipped into the end bin
GRAD_RANGE = (-8.0, 4.0)  # log10 |δ_l| / rms(δ_L): eight decades below to four above the top layer
HIST_BINS = 48
SV_FLOOR = 6.0  # decades below each seed's largest singular value counted in the spectrum histogram
SPECTRUM_POINTS = 400  # λ points of the theory density kept per cell
SPECTRUM_BINS = 30
# Agreement tolerances: profile slope (log10/layer) 10 % of theory + 0.005; log10 of the mean squared
# singular value: 3 standard errors of its estimate, combined for tanh with 0.3 decades for the mean field.
SLOPE_REL, SLOPE_ABS, SPECTRUM_TOL = 0.10, 0.005, 0.3


def init_of(scheme: str, activation: str) -> dict:
    """NetConfig fields (init, sigma_w2) of a scheme."""
    if scheme == "small":
        return {"init": "gaussian", "sigma_w2": SMALL_SIGMA_W2}
    if scheme == "large":
        return {"init": "gaussian", "sigma_w2": LARGE_SIGMA_W2}
    if scheme == "orthogonal":
        return {"init": "orthogonal", "sigma_w2": 2.0 if activation == "relu" else 1.0}
    return {"init": {"xavier": "xavier_normal", "he": "he_normal", "lecun": "lecun_normal"}[scheme]}


def config_of(cell, depth=None) -> NetConfig:
    return NetConfig(depth=depth or cell["depth"], width=cell["width"], in_dim=IN_DIM, out_dim=OUT_DIM,
                     activation=cell["activation"], dtype=cell.dtype, **init_of(cell["init"], cell["activation"]))


def stage_layers(depth: int) -> np.ndarray:
    """The N_STAGES layers drawn in the histograms: evenly spread, ending at the top layer L."""
    return np.unique(np.clip(np.round(np.linspace(depth / N_STAGES, depth, N_STAGES)).astype(int), 1, depth))


def _effective_q(cfg: NetConfig) -> float:
    """Geometric mean of q_0 = 1, q_1..q_{L−1} (the D's of ∂h_L/∂h_0) along the mean-field trajectory."""
    q = np.concatenate([[1.0], np.asarray(gradjax.theory.q_profile(cfg, q0=1.0))[:-1]])
    return float(np.exp(np.mean(np.log(np.maximum(q, 1e-300)))))


def theory(cell):
    cfg = config_of(cell)
    q = _effective_q(cfg)
    # jacobian_density solves the density in float64 itself (scoped) when 64-bit JAX is off.
    spec = jax.tree.map(np.asarray, gradjax.theory.jacobian_density(cfg, q0=q, points=SPECTRUM_POINTS))
    # E σ² of ∂h_L/∂h_0 = ∏ f_l along the actual q-trajectory (mean field), not at the one q of the density
    log10_mean = float(np.sum(np.log10(np.asarray(gradjax.theory.block_factors(cfg)))))
    pt = {"dims": ("point",), "coords": {"point": np.arange(SPECTRUM_POINTS)}}
    return {
        "grad_theory": (("layer",), np.asarray(gradjax.theory.gradient_profile(cfg, batch=cell["batch"])),
                        {"units": "log10", "relative_to": "layer L"}),
        "spectrum_lambda_theory": xr.DataArray(np.asarray(spec.grid), **pt, attrs={"units": "linear",
                                               "what": "λ = σ² grid of the theory density"}),
        "spectrum_density_theory": xr.DataArray(np.asarray(spec.density), **pt, attrs={"units": "per unit λ"}),
        "spectrum_log10_mean_theory": ((), log10_mean, {"units": "log10", "what": "E σ² = ∏ σ_w² E φ′(√q_{l−1} z)²"}),
        "spectrum_atom_theory": ((), float(spec.atom_mass), {"what": "mass of the atom at λ = 0"}),
        "spectrum_q": ((), q, {"what": "q at which the density is evaluated"}),
    }


# ---- measurement ----------------------------------------------------------------------------------
#
# The six schemes are two draw families with a scale: every i.i.d. normal scheme here (small, large,
# xavier, he, lecun) draws N(0, σ_w²/N) on the square blocks, orthogonal draws a scaled Haar matrix.
# A config's σ_w² is a traced number, so the library's measurements of the gaussian-family schemes
# share one compiled program per (activation, depth), whatever their σ_w² (orthogonal: a second one).


def family_config(cfg: NetConfig) -> NetConfig:
    """``cfg`` as its draw family ("gaussian" or "orthogonal") at the scheme's effective σ_w²: the same
    network ``init_params`` draws for ``cfg``, up to rounding of the scale."""
    return cfg.with_(init="orthogonal" if cfg.init == "orthogonal" else "gaussian", sigma_w2=cfg.sigma_w2)


def _counts(values, lo, hi, weights=None):
    """Histogram counts of ``values`` on HIST_BINS bins of [lo, hi], out-of-range values in the end bins."""
    idx = jnp.clip(jnp.floor((values - lo) / (hi - lo) * HIST_BINS), 0, HIST_BINS - 1).astype(jnp.int32)
    w = jnp.ones_like(values) if weights is None else weights
    return jnp.zeros((HIST_BINS,), values.dtype).at[idx.ravel()].add(w.ravel())


def _histograms_one(params, x, labels, *, cfg, layers):
    """(stages, bins) counts of φ(h_l) and of log10|δ_l|/rms(δ_L) for the chosen layers (one network)."""
    phi = get_activation(cfg.activation, slope=cfg.leaky_slope)
    hidden = forward(cfg, params, x, taps=True)[1].hidden
    log_delta = gradjax.empirical.log10_cotangents(cfg, params, x, labels, "xent")  # (L, B, N)
    # Exact zeros (relu units that are off: φ′ = 0) are not counted: log10 0 has no bin.
    nonzero = jnp.isfinite(log_delta)
    log_rms_top = 0.5 * jnp.log10(jnp.mean(10.0 ** (2.0 * log_delta[-1])))
    idx = jnp.asarray(np.asarray(layers) - 1)
    act = phi(hidden[idx])  # φ(h_l): the activations layer l hands on
    a_lo, a_hi = ACT_RANGE[cfg.activation]
    act_h = jax.vmap(lambda v: _counts(v, a_lo, a_hi))(act)
    grad_h = jax.vmap(lambda v, w: _counts(v, *GRAD_RANGE, weights=w))(
        jnp.where(nonzero[idx], log_delta[idx] - log_rms_top, 0.0), nonzero[idx].astype(hidden.dtype))
    return act_h, grad_h


def _measure_all(keys, cfg, x, labels, *, layers, batch):
    """Per seed: log10‖δ_l‖ (``gradient_profile`` at its defaults), the log10 singular values of
    ∂h_L/∂h_0 of example 0 (``jacobian_spectrum``, layers="end", svd) and, for ``layers``, histograms."""
    g = gradjax.empirical.gradient_profile(cfg, seeds=keys, batch=batch).hidden
    sv = gradjax.empirical.jacobian_spectrum(cfg, seeds=keys, layers="end", method="svd")[:, 0]
    if not layers:
        return g, sv
    params = jax.vmap(lambda k: init_params(cfg, k))(keys)
    return (g, sv) + _histograms(params, x, labels, cfg, layers=layers)


@functools.partial(jax.jit, static_argnames=("layers",))
def _histograms(params, x, labels, cfg, *, layers):
    return jax.vmap(lambda p: _histograms_one(p, x, labels, cfg=cfg, layers=layers))(params)


def _train(keys, *, cfg, tc):
    data = gradjax.train.load_digits()
    hist = gradjax.train.train(cfg, tc, data, seeds=keys, progress=False)
    return hist.params, jnp.asarray(hist.accuracy[-1])


def _digits_batch(dtype):
    data = gradjax.train.load_digits()
    return jnp.asarray(data.x_test[:HIST_EXAMPLES], dtype), jnp.asarray(data.y_test[:HIST_EXAMPLES])


def _hist_vars(phases, layers, n_seeds):
    coords = {"phase": [p[0] for p in phases], "stage": np.arange(1, len(layers) + 1), "bin": np.arange(HIST_BINS)}
    dims = ("seed", "phase", "stage", "bin")
    return {
        "act_hist": xr.DataArray(np.stack([np.asarray(p[1]) for p in phases], axis=1), dims=dims, coords=coords,
                                 attrs={"what": f"counts of φ(h_l) on {HIST_BINS} bins of {ACT_RANGE}"}),
        "grad_hist": xr.DataArray(np.stack([np.asarray(p[2]) for p in phases], axis=1), dims=dims, coords=coords,
                                  attrs={"what": f"counts of log10|δ_l|/rms(δ_L) on {HIST_BINS} bins of {GRAD_RANGE}"}),
        "stage_layer": xr.DataArray(np.broadcast_to(np.asarray(layers), (n_seeds, len(layers))).copy(),
                                    dims=("seed", "stage"), coords={"stage": coords["stage"]}),
    }


def measure(cell, keys):
    cfg = config_of(cell)
    fam = family_config(cfg)
    hist_here = cell["depth"] == min(cell["depths"])  # histograms (and training) at the smallest depth only
    layers = tuple(int(l) for l in stage_layers(cell["depth"])) if hist_here else ()
    x, y = _digits_batch(cfg.jnp_dtype)
    res = per_device(_measure_all, keys, fam, x, y, layers=layers, batch=cell["batch"])
    out = {
        "grad": (("seed", "layer"), res[0], {"units": "log10", "what": "‖∂loss/∂h_l‖ (projection loss ⟨y,t⟩/B)"}),
        "log10_sv": (("seed", "sv"), res[1], {"units": "log10", "what": "singular values of ∂h_L/∂h_0, descending"}),
    }
    if hist_here:
        phases = [("init", res[2], res[3])]
        if cell["train_steps"]:
            tc = gradjax.train.TrainConfig(optimizer="momentum", learning_rate=cell["learning_rate"],
                                           steps=cell["train_steps"], batch_size=64, log_every=cell["train_steps"])
            # Called directly, not through per_device: train() loops in Python over jitted chunks and
            # returns numpy arrays, so it cannot run inside shard_map; its vmapped programs take the
            # keys' sharding as they are.
            params, acc = _train(keys, cfg=cfg, tc=tc)
            params = jax.tree.map(lambda a: jnp.where(jnp.isfinite(a), a, 0.0), params)
            phases.append(("trained",) + _histograms(params, x, y, fam, layers=layers))
            out["test_accuracy"] = (("seed",), acc, {"what": f"after {cell['train_steps']} updates"})
        out.update(_hist_vars(phases, layers, keys.shape[0]))
    return out


# ---- figures ----------------------------------------------------------------------------------------


def _label(scheme, act):
    f = init_of(scheme, act)
    sw = f.get("sigma_w2") or NetConfig(depth=1, width=4, init=f["init"]).sigma_w2
    return f"{scheme} (σ_w²={sw:g})"


def _plot_profiles(results, out_dir):
    acts = [str(a) for a in results.activation.values]
    depths = [int(d) for d in results.depth.values]
    schemes = [str(s) for s in results.init.values]
    cmap = figures.colors(schemes)
    fig, axes = figures.panels(len(acts) * len(depths), ncols=len(depths), panel_size=(4.6, 3.6))
    for i, act in enumerate(acts):
        for j, d in enumerate(depths):
            ax = axes[i * len(depths) + j]
            for s in schemes:
                sub = results.sel(activation=act, depth=d, init=s)
                g = sub["grad"].dropna("layer", how="all").transpose("seed", "layer")
                if g.size == 0:
                    continue
                rel = gradjax.empirical.relative_profile(g.values)
                figures.median_band(ax, g.layer.values, rel, color=cmap[s], label=_label(s, act), markersize=2)
                th = sub["grad_theory"].dropna("layer", how="all")
                figures.theory_line(ax, th.layer.values, th.values, color=cmap[s])
            ax.set_title(f"{act}, L={d}", fontsize="medium")
            ax.set_xlabel(figures.coord_label("layer"))
            ax.set_ylabel("log10 ‖δ_l‖ − log10 ‖δ_L‖")
            lo, hi = ax.get_ylim()
            ax.set_ylim(max(lo, -25), min(hi, 25))  # ±25 decades: beyond that only the sign of the trend matters
            if j == len(depths) - 1:
                figures.style_legend(ax, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"Gradient-norm profiles by initialization (width {json.loads(results.attrs['params'])['width']}, "
                 f"{results.sizes['seed']} seeds)")
    return figures.save(fig, out_dir, "init_schemes_profiles")


def _spectrum_histogram(ax, log10_sv, color, label):
    """Fraction of singular values per unit log10 σ, within SV_FLOOR decades of each seed's largest."""
    v = np.asarray(log10_sv, dtype=float)
    v = v[np.all(np.isnan(v), axis=1) == False]  # noqa: E712 — drop absent seeds
    keep = np.isfinite(v) & (v >= np.nanmax(v, axis=1, keepdims=True) - SV_FLOOR)
    vals = v[keep]
    if vals.size == 0:
        return
    counts, edges = np.histogram(vals, bins=SPECTRUM_BINS)
    dens = counts / v.size / np.diff(edges)
    ax.stairs(dens, edges, fill=True, alpha=figures.BAND_ALPHA, color=color)
    ax.stairs(dens, edges, color=color, linewidth=0.8, label=label)


def _plot_spectra(results, out_dir):
    acts = [str(a) for a in results.activation.values]
    schemes = [str(s) for s in results.init.values]
    depths = [int(d) for d in results.depth.values]
    dcol = figures.colors(depths)
    fig, axes = figures.panels(len(acts) * len(schemes), ncols=len(schemes), panel_size=(3.3, 2.8))
    for i, act in enumerate(acts):
        for j, s in enumerate(schemes):
            ax = axes[i * len(schemes) + j]
            sv_all = results["log10_sv"].sel(activation=act, init=s).values
            top = np.nanmax(np.where(np.isfinite(sv_all), sv_all, np.nan))
            low = np.nanmin(np.where(np.isfinite(sv_all), np.nanmax(sv_all, axis=-1, keepdims=True) - SV_FLOOR, np.nan))
            for d in depths:
                sub = results.sel(activation=act, init=s, depth=d)
                _spectrum_histogram(ax, sub["log10_sv"].transpose("seed", "sv").values, dcol[d], f"L={d}")
                lam = sub["spectrum_lambda_theory"].values
                rho = sub["spectrum_density_theory"].values
                ok = np.isfinite(lam) & (lam > 0) & np.isfinite(rho)
                if ok.any():
                    # density of s = log10 σ = ½ log10 λ: ρ_s = ρ_λ · dλ/ds = ρ_λ · 2 ln10 · λ
                    figures.theory_line(ax, 0.5 * np.log10(lam[ok]), rho[ok] * 2 * np.log(10) * lam[ok], color=dcol[d],
                                        linewidth=1.4)
            if np.isfinite(top) and np.isfinite(low):
                ax.set_xlim(low - 0.5, top + 0.5)  # the measured range: the theory's far left tail is below float32's reach
            ax.set_title(f"{act}, {_label(s, act)}", fontsize="small")
            ax.set_xlabel("log10 σ  (∂h_L/∂h_0)")
            if j == 0:
                ax.set_ylabel("fraction per unit log10 σ")
    handles_ax = axes[len(schemes) - 1]
    figures.style_legend(handles_ax, measured=False, loc="upper right")
    fig.suptitle("End-to-end Jacobian singular values: histogram (all seeds) vs free-probability density (line)")
    return figures.save(fig, out_dir, "init_schemes_spectra")


def _plot_histograms(results, out_dir, phase):
    if "act_hist" not in results or phase not in results.phase.values:
        return None
    d = min(int(v) for v in results.depth.values)
    ds = results.sel(depth=d, phase=phase)
    acts = [str(a) for a in results.activation.values]
    schemes = [str(s) for s in results.init.values]
    layers = ds["stage_layer"].isel(seed=0).sel(activation=acts[0], init=schemes[0]).values
    scol = figures.colors(list(range(len(layers))), cmap="viridis")
    fig, axes = figures.panels(len(schemes) * 2 * len(acts), ncols=2 * len(acts), panel_size=(3.2, 2.2))
    for i, s in enumerate(schemes):
        for k, act in enumerate(acts):
            sub = ds.sel(init=s, activation=act)
            for m, (var, rng, xl) in enumerate((("act_hist", ACT_RANGE[act], f"{act}(h_l)"),
                                                ("grad_hist", GRAD_RANGE, "log10 |δ_l| / rms δ_L"))):
                ax = axes[i * 2 * len(acts) + 2 * k + m]
                counts = np.nansum(sub[var].transpose("seed", "stage", "bin").values, axis=0)  # pooled over seeds
                edges = np.linspace(rng[0], rng[1], HIST_BINS + 1)
                for st in range(counts.shape[0]):
                    c = counts[st]
                    if not np.isfinite(c).all() or c.sum() == 0:
                        continue
                    ax.stairs(c / c.sum() / np.diff(edges), edges, color=scol[st], linewidth=1.0,
                              label=f"layer {int(layers[st])}")
                title = f"{act}, {_label(s, act)}"
                if phase == "trained" and "test_accuracy" in sub:
                    title += f", acc {float(np.nanmedian(sub['test_accuracy'].values)):.2f}"
                ax.set_title(title, fontsize="x-small")
                ax.tick_params(labelsize="x-small")
                if i == len(schemes) - 1:
                    ax.set_xlabel(xl, fontsize="small")
                if var == "grad_hist":
                    ax.set_yscale("log")
                    ax.set_ylim(1e-4, None)
    axes[0].legend(fontsize="xx-small", loc="upper center")
    p = json.loads(results.attrs["params"])
    what = "at initialization" if phase == "init" else f"after {p['train_steps']} SGD-momentum updates on digits"
    fig.suptitle(f"Activations and back-propagated gradients per layer, L={d}, {what} "
                 f"({HIST_EXAMPLES} test images × {results.sizes['seed']} seeds)", fontsize="medium")
    return figures.save(fig, out_dir, f"init_schemes_histograms_{phase}")


def plot(results, out_dir):
    paths = [_plot_profiles(results, out_dir), _plot_spectra(results, out_dir)]
    for phase in ("init", "trained"):
        p = _plot_histograms(results, out_dir, phase)
        if p is not None:
            paths.append(p)
    return paths


# ---- agreement ---------------------------------------------------------------------------------------


def agreement(results):
    d = max(int(v) for v in results.depth.values)
    p = json.loads(results.attrs["params"])
    rows = []
    for act in [str(a) for a in results.activation.values]:
        for s in [str(x) for x in results.init.values]:
            sub = results.sel(activation=act, init=s, depth=d)
            g = sub["grad"].dropna("layer", how="all").transpose("seed", "layer").values
            if g.size == 0 or not np.isfinite(g).any():
                continue
            meas = np.median(gradjax.empirical.relative_profile(g), axis=0)
            th = float(gradjax.empirical.fitted_slope(sub["grad_theory"].dropna("layer", how="all").values))
            where = f"{act}, {_label(s, act)}, L={d}"
            rows.append(AgreementRow(
                quantity="fitted slope of log10‖δ_l‖ per layer", where=where, theory=th,
                measured=float(gradjax.empirical.fitted_slope(meas)), tolerance=SLOPE_REL * abs(th) + SLOPE_ABS, metric="absolute",
                note=f"width {p['width']}, {results.sizes['seed']} seeds, median profile; tolerance 10% + 0.005"))
            rows.append(_spectrum_row(sub, act, where, p["width"]))
    return rows


def _spectrum_row(sub, activation: str, where: str, width: int) -> AgreementRow:
    """log10 E[mean σ²] of ∂h_L/∂h_0: the log-normal estimate over the seeds against ∏ f_l.

    relu (σ_b² = 0, Gaussian or Haar weights) is exact at any width: a unit's sign flip maps W to an
    equally likely W and swaps its φ′ between 0 and 1, so E‖u D W‖² = (σ_w²/2)‖u‖² per block
    whatever came before — the tolerance is the sampling error alone. tanh is mean field (finite-width
    corrections not modelled): :data:`SPECTRUM_TOL` decades for the model, combined with it.
    """
    per_seed = estimates.log10_mean_square(sub["log10_sv"].transpose("seed", "sv").values)
    est, se = estimates.log_normal_mean(per_seed)
    model = 0.0 if activation == "relu" else SPECTRUM_TOL
    s = int(np.isfinite(per_seed).sum())
    why = "relu: exact at any width" if model == 0 else "decades of mean field"
    return AgreementRow(
        quantity="log10 mean σ² of ∂h_L/∂h_0", where=where, theory=float(sub["spectrum_log10_mean_theory"]),
        measured=est, tolerance=estimates.statistical_tolerance(se, s, model), metric="absolute",
        note=(f"width {width}: log-normal estimate of log10 E[(1/N) Σσ²] over the seeds; theory ∏ σ_w²E φ′² "
              f"along the q-trajectory; {estimates.tolerance_note(se, s, model, why)}"))


def _grid(activations, schemes, depths, seeds, **params):
    return Grid(axes={"activation": activations, "init": schemes, "depth": depths}, seeds=seeds,
                params={"depths": list(depths), "schemes": list(schemes), **params})


EXPERIMENT = Experiment(
    name="init-schemes",
    description=(
        "Small (σ_w²=0.5), large (σ_w²=4), Xavier, He, orthogonal and LeCun init for tanh and relu: gradient-norm "
        "profiles, end-to-end Jacobian spectra and Glorot–Bengio histograms of activations and back-propagated "
        "gradients at initialization (and, at full size, after a 2,000-step digits training).\n"
        "Theory lines: mean-field profiles and the free-probability singular-value density (evaluated at the "
        "geometric-mean q of the trajectory: an approximation for tanh at σ_w² ≤ 1, whose q drifts to 0 like "
        "1/l). Histograms and training at the smallest depth; gradients drawn as log10|δ_l| relative to the top "
        "layer's rms. The quick size does not train (twelve more compiled training programs do not fit its "
        "two CPU minutes): its histograms are at initialization only. The mean σ² of one network is heavy-tailed "
        "across networks (relu, L=50, N=64: 0.64 decades of spread): compared as a log-normal estimate over the "
        "seeds with 3 standard errors of tolerance (relu: exact at any width). Profiles "
        "use the projection loss ⟨y,t⟩/B, the loss the mean field models."
    ),
    sizes={
        "tiny": _grid(("tanh",), ("he",), (4,), 2, width=8, batch=4, train_steps=0, learning_rate=0.01),
        # quick: no training — twelve more compiled training programs do not fit two CPU minutes
        "quick": _grid(("tanh", "relu"), SCHEMES, (10, 50), 8, width=64, batch=64, train_steps=0,
                       learning_rate=0.01),
        "full": _grid(("tanh", "relu"), SCHEMES, (10, 30, 100), 64, width=512, batch=128, train_steps=2000,
                      learning_rate=0.01),
    },
    theory=theory, measure=measure, plot=plot, agreement=agreement,
    bytes_per_seed=lambda cell: 8 * cell["depth"] * (cell["width"] ** 2 + 4 * max(cell["batch"], HIST_EXAMPLES)
                                                     * cell["width"]),
    headline=True,
)
