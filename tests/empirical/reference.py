"""Naive references written independently of the walker: per-seed jax.grad / jax.jacrev / svd.

They run the network block by block with ``gradjax.nn.blocks.block_apply`` in a Python loop and
differentiate the whole thing at once — what a user writes by hand.
"""

import jax
import jax.numpy as jnp
import numpy as np

from gradjax.nn.blocks import block_apply
from gradjax.nn.stack import readout, unroll


def to64(cfg, params):
    """The same network in float64 (parameters cast), for exact references of float32 runs."""
    return cfg.with_(dtype="float64"), jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)


def _step_params(cfg, params, xs):
    """Per-step block parameters (L, …); the rnn's shared block is copied L times so that jax.grad
    returns each time step's contribution separately."""
    if cfg.arch == "rnn":
        return jax.tree.map(lambda a: jnp.broadcast_to(a, (cfg.depth,) + a.shape), params["blocks"]), xs["drive"]
    return params["blocks"], None


def run_blocks(cfg, params, x, pstack=None, eps=None):
    """h_L from x, with optional per-step parameters ``pstack`` and additive probes ``eps`` (L, B, N) on h_l."""
    h, xs = unroll(cfg, params, x)
    ps, drive = _step_params(cfg, params, xs)
    ps = ps if pstack is None else pstack
    for l in range(cfg.depth):
        p_l = jax.tree.map(lambda a: a[l], ps)
        h = block_apply(cfg, p_l, h, None if drive is None else drive[l])
        if eps is not None:
            h = h + eps[l]
    return h


def reference_grad_norms(cfg, params, x, targets, loss):
    """(hidden (L,), {param: (L,)}) linear norms of ∂loss/∂h_l and ∂loss/∂θ_l by jax.grad."""
    h0, xs = unroll(cfg, params, x)
    ps, _ = _step_params(cfg, params, xs)
    eps = jnp.zeros((cfg.depth,) + h0.shape, h0.dtype)

    def f(pstack, e):
        return loss(readout(cfg, params, run_blocks(cfg, params, x, pstack, e)), targets)

    gp, ge = jax.grad(f, argnums=(0, 1))(ps, eps)
    hidden = np.sqrt(np.sum(np.square(np.asarray(ge)), axis=(1, 2)))
    per = {k: np.sqrt(np.sum(np.square(np.asarray(v)).reshape(cfg.depth, -1), axis=1)) for k, v in gp.items()}
    return hidden, per


def reference_jacobians(cfg, params, x):
    """(L, N, N) ∂h_L[0]/∂h_l[0] for l = 0..L−1 by jax.jacrev of the sub-network (example 0;
    with batchnorm the other examples stay in the batch, held fixed)."""
    h, xs = unroll(cfg, params, x)
    ps, drive = _step_params(cfg, params, xs)
    states = [h]
    for l in range(cfg.depth):
        h = block_apply(cfg, jax.tree.map(lambda a: a[l], ps), h, None if drive is None else drive[l])
        states.append(h)
    out = []
    for l in range(cfg.depth):
        def sub(v, l=l):
            hh = states[l].at[0].set(v)
            for m in range(l, cfg.depth):
                hh = block_apply(cfg, jax.tree.map(lambda a: a[m], ps), hh, None if drive is None else drive[m])
            return hh[0]

        out.append(np.asarray(jax.jacrev(sub)(states[l][0])))
    return np.stack(out)


def singular_values(j):
    return np.linalg.svd(np.asarray(j, np.float64), compute_uv=False)
