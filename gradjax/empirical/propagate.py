"""The walker: forward taps and a blockwise backward sweep with log-scaled cotangents.

Any network of the zoo is a stack ``h_0 → h_1 → … → h_L`` of blocks (``gradjax.nn.stack``:
``unroll`` / ``step`` / ``readout``). The forward sweep records every state ``h_l``. The backward
sweep runs ``jax.vjp`` of one block at a time under ``jax.lax.scan`` (reverse), so it needs no
per-architecture Jacobian code. The cotangent is carried as ``(u, s)`` with ``‖u‖_F = 1`` and
``s = log10`` of its norm: one block multiplies the norm by a moderate factor, so ``u`` never
overflows or underflows, and ``s`` holds magnitudes like 10^±300 (or far beyond) exactly as a sum of
per-block log-factors. A cotangent with leading "basis" axes (``cot_L`` of shape (K, …, B, N)) is
pushed through the same sweep with ``jax.vmap`` over the block's vjp: with the N basis vectors at
``h_L`` the sweep yields every per-layer Jacobian ``∂h_L/∂h_l`` (one matrix-matrix product per block).

States are flattened per example, (B, D) with D = ``cfg.state_size`` (N·H·W for a cnn's feature map,
T·N for a transformer's tokens), so the walk is the same for every block type.

References:
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232 (δ_l = ∂loss/∂h_l).
  Pennington et al. 2017, "Resurrecting the sigmoid in deep learning through dynamical isometry",
  arXiv:1711.04735 (spectra of the input-output Jacobian).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from gradjax.config import NetConfig
from gradjax.nn.regenerate import BlockKeys
from gradjax.nn.stack import check_segment, readout, step, unroll


class Forward(NamedTuple):
    """What the forward sweep records.

    Attributes:
      h0: (B, N) state entering block 1.
      xs: per-step inputs of ``unroll`` (block parameters (L, …) for mlp/resmlp; ``{"drive": (L, B, N)}`` for rnn).
      hidden: (L, B, N) ``h_l`` after block l (entry l-1).
      preact: (L, B, N) argument of φ inside block l (entry l-1).
    """

    h0: jax.Array
    xs: object
    hidden: jax.Array
    preact: jax.Array

    @property
    def inputs(self) -> jax.Array:
        """(L, B, N): the state entering each block, ``h_{l-1}`` at entry l-1."""
        return jnp.concatenate([self.h0[None], self.hidden[:-1]], axis=0)


class Walk(NamedTuple):
    """Result of :func:`backward_walk` (log10 units throughout).

    Attributes:
      log_out: (L,) log10 ‖cotangent at h_l‖ for l = 1..L (entry l-1), i.e. arriving at block l.
      log_params: dict name → (L,) log10 ‖cotangent of block l's parameter‖ (empty if not asked).
      u0, log0: the cotangent at h_0 as unit tensor and log10 norm.
      unit_in, log_in: (L, …) the cotangent at h_{l-1} (entry l-1) leaving block l backwards, as unit
        tensors and log10 norms; ``None`` unless ``keep=True``.
    """

    log_out: jax.Array
    log_params: dict
    u0: jax.Array
    log0: jax.Array
    unit_in: jax.Array | None
    log_in: jax.Array | None


def forward_taps(cfg: NetConfig, params: dict, x: jax.Array) -> Forward:
    """Forward sweep under ``lax.scan`` recording every ``h_l`` and pre-activation.

    Args:
      cfg: the network. params: one network's parameters (no seed axis); ``params["blocks"]`` may be a
        :class:`gradjax.nn.regenerate.BlockKeys` (each block drawn inside the step that uses it).
      x: (B, in_dim) or (B, L, in_dim) for rnn.
    """
    h0, xs = unroll(cfg, params, x)
    return sweep(cfg, params, h0, xs)


def _block(cfg: NetConfig, params: dict, x_l, h: jax.Array):
    return step(cfg, params, x_l if cfg.arch == "rnn" else block_params(cfg, params, x_l), h)


def sweep(cfg: NetConfig, params: dict, h0: jax.Array, xs) -> Forward:
    """The blocks of ``xs`` (leading axis: any number of consecutive blocks) run from ``h0``, every state recorded."""

    def body(h, x_l):
        h_next, pre = _block(cfg, params, x_l, h)
        return h_next, (h_next, pre)

    _, (hidden, preact) = jax.lax.scan(body, h0, xs)
    return Forward(h0, xs, hidden, preact)


def final_state(cfg: NetConfig, params: dict, h0: jax.Array, xs) -> jax.Array:
    """The state after the blocks of ``xs`` from ``h0``, recording nothing: memory flat in their number."""
    return jax.lax.scan(lambda h, x_l: (_block(cfg, params, x_l, h)[0], None), h0, xs)[0]


def block_params(cfg: NetConfig, params: dict, x_l):
    """The parameters of one block: the scanned slice (mlp/resmlp), drawn here from its key when the
    blocks are held as keys (:class:`gradjax.nn.regenerate.BlockKeys`), or the shared block (rnn)."""
    if cfg.arch == "rnn":
        return params["blocks"]
    return x_l.draw_block() if isinstance(x_l, BlockKeys) else x_l


def apply_block(cfg: NetConfig, p: dict, x_l, h: jax.Array) -> jax.Array:
    """``h_l`` from ``h_{l-1}`` with the block parameters ``p`` passed explicitly (to differentiate them)."""
    if cfg.arch == "rnn":
        return step(cfg, {"blocks": p}, x_l, h)[0]
    return step(cfg, {}, p, h)[0]


def normalize(g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``g`` → ``(g/‖g‖_F, log10 ‖g‖_F)``; an all-zero ``g`` gives ``(0, −inf)``, a ``g`` with a nan or
    inf entry (a diverged seed) gives a nan log-norm — recorded as failed, never as a vanished gradient.

    The tensor is first divided by its max-abs entry: Σg² of a float32 tensor with entries near
    1e±20 would over/underflow although the norm itself is representable.
    """
    m = jnp.max(jnp.abs(g))
    nonzero = m > 0
    safe_m = jnp.where(nonzero, m, jnp.ones_like(m))
    gs = g / safe_m
    n = jnp.sqrt(jnp.sum(jnp.square(gs)))  # in [1, sqrt(g.size)] when g ≠ 0
    safe_n = jnp.where(nonzero, n, jnp.ones_like(n))
    log = jnp.where(nonzero, jnp.log10(safe_n) + jnp.log10(safe_m), -jnp.inf)
    return gs / safe_n, jnp.where(jnp.isfinite(m) | (m == 0), log, jnp.nan)


