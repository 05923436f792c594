"""The training loop: shapes, seeds vmapped = seeds one by one, determinism, divergence, minibatches."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradjax.config import NetConfig
from gradjax.empirical import grad_norms
from gradjax.nn.stack import forward, init_params
from gradjax.train import Dataset, TrainConfig, load_digits, minibatch_indices, teacher_student, train

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


FIELDS_TS = ("loss", "test_loss", "accuracy", "train_accuracy", "grad_norm", "clipped_norm", "clip_fraction")
FIELDS_TSL = ("layer_grad_norms", "hidden_grad_norms", "weight_norms", "update_ratio")


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    # A small slice keeps these unit tests fast; the trainability tests use the whole set.
    return Dataset(d.x_train[:200], d.y_train[:200], d.x_test[:100], d.y_test[:100], d.task, "digits200")


SMALL = NetConfig(depth=3, width=16, in_dim=64, out_dim=10, activation="tanh", sigma_w2=1.5, sigma_b2=0.05)
# One setting with a stateful optimizer, a clip and minibatches (each train() setting costs one compilation;
# the chain's other stages are checked against closed forms in test_optim.py).
TC_ADAM = TrainConfig(optimizer="adam", learning_rate=1e-3, steps=25, batch_size=32, log_every=10,
                      clip="global_norm", clip_value=1.0)


@pytest.fixture(scope="module")
def run_adam(digits):
    return train(SMALL, TC_ADAM, digits, seeds=3, progress=False)


def test_history_shapes_and_contents(digits, run_adam):
    h = run_adam
    np.testing.assert_array_equal(h.step, [10, 20, 25])  # last row at `steps`
    for f in FIELDS_TS:
        assert getattr(h, f).shape == (3, 3), f
    for f in FIELDS_TSL:
        assert getattr(h, f).shape == (3, 3, SMALL.depth), f
    assert h.clipped.dtype == bool and h.clipped.shape == (3, 3)
    np.testing.assert_array_equal(h.diverged_at, [-1, -1, -1])
    assert h.params["blocks"]["kernel"].shape == (3, 3, 16, 16)
    # Clipping at c = 1: the clipped norm is min(norm, 1) and "clipped" says whether it acted.
    np.testing.assert_allclose(h.clipped_norm, np.minimum(h.grad_norm, 1.0), rtol=1e-5)
    np.testing.assert_array_equal(h.clipped, h.grad_norm > 1.0)
    assert np.all((h.clip_fraction >= 0) & (h.clip_fraction <= 1))
    # Row quantities recomputed independently from the final parameters of seed 1.
    p = jax.tree.map(lambda v: jnp.asarray(v[1]), h.params)
    x, y = jnp.asarray(digits.x_train), jnp.asarray(digits.y_train)
    logits = forward(SMALL, p, jnp.asarray(digits.x_test))
    np.testing.assert_allclose(h.accuracy[-1, 1], np.mean(np.argmax(logits, -1) == digits.y_test), rtol=1e-6)
    np.testing.assert_allclose(h.loss[-1, 1], optax.softmax_cross_entropy_with_integer_labels(forward(SMALL, p, x), y).mean(), rtol=1e-5)
    np.testing.assert_allclose(h.weight_norms[-1, 1], np.linalg.norm(np.asarray(p["blocks"]["kernel"]), axis=(1, 2)), rtol=1e-5)
    # Per-layer gradient norms are the empirical engine's, and agree with autodiff of the whole net.
    np.testing.assert_allclose(h.layer_grad_norms[-1, 1], grad_norms(SMALL, p, x, y, "xent").weights, rtol=1e-5)
    g = jax.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(forward(SMALL, q, x), y).mean())(p)
    np.testing.assert_allclose(h.layer_grad_norms[-1, 1], np.log10(np.linalg.norm(g["blocks"]["kernel"], axis=(1, 2))), atol=1e-4)
    assert np.all(h.update_ratio > 0) and np.all(h.update_ratio < 1)


@pytest.mark.slow
def test_vmapped_seeds_equal_separate_runs(digits, run_adam):
    """Member k of an S-seed run equals the run with seeds=[k] (float32, to 1e-6).

    The single-seed runs take their key on a ("seed",) device mesh, as experiment sweeps pass keys: the
    chunk's outputs come back sharded like the key, the initial state is placed the same way, so all three
    runs (three chunks each) share one compilation (counted by JAX's compile events, which the persistent
    cache does not hide)."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from gradjax.nn import seed_keys

    compiled = []

    def on_compile(event, seconds, fun_name="", **_):
        if event == "/jax/core/compile/backend_compile_duration" and "_chunk" in fun_name:
            compiled.append(fun_name)

    on_mesh = NamedSharding(Mesh(np.asarray(jax.devices()[:1]), ("seed",)), PartitionSpec("seed"))
    jax.monitoring.register_event_duration_secs_listener(on_compile)
    try:
        for k in range(3):
            one = train(SMALL, TC_ADAM, digits, seeds=jax.device_put(seed_keys([k]), on_mesh), progress=False)
            for f in FIELDS_TS + FIELDS_TSL:
                np.testing.assert_allclose(getattr(one, f)[:, 0], getattr(run_adam, f)[:, k], rtol=1e-6, atol=1e-6,
                                           err_msg=f)
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b[k], rtol=1e-6, atol=1e-6), one.params,
                         run_adam.params)
    finally:
        jax.monitoring.unregister_event_duration_listener(on_compile)
    assert len(compiled) == 1, compiled


