"""Vmapped multi-seed training with gradient-flow histories.

``train(cfg, tc, data, seeds=S)`` trains S independently initialized networks at once: the
per-seed update is ``jax.vmap``-ed over the seed axis, and the ``log_every`` updates between two
history rows run as one ``jax.lax.fori_loop`` inside one jitted call. Seed k starts from
``init_params(cfg, jax.random.key(k))`` (member k of ``gradjax.nn.make_ensemble``) and draws its
minibatches from its own key, so member k of an S-seed run equals a run with ``seeds=[k]``.

Divergence: a seed whose minibatch loss, gradient or update becomes non-finite is marked
``diverged_at = t`` (the 0-based update at which it happened), its parameters and optimizer state
are frozen at the last finite values, and its later history rows are NaN; the other seeds go on.

References:
  Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent neural networks",
  arXiv:1211.5063 (exploding gradients, clipping).
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232 (trainability at depth
  follows the order-to-chaos transition).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradjax._validate import check_int
from gradjax.config import NetConfig
from gradjax.empirical.gradients import grad_norms
from gradjax.empirical.losses import loss_fn
from gradjax.nn.ensemble import ensemble_params, seed_keys
from gradjax.nn.stack import check_segment, forward, input_shape
from gradjax.train.data import Dataset
from gradjax.train.monitor import GradientFlowState, gradient_flow_monitor, gradient_flow_states
from gradjax.train.optim import TrainConfig, make_clipper, make_optimizer, penalty

# Stream id folded into a seed's key for its minibatch order. Flax NNX draws parameters with
# fold_in(key, count) for small counts, so a large constant keeps this stream apart from the
# parameter streams (and differs from the empirical engine's default-data stream 0x5EED_DA7A).
MINIBATCH_STREAM = 0x0BA7_C4ED

#: Default cap on the examples used for the history's evaluation rows (train loss and per-layer
#: gradient norms on the first ``eval_size`` training examples; test metrics on the first
#: ``eval_size`` test examples). Covers the whole of every bundled data set at default sizes.
DEFAULT_EVAL_SIZE = 4096


@dataclasses.dataclass(frozen=True, eq=False)
class History:
    """What :func:`train` records; row r is taken after ``step[r]`` updates (T rows, S seeds, L layers).

    Attributes:
      step: (T,) number of updates done at each row (log_every, 2·log_every, …, steps).
      loss: (T, S) training loss (data term, no penalty) on the evaluation training examples.
      test_loss: (T, S) loss on the test examples.
      accuracy: (T, S) test accuracy in [0, 1] (NaN for regression).
      train_accuracy: (T, S) training accuracy on the evaluation examples (NaN for regression).
      grad_norm: (T, S) global L2 norm of the last update's minibatch gradient, before clipping (linear).
      clipped_norm: (T, S) the same after clipping (linear).
      clipped: (T, S) bool, whether clipping changed the last update's gradient.
      clip_fraction: (T, S) fraction of the updates since the previous row at which clipping fired.
      layer_grad_norms: (T, S, L) log10 ‖∂loss/∂W_l‖ of the block kernels on the evaluation training
        examples, from ``gradjax.empirical.grad_norms`` (rnn: time step l's share of the shared W;
        −inf at step 1, whose share φ(h_0)ᵀδ_1 is exactly 0 since h_0 = 0).
      hidden_grad_norms: (T, S, L) log10 ‖∂loss/∂h_l‖ from the same engine.
      weight_norms: (T, S, L) Frobenius norm ‖W_l‖ of block l's kernel (linear; rnn: the shared W
        repeated over the L time steps).
      update_ratio: (T, S, L) ‖ΔW_l‖/‖W_l‖ of the last update (linear).
      grad_flow: (steps, S, G) log10 norm of every update's minibatch gradient (before clipping) per
        layer group — ``embed``, ``blocks/0`` … ``blocks/L−1`` (rnn: one ``blocks``), ``readout``, each
        kernel and bias together — recorded by :func:`gradjax.train.monitor.gradient_flow_monitor`
        in front of the optimizer chain; NaN from a seed's divergence on.
      grad_flow_labels: (G,) the group labels of ``grad_flow``.
      diverged_at: (S,) int, the update at which the seed diverged, −1 where it never did.
      params: final parameters with a leading seed axis (a diverged seed: its last finite values).
      cfg, tc: the network and training settings.
    """

    step: np.ndarray
    loss: np.ndarray
    test_loss: np.ndarray
    accuracy: np.ndarray
    train_accuracy: np.ndarray
    grad_norm: np.ndarray
    clipped_norm: np.ndarray
    clipped: np.ndarray
    clip_fraction: np.ndarray
    layer_grad_norms: np.ndarray
    hidden_grad_norms: np.ndarray
    weight_norms: np.ndarray
    update_ratio: np.ndarray
    grad_flow: np.ndarray
    grad_flow_labels: tuple
    diverged_at: np.ndarray
    params: Any
    cfg: NetConfig
    tc: TrainConfig

    @property
    def diverged(self) -> np.ndarray:
        """(S,) bool: seeds that diverged."""
        return self.diverged_at >= 0


# ---- pieces of one update ----------------------------------------------------------------------------


def minibatch_indices(key: jax.Array, t: jax.Array, n: int, batch: int) -> jax.Array:
    """Indices of update t's minibatch: epoch-wise shuffling without replacement.

    Epoch e = t // (n // batch) is a permutation drawn from ``fold_in(key, e)``; update t takes its
    (t mod n // batch)-th slice of ``batch`` indices (the last n mod batch examples of an epoch wait
    for the next shuffle).

    Args:
      key: the seed's minibatch key. t: () int, the 0-based update. n: training-set size. batch: B.

    Returns:
      (B,) int indices into the training set.
    """
    per_epoch = n // batch
    perm = jax.random.permutation(jax.random.fold_in(key, t // per_epoch), n)
    return jax.lax.dynamic_slice(perm, ((t % per_epoch) * batch,), (batch,))


def kernel_norms(cfg: NetConfig, params: dict) -> jax.Array:
    """(L,) Frobenius norm of each block kernel (rnn: the shared W, repeated L times; cnn: the whole
    (k,)·d + (N, N) convolution kernel)."""
    w = params["blocks"]["kernel"]
    if cfg.arch == "rnn":
        return jnp.broadcast_to(jnp.linalg.norm(w), (cfg.depth,))
    return jnp.sqrt(jnp.sum(jnp.square(w), axis=tuple(range(1, w.ndim))))


def monitored_optimizer(cfg: NetConfig, tc: TrainConfig) -> optax.GradientTransformation:
    """``make_optimizer(tc)`` behind a gradient-flow monitor: every update's raw gradient norm per layer.

    The monitor passes the gradient through unchanged, so the chain's updates are those of
    ``make_optimizer(tc)``; its record (``tc.steps`` rows) becomes :attr:`History.grad_flow`.
    """
    stacked = () if cfg.arch == "rnn" else ("blocks",)
    return optax.chain(gradient_flow_monitor(tc.steps, stacked=stacked), make_optimizer(tc))


def _grad_flow(opt_state) -> tuple[np.ndarray, tuple]:
    """(steps, S, G) log10 norms and the labels from the vmapped monitor state."""
    state: GradientFlowState = gradient_flow_states(opt_state)[0]
    return np.moveaxis(np.asarray(state.log10_norms), 0, 1), state.labels


def _tree_where(flag: jax.Array, a, b):
    return jax.tree.map(lambda x, y: jnp.where(flag, x, y), a, b)


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _accuracy(y: jax.Array, labels: jax.Array, classification: bool) -> jax.Array:
    if not classification:
        return jnp.asarray(jnp.nan, y.dtype)
    return jnp.mean((jnp.argmax(y, axis=-1) == labels).astype(y.dtype))


def _seed_update(cfg, tc, loss, batch, params, opt_state, div, key, t, x, y, segment=None):
    """One update of one seed, frozen if it has diverged (see module docstring)."""
    f = loss_fn(loss)
    n = x.shape[0]
    if batch is None:
        xb, yb = x, y
    else:
        idx = minibatch_indices(key, t, n, batch)
        xb, yb = x[idx], y[idx]

    def objective(p):
        data_loss = f(forward(cfg, p, xb, segment=segment), yb)
        return data_loss + penalty(tc, p), data_loss

    (total, _), g = jax.value_and_grad(objective, has_aux=True)(params)
    g_clip, _ = make_clipper(tc).update(g, optax.EmptyState(), params)
    clipped = jnp.any(jnp.stack([jnp.any(a != b) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_clip))]))
    upd, new_state = monitored_optimizer(cfg, tc).update(g, opt_state, params)
    new_params = optax.apply_updates(params, upd)
    ok = jnp.isfinite(total) & _all_finite(g) & _all_finite(new_params)
    alive = div < 0
    keep = alive & ok
    stats = {
        "grad_norm": optax.tree.norm(g),
        "clipped_norm": optax.tree.norm(g_clip),
        "clipped": clipped,
        "update_ratio": kernel_norms(cfg, upd) / kernel_norms(cfg, params),
    }
    return (
        _tree_where(keep, new_params, params),
        _tree_where(keep, new_state, opt_state),
        jnp.where(alive & ~ok, t, div),
        stats,
        alive,
    )


def _seed_eval(cfg, loss, params, x, y, x_test, y_test, classification, segment=None):
    """History row quantities of one seed: losses, accuracies, per-layer norms (engine + weights)."""
    f = loss_fn(loss)
    gn = grad_norms(cfg, params, x, y, loss, segment=segment)
    y_tr = forward(cfg, params, x)
    y_te = forward(cfg, params, x_test)
    return {
        "loss": gn.loss,
        "test_loss": f(y_te, y_test),
        "accuracy": _accuracy(y_te, y_test, classification),
        "train_accuracy": _accuracy(y_tr, y, classification),
        "layer_grad_norms": gn.weights,
        "hidden_grad_norms": gn.hidden,
        "weight_norms": kernel_norms(cfg, params),
    }


@functools.partial(jax.jit, static_argnames=("tc", "loss", "batch", "classification", "segment"))
def _chunk(params, opt_state, div, keys, t0, length, x, y, x_eval, y_eval, x_test, y_test, cfg, *, tc, loss, batch,
           classification, segment=None):
    """``length`` updates of every seed, then one history row.

    ``length`` is a traced scalar (a ``fori_loop`` trip count), so the last, shorter chunk of a run
    reuses the same compiled program.
    """
    dt = x.dtype

    def one_seed(p, s, d, key):
        def body(t, carry):
            p, s, d, _, fired, live = carry
            p, s, d, stats, alive = _seed_update(cfg, tc, loss, batch, p, s, d, key, t, x, y, segment)
            return p, s, d, stats, fired + (stats["clipped"] & alive), live + alive

        last0 = {"grad_norm": jnp.zeros((), dt), "clipped_norm": jnp.zeros((), dt), "clipped": jnp.zeros((), bool),
                 "update_ratio": jnp.zeros((cfg.depth,), dt)}
        zero = jnp.zeros((), jnp.int32)
        p, s, d, last, fired, live = jax.lax.fori_loop(t0, t0 + length, body, (p, s, d, last0, zero, zero))
        row = {**last, "clip_fraction": (fired / jnp.maximum(live, 1)).astype(dt),
               **_seed_eval(cfg, loss, p, x_eval, y_eval, x_test, y_test, classification, segment)}
        # A diverged seed's rows are NaN: its frozen parameters no longer describe the run.
        dead = d >= 0
        row = {k: (v if k == "clipped" else jnp.where(dead, jnp.nan, v)) for k, v in row.items()}
        row["clipped"] = row["clipped"] & ~dead
        return p, s, d, row

    return jax.vmap(one_seed)(params, opt_state, div, keys)


# ---- the loop ----------------------------------------------------------------------------------------


def seed_sharded(tree, keys: jax.Array):
    """``tree``'s arrays (each with a leading seed axis) placed like ``keys`` when ``keys`` are split over a
    device mesh along their only axis; otherwise ``tree`` unchanged.

    The jitted chunk returns the seed state sharded like the keys. Its initial state is not all made
    from the keys (zero biases, optimizer counters, ``div``), so without this the first chunk and the
    later ones see different input shardings and the chunk compiles twice per run.
    """
    sharding = getattr(keys, "sharding", None)
    if not isinstance(sharding, jax.sharding.NamedSharding) or len(sharding.spec) != 1:
        return tree
    return jax.device_put(tree, sharding)


def compute_cfg(cfg: NetConfig) -> NetConfig:
    """``cfg`` as the forward and backward passes see it: the weight scheme only shapes the initial
    draw, so every scheme maps to the gaussian structure (σ_w² kept as a number).

    The jitted training chunk takes this config as a pytree (numbers traced), so a sweep over σ_w²,
    σ_b², α or the slope — or over the weight scheme — compiles the loop once.
    """
    return cfg.with_(init="gaussian", sigma_w2=cfg.sigma_w2)


#: Archs the loop trains (a transformer's token inputs have no loader yet).
TRAINED_ARCHS = ("mlp", "resmlp", "rnn", "cnn")


def data_input_size(cfg: NetConfig) -> int:
    """Size of one data row the network reads: ``in_dim``, or H·W·in_dim flat pixels for a cnn."""
    return math.prod(cfg.spatial) * cfg.in_dim if cfg.arch == "cnn" else cfg.in_dim


def network_inputs(cfg: NetConfig, x: jax.Array) -> jax.Array:
    """Data rows as the network takes them: a cnn's flat rows (n, H·W·in_dim), row-major with the channel
    last (pixel (i, j), channel c at column (i·W + j)·in_dim + c, the layout of the digits images),
    become feature maps (n, *spatial, in_dim); other archs' rows are returned as they are."""
    return x.reshape(input_shape(cfg, x.shape[0])) if cfg.arch == "cnn" else x