def log10_norm(g: jax.Array) -> jax.Array:
    """log10 of the Frobenius norm of ``g`` (−inf for an all-zero tensor), overflow-safe."""
    return normalize(g)[1]


def backward_walk(cfg: NetConfig, params: dict, fwd: Forward, cot_L: jax.Array, *, param_norms: bool = False,
                  keep: bool = False, basis_ndim: int = 0, log_scale=0.0) -> Walk:
    """Blockwise backward sweep ``h_L → h_0`` with ``jax.vjp`` per block under a reverse ``lax.scan``.

    Args:
      cfg: the network. params: one network's parameters. fwd: :func:`forward_taps` of the same input.
      cot_L: cotangent at ``h_L``, shape (B, N), or (K…, B, N) with ``basis_ndim`` leading basis axes
        (each slice is an independent cotangent; one log-scale is carried for the whole tensor).
      param_norms: also return log10 ‖cotangent‖ of every block parameter (``basis_ndim`` must be 0).
      keep: also return the cotangent at every ``h_{l-1}`` (memory (L, K…, B, N)); a callable
        ``keep(u)`` returns only what it selects from each unit cotangent (e.g. one example's slice).
      basis_ndim: number of leading basis axes of ``cot_L``.
      log_scale: () log10 factor the cotangent carries besides ``cot_L`` (the walk starts from
        ``10**log_scale · cot_L``; a walk continued from another's ``(u0, log0)``).

    Returns:
      A :class:`Walk`. Multiply ``unit`` by ``10**log`` for the cotangent itself.
    """
    if param_norms and basis_ndim:
        raise ValueError(f"param_norms needs basis_ndim=0 (one cotangent), got basis_ndim={basis_ndim}")
    u_L, s_L = normalize(cot_L)
    s_L = s_L + log_scale

    def body(carry, inp):
        u, s = carry
        x_l, h_prev = inp
        p = block_params(cfg, params, x_l)
        if param_norms:
            _, vjp = jax.vjp(lambda p_, h_: apply_block(cfg, p_, x_l, h_), p, h_prev)
            g_p, g_h = vjp(u)
            logp = {k: log10_norm(v) + s for k, v in g_p.items()}
        else:
            _, vjp = jax.vjp(lambda h_: apply_block(cfg, p, x_l, h_), h_prev)
            f = lambda c: vjp(c)[0]  # noqa: E731
            for _ in range(basis_ndim):
                f = jax.vmap(f)
            g_h = f(u)
            logp = {}
        u_next, ds = normalize(g_h)
        s_next = s + ds
        out = (s, logp) + (((keep(u_next) if callable(keep) else u_next), s_next) if keep else ())
        return (u_next, s_next), out

    (u0, s0), outs = jax.lax.scan(body, (u_L, s_L), (fwd.xs, fwd.inputs), reverse=True)
    unit_in, log_in = (outs[2], outs[3]) if keep else (None, None)
    return Walk(outs[0], outs[1], u0, s0, unit_in, log_in)


