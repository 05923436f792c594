"""``phase-diagram``: the order-to-chaos phase diagram of a tanh network over (σ_w², σ_b²).

Theory (mean field, infinite width): χ₁ = σ_w² E[φ′(√q* z)²], the per-layer factor of E‖δ_l‖²;
ξ_c = −1/ln χ_c, the depth over which input correlations are forgotten (it diverges on the critical
line χ₁ = 1); and the critical line σ_w²*(σ_b²) itself. Measured: the per-layer growth rate of the
gradient, −(slope of log10‖δ_l‖ against l), fitted over the upper half of the network where the
length q_l has reached q*, for S seeds, with the projection loss Σ y·t / B on random targets (the
mean-field δ setting: its output cotangent does not depend on the network) — theory predicts ½·log10 χ₁ per layer (Schoenholz et al.
2017, Eq. 12). Each cell of the grid is one σ_b² row; the σ_w² row (theory on a fine axis, the
measurement on a coarser one) lives inside the cell as an array dimension: the library's theory and
measurement vmapped over a traced σ_w², one compiled program per cell (seed k's network is drawn once
at unit scale and scaled to every σ_w², the same network ``init_params`` draws at that σ_w²).

References:
  Poole et al. 2016, "Exponential expressivity in deep neural networks through transient chaos",
  arXiv:1606.05340.
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232 (χ₁, ξ_c, Fig. 1 and Eq. 12).
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
from gradjax.config import NetConfig
from gradjax.experiments import figures
from gradjax.experiments.registry import AgreementRow, Experiment, Grid
from gradjax.experiments.sweep import per_device

NAME = "phase-diagram"
# Largest finite value drawn for ξ_c (layers); the critical line itself is infinite.
_XI_CAP = 1e3



def _config(cell) -> NetConfig:
    """The network of a cell's σ_b² row (σ_w² is traced along the row)."""
    return NetConfig(depth=cell["depth"], width=cell["width"], activation=cell["activation"], init="gaussian",
                     sigma_b2=cell["sigma_b2"], dtype=cell.dtype)


def _fit_start(depth: int) -> int:
    """First layer index of the slope fit: the upper half, where q_l has converged to q* (the
    ordered-phase transients from q_0 = 1 live near the input)."""
    return depth // 2


def _sw2_measured(cell) -> np.ndarray:
    lo, hi, n = cell["sigma_w2_measured"]
    return np.linspace(lo, hi, n)


def _sw2_theory(cell) -> np.ndarray:
    lo, hi, n = cell["sigma_w2_theory"]
    return np.linspace(lo, hi, n)


@functools.partial(jax.jit, static_argnames=("start",))
def _theory_arrays(cfg, fine, meas, *, start):
    """χ₁ and ξ_c on the fine σ_w² row; ½ log10 χ₁ on the measured one, and the window rate there: the
    least-squares slope of ``gradjax.theory.gradient_profile`` (mean field, infinite width: the profile along the
    q-trajectory from q_0 = 1, so the approach of q_l to q* is included) over the layers the
    measurement fits; the critical σ_w². One compiled program for every σ_b² row."""
    act, sb2 = cfg.activation, cfg.sigma_b2
    row = lambda f, sw: jax.vmap(f, (None, 0, None))(act, sw, sb2)  # noqa: E731
    profiles = jax.vmap(lambda s: gradjax.theory.gradient_profile(cfg.with_(sigma_w2=s), finite_width=False))(meas)
    return (row(gradjax.theory.chi_1, fine), row(gradjax.theory.depth_scale_c, fine),
            0.5 * jnp.log10(row(gradjax.theory.chi_1, meas)), gradjax.empirical.growth_rate(profiles, start=start),
            gradjax.theory.critical_sigma_w2(act, sb2))


def theory(cell):
    fine, meas = _sw2_theory(cell), _sw2_measured(cell)
    dt = jnp.result_type(float)
    chi1, xi_c, rate, window, crit = _theory_arrays(_config(cell), jnp.asarray(fine, dt), jnp.asarray(meas, dt),
                                                    start=_fit_start(cell["depth"]))
    fine_c = {"sigma_w2_fine": fine}
    meas_c = {"sigma_w2": meas}
    return {
        "chi1_theory": xr.DataArray(np.asarray(chi1), dims=("sigma_w2_fine",), coords=fine_c,
                                    attrs={"units": "linear"}),
        "xi_c_theory": xr.DataArray(np.asarray(xi_c), dims=("sigma_w2_fine",), coords=fine_c,
                                    attrs={"units": "layers"}),
        "rate_theory": xr.DataArray(np.asarray(rate), dims=("sigma_w2",), coords=meas_c,
                                    attrs={"units": "log10 per layer", "what": "½ log10 χ₁ at q*"}),
        "rate_window_theory": xr.DataArray(np.asarray(window), dims=("sigma_w2",), coords=meas_c,
                                           attrs={"units": "log10 per layer",
                                                  "what": "fitted slope of the mean-field profile from q_0 = 1"}),
        "critical_sigma_w2_theory": ((), np.asarray(crit)),
    }