def test_same_seeds_identical_histories_and_no_recompilation(digits, run_adam):
    from gradjax.train.loop import _chunk

    again = train(SMALL, TC_ADAM, digits, seeds=3, progress=False)
    compiled = _chunk._cache_size()  # read after a run: tests may release compiled programs between them
    for f in FIELDS_TS + FIELDS_TSL + ("clipped", "diverged_at", "step"):
        np.testing.assert_array_equal(getattr(again, f), getattr(run_adam, f), err_msg=f)
    jax.tree.map(np.testing.assert_array_equal, again.params, run_adam.params)
    # Another initial scale is another starting point, not another program: no recompilation.
    other = train(SMALL.with_(sigma_w2=0.7, sigma_b2=0.0), TC_ADAM, digits, seeds=3, progress=False)
    assert _chunk._cache_size() == compiled
    assert not np.array_equal(other.loss, run_adam.loss)


def test_full_batch_is_plain_gradient_descent(digits):
    """batch_size=None: every update uses the whole training set, W ← W − η ∇loss (one step by hand)."""
    tc = TrainConfig(optimizer="sgd", learning_rate=0.1, steps=1, log_every=1)
    h = train(SMALL, tc, digits, seeds=1, progress=False)
    p0 = init_params(SMALL, jax.random.key(0))
    x, y = jnp.asarray(digits.x_train), jnp.asarray(digits.y_train)
    g = jax.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(forward(SMALL, q, x), y).mean())(p0)
    want = jax.tree.map(lambda p, d: p - 0.1 * d, p0, g)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b, rtol=1e-5, atol=1e-7), h.params, want)


def test_minibatches_cover_each_epoch_once():
    key, n, b = jax.random.key(3), 50, 16  # 3 batches per epoch, 2 examples left over each epoch
    for epoch in range(2):
        idx = np.concatenate([np.asarray(minibatch_indices(key, jnp.asarray(epoch * 3 + i), n, b)) for i in range(3)])
        assert len(set(idx.tolist())) == 48 and idx.min() >= 0 and idx.max() < n
    first = minibatch_indices(key, jnp.asarray(0), n, b)
    assert not np.array_equal(first, minibatch_indices(key, jnp.asarray(3), n, b))  # reshuffled next epoch


@pytest.mark.slow
def test_divergence_is_caught_per_seed_and_frozen():
    """One seed blows up, the other goes on exactly as if it had trained alone.

    ReLU/He mlp (depth 3, width 16) on teacher–student regression, plain SGD at η = 1.2 (at the edge of
    stability: some seeds diverge, others train), batch 32, 30 updates, seeds 0..7. Which seeds diverge
    depends on the draws, so the test takes the first diverged one and the first one that trained.
    """
    data = teacher_student(n_train=200, n_test=50, seed=0)
    cfg = NetConfig(depth=3, width=16, in_dim=16, out_dim=1, activation="relu", init="he_normal")
    tc = TrainConfig(optimizer="sgd", learning_rate=1.2, steps=30, batch_size=32, log_every=5)
    seeds = list(range(8))
    h = train(cfg, tc, data, seeds=seeds, progress=False)
    # diverged seeds, and seeds that trained smoothly (½-MSE below 10 at every record: away from the
    # edge, so a vmapped and a solo run agree to float32 rounding instead of amplifying it)
    bad = np.flatnonzero(h.diverged_at >= 0)
    good = np.flatnonzero((h.diverged_at == -1) & np.all(np.asarray(h.loss) < 10.0, axis=0))
    assert bad.size and good.size, (h.diverged_at, np.asarray(h.loss)[-1])  # η = 1.2 must split the seeds
    d, g = int(bad[0]), int(good[0])
    after = h.step > h.diverged_at[d]
    assert after.any() and np.all(np.isnan(h.loss[after, d])) and not np.any(h.clipped[after, d])
    assert np.all(np.isfinite(h.loss[:, g]))
    jax.tree.map(lambda v: np.testing.assert_equal(np.all(np.isfinite(v)), True), h.params)  # last finite values
    assert np.all(np.isnan(h.accuracy))  # regression: no accuracy
    alone = train(cfg, tc, data, seeds=[seeds[g]], progress=False)
    for f in FIELDS_TS + FIELDS_TSL:
        np.testing.assert_allclose(getattr(alone, f)[:, 0], getattr(h, f)[:, g], rtol=1e-6, atol=1e-6, err_msg=f)


