"""Per-layer gradient norms across seeds: ``grad_norms`` (one network) and ``gradient_profile`` (S seeds).

For every block l = 1..L the backward walk (:mod:`gradjax.empirical.propagate`) gives
log10 ‖∂loss/∂h_l‖ (the δ_l of mean-field theory, Frobenius norm over batch and units) and
log10 ‖∂loss/∂θ_l‖ for every parameter θ of block l. Norms are carried in log space, so a
1,000-layer exploding or vanishing network gives finite values.

Comparing with mean-field theory: ``GradNorms.relative()`` is log10 ‖δ_l‖/‖δ_L‖, the quantity
``gradjax.theory.gradient_profile`` predicts, and the defaults of the two are the same (the
projection loss ⟨y, t⟩/B with unit Gaussian t, batch ``DEFAULT_BATCH``). The δ recursion (‖δ_l‖²
changes by χ₁ per layer) assumes an output cotangent independent of the weights, which the projection
loss gives (cotangent t/B). With ``loss="mse"`` the residual y − t carries the forward signal, so
‖δ_l‖² also picks up the second moment of the product of the layer matrices, which grows with L − l
(measured: a linear net at σ_w² = 1, N = 256, L = 16 gains a factor ≈ 6 in ‖δ_1‖²/‖δ_L‖²; relu at
He init rises ≈ 0.5 decades over the top layers); the theory refuses that loss.

References:
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232 (δ_l grows by √χ₁ per layer).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradjax._validate import check_choice, check_int
from gradjax.config import BACKWARDS, DEFAULT_BATCH, NetConfig
from gradjax.empirical._seeds import (backward_key, block_param_count, data_key, default_inputs, itemsize, map_seeds,
                                      normal_draw, per_seed_inputs)
from gradjax.empirical.losses import DEFAULT_LOSS, loss_fn
from gradjax.empirical.propagate import backward_walk, forward_taps, loss_cotangent, segmented_walk
from gradjax.nn.ensemble import seed_keys
from gradjax.nn.regenerate import keyed_params
from gradjax.nn.stack import KEYED_ARCHS, check_segment, init_params


#: How :func:`gradient_profile` holds the block kernels (see ``gradjax.nn.regenerate``).
GRADIENT_WEIGHTS = ("stored", "regenerated")
#: Where the independent copy is gradient independence itself: each block's Jacobian is its weights times
#: an elementwise derivative at the forward pass's state, so the copy's weights with the real derivatives
#: are the setting of the mean-field δ recursion. (A post-norm or batchnorm Jacobian would be taken at the
#: copy's own statistics; an rnn reuses one W over time.)
INDEPENDENT_BACKWARD_ARCHS = ("mlp", "resmlp", "cnn")


def _check_backward(cfg: NetConfig, backward) -> None:
    check_choice("backward", backward, BACKWARDS)
    if backward == "independent" and (cfg.arch not in INDEPENDENT_BACKWARD_ARCHS or cfg.norm != "none"):
        field, value, allowed = (("arch", cfg.arch, list(INDEPENDENT_BACKWARD_ARCHS)) if cfg.arch not in
                                 INDEPENDENT_BACKWARD_ARCHS else ("norm", cfg.norm, ["none"]))
        raise ValueError(
            f"backward='independent' needs {field} in {allowed}, got {field}={value!r}: the control replaces each "
            "block's weights by an independent copy at the forward pass's derivatives, which is gradient "
            "independence only for dense and conv blocks without a norm (a norm's Jacobian would be taken at the "
            "copy's statistics; an rnn reuses one W at every step)")


class GradNorms(NamedTuple):
    """Per-layer gradient norms (log10), for one network (shapes below) or with a leading seed axis S.

    Attributes:
      hidden: (L,) log10 ‖∂loss/∂h_l‖ for l = 1..L (entry l-1 is the output of block l; rnn: time step l).
      weights: (L,) log10 ‖∂loss/∂W_l‖ of block l's kernel (rnn: the contribution of time step l to
        the gradient of the shared W).
      biases: (L,) log10 ‖∂loss/∂b_l‖.
      params: dict parameter name → (L,) log10 norms for every block parameter (kernel, bias, and
        where present slope, norm_scale, norm_bias).
      input: () log10 ‖∂loss/∂h_0‖ (h_0: the state entering block 1).
      loss: () the loss value (linear units).
    """

    hidden: jax.Array
    weights: jax.Array
    biases: jax.Array
    params: dict
    input: jax.Array
    loss: jax.Array

    def relative(self) -> jax.Array:
        """(…, L) log10 ‖∂loss/∂h_l‖ − log10 ‖∂loss/∂h_L‖: the quantity ``gradjax.theory.gradient_profile``
        predicts (0 at the last layer), with the seed axis if there is one."""
        return relative_profile(self.hidden)


def relative_profile(log_norms):
    """Per-layer log10 norms relative to the last layer: (…, L) → (…, L), entry L−1 exactly 0.

    ``log_norms[..., l] − log_norms[..., -1]``: the units of ``gradjax.theory.gradient_profile``. Works
    on JAX and NumPy arrays alike (returns the input's array type), so stored results use it too.
    """
    return log_norms - log_norms[..., -1:]


def grad_norms(cfg: NetConfig, params: dict, x: jax.Array, targets: jax.Array, loss=DEFAULT_LOSS, *,
               segment: int | None = None, backward_blocks=None) -> GradNorms:
    """Per-layer log10 gradient norms of ONE network (no seed axis): pure, jittable, vmappable.

    Args:
      cfg: the network (static under jit).
      params: its parameters (``gradjax.nn.init_params``, or with the blocks held as keys:
        ``gradjax.nn.regenerate.keyed_params``), no seed axis.
      x: (B, in_dim), or (B, L, in_dim) for rnn.
      targets: what ``loss`` takes: (B, out_dim) for projection and mse, (B,) int labels or (B, out_dim)
        for xent.
      loss: "projection" (default, ⟨y, t⟩/B) | "mse" | "xent" | a callable ``f(y, targets) -> scalar``
        (see :mod:`gradjax.empirical.losses`).
      segment: None (every state kept for the backward sweep: memory ∝ L) or K, a divisor of the depth:
        rematerialization (:func:`gradjax.empirical.propagate.segmented_walk`), one state kept per K
        blocks and each segment re-run in the backward sweep: memory ∝ L/K + 3K, the same norms up to
        rounding.
      backward_blocks: None (the network's own blocks: the gradient), or block parameters shaped like
        ``params["blocks"]`` whose Jacobians the backward sweep takes instead, at the forward pass's states
        (mlp, resmlp, cnn without a norm). An independent copy gives the gradient-independence control of
        :func:`gradient_profile`.

    Returns:
      :class:`GradNorms` with (L,) fields, log10 units.
    """
    if backward_blocks is not None:
        _check_backward(cfg, "independent")
    f = loss_fn(loss)
    cotangent = lambda h_L: loss_cotangent(cfg, params, h_L, targets, f)  # noqa: E731
    if segment is None:
        fwd = forward_taps(cfg, params, x)
        value, g_L = cotangent(fwd.hidden[-1])
        if backward_blocks is not None:
            fwd = fwd._replace(xs=backward_blocks)
        walk = backward_walk(cfg, params, fwd, g_L, param_norms=True)
    else:
        value, walk = segmented_walk(cfg, params, x, cotangent, segment, param_norms=True,
                                     backward_blocks=backward_blocks)
    return GradNorms(walk.log_out, walk.log_params["kernel"], walk.log_params["bias"], walk.log_params, walk.log0, value)


def log10_cotangents(cfg: NetConfig, params: dict, x: jax.Array, targets: jax.Array, loss=DEFAULT_LOSS) -> jax.Array:
    """log10 |∂loss/∂h_l| of every example and unit, l = 1..L, of ONE network (no seed axis).

    The per-element form of :func:`grad_norms` (the same backward walk, kept at every layer): its
    magnitudes are finite at any depth, −inf where a cotangent is exactly 0 (e.g. relu units off).

    Args: as :func:`grad_norms`.

    Returns:
      (L, B, N) log10 units; entry l−1 for h_l.
    """
    fwd = forward_taps(cfg, params, x)
    _, g_L = loss_cotangent(cfg, params, fwd.hidden[-1], targets, loss_fn(loss))
    walk = backward_walk(cfg, params, fwd, g_L, keep=True)
    # unit_in[l] is the unit cotangent at h_l (l = 0..L−1) with log10 scale log_in[l]; δ_L is g_L itself.
    unit = jnp.concatenate([walk.unit_in[1:], g_L[None]], axis=0)
    scale = jnp.concatenate([walk.log_in[1:], jnp.zeros((1,), unit.dtype)])
    nonzero = unit != 0
    return jnp.where(nonzero, jnp.log10(jnp.where(nonzero, jnp.abs(unit), 1.0)) + scale[:, None, None], -jnp.inf)


def default_targets(cfg: NetConfig, key: jax.Array, batch: int, loss) -> jax.Array:
    """Targets drawn from the seed's data key: integer labels uniform in [0, out_dim) for "xent",
    unit Gaussian (B, out_dim) otherwise (projection, mse and callables)."""
    k = jax.random.fold_in(data_key(key), 1)
    if isinstance(loss, str) and loss == "xent":
        return jax.random.randint(k, (batch,), 0, cfg.out_dim)
    return normal_draw(k, (batch, cfg.out_dim), cfg.jnp_dtype)


def _seed_params(cfg, key, weights):
    params = init_params(cfg, key)
    return keyed_params(cfg, key, params) if weights == "regenerated" else params


def _profile_one(key, x, t, *, cfg, loss, batch, segment=None, weights="stored", backward="shared"):
    params = _seed_params(cfg, key, weights)
    x = default_inputs(cfg, key, batch) if x is None else x
    t = default_targets(cfg, key, x.shape[0], loss) if t is None else t
    copy = _seed_params(cfg, backward_key(key), weights)["blocks"] if backward == "independent" else None
    return grad_norms(cfg, params, x, t, loss, segment=segment, backward_blocks=copy)


def gradient_profile(cfg: NetConfig, seeds=8, inputs=None, targets=None, loss=DEFAULT_LOSS, *, batch: int = DEFAULT_BATCH,
                     max_bytes: int | None = None, seed_batch: int | None = None, segment: int | None = None,
                     weights: str = "stored", backward: str = "shared") -> GradNorms:
    """Per-layer gradient norms of S freshly initialized networks, at once (vmapped over seeds).

    Seed k's parameters are ``init_params(cfg, jax.random.key(k))`` (member k of
    ``gradjax.nn.make_ensemble``). Default data: unit Gaussian inputs and (projection, mse) unit
    Gaussian targets / (xent) uniform integer labels, drawn from the seed's own data stream. At the
    defaults, ``.relative()`` of the result and ``gradjax.theory.gradient_profile(cfg)`` are the same
    quantity under the same loss and batch.

    Args:
      cfg: the network.
      seeds: int S, a list of ints, or a key array (S,).
      inputs: None (default data), (B, …) shared by all seeds, or (S, B, …) one batch per seed.
      targets: None (default targets), or targets with a leading seed axis S exactly when ``inputs`` has one.
      loss: "projection" (default: ⟨y, t⟩/B, the loss the mean-field theory models) | "mse" | "xent" |
        callable ``f(y, targets) -> scalar``.
      batch: B of the default inputs (``gradjax.config.DEFAULT_BATCH``, the theory's default too).
      max_bytes: memory budget of one chunk of seeds (default: half the device's free memory, 2 GiB on CPU).
      seed_batch: seeds vmapped together (default 1 on CPU, 32 on accelerators); results are
        bit-identical for any ``max_bytes`` at a fixed ``seed_batch``.
      segment: None, or K dividing the depth: rematerialization as in :func:`grad_norms` (memory of the
        states ∝ L/K + 3K instead of 3L; ``gradjax.empirical.propagate.segment_length`` gives K ≈ √L).
      weights: "stored" (each network's L kernels drawn, then walked) or "regenerated" (each kernel
        drawn from its block's key inside each sweep: O(one kernel) instead of O(L kernels) per
        network, the same values; mlp, resmlp and cnn). With ``segment`` too, no array of size ∝ L
        beyond the L/K kept states remains.
      backward: "shared" (default: the gradient, back-propagated through the network's own weights) or
        "independent": the gradient-independence control. The same networks, inputs and forward pass,
        with each block's backward Jacobian W_lᵀ D_{l−1} taken with an independent copy W′_l of its
        weights (drawn from the seed's key by :func:`gradjax.empirical._seeds.backward_key`) at the real
        derivatives D_{l−1}. This is the setting of the mean-field δ recursion and of
        ``gradjax.theory.gradient_spread``; the difference from "shared" measures what the weights shared
        by the two passes do (``gradjax.theory.gradients``, module docstring). mlp, resmlp and cnn without
        a norm (ValueError otherwise). The weight and bias norms are those of W′'s δ with the real inputs.

    Returns:
      :class:`GradNorms` with a leading seed axis: ``hidden``, ``weights``, ``biases`` (S, L) log10;
      ``.relative()`` (S, L) log10 ‖δ_l‖/‖δ_L‖.
    """
    check_int("batch", batch)
    check_choice("weights", weights, GRADIENT_WEIGHTS)
    _check_backward(cfg, backward)
    if weights == "regenerated" and cfg.arch not in KEYED_ARCHS:
        raise ValueError(f"weights='regenerated' needs arch in {list(KEYED_ARCHS)} (blocks with their own keys), got {cfg.arch!r}")
    if segment is not None:
        check_segment(cfg, segment)
    keys = seed_keys(seeds)
    n = keys.shape[0]
    x, x_axis = per_seed_inputs(cfg, inputs, n)
    # Targets carry a seed axis exactly when the inputs do (per-seed targets need per-seed inputs).
    t, t_axis = (None, None) if targets is None else (jnp.asarray(targets), x_axis)
    if t_axis == 0 and t.shape[0] != n:
        raise ValueError(f"targets must have a leading seed axis of size {n} like the inputs, got {tuple(t.shape)}")
    b = batch if x is None else x.shape[1 if x_axis == 0 else 0]
    if isinstance(loss, str):
        loss_fn(loss)  # validate the name before tracing
    # Working set of one seed: parameters, taps (h_l and preact, kept for the backward sweep) and
    # the transient cotangents of one block; ×2 for XLA temporaries.
    d, L = cfg.state_size, cfg.depth
    states = 3 * L if segment is None else L // segment + 3 * segment
    blocks = (L if weights == "stored" else 1) * (2 if backward == "independent" else 1)
    per_seed = 2 * itemsize(cfg) * (blocks * block_param_count(cfg) + states * b * d + 4 * b * max(d, cfg.in_dim))
    static = (("cfg", cfg), ("loss", loss), ("batch", b), ("segment", segment), ("weights", weights),
              ("backward", backward))
    return map_seeds(_profile_one, static, keys, (x, t), (x_axis, t_axis), per_seed_bytes=per_seed,
                     max_bytes=max_bytes, seed_batch=seed_batch)


# ---- fits along depth ----------------------------------------------------------------------------

def fitted_slope(values: jax.Array, *, start: int = 0, stop: int | None = None) -> jax.Array:
    """Least-squares slope of ``values`` against the layer index, fitted over layers [start, stop).

    Args:
      values: (…, L) per-layer values, e.g. log10 norms (layer index = last axis).

    Returns:
      (…) slope per layer (log10 units per layer for log10 norms).
    """
    v = values[..., start:stop]
    l = jnp.arange(v.shape[-1], dtype=v.dtype)
    lc = l - jnp.mean(l)
    vc = v - jnp.mean(v, axis=-1, keepdims=True)
    return jnp.matmul(vc, lc) / jnp.dot(lc, lc)  # contracts the layer axis of any (…, L) input


def growth_rate(log_norms: jax.Array, *, start: int = 0, stop: int | None = None) -> jax.Array:
    """Per-layer log10 growth of a gradient travelling backward (from h_L towards h_0).

    ``= −fitted_slope``: mean-field theory predicts ½·log10 χ₁ for log10 ‖∂loss/∂h_l‖
    (Schoenholz et al. 2017, arXiv:1611.01232, Eq. 12: ‖δ_l‖² changes by χ₁ per layer).

    Args:
      log_norms: (…, L) log10 norms, entry l-1 for layer l.

    Returns:
      (…) log10 factor per layer.
    """
    return -fitted_slope(log_norms, start=start, stop=stop)


