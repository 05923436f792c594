"""``trainability``: test accuracy over depth × σ_w² on the digits, against the 6·ξ_c depth scale.

Theory (mean field, infinite width): signals — and with them the gradients that carry information
about the input — survive through about ξ_c = −1/ln χ_c layers, the correlation depth scale, which
diverges on the order-to-chaos line. Schoenholz et al. 2017 found that networks train precisely where
the depth is below roughly 6·ξ_c (their Fig. 5/6). Measured: the median test accuracy of tanh MLPs
trained on the 8×8 digits for a fixed budget of SGD-with-momentum updates, for every (depth, σ_w²)
at fixed σ_b², S seeds each.

Each cell of the grid is one depth; the σ_w² row lives inside the cell as an array dimension (a change
of σ_w² does not recompile the training loop, see :func:`gradjax.train.loop.compute_cfg`).

A cell is called *trainable* when its median test accuracy exceeds ``trainable_accuracy``
(chance is 0.1). The agreement rows report the fraction of (depth, σ_w²) points where this matches
the prediction ``depth < 6·ξ_c``: an honest, coarse statement — the training budget here is far
smaller than the paper's, and the boundary is a smooth crossover, not a step. Depths with
L/N ≥ :data:`MAX_DEPTH_TO_WIDTH` are outside the mean-field regime: their rows show the fraction without
a verdict and the all-depths row leaves them out (at the quick size, L = 40 at width 32: σ_w² = 2.5
fails to train at width 32 and trains at width 128).

References:
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232 (ξ_c, Eq. 9; the
  6·ξ_c trainability boundary, Sec. 5 and Fig. 5).
  Poole et al. 2016, "Exponential expressivity in deep neural networks through transient chaos",
  arXiv:1606.05340.
  Roberts, Yaida & Hanin 2021, "The Principles of Deep Learning Theory", arXiv:2106.10165 (L/N as the
  expansion parameter of finite-width corrections).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import gradjax.theory
import gradjax.train
from gradjax.config import NetConfig
from gradjax.experiments import figures
from gradjax.experiments.registry import AgreementRow, Experiment, Grid

NAME = "trainability"
#: Multiple of ξ_c up to which a network trains (Schoenholz et al. 2017, Sec. 5: "6ξ_c").
XI_MULTIPLE = 6.0
#: Chance accuracy on the 10 digit classes.
CHANCE = 0.1
#: Largest ξ_c kept for drawing (layers); ξ_c is infinite on the critical line itself.
_XI_CAP = 1e4
#: Largest depth-to-width ratio L/N at which the agreement rows give a verdict. Mean-field depth scales
#: are the leading order of an expansion in L/N (Roberts, Yaida & Hanin 2021, "The Principles of Deep
#: Learning Theory", arXiv:2106.10165); at L/N ≥ 1 the corrections are of the size of the signal. Measured
#: (300 updates, 4 seeds, L = 40, σ_w² = 2.5, 6ξ_c = 71): median test accuracy 0.28 at width 32
#: (falling from 0.49 after 100 updates), 0.94 at width 128.
MAX_DEPTH_TO_WIDTH = 1.0
#: Digits: 64 pixels in, 10 classes out.
_IN_DIM, _OUT_DIM = 64, 10


def _config(cell, sigma_w2: float) -> NetConfig:
    return NetConfig(depth=cell["depth"], width=cell["width"], in_dim=_IN_DIM, out_dim=_OUT_DIM,
                     activation=cell["activation"], init="gaussian", sigma_w2=float(sigma_w2),
                     sigma_b2=float(cell["sigma_b2"]), dtype=cell.dtype)


def _train_config(cell) -> gradjax.train.TrainConfig:
    return gradjax.train.TrainConfig(optimizer="momentum", learning_rate=cell["learning_rate"], momentum=0.9,
                                     steps=cell["steps"], batch_size=cell["batch"], log_every=cell["log_every"])


def _sw2_fine(cell) -> np.ndarray:
    lo, hi, n = cell["sigma_w2_theory"]
    return np.linspace(lo, hi, n)


def _xi_c(activation: str, sw2, sb2: float) -> np.ndarray:
    """(K,) ξ_c in layers at every σ_w² of ``sw2`` (one vmapped call)."""
    dt = jnp.result_type(float)
    row = jax.vmap(gradjax.theory.depth_scale_c, (None, 0, None))
    return np.asarray(row(activation, jnp.asarray(sw2, dt), jnp.asarray(sb2, dt)), dtype=float)


def theory(cell):
    act, sb2, depth = cell["activation"], float(cell["sigma_b2"]), cell["depth"]
    fine = _sw2_fine(cell)
    meas = np.asarray(cell["sigma_w2_values"], dtype=float)
    # one vmapped call over both σ_w² axes: one compiled program, not one per axis length
    xi = np.minimum(_xi_c(act, np.concatenate([fine, meas]), sb2), _XI_CAP)
    xi_fine, xi_meas = xi[:len(fine)], xi[len(fine):]
    return {
        "xi_c_theory": xr.DataArray(xi_fine, dims=("sigma_w2_fine",), coords={"sigma_w2_fine": fine},
                                    attrs={"units": "layers", "what": f"ξ_c = −1/ln χ_c (capped at {_XI_CAP:g})"}),
        "trainable_theory": xr.DataArray((depth < XI_MULTIPLE * xi_meas).astype(float), dims=("sigma_w2",),
                                         coords={"sigma_w2": meas},
                                         attrs={"what": f"1 where depth < {XI_MULTIPLE:g}·ξ_c"}),
        "critical_sigma_w2_theory": ((), np.asarray(float(gradjax.theory.critical_sigma_w2(act, sb2)))),
    }


def _train(keys, *, cfg, tc):
    """Final test accuracy, test-accuracy curve and final training loss of every seed: (S,), (S, T), (S,)."""
    hist = gradjax.train.train(cfg, tc, gradjax.train.load_digits(), seeds=keys, progress=False)
    acc = np.asarray(hist.accuracy).T  # (S, T)
    return acc[:, -1], acc, np.asarray(hist.loss[-1])


def measure(cell, keys):
    sw2 = np.asarray(cell["sigma_w2_values"], dtype=float)
    tc = _train_config(cell)
    finals, curves, losses = [], [], []
    for s in sw2:  # one compiled training program for the whole row (σ_w² only shapes the initial draw)
        # gradjax.train.train is a host loop (one jitted chunk per history row, rows read back to numpy), so
        # it cannot run inside per_device's shard_map; called directly, its jitted chunks follow the keys'
        # sharding over the seed mesh, so every device trains its own seeds.
        acc, curve, loss = _train(keys, cfg=_config(cell, s), tc=tc)
        finals.append(np.asarray(acc))
        curves.append(np.asarray(curve))
        losses.append(np.asarray(loss))
    steps = np.asarray(tc.row_steps)
    return {
        "accuracy": xr.DataArray(np.stack(finals, axis=1), dims=("seed", "sigma_w2"), coords={"sigma_w2": sw2},
                                 attrs={"what": f"test accuracy after {tc.steps} updates"}),
        "accuracy_curve": xr.DataArray(np.stack(curves, axis=1), dims=("seed", "sigma_w2", "step"),
                                       coords={"sigma_w2": sw2, "step": steps}, attrs={"what": "test accuracy"}),
        "train_loss": xr.DataArray(np.stack(losses, axis=1), dims=("seed", "sigma_w2"), coords={"sigma_w2": sw2},
                                   attrs={"what": "final cross-entropy on the training set"}),
    }


# ---- figure and agreement ------------------------------------------------------------------------


def _to_index(v, centres, log: bool) -> np.ndarray:
    """Position of values ``v`` on an axis whose cells are drawn at 0, 1, … for ``centres``: piecewise
    linear between centres (in log space when ``log``), extended linearly beyond the ends."""
    u = np.log(np.asarray(v, dtype=float)) if log else np.asarray(v, dtype=float)
    c = np.log(np.asarray(centres, dtype=float)) if log else np.asarray(centres, dtype=float)
    if len(c) == 1:
        return u - c[0]
    idx = np.interp(u, c, np.arange(len(c)))
    lo, hi = u < c[0], u > c[-1]
    idx[lo] = (u[lo] - c[0]) / (c[1] - c[0])
    idx[hi] = len(c) - 1 + (u[hi] - c[-1]) / (c[-1] - c[-2])
    return idx


def _median_accuracy(results) -> np.ndarray:
    """(depth, σ_w²) median test accuracy across seeds."""
    return figures.seed_quantiles(results.accuracy.transpose("seed", "depth", "sigma_w2"))[1]


def plot(results, out_dir):
    p = json.loads(results.attrs["params"])
    depth = results.depth.values.astype(float)
    sw2 = results.sigma_w2.values.astype(float)
    med = _median_accuracy(results)
    fine = results.sigma_w2_fine.values
    xi = results.xi_c_theory.isel(depth=0).values
    crit = float(results.critical_sigma_w2_theory.isel(depth=0))
    thr = p["trainable_accuracy"]

    fig, axes = figures.panels(2, ncols=2, panel_size=(5.6, 4.2))
    ax = axes[0]
    log_depth = len(depth) > 1 and depth.max() / depth.min() > 3
    # cells on an index grid (σ_w² and depth values are unevenly spaced); the theory curve is mapped
    # onto it piecewise linearly between the cell centres
    mesh = ax.pcolormesh(np.arange(len(sw2) + 1) - 0.5, np.arange(len(depth) + 1) - 0.5, med, cmap="viridis",
                         vmin=0.0, vmax=1.0)
    fig.colorbar(mesh, ax=ax, label="test accuracy (median over seeds)")
    for i in range(len(depth)):
        for j in range(len(sw2)):
            if np.isfinite(med[i, j]):
                ax.text(j, i, f"{med[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="k" if med[i, j] > 0.6 else "w")
    keep = np.isfinite(xi) & (fine >= sw2[0]) & (fine <= sw2[-1])
    cx = _to_index(fine[keep], sw2, False)
    cy = _to_index(XI_MULTIPLE * xi[keep], depth, log_depth)
    ax.plot(cx, cy, color="w", linewidth=2.6)
    ax.plot(cx, cy, color="r", linewidth=1.5, label=f"L = {XI_MULTIPLE:g}·ξ_c (theory)")
    ax.axvline(_to_index([crit], sw2, False)[0], color="r", linestyle=":", linewidth=1.0,
               label=f"critical σ_w²={crit:.3g}")
    ax.set_xlim(-0.5, len(sw2) - 0.5)
    ax.set_ylim(-0.5, len(depth) - 0.5)
    ax.set_xticks(np.arange(len(sw2)), [f"{s:g}" for s in sw2])
    ax.set_yticks(np.arange(len(depth)), [f"{int(d)}" for d in depth])
    ax.set_xlabel(figures.coord_label("sigma_w2"))
    ax.set_ylabel("depth L")
    ax.set_title("test accuracy; predicted trainable below the red curve", fontsize="medium")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize="small")

    ax = axes[1]
    cmap = figures.colors(list(depth))
    for d in depth:
        sub = results.sel(depth=d)
        figures.median_band(ax, sw2, sub.accuracy.transpose("seed", "sigma_w2"), color=cmap[d],
                            label=f"L={int(d)}")
        # σ_w² range predicted trainable at this depth (6 ξ_c > L), drawn as a bar at the top
        ok = (XI_MULTIPLE * xi > d).astype(float)
        ok[ok == 0] = np.nan
        ax.plot(fine, (1.02 + 0.025 * list(depth).index(d)) * ok, color=cmap[d], linewidth=2.5)
    ax.axhline(thr, color="0.4", linestyle="--", linewidth=0.8, label=f"trainable threshold {thr:g}")
    ax.axhline(CHANCE, color="0.6", linestyle=":", linewidth=0.8, label="chance")
    ax.axvline(crit, color="r", linestyle=":", linewidth=1.0)
    ax.set_ylim(0.0, 1.03 + 0.025 * len(depth))
    ax.set_xlabel(figures.coord_label("sigma_w2"))
    ax.set_ylabel("test accuracy")
    ax.set_title("accuracy vs σ_w²; bars on top: theory's trainable range L < 6ξ_c", fontsize="small")
    figures.style_legend(ax, theory=False, loc="center right")
    fig.suptitle(f"{p['activation']} MLP on digits, width {p['width']}, σ_b²={p['sigma_b2']}, {p['steps']} "
                 f"SGD-momentum updates (η={p['learning_rate']}), {results.sizes['seed']} seeds")
    return [figures.save(fig, out_dir, "trainability")]


def agreement(results):
    p = json.loads(results.attrs["params"])
    thr = p["trainable_accuracy"]
    med = _median_accuracy(results)
    pred = results.trainable_theory.transpose("depth", "sigma_w2").values > 0.5
    ok = np.isfinite(med)
    meas = med > thr
    note = (f"trainable = median test accuracy > {thr:g} after {p['steps']} updates; width {p['width']}, "
            f"{results.sizes['seed']} seeds; coarse σ_w² grid, so cells at the boundary may go either way")
    depths = results.depth.values.astype(int)
    modelled = depths < p["width"] * MAX_DEPTH_TO_WIDTH
    pooled = ok & modelled[:, None]
    left_out = [f"L={d}" for d in depths[~modelled]]
    rows = [AgreementRow(quantity=f"fraction of (L, σ_w²) cells where trainable ⇔ L < {XI_MULTIPLE:g}ξ_c",
                         where=f"{p['activation']}, σ_b²={p['sigma_b2']}, all depths"
                               + (f" but {', '.join(left_out)}" if left_out else ""),
                         theory=1.0, measured=float(np.mean(meas[pooled] == pred[pooled])) if pooled.any() else np.nan,
                         tolerance=0.2, metric="absolute", note=note)]
    for i, d in enumerate(depths):
        o = ok[i]
        rows.append(AgreementRow(quantity=f"fraction of σ_w² where trainable ⇔ L < {XI_MULTIPLE:g}ξ_c",
                                 where=f"L={int(d)}", theory=1.0,
                                 measured=float(np.mean(meas[i][o] == pred[i][o])) if o.any() else np.nan,
                                 tolerance=0.2 if modelled[i] else None, metric="absolute",
                                 note=note if modelled[i] else note + f"; {_outside_regime(d, p['width'])}"))
    return rows


def _outside_regime(depth: int, width: int) -> str:
    return (f"not modelled: L/N = {depth / width:.2g} ≥ {MAX_DEPTH_TO_WIDTH:g}, where the finite-width fluctuations "
            "of the correlation map (O(L/N)) are as large as the mean field's signal and ξ_c is not this "
            "network's depth scale")


def _grid(depths, sw2, seeds, **params):
    return Grid(axes={"depth": tuple(depths)}, seeds=seeds,
                params={"activation": "tanh", "sigma_b2": 0.05, "sigma_w2_values": tuple(float(s) for s in sw2),
                        "sigma_w2_theory": (0.1, float(max(sw2)) * 1.05, 300), "trainable_accuracy": 0.5,
                        "learning_rate": 1e-2, **params})


EXPERIMENT = Experiment(
    name=NAME,
    description=(
        "Trainability over depth × σ_w²: digits test accuracy of tanh MLPs against the 6·ξ_c depth scale.\n"
        "Theory: the correlation depth scale ξ_c = −1/ln χ_c (Schoenholz et al. 2017, arXiv:1611.01232) "
        "diverges at the order-to-chaos line; networks are predicted to train where L < 6ξ_c, a band "
        "around the critical σ_w² that narrows with depth. Measured: median test accuracy across seeds "
        "after a fixed budget of SGD-with-momentum updates (far fewer than the paper's, so the measured "
        "band can be narrower than 6ξ_c, most visibly on the chaotic side where training is slow "
        "rather than impossible). Agreement: the fraction of grid points where "
        "'accuracy > threshold' matches 'L < 6ξ_c'."
    ),
    sizes={
        "tiny": _grid((4,), (0.25, 1.76), 2, width=8, batch=32, steps=20, log_every=10),
        "quick": _grid((6, 16, 40), (0.25, 0.5, 1.0, 1.5, 2.5, 4.0, 6.0), 4, width=32, batch=128, steps=300,
                       log_every=100),
        "full": _grid((10, 20, 40, 80, 160), (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.76, 2.0, 2.5, 3.0, 4.0, 6.0, 9.0),
                      16, width=128, batch=128, steps=3000, log_every=250),
    },
    theory=theory, measure=measure, plot=plot, agreement=agreement, headline=False,
)
