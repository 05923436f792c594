"""``rank-collapse``: token similarity and per-block gradient norms of transformers at initialization.

Four stacks of T tokens of width N, σ_w² = 1, σ_b² = 0, at depth L:

* ``pure``: softmax attention only — no skip, no MLP, no norm (Dong et al. 2021);
* ``post-ln``: attention + tanh MLP, skips with α = 1, layernorm after each sum;
* ``pre-ln``: the same with layernorm on each branch's input (α = 1);
* ``pre-ln-scaled``: pre-ln with branches scaled by α = 1/√L (Noci et al. 2022).

Measured (``gradjax.empirical``): the mean cosine similarity between the tokens of h_l after every
block (``token_similarity``), and per block log10 ‖∂loss/∂h_l‖ and log10 ‖∂loss/∂W‖ of the query and
key weights (``gradient_profile``, projection loss). Theory (``gradjax.theory.token_similarity`` and
``gradient_profile``, ``gradjax.theory.attention.query_gradient_profile``): the mean-field recursion of the
token Gram matrix, block by block, and of the cotangents' Gram back from the output (Kedia et al. 2024,
arXiv:2403.09635), and the query weights' gradient that vanishes as (1 − ρ)² with the tokens' collapse. Pure attention collapses the tokens
onto one direction doubly exponentially (1 − ρ cubed per block); α = 1/√L keeps the similarity
moving by O(1/L) per block. The query/key gradients vanish where the tokens have collapsed: a
softmax of identical rows does not depend on the logits' differences (Noci et al. 2022, Thm 3.2).
At width N the normalized stacks grow their gradient faster than the N → ∞ mean field (each layernorm
normalizes a Gram that fluctuates by O(1/√N), and depth amplifies it): ``theory.token_walk.finite_width_walk``
samples each example's token Grams at the stack's own width and gives a second theory line and row
(``walks`` walks per normalized variant; pure attention has no norm and no walk).

References:
  Dong, Cordonnier & Loukas 2021, "Attention is not all you need: pure attention loses rank doubly
  exponentially with depth", arXiv:2103.03404.
  Noci et al. 2022, "Signal Propagation in Transformers: Theoretical Perspectives and the Role of Rank
  Collapse", arXiv:2206.03126.
"""

from __future__ import annotations

import json
import math

import numpy as np

import gradjax.empirical
import gradjax.theory
from gradjax.config import NetConfig
from gradjax.experiments import figures
from gradjax.experiments.registry import AgreementRow, Experiment, Grid
from gradjax.experiments import estimates
from gradjax.experiments.estimates import mean_error
from gradjax.experiments.sweep import per_device
from gradjax.theory.attention import cotangent_profile, query_gradient_profile
from gradjax.theory.token_walk import finite_width_walk

#: variant → (residual_scale, norm, norm_position, mlp)
VARIANTS = {
    "pure": ("none", "none", "pre", False),
    "post-ln": (1.0, "layernorm", "post", True),
    "pre-ln": (1.0, "layernorm", "pre", True),
    "pre-ln-scaled": ("1/sqrt(L)", "layernorm", "pre", True),
}
# Agreement tolerance on the similarity at depth L, relative: the 10% that the scaled-residual test pins
# (tests/theory/test_attention.py); the other variants are reported against the same bound.
REL_TOL = 0.10
# The same 10% as the mean field's stated accuracy on the gradient growth, in decades (log10 1.1).
_MODEL_DECADES = math.log10(1 + REL_TOL)
# Bottom of the query-gradient panel (log10), below the float32 floor of the measurement (≈ −7 at quick size): the
# mean field of pure attention falls doubly exponentially past any floor (to −inf), out of the panel.
_QUERY_FLOOR = -10.0


def config_of(cell) -> NetConfig:
    res, norm, pos, mlp = VARIANTS[cell["variant"]]
    return NetConfig(depth=cell["depth"], width=cell["width"], arch="transformer", tokens=cell["tokens"],
                     residual_scale=res, norm=norm, norm_position=pos, mlp=mlp, dtype=cell.dtype)


def theory(cell):
    cfg = config_of(cell)
    sim = np.asarray(gradjax.theory.token_similarity(cfg))
    # theory.gradient_profile's transformer branch, with 64-bit JAX scoped (runs also use float32)
    grad = 0.5 * np.asarray(cotangent_profile(cfg)[0])
    query = np.asarray(query_gradient_profile(cfg, batch=cell["batch"]))
    walk_grad = _walk_gradient(cfg, cell["walks"])
    return {"similarity_theory": (("layer",), sim, {"units": "cosine", "what": "mean-field token similarity"}),
            "grad_theory": (("layer",), grad, {"units": "log10", "what": "mean-field ½ log10 E‖δ_l‖²/E‖δ_L‖²"}),
            "grad_walk_theory": (("layer",), walk_grad, {
                "units": "log10", "what": f"½ log10 E‖δ_l‖²/‖δ_L‖² of {cell['walks']} finite-width walks "
                                          "(theory.token_walk.finite_width_walk; nan where it does not model the stack)"}),
            "grad_query_theory": (("layer",), query, {"units": "log10", "what": "mean-field ½ log10 E‖∂loss/∂W_Q‖² "
                                                      "(N → ∞; −inf once the tokens have collapsed in float64)"})}


