"""The one drawing primitive of gradjax: counter-based uniform bits and unit Gaussians, any tile.

Every random parameter of a network (``gradjax.nn.init``, the blocks, the input layer and the
readout) is drawn here, at unit scale; the caller scales. Element ``e`` (flat row-major index) of a
draw with key ``k`` is word ``e mod 2`` of the Threefry-2x32 block cipher (20 rounds, the cipher of
``jax.random``) applied to the counter ``(0, ⌊e/2⌋)`` under the two key words of ``k``. So

* any element, row or tile of a matrix can be drawn alone, bit-identical to the same entries of the
  whole draw (:func:`standard_normal_tile`): a network's weights can be regenerated where they are
  used instead of stored;
* one cipher call gives two draws (``jax.random.bits`` with partitionable Threefry spends one call
  per 32-bit draw), and the cipher is written with plain ``uint32`` array operations that XLA fuses
  into one loop with the transform: 2.5–3× faster than ``jax.random.normal`` on a CPU (measured in
  benchmarks/RESULTS.md).

Gaussians are exact inverse-CDF draws in float32: 25 bits give an odd integer s in (−2²⁴, 2²⁴),
u = s·2⁻²⁴ ∈ (−1, 1) exactly (symmetric, never ±1), z = √2·erf⁻¹(u) (tails to ≈ 5.4σ, like
``jax.random.normal``'s float32 draws). Draws are made in float32 whatever the requested dtype and
then cast, so a seed gives the same network in float32 and float64 (to float32 precision).

Reproducible bit-for-bit for a given key on a given backend and jax version.

References:
  Salmon, Moraes, Dror & Shaw 2011, "Parallel random numbers: as easy as 1, 2, 3", SC'11
  (Threefry; counter-based generation). Giles 2010, "Approximating the erfinv function", GPU
  Computing Gems (the float32 erf⁻¹ XLA evaluates).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

# Rotation constants of Threefry-2x32 (Salmon et al. 2011, Table 4), in two alternating groups of 4 rounds.
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
# Key-schedule parity constant of Threefish/Threefry (Salmon et al. 2011; the value jax.random uses).
_KS_PARITY = 0x1BD11BDA
_ROUNDS = 20  # the number of rounds of jax.random's Threefry-2x32: its statistical safety margin
# A draw holds at most 2³² cipher blocks (32-bit block counter), i.e. 2³³ elements.
MAX_ELEMENTS = 2**33
# Bits of one uniform: the largest integer range float32 holds exactly (24-bit significand).
_UNIFORM_BITS = 24


def threefry2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 with 20 rounds: the counter block ``(x0, x1)`` (uint32, any shape) under key ``(k0, k1)``.

    Bit-identical to ``jax.extend.random.threefry_2x32`` (tested), written as plain array operations
    so that XLA fuses it with whatever consumes the bits.
    """
    k2 = k0 ^ k1 ^ jnp.uint32(_KS_PARITY)
    ks = (k0, k1, k2)
    x0, x1 = x0 + k0, x1 + k1
    for i in range(_ROUNDS // 4):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = (x1 << jnp.uint32(r)) | (x1 >> jnp.uint32(32 - r))
            x1 = x1 ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def key_words(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The two uint32 cipher key words of a typed (or raw) ``jax.random`` key, any implementation."""
    w = jax.random.bits(key, (2,), jnp.uint32)
    return w[0], w[1]


def _check_size(shape: tuple[int, ...]) -> int:
    n = math.prod(shape)
    if n > MAX_ELEMENTS:
        raise ValueError(f"shape must have at most 2**33 elements (a 32-bit block counter), got {shape} ({n} elements)")
    return n


def _interleave(x0: jax.Array, x1: jax.Array) -> jax.Array:
    """Words of blocks (…, m) → (…, 2m): block j gives elements 2j and 2j + 1."""
    return jnp.stack([x0, x1], axis=-1).reshape(x0.shape[:-1] + (2 * x0.shape[-1],))


def random_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint32 bits of ``shape``: element e is word e mod 2 of the cipher on block ⌊e/2⌋."""
    shape = tuple(int(d) for d in shape)
    _check_size(shape)
    return _random_bits(key, shape)


# One compiled program per (shape, key type): called outside jit (a network built eagerly, as
# ``Network(cfg, rngs=...)`` is), the cipher's ~150 integer operations would otherwise be dispatched,
# and compiled per shape, one by one. Integer arithmetic only, so jitted or not the bits are the same.
@functools.partial(jax.jit, static_argnums=1)
def _random_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    n = math.prod(shape)
    k0, k1 = key_words(key)
    blocks = jax.lax.iota(jnp.uint32, (n + 1) // 2)
    x0, x1 = threefry2x32(k0, k1, jnp.zeros_like(blocks), blocks)
    return _interleave(x0, x1)[:n].reshape(shape)


def random_bits_tile(key: jax.Array, shape: tuple[int, int], rows: tuple, cols: tuple) -> jax.Array:
    """The (R, C) tile ``random_bits(key, shape)[r0:r0+R, c0:c0+C]`` of a matrix, drawn alone.

    Args:
      key: the draw's key, or its two cipher key words (:func:`key_words`) as a (2,) uint32 array.
      shape: (n_rows, n_cols) of the whole matrix.
      rows, cols: ``(start, size)``; ``start`` may be traced, ``size`` is static. The tile must lie
        inside the matrix (not checked for a traced start).
    """
    (r0, nr), (c0, nc) = rows, cols
    n_cols = int(shape[1])
    _check_size(tuple(shape))
    k0, k1 = (key[0], key[1]) if key.dtype == jnp.uint32 and key.shape == (2,) else key_words(key)
    r = jnp.asarray(r0, jnp.uint32) + jax.lax.iota(jnp.uint32, nr)[:, None]
    c0 = jnp.asarray(c0, jnp.uint32)
    if n_cols % 2 == 0 and nc % 2 == 0:  # whole blocks: each cipher call fills two entries of the tile
        blocks = r * jnp.uint32(n_cols // 2) + (c0 // 2 + jax.lax.iota(jnp.uint32, nc // 2 + 1))[None, :]
        words = _interleave(*threefry2x32(k0, k1, jnp.zeros_like(blocks), blocks))
        # An odd column start shifts the tile by one word (a traced start: select, static shapes).
        return jnp.where(c0 % 2 == 0, words[:, :nc], words[:, 1:nc + 1])
    if math.prod(shape) > 2**32:
        raise ValueError(f"a tile of a matrix with an odd number of columns needs at most 2**32 elements, got shape {shape}")
    e = r * jnp.uint32(n_cols) + c0 + jax.lax.iota(jnp.uint32, nc)[None, :]  # odd widths: element by element
    x0, x1 = threefry2x32(k0, k1, jnp.zeros_like(e), e >> 1)
    return jnp.where(e % 2 == 0, x0, x1)


def unit_interval(bits: jax.Array) -> jax.Array:
    """uint32 → float32 uniform on [0, 1) with 24 bits: (bits >> 8) · 2⁻²⁴ (exact)."""
    return (bits >> jnp.uint32(32 - _UNIFORM_BITS)).astype(jnp.float32) * jnp.float32(2.0**-_UNIFORM_BITS)


def gaussian_from_bits(bits: jax.Array, dtype=jnp.float32, scale=1.0) -> jax.Array:
    """uint32 → ``scale`` · N(0, 1) by the inverse CDF: z = √2·erf⁻¹(s·2⁻²⁴), s odd in (−2²⁴, 2²⁴).

    s = (bits >> 7 | 1) − 2²⁴ takes the 2²⁴ odd values in that range with equal probability, so u =
    s·2⁻²⁴ is exact in float32, symmetric about 0 and never ±1. Everything runs in float32 (so a
    seed draws the same numbers for every ``dtype``), erf⁻¹(u) multiplied once by √2·``scale`` (one
    rounding whatever the context: a compiler folding constant factors cannot make a jitted draw
    differ from an eager one), then cast to ``dtype``.
    """
    s = ((bits >> jnp.uint32(31 - _UNIFORM_BITS)) | jnp.uint32(1)).astype(jnp.int32) - jnp.int32(2**_UNIFORM_BITS)
    u = s.astype(jnp.float32) * jnp.float32(2.0**-_UNIFORM_BITS)
    factor = jnp.float32(math.sqrt(2.0)) * jnp.asarray(scale).astype(jnp.float32)
    return (jax.lax.erf_inv(u) * factor).astype(dtype)


def standard_normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32, scale=1.0) -> jax.Array:
    """i.i.d. N(0, scale²) entries of ``shape``, drawn in float32 and cast to ``dtype`` (see :func:`gaussian_from_bits`)."""
    return gaussian_from_bits(random_bits(key, shape), dtype, scale)


def standard_normal_tile(key: jax.Array, shape: tuple[int, int], rows: tuple, cols: tuple, dtype=jnp.float32,
                         scale=1.0) -> jax.Array:
    """``standard_normal(key, shape, dtype, scale)[r0:r0+R, c0:c0+C]`` computed alone (bit-identical);
    see :func:`random_bits_tile`."""
    return gaussian_from_bits(random_bits_tile(key, shape, rows, cols), dtype, scale)


def uniform(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32, minval: float = 0.0, maxval: float = 1.0,
            scale=1.0) -> jax.Array:
    """i.i.d. ``scale`` · U[minval, maxval) entries (24-bit grid), computed in float32 and cast to ``dtype``."""
    return _uniform_from_bits(random_bits(key, shape), dtype, minval, maxval, scale)


def uniform_tile(key: jax.Array, shape: tuple[int, int], rows: tuple, cols: tuple, dtype=jnp.float32,
                 minval: float = 0.0, maxval: float = 1.0, scale=1.0) -> jax.Array:
    """``uniform(key, shape, …)[r0:r0+R, c0:c0+C]`` computed alone (bit-identical)."""
    return _uniform_from_bits(random_bits_tile(key, shape, rows, cols), dtype, minval, maxval, scale)


def _uniform_from_bits(bits, dtype, minval, maxval, scale):
    u = jnp.float32(minval) + jnp.float32(maxval - minval) * unit_interval(bits)
    return (u * jnp.asarray(scale).astype(jnp.float32)).astype(dtype)
