"""The gradient-flow monitor: its record equals per-layer norms computed directly; it leaves a chain's
updates bit-identical, before or after clipping; stacked layers split; seeds vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradjax.train.monitor import (GradientFlowState, gradient_flow_monitor, gradient_flow_records,
                                   group_log10_norms)


pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


def _params(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return {"embed": {"kernel": jax.random.normal(k1, (3, 4)), "bias": jnp.zeros(4)},
            "blocks": {"kernel": jax.random.normal(k2, (5, 4, 4)), "bias": jnp.zeros((5, 4))},
            "readout": {"kernel": jax.random.normal(k3, (4, 2))}}


def _loss(p, x):
    h = x @ p["embed"]["kernel"] + p["embed"]["bias"][None, :]
    for l in range(5):
        h = jnp.tanh(h) @ p["blocks"]["kernel"][l] + p["blocks"]["bias"][l][None, :]
    return jnp.sum(jnp.tanh(h) @ p["readout"]["kernel"])


def _direct(g):
    # per-layer Frobenius norms written out by hand, in float64
    n = lambda *a: np.log10(np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in a)))  # noqa: E731
    rows = [n(g["blocks"]["bias"][l], g["blocks"]["kernel"][l]) for l in range(5)]
    return np.array(rows + [n(g["embed"]["bias"], g["embed"]["kernel"]), n(g["readout"]["kernel"])])


def _run(tx, steps=4, jit=True):
    p = _params(jax.random.key(0))
    state = tx.init(p)
    grads, ups = [], []
    grad, update = jax.jit(jax.grad(_loss)), (jax.jit(tx.update) if jit else tx.update)
    for t in range(steps):
        g = grad(p, jax.random.normal(jax.random.key(10 + t), (6, 3)))
        u, state = update(g, state, p)
        p = optax.apply_updates(p, u)
        grads.append(g)
        ups.append(u)
    return grads, ups, state


def test_record_equals_per_layer_norms_computed_directly():
    grads, _, state = _run(gradient_flow_monitor(8, stacked=("blocks",)))
    (rec,) = gradient_flow_records(state)
    assert rec.labels == ("blocks/0", "blocks/1", "blocks/2", "blocks/3", "blocks/4", "embed", "readout")
    np.testing.assert_array_equal(rec.step, [1, 2, 3, 4])
    want = np.stack([_direct(g) for g in grads])
    np.testing.assert_allclose(rec.log10_norms, want, atol=2e-6)  # float32 norms, ~10 ulps of an O(1) log10


def _chain(where):
    core = [optax.clip_by_global_norm(0.5), optax.adam(1e-2)]
    mon = gradient_flow_monitor(3)
    return optax.chain(*([mon] + core if where == "before" else core[:1] + [mon] + core[1:])), optax.chain(*core)


@pytest.mark.parametrize("where", ["before", "after"])
def test_chain_with_and_without_the_monitor_gives_bit_identical_updates(where):
    # Op by op (no jit) the chain's arithmetic is exactly the same with the monitor in it: bit-identical.
    # Compiled with the machine's fused multiply-add instructions, XLA contracts a·b + c into one fma
    # or not depending on the shape of each fusion, and the monitor's extra reader of the updates
    # changes the fusions around it: adam's moments then round differently in the last bit (up to
    # 4e-14 relative after 5 steps, 203 of 620 float64 entries). Bound: 1e-12 relative. That this is
    # XLA's contraction and not the monitor is shown by the next test: without fma, compiled is
    # bit-identical too.
    with_mon, without = _chain(where)
    for jit in (False, True):
        _, a_ups, state = _run(with_mon, steps=5, jit=jit)
        _, b_ups, _ = _run(without, steps=5, jit=jit)
        for a, b in zip(jax.tree.leaves(a_ups), jax.tree.leaves(b_ups)):
            if jit:
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * float(np.max(np.abs(b))))
            else:
                np.testing.assert_array_equal(a, b)
    (rec,) = gradient_flow_records(state)  # ring buffer of 3: the last three steps
    np.testing.assert_array_equal(rec.step, [3, 4, 5])


_COMPILED_BITWISE = """
import jax, numpy as np, sys
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, {here!r})
import test_monitor as t
for where in ("before", "after"):
    with_mon, without = t._chain(where)
    _, a_ups, _ = t._run(with_mon, steps=5, jit=True)
    _, b_ups, _ = t._run(without, steps=5, jit=True)
    n = sum(int(np.sum(np.asarray(a) != np.asarray(b))) for a, b in zip(jax.tree.leaves(a_ups), jax.tree.leaves(b_ups)))
    print(where, n)
