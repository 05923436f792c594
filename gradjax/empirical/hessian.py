"""Hessian spectra of the loss, matrix-free: spectral density (stochastic Lanczos quadrature), top
eigenvalues and Hutchinson's trace, of the whole network and of each layer's block, across seeds —
for the zoo (a ``NetConfig``) and for any NNX module (a factory ``make_model(rngs)``).

Only Hessian-vector products are formed: H v = ∂/∂t ∇loss(θ + t v) at t = 0, i.e. ``jax.jvp`` of
``jax.grad`` (forward-over-reverse, one gradient's cost times a small constant). A layer block is
the Hessian of the loss in that layer's parameters with every other parameter held fixed (the
diagonal block of the full Hessian).

* Density: k Lanczos steps on H from each of P random unit probes v (orthonormal in blocks of n,
  :func:`gradjax.empirical.lanczos.orthogonal_probes`)
  (:mod:`gradjax.empirical.lanczos`) give a Gauss quadrature of vᵀ f(H) v whose nodes are Ritz
  values θ_j and weights Q_{0j}²; the average over probes estimates tr f(H)/n, the mean of f over
  the n eigenvalues (exact for polynomials of degree < 2k, up to probe noise).
* Top eigenvalues: the largest Ritz values of the first probe's Lanczos matrix (the extreme ones
  converge first; a repeated eigenvalue appears once).
* Trace: Hutchinson's estimator tr H ≈ (1/P) Σ zᵀHz over Rademacher probes z, with its standard
  error (sample standard deviation / √P).

References:
  Ghorbani, Krishnan & Xiao 2019, "An Investigation into Neural Net Optimization via Hessian
  Eigenvalue Density", arXiv:1901.10159.
  Pearlmutter 1994, "Fast exact multiplication by the Hessian", Neural Computation 6(1).
  Hutchinson 1990, "A stochastic estimator of the trace of the influence matrix for Laplacian
  smoothing splines", Comm. Statist. Simulation Comput. 19(2).
  Yao, Gholami, Keutzer & Mahoney 2020, "PyHessian: Neural Networks Through the Lens of the
  Hessian", arXiv:1912.07145.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.flatten_util import ravel_pytree

from gradjax._validate import check_int
from gradjax.config import NetConfig
from gradjax.empirical._seeds import data_key, default_inputs, itemsize, map_seeds, per_seed_inputs
from gradjax.empirical.gradients import default_targets
from gradjax.empirical.lanczos import gauss_quadrature, lanczos_tridiagonal, orthogonal_probes, smoothed_density
from gradjax.empirical.losses import DEFAULT_LOSS, loss_fn
from gradjax.empirical.model import (DEFAULT_LAYERS, _leaf, _seed_split, model_targets, path_label, plan_taps,
                                     pure_apply)
from gradjax.nn.ensemble import seed_keys
from gradjax.nn.stack import forward, init_params

# Lanczos steps per probe: 32 nodes resolve the bulk and converge the top eigenvalues of the
# spectra met here (checked against eigvalsh in tests/empirical/test_hessian.py).
DEFAULT_HESSIAN_K = 32
# Lanczos probes per seed and block for the density; their average has probe noise O(1/√(n·P)).
DEFAULT_HESSIAN_PROBES = 4
# Rademacher probes for Hutchinson's trace.
DEFAULT_TRACE_PROBES = 16
# Top eigenvalues reported per block.
DEFAULT_TOP = 4


def hvp(f: Callable, theta: jax.Array, v: jax.Array) -> jax.Array:
    """H v for H = ∇²f(θ), by forward-over-reverse autodiff (``jax.jvp`` of ``jax.grad``)."""
    return jax.jvp(jax.grad(f), (theta,), (v,))[1]


class BlockSpectrum(NamedTuple):
    """Hessian spectrum of one block (one network; shapes below, a leading seed axis across seeds).

    Attributes:
      nodes: (P·k,) Ritz values (linear units of the loss per parameter²); nan for padding.
      weights: (P·k,) ≥ 0 summing to 1: Σ weights · f(nodes) estimates the mean of f over the eigenvalues.
      top: (n_top,) the largest eigenvalues, descending (nan where the block has fewer).
      trace: () Hutchinson's estimate of tr H. trace_stderr: () its standard error.
    """

    nodes: jax.Array
    weights: jax.Array
    top: jax.Array
    trace: jax.Array
    trace_stderr: jax.Array


def block_spectrum(f: Callable, theta: jax.Array, key: jax.Array, *, k: int, probes: int, trace_probes: int,
                   top: int, pad_to: int | None = None) -> BlockSpectrum:
    """:class:`BlockSpectrum` of ∇²f at θ (n,) from Hessian-vector products only.

    Args:
      f: scalar function of a flat parameter vector. theta: (n,) the point.
      key: probes' key. k: Lanczos steps (capped at n). probes: Lanczos probes. trace_probes:
      Rademacher probes. top: eigenvalues reported. pad_to: nodes per probe after padding (≥ min(k, n)).
    """
    n = theta.shape[0]
    kk = min(k, n)
    pad = (pad_to or kk) - kk
    k1, k2 = jax.random.split(key)
    matvec = lambda v: hvp(f, theta, v)  # noqa: E731
    tris = jax.vmap(lambda v: lanczos_tridiagonal(matvec, v, kk))(orthogonal_probes(k1, probes, n, theta.dtype))
    theta_all, w_all = jax.vmap(gauss_quadrature)(tris)
    nodes = jnp.pad(theta_all, ((0, 0), (0, pad)), constant_values=jnp.nan).reshape(-1)
    w = jnp.pad(w_all, ((0, 0), (0, pad))).reshape(-1) / probes
    # Top: probe 0's Ritz values; after a breakdown the decoupled zero block's values (weight exactly 0) are not ones.
    ritz = jnp.sort(jnp.where(w_all[0] > 0, theta_all[0], -jnp.inf))[::-1]
    ritz = jnp.where(jnp.isfinite(ritz), ritz, jnp.nan)
    top_vals = jnp.pad(ritz[:top], (0, max(0, top - kk)), constant_values=jnp.nan)
    z = jax.random.rademacher(k2, (trace_probes, n), theta.dtype)
    samples = jax.vmap(lambda v: jnp.dot(v, matvec(v)))(z)
    stderr = jnp.std(samples, ddof=1) / jnp.sqrt(trace_probes) if trace_probes > 1 else jnp.full((), jnp.nan, theta.dtype)
    return BlockSpectrum(nodes, w, top_vals, jnp.mean(samples), stderr)


class HessianSpectrum(NamedTuple):
    """Hessian spectra of the whole network (block 0) and of each layer's block (1…), across seeds.

    Attributes:
      nodes, weights: (S, n_blocks, P·k) quadrature of the eigenvalue distribution (see :class:`BlockSpectrum`).
      top: (S, n_blocks, n_top) largest eigenvalues, descending.
      trace, trace_stderr: (S, n_blocks) Hutchinson's trace and its standard error.
    """

    nodes: jax.Array
    weights: jax.Array
    top: jax.Array
    trace: jax.Array
    trace_stderr: jax.Array

    def moment(self, m: int) -> jax.Array:
        """(S, n_blocks) estimated mean of λ^m over the eigenvalues (tr Hᵐ / n)."""
        ok = jnp.isfinite(self.nodes)
        return jnp.sum(jnp.where(ok, self.weights * jnp.where(ok, self.nodes, 0) ** m, 0), axis=-1)

    def density(self, grid, bandwidth: float) -> jax.Array:
        """(S, n_blocks, m) eigenvalue density on ``grid`` (m,), nodes smoothed by a Gaussian of width ``bandwidth``."""
        return smoothed_density(self.nodes, self.weights, grid, bandwidth)


def _blocks_spectrum(loss_of: Callable, params, blocks, key, *, k, probes, trace_probes, top) -> BlockSpectrum:
    """Whole network then each block ``(get, put)``; stacked on a leading block axis."""
    sizes = [ravel_pytree(params)[0].shape[0]] + [ravel_pytree(get(params))[0].shape[0] for get, _ in blocks]
    pad_to = min(k, max(sizes))
    theta, unravel = ravel_pytree(params)
    out = [block_spectrum(lambda th: loss_of(unravel(th)), theta, jax.random.fold_in(key, 0), k=k, probes=probes,
                          trace_probes=trace_probes, top=top, pad_to=pad_to)]
    for i, (get, put) in enumerate(blocks):
        theta_b, unravel_b = ravel_pytree(get(params))
        f_b = lambda th, put=put, unravel_b=unravel_b: loss_of(put(params, unravel_b(th)))  # noqa: E731
        out.append(block_spectrum(f_b, theta_b, jax.random.fold_in(key, i + 1), k=k, probes=probes,
                                  trace_probes=trace_probes, top=top, pad_to=pad_to))
    return BlockSpectrum(*(jnp.stack(c) for c in zip(*out)))


# ---- blocks of the zoo and of a model ---------------------------------------------------------

def zoo_blocks(cfg: NetConfig) -> list[tuple[str, Callable, Callable]]:
    """``(label, get, put)`` per layer: "embed", "blocks/0" … "blocks/L−1" (rnn: one shared "blocks"), "readout"."""
    def top_level(name):
        return name, (lambda p: p[name]), (lambda p, v: {**p, name: v})

    def stacked(l):
        get = lambda p: jax.tree.map(lambda a: a[l], p["blocks"])  # noqa: E731
        put = lambda p, v: {**p, "blocks": jax.tree.map(lambda a, b: a.at[l].set(b), p["blocks"], v)}  # noqa: E731
        return f"blocks/{l}", get, put

    middle = [top_level("blocks")] if cfg.arch == "rnn" else [stacked(l) for l in range(cfg.depth)]
    return [top_level("embed")] + middle + [top_level("readout")]


def _with_leaf(tree: dict, path: tuple, value) -> dict:
    if not path:
        return value
    return {**tree, path[0]: _with_leaf(tree[path[0]], path[1:], value)}


def model_blocks(modules: tuple) -> list[tuple[str, Callable, Callable]]:
    """``(label, get, put)`` per selected module path, on the model's parameters as a pure dict."""
    return [(path_label(p), (lambda d, p=p: _leaf(d, p)), (lambda d, v, p=p: _with_leaf(d, p, v))) for p in modules]