def _walk_gradient(cfg, walks):
    """½ log10 E‖δ_l‖²/‖δ_L‖² (L,) at the stack's own width by ``finite_width_walk``; nan for a stack it does
    not model (no norm: pure attention) or when the size asks for no walks (``walks`` = 0)."""
    if walks == 0 or cfg.norm == "none":
        return np.full(cfg.depth, np.nan)
    return 0.5 * np.asarray(finite_width_walk(cfg, walks=walks).log10_ratio)


def _measure(keys, cfg, batch):
    sim = gradjax.empirical.token_similarity(cfg, seeds=keys, batch=batch)
    g = gradjax.empirical.gradient_profile(cfg, seeds=keys, batch=batch)
    return sim, g.hidden, g.params["query"], g.params["key"]


def measure(cell, keys):
    sim, hidden, query, key = per_device(_measure, keys, cfg=config_of(cell), batch=cell["batch"])
    log = {"units": "log10"}
    return {
        "similarity": (("seed", "layer"), sim, {"units": "cosine", "what": "mean cosine similarity of distinct tokens"}),
        "grad": (("seed", "layer"), hidden, dict(log, what="‖∂loss/∂h_l‖, projection loss")),
        "grad_query": (("seed", "layer"), query, dict(log, what="‖∂loss/∂W_Q‖ of block l")),
        "grad_key": (("seed", "layer"), key, dict(log, what="‖∂loss/∂W_K‖ of block l")),
    }


def plot(results, out_dir):
    variants = [str(v) for v in results.variant.values]
    cmap = figures.colors(variants)
    layers = results.layer.values
    fig, (ax_s, ax_g, ax_q) = figures.panels(3, ncols=3, panel_size=(5.2, 3.8))
    for v in variants:
        sub = results.sel(variant=v)
        figures.median_band(ax_s, layers, sub["similarity"].transpose("seed", "layer"), color=cmap[v], label=v)
        figures.theory_line(ax_s, layers, sub["similarity_theory"].values, color=cmap[v])
        grad = sub["grad"].transpose("seed", "layer")
        figures.median_band(ax_g, layers, grad - grad.isel(layer=-1), color=cmap[v], label=v)
        figures.theory_line(ax_g, layers, sub["grad_theory"].values, color=cmap[v])
        if "grad_walk_theory" in sub and np.isfinite(sub["grad_walk_theory"].values).any():
            figures.theory_line(ax_g, layers, sub["grad_walk_theory"].values, color=cmap[v], linestyle="--")
        figures.median_band(ax_q, layers, sub["grad_query"].transpose("seed", "layer"), color=cmap[v], label=v)
        figures.theory_line(ax_q, layers, sub["grad_query_theory"].values, color=cmap[v])
    ax_s.set_xlabel(figures.coord_label("layer"))
    ax_s.set_ylabel("mean cosine similarity of tokens")
    ax_s.set_title("rank collapse: token similarity per block", fontsize="medium")
    figures.style_legend(ax_s, loc="lower right")
    ax_g.set_xlabel(figures.coord_label("layer"))
    ax_g.set_ylabel("log10 ‖∂loss/∂h_l‖ / ‖∂loss/∂h_L‖")
    ax_g.set_title("hidden-state gradient per block", fontsize="medium")
    walked = "grad_walk_theory" in results and np.isfinite(results["grad_walk_theory"].values).any()
    figures.style_legend(ax_g, loc="upper right", dashed="theory at width N (finite-width walks)" if walked else None)
    ax_q.set_xlabel(figures.coord_label("layer"))
    ax_q.set_ylabel("log10 ‖∂loss/∂W_Q‖")
    ax_q.set_title("query-weight gradient per block", fontsize="medium")
    ax_q.set_ylim(bottom=_QUERY_FLOOR)
    figures.style_legend(ax_q, loc="lower left")
    p = json.loads(results.attrs["params"])
    fig.suptitle(f"transformer depth {p['depth']}, width {p['width']}, {p['tokens']} tokens, "
                 f"{results.sizes['seed']} seeds")
    return [figures.save(fig, out_dir, "rank_collapse")]


