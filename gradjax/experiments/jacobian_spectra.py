"""``jacobian-spectra``: squared singular values of the input-output Jacobian at criticality.

For linear, tanh and relu MLPs with Gaussian or scaled-orthogonal weights, each at the critical point
χ₁ = 1 (linear: σ_w² = 1; relu: σ_w² = 2, σ_b² = 0; tanh: σ_b² = ``tanh_sigma_b2`` and σ_w² on the
critical line, where q* is small), the eigenvalues λ of JJᵀ, J = ∂h_L/∂h_0, are measured at depths
L = 2 … 128 and compared with the free-probability density of Pennington, Schoenholz & Ganguli
(``gradjax.theory.jacobian_density``). The claim of the field: only orthogonal weights with a
nonlinearity that is linear near the origin (tanh at small q*) keep the spectrum concentrated around
λ = 1 as depth grows (dynamical isometry); Gaussian weights — and relu with any weights — spread it
over many decades, the variance growing linearly in L.

One network of the deepest depth per (activation, init) cell serves every depth: the Jacobian
∂h_L/∂h_{L−d} of its top d blocks is, in distribution, the end-to-end Jacobian of a depth-d network
started at q* (the inputs are scaled so that q_0 = q*; one compiled program per cell). Measured: the
singular values by SVD in the working precision; values below ``_FLOOR`` decades under the largest are
rounding noise (relu's exact zeros land there too) and are counted as "unresolved", not histogrammed.
relu's mean λ per network is heavy-tailed across networks, so its agreement row is the log-normal
estimate of log10 E[mean λ] over the seeds (``gradjax.experiments.estimates``) within 3 standard errors
(E[λ] = 1 is exact at any width for relu with σ_b² = 0).

References:
  Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through dynamical
  isometry: theory and practice", arXiv:1711.04735.
  Pennington, Schoenholz & Ganguli 2018, "The emergence of spectral universality in deep networks",
  arXiv:1802.09979 (moments, Eq. 11–12).
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
from gradjax.experiments import estimates, figures
from gradjax.experiments.registry import AgreementRow, Experiment, Grid
from gradjax.experiments.sweep import per_device

NAME = "jacobian-spectra"
# Singular values more than this many decades (log10 s) below the largest are not resolved by a
# float32 SVD (ε ≈ 1.2e-7 of σ_max) and are counted as unresolved, with a decade of margin.
_FLOOR = 6.0
# λ points of each theory density (static in the theory's compiled program).
_POINTS = 600
# Stream folded into a seed's key for its input vector (independent of the weight draws).
_DATA_STREAM = 0x0DA7A


@functools.lru_cache(maxsize=None)
def _critical(activation: str, tanh_sigma_b2: float) -> tuple[float, float, float]:
    """(σ_w², σ_b², q*) of the critical point used for ``activation`` (theory in float64)."""
    if activation == "linear":
        return 1.0, 0.0, 1.0
    if activation == "relu":
        return 2.0, 0.0, 1.0  # q_l = q_0 is preserved: any q is a fixed point; q_0 = 1
    with jax.enable_x64(True):
        sw = float(gradjax.theory.critical_sigma_w2(activation, tanh_sigma_b2))
        q = float(gradjax.theory.q_star(activation, sw, tanh_sigma_b2))
    return sw, float(tanh_sigma_b2), q


def _config(cell, depth: int | None = None) -> NetConfig:
    sw, sb, _ = _critical(cell["activation"], cell["tanh_sigma_b2"])
    return NetConfig(depth=depth or max(cell["depths"]), width=cell["width"], activation=cell["activation"],
                     init=cell["init"], sigma_w2=sw, sigma_b2=sb, dtype=cell.dtype)


def theory(cell):
    _, _, q = _critical(cell["activation"], cell["tanh_sigma_b2"])
    depths = tuple(cell["depths"])
    grids, dens, means, vars_, atoms, locs = [], [], [], [], [], []
    with jax.enable_x64(True):  # the density solve needs float64 (edge search, Newton in the complex plane)
        for d in depths:
            s = gradjax.theory.jacobian_density(_config(cell, d).with_(dtype="float64"), q0=q, points=_POINTS)
            grids.append(np.asarray(s.grid))
            dens.append(np.asarray(s.density))
            means.append(float(s.mean))
            vars_.append(float(s.var))
            atoms.append(float(s.atom_mass))
            locs.append(float(s.atom_loc))
    dc = {"depth": np.asarray(depths)}
    lin = {"units": "linear"}
    return {
        "lambda_theory": xr.DataArray(np.stack(grids), dims=("depth", "point"), coords=dc, attrs=lin),
        "density_theory": xr.DataArray(np.stack(dens), dims=("depth", "point"), coords=dc,
                                       attrs={"units": "per unit λ", "what": "continuous part, integrates to 1 − atom"}),
        "mean_theory": xr.DataArray(np.asarray(means), dims=("depth",), coords=dc, attrs=lin),
        "var_theory": xr.DataArray(np.asarray(vars_), dims=("depth",), coords=dc, attrs=lin),
        "atom_mass_theory": xr.DataArray(np.asarray(atoms), dims=("depth",), coords=dc),
        "atom_loc_theory": xr.DataArray(np.asarray(locs), dims=("depth",), coords=dc, attrs=lin),
    }


def _spectra(keys, *, cfg, layers, q0):
    """(S, n_depths, N) log10 singular values of ∂h_L/∂h_l, l in ``layers``, inputs scaled to q_0."""

    def one_input(key):
        g = jax.random.normal(jax.random.fold_in(key, _DATA_STREAM), (1, cfg.in_dim), cfg.jnp_dtype)
        # h_0 = x W_in with W_in ~ N(0, 1/in_dim): entries of variance ‖x‖²/in_dim = q0 exactly
        return g * jnp.sqrt(q0 * cfg.in_dim).astype(cfg.jnp_dtype) / jnp.linalg.norm(g)

    x = jax.vmap(one_input)(keys)
    return gradjax.empirical.jacobian_spectrum(cfg, seeds=keys, inputs=x, layers=list(layers), method="svd")


def measure(cell, keys):
    cfg = _config(cell)
    _, _, q = _critical(cell["activation"], cell["tanh_sigma_b2"])
    depths = tuple(cell["depths"])
    layers = tuple(cfg.depth - d for d in depths)  # ∂h_L/∂h_{L−d}: the top d blocks
    sv = per_device(_spectra, keys, cfg=cfg, layers=layers, q0=q)
    return {"log10_sv": xr.DataArray(np.asarray(sv), dims=("seed", "depth", "index"),
                                     coords={"depth": np.asarray(depths)},
                                     attrs={"units": "log10", "what": "singular values of ∂h_L/∂h_{L−depth}"})}


def bytes_per_seed(cell) -> int:
    n, L, k = cell["width"], max(cell["depths"]), len(cell["depths"])
    return 2 * 4 * (2 * L * n * n + 8 * n * n + 4 * k * n * n)


# ---- figure and agreement ------------------------------------------------------------------------

def _lambdas(sv):
    """λ = s² (linear) and the mask of resolved values, from log10 singular values (…, N)."""
    sv = np.asarray(sv, dtype=float)
    top = np.nanmax(sv, axis=-1, keepdims=True)
    resolved = np.isfinite(sv) & (sv > top - _FLOOR)
    lam = np.where(np.isfinite(sv), 10.0 ** (2 * np.where(np.isfinite(sv), sv, 0.0)), 0.0)
    return lam, resolved


def _pooled_moments(sv):
    """Mean and variance of λ pooled over seeds and singular values ((S, N) → two scalars)."""
    lam, _ = _lambdas(sv)
    lam = lam[np.isfinite(np.asarray(sv)).any(axis=-1)]  # drop seeds absent (NaN) from the file
    return float(lam.mean()), float(lam.var())


def plot(results, out_dir):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    params = json.loads(results.attrs["params"])
    acts, inits = list(results.activation.values), list(results.init.values)
    depths = list(results.depth.values)
    cmap = figures.colors(depths, cmap="viridis" if len(depths) > 4 else None)
    fig, axes = figures.panels(len(acts) * len(inits), ncols=len(inits), panel_size=(5.0, 3.3))
    for i, act in enumerate(acts):
        for j, init in enumerate(inits):
            ax = axes[i * len(inits) + j]
            sub = results.sel(activation=act, init=init)
            unresolved = []
            for d in depths:
                cur = sub.sel(depth=d)
                sv = cur.log10_sv.transpose("seed", "index").values
                sv = sv[np.isfinite(sv).any(axis=-1)]
                if sv.size == 0:
                    continue
                lam, ok = _lambdas(sv)
                u = np.log10(lam[ok])
                lo, hi = np.floor(u.min() * 4) / 4 - 0.25, np.ceil(u.max() * 4) / 4 + 0.25
                edges = np.linspace(lo, hi, max(8, int((hi - lo) / 0.1)))
                # area = fraction of resolved values, so that it compares with the continuous part
                counts, _ = np.histogram(u, bins=edges)
                counts = counts / (lam.size * np.diff(edges))
                ax.stairs(counts, edges, fill=True, alpha=figures.BAND_ALPHA, color=cmap[d])
                ax.stairs(counts, edges, color=cmap[d], linewidth=0.8)
                unresolved.append(1 - ok.mean())
                mass, loc = float(cur.atom_mass_theory), float(cur.atom_loc_theory)
                if mass > 0.999:  # a point mass (linear φ, orthogonal W): all λ equal
                    ax.axvline(np.log10(loc), color=cmap[d], linewidth=1.8, label=figures.coord_label("depth", d))
                else:
                    lt, rho = cur.lambda_theory.values, cur.density_theory.values
                    keep = (lt > 0) & np.isfinite(rho)
                    # density of log10 λ: ρ(λ) · λ · ln 10
                    figures.theory_line(ax, np.log10(lt[keep]), rho[keep] * lt[keep] * np.log(10), color=cmap[d],
                                        label=figures.coord_label("depth", d))
            atom = float(sub.atom_mass_theory.max())
            note = f"theory atom at λ=0: {atom:.2g}; " if 0 < atom < 0.999 else ""
            if unresolved:
                note += f"unresolved (< 1e-{2 * _FLOOR:g}·max): {max(unresolved):.0%}"
            sw = _critical(act, params["tanh_sigma_b2"])
            ax.set_title(f"{act}, {init} W (σ_w²={sw[0]:.3g}, σ_b²={sw[1]:.3g})\n{note}", fontsize="small")
            ax.set_xlabel("log10 λ  (λ = squared singular value of J)")
            ax.set_ylabel("density of log10 λ")
            ax.set_xlim(-2 * _FLOOR, 3.0)
            ax.set_ylim(0, ax.get_ylim()[1] * 1.05)
            handles, labels = ax.get_legend_handles_labels()
            handles += [Line2D([], [], color="0.3", linewidth=1.8), Patch(color="0.3", alpha=figures.BAND_ALPHA)]
            labels += ["theory (free probability)", "measured (pooled over seeds)"]
            ax.legend(handles, labels, loc="upper left", fontsize="x-small")
    fig.suptitle(f"Spectrum of JJᵀ at criticality (χ₁ = 1), width {params['width']}, "
                 f"{results.sizes['seed']} seeds: theory (free probability) over the measured histogram")
    return [figures.save(fig, out_dir, "jacobian_spectra")]


def agreement(results):
    params = json.loads(results.attrs["params"])
    rows = []
    for act in results.activation.values:
        for init in results.init.values:
            for d in sorted(results.depth.values)[-2:]:
                cur = results.sel(activation=act, init=init, depth=d)
                sv = cur.log10_sv.transpose("seed", "index").values
                if not np.isfinite(sv).any():
                    continue
                mean, var = _pooled_moments(sv)
                note = f"width {params['width']}, {results.sizes['seed']} seeds pooled"
                where = f"{act}, {init}, L={int(d)}"
                if act == "relu":
                    rows.append(_relu_mean_row(cur, sv, where, params["width"]))
                else:
                    rows.append(AgreementRow(quantity="mean of λ (JJᵀ eigenvalues)", where=where,
                                             theory=float(cur.mean_theory), measured=mean, tolerance=0.2, note=note))
                vt = float(cur.var_theory)
                if vt > 1e-9:
                    rows.append(AgreementRow(quantity="variance of λ", where=where, theory=vt, measured=var,
                                             tolerance=0.5, note=note + "; O(L/N) finite-width corrections"))
                else:
                    rows.append(AgreementRow(quantity="variance of λ", where=where, theory=vt, measured=var,
                                             tolerance=1e-3, metric="absolute", note=note))
    return rows


def _relu_mean_row(cur, sv, where: str, width: int) -> AgreementRow:
    """relu's mean λ as log10 E[mean λ]: the log-normal estimate over the seeds (each network's mean λ
    is heavy-tailed: a plain mean of few seeds falls short of the ensemble mean in most draws).

    The theory is exact at any width here (σ_b² = 0, Gaussian or Haar W): a unit's sign flip maps W to
    an equally likely W and swaps its φ′ between 0 and 1, so each block multiplies E‖u D W‖² by σ_w²/2
    = 1 whatever came before. The tolerance is the sampling error alone.
    """
    per_seed = estimates.log10_mean_square(sv)
    est, se = estimates.log_normal_mean(per_seed)
    s = int(np.isfinite(per_seed).sum())
    return AgreementRow(quantity="log10 E[mean λ] (JJᵀ eigenvalues)", where=where,
                        theory=float(np.log10(float(cur.mean_theory))), measured=est,
                        tolerance=estimates.statistical_tolerance(se, s), metric="absolute",
                        note=f"width {width}: log-normal estimate over the seeds' mean λ; "
                             f"{estimates.tolerance_note(se, s, model_why='exact at any width')}")


def _grid(acts, inits, depths, seeds, width):
    return Grid(axes={"activation": acts, "init": inits}, seeds=seeds,
                params={"depths": tuple(depths), "width": width, "tanh_sigma_b2": 1e-3})


EXPERIMENT = Experiment(
    name=NAME,
    description=(
        "Squared-singular-value densities of the input-output Jacobian at criticality: linear / tanh / relu × "
        "Gaussian / orthogonal weights, free-probability theory over the measured histogram.\n"
        "Each network sits at χ₁ = 1 (tanh: σ_b² = 0.001, q* ≈ 0.11); the spectrum of JJᵀ is drawn as the "
        "density of log10 λ. Orthogonal weights with linear or tanh units keep λ near 1 at every depth "
        "(dynamical isometry); Gaussian weights, and relu with either, spread λ over decades, with variance "
        "growing linearly in depth (Pennington, Schoenholz & Ganguli 2017, arXiv:1711.04735). Relu's half of "
        "zero derivatives puts an atom at λ = 0 (not drawn; the unresolved fraction is printed). The infinite-width "
        "density has a long tail towards λ → 0 (Gaussian products: ρ ∝ λ^(−L/(L+1))); below 1e-12 of the largest "
        "λ a float32 SVD cannot resolve it, so the axis stops there and the histogram's area is the resolved "
        "fraction."
    ),
    sizes={
        "tiny": _grid(("tanh",), ("orthogonal",), (2, 4), 2, 16),
        "quick": _grid(("linear", "tanh", "relu"), ("gaussian", "orthogonal"), (2, 8, 32), 8, 128),
        "full": _grid(("linear", "tanh", "relu"), ("gaussian", "orthogonal"), (2, 8, 32, 128), 16, 1024),
    },
    theory=theory, measure=measure, plot=plot, agreement=agreement, bytes_per_seed=bytes_per_seed,
)
