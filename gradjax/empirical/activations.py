"""Per-layer activation statistics across seeds: q_l, c_l, saturation, dead units, mean and std.

``q_profile`` is the length map of mean-field theory measured on finite networks: the mean square of
the state h_l carried between blocks (the pre-activation for mlp/rnn; for resmlp the residual stream
h_l itself). ``c_profile`` is the correlation map for two inputs of initial correlation c0.

References:
  Poole et al. 2016, "Exponential expressivity in deep neural networks through transient chaos",
  arXiv:1606.05340 (q and c maps). Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232.
  Lu et al. 2019, "Dying ReLU and Initialization", arXiv:1903.06733 (dead units).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradjax._validate import check_int, check_real
from gradjax.config import NetConfig
from gradjax.empirical._seeds import (block_param_count, data_key, default_inputs, itemsize, map_seeds, normal_draw,
                                      per_seed_inputs)
from gradjax.empirical.propagate import forward_taps
from gradjax.nn.activations import RECTIFIERS, SATURATING, block_activation
from gradjax.nn.ensemble import seed_keys
from gradjax.nn.stack import init_params, input_shape

DEFAULT_BATCH = 64  # examples (or input pairs for c_profile) per seed

# |φ'(x)| below this counts as saturated (the issue's definition; tanh reaches it at |x| ≈ 3.0).
SATURATION_THRESHOLD = 1e-2


class ActivationStats(NamedTuple):
    """Per-layer statistics of φ(preact_l) (entry l-1 is block l); shapes (L,) or (S, L).

    Attributes:
      mean, std: mean and standard deviation of φ(preact) over batch and units.
      saturation: fraction of (example, unit) entries with |φ'(preact)| < 1e-2 (saturating
        activations, see ``gradjax.nn.activations.SATURATING``; nan for the others).
      dead: fraction of units whose pre-activation is ≤ 0 for every example of the batch, i.e. in
        the rectifier's flat or low side for all inputs (``RECTIFIERS``; nan for the others).
    """

    mean: jax.Array
    std: jax.Array
    saturation: jax.Array
    dead: jax.Array


def _phi_per_layer(cfg: NetConfig, params: dict):
    """``pre`` (L, B, N) ↦ φ of every block applied to its own pre-activations."""
    if cfg.arch == "rnn":  # one block shared over time
        return block_activation(cfg, params["blocks"])
    return lambda pre: jax.vmap(lambda p, x: block_activation(cfg, p)(x))(params["blocks"], pre)


def activation_stats_of(cfg: NetConfig, params: dict, x: jax.Array) -> ActivationStats:
    """:class:`ActivationStats` of ONE network (no seed axis) on inputs ``x``; fields (L,)."""
    if cfg.arch == "transformer" and not cfg.mlp:
        raise ValueError("activation_stats needs an activation: arch='transformer' with mlp=True, got mlp=False")
    pre = forward_taps(cfg, params, x).preact  # (L, B, N)
    phi = _phi_per_layer(cfg, params)
    a, dphi = jax.jvp(phi, (pre,), (jnp.ones_like(pre),))  # elementwise φ and φ'
    nan = jnp.full((cfg.depth,), jnp.nan, pre.dtype)
    sat = jnp.mean(jnp.abs(dphi) < SATURATION_THRESHOLD, axis=(1, 2)).astype(pre.dtype) if cfg.activation in SATURATING else nan
    dead = jnp.mean(jnp.all(pre <= 0, axis=1), axis=-1).astype(pre.dtype) if cfg.activation in RECTIFIERS else nan
    return ActivationStats(jnp.mean(a, axis=(1, 2)), jnp.std(a, axis=(1, 2)), sat, dead)


def q_profile_of(cfg: NetConfig, params: dict, x: jax.Array) -> jax.Array:
    """(L,) q_l = mean over batch and units of h_l² for l = 1..L (one network)."""
    return jnp.mean(jnp.square(forward_taps(cfg, params, x).hidden), axis=(1, 2))


def c_profile_of(cfg: NetConfig, params: dict, x1: jax.Array, x2: jax.Array) -> jax.Array:
    """(L,) c_l = ⟨h¹_l, h²_l⟩ / √(⟨h¹_l, h¹_l⟩⟨h²_l, h²_l⟩) per pair, averaged over the P pairs (one network).

    ``x1``, ``x2``: (P, …) paired inputs run in ONE batch of 2P (so batchnorm sees both).
    """
    p = x1.shape[0]
    h = forward_taps(cfg, params, jnp.concatenate([x1, x2], axis=0)).hidden  # (L, 2P, N)
    h1, h2 = h[:, :p], h[:, p:]
    q12 = jnp.mean(h1 * h2, axis=-1)
    q11 = jnp.mean(jnp.square(h1), axis=-1)
    q22 = jnp.mean(jnp.square(h2), axis=-1)
    return jnp.mean(q12 * jax.lax.rsqrt(q11 * q22), axis=-1)


def spatial_covariance_of(cfg: NetConfig, params: dict, x: jax.Array) -> jax.Array:
    """(L, B, P, P) covariance across positions of each example's cnn feature map, over the N channels:
    Σ_l(α, α') = (1/N) Σ_c h_l(α, c) h_l(α', c), P = prod(spatial), positions in row-major order."""
    if cfg.arch != "cnn":
        raise ValueError(f"spatial_covariance needs arch='cnn', got arch={cfg.arch!r}")
    h = forward_taps(cfg, params, x).hidden
    h = h.reshape(h.shape[:2] + (-1, cfg.width))
    return jnp.einsum("lbpc,lbqc->lbpq", h, h, precision=jax.lax.Precision.HIGHEST) / cfg.width


def spatial_covariance(cfg: NetConfig, seeds=8, inputs=None, *, batch: int = 1, max_bytes: int | None = None,
                       seed_batch: int | None = None) -> jax.Array:
    """Covariance across spatial positions of a cnn's h_l, per seed, layer and example.

    The measured counterpart of ``gradjax.theory.conv.spatial_covariance_profile`` (whose C → ∞ limit
    it has for every seed).

    Args:
      cfg: a cnn. seeds: int S, list of ints or key array.
      inputs: None (unit Gaussian), (B, *spatial, in_dim) shared or (S, B, …) per seed.
      batch: B of the default inputs. max_bytes, seed_batch: as in ``gradient_profile``.

    Returns:
      (S, L, B, P, P), P = prod(spatial) (linear units).
    """
    if cfg.arch != "cnn":
        raise ValueError(f"spatial_covariance needs arch='cnn', got arch={cfg.arch!r}")
    p = cfg.state_size // cfg.width
    return _forward_stats(cfg, seeds, inputs, "spatial", batch=batch, max_bytes=max_bytes, seed_batch=seed_batch,
                          extra_bytes=2 * itemsize(cfg) * cfg.depth * p * p)


def token_similarity_of(cfg: NetConfig, params: dict, x: jax.Array) -> jax.Array:
    """(L,) mean cosine similarity between distinct tokens of h_l, averaged over the batch (one network)."""
    if cfg.arch != "transformer" or cfg.tokens < 2:
        raise ValueError(f"token_similarity needs arch='transformer' with tokens >= 2, got arch={cfg.arch!r}")
    h = forward_taps(cfg, params, x).hidden
    h = h.reshape(h.shape[:2] + (cfg.tokens, cfg.width))
    u = h * jax.lax.rsqrt(jnp.sum(jnp.square(h), axis=-1, keepdims=True))
    cos = jnp.einsum("lbtn,lbsn->lbts", u, u, precision=jax.lax.Precision.HIGHEST)
    t = cfg.tokens
    off_diagonal = (jnp.sum(cos, axis=(-2, -1)) - jnp.trace(cos, axis1=-2, axis2=-1)) / (t * (t - 1))
    return jnp.mean(off_diagonal, axis=1)


def token_similarity(cfg: NetConfig, seeds=8, inputs=None, *, batch: int = 4, max_bytes: int | None = None,
                     seed_batch: int | None = None) -> jax.Array:
    """Mean cosine similarity between the tokens of h_l after every block, across seeds.

    ⟨h_t, h_s⟩/(‖h_t‖‖h_s‖) averaged over the T(T−1) ordered pairs t ≠ s and the batch; 1 when the
    tokens have collapsed onto one direction (rank collapse). Theory: ``gradjax.theory.token_similarity``.

    Args:
      cfg: a transformer. seeds: int S, list of ints or key array.
      inputs: None (unit Gaussian tokens), (B, T, in_dim) shared or (S, B, T, in_dim) per seed.
      batch: B of the default inputs. max_bytes, seed_batch: as in ``gradient_profile``.

    Returns:
      (S, L) linear units.

    References: Dong et al. 2021, arXiv:2103.03404; Noci et al. 2022, arXiv:2206.03126.
    """
    if cfg.arch != "transformer" or cfg.tokens < 2:
        raise ValueError(f"token_similarity needs arch='transformer' with tokens >= 2, got arch={cfg.arch!r}")
    return _forward_stats(cfg, seeds, inputs, "tokens", batch=batch, max_bytes=max_bytes, seed_batch=seed_batch)


# Per-network reductions of one forward pass, by name (the ``what`` of _forward_stats).
_PER_NETWORK = {"q": q_profile_of, "stats": activation_stats_of, "spatial": spatial_covariance_of, "tokens": token_similarity_of}


def correlated_inputs(cfg: NetConfig, key: jax.Array, pairs: int, c0: float):
    """Two unit Gaussian input batches with per-component correlation c0: x2 = c0·x1 + √(1−c0²)·z."""
    k1, k2 = jax.random.split(key)
    shape = input_shape(cfg, pairs)
    x1 = normal_draw(k1, shape, cfg.jnp_dtype)
    z = normal_draw(k2, shape, cfg.jnp_dtype)
    return x1, c0 * x1 + jnp.sqrt(1.0 - c0 * c0) * z


def _stats_one(key, x, *, cfg, batch, what):
    params = init_params(cfg, key)
    x = default_inputs(cfg, key, batch) if x is None else x
    return _PER_NETWORK[what](cfg, params, x)


def _c_one(key, *, cfg, pairs, c0):
    params = init_params(cfg, key)
    x1, x2 = correlated_inputs(cfg, jax.random.fold_in(data_key(key), 3), pairs, c0)
    return c_profile_of(cfg, params, x1, x2)


def _per_seed_bytes(cfg: NetConfig, b: int) -> int:
    return 2 * itemsize(cfg) * cfg.depth * (block_param_count(cfg) + 4 * b * cfg.state_size)


def q_profile(cfg: NetConfig, seeds=8, inputs=None, *, batch: int = DEFAULT_BATCH, max_bytes: int | None = None,
              seed_batch: int | None = None) -> jax.Array:
    """Mean squared state per layer across seeds.

    q_l = mean over batch and units of h_l² — the pre-activation for mlp/rnn, the residual stream
    h_l for resmlp (its pre-activation after the norm is normalized by construction).

    Args:
      cfg: the network. seeds: int S, list of ints or key array.
      inputs: None (unit Gaussian, so q_0 ≈ 1), (B, …) shared or (S, B, …) per seed.
      batch: B of the default inputs. max_bytes, seed_batch: as in ``gradient_profile``.

    Returns:
      (S, L) q_l for l = 1..L (linear units).
    """
    return _forward_stats(cfg, seeds, inputs, "q", batch=batch, max_bytes=max_bytes, seed_batch=seed_batch)


def activation_stats(cfg: NetConfig, seeds=8, inputs=None, *, batch: int = DEFAULT_BATCH, max_bytes: int | None = None,
                     seed_batch: int | None = None) -> ActivationStats:
    """:class:`ActivationStats` across seeds, fields (S, L); arguments as :func:`q_profile`."""
    return _forward_stats(cfg, seeds, inputs, "stats", batch=batch, max_bytes=max_bytes, seed_batch=seed_batch)


def _forward_stats(cfg: NetConfig, seeds, inputs, what: str, *, batch, max_bytes, seed_batch, extra_bytes=0):
    """One forward pass per seed (chunked over seeds), reduced to ``what`` (a key of ``_PER_NETWORK``);
    ``extra_bytes`` per example for what the reduction keeps."""
    check_int("batch", batch)
    keys = seed_keys(seeds)
    x, ax = per_seed_inputs(cfg, inputs, keys.shape[0])
    b = batch if x is None else x.shape[1 if ax == 0 else 0]
    return map_seeds(_stats_one, (("cfg", cfg), ("batch", b), ("what", what)), keys, (x,), (ax,),
                     per_seed_bytes=_per_seed_bytes(cfg, b) + b * extra_bytes, max_bytes=max_bytes,
                     seed_batch=seed_batch)


def c_profile(cfg: NetConfig, seeds=8, c0: float = 0.5, *, pairs: int = DEFAULT_BATCH, max_bytes: int | None = None,
              seed_batch: int | None = None) -> jax.Array:
    """Correlation of two inputs with initial correlation c0, per layer, across seeds.

    c_l = q12_l / √(q11_l q22_l) with q_ab = mean over units of h^a_l h^b_l (uncentered, as in the
    mean-field c-map), averaged over ``pairs`` independent input pairs per seed, drawn from the
    seed's data stream (x2 = c0·x1 + √(1−c0²)·z).

    Returns:
      (S, L) c_l for l = 1..L.
    """
    check_real("c0", c0, minimum=-1.0, maximum=1.0)
    check_int("pairs", pairs)
    keys = seed_keys(seeds)
    return map_seeds(_c_one, (("cfg", cfg), ("pairs", pairs), ("c0", float(c0))), keys, (), (),
                     per_seed_bytes=_per_seed_bytes(cfg, 2 * pairs), max_bytes=max_bytes, seed_batch=seed_batch)