def _check_fit(cfg: NetConfig, data: Dataset) -> None:
    if cfg.arch not in TRAINED_ARCHS:
        raise ValueError(f"arch must be one of {list(TRAINED_ARCHS)} to train, got {cfg.arch!r}")
    if cfg.arch == "rnn":
        if data.seq_len is None:
            raise ValueError(f"arch='rnn' needs sequences x (n, T, in_dim), got data {data.name!r} with x {data.x_train.shape}")
        if data.seq_len != cfg.depth:
            raise ValueError(f"rnn depth must equal the sequence length T={data.seq_len} of {data.name!r}, got depth={cfg.depth}")
    elif data.seq_len is not None:
        raise ValueError(f"arch={cfg.arch!r} needs flat inputs x (n, in_dim), got {data.x_train.shape}; use arch='rnn'")
    if data_input_size(cfg) != data.in_dim:
        if cfg.arch == "cnn":
            raise ValueError(f"in_dim × spatial size must equal the data's input size {data.in_dim} ({data.name!r}), "
                             f"got in_dim={cfg.in_dim} with spatial={cfg.spatial}")
        raise ValueError(f"in_dim must equal the data's input size {data.in_dim} ({data.name!r}), got in_dim={cfg.in_dim}")
    if cfg.out_dim != data.out_dim:
        raise ValueError(f"out_dim must equal the data's output size {data.out_dim} ({data.name!r}), got out_dim={cfg.out_dim}")


