"""Spectra of networks whose weights are drawn where they are used equal those of stored networks."""

import jax.numpy as jnp
import numpy as np
import pytest

from gradjax.config import NetConfig
from gradjax.empirical import jacobian_spectral_density, jacobian_spectrum

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


CFG = NetConfig(depth=4, width=16, activation="tanh", sigma_w2=1.5, sigma_b2=0.05, dtype="float32")


@pytest.mark.parametrize("layers", ["all", "end", [1, 3]])
@pytest.mark.parametrize("arch", ["mlp", "resmlp"])
def test_regenerated_spectra_are_bit_identical(layers, arch):
    cfg = CFG.with_(arch=arch)
    stored = jacobian_spectrum(cfg, 3, layers=layers)
    regen = jacobian_spectrum(cfg, 3, layers=layers, weights="regenerated")
    assert np.array_equal(stored, regen)  # −inf (unresolved) in the same places too


def test_tiled_spectra_equal_stored_to_rounding():
    stored = np.asarray(jacobian_spectrum(CFG, 2, layers="all", method="svd"))
    tiled = np.asarray(jacobian_spectrum(CFG, 2, layers="all", method="svd", weights="tiled", tile=4))
    # Only the summation order of each product can differ: relative error of a singular value
    # ≲ L · N · ε_32 ≈ 4 · 16 · 6e-8 ≈ 4e-6 → 2e-6 decades; 1e-5 decades leaves room.
    np.testing.assert_allclose(tiled, stored, rtol=0, atol=1e-5)


def test_regenerated_and_tiled_spectral_density():
    kw = dict(layers="end", k=8, probes=3)
    stored = jacobian_spectral_density(CFG, 2, **kw)
    regen = jacobian_spectral_density(CFG, 2, weights="regenerated", **kw)
    tiled = jacobian_spectral_density(CFG, 2, weights="tiled", tile=8, **kw)
    assert np.array_equal(stored.log10_sv, regen.log10_sv) and np.array_equal(stored.weights, regen.weights)
    # Lanczos amplifies rounding differences in the small Ritz values: compare the weighted mean of σ²
    # (a smooth functional, stable to ~1e-5 relative here) and the top node.
    mean = lambda q: jnp.sum(q.weights * 10.0 ** (2 * q.log10_sv), axis=-1)  # noqa: E731
    np.testing.assert_allclose(mean(tiled), mean(stored), rtol=1e-4)
    np.testing.assert_allclose(tiled.log10_sv.max(-1), stored.log10_sv.max(-1), atol=1e-4)


def test_weights_choices_are_checked():
    with pytest.raises(ValueError, match="weights must be one of"):
        jacobian_spectrum(CFG, 1, weights="lazy")
    with pytest.raises(ValueError, match="weights='regenerated' needs arch"):
        jacobian_spectrum(CFG.with_(arch="rnn"), 1, weights="regenerated")
    with pytest.raises(ValueError, match="weights='tiled' needs init in"):
        jacobian_spectrum(CFG.with_(init="orthogonal"), 1, weights="tiled")
    with pytest.raises(ValueError, match="tile must be a positive int dividing width=16"):
        jacobian_spectrum(CFG, 1, weights="tiled", tile=5)