"""


def test_compiled_chain_is_bit_identical_without_fused_multiply_add():
    # The same comparison compiled, in a process whose XLA may not emit fma instructions
    # (--xla_cpu_max_isa=SSE4_2): every update equal bit for bit, before and after clipping.
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, XLA_FLAGS="--xla_cpu_max_isa=SSE4_2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _COMPILED_BITWISE.format(here=here)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["before", "0", "after", "0"], out.stdout


def test_monitor_after_clipping_records_clipped_norms():
    tx = optax.chain(gradient_flow_monitor(4, group=lambda path: "all"), optax.clip_by_global_norm(1e-3),
                     gradient_flow_monitor(4, group=lambda path: "all"), optax.sgd(0.1))
    grads, _, state = _run(tx, steps=2)
    raw, clipped = gradient_flow_records(state)
    np.testing.assert_allclose(raw.log10_norms[:, 0], [np.log10(optax.tree.norm(g)) for g in grads], rtol=1e-6)
    np.testing.assert_allclose(clipped.log10_norms[:, 0], -3.0, atol=1e-6)  # clip_by_global_norm's invariant


def test_vmapped_seeds_and_zero_and_huge_groups():
    tx = gradient_flow_monitor(2)
    p = jax.vmap(_params)(jax.random.split(jax.random.key(1), 3))
    s = jax.vmap(tx.init)(p)
    g = jax.tree.map(jnp.zeros_like, p)
    g["readout"]["kernel"] = jnp.full_like(g["readout"]["kernel"], 1e30)  # Σg² overflows float32; the norm does not
    _, s = jax.vmap(tx.update)(g, s)
    (rec,) = gradient_flow_records({"inner": (s,)})
    assert rec.log10_norms.shape == (3, 1, 3)
    np.testing.assert_array_equal(rec.log10_norms[:, 0, :2], -np.inf)  # all-zero groups
    np.testing.assert_allclose(rec.log10_norms[:, 0, 2], 30 + 0.5 * np.log10(8), rtol=1e-6)
    assert isinstance(jax.tree.leaves(s, is_leaf=lambda x: isinstance(x, GradientFlowState))[0], GradientFlowState)
    with pytest.raises(ValueError, match="no gradient_flow_monitor"):
        gradient_flow_records(optax.sgd(0.1).init(p))
    with pytest.raises(TypeError, match="capacity"):
        gradient_flow_monitor(2.5)
    assert group_log10_norms({"a": {"w": jnp.ones(4)}}).shape == (1,)


def test_training_loop_records_every_update_per_layer():
    from gradjax.config import NetConfig
    from gradjax.nn.stack import forward, init_params
    from gradjax.train import Dataset, TrainConfig, load_digits, train

    d = load_digits()
    data = Dataset(d.x_train[:100], d.y_train[:100], d.x_test[:50], d.y_test[:50], d.task, "digits100")
    cfg = NetConfig(depth=3, width=8, in_dim=64, out_dim=10, activation="tanh")
    tc = TrainConfig(optimizer="sgd", learning_rate=0.1, steps=3, log_every=3)  # full batch
    h = train(cfg, tc, data, seeds=2, progress=False)
    assert h.grad_flow_labels == ("blocks/0", "blocks/1", "blocks/2", "embed", "readout")
    assert h.grad_flow.shape == (3, 2, 5)
    # update 1 of seed 1: the full-batch gradient at the initial parameters, by hand
    x, y = jnp.asarray(data.x_train, jnp.float32), jnp.asarray(data.y_train)
    g = jax.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(forward(cfg, q, x), y).mean())(
        init_params(cfg, jax.random.key(1)))
    want = [np.log10(np.sqrt(sum(np.sum(np.asarray(g["blocks"][k][l], np.float64) ** 2) for k in ("kernel", "bias"))))
            for l in range(3)]
    want += [np.log10(np.sqrt(sum(np.sum(np.asarray(a, np.float64) ** 2) for a in jax.tree.leaves(g[n]))))
             for n in ("embed", "readout")]
    np.testing.assert_allclose(h.grad_flow[0, 1], want, atol=1e-5)  # float32 gradients, two computations
