"""Measurements over a traced σ_w²: drawn once at unit scale, scaled inside, equal to the per-point loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradjax
from gradjax.config import NetConfig
from gradjax.empirical import _seeds

# float64 so that the vmapped and the looped programs agree to rounding (XLA may order a batched
# matrix product differently from the unbatched one: ~1e-16 relative per operation, depth 6)
pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


CFG = NetConfig(depth=6, width=16, activation="tanh", sigma_b2=0.05, dtype="float64")
SW2 = jnp.linspace(0.5, 4.0, 4)

MEASURES = {
    "gradient_profile": lambda c: gradjax.empirical.gradient_profile(c, seeds=2, batch=8).hidden,
    "q_profile": lambda c: gradjax.empirical.q_profile(c, seeds=2, batch=8),
    "c_profile": lambda c: gradjax.empirical.c_profile(c, seeds=2, pairs=8),
    # singular values as σ (linear): those below ε·σ_max are rounding noise in any order of operations
    "jacobian_spectrum": lambda c: 10.0 ** gradjax.empirical.jacobian_spectrum(c, seeds=2, method="svd"),
}


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_vmap_over_sigma_w2_equals_the_loop(name):
    f = MEASURES[name]
    out = jax.vmap(lambda s: f(CFG.with_(sigma_w2=s)))(SW2)
    before = _seeds._run_chunk._cache_size()
    loop = np.stack([f(CFG.with_(sigma_w2=float(s))) for s in SW2])
    assert _seeds._run_chunk._cache_size() - before <= 1  # one program for every σ_w²
    assert out.shape == loop.shape and out.shape[:2] == (4, 2)
    np.testing.assert_allclose(out, loop, rtol=1e-10, atol=1e-12 * float(np.max(np.abs(loop))))


def test_init_params_scales_one_unit_draw(key):
    """The parameters at σ_w² are the unit draw × √σ_w² (biases × √σ_b², prelu slope × slope)."""
    cfg = NetConfig(depth=3, width=8, activation="prelu", sigma_w2=2.5, sigma_b2=0.4, dtype="float64")
    unit = gradjax.nn.init_params(gradjax.nn.unit_config(cfg), key)
    p = gradjax.nn.init_params(cfg, key)
    np.testing.assert_allclose(p["blocks"]["kernel"], unit["blocks"]["kernel"] * np.sqrt(2.5), rtol=1e-15)
    np.testing.assert_allclose(p["blocks"]["bias"], unit["blocks"]["bias"] * np.sqrt(0.4), rtol=1e-15)
    np.testing.assert_array_equal(p["blocks"]["slope"], 0.25)
    # the unit draw has unit variance: empirical Var W·fan_in over 3·8·8 entries, 5 standard errors
    assert abs(float(jnp.var(unit["blocks"]["kernel"])) * 8 - 1) < 5 * np.sqrt(2 / 192)
    vm = jax.vmap(lambda s: gradjax.nn.init_params(cfg.with_(sigma_w2=s), key)["blocks"]["kernel"])(SW2)
    np.testing.assert_allclose(vm[2], unit["blocks"]["kernel"] * np.sqrt(float(SW2[2])), rtol=1e-15)
