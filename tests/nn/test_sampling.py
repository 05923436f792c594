"""The drawing primitive: the cipher against jax's, the distribution on 10⁷ draws, tiles, independence."""

import math

import jax
import jax.extend.random as jer
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import ndtr

from gradjax.nn import sampling
from gradjax.nn.init import IID, INITIALIZERS, iid_tile
from gradjax.nn.sampling import random_bits, standard_normal, standard_normal_tile, uniform, uniform_tile

N_DRAWS = 10_000_000


def test_threefry_matches_jax():
    # Reference: jax's own Threefry-2x32 (jax.extend.random.threefry_2x32 splits its count in two halves).
    k = jnp.asarray([0x13198A2E, 0x03707344], jnp.uint32)
    c = jnp.arange(4096, dtype=jnp.uint32) * jnp.uint32(2654435761)
    x0, x1 = sampling.threefry2x32(k[0], k[1], c[:2048], c[2048:])
    assert np.array_equal(np.concatenate([x0, x1]), np.asarray(jer.threefry_2x32(k, c)))


def test_bits_layout_is_counter_based():
    """Element e is word e mod 2 of the cipher on block ⌊e/2⌋ (what lets tiles be drawn alone)."""
    key = jax.random.key(7)
    k0, k1 = sampling.key_words(key)
    bits = random_bits(key, (5, 3))  # odd sizes: the last block's second word is unused
    e = jnp.arange(15, dtype=jnp.uint32)
    x0, x1 = sampling.threefry2x32(k0, k1, jnp.zeros_like(e), e >> 1)
    assert np.array_equal(np.asarray(bits).ravel(), np.where(np.asarray(e) % 2 == 0, x0, x1))


@pytest.fixture(scope="module")
def draws():
    return np.asarray(jax.jit(lambda k: standard_normal(k, (N_DRAWS,)))(jax.random.key(2024)), np.float64)


def test_normal_moments(draws):
    # N(0, 1): E z = 0, E z² = 1, E z³ = 0, E z⁴ = 3; standard errors on n draws: 1/√n, √(2/n), √(15/n), √(96/n).
    n = draws.size
    for k, (want, var) in enumerate([(0.0, 1.0), (1.0, 2.0), (0.0, 15.0), (3.0, 96.0)], start=1):
        assert abs(np.mean(draws**k) - want) < 5 * math.sqrt(var / n), k


def test_normal_ks_and_tails(draws):
    z = np.sort(draws)
    n = z.size
    cdf = np.asarray(ndtr(jnp.asarray(z)))
    i = np.arange(1, n + 1) / n
    d = max(np.max(i - cdf), np.max(cdf - (i - 1 / n)))
    assert d < 1.95 / math.sqrt(n)  # Kolmogorov's distribution: P(√n·D > 1.95) ≈ 0.001
    # Tails beyond 4σ: p = 2Φ(−4) = 6.334e-5 (closed form), binomial standard error √(n p).
    p4 = 2 * float(ndtr(-4.0))
    assert abs(np.sum(np.abs(draws) > 4) - n * p4) < 5 * math.sqrt(n * p4)
    assert np.all(np.isfinite(draws)) and np.max(np.abs(draws)) < 6.0


def test_uniform_moments():
    u = np.asarray(uniform(jax.random.key(11), (2_000_000,), jnp.float32, -1.0, 1.0), np.float64)
    n = u.size  # U(−1, 1): mean 0 (var 1/3), E u² = 1/3 (var 4/45)
    assert u.min() >= -1.0 and u.max() < 1.0
    assert abs(u.mean()) < 5 * math.sqrt(1 / 3 / n)
    assert abs(np.mean(u**2) - 1 / 3) < 5 * math.sqrt(4 / 45 / n)


def test_independence_across_layers_seeds_and_words():
    """Correlations between the streams of different layers and seeds, between the two words of one
    cipher block (neighbouring entries) and at lag 2, all within 5/√n of 0 (n = 5·10⁵ pairs)."""
    n = 500_000
    seeds = jax.vmap(jax.random.key)(jnp.arange(3))
    layer_keys = jax.vmap(lambda k: jax.vmap(lambda l: jax.random.fold_in(k, l))(jnp.arange(3)))(seeds)
    z = np.asarray(jax.vmap(jax.vmap(lambda k: standard_normal(k, (n,))))(layer_keys), np.float64)  # (seed, layer, n)
    streams = z.reshape(9, n)
    c = np.corrcoef(streams)
    assert np.max(np.abs(c - np.eye(9))) < 5 / math.sqrt(n)
    s = streams[0]
    assert abs(np.corrcoef(s[0::2], s[1::2])[0, 1]) < 5 / math.sqrt(n / 2)  # the two words of a block
    assert abs(np.corrcoef(s[:-2], s[2:])[0, 1]) < 5 / math.sqrt(n)
    # Squares too: a dependence that keeps the sign symmetry shows up in |z|.
    assert abs(np.corrcoef(s[0::2] ** 2, s[1::2] ** 2)[0, 1]) < 5 / math.sqrt(n / 2)


