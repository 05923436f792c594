"""Networks that are never stored: block parameters drawn from their keys where they are used.

A stack's block l is a pure function of its key (:func:`gradjax.nn.stack.block_keys`), so a walk over
the blocks can carry the L keys instead of the L weight matrices and draw W_l inside the step that
uses it — once in the forward sweep, again in the backward sweep: O(N²) parameter memory per network
instead of O(L·N²), for the cost of drawing each W_l once per sweep (:mod:`gradjax.nn.sampling`
draws at a few ns per entry).

With ``tile > 0`` the weight matrix is not even formed: :class:`TiledKernel` stands for W in
``x @ W`` and computes the product tile by tile (``tile`` columns of W at a time for ``x W``, ``tile``
rows for the transposed product ``g Wᵀ`` of the backward sweep), each tile drawn just before it is
used — O(N · tile) memory per product. Both products are one primitive with its own
differentiation (linear, transpose = the other product) and batching rules, so ``jax.jvp``,
``jax.vjp`` and ``jax.vmap`` of a block work unchanged. Only schemes with i.i.d. entries can be
drawn by tiles (``gradjax.nn.init.IID``): an orthogonal W depends on all its entries at once.

Every drawn entry is bit-identical to the stored parameters of the same key (tested); a tiled
product sums over the same entries as the dense one, in the order the matrix-product kernel
chooses for the tile's shape.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from gradjax.config import NetConfig
from gradjax.nn.blocks import init_block, scale_block, unit_config
from gradjax.nn.init import IID, iid_scale
from gradjax.nn.sampling import key_words, standard_normal_tile, uniform_tile
from gradjax.nn.stack import block_keys

# --- the tiled product x @ W (or g @ Wᵀ) with W drawn tile by tile --------------------------------


def _tile_of(words, scale, factors, *, dist, shape, rows, cols, draw_dtype, out_dtype):
    if dist == "normal":
        w = standard_normal_tile(words, shape, rows, cols, draw_dtype, scale)
    else:
        w = uniform_tile(words, shape, rows, cols, draw_dtype, -1.0, 1.0, scale)
    for i in range(factors.shape[0]):  # the caller's factors, one rounding each, as on the stored W
        w = w * factors[i]
    return w.astype(out_dtype)


def _tiled_product(a, words, scale, factors, *, dist, shape, tile, draw_dtype, out_dtype, transpose):
    """``a @ W`` (``a`` (…, K)) or, with ``transpose``, ``a @ Wᵀ`` (``a`` (…, N)); W (K, N) drawn by tiles."""
    k, n = shape
    kw = dict(dist=dist, shape=shape, draw_dtype=draw_dtype, out_dtype=out_dtype)
    hi = jax.lax.Precision.HIGHEST

    def column_tile(j):  # y[…, tile j] = a @ W[:, tile j]: every output sums over all K inputs
        w = _tile_of(words, scale, factors, rows=(0, k), cols=(j * tile, tile), **kw)
        return jnp.matmul(a, w, precision=hi)

    def row_tile(i):  # (a Wᵀ)[…, tile i] = a @ W[tile i, :]ᵀ
        w = _tile_of(words, scale, factors, rows=(i * tile, tile), cols=(0, n), **kw)
        return jnp.matmul(a, w.T, precision=hi)

    count = (k if transpose else n) // tile
    parts = jax.lax.map(row_tile if transpose else column_tile, jnp.arange(count))  # (count, …, tile)
    return jnp.moveaxis(parts, 0, -2).reshape(a.shape[:-1] + (count * tile,))


tiled_matmul_p = Primitive("gradjax_tiled_matmul")
tiled_matmul_p.def_impl(functools.partial(jax.jit, static_argnames=(
    "dist", "shape", "tile", "draw_dtype", "out_dtype", "transpose"))(_tiled_product))


@tiled_matmul_p.def_abstract_eval
def _abstract(a, words, scale, factors, *, shape, transpose, out_dtype, **_):
    return jax.core.ShapedArray(a.shape[:-1] + (shape[0] if transpose else shape[1],), out_dtype)


mlir.register_lowering(tiled_matmul_p, mlir.lower_fun(_tiled_product, multiple_results=False))


def _jvp(g, a, words, scale, factors, **params):
    return tiled_matmul_p.bind(g, words, scale, factors, **params)


def _transpose(ct, a, words, scale, factors, *, transpose, **params):
    if type(ct) is ad.Zero:
        return [ad.Zero(a.aval), None, None, None]
    return [tiled_matmul_p.bind(ct, words, scale, factors, transpose=not transpose, **params), None, None, None]


def _batch(args, dims, **params):
    a, words, scale, factors = args
    da, *rest = dims
    if all(d is None for d in rest):  # shared weights: the batch axis is one more leading axis of a
        a = a if da is None else jnp.moveaxis(a, da, 0)
        return tiled_matmul_p.bind(a, words, scale, factors, **params), (0 if da is not None else None)
    size = next(x.shape[d] for x, d in zip(args, dims) if d is not None)
    moved = [jnp.broadcast_to(x, (size,) + x.shape) if d is None else jnp.moveaxis(x, d, 0)
             for x, d in zip(args, dims)]
    return jax.lax.map(lambda xs: tiled_matmul_p.bind(*xs, **params), tuple(moved)), 0  # one network after another


ad.defjvp(tiled_matmul_p, _jvp, None, None, None)
ad.primitive_transposes[tiled_matmul_p] = _transpose
batching.primitive_batchers[tiled_matmul_p] = _batch


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TiledKernel:
    """Stands for a kernel W (K, N) = ``IID[init]`` draw of ``key`` × factors, cast to ``out_dtype``,
    without forming it: ``x @ kernel`` computes the product tile by tile (see module doc)."""

    words: jax.Array  # (2,) uint32 cipher key words of the kernel's key
    scale: jax.Array  # () the scheme's factor (gradjax.nn.init.iid_scale), in draw_dtype
    factors: jax.Array  # (m,) further factors applied in order (m may be 0), in draw_dtype
    dist: str = dataclasses.field(metadata=dict(static=True))
    shape: tuple = dataclasses.field(metadata=dict(static=True))
    tile: int = dataclasses.field(metadata=dict(static=True))
    draw_dtype: str = dataclasses.field(metadata=dict(static=True))
    out_dtype: str = dataclasses.field(metadata=dict(static=True))

    def __rmatmul__(self, a: jax.Array) -> jax.Array:
        return tiled_matmul_p.bind(a, self.words, self.scale, self.factors, dist=self.dist, shape=self.shape,
                                   tile=self.tile, draw_dtype=self.draw_dtype, out_dtype=self.out_dtype,
                                   transpose=False)

    def __mul__(self, c) -> TiledKernel:
        c = jnp.asarray(c, self.draw_dtype).reshape(1)
        return dataclasses.replace(self, factors=jnp.concatenate([self.factors, c]))

    @property
    def dtype(self):
        return jnp.dtype(self.out_dtype)

    def astype(self, dtype) -> TiledKernel:
        return dataclasses.replace(self, out_dtype=jnp.dtype(dtype).name)

    def dense(self) -> jax.Array:
        """The whole matrix (for checks)."""
        k, n = self.shape
        return _tile_of(self.words, self.scale, self.factors, dist=self.dist, shape=self.shape, rows=(0, k),
                        cols=(0, n), draw_dtype=self.draw_dtype, out_dtype=self.out_dtype)


def tiled_kernel(init: str, key: jax.Array, shape: tuple[int, int], sigma_w2, dtype, tile: int) -> TiledKernel:
    """The kernel ``get_initializer(init)(key, shape, sigma_w2, dtype)`` as a :class:`TiledKernel`."""
    if init not in IID:
        raise ValueError(f"init must be one of {sorted(IID)} to draw a kernel by tiles (its entries i.i.d.), got {init!r}")
    k, n = shape
    if not (isinstance(tile, int) and tile >= 1 and k % tile == 0 and n % tile == 0):
        raise ValueError(f"tile must be a positive int dividing both dimensions of the kernel {shape}, got {tile!r}")
    dt = jnp.dtype(dtype).name
    return TiledKernel(jnp.stack(key_words(key)), iid_scale(init, shape, sigma_w2, dt), jnp.zeros((0,), dt),
                       IID[init][0], (int(k), int(n)), tile, dt, dt)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BlockKeys:
    """A stack's blocks with their kernels held as keys: :meth:`draw_block` draws a block's kernel where it is used.

    The O(N) parameters of each block (bias, norm scale and shift, prelu slope) stay stored: they are
    L·N numbers against the L·N² of the kernels, and a bias drawn inside the step that adds it would
    be fused into that sum by the compiler, rounded differently from the stored one.

    Attributes:
      keys: (L,) keys (:func:`gradjax.nn.stack.block_keys`); one key inside a scan over blocks.
      rest: the blocks' other parameters, (L, …) each (one block's inside a scan), already in ``dtype``.
      cfg: the configuration the kernels are drawn for (their dtype: ``cfg.dtype``).
      dtype: the dtype the kernel is cast to after drawing.
      tile: 0 to draw each W_l whole; > 0 to multiply by W_l tile by tile (:class:`TiledKernel`).
    """

    keys: jax.Array
    rest: dict
    cfg: NetConfig = dataclasses.field(metadata=dict(static=True))
    dtype: str = dataclasses.field(metadata=dict(static=True))
    tile: int = dataclasses.field(metadata=dict(static=True), default=0)

    def draw_block(self) -> dict:
        """One block's parameters (``keys`` a single key): the kernel bit-identical to the stored one."""
        cfg = self.cfg
        if self.tile:  # as init_block: drawn at unit numbers, then scaled by scale_block
            kw = jax.random.split(self.keys)[0]  # init_block's kernel key (pinned by tests/nn/test_regenerate.py)
            unit = tiled_kernel(cfg.init, kw, (cfg.width, cfg.width), unit_config(cfg).sigma_w2, cfg.jnp_dtype, self.tile)
            kernel = scale_block(cfg, {"kernel": unit})["kernel"]
        else:  # the block's other draws are unused here and removed by the compiler
            kernel = init_block(cfg, self.keys)["kernel"]
        return {**self.rest, "kernel": kernel.astype(self.dtype)}


def keyed_params(cfg: NetConfig, key: jax.Array, params: dict, dtype=None, tile: int = 0) -> dict:
    """``params`` = ``init_params(cfg, key)`` (any dtype) with the block kernels held as their keys.

    Returns the same dict with ``"blocks"`` a :class:`BlockKeys` (kernels drawn where used, cast to
    ``dtype``, default ``cfg.dtype``; whole, or by tiles of ``tile``); the stored kernels are dropped,
    so under jit their draw is removed by the compiler. mlp, resmlp and cnn (:func:`block_keys`).
    """
    rest = {name: v for name, v in params["blocks"].items() if name != "kernel"}
    dtype = cfg.dtype if dtype is None else jnp.dtype(dtype).name
    return {**params, "blocks": BlockKeys(block_keys(cfg, key), rest, cfg, dtype, tile)}