def train(cfg: NetConfig, tc: TrainConfig, data: Dataset, seeds=4, *, loss=None, eval_size: int = DEFAULT_EVAL_SIZE,
          progress: bool = True, segment: int | None = None) -> History:
    """Trains S networks at once and records their gradient flow.

    Args:
      cfg: the network (in_dim/out_dim must match the data; rnn depth = sequence length; cnn: the data's
        flat rows hold H·W·in_dim pixels, see :func:`network_inputs`). Transformers are refused.
      tc: optimizer, clipping, regularization, schedule, steps, batch size, log interval.
      data: a :class:`gradjax.train.Dataset`.
      seeds: int S (keys 0..S−1), a list of ints, or a key array (S,).
      loss: "xent" | "mse" | callable ``f(y, targets) -> scalar``; default by task (xent for
        classification, mse for regression).
      eval_size: history rows use the first ``eval_size`` training and test examples.
      progress: show a tqdm bar (steps, live loss range across seeds, diverged count).
      segment: None, or K dividing the depth: rematerialization — the updates differentiate
        the blocks as L/K checkpointed segments (:func:`gradjax.nn.stack.forward`) and the history's
        per-layer norms use the segmented walk (:func:`gradjax.empirical.grad_norms`): memory of the
        block states ∝ L/K + K instead of L, the same numbers up to rounding.

    Returns:
      :class:`History` with rows every ``tc.log_every`` updates (and at ``tc.steps``).

    Raises:
      ValueError: network and data do not fit, or the batch is larger than the training set.
    """
    from tqdm.auto import tqdm

    _check_fit(cfg, data)
    check_int("eval_size", eval_size)
    if segment is not None:
        check_segment(cfg, segment)
    if tc.batch_size is not None and tc.batch_size > len(data.x_train):
        raise ValueError(f"batch_size must be <= the {len(data.x_train)} training examples, got {tc.batch_size}")
    loss = data.loss if loss is None else loss
    loss_fn(loss)  # validate before tracing
    classification = data.task == "classification"
    keys = seed_keys(seeds)
    s = keys.shape[0]
    params = ensemble_params(cfg, keys)
    opt_state = jax.vmap(monitored_optimizer(cfg, tc).init)(params)
    div = jnp.full((s,), -1, jnp.int32)
    params, opt_state, div = seed_sharded((params, opt_state, div), keys)
    minibatch_keys = jax.vmap(lambda k: jax.random.fold_in(k, MINIBATCH_STREAM))(keys)
    dt = cfg.jnp_dtype
    x, y = network_inputs(cfg, jnp.asarray(data.x_train, dt)), jnp.asarray(data.y_train)
    if not classification:
        y = y.astype(dt)
    x_eval, y_eval = x[:eval_size], y[:eval_size]
    x_test = network_inputs(cfg, jnp.asarray(data.x_test[:eval_size], dt))
    y_test = jnp.asarray(data.y_test[:eval_size])
    if not classification:
        y_test = y_test.astype(dt)

    lengths = np.diff((0,) + tc.row_steps).tolist()
    rows, t = [], 0
    with tqdm(total=tc.steps, disable=not progress, desc=f"train {cfg.arch} L={cfg.depth} S={s}", unit="step") as bar:
        for length in lengths:
            params, opt_state, div, row = _chunk(
                params, opt_state, div, minibatch_keys, jnp.asarray(t, jnp.int32), jnp.asarray(length, jnp.int32),
                x, y, x_eval, y_eval, x_test, y_test, compute_cfg(cfg), tc=tc, loss=loss, batch=tc.batch_size, classification=classification,
                segment=segment)
            t += length
            rows.append(jax.tree.map(np.asarray, row))
            live = rows[-1]["loss"][np.isfinite(rows[-1]["loss"])]
            n_div = int(np.sum(np.asarray(div) >= 0))
            bar.set_postfix_str(
                (f"loss {live.min():.3g}..{live.max():.3g}" if live.size else "loss n/a") + f", diverged {n_div}/{s}"
            )
            bar.update(length)

    stacked = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    grad_flow, grad_flow_labels = _grad_flow(opt_state)
    return History(
        grad_flow=grad_flow,
        grad_flow_labels=grad_flow_labels,
        step=np.asarray(tc.row_steps),
        diverged_at=np.asarray(div),
        params=jax.tree.map(np.asarray, params),
        cfg=cfg,
        tc=tc,
        **stacked,
    )