def _profiles(keys, sw2, *, cfg, batch):
    """(S, K, L) log10‖δ_l‖ at every σ_w² of ``sw2`` (K,): ``gradjax.empirical.gradient_profile`` vmapped
    over σ_w² (each seed's network drawn once at unit scale and scaled), with its default loss, the
    projection ⟨y, t⟩/B."""
    prof = jax.vmap(lambda s: gradjax.empirical.gradient_profile(
        cfg.with_(sigma_w2=s), seeds=keys, loss="projection", batch=batch).hidden)(sw2)
    return jnp.moveaxis(prof, 0, 1)


def measure(cell, keys):
    cfg = _config(cell)
    sw2 = _sw2_measured(cell)
    prof = per_device(_profiles, keys, jnp.asarray(sw2, cfg.jnp_dtype), cfg=cfg, batch=cell["batch"])
    rate = gradjax.empirical.growth_rate(prof, start=_fit_start(cfg.depth))
    layer = np.arange(1, cfg.depth + 1)
    return {
        "grad_norm": xr.DataArray(np.asarray(prof), dims=("seed", "sigma_w2", "layer"),
                                  coords={"sigma_w2": sw2, "layer": layer},
                                  attrs={"units": "log10", "what": "‖∂loss/∂h_l‖"}),
        "rate": xr.DataArray(np.asarray(rate), dims=("seed", "sigma_w2"), coords={"sigma_w2": sw2},
                             attrs={"units": "log10 per layer", "what": "−slope of log10‖δ_l‖, upper half"}),
    }


def bytes_per_seed(cell) -> int:
    k = cell["sigma_w2_measured"][2]
    n, L, b = cell["width"], cell["depth"], cell["batch"]
    return 2 * 4 * k * (L * n * n + 3 * L * b * n)


# ---- figure and agreement ------------------------------------------------------------------------

def _resample(values, y, y_fine):
    """Linear interpolation of (len(y), n) ``values`` along the first axis onto ``y_fine``."""
    if len(y) == 1:
        return np.repeat(values, len(y_fine), axis=0)
    return np.stack([np.interp(y_fine, y, col) for col in values.T], axis=1)


def _smooth_map(ax, x, y, z, *, cmap, norm, label):
    mesh = ax.pcolormesh(x, y, z, cmap=cmap, norm=norm, shading="gouraud")
    ax.figure.colorbar(mesh, ax=ax, label=label)
    return mesh


def _critical(ax, results, color="k"):
    sb = results.sigma_b2.values
    ax.plot(results.critical_sigma_w2_theory.values, sb, color=color, linewidth=1.8, label="critical line χ₁ = 1")


def plot(results, out_dir):
    from matplotlib.colors import LogNorm, TwoSlopeNorm

    params = json.loads(results.attrs["params"])
    sb = results.sigma_b2.values
    fine = results.sigma_w2_fine.values
    meas = results.sigma_w2.values
    chi1 = results.chi1_theory.transpose("sigma_b2", "sigma_w2_fine").values
    xi = results.xi_c_theory.transpose("sigma_b2", "sigma_w2_fine").values
    rate_th = 0.5 * np.log10(chi1)
    # Rows are the cells' σ_b² values; resample across them in quantities that are smooth there
    # (½ log10 χ₁ and 1/ξ_c = −ln χ_c, which crosses 0 on the critical line) for the drawing only.
    sb_fine = np.linspace(sb[0], sb[-1], 200)
    rate_fine = _resample(rate_th, sb, sb_fine)
    xi_fine = np.clip(1.0 / np.maximum(_resample(1.0 / xi, sb, sb_fine), 1e-12), 0.1, _XI_CAP)
    rate_meas = figures.seed_quantiles(results.rate.transpose("seed", "sigma_b2", "sigma_w2"))[1]
    vmax = float(np.nanmax(np.abs(np.concatenate([rate_th.ravel(), rate_meas.ravel()]))))
    div = TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)

    fig, axes = figures.panels(4, ncols=2, panel_size=(5.0, 3.8))
    ax = axes[0]
    _smooth_map(ax, fine, sb_fine, rate_fine, cmap="RdBu_r", norm=div, label="½ log10 χ₁ (per layer)")
    _critical(ax, results)
    ax.set_title("theory: ½ log10 χ₁ (gradient growth per layer)", fontsize="medium")
    ax = axes[1]
    _smooth_map(ax, fine, sb_fine, xi_fine, cmap="magma", norm=LogNorm(vmin=0.5, vmax=_XI_CAP), label="ξ_c (layers)")
    _critical(ax, results, color="c")
    ax.set_title("theory: correlation depth scale ξ_c", fontsize="medium")
    ax = axes[2]
    mesh = ax.pcolormesh(meas, sb, rate_meas, cmap="RdBu_r", norm=div, shading="nearest")
    fig.colorbar(mesh, ax=ax, label="measured rate (log10 per layer)")
    _critical(ax, results)
    ax.set_title(f"measured: −slope of log10‖δ_l‖ (median of {results.sizes['seed']} seeds)", fontsize="medium")
    for a in axes[:3]:
        a.set_xlabel(figures.coord_label("sigma_w2"))
        a.set_ylabel(figures.coord_label("sigma_b2"))
        a.set_xlim(min(fine[0], meas[0]), max(fine[-1], meas[-1]))
        a.set_ylim(sb[0], sb[-1])
        a.legend(loc="upper left", fontsize="small")
    ax = axes[3]
    rows = sb[np.unique(np.linspace(0, len(sb) - 1, min(4, len(sb))).round().astype(int))]
    cmap = figures.colors(list(rows))
    for v in rows:
        sub = results.sel(sigma_b2=v)
        figures.theory_line(ax, fine, 0.5 * np.log10(sub.chi1_theory.values), color=cmap[v],
                            label=figures.coord_label("sigma_b2", v))
        figures.median_band(ax, meas, sub.rate.transpose("seed", "sigma_w2"), color=cmap[v])
    ax.axhline(0.0, color="0.5", linewidth=0.6)
    ax.set_xlabel(figures.coord_label("sigma_w2"))
    ax.set_ylabel("gradient growth per layer (log10)")
    ax.set_title("theory ½ log10 χ₁ (lines) vs measured rate", fontsize="medium")
    figures.style_legend(ax, loc="lower right")
    fig.suptitle(f"{params['activation']} MLP, depth {params['depth']}, width {params['width']}: "
                 "order (blue: vanishing) / chaos (red: exploding)")
    return [figures.save(fig, out_dir, "phase_diagram")]