def hessian_blocks(net, inputs=None, layers=DEFAULT_LAYERS) -> tuple[str, ...]:
    """Labels of the block axis of :func:`hessian_spectrum`: ``("all", …)``."""
    if isinstance(net, NetConfig):
        return ("all",) + tuple(b[0] for b in zoo_blocks(net))
    return ("all",) + tuple(b[0] for b in model_blocks(plan_taps(net, jnp.asarray(inputs), layers).modules))


# ---- across seeds -----------------------------------------------------------------------------

def _zoo_one(key, x, t, *, cfg, loss, batch, k, probes, trace_probes, top):
    params = init_params(cfg, key)
    x = default_inputs(cfg, key, batch) if x is None else x
    t = default_targets(cfg, key, x.shape[0], loss) if t is None else t
    f = loss_fn(loss)
    loss_of = lambda p: f(forward(cfg, p, x), t)  # noqa: E731
    return _blocks_spectrum(loss_of, params, [b[1:] for b in zoo_blocks(cfg)], jax.random.fold_in(data_key(key), 4),
                            k=k, probes=probes, trace_probes=trace_probes, top=top)


def _model_one(key, x, t, *, make_model, plan, loss, k, probes, trace_probes, top):
    graphdef, params, rest = _seed_split(make_model, key)
    t = model_targets(plan, key, loss) if t is None else t
    f = loss_fn(loss)

    apply = pure_apply(graphdef, params, rest)
    loss_of = lambda pure: f(apply(pure, x), t)  # noqa: E731

    return _blocks_spectrum(loss_of, nnx.to_pure_dict(params), [b[1:] for b in model_blocks(plan.modules)],
                            jax.random.fold_in(data_key(key), 4), k=k, probes=probes, trace_probes=trace_probes,
                            top=top)


