import dataclasses
import math

import jax
import jax.numpy as jnp
import pytest

from gradjax.config import NetConfig


def test_defaults_match_spec():
    c = NetConfig(depth=20, width=256)
    assert (c.arch, c.activation, c.init, c.sigma_w2, c.sigma_b2, c.norm, c.dtype) == (
        "mlp", "tanh", "gaussian", 1.0, 0.0, "none", "float32")
    assert c.in_dim == c.out_dim == 256


def test_hashable_and_static_under_jit():
    c = NetConfig(depth=3, width=4)
    assert hash(c) == hash(NetConfig(depth=3, width=4))
    traces = []

    @jax.jit
    def f(x, cfg=c):
        return x

    g = jax.jit(lambda cfg, x: (traces.append(1), x * cfg.depth)[1], static_argnums=0)
    g(c, 1.0)
    g(NetConfig(depth=3, width=4), 2.0)  # equal config: no retrace
    assert len(traces) == 1


def test_effective_sigma_w2_of_fixed_schemes():
    # closed forms: He Var = 2/fan_in, LeCun 1/fan_in, Xavier 2/(fan_in+fan_out) (square blocks → 1)
    assert NetConfig(depth=2, width=8, init="he_normal").sigma_w2 == 2.0
    assert NetConfig(depth=2, width=8, init="lecun_normal").sigma_w2 == 1.0
    assert NetConfig(depth=2, width=8, init="xavier_uniform").sigma_w2 == 1.0


def test_with_revalidates_and_reresolves():
    c = NetConfig(depth=4, width=8, sigma_w2=1.7)
    assert c.with_(init="orthogonal").sigma_w2 == 1.7
    assert c.with_(init="he_normal").sigma_w2 == 2.0
    assert c.with_(arch="resmlp").residual_scale == 1.0
    assert c.with_(arch="resmlp", residual_scale="1/sqrt(L)").alpha == pytest.approx(0.5)
    assert c.with_(activation="prelu").leaky_slope == 0.25
    with pytest.raises(ValueError, match="depth"):
        c.with_(depth=-1)
    with pytest.raises(ValueError, match="depth"):
        dataclasses.replace(c, depth=0)
    with pytest.raises(TypeError, match="no field"):
        c.with_(dept=3)


