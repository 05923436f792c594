"""Naive references written independently of the walker: per-seed jax.grad / jax.jacrev / svd.

They run the network block by block with ``gradjax.nn.blocks.block_apply`` in a Python loop and
differentiate the whole thing at once — what a user writes by hand. Each is one ``jax.jit`` program
taking the config as a pytree (its structure static, its numbers traced), so the cases of a test
module that share a structure and shapes (e.g. the float64 reference of a float32 and of a float64
run) share one compilation instead of compiling every primitive eagerly.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gradjax.nn.blocks import block_apply
from gradjax.nn.stack import readout, unroll

# A reference runs once per case on a few dozen numbers: LLVM's optimisation passes buy nothing at run
# time and cost about a third of its compilation (the 14 references of test_jacobians.py: 11.2 → 7.9
# CPU s). The arithmetic is IEEE at every level (XLA's CPU backend uses no fast-math by default).
_COMPILE_OPTIONS = {"xla_backend_optimization_level": 0}


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


@functools.partial(jax.jit, static_argnums=4, compiler_options=_COMPILE_OPTIONS)
def _grads(cfg, params, x, targets, loss):
    """(∂loss/∂θ per step (L, …), ∂loss/∂h_l (L, B, N)) by one jax.grad of the whole network."""
    h0, xs = unroll(cfg, params, x)
    ps, _ = _step_params(cfg, params, xs)
    eps = jnp.zeros((cfg.depth,) + h0.shape, h0.dtype)

    def f(pstack, e):
        return loss(readout(cfg, params, run_blocks(cfg, params, x, pstack, e)), targets)

    return jax.grad(f, argnums=(0, 1))(ps, eps)


def reference_grad_norms(cfg, params, x, targets, loss):
    """(hidden (L,), {param: (L,)}) linear norms of ∂loss/∂h_l and ∂loss/∂θ_l by jax.grad."""
    gp, ge = _grads(cfg, params, x, targets, loss)
    hidden = np.sqrt(np.sum(np.square(np.asarray(ge)), axis=(1, 2)))
    per = {k: np.sqrt(np.sum(np.square(np.asarray(v)).reshape(cfg.depth, -1), axis=1)) for k, v in gp.items()}
    return hidden, per


@functools.partial(jax.jit, compiler_options=_COMPILE_OPTIONS)
def reference_jacobians(cfg, params, x):
    """(L, N, N) ∂h_L[0]/∂h_l[0] for l = 0..L−1 (example 0; with batchnorm the other examples of h_l
    held fixed, the later states of the whole batch moving with it).

    One jax.jacrev of the network's output state with respect to probes e_l (L, N) added to example 0
    of h_l, the state entering block l+1, at e = 0: ∂h_L[0]/∂e_l = ∂h_L[0]/∂h_l[0].
    """
    h0, xs = unroll(cfg, params, x)
    ps, drive = _step_params(cfg, params, xs)

    def h_L(e):
        h = h0
        for l in range(cfg.depth):
            h = block_apply(cfg, jax.tree.map(lambda a: a[l], ps), h.at[0].add(e[l]), None if drive is None else drive[l])
        return h[0]

    jac = jax.jacrev(h_L)(jnp.zeros((cfg.depth,) + h0.shape[1:], h0.dtype))  # (N out, L, N in)
    return jnp.moveaxis(jac, 1, 0)


def singular_values(j):
    return np.linalg.svd(np.asarray(j, np.float64), compute_uv=False)