def hessian_spectrum(net, seeds=8, inputs=None, targets=None, loss=DEFAULT_LOSS, *, layers=DEFAULT_LAYERS,
                     k: int = DEFAULT_HESSIAN_K, probes: int = DEFAULT_HESSIAN_PROBES,
                     trace_probes: int = DEFAULT_TRACE_PROBES, top: int = DEFAULT_TOP, batch: int = 64,
                     max_bytes: int | None = None, seed_batch: int | None = None) -> HessianSpectrum:
    """Hessian spectra of the loss at initialization, whole network and per layer block, across seeds.

    Args:
      net: a ``NetConfig`` (seed k: ``init_params(cfg, key(k))``; blocks :func:`zoo_blocks`) or a
        factory ``make_model(rngs) -> nnx.Module`` (seed k: ``make_model(nnx.Rngs(k))``; blocks:
        the parameters under each module ``layers`` selects).
      seeds: int S, a list of ints or a key array.
      inputs: None (zoo only: default Gaussian inputs), (B, …) shared by all seeds, or (zoo) (S, B, …).
      targets, loss: as :func:`gradjax.empirical.gradient_profile` (model: as ``model_gradient_profile``).
      layers: module selection of a model (ignored for a ``NetConfig``, whose blocks are its layers).
      k, probes, trace_probes, top: Lanczos steps, Lanczos probes, Rademacher probes, top eigenvalues.
      batch: examples of the zoo's default inputs.
      max_bytes, seed_batch: as :func:`gradjax.empirical.gradient_profile`.

    Returns:
      :class:`HessianSpectrum` with a leading seed axis; block axis labels: :func:`hessian_blocks`.
    """
    for name, v in (("k", k), ("probes", probes), ("trace_probes", trace_probes), ("top", top), ("batch", batch)):
        check_int(name, v)
    if isinstance(loss, str):
        loss_fn(loss)
    keys = seed_keys(seeds)
    static = (("loss", loss), ("k", k), ("probes", probes), ("trace_probes", trace_probes), ("top", top))
    if isinstance(net, NetConfig):
        x, ax = per_seed_inputs(net, inputs, keys.shape[0])
        t, t_ax = (None, None) if targets is None else (jnp.asarray(targets), ax)
        b = batch if x is None else x.shape[1 if ax == 0 else 0]
        per_seed = 2 * itemsize(net) * net.depth * (net.width**2 * (4 + probes) + 4 * b * net.width)
        return HessianSpectrum(*map_seeds(_zoo_one, static + (("cfg", net), ("batch", b)), keys, (x, t), (ax, t_ax),
                                          per_seed_bytes=per_seed, max_bytes=max_bytes, seed_batch=seed_batch))
    if not callable(net):
        raise TypeError(f"net must be a NetConfig or a model factory make_model(rngs) -> nnx.Module, got {net!r}")
    if inputs is None:
        raise ValueError("inputs is required for a model factory: one batch (B, …) shared by all seeds")
    x = jnp.asarray(inputs)
    plan = plan_taps(net, x, layers)
    t = None if targets is None else jnp.asarray(targets)
    per_seed = (6 + 2 * probes) * plan.state_bytes + 8 * sum(int(np.prod(s)) * 4 for s, _ in plan.shapes)
    return HessianSpectrum(*map_seeds(_model_one, static + (("make_model", net), ("plan", plan)), keys, (x, t),
                                      (None, None), per_seed_bytes=per_seed, max_bytes=max_bytes,
                                      seed_batch=seed_batch))