@pytest.mark.parametrize("shape", [(10, 8), (7, 5), (6, 7)])
def test_tiles_are_bit_identical_to_the_whole_draw(shape):
    key = jax.random.key(3)
    full_n, full_u = standard_normal(key, shape), uniform(key, shape)
    tiles = [(0, 3, 0, 4), (2, 3, 1, 4), (1, 4, 2, 3), (0, shape[0], 0, shape[1])]

    @jax.jit
    def draw_tiles(starts):  # traced starts, as inside a loop over tiles
        return [(standard_normal_tile(key, shape, (r0, nr), (c0, nc)), uniform_tile(key, shape, (r0, nr), (c0, nc)))
                for (r0, c0), (_, nr, _, nc) in zip(starts, tiles)]

    for (tn, tu), (r0, nr, c0, nc) in zip(draw_tiles([(r0, c0) for r0, _, c0, _ in tiles]), tiles):
        assert np.array_equal(tn, full_n[r0:r0 + nr, c0:c0 + nc])
        assert np.array_equal(tu, full_u[r0:r0 + nr, c0:c0 + nc])


def test_same_draw_in_float32_and_float64():
    key = jax.random.key(5)
    for draw in (standard_normal, uniform):
        a, b = draw(key, (64, 32), jnp.float32), draw(key, (64, 32), jnp.float64)
        assert b.dtype == jnp.float64 and np.array_equal(np.asarray(a, np.float64), np.asarray(b))
    for init in sorted(IID):  # the schemes too (their scale is applied in float32)
        a, b = INITIALIZERS[init](key, (16, 8), 1.3, jnp.float32), INITIALIZERS[init](key, (16, 8), 1.3, jnp.float64)
        assert np.array_equal(np.asarray(a, np.float64), np.asarray(b)), init


def test_too_large_a_draw_is_refused():
    with pytest.raises(ValueError, match="shape must have at most 2\\*\\*33 elements"):
        jax.eval_shape(lambda k: standard_normal(k, (2**17, 2**17)), jax.random.key(0))


@pytest.mark.parametrize("init", sorted(IID))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_initializer_tiles_match_whole_draws_eager_and_jitted(init, dtype):
    key, shape = jax.random.key(1), (8, 6)
    eager = INITIALIZERS[init](key, shape, 1.7, dtype)
    jitted = jax.jit(lambda: INITIALIZERS[init](key, shape, 1.7, dtype))()
    tile = jax.jit(lambda r, c: iid_tile(init, key, shape, (r, 3), (c, 4), 1.7, dtype))(2, 1)
    assert np.array_equal(eager, jitted)
    assert np.array_equal(tile, eager[2:5, 1:5])


def test_gaussian_transform_reaches_the_tails_exactly():
    """Every value the transform can give is √2·erf⁻¹(s·2⁻²⁴), s odd in (−2²⁴, 2²⁴): checked against
    scipy's float64 erf⁻¹ on the 2,048 outermost grid points of each tail (|z| ≥ 4.3) and on every
    4,099th point of the whole grid. Reference: scipy.special.erfinv in float64. The float32 erf⁻¹ is
    within 1e-5 relative (measured over all 2²⁴ points: 5.8e-6 at |z| > 1), the largest |z| is
    √2·erf⁻¹(1 − 2⁻²⁴) = 5.41998 on both sides (jax.random.normal's float32 draws reach 5.22 above, 5.42
    below), and the law is symmetric."""
    from scipy.special import erfinv

    s = np.arange(2**24, dtype=np.int64) * 2 + 1 - 2**24  # the 2²⁴ odd integers in (−2²⁴, 2²⁴)
    pick = np.concatenate([s[:2048], s[-2048:], s[::4099]])
    bits = ((pick + 2**24) << 7).astype(np.uint32)  # bits >> 7 | 1 gives back s + 2²⁴
    z = np.asarray(jax.jit(sampling.gaussian_from_bits)(jnp.asarray(bits)), np.float64)
    want = math.sqrt(2.0) * erfinv(pick / 2**24)
    np.testing.assert_allclose(z, want, rtol=1e-5, atol=1e-6)
    assert z.max() == pytest.approx(5.41998, abs=1e-5) and z.min() == -z.max()
