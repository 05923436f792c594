"""Theory over a traced σ_w² (and α, slope): one vmapped call equals the per-point loop, compiled once."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradjax
from gradjax.config import NetConfig

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


CFG = NetConfig(depth=12, width=64, sigma_b2=0.05)


@pytest.mark.parametrize("name", ["gradient_profile", "q_profile", "c_profile"])
def test_vmap_over_sigma_w2_equals_the_loop(name):
    f = getattr(gradjax.theory, name)
    # 16 points across the ordered and chaotic phases (0.5 … 4.0): the claim (vmap = loop, one compilation for
    # every concrete σ_w²) does not depend on their number; 64 points spent 7 s running the loop's calls.
    sw2 = jnp.linspace(0.5, 4.0, 16)
    out = jax.vmap(lambda s: f(CFG.with_(sigma_w2=s)))(sw2)
    assert out.shape == (16, CFG.depth)
    before = f._cache_size()
    loop = np.stack([f(CFG.with_(sigma_w2=float(s))) for s in sw2])
    assert f._cache_size() - before <= 1  # the 16 concrete σ_w² share one compilation
    # float64 on both sides; the vmapped program reassociates nothing but the batch: rounding only
    np.testing.assert_allclose(out, loop, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("cfg, field, values", [
    (NetConfig(depth=8, width=64, arch="resmlp", activation="relu", sigma_w2=2.0), "residual_scale", [0.1, 0.5, 1.0]),
    (NetConfig(depth=8, width=64, activation="leaky_relu", norm="layernorm"), "leaky_slope", [0.0, 0.2, -0.5]),
    (NetConfig(depth=8, width=64, activation="tanh", norm="batchnorm"), "sigma_b2", [0.0, 0.3, 1.0]),
])
def test_vmap_over_other_numbers_equals_the_loop(cfg, field, values):
    f = gradjax.theory.gradient_profile
    out = jax.vmap(lambda v: f(cfg.with_(**{field: v})))(jnp.asarray(values))
    loop = np.stack([f(cfg.with_(**{field: v})) for v in values])
    np.testing.assert_allclose(out, loop, rtol=1e-12, atol=1e-13)


def test_jacobian_density_over_sigma_w2_equals_the_loop():
    cfg = NetConfig(depth=4, width=64, activation="tanh", sigma_b2=0.05)
    sw2 = jnp.linspace(0.5, 4.0, 3)
    spec = lambda c: gradjax.theory.jacobian_density(c, points=64)  # noqa: E731
    out = jax.vmap(lambda s: spec(cfg.with_(sigma_w2=s)))(sw2)
    loop = [spec(cfg.with_(sigma_w2=float(s))) for s in sw2]
    for field in out._fields:
        want = np.stack([getattr(sp, field) for sp in loop])
        # Newton continuation in the complex plane: identical iterations, rounding of the batch only
        np.testing.assert_allclose(getattr(out, field), want, rtol=1e-9, atol=1e-12, err_msg=field)


def test_double_vmap_phase_grid():
    """The phase-diagram form: a (σ_w², σ_b²) grid of profiles in one call."""
    sw2, sb2 = jnp.linspace(0.5, 4.0, 5), jnp.linspace(0.0, 0.5, 3)
    grid = jax.vmap(lambda s: jax.vmap(lambda b: gradjax.theory.gradient_profile(
        CFG.with_(sigma_w2=s, sigma_b2=b)))(sb2))(sw2)
    assert grid.shape == (5, 3, CFG.depth)
    np.testing.assert_allclose(grid[3, 2], gradjax.theory.gradient_profile(
        CFG.with_(sigma_w2=float(sw2[3]), sigma_b2=float(sb2[2]))), rtol=1e-12, atol=1e-13)
