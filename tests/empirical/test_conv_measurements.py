"""Measurements on cnn and transformer stacks: closed forms the walker must reproduce."""

import math

import numpy as np
import pytest

from gradjax.config import NetConfig
from gradjax.empirical import jacobian_spectrum


@pytest.mark.parametrize("dtype, sigma_w2, depth", [("float64", 1.5, 5), ("float32", 3.0, 60)])
def test_linear_delta_orthogonal_cnn_singular_values_are_sigma_w_to_the_L_minus_l(dtype, sigma_w2, depth):
    # Xiao et al. 2018 (arXiv:1806.05393), Sec. 4: a delta-orthogonal kernel acts as σ_w·Q_l at every
    # position (circular padding), so ∂h_L/∂h_l = I_{HW} ⊗ σ_w^(L−l) Q_{l+1}…Q_L and all H·W·C singular
    # values of the whole feature map's Jacobian equal σ_w^(L−l), for every layer l, on a 2-D map.
    cfg = NetConfig(depth=depth, width=6, arch="cnn", spatial=(4, 3), activation="linear",
                    init="delta_orthogonal", sigma_w2=sigma_w2, dtype=dtype)
    d = cfg.state_size  # 72 = 4·3·6
    want = (depth - np.arange(depth))[:, None] * 0.5 * math.log10(sigma_w2) * np.ones((1, d))
    got = np.asarray(jacobian_spectrum(cfg, seeds=2, method="svd"), np.float64)
    assert got.shape == (2, depth, d)
    # float32: each block rounds the unit cotangent and its log-scale at ~1e-7 relative (as for the
    # orthogonal MLP in test_jacobians.py): ≲ 2e-6 per block in log10 units.
    tol = 1e-12 if dtype == "float64" else depth * 2e-6
    np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), rtol=0, atol=tol)
