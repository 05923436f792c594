"""Seeds, default inputs and memory-budget chunking of the seed axis (shared by the measurements)."""

from __future__ import annotations

import functools
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gradjax._validate import check_int
from gradjax.config import NetConfig
from gradjax.nn.stack import input_shape

# Stream id folded into a seed's key to draw its data (inputs, targets). Flax NNX draws parameters
# with fold_in(key, count) for small counts (one per parameter draw), so a large constant keeps the
# data stream apart from every parameter stream for any depth below ~10^9.
DATA_STREAM = 0x5EED_DA7A
# Stream id of the independent copy of a seed's parameters that the gradient-independence control
# back-propagates through (``gradient_profile(..., backward="independent")``); apart from both above.
BACKWARD_STREAM = 0x0BAC_C0B1
# The dtype random data is drawn in whatever the working dtype (float32: 64-bit JAX may be off).
DRAW_DTYPE = jnp.float32

# Seed-axis memory budget on a device that reports no memory statistics (the CPU backend): 2 GiB,
# a size any laptop running these measurements has free; pass ``max_bytes`` to change it.
CPU_DEFAULT_MAX_BYTES = 2 * 1024**3

# Fraction of the device's free memory the seed axis may use by default, leaving room for XLA's
# temporaries that the per-seed estimates below do not count.
DEVICE_MEMORY_FRACTION = 0.5


def data_key(key: jax.Array) -> jax.Array:
    """The key a seed draws its default inputs and targets from (independent of its parameters)."""
    return jax.random.fold_in(key, DATA_STREAM)


def backward_key(key: jax.Array) -> jax.Array:
    """The key of the independent copy of a seed's parameters (the gradient-independence control)."""
    return jax.random.fold_in(key, BACKWARD_STREAM)