def agreement(results):
    p = json.loads(results.attrs["params"])
    rows = []
    for v in [str(x) for x in results.variant.values]:
        sub = results.sel(variant=v)
        last = sub["similarity"].transpose("seed", "layer").values[:, -1]
        theory_last = float(sub["similarity_theory"].values[-1])
        rel_se = mean_error(last) / abs(theory_last)
        rows.append(AgreementRow(
            quantity="token similarity at depth L", where=f"{v}, L={p['depth']}", theory=theory_last,
            measured=float(np.mean(last)), tolerance=REL_TOL,
            note=f"width {p['width']}, {p['tokens']} tokens, seed mean over {results.sizes['seed']} seeds × "
                 f"{p['batch']} inputs (standard error {100 * rel_se:.2g}% of theory); mean field over the random "
                 f"attention matrices",
        ))
        rows.append(_gradient_row(sub, v, p, results.sizes["seed"]))
        if "grad_walk_theory" in sub and np.isfinite(sub["grad_walk_theory"].values[0]):
            rows.append(_gradient_row(sub, v, p, results.sizes["seed"], walk=True))
    return rows


def _gradient_row(sub, variant, p, seeds, walk=False):
    """log10 E ‖δ_1‖²/‖δ_L‖² against the mean field (log10 units; theory = 2·gradient_profile at h_1), or with
    ``walk`` against the finite-width walks at the stack's width (``theory.token_walk.finite_width_walk``).

    The per-seed ratio is a product of L per-block gains, log-normal across seeds with a spread that grows with
    depth (post-LN at L = 64, width 64: σ ≈ 0.8 decades): its plain seed mean is carried by a few seeds and
    falls short of E[ratio] in most draws. The row takes the log-normal estimate of log10 E[ratio] and its
    Cox standard error (``estimates.log_normal_mean``, as the Jacobian rows do), with the report's rule for
    seed statistics: se_multiple standard errors ⊕ the theory's stated 10% (Kedia et al. 2024).
    """
    grad = sub["grad"].transpose("seed", "layer").values
    log_ratio = 2 * (grad[:, 0] - grad[:, -1])
    est, se = estimates.log_normal_mean(log_ratio)
    spread = float(np.std(log_ratio, ddof=1))
    if walk:
        theory, source = 2 * float(sub["grad_walk_theory"].values[0]), (
            f"finite-width walks ({p['walks']} walks at width {p['width']}: each example's token Grams sampled "
            "exactly, the mean field's backward map along them)")
    else:
        theory, source = 2 * float(sub["grad_theory"].values[0]), (
            "mean field of the cotangents' token Gram (Kedia et al. 2024, arXiv:2403.09635)")
    return AgreementRow(
        quantity="log10 E ‖δ_1‖²/‖δ_L‖² (gradient growth through the stack)",
        where=f"{variant}, L={p['depth']}" + (", finite-width walk" if walk else ""),
        theory=theory, measured=est, metric="absolute",
        tolerance=estimates.statistical_tolerance(se, seeds, _MODEL_DECADES),
        note=f"width {p['width']}, {p['tokens']} tokens, {seeds} seeds × {p['batch']} inputs: log-normal estimate over "
             f"the seeds (spread {spread:.2g} decades; seed median {np.median(log_ratio):.3g}); "
             + estimates.tolerance_note(se, seeds, _MODEL_DECADES, "decades (10%) of theory") + "; " + source,
    )


def _grid(seeds, variants=tuple(VARIANTS), **params):
    return Grid(axes={"variant": variants}, seeds=seeds, params=params)


EXPERIMENT = Experiment(
    name="rank-collapse",
    description=(
        "Token similarity and per-block gradient norms (hidden state, query and key weights) of transformers "
        "at initialization: pure attention, post-LN, pre-LN and pre-LN with branches scaled by α = 1/√L.\n"
        "Theory lines: the mean-field recursion of the token Gram matrix (attention's softmax overlaps by "
        "quadrature, the MLP's c-map, norms, α-weighted skips); dashed, the gradient growth at the stacks' own "
        "width by finite-width walks of each example's token Grams (normalized variants). Pure attention collapses "
        "the tokens doubly exponentially; α = 1/√L keeps them apart."
    ),
    sizes={
        # tiny: one variant, since each variant is its own compiled program (seconds each)
        # walks: finite-width walks per normalized variant (theory.token_walk; 0 = none, tiny keeps to one program)
        "tiny": _grid(2, ("pre-ln-scaled",), depth=4, width=8, tokens=4, batch=2, walks=0),
        "quick": _grid(32, depth=64, width=64, tokens=8, batch=4, walks=256),  # 8 seeds: 9% s.e. at pre-ln-scaled
        "full": _grid(64, depth=256, width=512, tokens=32, batch=8, walks=256),
    },
    theory=theory, measure=measure, plot=plot, agreement=agreement,
    bytes_per_seed=lambda cell: 8 * cell["depth"] * (6 * cell["width"] ** 2
                                                     + 8 * cell["batch"] * cell["tokens"] * cell["width"]),
    headline=False,
)
