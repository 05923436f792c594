"""Singular values of the per-layer Jacobians ∂h_L/∂h_l across seeds.

The N basis cotangents e_i at h_L travel back through the blockwise walk
(:func:`gradjax.empirical.propagate.backward_walk`) as one (N, B, N) tensor: after block l+1 it holds
the rows of G_l = ∂h_L/∂h_l (N × N), for every l, in one sweep of matrix-matrix products. G_l is
carried as a unit-norm matrix and a log10 scale, so spectra of 1,000-layer networks stay finite; the
singular values *within* one G_l are resolved down to about ε·σ_max (``svd``) or √ε·σ_max
(``gram``) of the working precision — below that they are rounding noise (−inf where exactly 0).

N is the size D = ``cfg.state_size`` of one example's flattened state: the width, or the whole
feature map H·W·N of a cnn, or all T·N token features of a transformer (for sizes where D × D
matrices do not fit, ``method="lanczos"`` and :func:`jacobian_spectral_density` are matrix-free).

Which Jacobian: the state of ONE example (example 0 of the batch). Without batchnorm the examples
do not interact and G_l is that example's N × N Jacobian. With batchnorm the examples are coupled
through the batch statistics; G_l is then the (0, 0) block of the full (B·N) × (B·N) Jacobian:
∂h_L[example 0]/∂h_l[example 0] with the batch statistics differentiated (they move with
example 0) and the other examples held fixed.

References:
  Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through
  dynamical isometry: theory and practice", arXiv:1711.04735.
  Saxe, McClelland & Ganguli 2013, "Exact solutions to the nonlinear dynamics of learning in deep
  linear neural networks", arXiv:1312.6120 (orthogonal linear nets: all singular values σ_w^(L−l)).
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradjax._validate import check_choice, check_int
from gradjax.config import DTYPES, NetConfig
from gradjax.empirical._seeds import block_param_count, data_key, default_inputs, itemsize, map_seeds, per_seed_inputs
from gradjax.empirical.lanczos import gauss_quadrature, lanczos_tridiagonal, smoothed_density, unit_probe
from gradjax.empirical.propagate import apply_block, backward_walk, block_params, forward_taps, normalize
from gradjax.nn.ensemble import seed_keys
from gradjax.nn.init import IID
from gradjax.nn.regenerate import keyed_params
from gradjax.nn.stack import KEYED_ARCHS, init_params

METHODS = ("gram", "svd", "lanczos")
LAYER_CHOICES = ("all", "end")
#: How the block weights exist during a measurement (see gradjax.nn.regenerate): stored (L·N² per
#: network), regenerated (each W_l drawn from its key inside each sweep: N²), tiled (W_l drawn by
#: tiles inside each product: N · tile).
WEIGHTS = ("stored", "regenerated", "tiled")
# Columns (rows) of W drawn at once by weights="tiled": 256 × N float32 entries (16 MiB at N = 16,384).
DEFAULT_TILE = 256

# Examples per seed when inputs are drawn by default: one (the Jacobian is example 0's), except with
# batchnorm whose statistics need a batch; 16 examples give O(1/√16) fluctuations of the statistics.
BATCHNORM_DEFAULT_BATCH = 16

# Lanczos steps by default: 32 Ritz values, of which the top ~10 are converged to float32 precision
# for the spectra met here (checked against svd in tests/empirical/test_jacobians.py).
DEFAULT_LANCZOS_K = 32

# Random start vectors per seed and layer for the spectral density: with N = 256 and 4 probes the
# probe noise of a mean over the spectrum is ≈ 4% of the spread of the averaged function (see
# jacobian_spectral_density); more seeds average it down further.
DEFAULT_SLQ_PROBES = 4


def basis_cotangent(n: int, batch: int, dtype) -> jax.Array:
    """(N, B, N): cotangent i is e_i on example 0 (zero on the other examples)."""
    return jnp.zeros((n, batch, n), dtype).at[jnp.arange(n), 0, jnp.arange(n)].set(1)


# Threads for the host eigen routine: the cores this process may use.
HOST_EIGEN_WORKERS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_HOST_EIGEN_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _host_eigen_resources():
    """(thread pool, BLAS thread controller), made on first use."""
    from threadpoolctl import ThreadpoolController

    return ThreadPoolExecutor(HOST_EIGEN_WORKERS, thread_name_prefix="gradjax-eigvalsh"), ThreadpoolController()


def host_eigvalsh(m: np.ndarray) -> np.ndarray:
    """Eigenvalues of symmetric ``m`` (…, N, N) on the host: LAPACK ``syevd`` with jobz='N', values only.

    A batch of matrices is split across :data:`HOST_EIGEN_WORKERS` threads, each running LAPACK with
    one BLAS thread (the tridiagonal reduction of one N ≲ 1000 matrix gains nothing from BLAS
    threads; separate matrices on separate cores do: ≈ 1.8× on 2 cores for N = 256, measured in
    benchmarks/RESULTS.md). A single matrix, or one core, is one plain call. A matrix with
    non-finite entries, or one whose iteration does not converge, gets nan eigenvalues; the other
    matrices of the batch are unaffected.
    """
    m = np.asarray(m)
    flat = m.reshape((-1,) + m.shape[-2:])
    # LAPACK reads one triangle only: a non-finite entry in the other would pass unseen.
    bad = ~np.all(np.isfinite(flat), axis=(-2, -1))
    if bad.any():  # a diverged seed's matrix: nan eigenvalues for it, the others untouched
        flat = np.where(bad[:, None, None], np.zeros_like(flat), flat)
    workers = min(HOST_EIGEN_WORKERS, flat.shape[0])
    if workers <= 1:
        out = _eigvalsh_each(flat)
    else:
        pool, blas = _host_eigen_resources()
        # One batch at a time (each already uses every core): concurrent callbacks (several devices
        # under shard_map) would otherwise interleave the BLAS limit's set and restore.
        with _HOST_EIGEN_LOCK, blas.limit(limits=1, user_api="blas"):
            out = np.concatenate(list(pool.map(_eigvalsh_each, np.array_split(flat, workers))))
    out[bad] = np.nan
    return out.reshape(m.shape[:-1]).astype(m.dtype, copy=False)


def _eigvalsh_each(a: np.ndarray) -> np.ndarray:
    """``np.linalg.eigvalsh`` of a batch; a matrix whose iteration fails to converge gets nan, not an error."""
    try:
        return np.linalg.eigvalsh(a)
    except np.linalg.LinAlgError:
        out = np.empty(a.shape[:-1], a.dtype)
        for i, one in enumerate(a):
            try:
                out[i] = np.linalg.eigvalsh(one)
            except np.linalg.LinAlgError:
                out[i] = np.nan
        return out


def _eigvalsh_lapack_values_only(a: jax.Array) -> jax.Array:
    # XLA's CPU eigh always computes the eigenvectors (~2x slower for N = 256 than values only).
    return jax.pure_callback(host_eigvalsh, jax.ShapeDtypeStruct(a.shape[:-1], a.dtype), a, vmap_method="broadcast_all")


def eigvalsh(a: jax.Array) -> jax.Array:
    """Eigenvalues (ascending) of symmetric ``a`` (…, N, N); values only.

    On CPU :func:`host_eigvalsh` (values-only LAPACK, threaded over the batch, through ``jax.pure_callback``); elsewhere ``jnp.linalg.eigvalsh``.
    Jittable and vmappable, not differentiable.
    """
    return jax.lax.platform_dependent(a, cpu=_eigvalsh_lapack_values_only, default=jnp.linalg.eigvalsh)


def unit_spectrum(g: jax.Array, method: str) -> jax.Array:
    """The spectrum of unit-scale ``g`` (…, N, N), descending, in the form :func:`scale_spectrum` takes:
    ``gram``: eigenvalues of g gᵀ by ``eigvalsh`` (clipped at 0); ``svd``: singular values."""
    if method == "svd":
        return jnp.linalg.svd(g, compute_uv=False)
    gram = jnp.matmul(g, jnp.swapaxes(g, -1, -2), precision=jax.lax.Precision.HIGHEST)
    lam = eigvalsh(gram)[..., ::-1]
    return jnp.where(lam > 0, lam, jnp.zeros_like(lam))


def scale_spectrum(values: jax.Array, log_scale: jax.Array, method: str) -> jax.Array:
    """log10 singular values of ``10**log_scale · g`` from :func:`unit_spectrum` of g (log_scale (…,))."""
    logs = jnp.log10(values) if method == "svd" else 0.5 * jnp.log10(values)
    return logs + log_scale[..., None]


def log10_singular_values(g: jax.Array, log_scale: jax.Array, method: str) -> jax.Array:
    """log10 singular values of ``10**log_scale · g`` (g (…, N, N)), sorted descending.

    ``gram``: eigenvalues of g gᵀ by ``eigvalsh`` (fast; singular values below ~√ε·σ_max are noise,
    non-positive Gram eigenvalues give −inf); ``svd``: ``jnp.linalg.svd`` (exact reference).
    """
    return scale_spectrum(unit_spectrum(g, method), log_scale, method)


def layer_indices(cfg: NetConfig, layers) -> np.ndarray | str:
    """"all" → 0..L-1, "end" → "end", a list of ints l in [0, L) → an index array."""
    if isinstance(layers, str):
        check_choice("layers", layers, LAYER_CHOICES)
        return np.arange(cfg.depth) if layers == "all" else "end"
    idx = np.asarray(layers)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= cfg.depth:
        raise ValueError(f"layers must be 'all', 'end' or a non-empty list of ints in [0, {cfg.depth}), got {layers!r}")
    return idx


def _subnet_walk(cfg: NetConfig, params: dict, fwd, start: jax.Array, v: jax.Array):
    """J v for J = ∂h_L/∂h_start (one example's tangent ``v`` (B, N)), blockwise with log-scale.

    Blocks 1..start are skipped (identity), so one compiled sweep serves every start layer.
    Returns ``(unit tangent at h_L, log10 norm)``.
    """
    u, s = normalize(v)

    def body(carry, inp):
        u, s = carry
        idx, x_l, h_prev = inp
        p = block_params(cfg, params, x_l)
        _, t = jax.jvp(lambda h: apply_block(cfg, p, x_l, h), (h_prev,), (u,))
        un, ds = normalize(t)
        active = idx >= start
        return (jnp.where(active, un, u), jnp.where(active, s + ds, s)), None

    (u, s), _ = jax.lax.scan(body, (u, s), (jnp.arange(cfg.depth), fwd.xs, fwd.inputs))
    return u, s


def _gtg(cfg: NetConfig, params: dict, fwd, start: jax.Array, w: jax.Array):
    """GᵀG w for G = ∂h_L/∂h_start on example 0, as (unit vector (N,), log10 norm)."""
    batch, n = fwd.h0.shape
    on_example0 = lambda v: jnp.zeros((batch, n), v.dtype).at[0].set(v)  # noqa: E731
    u1, s1 = _subnet_walk(cfg, params, fwd, start, on_example0(w))
    walk = backward_walk(cfg, params, fwd, on_example0(u1[0]), keep=lambda u: u[0])
    u2, s2 = normalize(walk.unit_in[start])
    return u2, s1 + walk.log_in[start] + s2


def _lanczos(cfg: NetConfig, params: dict, fwd, start: jax.Array, v0: jax.Array, k: int):
    """k Lanczos steps on GᵀG (G = ∂h_L/∂h_start, example 0) from the unit vector ``v0`` (N,).

    Matrix-free: each product is one tangent sweep (``jax.jvp`` per block) and one cotangent sweep
    (``jax.vjp`` per block), both log-scaled; the operator is divided by its norm on ``v0`` so that
    the recurrence (:func:`gradjax.empirical.lanczos.lanczos_tridiagonal`) runs in O(1) numbers.

    Returns ``(T, scale)``: the k × k tridiagonal matrix of GᵀG in units of ``10**scale``.
    """
    _, scale = _gtg(cfg, params, fwd, start, v0)  # operator in units of 10**scale

    def matvec(w):
        u, s = _gtg(cfg, params, fwd, start, w)
        return u * 10.0 ** (s - scale)

    return lanczos_tridiagonal(matvec, v0, k), scale


def _lanczos_top(cfg: NetConfig, params: dict, fwd, start: jax.Array, key: jax.Array, k: int) -> jax.Array:
    """log10 of the top-k singular values of G = ∂h_L/∂h_start (example 0), descending (k,): Ritz values of GᵀG."""
    tri, scale = _lanczos(cfg, params, fwd, start, unit_probe(key, cfg.state_size, cfg.jnp_dtype), k)
    theta = jnp.linalg.eigvalsh(tri)[::-1]
    theta = jnp.where(theta > 0, theta, jnp.zeros_like(theta))
    return 0.5 * (jnp.log10(theta) + scale)


def _lanczos_quadrature(cfg: NetConfig, params: dict, fwd, start: jax.Array, key: jax.Array, k: int):
    """Gauss quadrature of the spectral measure of GᵀG seen from one random unit probe v.

    With T = Q Θ Qᵀ the Lanczos matrix from v, Σ_j Q_{0j}² f(θ_j) ≈ vᵀ f(GᵀG) v (exact for
    polynomials of degree < 2k), whose mean over v uniform on the sphere is tr f(GᵀG) / N.
    Returns ``(log10 σ_j = ½ log10 θ_j (k,), weights Q_{0j}² (k,))``.
    """
    tri, scale = _lanczos(cfg, params, fwd, start, unit_probe(key, cfg.state_size, cfg.jnp_dtype), k)
    theta, w = gauss_quadrature(tri)
    theta = jnp.where(theta > 0, theta, jnp.zeros_like(theta))
    return 0.5 * (jnp.log10(theta) + scale), w


def _seed_network(key, x, cfg: NetConfig, run_cfg: NetConfig, batch: int, weights: str, tile: int):
    """One seed's parameters (drawn in ``cfg.dtype``, cast to ``run_cfg``'s) and forward taps.

    ``weights="regenerated"`` / ``"tiled"``: the blocks are held as their keys and drawn inside each
    step of the sweeps (whole, or by tiles of ``tile`` inside each product); the stored draw of the
    blocks is then unused and removed by the compiler.
    """
    params = init_params(cfg, key)
    params = {name: jax.tree.map(lambda a: a.astype(run_cfg.jnp_dtype), v) for name, v in params.items()}
    if weights != "stored":
        params = keyed_params(cfg, key, params, run_cfg.dtype, tile if weights == "tiled" else 0)
    x = default_inputs(run_cfg, key, batch) if x is None else x.astype(run_cfg.jnp_dtype)
    if run_cfg.norm != "batchnorm":
        x = x[:1]  # examples do not interact: example 0 alone has the same Jacobian
    return params, forward_taps(run_cfg, params, x)


def _starts(layers) -> jax.Array:
    return jnp.asarray([0] if isinstance(layers, str) else layers)


def _spectrum_of_taps(cfg: NetConfig, params: dict, fwd, layers, method: str, k: int, key, weights: str = "stored"):
    n, b = cfg.state_size, fwd.h0.shape[0]
    if method == "lanczos":
        return jax.lax.map(lambda st: _lanczos_top(cfg, params, fwd, st, key, k), _starts(layers))
    cot = basis_cotangent(n, b, cfg.jnp_dtype)
    if isinstance(layers, str):  # "end": only ∂h_L/∂h_0
        walk = backward_walk(cfg, params, fwd, cot, basis_ndim=1)
        return log10_singular_values(walk.u0[:, 0, :], walk.log0, method)[None]
    idx = jnp.asarray(layers)
    if weights != "stored":  # O(N²) memory: each layer's spectrum taken inside the sweep, not L matrices kept
        walk = backward_walk(cfg, params, fwd, cot, basis_ndim=1, keep=lambda u: unit_spectrum(u[:, 0, :], method))
        return scale_spectrum(walk.unit_in[idx], walk.log_in[idx], method)
    walk = backward_walk(cfg, params, fwd, cot, basis_ndim=1, keep=lambda u: u[:, 0, :])
    # Entry l of unit_in is the cotangent at h_l (leaving block l+1 backwards): rows of ∂h_L/∂h_l.
    return scale_spectrum(unit_spectrum(walk.unit_in[idx], method), walk.log_in[idx], method)


def jacobian_spectrum_of(cfg: NetConfig, params: dict, x: jax.Array, layers="all", method: str = "gram", *,
                         k: int = DEFAULT_LANCZOS_K, key: jax.Array | None = None) -> jax.Array:
    """log10 singular values of ∂h_L/∂h_l of ONE network (no seed axis), for example 0 of ``x``.

    The per-network form of :func:`jacobian_spectrum` (stored weights): same layers, methods and units.

    Args:
      cfg: the network. params: its parameters (``gradjax.nn.init_params``), no seed axis.
      x: (B, …) inputs; only example 0 matters except with batchnorm.
      layers, method, k: as in :func:`jacobian_spectrum`.
      key: the random start of "lanczos" (required there, unused otherwise).

    Returns:
      (n_layers, D) log10 σ descending, or (n_layers, k) for "lanczos".
    """
    check_choice("method", method, METHODS)
    idx = layer_indices(cfg, layers)
    idx = idx if isinstance(idx, str) else tuple(int(i) for i in idx)
    if method == "lanczos" and key is None:
        raise ValueError("method='lanczos' needs key=, the random start vector's key; got key=None")
    x = jnp.asarray(x, cfg.jnp_dtype)
    if cfg.norm != "batchnorm":
        x = x[:1]  # examples do not interact: example 0 alone has the same Jacobian
    return _spectrum_of_taps(cfg, params, forward_taps(cfg, params, x), idx, method, min(k, cfg.state_size), key)


def _spectrum_one(key, x, *, cfg, run_cfg, layers, method, batch, k, weights, tile):
    params, fwd = _seed_network(key, x, cfg, run_cfg, batch, weights, tile)
    return _spectrum_of_taps(run_cfg, params, fwd, layers, method, k, jax.random.fold_in(data_key(key), 2), weights)


def _quadrature_one(key, x, *, cfg, run_cfg, layers, batch, k, probes, weights, tile):
    params, fwd = _seed_network(key, x, cfg, run_cfg, batch, weights, tile)
    pkeys = jax.random.split(jax.random.fold_in(data_key(key), 3), probes)

    def one_layer(st):
        # Probes vmapped: each Lanczos step reads the weights once for all of them (matvecs are memory-bound).
        nodes, w = jax.vmap(lambda pk: _lanczos_quadrature(run_cfg, params, fwd, st, pk, k))(pkeys)
        return nodes.reshape(-1), w.reshape(-1) / probes

    return jax.lax.map(one_layer, _starts(layers))


def _check_weights(cfg: NetConfig, weights: str, tile: int | None) -> int:
    """Validated tile size (0 unless ``weights="tiled"``)."""
    check_choice("weights", weights, WEIGHTS)
    if weights == "stored":
        return 0
    if cfg.arch not in KEYED_ARCHS:
        raise ValueError(f"weights={weights!r} needs arch in {list(KEYED_ARCHS)} (blocks with their own keys), got {cfg.arch!r}")
    if weights == "regenerated":
        return 0
    if cfg.arch not in ("mlp", "resmlp"):
        raise ValueError(f"weights='tiled' needs arch in ['mlp', 'resmlp'] (dense kernels drawn by tiles), got {cfg.arch!r}")
    if cfg.init not in IID:
        raise ValueError(f"weights='tiled' needs init in {sorted(IID)} (entries drawn independently), got "
                         f"{cfg.init!r}: an orthogonal W depends on all its entries at once")
    tile = min(DEFAULT_TILE, cfg.width) if tile is None else tile
    if not (isinstance(tile, int) and tile >= 1 and cfg.width % tile == 0):
        raise ValueError(f"tile must be a positive int dividing width={cfg.width}, got {tile!r}")
    return tile


def _prepare(cfg: NetConfig, seeds, inputs, layers, dtype, batch, k):
    """Validated ``(layers, working cfg, keys, inputs, inputs' seed axis, examples per seed)``; layers
    as a static (hashable) value: "end" or a tuple of ints."""
    idx = layer_indices(cfg, layers)
    idx = idx if isinstance(idx, str) else tuple(int(i) for i in idx)
    run_cfg = cfg
    if dtype is not None:
        check_choice("dtype", dtype, DTYPES)
        run_cfg = cfg.with_(dtype=dtype)
    keys = seed_keys(seeds)
    x, x_axis = per_seed_inputs(cfg, inputs, keys.shape[0])
    if batch is None:
        batch = BATCHNORM_DEFAULT_BATCH if cfg.norm == "batchnorm" else 1
    check_int("batch", batch)
    if cfg.norm == "batchnorm" and (batch if x is None else x.shape[-2 if cfg.arch != "rnn" else -3]) < 2:
        raise ValueError("batchnorm needs a batch of at least 2 examples: pass batch >= 2 or inputs with B >= 2")
    check_int("k", k)
    b = batch if x is None else (x.shape[1] if x_axis == 0 else x.shape[0])
    return idx, run_cfg, keys, x, x_axis, b


def jacobian_spectrum(cfg: NetConfig, seeds=8, inputs=None, layers="all", method: str = "gram", dtype: str | None = None,
                      *, batch: int | None = None, k: int = DEFAULT_LANCZOS_K, max_bytes: int | None = None,
                      seed_batch: int | None = None, weights: str = "stored", tile: int | None = None) -> jax.Array:
    """log10 singular values of ∂h_L/∂h_l for S freshly initialized networks (example 0's state).

    Args:
      cfg: the network (rnn: ∂h_L/∂h_t over time steps; h_0 = 0 is the initial state).
      seeds: int S, a list of ints, or a key array (S,).
      inputs: None (unit Gaussian drawn from each seed), (B, …) shared, or (S, B, …) per seed.
        The Jacobian is that of example 0 (the whole batch matters only with batchnorm, see module doc).
      layers: "all" (l = 0..L−1), "end" (∂h_L/∂h_0 only) or a list of l in [0, L).
      method: "gram" (eigvalsh of G Gᵀ, default), "svd" (exact reference) or "lanczos" (matrix-free:
        top-``k`` singular values from Jacobian-vector products only, for widths where N × N
        matrices do not fit; :func:`jacobian_spectral_density` gives the whole distribution that way).
      dtype: working precision, "float32" | "float64" (default: ``cfg.dtype``); parameters are drawn
        in ``cfg.dtype`` and cast.
      batch: examples per seed of the default inputs (default 1, or 16 with batchnorm).
      k: Lanczos steps (returned values: k; the top ones are the converged ones).
      max_bytes: memory budget of one chunk of seeds (default: half the device's free memory, 2 GiB on CPU).
      seed_batch: seeds vmapped together (default 1 on CPU, 32 on accelerators).
      weights: "stored" (each network's L weight matrices drawn, then walked), "regenerated" (each
        W_l drawn from its own key inside the forward and again inside the backward sweep, and each
        layer's spectrum taken inside the backward sweep: O(N²) memory per network instead of
        O(L·N²), the same values bit for bit) or "tiled" (W_l drawn by tiles inside each product:
        O(N·tile); equal to rounding). mlp/resmlp only for the last two; "tiled" needs i.i.d. init.
      tile: columns (rows) of W per tile for "tiled" (default min(256, N); must divide N).

    Returns:
      (S, n_layers, N) log10 singular values sorted descending — (S, n_layers, k) for "lanczos" —
      with n_layers = L for "all", 1 for "end", len(layers) for a list.
    """
    check_choice("method", method, METHODS)
    idx, run_cfg, keys, x, x_axis, b = _prepare(cfg, seeds, inputs, layers, dtype, batch, k)
    b_eff = b if cfg.norm == "batchnorm" else 1
    n, L, n_par = cfg.state_size, cfg.depth, block_param_count(cfg)
    n_keep = 0 if isinstance(idx, str) else L
    # One seed: parameters, taps, the (N, B, N) cotangent block and its temporaries, the kept
    # per-layer matrices, and eigen/svd workspace for the selected layers.
    n_sel = 1 if isinstance(idx, str) else len(idx)
    tile = _check_weights(cfg, weights, tile)
    if weights == "stored":
        per_seed = 2 * itemsize(run_cfg) * (L * n_par + 3 * L * b * n + 4 * n * b_eff * n + (n_keep + 3 * n_sel) * n * n)
    else:  # one W_l (or one tile) at a time, spectra taken inside the sweep: (L, N) kept
        per_seed = 2 * itemsize(run_cfg) * (n * n + 3 * L * b * n + 4 * n * b_eff * n + 3 * n * n + L * n)
    static = (("cfg", cfg), ("run_cfg", run_cfg), ("layers", idx),
              ("method", method), ("batch", b), ("k", min(k, n)), ("weights", weights), ("tile", tile))
    return map_seeds(_spectrum_one, static, keys, (x,), (x_axis,), per_seed_bytes=per_seed, max_bytes=max_bytes,
                     seed_batch=seed_batch)


def _lead(a: jax.Array, ndim: int) -> jax.Array:
    """``a`` with leading unit axes up to ``ndim`` (explicit broadcasting)."""
    return a.reshape((1,) * (ndim - a.ndim) + a.shape)


class SpectralQuadrature(NamedTuple):
    """A quadrature of the singular-value distribution of ∂h_L/∂h_l, per seed and layer.

    Attributes:
      log10_sv: (S, n_layers, P·k) nodes: log10 of Ritz singular values (−inf where θ ≤ 0).
      weights: (S, n_layers, P·k) ≥ 0, summing to 1 over the last axis: Σ weights · f(10**(2·log10_sv))
        estimates (1/N) Σ_i f(σ_i²), the mean of f over the N squared singular values.
    """

    log10_sv: jax.Array
    weights: jax.Array

    def cdf(self, x) -> jax.Array:
        """Estimated fraction of singular values with log10 σ ≤ x: (S, n_layers, len(x)) for x (m,)."""
        x = jnp.atleast_1d(jnp.asarray(x, self.weights.dtype))
        below = self.log10_sv[..., None, :] <= _lead(x[:, None], self.log10_sv.ndim + 1)
        return jnp.sum(jnp.where(below, self.weights[..., None, :], 0), axis=-1)

    def density(self, grid, bandwidth: float = 0.05) -> jax.Array:
        """Density in log10 σ on ``grid`` (m,), the nodes smoothed by a Gaussian of width ``bandwidth``
        (decades): (S, n_layers, m). Nodes at −inf (unresolved) contribute nothing."""
        return smoothed_density(self.log10_sv, self.weights, grid, bandwidth)


def jacobian_spectral_density(cfg: NetConfig, seeds=8, inputs=None, layers="all", *, k: int = DEFAULT_LANCZOS_K,
                              probes: int = DEFAULT_SLQ_PROBES, dtype: str | None = None, batch: int | None = None,
                              max_bytes: int | None = None, seed_batch: int | None = None, weights: str = "stored",
                              tile: int | None = None) -> SpectralQuadrature:
    """Singular-value distribution of ∂h_L/∂h_l by stochastic Lanczos quadrature, matrix-free.

    For widths where the N × N Jacobians of :func:`jacobian_spectrum` do not fit: only Jacobian-vector
    products (one tangent and one cotangent sweep per Lanczos step, log-scaled) and k × k matrices.
    Each of ``probes`` random unit vectors v gives a k-node Gauss quadrature of vᵀ f(GᵀG) v; their
    average estimates the mean of f over the squared singular values (Ubaru, Chen & Saad 2017,
    "Fast estimation of tr(f(A)) via stochastic Lanczos quadrature", SIAM J. Matrix Anal. Appl. 38(4);
    Golub & Meurant, "Matrices, Moments and Quadrature with Applications", 2010). The top nodes are
    the converged top singular values; the estimate of a smooth f's mean has probe noise
    O(std_σ(f) · √(2 / (N · probes))). The quadrature resolves the distribution where GᵀG has its
    mass on a linear scale: the lower decades of an ill-conditioned spectrum (deep tanh nets) are
    lumped into one heavy node near 0, and the CDF there is only known to within that node's weight
    (measured for a 6-layer tanh net at N = 128, k = 24: CDF within 0.03 at the 75th and 90th
    percentiles, the bottom quarter unresolved; tests/empirical/test_jacobians.py).

    Args:
      cfg, seeds, inputs, layers, dtype, batch, max_bytes, seed_batch: as :func:`jacobian_spectrum`.
      k: Lanczos steps per probe (nodes per probe), at most N.
      probes: random start vectors per seed and layer (drawn from the seed's data key).
      weights, tile: as :func:`jacobian_spectrum`; "tiled" needs O(N · tile) memory per product, so
        widths whose N × N weights do not fit (N = 16,384: 1 GiB per float32 W) run on a laptop.

    Returns:
      :class:`SpectralQuadrature` with arrays (S, n_layers, probes · k).
    """
    idx, run_cfg, keys, x, x_axis, b = _prepare(cfg, seeds, inputs, layers, dtype, batch, k)
    check_int("probes", probes)
    tile = _check_weights(cfg, weights, tile)
    n, L = cfg.state_size, cfg.depth
    kk = min(k, n)
    params_bytes = {"stored": L * block_param_count(cfg), "regenerated": n * n, "tiled": 2 * tile * n}[weights]
    per_seed = 2 * itemsize(run_cfg) * (params_bytes + 3 * L * b * n + probes * (4 * kk * n + 2 * kk * kk))
    static = (("cfg", cfg), ("run_cfg", run_cfg), ("layers", idx),
              ("batch", b), ("k", kk), ("probes", probes), ("weights", weights), ("tile", tile))
    nodes, w = map_seeds(_quadrature_one, static, keys, (x,), (x_axis,), per_seed_bytes=per_seed,
                         max_bytes=max_bytes, seed_batch=seed_batch)
    return SpectralQuadrature(nodes, w)
