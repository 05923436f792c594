"""TrainConfig validation and the optax chain: clipping, masked decoupled decay, penalties, schedules."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradjax.config import NetConfig
from gradjax.nn.stack import init_params
from gradjax.train import (
    TrainConfig,
    layer_norms,
    make_clipper,
    make_optimizer,
    make_schedule,
    penalty,
    weight_mask,
)

# A network with every kind of leaf: stacked kernels/biases, prelu slopes, layernorm scale and bias.
CFG = NetConfig(depth=4, width=6, in_dim=3, out_dim=2, activation="prelu", norm="layernorm", sigma_b2=0.1)
RNN = NetConfig(depth=5, width=6, in_dim=2, out_dim=1, arch="rnn", norm="layernorm")


def _params(cfg=CFG, seed=0):
    return init_params(cfg, jax.random.key(seed))


def _random_like(tree, seed, scale=1.0):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten([scale * jax.random.normal(k, jnp.shape(x), jnp.asarray(x).dtype) for k, x in zip(keys, leaves)])


def _layers_by_hand(tree):
    """Every layer as a list of numpy leaves, sliced by hand: embed, block 1..L, readout (rnn: one block)."""
    out = []
    for name, group in tree.items():
        leaves = {k: np.asarray(v) for k, v in group.items()}
        if np.ndim(leaves["kernel"]) == 3:
            out += [[v[l] for v in leaves.values()] for l in range(leaves["kernel"].shape[0])]
        else:
            out.append(list(leaves.values()))
    return out


def _norm(leaves):
    return math.sqrt(sum(float(np.sum(np.square(v.astype(np.float64)))) for v in leaves))


# ---- TrainConfig ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("optimizer", "adm"),
        ("learning_rate", -1e-3),
        ("learning_rate", 0.0),
        ("steps", 0),
        ("batch_size", 0),
        ("clip", "norm"),
        ("clip_value", -1.0),
        ("weight_decay", -0.1),
        ("l2", -1.0),
        ("l1", -1.0),
        ("schedule", "cosine"),
        ("warmup_steps", -1),
        ("log_every", 0),
        ("learning_rate", float("nan")),
    ],
)
def test_bad_values_raise_naming_the_field(field, value):
    kw = {"clip": "global_norm", "clip_value": 1.0} if field == "clip_value" else {}
    kw[field] = value
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kw)


def test_inconsistent_settings_raise():
    with pytest.raises(ValueError, match="clip_value"):
        TrainConfig(clip="global_norm")  # a clip needs a threshold
    with pytest.raises(ValueError, match="clip_value"):
        TrainConfig(clip_value=1.0)  # a threshold without a clip would be ignored
    with pytest.raises(ValueError, match="momentum"):
        TrainConfig(optimizer="adam", momentum=0.9)
    with pytest.raises(ValueError, match="momentum"):
        TrainConfig(optimizer="momentum", momentum=1.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="log_every"):
        TrainConfig(steps=10, log_every=11)
    with pytest.raises(TypeError, match="steps"):
        TrainConfig(steps=1.5)
    with pytest.raises(TypeError, match="no field"):
        TrainConfig().with_(lr=1.0)


def test_resolved_defaults_and_with_():
    assert TrainConfig(optimizer="momentum").momentum == 0.9
    assert TrainConfig(optimizer="rmsprop").momentum == 0.0
    assert TrainConfig(optimizer="adamw").weight_decay == 1e-4  # optax.adamw's default
    assert TrainConfig(optimizer="adam").weight_decay == 0.0
    tc = TrainConfig(optimizer="momentum").with_(optimizer="adam")
    assert tc.momentum is None and tc.weight_decay == 0.0
    hash(TrainConfig(optimizer="adamw", clip="per_layer", clip_value=0.5))  # a static jit argument


# ---- masks and layers ----------------------------------------------------------------------------


def test_weight_mask_marks_only_kernels():
    mask = weight_mask(_params())
    flat = {"/".join(k.key for k in path): m for path, m in jax.tree_util.tree_flatten_with_path(mask)[0]}
    assert {k for k, m in flat.items() if m} == {"embed/kernel", "blocks/kernel", "readout/kernel"}
    assert {"blocks/bias", "blocks/slope", "blocks/norm_scale", "blocks/norm_bias", "embed/bias"} <= set(flat)


@pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py
@pytest.mark.parametrize("cfg", [CFG, RNN], ids=["mlp", "rnn"])
def test_layer_norms_match_hand_slicing(cfg):
    tree = _random_like(_params(cfg), 1)
    got = layer_norms(tree)
    flat = np.concatenate([np.atleast_1d(np.asarray(got[k])) for k in tree])
    want = [_norm(layer) for layer in _layers_by_hand(tree)]
    assert flat.shape == (cfg.depth + 2 if cfg.arch != "rnn" else 3,)
    np.testing.assert_allclose(flat, want, rtol=1e-5)


# ---- clipping --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_global_norm_clip_gives_min_of_norm_and_threshold_and_is_idempotent(scale):
    c = 1.0
    params = _params()
    g = _random_like(params, 2, scale)
    norm = float(optax.tree.norm(g))
    # Through the whole chain with plain SGD at η = 1 the update is −clip(g).
    opt = make_optimizer(TrainConfig(optimizer="sgd", learning_rate=1.0, clip="global_norm", clip_value=c))
    upd, _ = opt.update(g, opt.init(params), params)
    np.testing.assert_allclose(float(optax.tree.norm(upd)), min(norm, c), rtol=1e-5)
    clip = make_clipper(TrainConfig(clip="global_norm", clip_value=c))
    once, _ = clip.update(g, optax.EmptyState(), params)
    twice, _ = clip.update(once, optax.EmptyState(), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), once, twice)
    if norm < c:  # under the threshold the gradient passes unchanged
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), once, g)


@pytest.mark.parametrize("cfg", [CFG, RNN], ids=["mlp", "rnn"])
def test_per_layer_clip_bounds_every_layer(cfg):
    c = 0.5
    params = _params(cfg)
    # Layers with very different gradient sizes: some above c, some below.
    g = _random_like(params, 3, 1.0)
    if cfg.arch == "rnn":
        g["blocks"] = jax.tree.map(lambda v: v * 0.01, g["blocks"])
    else:  # blocks 1 and 3 small, 2 and 4 large
        tiny = jnp.array([0.01, 1.0, 0.01, 1.0])
        g["blocks"] = jax.tree.map(lambda v: v * tiny.reshape((-1,) + (1,) * (v.ndim - 1)), g["blocks"])
    clip = make_clipper(TrainConfig(clip="per_layer", clip_value=c))
    once, _ = clip.update(g, optax.EmptyState(), params)
    before, after = _layers_by_hand(g), _layers_by_hand(once)
    fired = 0
    for lb, la in zip(before, after):
        nb, na = _norm(lb), _norm(la)
        assert na <= c * (1 + 1e-5)
        if nb < c:
            for u, v in zip(lb, la):
                np.testing.assert_array_equal(u, v)
        else:
            fired += 1
            np.testing.assert_allclose(na, c, rtol=1e-5)
            for u, v in zip(lb, la):  # direction kept
                np.testing.assert_allclose(v, u * (c / nb), rtol=1e-4, atol=1e-7)
    assert 0 < fired < len(before)
    twice, _ = clip.update(once, optax.EmptyState(), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), once, twice)


def test_value_clip_bounds_every_entry():
    c = 0.3
    g = _random_like(_params(), 4)
    out, _ = make_clipper(TrainConfig(clip="value", clip_value=c)).update(g, optax.EmptyState())
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, np.clip(b, -c, c)), out, g)


def test_adaptive_clip_is_optax_agc_per_layer():
    lam = 0.01
    params, g = _params(), _random_like(_params(), 5)
    out, _ = make_clipper(TrainConfig(clip="adaptive", clip_value=lam)).update(g, optax.EmptyState(), params)
    agc = optax.adaptive_grad_clip(lam)  # the reference: optax's AGC on one unstacked layer at a time
    for l in range(CFG.depth):
        take = lambda t: jax.tree.map(lambda v: v[l], t["blocks"])  # noqa: E731
        want, _ = agc.update(take(g), optax.EmptyState(), take(params))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), take(out), want)
        # Independent check on the kernel: every column norm ≤ λ·max(‖W column‖, 1e-3).
        gk, wk = np.asarray(take(out)["kernel"]), np.asarray(take(params)["kernel"])
        assert np.all(np.linalg.norm(gk, axis=0) <= lam * np.maximum(np.linalg.norm(wk, axis=0), 1e-3) * (1 + 1e-5))
    with pytest.raises(ValueError, match="parameters"):
        make_clipper(TrainConfig(clip="adaptive", clip_value=lam)).update(g, optax.EmptyState())


# ---- decay, penalties, optimizers, schedules -------------------------------------------------------


@pytest.mark.parametrize("cfg", [CFG, RNN], ids=["mlp", "rnn"])
def test_masked_decay_shrinks_only_weights_by_one_minus_lr_wd(cfg):
    lr, wd = 0.1, 0.5
    params = _params(cfg)
    opt = make_optimizer(TrainConfig(optimizer="sgd", learning_rate=lr, weight_decay=wd))
    state = opt.init(params)
    zero = jax.tree.map(jnp.zeros_like, params)
    p = params
    for step in range(1, 4):
        upd, state = opt.update(zero, state, p)
        p = optax.apply_updates(p, upd)
        mask = weight_mask(params)
        for p0, p1, m in zip(jax.tree.leaves(params), jax.tree.leaves(p), jax.tree.leaves(mask)):
            if m:  # W_t = (1 − η λ)^t W_0
                np.testing.assert_allclose(p1, np.asarray(p0) * (1 - lr * wd) ** step, rtol=1e-6)
            else:  # biases, prelu slopes, norm scales and biases untouched
                np.testing.assert_array_equal(p1, p0)


def test_penalty_and_its_gradient():
    params = _params()
    tc = TrainConfig(l2=0.3, l1=0.2)
    ws = [params[g]["kernel"] for g in ("embed", "blocks", "readout")]
    want = sum(0.5 * 0.3 * float(jnp.sum(w**2)) + 0.2 * float(jnp.sum(jnp.abs(w))) for w in ws)
    np.testing.assert_allclose(float(penalty(tc, params)), want, rtol=1e-5)
    grad = jax.grad(lambda p: penalty(TrainConfig(l2=0.3), p))(params)
    np.testing.assert_allclose(grad["blocks"]["kernel"], 0.3 * params["blocks"]["kernel"], rtol=1e-6)
    np.testing.assert_array_equal(grad["blocks"]["bias"], 0.0)
    assert float(penalty(TrainConfig(), params)) == 0.0


def test_optimizer_first_steps_closed_forms():
    p = {"w": jnp.array([1.0, -2.0, 0.5])}
    g = {"w": jnp.array([0.2, -0.4, 3.0])}
    lr = 0.1

    def updates(tc, n):
        opt = make_optimizer(tc)
        s, out = opt.init(p), []
        for _ in range(n):
            u, s = opt.update(g, s, p)
            out.append(np.asarray(u["w"]))
        return out

    np.testing.assert_allclose(updates(TrainConfig(learning_rate=lr), 1)[0], -lr * g["w"], rtol=1e-6)
    # Heavy ball with constant g: second update −η(1 + β)g.
    m = updates(TrainConfig(optimizer="momentum", learning_rate=lr, momentum=0.9), 2)
    np.testing.assert_allclose(m[1], -lr * 1.9 * g["w"], rtol=1e-6)
    # Adam's bias-corrected first step is −η·g/(|g| + ε) ≈ −η·sign(g) (Kingma & Ba, arXiv:1412.6980).
    np.testing.assert_allclose(updates(TrainConfig(optimizer="adam", learning_rate=lr), 1)[0], -lr * np.sign(g["w"]), rtol=1e-5)
    # RMSprop: v = (1 − 0.9) g², update −η g/√(v + 1e-8).
    want = -lr * g["w"] / np.sqrt(0.1 * g["w"] ** 2 + 1e-8)
    np.testing.assert_allclose(updates(TrainConfig(optimizer="rmsprop", learning_rate=lr), 1)[0], want, rtol=1e-5)


def test_schedules():
    lr, steps, warm = 0.2, 100, 10
    cos = make_schedule(TrainConfig(learning_rate=lr, steps=steps, schedule="warmup_cosine", warmup_steps=warm))
    # Linear warmup from 0, then ½η(1 + cos(π (t − w)/(T − w))) down to 0 at T (SGDR, arXiv:1608.03983).
    for t in (0, 5, 10, 40, 100):
        want = lr * t / warm if t < warm else 0.5 * lr * (1 + math.cos(math.pi * (t - warm) / (steps - warm)))
        np.testing.assert_allclose(float(cos(t)), want, rtol=1e-6, atol=1e-9)
    const = make_schedule(TrainConfig(learning_rate=lr, steps=steps, warmup_steps=warm))
    assert [float(const(t)) for t in (0, 5, 10, 50)] == pytest.approx([0.0, lr / 2, lr, lr])
    assert float(make_schedule(TrainConfig(learning_rate=lr))(7)) == pytest.approx(lr)