def segment_length(depth: int) -> int:
    """The divisor K of ``depth`` closest to √depth (the smaller on a tie): the segment of
    :func:`segmented_walk` that balances its L/K kept starts against the 2K states of one segment."""
    return min((k for k in range(1, depth + 1) if depth % k == 0), key=lambda k: (abs(k - math.sqrt(depth)), k))


def segmented_walk(cfg: NetConfig, params: dict, x: jax.Array, cotangent: Callable, segment: int, *,
                   param_norms: bool = False, backward_blocks=None):
    """:func:`forward_taps` then :func:`backward_walk` with rematerialization: one state kept per segment.

    The forward sweep keeps only the state entering each of the L/K segments of K = ``segment``
    consecutive blocks (:func:`final_state`: nothing recorded inside a segment). The backward sweep
    visits the segments in reverse, re-runs each one's K blocks from its kept start (:func:`sweep`)
    and walks back through them with :func:`backward_walk`, carrying the unit cotangent and its log10
    scale from segment to segment. Peak memory holds about L/K + 3K states (B, D) — the kept starts,
    then one segment's taps and their shifted copy — instead of the stored walk's 3L: 4√L states at
    K = :func:`segment_length` (L = 10,000: 400 instead of 30,000), for one more forward sweep.
    With the blocks held as keys (:class:`gradjax.nn.regenerate.BlockKeys`) no O(L·N²) array remains.
    The outputs equal the stored walk's up to one renormalization of the unit cotangent per segment.

    Args:
      cfg: the network (any arch). params: one network's parameters (no seed axis).
      x: its input batch (as :func:`forward_taps`).
      cotangent: ``h_L (B, D) -> (aux, cot_L (B, D))``, e.g. the loss value and ∂loss/∂h_L.
      segment: K, a positive divisor of ``cfg.depth``.
      param_norms: as :func:`backward_walk`.
      backward_blocks: None, or block parameters shaped like ``params["blocks"]`` (mlp, resmlp, cnn) whose
        Jacobians the backward sweep takes at the forward pass's states (an independent copy: the
        gradient-independence control, :func:`gradjax.empirical.gradient_profile`).

    Returns:
      ``(aux, Walk)`` with ``log_out`` (L,), ``log_params`` (L,) each, ``u0``, ``log0``; no kept cotangents.

    References:
      Chen, Xu, Zhang & Guestrin 2016, "Training Deep Nets with Sublinear Memory Cost", arXiv:1604.06174.
    """
    check_segment(cfg, segment)
    h0, xs = unroll(cfg, params, x)
    n_seg = cfg.depth // segment
    split = lambda t: jax.tree.map(lambda a: a.reshape((n_seg, segment) + a.shape[1:]), t)  # noqa: E731
    xs_seg = split(xs)
    back_seg = xs_seg if backward_blocks is None else split(backward_blocks)
    h_L, starts = jax.lax.scan(lambda h, xs_s: (final_state(cfg, params, h, xs_s), h), h0, xs_seg)
    aux, cot_L = cotangent(h_L)
    u_L, s_L = normalize(cot_L)

    def back(carry, inp):
        start, xs_s, back_s = inp
        fwd = sweep(cfg, params, start, xs_s)._replace(xs=back_s)
        w = backward_walk(cfg, params, fwd, carry[0], param_norms=param_norms, log_scale=carry[1])
        return (w.u0, w.log0), (w.log_out, w.log_params)

    (u0, s0), (log_out, log_params) = jax.lax.scan(back, (u_L, s_L), (starts, xs_seg, back_seg), reverse=True)
    merge = lambda a: a.reshape((cfg.depth,) + a.shape[2:])  # noqa: E731
    return aux, Walk(merge(log_out), jax.tree.map(merge, log_params), u0, s0, None, None)


def loss_cotangent(cfg: NetConfig, params: dict, h_L: jax.Array, targets: jax.Array, loss) -> tuple[jax.Array, jax.Array]:
    """``(loss value, ∂loss/∂h_L)`` through the readout; ``loss`` is a callable ``f(y, targets)``."""
    value, vjp = jax.vjp(lambda h: loss(readout(cfg, params, h), targets), h_L)
    return value, vjp(jnp.ones_like(value))[0]
