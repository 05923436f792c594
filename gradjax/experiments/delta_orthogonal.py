"""``delta-orthogonal``: vanilla tanh CNNs at criticality on the digits images, delta-orthogonal vs Gaussian.

A cnn (``arch="cnn"``, 8×8 maps with circular padding, 3×3 kernels, N channels, tanh) at the critical
point whose length fixed point is q* = 1/L (``gradjax.theory.critical_point``; Xiao et al. 2018's reference
notebook takes ``qstar = 1./DEPTH``: tanh then stays near its linear regime, where the inputs' correlation
approaches 1 slowly enough to keep them apart over L layers), with gaussian kernels (fan-in 9N) or
delta-orthogonal kernels (Xiao et al. 2018, Algorithm 2), at several depths, run at initialization on the digits images (one input
channel, standardized pixels).

Measured (``gradjax.empirical``): log10 ‖∂loss/∂h_l‖ per block (projection loss), and the singular-value
distribution of the end-to-end Jacobian of the whole feature map ∂h_L/∂h_0 by stochastic Lanczos
quadrature (matrix-free: D = 64·N). Theory (``gradjax.theory.conv``, position-resolved mean field): the
digits are not translation invariant — background positions start h_0 at q ≈ 0, strokes above q* — so
every position follows its own length trajectory q_l(α) from the images' own q_0(α) (the diagonal of the
input layer's covariance); the gradient profile sums the per-position cotangent squares over examples and
positions, and E σ² of ∂h_L/∂h_0 is the position mean of g_0 (delta-orthogonal: the mean over positions of
Π_l χ₁(q_{l−1}(α)); gaussian kernels mix neighbouring positions through their window). A single length per
layer (the mean over positions) predicts E σ² ≈ 1 and, at σ_b² = 0.05 (q* = 0.57), misses the delta-orthogonal
measurement by 0.16 decades (0.15 at N → ∞: at L = 8, 1,024 channels, 32 seeds, measured 0.151 ± 0.002 vs 0.149
position-resolved and −0.011 from the mean length). The depth scale ξ_p of every spatial Fourier mode of
the correlations (``gradjax.theory.mode_depth_scales``) is stored per cell: at criticality the mean mode is marginal in both
inits, every other mode of a gaussian cnn dies over a few layers, delta-orthogonal kernels keep them all
(ξ_p = ∞).

Two widths per cell: ``width`` channels for the networks measured at initialization (cheap) and
``train_width`` for the trained ones (the training budget; quick: 64 and 16). Agreement rows compare the
networks at initialization; tolerances are 10% of the prediction plus 3 standard errors of the seed mean. A
delta-orthogonal kernel acts position by position, so ∂h_L/∂h_0 is a product of L width-N matrices per
position; their finite-width excess of E σ² over the mean field grows with L/N (at σ_b² = 0.05, q* = 0.57;
``scripts/delta_orthogonal_widths.py``: L = 8: +0.037 decades at 16
channels, +0.015 at 64, +0.002 at 1,024; L = 32: +0.13, +0.04, +0.003; 16–64 seeds each, float64) and is not
modelled (at 16 channels, the quick run's first choice, it was as large as the tolerances: 4 of 12 rows
outside at 4 seeds, all within at 64 channels, both at σ_b² = 0.05). The gradient profile's slope shows the same excess
(backward growth): at L = 8 −0.0044 ± 0.0015 per layer measured at 16 channels, −0.0028 ± 0.0007 at 64,
−0.0017 ± 0.0006 at 128, theory −0.0018; at L = 32 −0.0025 ± 0.0009, −0.0006 ± 0.0005, +0.0001 ± 0.0003,
theory −0.0002 (16 seeds; the mean-length theory gave +0.0047 and +0.0004; ``--slopes`` of the same script).
At q* = 1/L the tanh networks are near-linear and the orthogonal products barely fluctuate: the
delta-orthogonal slopes match the position-resolved theory to 1–3% at every width tried (L = 32, 8 seeds,
float32, ``scripts/delta_orthogonal_slopes.py``: 0.00945 ± 0.00006, 0.00966 ± 0.0001, 0.00973 ± 0.00004 at 16, 64,
256 channels vs 0.0098), while
gaussian kernels keep a finite-width excess that grows with L/N (0.0082 ± 0.0028, 0.0146 ± 0.0015,
0.0112 ± 0.0008 vs 0.0107): the quick size's gaussian slope rows at 128 and 256 layers (L/N = 2, 4) miss
by it.

Trained (``gradjax.train.train``): networks of the same depth (up to ``train_max_depth``; deeper cells are
measured at initialization only) and init with ``train_width`` channels trained on the digits with Adam
(η = ``lr_depth``/L, :func:`learning_rate`) for a short budget; the test accuracy per depth and init (Xiao et
al. 2018, Fig. 1/4: delta-orthogonal CNNs train at depths where Gaussian ones lose the spatial modes).

Memory: the gradient profile keeps one state per segment of ≈ √L blocks and draws each block's kernel
from its key inside each sweep (``segment`` and ``weights="regenerated"`` of
``gradjax.empirical.gradient_profile``), and training differentiates checkpointed segments (``segment``
of ``gradjax.train.train``): the states held grow as √L instead of L, and no O(L) copy of the kernels
is made outside training. The spectrum's single-example taps (L·D numbers) are kept. The full size's
configuration at 1,000 layers (128 channels measured and trained, batch 32, training batch 128), for one seed and
one update, ran on a 2-core CPU in 808 s with 9.6 GB peak resident (which stage holds the peak was not
measured): slope 0.0004588 measured against 0.0004591, log10
E σ² −2.277 against −2.289.

References:
  Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington 2018, "Dynamical Isometry and a Mean Field Theory
  of CNNs: How to Train 10,000-Layer Vanilla Convolutional Neural Networks", arXiv:1806.05393.
  Pennington, Schoenholz & Ganguli 2017, arXiv:1711.04735 (orthogonal free-probability spectra).
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import xarray as xr

import gradjax.empirical
import gradjax.theory
import gradjax.train
from gradjax.config import NetConfig
from gradjax.experiments import figures
from gradjax.experiments.registry import AgreementRow, Experiment, Grid
from gradjax.experiments.estimates import mean_error
from gradjax.experiments.sweep import per_device
from gradjax.theory.conv import input_covariance
from gradjax.train.data import load_digits

# Agreement tolerances: 10% of theory plus SE_MULTIPLE standard errors of the seed mean.
REL_TOL, SE_MULTIPLE = 0.10, 3.0
# Lanczos steps and probes of the end-to-end spectral density (per seed).
_K, _PROBES = 16, 2


def config_of(cell, width=None) -> NetConfig:
    """The cell's network at the critical point with q* = 1/L: ``width`` channels (default the cell's ``width``,
    the networks measured at initialization; training passes ``train_width``)."""
    sw, sb = gradjax.theory.critical_point("tanh", 1.0 / cell["depth"])
    return NetConfig(depth=cell["depth"], width=cell["width"] if width is None else width, arch="cnn", spatial=(8, 8),
                     in_dim=1, out_dim=10, activation="tanh", init=cell["init"], sigma_w2=float(sw), sigma_b2=float(sb),
                     dtype=cell.dtype)


def _digits(batch: int) -> np.ndarray:
    """The first ``batch`` training images as (B, 8, 8, 1) standardized pixels (shared by all seeds)."""
    return load_digits().x_train[:batch].reshape(batch, 8, 8, 1)


def _input_lengths(cfg, x) -> np.ndarray:
    """(B, 8, 8) mean field's second moment of h_0 at every position for images ``x`` (B, 8, 8, 1): the diagonal
    of ``theory.conv.input_covariance`` (the input layer's expectation over its weights)."""
    return np.stack([np.diagonal(np.asarray(input_covariance(cfg, xb))).reshape(cfg.spatial) for xb in x])


def theory(cell):
    cfg = config_of(cell)
    q0 = _input_lengths(cfg, _digits(cell["batch"]))
    # Every position starts at its own length (blank background ≈ 0, strokes > q*): the position-resolved mean
    # field sums per-position products, which a single length (the mean) misses where kernels do not mix positions.
    sv2 = float(gradjax.theory.position_jacobian_sv2_mean(cfg, q0[0])[0])
    return {
        "grad_theory": (("layer",), np.asarray(gradjax.theory.position_gradient_profile(cfg, q0)),
                        {"units": "log10", "relative_to": "layer L", "note": "position-resolved mean field from the images' q0"}),
        "depth_scale_theory": (("mode",), np.asarray(gradjax.theory.mode_depth_scales(cfg)).reshape(-1),
                               {"units": "layers", "what": "ξ_p of the correlations, modes in row-major FFT order"}),
        "log10_sv2_mean_theory": ((), sv2, {"units": "log10", "what": "log10 E σ² of ∂h_L/∂h_0, position-resolved mean field "
                                                                      "for example 0"}),
        "q0_theory": ((), float(np.mean(q0)), {"what": "second moment of h_0 for the batch, mean over examples and positions"}),
        "q_star_theory": ((), 1.0 / cell["depth"], {"what": "q* = 1/L, the length fixed point the critical point is "
                                                             "chosen for"}),
    }


def _measure(keys, x, cfg):
    seg = gradjax.empirical.segment_length(cfg.depth)
    g = gradjax.empirical.gradient_profile(cfg, seeds=keys, inputs=x, segment=seg, weights="regenerated").hidden
    quad = gradjax.empirical.jacobian_spectral_density(cfg, seeds=keys, inputs=x[:1], layers=[0], k=_K,
                                                       probes=_PROBES, weights="regenerated")
    return g, quad.log10_sv[:, 0], quad.weights[:, 0]


def learning_rate(cell) -> float:
    """Adam's η = ``lr_depth`` / L: an Adam step moves every weight by ≈ η whatever its gradient, so the
    end-to-end map of L blocks moves ∝ L·η per step; a fixed η that trains 8 blocks throws 128 off."""
    return cell["lr_depth"] / cell["depth"]


def _train_config(cell) -> gradjax.train.TrainConfig:
    return gradjax.train.TrainConfig(optimizer="adam", learning_rate=learning_rate(cell), steps=cell["steps"],
                                     batch_size=cell["train_batch"], log_every=cell["log_every"])


def _test_accuracy(cell, keys) -> np.ndarray:
    """(S, T) test accuracy after each history row of training, ``train_chunk`` seeds per call.

    ``gradjax.train.train`` runs outside ``per_device`` (a host loop, see the registry's contract); each
    seed trains from its own key, so chunking the seeds changes nothing but the memory held at once.
    """
    cfg, tc, data = config_of(cell, cell["train_width"]), _train_config(cell), load_digits()
    seg = gradjax.empirical.segment_length(cfg.depth)
    rows = []
    for i in range(0, keys.shape[0], cell["train_chunk"]):
        hist = gradjax.train.train(cfg, tc, data, seeds=keys[i:i + cell["train_chunk"]], progress=False,
                                   eval_size=len(data.x_test), segment=seg)
        rows.append(np.asarray(hist.accuracy).T)
    return np.concatenate(rows, axis=0)


def measure(cell, keys):
    x = jnp.asarray(_digits(cell["batch"]))
    g, nodes, weights = per_device(_measure, keys, x, cfg=config_of(cell))
    steps = np.asarray(_train_config(cell).row_steps)
    trained = cell["depth"] <= cell["train_max_depth"]  # deeper cells: measured at initialization only
    acc = xr.DataArray(_test_accuracy(cell, keys) if trained else np.full((keys.shape[0], steps.size), np.nan),
                       dims=("seed", "step"), coords={"step": steps},
                       attrs={"what": "digits test accuracy during training (Adam); NaN: not trained (depth above "
                                      "train_max_depth)"})
    return {
        "grad": (("seed", "layer"), g, {"units": "log10", "what": "‖∂loss/∂h_l‖, projection loss, digits inputs"}),
        "sv_nodes": (("seed", "node"), nodes, {"units": "log10", "what": "SLQ nodes, singular values of ∂h_L/∂h_0"}),
        "sv_weights": (("seed", "node"), weights, {"what": "SLQ weights (sum to 1 per seed)"}),
        "accuracy": acc,
    }


def _relative(sub, depth):
    """(S, depth) log10 ‖δ_l‖ − log10 ‖δ_L‖ (the merged layer axis is NaN-padded beyond a cell's depth)."""
    return gradjax.empirical.relative_profile(sub["grad"].transpose("seed", "layer").values[:, :depth])


def plot(results, out_dir):
    inits = [str(i) for i in results.init.values]
    depths = [int(d) for d in results.depth.values]
    cmap = figures.colors(inits)
    fig, axes = figures.panels(len(depths) + 1, ncols=len(depths) + 1, panel_size=(4.2, 3.4))
    axes = np.atleast_1d(axes)
    for ax, d in zip(axes, depths):
        for init in inits:
            sub = results.sel(init=init, depth=d)
            layers = np.arange(1, d + 1)
            rel = _relative(sub, d)
            figures.median_band(ax, layers, rel, color=cmap[init], label=init)
            figures.theory_line(ax, layers, sub["grad_theory"].values[:d], color=cmap[init])
        ax.set_xlabel(figures.coord_label("layer"))
        ax.set_title(f"depth {d}", fontsize="medium")
    axes[0].set_ylabel("log10 ‖∂loss/∂h_l‖ − log10 ‖∂loss/∂h_L‖")
    figures.style_legend(axes[0], loc="lower right")
    p = json.loads(results.attrs["params"])
    ax = axes[-1]
    trained = [d for d in depths if d <= p["train_max_depth"]]
    for init in inits:
        final = results.accuracy.sel(init=init, depth=trained).isel(step=-1).transpose("seed", "depth")
        figures.median_band(ax, trained, final, color=cmap[init], label=init)
    ax.axhline(0.1, color="0.6", linestyle=":", linewidth=0.8, label="chance")
    ax.set_xticks(trained, [str(d) for d in trained])
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("depth L")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{p['train_width']} channels, after {p['steps']} Adam updates (η = {p['lr_depth']:g}/L)", fontsize="medium")
    figures.style_legend(ax, theory=False, loc="lower left")
    fig.suptitle(f"tanh cnn at criticality on digits, 8×8 maps, {results.sizes['seed']} seeds: {p['width']} channels at "
                 f"initialization, {p['train_width']} trained")
    return [figures.save(fig, out_dir, "delta_orthogonal")]


# scripts/delta_orthogonal_slopes.py (L = 32, 8 seeds, float32; module docstring).
_GAUSSIAN_EXCESS = ("; not modelled: gaussian kernels' finite-width excess, growing with L/N (L = 32: +36% at 64 "
                    "channels, +4% at 256; delta-orthogonal within 2% at both)")


def _slope_row(sub, init: str, d: int, note: str) -> AgreementRow:
    """Fitted slope of the theory's profile vs the seed mean of the per-seed fitted slopes; tolerance 10% of
    theory plus 3 standard errors of that mean (seeds are independent networks)."""
    t = float(gradjax.empirical.fitted_slope(sub["grad_theory"].values[:d]))
    per_seed = np.asarray(gradjax.empirical.fitted_slope(_relative(sub, d)))
    se = mean_error(per_seed)
    return AgreementRow(quantity="fitted slope of log10‖δ_l‖ per layer", where=f"{init}, L={d}", theory=t,
                        measured=float(np.mean(per_seed)), tolerance=REL_TOL * abs(t) + SE_MULTIPLE * se,
                        metric="absolute", note=f"{note}; seed s.e. {se:.2g}, tolerance 10% + {SE_MULTIPLE:g} s.e.")


def _sv2_row(sub, init: str, d: int, width: int) -> AgreementRow:
    """log10 of the seed mean of the SLQ estimates of E σ², tolerance 3 standard errors (delta method)."""
    nodes = sub["sv_nodes"].transpose("seed", "node").values
    w = sub["sv_weights"].transpose("seed", "node").values
    per_seed = np.sum(w * np.where(np.isfinite(nodes), 10.0 ** (2 * nodes), 0.0), axis=-1)
    m = float(np.mean(per_seed))
    se = mean_error(per_seed) / (m * np.log(10))
    return AgreementRow(
        quantity="log10 E σ² of ∂h_L/∂h_0", where=f"{init}, L={d}", theory=float(sub["log10_sv2_mean_theory"].values),
        measured=float(np.log10(m)), tolerance=SE_MULTIPLE * se, metric="absolute",
        note=(f"SLQ k={_K}, {_PROBES} probes, example 0; tolerance {SE_MULTIPLE:g} seed s.e. ({se:.2g}); theory: position-"
              f"resolved mean field; the finite-width excess of a product of L width-N layers (L/N = {d / width:.2g}) "
              "is not modelled"),
    )


def agreement(results):
    p = json.loads(results.attrs["params"])
    note = f"{p['width']} channels, 8×8, {results.sizes['seed']} seeds, digits inputs"
    rows = []
    for init in [str(i) for i in results.init.values]:
        for d in [int(v) for v in results.depth.values]:
            sub = results.sel(init=init, depth=d)
            rows.append(_slope_row(sub, init, d, note + (_GAUSSIAN_EXCESS if init == "gaussian" else "")))
            rows.append(_sv2_row(sub, init, d, p["width"]))
    return rows


def _grid(depths, seeds, inits=("gaussian", "delta_orthogonal"), **params):
    return Grid(axes={"init": inits, "depth": depths}, seeds=seeds, params=params)


EXPERIMENT = Experiment(
    name="delta-orthogonal",
    description=(
        "Vanilla tanh CNNs at criticality (the point with q* = 1/L) on the digits images at initialization: gradient profiles "
        "and the end-to-end Jacobian spectrum of the whole feature map, delta-orthogonal vs Gaussian kernels, "
        "over depth, and their digits test accuracy after a short Adam training.\nTheory lines: "
        "position-resolved mean field from each position's own q0 (the digits' blank background starts at q ≈ 0): the "
        "gradient profile summed over positions, E σ² of the end-to-end Jacobian as the position mean of Π χ₁; "
        "per-mode depth scales ξ_p stored per cell. Tolerances: 10% + 3 seed standard errors."
    ),
    sizes={
        # tiny: one init, since each init and depth is its own compiled measurement program (seconds each); depth 4
        # is measured at initialization only, as the quick size's deepest cells are
        "tiny": _grid((2, 4), 2, inits=("delta_orthogonal",), width=4, train_width=4, batch=4, steps=2, log_every=1,
                      train_batch=16, train_chunk=2, lr_depth=0.02, train_max_depth=2),
        # Training dominates the quick run (Adam, 200 updates of 16 images: ≈ 1 min per 32 layers at 4 seeds on the
        # 2-core CPU). Exploration, 16 channels, 2 seeds, 200 updates: at the earlier point σ_b² = 0.05 (q* = 0.57)
        # no 128-layer network of either init left chance (η = 1e-4 … 1e-3, and 1,000 updates at 1e-3: loss ln 10
        # throughout), since the inputs' correlation there reaches 1 − c ≈ 0.05 by 128 layers and the pooled
        # features differ between digits by 2–3% (scripts/delta_orthogonal_pooled_signal.py); at q* = 1/L with
        # η = 0.01/L, delta-orthogonal 0.20, 0.24 against gaussian 0.08, 0.10 (chance). 256 layers is measured at
        # initialization only (≈ 1 min; training it would take ≈ 12 min). The networks measured at initialization
        # have 64 channels (seconds), the trained ones 16 (the training budget): at 16 channels the finite-width
        # excess over the mean field is as large as the effects compared (module docstring).
        "quick": _grid((8, 32, 128, 256), 4, width=64, train_width=16, batch=8, steps=200, log_every=100,
                       train_batch=16, train_chunk=4, lr_depth=0.01, train_max_depth=128),
        "full": _grid((1000, 10000), 16, width=128, train_width=128, batch=32, steps=2000, log_every=250,
                      train_batch=128, train_chunk=2, lr_depth=0.01, train_max_depth=10000),
    },
    theory=theory, measure=measure, plot=plot, agreement=agreement,
    bytes_per_seed=lambda cell: 8 * cell["depth"] * (9 * max(cell["width"], cell["train_width"]) ** 2
                                                     + 4 * cell["batch"] * 64 * cell["width"]),
    headline=False,
)
