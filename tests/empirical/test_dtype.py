"""One seed, one network and one set of inputs in every dtype.

Decision (documented in ``gradjax.empirical._seeds.normal_draw``): random data is drawn in float32 and
cast, so the float64 inputs, targets and probes are the float32 ones cast exactly — bitwise equal
after casting the float32 run's values to float64. Results computed in float64 then agree with the
float32 run to float32's precision (the reference here: the float64 run itself).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from gradjax import NetConfig
from gradjax.empirical import jacobian_spectrum
from gradjax.empirical._seeds import default_inputs
from gradjax.empirical.activations import correlated_inputs
from gradjax.empirical.gradients import default_targets
from gradjax.empirical.lanczos import orthogonal_probes, unit_probe

EPS32 = float(np.finfo(np.float32).eps)


def _pair(**kw):
    c32 = NetConfig(depth=4, width=8, activation="tanh", sigma_b2=0.05, **kw)
    return c32, c32.with_(dtype="float64")


def _bitwise_after_cast(a32, a64):
    assert a32.dtype == jnp.float32 and a64.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(a32).astype(np.float64), np.asarray(a64))


def test_inputs_targets_and_probes_are_the_same_numbers_in_every_dtype():
    key = jax.random.key(3)
    for kw in ({}, {"arch": "rnn"}):
        c32, c64 = _pair(**kw)
        _bitwise_after_cast(default_inputs(c32, key, 5), default_inputs(c64, key, 5))
    c32, c64 = _pair()
    _bitwise_after_cast(default_targets(c32, key, 5, "projection"), default_targets(c64, key, 5, "projection"))
    for a, b in zip(correlated_inputs(c32, key, 4, 0.3), correlated_inputs(c64, key, 4, 0.3)):
        # x2 = c0·x1 + √(1−c0²)·z is computed in each dtype from the same draws: float32 rounding apart
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b), rtol=4 * EPS32, atol=4 * EPS32)
    # a normalized draw: the same direction to float32 rounding (norm of 8 terms: ~8 eps)
    np.testing.assert_allclose(np.asarray(unit_probe(key, 8, jnp.float32), np.float64),
                               np.asarray(unit_probe(key, 8, jnp.float64)), rtol=0, atol=16 * EPS32)
    # QR of the same Gaussian in each dtype: Householder QR's backward error ~ n·eps (Golub & Van Loan §5.2)
    np.testing.assert_allclose(np.asarray(orthogonal_probes(key, 6, 8, jnp.float32), np.float64),
                               np.asarray(orthogonal_probes(key, 6, 8, jnp.float64)), rtol=0, atol=64 * 8 * EPS32)


def test_jacobian_spectrum_in_float64_is_the_float32_run_to_float32_precision():
    c32, _ = _pair()
    got32 = np.asarray(jacobian_spectrum(c32, seeds=2, method="svd"), np.float64)
    got64 = np.asarray(jacobian_spectrum(c32, seeds=2, method="svd", dtype="float64"))
    # Same parameters (drawn once in cfg.dtype, cast) and now the same inputs. Forward and backward
    # products of L blocks of width N in float32 give singular values with relative error ≲ L·N·eps·κ
    # (κ = σ_max/σ: Weyl's bound on a perturbation of relative size L·N·eps of the whole matrix); on
    # values within 10³ of the largest, that is ≤ L·N·eps·10³ relative, /ln 10 in log10 units.
    L, N = c32.depth, c32.width
    big = got64 >= got64[..., :1] - 3.0
    tol = L * N * EPS32 * 1e3 / math.log(10)
    err = np.max(np.abs(got32 - got64)[big])
    assert err <= tol, (err, tol)
    # before drawing inputs in one dtype, the two runs saw different inputs: the difference was O(1)
    assert err < 1e-3
