"""Training settings and the optax chain they describe.

``make_optimizer(tc)`` builds one chain that reads in the order the update is made::

    clip (global norm | value | adaptive | per layer)  ->  optimizer direction (sgd | momentum |
    adam | rmsprop)  ->  decoupled weight decay on weight matrices  ->  − learning-rate schedule

so under plain SGD a step is ``W ← W − η(t) (clip(g) + λ W)``. Coupled penalties (L2 and L1 on the
weight matrices) are part of the loss instead, see :func:`penalty`.

Layers. The per-layer transformations (per-layer norm clipping, adaptive clipping) need to know
what a layer is. They read it from the parameter dict itself: every top-level entry
(``"embed"``, ``"blocks"``, ``"readout"``) is one layer, except an entry whose ``"kernel"`` has
rank 3 — the stacked blocks of an mlp/resmlp, kernel (L, N, N) — which holds L layers along its
leading axis (every leaf of it is sliced there). The rnn's shared block (kernel (N, N)) is one
layer. Per-seed parameters are expected: under an ensemble, vmap the update over the seed axis.

References:
  Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent neural networks",
  arXiv:1211.5063 (gradient-norm clipping).
  Brock, De, Smith & Simonyan 2021, "High-Performance Large-Scale Image Recognition Without
  Normalization", arXiv:2102.06171 (adaptive gradient clipping).
  Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", arXiv:1711.05101.
  Loshchilov & Hutter 2017, "SGDR: Stochastic Gradient Descent with Warm Restarts",
  arXiv:1608.03983 (cosine schedule).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from gradjax._validate import check_choice, check_int, check_real

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")
CLIPS = ("none", "global_norm", "value", "adaptive", "per_layer")
SCHEDULES = ("constant", "warmup_cosine")

#: Heavy-ball coefficient used when ``optimizer="momentum"`` and none is given (the usual 0.9).
DEFAULT_MOMENTUM = 0.9
#: optax's default decoupled weight decay of ``adamw`` (``optax.adamw(weight_decay=1e-4)``).
DEFAULT_ADAMW_DECAY = 1e-4
#: RMSprop's squared-gradient averaging constant (optax's and Tieleman & Hinton's default).
RMSPROP_DECAY = 0.9
#: Floor on the parameter norm in adaptive clipping, so zero-initialized biases can move (Brock et al. 2021).
AGC_EPS = 1e-3
#: Top-level parameter groups whose ``"kernel"`` leaves are weight matrices (see module docstring).
WEIGHT_GROUPS = ("embed", "blocks", "readout")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train: optimizer, clipping, regularization, schedule, logging.

    Frozen and hashable (a static argument to ``jax.jit``). Fields left at ``None`` are resolved on
    construction to the value that applies; every bad value raises ``ValueError`` (or ``TypeError``)
    naming the field.

    Attributes:
      optimizer: "sgd" | "momentum" (heavy ball) | "adam" | "adamw" | "rmsprop". "adamw" is "adam"
        followed by decoupled weight decay, with ``weight_decay`` defaulting to 1e-4 as in optax.
      learning_rate: peak learning rate η > 0.
      steps: number of optimizer updates, integer ≥ 1.
      batch_size: minibatch size, or ``None`` for full-batch training.
      momentum: heavy-ball coefficient in [0, 1) for "momentum" (default 0.9) and "rmsprop"
        (default 0); must stay ``None`` for the others.
      clip: "none" | "global_norm" (rescale the whole gradient to norm ≤ c) | "value" (clip every
        entry to [−c, c]) | "adaptive" (unit-wise ‖g‖ ≤ c·max(‖W‖, 1e-3)) | "per_layer" (rescale
        each layer's gradient to norm ≤ c).
      clip_value: the threshold c > 0; required unless ``clip="none"`` (then it must be ``None``).
      weight_decay: decoupled decay rate λ ≥ 0 applied to weight matrices only, W ← W − η λ W.
      l2: coupled L2 penalty (l2/2)·Σ‖W‖² added to the loss, ≥ 0.
      l1: coupled L1 penalty l1·Σ|W| added to the loss, ≥ 0.
      schedule: "constant" | "warmup_cosine" (linear warmup from 0, cosine decay to 0 at ``steps``).
      warmup_steps: linear warmup length, 0 ≤ warmup_steps < steps (also allowed with "constant").
      log_every: record the history every k steps (1 ≤ k ≤ steps).
    """

    optimizer: str = "sgd"
    learning_rate: float = 1e-2
    steps: int = 1000
    batch_size: int | None = None
    momentum: float | None = None
    clip: str = "none"
    clip_value: float | None = None
    weight_decay: float | None = None
    l2: float = 0.0
    l1: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    log_every: int = 10

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 — frozen dataclass
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_real("learning_rate", self.learning_rate, minimum=0.0, strict=True)
        set_("learning_rate", float(self.learning_rate))
        check_int("steps", self.steps)
        set_("steps", int(self.steps))
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size)
            set_("batch_size", int(self.batch_size))

        if self.optimizer in ("momentum", "rmsprop"):
            if self.momentum is None:
                set_("momentum", DEFAULT_MOMENTUM if self.optimizer == "momentum" else 0.0)
            check_real("momentum", self.momentum, minimum=0.0)
            if self.momentum >= 1.0:
                raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
            set_("momentum", float(self.momentum))
        elif self.momentum is not None:
            raise ValueError(
                f"momentum applies only to optimizer in ['momentum', 'rmsprop'], got momentum={self.momentum!r} "
                f"with optimizer={self.optimizer!r}"
            )

        check_choice("clip", self.clip, CLIPS)
        if self.clip == "none":
            if self.clip_value is not None:
                raise ValueError(
                    f"clip_value applies only to clip in {list(CLIPS[1:])}, got clip_value={self.clip_value!r} "
                    "with clip='none'"
                )
        else:
            if self.clip_value is None:
                raise ValueError(f"clip={self.clip!r} needs a threshold: clip_value must be a number > 0, got None")
            check_real("clip_value", self.clip_value, minimum=0.0, strict=True)
            set_("clip_value", float(self.clip_value))

        if self.weight_decay is None:
            set_("weight_decay", DEFAULT_ADAMW_DECAY if self.optimizer == "adamw" else 0.0)
        check_real("weight_decay", self.weight_decay, minimum=0.0)
        set_("weight_decay", float(self.weight_decay))
        for f in ("l2", "l1"):
            check_real(f, getattr(self, f), minimum=0.0)
            set_(f, float(getattr(self, f)))

        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("warmup_steps", self.warmup_steps, minimum=0)
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps must be < steps={self.steps}, got {self.warmup_steps!r}")
        set_("warmup_steps", int(self.warmup_steps))
        check_int("log_every", self.log_every)
        if self.log_every > self.steps:
            raise ValueError(f"log_every must be <= steps={self.steps}, got {self.log_every!r}")
        set_("log_every", int(self.log_every))

    @property
    def row_steps(self) -> tuple[int, ...]:
        """Updates done at each history row: log_every, 2·log_every, …, and ``steps`` last."""
        return tuple(range(self.log_every, self.steps, self.log_every)) + (self.steps,)

    def with_(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` applied, validated again.

        ``momentum`` and ``weight_decay`` resolved from ``optimizer`` are re-resolved when the
        optimizer changes and they are not given explicitly.
        """
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise TypeError(f"TrainConfig has no field(s) {unknown}; fields: {names}")
        kw = {n: getattr(self, n) for n in names}
        if "optimizer" in changes and changes["optimizer"] != self.optimizer:
            for field in ("momentum", "weight_decay"):
                if field not in changes:
                    kw[field] = None
        kw.update(changes)
        return TrainConfig(**kw)


# ---- which leaves are weight matrices; what a layer is -------------------------------------------


def weight_mask(params: Any) -> Any:
    """Pytree of bools: True on the weight matrices (``"kernel"`` of embed / blocks / readout).

    Biases, the prelu slope and norm scales/biases are False: decay and penalties leave them alone.
    """

    def is_weight(path, _leaf) -> bool:
        keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
        return len(keys) >= 2 and keys[0] in WEIGHT_GROUPS and keys[-1] == "kernel"

    return jax.tree_util.tree_map_with_path(is_weight, params)


def is_stacked(group: Any) -> bool:
    """Whether a top-level parameter group holds a stack of layers on its leading axis.

    True for a dict whose ``"kernel"`` has rank 3 (mlp/resmlp blocks, (L, N, N)).
    """
    return isinstance(group, dict) and "kernel" in group and jnp.ndim(group["kernel"]) == 3


def map_layers(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Applies ``fn(layer, *rest_layers)`` to every layer of a parameter-shaped pytree.

    A layer is a top-level group; a stacked group (see :func:`is_stacked`, judged on ``tree``) is
    mapped slice by slice along its leading axis with ``jax.vmap``. A tree that is not a dict is one
    layer. ``fn`` returns a pytree; results keep the group structure (stacked groups get the layer
    axis in front).
    """
    if not isinstance(tree, dict):
        return fn(tree, *rest)
    out = {}
    for name, group in tree.items():
        others = [r[name] for r in rest]
        out[name] = jax.vmap(fn)(group, *others) if is_stacked(group) else fn(group, *others)
    return out


def layer_norms(tree: Any) -> Any:
    """L2 norm of every layer (all its leaves together): a dict of scalars, (L,) for stacked groups."""
    return map_layers(optax.tree.norm, tree)


# ---- clipping --------------------------------------------------------------------------------------


def clip_by_layer_norm(max_norm: float) -> optax.GradientTransformation:
    """Rescales each layer's update to L2 norm ≤ ``max_norm`` (layers as in :func:`map_layers`).

    ``g_l ← g_l · min(1, c / ‖g_l‖)`` with ‖g_l‖ taken over all leaves of layer l (kernel, bias,
    norm parameters); a layer under the threshold passes through unchanged (bit for bit).
    """

    def clip_layer(g):
        norm = optax.tree.norm(g)
        trigger = norm < max_norm
        return jax.tree.map(lambda t: jnp.where(trigger, t, t / norm.astype(t.dtype) * max_norm), g)

    def update_fn(updates, state, params=None):
        del params
        return map_layers(clip_layer, updates), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def adaptive_clip_by_layer(clipping: float, eps: float = AGC_EPS) -> optax.GradientTransformation:
    """``optax.adaptive_grad_clip`` applied layer by layer, so stacked blocks are not mixed.

    Inside one layer the units are optax's: the columns (fan-in vectors) of a kernel, the whole of a
    bias or norm vector. Applying it to a stacked (L, N, N) kernel directly would take the norm
    across the L layers instead.
    """
    agc = optax.adaptive_grad_clip(clipping, eps)

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("clip='adaptive' needs the parameters: call update(grads, state, params)")
        return map_layers(lambda g, p: agc.update(g, optax.EmptyState(), p)[0], updates, params), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def make_clipper(tc: TrainConfig) -> optax.GradientTransformation:
    """The clipping stage of :func:`make_optimizer` alone (stateless); identity for ``clip="none"``."""
    c = tc.clip_value
    if tc.clip == "global_norm":
        return optax.clip_by_global_norm(c)
    if tc.clip == "value":
        return optax.clip(c)
    if tc.clip == "adaptive":
        return adaptive_clip_by_layer(c)
    if tc.clip == "per_layer":
        return clip_by_layer_norm(c)
    return optax.identity()


# ---- the chain ---------------------------------------------------------------------------------------


def make_schedule(tc: TrainConfig) -> optax.Schedule:
    """Learning rate as a function of the step count (0-based)."""
    if tc.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=tc.learning_rate, warmup_steps=tc.warmup_steps, decay_steps=tc.steps
        )
    if tc.warmup_steps > 0:
        return optax.join_schedules(
            [optax.linear_schedule(0.0, tc.learning_rate, tc.warmup_steps), optax.constant_schedule(tc.learning_rate)],
            [tc.warmup_steps],
        )
    return optax.constant_schedule(tc.learning_rate)


def _direction(tc: TrainConfig) -> optax.GradientTransformation:
    if tc.optimizer == "sgd":
        return optax.identity()
    if tc.optimizer == "momentum":
        return optax.trace(decay=tc.momentum)
    if tc.optimizer in ("adam", "adamw"):
        return optax.scale_by_adam()
    # rmsprop
    rms = optax.scale_by_rms(decay=RMSPROP_DECAY)
    return optax.chain(rms, optax.trace(decay=tc.momentum)) if tc.momentum > 0 else rms


def make_optimizer(tc: TrainConfig) -> optax.GradientTransformation:
    """One optax chain: clip → optimizer direction → masked decoupled weight decay → −η(t).

    Under plain SGD with zero gradient one step multiplies every weight matrix by (1 − η λ) and
    leaves biases and norm parameters unchanged.
    """
    stages = [make_clipper(tc), _direction(tc)]
    if tc.weight_decay > 0:
        stages.append(optax.add_decayed_weights(tc.weight_decay, mask=weight_mask))
    stages.append(optax.scale_by_learning_rate(make_schedule(tc)))
    return optax.chain(*stages)


def penalty(tc: TrainConfig, params: Any) -> jax.Array:
    """Coupled regularization added to the loss: (l2/2)·Σ‖W‖² + l1·Σ|W| over the weight matrices.

    The (1/2) makes the L2 gradient ``l2·W``. Zero (a scalar 0.0) when both coefficients are 0.
    """
    mask = weight_mask(params)
    weights = [p for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if m]
    total = jnp.zeros((), weights[0].dtype if weights else jnp.float32)
    if tc.l2 > 0:
        total = total + 0.5 * tc.l2 * sum(jnp.sum(jnp.square(w)) for w in weights)
    if tc.l1 > 0:
        total = total + tc.l1 * sum(jnp.sum(jnp.abs(w)) for w in weights)
    return total
