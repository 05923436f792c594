"""Log-scaled cotangents through a chain of perturbation taps, and the structural test of a chain.

A log-scaled tap is the identity forward. Backward it turns the cotangent g arriving at h_l into
the unit tensor g/‖g‖_F, passed on down the model, and hands ds_l = log10 ‖g‖_F out as the
cotangent of a scalar input s_l (:func:`gradjax.empirical.propagate.normalize`, the normalization
the zoo's walker applies between blocks). One reverse pass then carries unit-norm cotangents from
tap to tap, and with the taps numbered l = 1..L in call order

    log10 ‖δ_l‖ = Σ_{k=l..L} ds_k,    δ_l = ∂loss/∂h_l,

finite however far ‖δ_l‖ lies outside the working precision. This is exact when the taps form a
*chain*: every path of the forward computation from h_l to the model's output y passes through
h_{l+1} (hence, by induction, through every later tap, each once), so every contribution to the
cotangent at h_l was divided by the same Π_{k>l} ‖g_k‖. Whole blocks of a ResNet or a transformer
form a chain, as do the layers of a plain MLP; taps inside residual branches do not: the skip path
carries the cotangent around the branch's tap undivided, so normalizing the branch alone changes
its weight against the skip. A parameter θ (or the input x) is measured on the same scale,
log10 ‖∂loss/∂θ‖ = log10 ‖g_θ‖ + Σ_{k=l..L} ds_k, when every path from θ to y passes through
h_l and through no other tap before it (a module called once: yes; a shared weight: no).

The test is structural, on the jaxpr of (params, ε, x) → y with plain additive taps h_l + ε_l: a
dataflow graph of variables in which every equation joins each of its inputs to each of its outputs;
calls (jit, remat, custom_jvp/custom_vjp) are inlined, any other equation carrying a sub-program
(scan, while, cond) stays one opaque node. Joining every input to every output can only add paths,
so the test may refuse a chain but never accepts a non-chain. Tap l+1 "cuts" tap l when a graph
search from h_l that may not enter h_{l+1} cannot reach y.

References:
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232 (δ_l = ∂loss/∂h_l).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from gradjax.empirical.propagate import normalize

#: Primitives that call a sub-program once with their own inputs and outputs (inlined by the test).
CALL_PRIMITIVES = frozenset({"pjit", "jit", "closed_call", "core_call", "remat", "checkpoint", "custom_jvp_call",
                             "custom_vjp_call", "custom_vjp_call_jaxpr"})


# ---- the log-scaled tap -------------------------------------------------------------------------

@jax.custom_vjp
def log_scale_tap(h: jax.Array, s: jax.Array) -> jax.Array:
    """Identity on ``h`` (any shape); backward: cotangent g at h → (g/‖g‖_F at h, log10 ‖g‖_F at s).

    Args:
      h: the tapped state h_l, any shape.
      s: () a real scalar (unused forward); its cotangent is ds_l, in log10 units.
    """
    del s
    return h


def _tap_fwd(h, s):
    return h, s


def _tap_bwd(s, g):
    u, ds = normalize(g.astype(jnp.promote_types(g.dtype, s.dtype)))
    return u.astype(g.dtype), ds.astype(s.dtype)


log_scale_tap.defvjp(_tap_fwd, _tap_bwd)


def scale_dtype(dtype) -> jnp.dtype:
    """dtype of the scalar s_l of a tap of ``dtype``: at least float32 (log-norms of a bfloat16 state
    would keep 3 significant digits)."""
    return jnp.promote_types(dtype, jnp.float32)


def scales_from_top(ds: jax.Array) -> jax.Array:
    """(L,) per-tap log-factors ds_l (call order) → (L,) log10 ‖δ_l‖ = Σ_{k ≥ l} ds_k."""
    return jnp.cumsum(ds[::-1])[::-1]


# ---- the structural test ------------------------------------------------------------------------

class Dataflow(NamedTuple):
    """The dependence graph of one jaxpr.

    Attributes:
      succ: node → list of nodes computed from it (a node: ``(scope, jaxpr variable)``).
      inputs: (n,) node of each top-level input, in flattened argument order.
      taps: (L,) node of each tap's output h_l + ε_l, in call order; None where the tap could not be
        found (applied inside an opaque equation).
      out: the node of the output y.
    """

    succ: dict
    inputs: tuple
    taps: tuple
    out: object


def _inlined(eqn):
    """The sub-program of a call-like equation whose inputs and outputs map one to one onto its own, else None."""
    if eqn.primitive.name not in CALL_PRIMITIVES:
        return None
    for v in eqn.params.values():
        j = v.jaxpr if isinstance(v, jex_core.ClosedJaxpr) else v
        if isinstance(j, jex_core.Jaxpr) and len(j.invars) == len(eqn.invars) and len(j.outvars) == len(eqn.outvars):
            return j
    return None


def _walk(jaxpr, scope: int, env: dict, graph: dict) -> None:
    """Adds ``jaxpr``'s equations to ``graph["succ"]``. A node is ``(scope, variable)``: one jaxpr may be
    inlined at several call sites (a jitted function called twice), each its own scope; ``env`` maps
    the variables of this scope that stand for outer nodes (inputs of an inlined call)."""
    node = lambda v: env[v] if v in env else (scope, v)  # noqa: E731
    succ, eps, taps = graph["succ"], graph["eps"], graph["taps"]
    for eqn in jaxpr.eqns:
        ins = [node(v) for v in eqn.invars if isinstance(v, jex_core.Var)]
        inner = _inlined(eqn)
        if inner is not None:
            graph["scopes"] += 1
            sub_scope = graph["scopes"]
            sub = {iv: node(ov) for iv, ov in zip(inner.invars, eqn.invars) if isinstance(ov, jex_core.Var)}
            _walk(inner, sub_scope, sub, graph)
            for ov, iv in zip(eqn.outvars, inner.outvars):
                if isinstance(iv, jex_core.Var):
                    env[ov] = sub[iv] if iv in sub else (sub_scope, iv)
            continue
        outs = [(scope, v) for v in eqn.outvars]
        if eqn.primitive.name == "add":
            for n in ins:
                if n in eps:
                    taps[eps[n]] = outs[0]
        for n in ins:
            succ.setdefault(n, []).extend(outs)


def dataflow(closed: jex_core.ClosedJaxpr, eps_inputs: tuple) -> Dataflow:
    """:class:`Dataflow` of a one-output jaxpr whose inputs at positions ``eps_inputs`` (one per tap,
    call order) are the additive perturbations ε_l."""
    jaxpr = closed.jaxpr
    inputs = tuple((0, v) for v in jaxpr.invars)
    graph = {"succ": {}, "eps": {inputs[i]: l for l, i in enumerate(eps_inputs)}, "taps": {}, "scopes": 0}
    env: dict = {}
    _walk(jaxpr, 0, env, graph)
    out = jaxpr.outvars[0]
    return Dataflow(graph["succ"], inputs, tuple(graph["taps"].get(l) for l in range(len(eps_inputs))),
                    env[out] if out in env else (0, out))


def _escapes(flow: Dataflow, start, block, stops) -> bool:
    """True when a path leads from ``start`` to a node of ``stops`` without entering ``block``."""
    seen, todo = {start}, [start]
    while todo:
        n = todo.pop()
        if n in stops:
            return True
        for m in flow.succ.get(n, ()):
            if m != block and m not in seen:
                seen.add(m)
                todo.append(m)
    return False


def first_break(flow: Dataflow) -> tuple[int, str] | None:
    """The first tap l whose state reaches y around tap l+1, with the reason; None for a chain."""
    for l, t in enumerate(flow.taps):
        if t is None:
            return l, "is applied inside a loop or conditional that the chain test cannot see through"
    for l in range(len(flow.taps) - 1):
        if _escapes(flow, flow.taps[l], flow.taps[l + 1], {flow.out}):
            return l, "reaches the model's output by a path that avoids the next selected layer"
    return None


def scaled_at(flow: Dataflow, start, l: int) -> bool:
    """True when every path from node ``start`` to y passes through tap l and through no other tap
    before it: its cotangent then carries exactly the log-scale of tap l."""
    others = {t for k, t in enumerate(flow.taps) if k != l} | {flow.out}
    return not _escapes(flow, start, flow.taps[l], others)