def test_mismatched_network_and_data_raise(digits):
    tc = TrainConfig(steps=2, log_every=1)
    with pytest.raises(ValueError, match="in_dim"):
        train(SMALL.with_(in_dim=3), tc, digits, progress=False)
    with pytest.raises(ValueError, match="out_dim"):
        train(SMALL.with_(out_dim=3), tc, digits, progress=False)
    with pytest.raises(ValueError, match="rnn"):
        train(NetConfig(depth=3, width=8, arch="rnn", in_dim=64, out_dim=10), tc, digits, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        train(SMALL, tc.with_(batch_size=201), digits, progress=False)
    with pytest.raises(ValueError, match="loss"):
        train(SMALL, tc, digits, loss="hinge", progress=False)


def test_cnn_trains_on_flat_digit_rows_and_checkpointed_segments_change_nothing(digits):
    # Compile-bound at this size (6 updates, 4 channels): the module's quick codegen (once exempted as compute-bound;
    # measured 35.3 → 25.1 CPU s, run beside each other). Both trainings and the check below compile at the same level.
    # The digits rows are 8×8 images, row-major: a cnn reads them as (n, 8, 8, 1) feature maps.
    cfg = NetConfig(depth=4, width=4, arch="cnn", spatial=(8, 8), in_dim=1, out_dim=10, activation="tanh",
                    sigma_w2=1.6, sigma_b2=0.05, init="delta_orthogonal", dtype="float64")
    tc = TrainConfig(optimizer="momentum", learning_rate=0.05, momentum=0.9, steps=6, batch_size=16, log_every=3)
    plain = train(cfg, tc, digits, seeds=2, progress=False)
    seg = train(cfg, tc, digits, seeds=2, progress=False, segment=2)
    for f in FIELDS_TS + FIELDS_TSL:
        np.testing.assert_allclose(getattr(seg, f), getattr(plain, f), rtol=1e-9, atol=1e-12, err_msg=f)
    # Independent: the final parameters' test accuracy on the images, and their kernels' norms.
    x_test = jnp.asarray(digits.x_test).reshape(-1, 8, 8, 1)
    for s in range(2):
        p = jax.tree.map(lambda a: a[s], plain.params)
        acc = np.mean(np.argmax(np.asarray(forward(cfg, p, x_test)), -1) == digits.y_test)
        assert plain.accuracy[-1, s] == pytest.approx(acc, abs=1e-12)
        k = np.asarray(p["blocks"]["kernel"])
        np.testing.assert_allclose(plain.weight_norms[-1, s], np.sqrt((k**2).reshape(4, -1).sum(-1)), rtol=1e-12)


def test_untrainable_archs_and_cnn_input_sizes_are_refused(digits):
    tc = TrainConfig(steps=2, log_every=1)
    with pytest.raises(ValueError, match="arch must be one of \\['mlp', 'resmlp', 'rnn', 'cnn'\\] to train"):
        train(NetConfig(depth=2, width=8, arch="transformer", tokens=4, in_dim=16, out_dim=10), tc, digits, progress=False)
    with pytest.raises(ValueError, match="in_dim × spatial size must equal the data's input size 64"):
        train(NetConfig(depth=2, width=4, arch="cnn", spatial=(4, 4), in_dim=1, out_dim=10), tc, digits, progress=False)
    with pytest.raises(ValueError, match="segment must be a positive int dividing depth=3"):
        train(SMALL, tc, digits, progress=False, segment=2)