def normal_draw(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """i.i.d. N(0, 1) entries of ``shape``, drawn in :data:`DRAW_DTYPE` and cast to ``dtype``.

    Every input, target and probe of the measurements is drawn here, so one seed gives the same data in
    float32 and float64: the float64 values are the float32 draws, cast exactly (bitwise equal after
    casting the float32 run's values to float64).
    """
    return jax.random.normal(key, shape, DRAW_DTYPE).astype(dtype)


def default_inputs(cfg: NetConfig, key: jax.Array, batch: int) -> jax.Array:
    """Unit Gaussian inputs ``input_shape(cfg, batch)`` drawn from the seed's data key (mean(x²) ≈ 1, so q_0 ≈ 1)."""
    return normal_draw(jax.random.fold_in(data_key(key), 0), input_shape(cfg, batch), cfg.jnp_dtype)


def default_max_bytes() -> int:
    """Half the free memory of the default device, or :data:`CPU_DEFAULT_MAX_BYTES` where unknown."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # backends without memory statistics raise or return None
        stats = None
    if stats and "bytes_limit" in stats:
        return int(DEVICE_MEMORY_FRACTION * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
    return CPU_DEFAULT_MAX_BYTES


def per_seed_inputs(cfg: NetConfig, inputs, n_seeds: int):
    """Validates user inputs: returns ``(x, in_axis)`` with in_axis 0 (one batch per seed) or None (shared)."""
    if inputs is None:
        return None, None
    x = jnp.asarray(inputs)
    base = len(input_shape(cfg, 1))
    if x.ndim == base:
        return x, None
    if x.ndim == base + 1 and x.shape[0] == n_seeds:
        return x, 0
    raise ValueError(
        f"inputs must have shape {('B',) + input_shape(cfg, 1)[1:]} (shared by all seeds) or "
        f"{(n_seeds, 'B') + input_shape(cfg, 1)[1:]} (one batch per seed), got {tuple(x.shape)}"
    )


# Seeds vmapped together on an accelerator by default: wide enough to fill a GPU with the small
# per-seed matrices of typical sweeps, small enough that S = 32 seeds of W1 fit in memory at once.
ACCELERATOR_SEED_BATCH = 32


def default_seed_batch() -> int:
    """Seeds vmapped together: 1 on CPU, :data:`ACCELERATOR_SEED_BATCH` on GPU/TPU.

    On CPU a sequential ``lax.map`` over seeds is as fast as ``vmap`` (the per-seed matrix products
    already fill the cores; measured 0.49 s vs 0.86 s for L=32, N=256, B=64, S=16 on 2 cores) and gives
    every seed bit-identical results whatever S, the chunking or the other seeds are. XLA picks
    different kernels for different vmap widths, so results are bit-reproducible at a fixed
    ``seed_batch``, not across values of it.
    """
    return 1 if jax.default_backend() == "cpu" else ACCELERATOR_SEED_BATCH


@functools.partial(jax.jit, static_argnames=("body", "static", "in_axes", "seed_batch"))
def _run_chunk(keys, args, configs, *, body, static, in_axes, seed_batch):
    kw = {**dict(static), **configs}
    shared = tuple(a if ax is None else None for a, ax in zip(args, in_axes))
    mapped = tuple(a if ax == 0 else None for a, ax in zip(args, in_axes))

    def one(key, m):
        full = tuple(s if ax is None else mm for s, mm, ax in zip(shared, m, in_axes))
        return body(key, *full, **kw)

    if seed_batch == 1:
        return jax.lax.map(lambda km: one(*km), (keys, mapped))
    groups = keys.shape[0] // seed_batch
    regroup = lambda a: None if a is None else a.reshape((groups, seed_batch) + a.shape[1:])  # noqa: E731
    out = jax.lax.map(lambda km: jax.vmap(one)(*km), (regroup(keys), tuple(regroup(m) for m in mapped)))
    return jax.tree.map(lambda o: o.reshape((groups * seed_batch,) + o.shape[2:]), out)


def map_seeds(body: Callable, static: tuple, keys: jax.Array, args: tuple, in_axes: tuple, *, per_seed_bytes: int,
              max_bytes: int | None, seed_batch: int | None):
    """Runs ``body(key, *args, **dict(static))`` for every seed, chunk by chunk under a memory budget.

    Seeds run in groups of ``seed_batch`` (vmapped; a sequential ``lax.map`` over groups), in
    chunks of a multiple of ``seed_batch`` seeds sized so that a chunk's estimated working set
    (``per_seed_bytes`` each) stays under ``max_bytes``. Every chunk has the same size (the last one
    is padded by repeating the final seed, the padding dropped), so one compiled program serves
    them all and the chunked result is bit-identical to the unchunked one.

    Args:
      body: a module-level function (hashable: it keys the compilation cache).
      static: ``((name, value), …)`` keyword arguments of ``body``: hashable values are static under
        jit; a ``NetConfig`` passes as a pytree (its structure static, its numbers traced), so configs
        differing only in σ_w², σ_b², α or slope share one compilation, and a traced σ_w² (a
        ``jax.vmap`` over configs) runs through.
      keys: (S,) typed keys. args: arrays; ``in_axes`` gives 0 (leading seed axis) or None (shared) for each.
    """
    configs = {k: v for k, v in static if isinstance(v, NetConfig)}
    static = tuple((k, v) for k, v in static if not isinstance(v, NetConfig))
    n = keys.shape[0]
    vw = default_seed_batch() if seed_batch is None else seed_batch
    check_int("seed_batch", vw)
    vw = min(vw, n)
    if max_bytes is None:
        max_bytes = default_max_bytes()
    check_int("max_bytes", max_bytes)
    fit = max(1, max_bytes // max(1, int(per_seed_bytes)))
    if per_seed_bytes > max_bytes:
        warnings.warn(
            f"one seed needs about {format_bytes(per_seed_bytes)}, more than max_bytes={max_bytes} "
            f"({format_bytes(max_bytes)}): running one seed at a time anyway", UserWarning, stacklevel=3)
    if fit < vw:  # a vmapped group must fit too: fewer seeds per group (results differ in the last bits)
        warnings.warn(
            f"seed_batch={vw} vmapped seeds need about {format_bytes(vw * per_seed_bytes)}, more than "
            f"max_bytes={max_bytes}: vmapping {fit} at a time instead", UserWarning, stacklevel=3)
        vw = fit
    # Several groups per chunk where memory allows (fewer dispatches), never fewer than one group.
    chunk = max(vw, (min(fit, n) // vw) * vw)
    n_pad = -(-n // chunk) * chunk
    idx_all = np.minimum(np.arange(n_pad), n - 1)
    run = functools.partial(_run_chunk, body=body, static=static, in_axes=tuple(in_axes), seed_batch=vw)
    outs = []
    for start in range(0, n_pad, chunk):
        idx = idx_all[start:start + chunk]
        sl = tuple(a if ax is None or a is None else a[idx] for a, ax in zip(args, in_axes))
        outs.append(run(keys[idx], sl, configs))
    out = outs[0] if len(outs) == 1 else jax.tree.map(lambda *o: jnp.concatenate(o, axis=0), *outs)
    return jax.tree.map(lambda o: o[:n], out)


def format_bytes(n: float) -> str:
    """``n`` bytes as B / KiB / MiB / GiB with 3 significant digits."""
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} GiB"


def block_param_count(cfg: NetConfig) -> int:
    """Weights of one block (for memory estimates): N², k^d·N² (cnn), 4N² or 6N² (transformer)."""
    n2 = cfg.width**2
    if cfg.arch == "cnn":
        return cfg.kernel_size ** len(cfg.spatial) * n2
    if cfg.arch == "transformer":
        return (6 if cfg.mlp else 4) * n2
    return n2


def itemsize(cfg: NetConfig) -> int:
    return jnp.dtype(cfg.jnp_dtype).itemsize