BAD = [
    (dict(depth=0, width=8), ValueError, "depth"),
    (dict(depth=-3, width=8), ValueError, "depth"),
    (dict(depth=2.5, width=8), TypeError, "depth"),
    (dict(depth=True, width=8), TypeError, "depth"),
    (dict(depth=4, width=0), ValueError, "width"),
    (dict(depth=4, width="8"), TypeError, "width"),
    (dict(depth=4, width=8, in_dim=0), ValueError, "in_dim"),
    (dict(depth=4, width=8, out_dim=-1), ValueError, "out_dim"),
    (dict(depth=4, width=8, arch="convnet"), ValueError, "arch"),
    (dict(depth=4, width=8, arch="cnn"), ValueError, "spatial"),
    (dict(depth=4, width=8, arch="cnn", spatial=(4, 0)), ValueError, "spatial"),
    (dict(depth=4, width=8, arch="cnn", spatial=(4, 4, 4)), ValueError, "spatial"),
    (dict(depth=4, width=8, arch="cnn", spatial=(8,), kernel_size=4), ValueError, "kernel_size"),
    (dict(depth=4, width=8, arch="cnn", spatial=(2, 8), kernel_size=3), ValueError, "kernel_size"),
    (dict(depth=4, width=8, arch="cnn", spatial=(8,), init="he_normal"), ValueError, "init"),
    (dict(depth=4, width=8, arch="cnn", spatial=(8,), norm="layernorm"), ValueError, "norm"),
    (dict(depth=4, width=8, arch="cnn", spatial=(8,), residual_scale=0.5), ValueError, "residual_scale"),
    (dict(depth=4, width=8, init="delta_orthogonal"), ValueError, "init"),
    (dict(depth=4, width=8, spatial=(8,)), ValueError, "spatial"),
    (dict(depth=4, width=8, kernel_size=3), ValueError, "kernel_size"),
    (dict(depth=4, width=8, tokens=4), ValueError, "tokens"),
    (dict(depth=4, width=8, arch="resmlp", mlp=True), ValueError, "mlp"),
    (dict(depth=4, width=8, arch="cnn", spatial=(8,), heads=2), ValueError, "heads"),
    (dict(depth=4, width=8, arch="transformer"), TypeError, "tokens"),
    (dict(depth=4, width=8, arch="transformer", tokens=0), ValueError, "tokens"),
    (dict(depth=4, width=8, arch="transformer", tokens=4, heads=3), ValueError, "heads"),
    (dict(depth=4, width=8, arch="transformer", tokens=4, mlp="yes"), TypeError, "mlp"),
    (dict(depth=4, width=8, arch="transformer", tokens=4, norm="batchnorm"), ValueError, "norm"),
    (dict(depth=4, width=8, arch="transformer", tokens=4, residual_scale="off"), ValueError, "residual_scale"),
    (dict(depth=4, width=8, arch="resmlp", residual_scale="none"), ValueError, "residual_scale"),
    (dict(depth=4, width=8, arch="transformer", tokens=4, spatial=(4,)), ValueError, "spatial"),
    (dict(depth=4, width=8, activation="tahn"), ValueError, "activation"),
    (dict(depth=4, width=8, init="kaiming"), ValueError, "init"),
    (dict(depth=4, width=8, sigma_w2=float("nan")), ValueError, "sigma_w2"),
    (dict(depth=4, width=8, sigma_w2=-1.0), ValueError, "sigma_w2"),
    (dict(depth=4, width=8, sigma_w2=0.0), ValueError, "sigma_w2"),
    (dict(depth=4, width=8, sigma_b2=float("inf")), ValueError, "sigma_b2"),
    (dict(depth=4, width=8, sigma_b2=-0.1), ValueError, "sigma_b2"),
    (dict(depth=4, width=8, init="he_normal", sigma_w2=3.0), ValueError, "sigma_w2"),
    (dict(depth=4, width=8, norm="groupnorm"), ValueError, "norm"),
    (dict(depth=4, width=8, norm_position="middle"), ValueError, "norm_position"),
    (dict(depth=4, width=8, residual_scale=0.5), ValueError, "residual_scale"),
    (dict(depth=4, width=8, arch="resmlp", residual_scale=-1.0), ValueError, "residual_scale"),
    (dict(depth=4, width=8, arch="resmlp", residual_scale="1/L"), ValueError, "residual_scale"),
    (dict(depth=4, width=8, leaky_slope=0.1), ValueError, "leaky_slope"),
    (dict(depth=4, width=8, activation="leaky_relu", leaky_slope=float("nan")), ValueError, "leaky_slope"),
    (dict(depth=4, width=8, arch="rnn", norm="batchnorm"), ValueError, "norm"),
    (dict(depth=4, width=8, dtype="float16"), ValueError, "dtype"),
]


@pytest.mark.parametrize("kwargs,exc,field", BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_configs_name_the_field(kwargs, exc, field):
    with pytest.raises(exc) as info:
        NetConfig(**kwargs)
    msg = str(info.value)
    assert field in msg
    bad_value = kwargs.get(field)
    if isinstance(bad_value, (str, int)) and not isinstance(bad_value, bool):
        assert repr(bad_value) in msg or str(bad_value) in msg


def test_unknown_name_suggests_closest():
    with pytest.raises(ValueError, match="did you mean 'tanh'"):
        NetConfig(depth=2, width=2, activation="tahn")


def test_float64_needs_x64():
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match="jax_enable_x64"):
            NetConfig(depth=2, width=2, dtype="float64")
    finally:
        jax.config.update("jax_enable_x64", True)
    assert NetConfig(depth=2, width=2, dtype="float64").dtype == "float64"
    assert math.isclose(NetConfig(depth=9, width=2, arch="resmlp", residual_scale="1/sqrt(L)").alpha, 1 / 3)


