"""init-schemes measures every scheme as a draw family at a traced σ_w²; check it against the library.

References: the parameters must equal ``gradjax.nn.init_params`` of the scheme's own NetConfig (the
seed contract of the registry), and the measured numbers must equal the library engines called on the
scheme's own config: ``gradjax.empirical.gradient_profile`` (.hidden) and ``gradjax.empirical.jacobian_spectrum``
(layers="end", method="svd"), computed independently here for the same seeds.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradjax.empirical
from gradjax.experiments import init_schemes as m
from gradjax.experiments.registry import Cell
from gradjax.nn import seed_keys
from gradjax.nn.stack import init_params

WIDTH, DEPTH, SEEDS, BATCH = 8, 3, 2, 4


pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


def _cell(activation, scheme):
    return Cell("init-schemes", "tiny", {"activation": activation, "init": scheme, "depth": DEPTH},
                {"width": WIDTH, "batch": BATCH, "depths": [DEPTH], "schemes": list(m.SCHEMES), "train_steps": 0,
                 "learning_rate": 0.01},
                "float64")


@pytest.mark.parametrize("scheme", m.SCHEMES)
def test_family_params_equal_init_params_of_the_schemes_config(scheme):
    cfg = m.config_of(_cell("tanh", scheme))
    key = jax.random.key(1)
    got = init_params(m.family_config(cfg), key)
    want = init_params(cfg, key)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        # Parameters are drawn in float32 with the scale applied there, then cast (one seed, one network in
        # every dtype): the family's unit draw scaled in float64 and the scheme's draw scaled in float32
        # differ by the float32 rounding of one product, ≤ eps₃₂ relative.
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2 * np.finfo(np.float32).eps, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("activation,scheme", [("relu", "large"), ("tanh", "orthogonal")])
def test_measure_matches_the_library_engines(activation, scheme):
    cell = _cell(activation, scheme)
    cfg = m.config_of(cell)
    keys = seed_keys(SEEDS)
    out = m.measure(cell, keys)
    grad = gradjax.empirical.gradient_profile(cfg, seeds=keys, batch=BATCH).hidden
    np.testing.assert_allclose(np.asarray(out["grad"][1]), np.asarray(grad), rtol=1e-9, atol=1e-9)
    sv = gradjax.empirical.jacobian_spectrum(cfg, seeds=keys, layers="end", method="svd")[:, 0, :]
    # singular values below ε·σ_max (float64: 1e-16 relative; relu's exact zeros) are rounding noise:
    # compare those resolved, 12 decades or less below the largest
    got, want = np.asarray(out["log10_sv"][1]), np.asarray(sv)
    resolved = want >= want[:, :1] - 12
    np.testing.assert_allclose(got[resolved], want[resolved], rtol=1e-9, atol=1e-9)
    # histograms: every example × unit counted once per stage (relu: its exact-zero gradients left out)
    counts = out["act_hist"].values
    assert counts.shape[:3] == (SEEDS, 1, len(m.stage_layers(DEPTH)))
    np.testing.assert_array_equal(counts.sum(-1), m.HIST_EXAMPLES * WIDTH)
    g = out["grad_hist"].values.sum(-1)
    assert np.all(g <= m.HIST_EXAMPLES * WIDTH) and np.all(g > 0)
    if activation == "tanh":
        np.testing.assert_array_equal(g, m.HIST_EXAMPLES * WIDTH)


@pytest.mark.slow
def test_histograms_after_training_path():
    cell = _cell("relu", "he")
    cell = Cell(cell.experiment, cell.size, cell.coords, {**cell.params, "train_steps": 3}, "float64")
    out = m.measure(cell, seed_keys(SEEDS))
    assert list(out["act_hist"].phase.values) == ["init", "trained"]
    assert out["test_accuracy"][1].shape == (SEEDS,)
    assert np.all(out["act_hist"].sel(phase="trained").values.sum(-1) == m.HIST_EXAMPLES * WIDTH)