def _agreement_points(results):
    """A few (σ_b², σ_w²) measurement points: deep in the ordered phase, near the line, deep in chaos."""
    sb = results.sigma_b2.values
    meas = results.sigma_w2.values
    rows = sorted({sb[len(sb) // 4], sb[(3 * len(sb)) // 4]}) if len(sb) > 1 else [sb[0]]
    pts = []
    for v in rows:
        crit = float(results.critical_sigma_w2_theory.sel(sigma_b2=v))
        near = meas[np.argmin(np.abs(meas - crit))]
        for s in sorted({meas[0], near, meas[-1]}):
            pts.append((float(v), float(s)))
    return pts


def agreement(results):
    params = json.loads(results.attrs["params"])
    note = (f"width {params['width']}, depth {params['depth']}, {results.sizes['seed']} seeds; "
            "fit over the upper half of the layers")
    out = []
    for sb, sw in _agreement_points(results):
        sub = results.sel(sigma_b2=sb, sigma_w2=sw)
        measured = float(np.nanmedian(sub.rate.values))
        out.append(AgreementRow(quantity="gradient growth per layer (log10) vs ½ log10 χ₁",
                                where=f"tanh, σ_w²={sw:.3g}, σ_b²={sb:.3g}", theory=float(sub.rate_theory),
                                measured=measured, tolerance=0.01, metric="absolute", note=note))
    return out


def _grid(sb2, sw2_measured, seeds, **params):
    # σ_b² rows spaced quadratically: the critical line bends sharply near σ_b² = 0 (σ_w²* = 1 → 1.42 at 0.01)
    return Grid(axes={"sigma_b2": tuple(round(float(v), 6) for v in sb2)}, seeds=seeds,
                params={"activation": "tanh", "sigma_w2_theory": (0.25, 4.5, 200),
                        "sigma_w2_measured": sw2_measured, **params})


EXPERIMENT = Experiment(
    name=NAME,
    description=(
        "Order-to-chaos phase diagram over (σ_w², σ_b²): χ₁, ξ_c and the critical line (theory) beside the "
        "measured per-layer gradient growth rate.\n"
        "Tanh MLP. Theory: mean-field χ₁ = σ_w² E φ′(√q* z)², ξ_c = −1/ln χ_c and the line χ₁ = 1 "
        "(Schoenholz et al. 2017, arXiv:1611.01232). Measured: −slope of log10‖∂loss/∂h_l‖ against l over "
        "the upper half of the network (where q_l has reached q*), median over seeds; theory ½ log10 χ₁. "
        "Gradients vanish (blue) in the ordered phase left of the line and explode (red) in the chaotic "
        "phase right of it. Near σ_b² = 0 in the ordered phase q* = 0 is approached slowly, so the "
        "measured rate there follows the transient (rate_window_theory) rather than χ₁ at q*."
    ),
    sizes={
        "tiny": _grid(np.linspace(0.0, 1.0, 2), (0.5, 4.5, 3), 2, depth=8, width=16, batch=4),
        "quick": _grid(np.linspace(0.0, 1.0, 11) ** 2, (0.5, 4.5, 9), 4, depth=30, width=128, batch=16),
        "full": _grid(np.linspace(0.0, 1.0, 21) ** 2, (0.25, 4.5, 35), 16, depth=100, width=512, batch=32),
    },
    theory=theory, measure=measure, plot=plot, agreement=agreement, bytes_per_seed=bytes_per_seed, headline=True,
)