def test_cnn_and_transformer_fields_resolve_and_carry_over():
    c = NetConfig(depth=3, width=8, arch="cnn", spatial=[6, 4], init="delta_orthogonal", sigma_w2=1.4)
    assert (c.spatial, c.kernel_size, c.state_size, c.sigma_w2) == ((6, 4), 3, 6 * 4 * 8, 1.4)
    assert c.with_(depth=7).sigma_w2 == 1.4  # a scaled scheme keeps its σ_w²
    assert c.with_(arch="mlp", spatial=None, init="gaussian").kernel_size is None
    t = NetConfig(depth=16, width=8, arch="transformer", tokens=5)
    assert (t.heads, t.mlp, t.residual_scale, t.alpha, t.skip, t.state_size) == (1, True, 1.0, 1.0, True, 40)
    assert t.with_(residual_scale="1/sqrt(L)").alpha == pytest.approx(0.25)
    assert not t.with_(residual_scale="none").skip
    assert NetConfig(depth=2, width=8, arch="resmlp").skip and not NetConfig(depth=2, width=8).skip


# ---- numbers as pytree leaves, structure static ----------------------------------------------------

def test_numbers_are_the_leaves_and_structure_the_treedef():
    c = NetConfig(depth=4, width=8, arch="resmlp", activation="prelu", sigma_w2=1.5, sigma_b2=0.2,
                  residual_scale=0.3, leaky_slope=0.1)
    leaves, treedef = jax.tree.flatten(c)
    assert leaves == [1.5, 0.2, 0.3, 0.1]  # sigma_w2, sigma_b2, residual_scale, leaky_slope
    assert jax.tree.unflatten(treedef, leaves) == c
    # the rule "1/sqrt(L)" is structure: α follows from the static depth
    r = NetConfig(depth=16, width=8, arch="resmlp", residual_scale="1/sqrt(L)")
    assert jax.tree.leaves(r) == [1.0, 0.0]
    assert jax.tree.unflatten(jax.tree.structure(r), [2.0, 0.5]).alpha == 0.25
    # structure differs → treedef differs; numbers differ → treedef equal
    assert jax.tree.structure(c) == jax.tree.structure(c.with_(sigma_w2=3.0, residual_scale=2.0))
    assert jax.tree.structure(c) != jax.tree.structure(c.with_(depth=5))


def test_jit_with_config_argument_compiles_once_per_structure():
    traces = []
    f = jax.jit(lambda cfg: (traces.append(1), cfg.sigma_w2 * cfg.depth + cfg.sigma_b2)[1])
    for s in (0.5, 1.0, 2.5):
        assert float(f(NetConfig(depth=3, width=4, sigma_w2=s, sigma_b2=0.1))) == pytest.approx(3 * s + 0.1)
    assert len(traces) == 1
    f(NetConfig(depth=4, width=4))
    assert len(traces) == 2


def test_traced_numbers_pass_validation_concrete_ones_are_checked():
    c = NetConfig(depth=3, width=4, activation="leaky_relu", arch="resmlp")
    out = jax.vmap(lambda s, a, k: c.with_(sigma_w2=s, residual_scale=a, leaky_slope=k).alpha)(
        jnp.array([1.0, 2.0]), jnp.array([0.5, 0.25]), jnp.array([0.1, 0.2]))
    assert out.tolist() == [0.5, 0.25]
    # concrete arrays are numbers like any other: checked, stored as floats
    assert c.with_(sigma_w2=jnp.asarray(2.0)).sigma_w2 == 2.0
    with pytest.raises(ValueError, match="sigma_w2 must be > 0.0, got -1.0"):
        c.with_(sigma_w2=jnp.asarray(-1.0))
    # what a tracer can say is checked: a scalar, real
    with pytest.raises(TypeError, match="sigma_w2 must be a real scalar"):
        jax.vmap(lambda s: c.with_(sigma_w2=s))(jnp.ones((2, 3)))
    with pytest.raises(TypeError, match="sigma_b2 must be a real scalar"):
        c.with_(sigma_b2=jnp.ones(3))
    # a fixed-variance scheme takes no σ_w², traced or not
    he = NetConfig(depth=3, width=4, init="he_normal")
    with pytest.raises(ValueError, match="sigma_w2 does not apply to init='he_normal'"):
        jax.vmap(lambda s: he.with_(sigma_w2=s))(jnp.array([2.0, 2.0]))


def test_pre_and_post_norm():
    assert NetConfig(depth=2, width=4, norm="layernorm").pre_norm
    assert NetConfig(depth=2, width=4, norm="layernorm", norm_position="post").post_norm
    none = NetConfig(depth=2, width=4, norm_position="post")
    assert not none.pre_norm and not none.post_norm
