"""Any Flax NNX module in, the zoo's measurements out: gradient profile, activation statistics, q/c
profiles and Jacobian spectra of a user model built by a factory ``make_model(rngs) -> nnx.Module``.

Which states count as h_l: the outputs of the modules selected by ``layers`` — a module type, a
tuple of types, or a predicate ``layers(path) -> bool`` on the module's path in the model (a tuple
of attribute names and list indices, e.g. ``("blocks", 2, "mlp")``); by default every
:data:`DEFAULT_LAYERS` output. They are numbered in the order the forward pass calls them (a module
called twice gives two states), and labelled by their paths (:func:`layer_paths`).

How they are reached — perturbation taps on a copy. The model is split (``nnx.split``) and merged
back into a fresh copy inside the measured function; on the copy, each selected module's class is
swapped for a subclass whose ``__call__`` returns ``original(...) + ε_l`` with ε_l a zero tensor
passed in as an argument. Then ∂loss/∂ε_l = ∂loss/∂h_l exactly, by plain reverse-mode autodiff
through the user's own code, and ∂h_L/∂ε_l is the per-layer Jacobian. Why taps rather than
``sow``/``nnx.Intermediate`` (which record h_l but cannot give its cotangent: the recorded value is
a copy, not on the path to the loss) or ``Module.perturb`` (needs a call inside the model's code):
the model's code and its instances are never modified — the copy is discarded after the trace —
and any structure (lists, nested blocks, shared modules, batch norm, attention) goes through.

Magnitudes: where the selected layers form a chain — every path of the forward pass from one
selected output to the model's output passes through the next, as for whole blocks of a ResNet or a
transformer, or every Linear of a plain MLP — the taps are log-scaled
(:mod:`gradjax.empirical.chain`): backward, each normalizes the cotangent arriving at it to unit norm
and hands out log10 of that norm through the cotangent of a scalar input, so one reverse pass gives
log10 ‖δ_l‖ as a sum of per-tap log-factors, finite where plain autodiff would overflow to inf or
underflow to 0 (the zoo walker's (unit tensor, log-scale) carried from block to block). Whether the
selection is a chain is read off the jaxpr of the forward pass (a dependence-graph test that may
refuse a chain but never accepts a non-chain). Taps inside residual branches are no chain (the skip
path bypasses them): there, and wherever ``log_scale=False``, cotangents are plain autodiff, whose
norms are taken with the overflow-safe :func:`gradjax.empirical.propagate.log10_norm`.

Seeds: seed k builds ``make_model(nnx.Rngs(k))`` inside the measured function (its
``nnx.split`` state, then ``nnx.merge`` per evaluation), run seed by seed or vmapped and chunked
under the memory budget of :func:`gradjax.empirical._seeds.map_seeds`. A seed whose numbers go
non-finite gets nan for that seed only.

References:
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232 (δ_l = ∂loss/∂h_l).
  Pennington, Schoenholz & Ganguli 2017, arXiv:1711.04735 (spectra of the input-output Jacobian).
"""

from __future__ import annotations

import functools
import threading
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gradjax._validate import check_choice, check_int, check_real
from gradjax.config import DTYPES, NetConfig
from gradjax.empirical._seeds import data_key, map_seeds, normal_draw
from gradjax.empirical.chain import dataflow, first_break, log_scale_tap, scale_dtype, scaled_at, scales_from_top
from gradjax.empirical.activations import SATURATION_THRESHOLD, ActivationStats
from gradjax.empirical.gradients import GradNorms
from gradjax.empirical.jacobians import (DEFAULT_LANCZOS_K, DEFAULT_SLQ_PROBES, METHODS, SpectralQuadrature,
                                         log10_singular_values)
from gradjax.empirical.lanczos import gauss_quadrature, lanczos_tridiagonal, unit_probe
from gradjax.empirical.losses import DEFAULT_LOSS, loss_fn
from gradjax.empirical.propagate import log10_norm, normalize
from gradjax.nn.activations import RECTIFIERS, SATURATING, get_activation
from gradjax.nn.ensemble import seed_keys

#: Modules whose outputs are the states h_l by default.
DEFAULT_LAYERS = (nnx.Linear, nnx.Conv)

ModelFactory = Callable[[nnx.Rngs], nnx.Module]


# ---- layer selection and perturbation taps ------------------------------------------------------

def _matcher(layers) -> Callable:
    """``layers`` → ``match(path, module) -> bool``; raises TypeError for anything else."""
    if isinstance(layers, type) and issubclass(layers, nnx.Module):
        return lambda path, m: isinstance(m, layers)
    if isinstance(layers, tuple) and layers and all(isinstance(t, type) and issubclass(t, nnx.Module) for t in layers):
        return lambda path, m: isinstance(m, layers)
    if callable(layers) and not isinstance(layers, type):
        return lambda path, m: bool(layers(path))
    raise TypeError(
        f"layers must be an nnx.Module subclass, a non-empty tuple of them, or a predicate on the module path "
        f"(path: tuple of names and indices) -> bool, got {layers!r}")


def path_label(path: tuple) -> str:
    """A module path as a label: ``("blocks", 2, "mlp")`` → ``"blocks/2/mlp"`` (the root: ``"."``)."""
    return "/".join(str(p) for p in path) or "."


def select_modules(model: nnx.Module, layers) -> tuple[tuple, ...]:
    """Paths of the modules of ``model`` that ``layers`` selects (graph order; the root is never selected).

    Raises:
      ValueError: nothing matches (lists the model's modules).
    """
    match = _matcher(layers)
    found = tuple(path for path, m in nnx.iter_modules(model) if path and match(path, m))
    if not found:
        listing = ", ".join(f"{path_label(p)} ({type(m).__name__})" for p, m in nnx.iter_modules(model) if p)
        raise ValueError(f"layers={layers!r} matches none of the model's modules: {listing or 'none'}")
    return found


class _Tape:
    """What one tapped forward pass records, in call order."""

    def __init__(self, where: dict, eps, scales=None):
        self.where, self.eps, self.scales, self.outs, self.paths = where, eps, scales, [], []

    def record(self, module, out):
        path = self.where[id(module)]
        if not isinstance(out, jax.Array):
            raise TypeError(f"layer {path_label(path)} returns {type(out).__name__}, not one array: "
                            "select modules whose output is a single array")
        i = len(self.outs)
        for given in (self.eps, self.scales):
            if given is not None and i >= len(given):
                raise ValueError("the selected layers were called more often than when their shapes were traced")
        if self.eps is not None:
            out = out + self.eps[i]
        if self.scales is not None:
            out = log_scale_tap(out, self.scales[i])
        self.outs.append(out)
        self.paths.append(path)
        return out


_ACTIVE = threading.local()


@functools.lru_cache(maxsize=None)
def _tapped_class(cls: type) -> type:
    """``cls`` with a ``__call__`` that passes its output through the active tape."""

    def __call__(self, *args, **kwargs):
        out = cls.__call__(self, *args, **kwargs)
        stack = getattr(_ACTIVE, "stack", [])
        return stack[-1].record(self, out) if stack else out

    return type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})


def tapped_apply(graphdef, states: tuple, paths: tuple, x: jax.Array, eps=None, scales=None):
    """Runs a fresh copy of the model with taps on the modules at ``paths``.

    Args:
      graphdef, states: ``nnx.split(model, ...)`` (the model itself is never touched).
      paths: module paths (:func:`select_modules`).
      x: the model's input.
      eps: None (record only) or a tuple of perturbations, one per tapped call, added to its output.
      scales: None or a tuple of scalars s_l, one per tapped call: each output then passes through
        :func:`gradjax.empirical.chain.log_scale_tap` (unit cotangents below it, log10 of the
        cotangent's norm as the cotangent of s_l).

    Returns:
      ``(y, outs, tap_paths)``: the model's output, the tapped outputs h_l (perturbed) in call order,
      and the module path of each.
    """
    model = nnx.merge(graphdef, *states, copy=True)
    modules = dict(nnx.iter_modules(model))
    where = {}
    for path in paths:
        m = modules[path]
        m.__class__ = _tapped_class(type(m))
        where[id(m)] = path
    tape = _Tape(where, eps, scales)
    stack = _ACTIVE.__dict__.setdefault("stack", [])
    stack.append(tape)
    try:
        y = model(x)
    finally:
        stack.pop()
    return y, tuple(tape.outs), tuple(tape.paths)


class TapPlan(NamedTuple):
    """Static description of the taps of a model on one input shape (hashable).

    Attributes:
      modules: paths of the selected modules (graph order).
      calls: module path of each tapped call, in call order (length L).
      labels: (L,) labels, ``path_label`` with ``#2``, ``#3``… for repeated calls of one module.
      shapes: (L,) ``(shape, dtype name)`` of each h_l.
      out: ``(shape, dtype name)`` of the model's output.
      state_bytes: bytes of the model's state.
    """

    modules: tuple
    calls: tuple
    labels: tuple
    shapes: tuple
    out: tuple
    state_bytes: int


def _labels(calls: tuple) -> tuple:
    seen: dict = {}
    out = []
    for p in calls:
        seen[p] = seen.get(p, 0) + 1
        out.append(path_label(p) + ("" if seen[p] == 1 else f"#{seen[p]}"))
    return tuple(out)


def plan_taps(make_model: ModelFactory, x, layers=DEFAULT_LAYERS) -> TapPlan:
    """Traces ``make_model(nnx.Rngs(0))`` on ``x`` abstractly (no FLOPs) and returns its :class:`TapPlan`.

    Raises:
      TypeError: ``make_model`` is not callable or does not return an ``nnx.Module``.
      ValueError: ``x`` does not run through the model (wrong shape or dtype), or ``layers`` selects
        no module, or no selected module is called by the forward pass.
    """
    if not callable(make_model):
        raise TypeError(f"make_model must be a callable make_model(rngs: nnx.Rngs) -> nnx.Module, got {make_model!r}")
    return plan_of(nnx.eval_shape(lambda: make_model(nnx.Rngs(0))), x, layers)


def plan_of(model: nnx.Module, x, layers=DEFAULT_LAYERS) -> TapPlan:
    """:class:`TapPlan` of a model instance (concrete or from ``nnx.eval_shape``) on ``x``; see :func:`plan_taps`."""
    if not isinstance(model, nnx.Module):
        raise TypeError(f"make_model must return an nnx.Module, got {type(model).__name__}")
    modules = select_modules(model, layers)
    graphdef, state = nnx.split(model)
    seen = {}

    def run(state, x):
        y, outs, calls = tapped_apply(graphdef, (state,), modules, x)
        seen["calls"] = calls
        return y, outs

    xs = x if isinstance(x, jax.ShapeDtypeStruct) else jax.ShapeDtypeStruct(np.shape(x), jnp.asarray(x).dtype)
    state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), state)
    try:
        y, outs = jax.eval_shape(run, state, xs)
    except (TypeError, ValueError) as e:
        if str(e).startswith("layer "):
            raise
        raise ValueError(f"inputs of shape {tuple(xs.shape)} and dtype {xs.dtype} do not run through the model "
                         f"of make_model: {type(e).__name__}: {e}") from e
    if not outs:
        raise ValueError(f"layers={layers!r} selects {[path_label(p) for p in modules]}, but the forward pass "
                         "calls none of them")
    if not isinstance(y, jax.ShapeDtypeStruct):
        raise TypeError(f"the model must return one array, got {type(y).__name__}")
    nbytes = sum(int(np.prod(a.shape)) * jnp.dtype(a.dtype).itemsize for a in jax.tree.leaves(state))
    return TapPlan(modules, seen["calls"], _labels(seen["calls"]),
                   tuple((tuple(o.shape), jnp.dtype(o.dtype).name) for o in outs),
                   (tuple(y.shape), jnp.dtype(y.dtype).name), nbytes)


def layer_paths(make_model: ModelFactory, inputs, layers=DEFAULT_LAYERS) -> tuple[str, ...]:
    """Labels (module paths, in call order) of the states h_l that ``layers`` selects: the layer axis
    of every model measurement."""
    return plan_taps(make_model, jnp.asarray(inputs), layers).labels


def zero_taps(plan: TapPlan) -> tuple:
    """Zero perturbations ε_l, one per tapped call."""
    return tuple(jnp.zeros(s, d) for s, d in plan.shapes)


# ---- one network --------------------------------------------------------------------------------

def split_model(model: nnx.Module):
    """``(graphdef, params, rest)``: the model's ``nnx.Param`` state apart from everything else."""
    return nnx.split(model, nnx.Param, ...)


def pure_apply(graphdef, params, rest) -> Callable:
    """``apply(pure, x)``: the model with its ``nnx.Param`` values replaced by the plain nested dict
    ``pure`` (the form of ``nnx.to_pure_dict(params)``), for plain-pytree optimizers and Hessians."""
    def apply(pure, x):
        state = jax.tree.map(lambda a: a, params)
        nnx.replace_by_pure_dict(state, pure)
        return nnx.merge(graphdef, state, rest, copy=True)(x)

    return apply


def _seed_split(make_model: ModelFactory, key: jax.Array, dtype: str | None = None):
    graphdef, params, rest = split_model(make_model(nnx.Rngs(key)))
    if dtype is not None:
        cast = lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731
        params, rest = jax.tree.map(cast, params), jax.tree.map(cast, rest)
    return graphdef, params, rest


def _leaf(tree: dict, path: tuple):
    for p in path:
        tree = tree[p]
    return tree


def _param_names(plan: TapPlan, params: dict) -> tuple[str, ...]:
    names = []
    for path in plan.modules:
        for name, v in _leaf(params, path).items():
            if not isinstance(v, dict) and name not in names:
                names.append(name)
    return tuple(names)


def model_grad_norms(model: nnx.Module, x: jax.Array, targets, loss=DEFAULT_LOSS, layers=DEFAULT_LAYERS, *,
                     plan: TapPlan | None = None, log_scale: bool | str = "auto") -> GradNorms:
    """Per-layer log10 gradient norms of ONE model on ``x``: :class:`GradNorms` with (L,) fields.

    ``hidden``: log10 ‖∂loss/∂h_l‖ (Frobenius over the whole tensor, batch included); ``params``:
    for every parameter name of the selected modules (``kernel``, ``bias``, ``scale``…), log10 of the
    norm of the gradient of that module's parameter at each call (nan where the module has none;
    a module called twice reports its total gradient at both calls, or nan under log-scaled
    cotangents); ``weights`` / ``biases``: ``params["kernel"]`` / ``params["bias"]``; ``input``:
    log10 ‖∂loss/∂x‖ (nan for integer x).

    Args:
      log_scale: "auto" (default: log-scaled cotangents when the selected layers form a chain, plain
        autodiff otherwise), True (log-scaled; ValueError when they do not form a chain) or False
        (plain autodiff). See :mod:`gradjax.empirical.chain`.
    """
    plan = plan_of(model, x, layers) if plan is None else plan
    graphdef, params, rest = split_model(model)
    chain = _resolve_log_scale(log_scale, lambda: chain_of(graphdef, params, rest, plan, x), plan, layers)
    return _grad_norms(graphdef, params, rest, plan, x, targets, loss_fn(loss), chain)


class Chain(NamedTuple):
    """Which of a model's gradients the log-scaled taps measure exactly (hashable: a static argument).

    Attributes:
      broken: None when the selected layers form a chain, else ``(l, why)``: the first tap l whose
        state reaches the output around tap l+1 (or that the test cannot see), and why.
      params: ``(call index, parameter name)`` pairs whose gradient carries the log-scale of that
        call (every path from the parameter to the output passes its tap, and no tap before).
      input: whether ∂loss/∂x carries the log-scale of the first tap.
    """

    broken: tuple | None
    params: frozenset
    input: bool


def _key_name(k):
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return getattr(k, attr)
    return k


def chain_of(graphdef, params, rest, plan: TapPlan, x) -> Chain:
    """:class:`Chain` of a split model (arrays or ``jax.ShapeDtypeStruct``) on inputs like ``x``, from the
    jaxpr of its forward pass (:func:`gradjax.empirical.chain.dataflow`; no FLOPs)."""
    spec = lambda t: jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), t)  # noqa: E731
    eps = tuple(jax.ShapeDtypeStruct(s, d) for s, d in plan.shapes)

    def forward(p, r, e, xx):
        return tapped_apply(graphdef, (p, r), plan.modules, xx, e)[0]

    args = (spec(params), spec(rest), eps, spec(x))
    closed = jax.make_jaxpr(forward)(*args)
    n_p, n_r = len(jax.tree.leaves(args[0])), len(jax.tree.leaves(args[1]))
    flow = dataflow(closed, tuple(range(n_p + n_r, n_p + n_r + len(eps))))
    leaf_paths = [tuple(_key_name(k) for k in kp) for kp, _ in jax.tree_util.tree_flatten_with_path(args[0])[0]]
    ok = set()
    broken = first_break(flow)
    if broken is None:
        for i, path in enumerate(plan.calls):
            for pos, lp in enumerate(leaf_paths):
                if len(lp) > len(path) and lp[:len(path)] == path and scaled_at(flow, flow.inputs[pos], i):
                    ok.add((i, lp[len(path)]))
    real_x = jnp.issubdtype(args[3].dtype, jnp.floating)
    x_ok = broken is None and real_x and scaled_at(flow, flow.inputs[n_p + n_r + len(eps)], 0)
    return Chain(broken, frozenset(ok), bool(x_ok))


#: Accepted values of ``log_scale``.
LOG_SCALE_CHOICES = ("auto", True, False)


def _resolve_log_scale(log_scale, chain: Callable[[], Chain], plan: TapPlan, layers) -> Chain | None:
    """The :class:`Chain` to measure with (log-scaled cotangents), or None (plain autodiff)."""
    if not (log_scale is True or log_scale is False or (isinstance(log_scale, str) and log_scale == "auto")):
        raise ValueError(f"log_scale must be one of {list(LOG_SCALE_CHOICES)}, got {log_scale!r}")
    if log_scale is False:
        return None
    found = chain()
    if found.broken is None:
        return found
    if log_scale == "auto":
        return None
    l, why = found.broken
    after = f" (the next is {plan.labels[l + 1]})" if l + 1 < len(plan.labels) else ""
    raise ValueError(
        f"log_scale=True needs the selected layers to form a chain (every path from a selected layer's output "
        f"to the model's output passes through the next selected layer), but with layers={layers!r} the layer "
        f"{plan.labels[l]}{after} {why}: e.g. a skip connection around a layer inside a residual branch. Select "
        f"whole blocks, or pass log_scale='auto' or False (plain autodiff)")


def _chain_of_factory(make_model: ModelFactory, plan: TapPlan, x) -> Chain:
    return chain_of(*split_model(nnx.eval_shape(lambda: make_model(nnx.Rngs(0)))), plan, x)


def chain_break(make_model: ModelFactory, inputs, layers=DEFAULT_LAYERS) -> str | None:
    """Why the layers that ``layers`` selects do not form a chain (log-scaled cotangents would be
    wrong), or None when they do; read off ``make_model(nnx.Rngs(0))``'s traced forward pass."""
    x = jnp.asarray(inputs)
    plan = plan_taps(make_model, x, layers)
    broken = _chain_of_factory(make_model, plan, x).broken
    if broken is None:
        return None
    l, why = broken
    return f"{plan.labels[l]} {why}" + (f" ({plan.labels[l + 1]})" if l + 1 < len(plan.labels) else "")


def zero_scales(plan: TapPlan) -> tuple:
    """Scalars s_l = 0, one per tapped call (:func:`gradjax.empirical.chain.scale_dtype`)."""
    return tuple(jnp.zeros((), scale_dtype(d)) for _, d in plan.shapes)


def _grad_norms(graphdef, params, rest, plan: TapPlan, x, targets, f, chain: Chain | None = None) -> GradNorms:
    """Plain autodiff (``chain`` None) or log-scaled cotangents through the chain ``chain``."""
    real_x = jnp.issubdtype(x.dtype, jnp.floating)

    def objective(p, taps, xx):
        kw = {"eps": taps} if chain is None else {"scales": taps}
        y, _, _ = tapped_apply(graphdef, (p, rest), plan.modules, xx, **kw)
        return f(y, targets)

    argnums = (0, 1, 2) if real_x else (0, 1)
    taps = zero_taps(plan) if chain is None else zero_scales(plan)
    value, grads = jax.value_and_grad(objective, argnums=argnums)(params, taps, x)
    g_params = nnx.to_pure_dict(grads[0])
    if chain is None:
        hidden = jnp.stack([log10_norm(g) for g in grads[1]])
    else:
        hidden = scales_from_top(jnp.stack(grads[1]))
    nan = jnp.full((), jnp.nan, hidden.dtype)

    def offset(i, name):  # log10 of the unit each gradient is measured in
        return 0.0 if chain is None else (hidden[i] if (i, name) in chain.params else nan)

    per_name = {}
    for name in _param_names(plan, g_params):
        per_name[name] = jnp.stack([
            log10_norm(_leaf(g_params, path)[name]).astype(hidden.dtype) + offset(i, name)
            if name in _leaf(g_params, path) else nan for i, path in enumerate(plan.calls)])
    full_nan = jnp.full((len(plan.calls),), jnp.nan, hidden.dtype)
    x_norm = nan
    if real_x:
        x_norm = log10_norm(grads[2]).astype(hidden.dtype) + (0.0 if chain is None else
                                                              (hidden[0] if chain.input else nan))
    return GradNorms(hidden, per_name.get("kernel", full_nan), per_name.get("bias", full_nan), per_name, x_norm,
                     value)


def _taps_of(graphdef, params, rest, plan: TapPlan, x) -> tuple:
    return tapped_apply(graphdef, (params, rest), plan.modules, x, zero_taps(plan))[1]


def _activation(activation):
    """``(φ, name)``: None → identity (statistics of h_l itself), a registry name, or a callable."""
    if activation is None:
        return (lambda h: h), None
    if isinstance(activation, str):
        return get_activation(activation), activation
    if callable(activation):
        return activation, None
    raise TypeError(f"activation must be None, an activation name or a callable, got {activation!r}")


def stats_of_states(hs: tuple, activation=None) -> ActivationStats:
    """:class:`ActivationStats` of φ(h_l) for states ``hs`` (L arrays (B, …)); fields (L,).

    saturation (|φ'(h)| < :data:`SATURATION_THRESHOLD`) only for a saturating registry activation,
    dead units (h ≤ 0 on every example; a unit is one non-batch position) only for a rectifier; nan
    otherwise.
    """
    phi, name = _activation(activation)
    rows = []
    for h in hs:
        a, dphi = jax.jvp(phi, (h,), (jnp.ones_like(h),))
        nan = jnp.full((), jnp.nan, a.dtype)
        sat = jnp.mean(jnp.abs(dphi) < SATURATION_THRESHOLD).astype(a.dtype) if name in SATURATING else nan
        dead = jnp.mean(jnp.all(h <= 0, axis=0)).astype(a.dtype) if name in RECTIFIERS else nan
        rows.append((jnp.mean(a), jnp.std(a), sat, dead))
    return ActivationStats(*(jnp.stack(c) for c in zip(*rows)))


def pair_correlations(hs: tuple, pairs: int) -> jax.Array:
    """(L,) c_l: cosine between example i and example i + P of each state, averaged over the P pairs."""
    cs = []
    for h in hs:
        f = h.reshape(h.shape[0], -1)
        h1, h2 = f[:pairs], f[pairs:]
        q12, q11, q22 = (jnp.mean(a * b, axis=-1) for a, b in ((h1, h2), (h1, h1), (h2, h2)))
        cs.append(jnp.mean(q12 * jax.lax.rsqrt(q11 * q22)))
    return jnp.stack(cs)


def _output_of(graphdef, params, rest, plan: TapPlan):
    """``eps → h_L[example 0]`` flattened: the last tapped state as a function of the taps."""
    def out(eps, x):
        return tapped_apply(graphdef, (params, rest), plan.modules, x, eps)[1][-1][0].reshape(-1)
    return out


def _jacobians_of(graphdef, params, rest, plan: TapPlan, x, method: str) -> jax.Array:
    """log10 singular values of ∂h_L/∂h_l (example 0) for every tap l < L: (L−1, m), nan-padded."""
    out = _output_of(graphdef, params, rest, plan)
    y0, vjp = jax.vjp(lambda e: out(e, x), zero_taps(plan))
    rows = jax.vmap(vjp)(jnp.eye(y0.shape[0], dtype=y0.dtype))[0]  # per tap: (N_L, B, …)
    m = max(min(y0.shape[0], int(np.prod(s[1:]))) for s, _ in plan.shapes[:-1])
    res = []
    for g in rows[:-1]:
        g = g[:, 0].reshape(y0.shape[0], -1)
        g = g if g.shape[0] <= g.shape[1] else g.T  # the Gram matrix of the shorter side
        u, s = normalize(g)
        sv = log10_singular_values(u, s, method)
        res.append(jnp.pad(sv, (0, m - sv.shape[0]), constant_values=jnp.nan))
    return jnp.stack(res)


def _gtg_matvec(out, x, eps0, l: int, shape: tuple):
    """w (N_l,) → GᵀG w for G = ∂h_L/∂h_l on example 0 (one jvp and one vjp)."""
    _, vjp = jax.vjp(lambda e: out(e, x), eps0)

    def matvec(w):
        tangent = tuple(jnp.zeros_like(e) for e in eps0)
        tangent = tangent[:l] + (tangent[l].at[0].set(w.reshape(shape[1:])),) + tangent[l + 1:]
        _, t = jax.jvp(lambda e: out(e, x), (eps0,), (tangent,))
        return vjp(t)[0][l][0].reshape(-1)

    return matvec


def _lanczos_gtg(out, x, eps0, l, shape, v0, k):
    """Lanczos matrix of GᵀG (scaled by its norm on v0, so the recurrence runs in O(1) numbers) and log10 scale."""
    mv = _gtg_matvec(out, x, eps0, l, shape)
    scale = jnp.linalg.norm(mv(v0))
    safe = jnp.where(scale > 0, scale, jnp.ones_like(scale))
    return lanczos_tridiagonal(lambda w: mv(w) / safe, v0, k), jnp.log10(safe)


def _lanczos_of(graphdef, params, rest, plan: TapPlan, x, key, k: int, probes: int | None):
    """Per tap l < L: top-k log10 singular values (probes None) or SLQ nodes and weights; layer l runs
    min(k, N_l) steps, padded to k with nan nodes of weight 0."""
    out = _output_of(graphdef, params, rest, plan)
    eps0 = zero_taps(plan)
    res = []
    for l, (shape, _) in enumerate(plan.shapes[:-1]):
        n = int(np.prod(shape[1:]))
        kl = min(k, n)

        def one(pkey, l=l, shape=shape, n=n, kl=kl):
            tri, sc = _lanczos_gtg(out, x, eps0, l, shape, unit_probe(pkey, n, eps0[l].dtype), kl)
            theta, w = gauss_quadrature(tri)
            nodes = 0.5 * (jnp.log10(jnp.where(theta > 0, theta, 0)) + sc)
            return jnp.pad(nodes, (0, k - kl), constant_values=jnp.nan), jnp.pad(w, (0, k - kl))

        if probes is None:
            nodes, _ = one(jax.random.fold_in(key, l))
            res.append(nodes[jnp.argsort(-jnp.nan_to_num(nodes, nan=-jnp.inf))])
            continue
        nodes, w = jax.vmap(one)(jax.random.split(jax.random.fold_in(key, l), probes))
        res.append((nodes.reshape(-1), w.reshape(-1) / probes))
    if probes is None:
        return jnp.stack(res)
    return jnp.stack([r[0] for r in res]), jnp.stack([r[1] for r in res])


# ---- across seeds -------------------------------------------------------------------------------

def model_targets(plan: TapPlan, key: jax.Array, loss) -> jax.Array:
    """Default targets from the seed's data key: integer labels in [0, out[-1]) of shape out[:-1] for
    "xent", unit Gaussian of the output's shape otherwise."""
    shape, dt = plan.out
    k = jax.random.fold_in(data_key(key), 1)
    if isinstance(loss, str) and loss == "xent":
        return jax.random.randint(k, shape[:-1], 0, shape[-1])
    return normal_draw(k, shape, dt)


def _prepare(make_model, seeds, inputs, layers):
    if inputs is None:
        raise ValueError("inputs is required for a model factory: one batch (B, …) shared by all seeds")
    x = jnp.asarray(inputs)
    plan = plan_taps(make_model, x, layers)
    return seed_keys(seeds), x, plan


def _per_seed_bytes(plan: TapPlan, x, factor: int = 4) -> int:
    taps = sum(int(np.prod(s)) * jnp.dtype(d).itemsize for s, d in plan.shapes)
    return 2 * plan.state_bytes + factor * taps + 4 * x.size * x.dtype.itemsize


def _grad_one(key, x, t, *, make_model, plan, loss, chain):
    g, p, r = _seed_split(make_model, key)
    t = model_targets(plan, key, loss) if t is None else t
    return _grad_norms(g, p, r, plan, x, t, loss_fn(loss), chain)


def model_gradient_profile(make_model: ModelFactory, seeds=8, inputs=None, targets=None, loss=DEFAULT_LOSS, *,
                           layers=DEFAULT_LAYERS, log_scale: bool | str = "auto", max_bytes: int | None = None,
                           seed_batch: int | None = None) -> GradNorms:
    """Per-layer gradient norms of S models ``make_model(nnx.Rngs(k))`` at initialization.

    Where the selected layers form a chain (every path from one selected layer's output to the model's
    output passes through the next: whole blocks of a ResNet or a transformer, every Linear of a plain
    MLP) the cotangents are log-scaled between them, so gradients far outside the working precision
    still give finite log10 norms (:mod:`gradjax.empirical.chain`); otherwise plain autodiff.

    Args:
      make_model: ``make_model(rngs: nnx.Rngs) -> nnx.Module``; the module is called as ``model(x)``.
      seeds: int S (k = 0..S−1), a list of ints, or a key array (S,).
      inputs: (B, …) one batch shared by all seeds (required).
      targets: None (drawn per seed from its data key, see :func:`model_targets`) or one shared array.
      loss: "projection" (default, ⟨y, t⟩/B) | "mse" | "xent" | a callable ``f(y, targets) -> scalar``
        on the model's output y.
      layers: which module outputs are the h_l (see module docstring); labels: :func:`layer_paths`.
      log_scale: "auto" (default): log-scaled cotangents when the selected layers form a chain (tested
        on the traced forward pass of ``make_model(nnx.Rngs(0))``, see :func:`chain_break`), plain
        autodiff otherwise; True: log-scaled, ValueError when they do not form a chain; False: plain.
      max_bytes, seed_batch: as :func:`gradjax.empirical.gradient_profile`.

    Returns:
      :class:`GradNorms` with (S, L) fields (log10), L the number of tapped calls. Log-scaled, a
      parameter shared between calls (or with a module outside the chain) reports nan.

    Raises:
      ValueError: ``log_scale`` not one of "auto", True, False; or True and the layers are no chain.
    """
    keys, x, plan = _prepare(make_model, seeds, inputs, layers)
    if isinstance(loss, str):
        loss_fn(loss)
    chain = _resolve_log_scale(log_scale, lambda: _chain_of_factory(make_model, plan, x), plan, layers)
    t = None if targets is None else jnp.asarray(targets)
    static = (("make_model", make_model), ("plan", plan), ("loss", loss), ("chain", chain))
    return map_seeds(_grad_one, static, keys, (x, t), (None, None), per_seed_bytes=_per_seed_bytes(plan, x),
                     max_bytes=max_bytes, seed_batch=seed_batch)


def _stats_one(key, x, *, make_model, plan, what, activation):
    hs = _taps_of(*_seed_split(make_model, key), plan, x)
    if what == "q":
        return jnp.stack([jnp.mean(jnp.square(h)) for h in hs])
    return stats_of_states(hs, activation)


def model_activation_stats(make_model: ModelFactory, seeds=8, inputs=None, *, layers=DEFAULT_LAYERS, activation=None,
                           max_bytes: int | None = None, seed_batch: int | None = None) -> ActivationStats:
    """:class:`ActivationStats` of φ(h_l) across seeds, fields (S, L).

    Args:
      activation: φ applied to each h_l before the statistics: None (h_l itself), a registry name
        (then saturation / dead units are measured where the activation has them) or a callable.
      make_model, seeds, inputs, layers, max_bytes, seed_batch: as :func:`model_gradient_profile`.
    """
    keys, x, plan = _prepare(make_model, seeds, inputs, layers)
    _activation(activation)
    static = (("make_model", make_model), ("plan", plan), ("what", "stats"), ("activation", activation))
    return map_seeds(_stats_one, static, keys, (x,), (None,), per_seed_bytes=_per_seed_bytes(plan, x, 2),
                     max_bytes=max_bytes, seed_batch=seed_batch)


def model_q_profile(make_model: ModelFactory, seeds=8, inputs=None, *, layers=DEFAULT_LAYERS,
                    max_bytes: int | None = None, seed_batch: int | None = None) -> jax.Array:
    """(S, L) q_l = mean over batch and entries of h_l² (linear units); arguments as :func:`model_gradient_profile`."""
    keys, x, plan = _prepare(make_model, seeds, inputs, layers)
    static = (("make_model", make_model), ("plan", plan), ("what", "q"), ("activation", None))
    return map_seeds(_stats_one, static, keys, (x,), (None,), per_seed_bytes=_per_seed_bytes(plan, x, 2),
                     max_bytes=max_bytes, seed_batch=seed_batch)


def _c_one(key, *, make_model, plan, c0, shape, dtype):
    k1, k2 = jax.random.split(jax.random.fold_in(data_key(key), 3))
    x1 = normal_draw(k1, shape, dtype)
    x2 = c0 * x1 + jnp.sqrt(1.0 - c0 * c0) * normal_draw(k2, shape, dtype)
    return pair_correlations(_taps_of(*_seed_split(make_model, key), plan, jnp.concatenate([x1, x2])), shape[0])


def model_c_profile(make_model: ModelFactory, seeds=8, c0: float = 0.5, *, inputs=None, layers=DEFAULT_LAYERS,
                    max_bytes: int | None = None, seed_batch: int | None = None) -> jax.Array:
    """(S, L) correlation c_l of two inputs with initial correlation c0, per tapped state.

    ``inputs`` (P, …) real-valued is only a template: P pairs of unit Gaussian inputs of its shape are
    drawn per seed (x2 = c0·x1 + √(1−c0²)·z) and run in one batch of 2P (batch statistics see both).
    """
    check_real("c0", c0, minimum=-1.0, maximum=1.0)
    if inputs is None or not jnp.issubdtype(jnp.asarray(inputs).dtype, jnp.floating):
        raise ValueError("c_profile of a model needs real-valued inputs (P, …) as the template of its input pairs, "
                         f"got {None if inputs is None else jnp.asarray(inputs).dtype}")
    x = jnp.asarray(inputs)
    keys, _, plan = _prepare(make_model, seeds, jnp.concatenate([x, x]), layers)
    static = (("make_model", make_model), ("plan", plan), ("c0", float(c0)), ("shape", tuple(x.shape)),
              ("dtype", x.dtype.name))
    return map_seeds(_c_one, static, keys, (), (), per_seed_bytes=_per_seed_bytes(plan, x, 2),
                     max_bytes=max_bytes, seed_batch=seed_batch)


def _spectrum_one(key, x, *, make_model, plan, method, dtype, k):
    g, p, r = _seed_split(make_model, key, dtype)
    x = x.astype(dtype) if dtype is not None and jnp.issubdtype(x.dtype, jnp.floating) else x
    if method == "lanczos":
        return _lanczos_of(g, p, r, plan, x, jax.random.fold_in(data_key(key), 2), k, None)
    return _jacobians_of(g, p, r, plan, x, method)


def _spectral_prepare(make_model, seeds, inputs, layers, dtype, k):
    keys, x, plan = _prepare(make_model, seeds, inputs, layers)
    if len(plan.calls) < 2:
        raise ValueError(f"Jacobian spectra need at least 2 tapped states (h_l and the last, h_L), "
                         f"layers={layers!r} taps {list(plan.labels)}")
    if dtype is not None:
        check_choice("dtype", dtype, DTYPES)
        plan = plan_taps(make_model, x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, layers)
        plan = plan._replace(shapes=tuple((s, dtype) for s, _ in plan.shapes))
    check_int("k", k)
    kk = min(k, max(int(np.prod(s[1:])) for s, _ in plan.shapes[:-1]))
    return keys, x, plan, kk


def model_jacobian_spectrum(make_model: ModelFactory, seeds=8, inputs=None, layers=DEFAULT_LAYERS,
                            method: str = "gram", dtype: str | None = None, *, k: int = DEFAULT_LANCZOS_K,
                            max_bytes: int | None = None, seed_batch: int | None = None) -> jax.Array:
    """log10 singular values of ∂h_L/∂h_l (example 0 of ``inputs``) for every tapped state l < L.

    h_L is the LAST tapped state; the Jacobian is that of example 0's state (the (0, 0) block when
    examples interact, e.g. through batch statistics), flattened over its non-batch axes.

    Args:
      method: "gram" | "svd" | "lanczos" (top-k, matrix-free), as :func:`gradjax.empirical.jacobian_spectrum`.
      dtype: working precision (floating parameters and inputs cast), default the model's own.
      make_model, seeds, inputs, layers, k, max_bytes, seed_batch: as :func:`model_gradient_profile`.

    Returns:
      (S, L−1, m) descending, m = max over l of min(N_L, N_l) (shorter rows nan-padded), or
      (S, L−1, k) for "lanczos".
    """
    check_choice("method", method, METHODS)
    keys, x, plan, kk = _spectral_prepare(make_model, seeds, inputs, layers, dtype, k)
    n_out = int(np.prod(plan.shapes[-1][0][1:]))
    per_seed = _per_seed_bytes(plan, x) * (1 if method == "lanczos" else n_out // max(1, x.shape[0]) + 1)
    static = (("make_model", make_model), ("plan", plan), ("method", method), ("dtype", dtype), ("k", kk))
    return map_seeds(_spectrum_one, static, keys, (x,), (None,), per_seed_bytes=per_seed, max_bytes=max_bytes,
                     seed_batch=seed_batch)


def _quadrature_one(key, x, *, make_model, plan, dtype, k, probes):
    g, p, r = _seed_split(make_model, key, dtype)
    x = x.astype(dtype) if dtype is not None and jnp.issubdtype(x.dtype, jnp.floating) else x
    return _lanczos_of(g, p, r, plan, x, jax.random.fold_in(data_key(key), 3), k, probes)


def model_jacobian_spectral_density(make_model: ModelFactory, seeds=8, inputs=None, layers=DEFAULT_LAYERS, *,
                                    k: int = DEFAULT_LANCZOS_K, probes: int = DEFAULT_SLQ_PROBES,
                                    dtype: str | None = None, max_bytes: int | None = None,
                                    seed_batch: int | None = None) -> SpectralQuadrature:
    """Singular-value distribution of ∂h_L/∂h_l by stochastic Lanczos quadrature, matrix-free
    (see :func:`gradjax.empirical.jacobian_spectral_density`): :class:`SpectralQuadrature` (S, L−1, probes·k);
    layer l runs min(k, N_l) steps, its other nodes nan with weight 0."""
    keys, x, plan, kk = _spectral_prepare(make_model, seeds, inputs, layers, dtype, k)
    check_int("probes", probes)
    static = (("make_model", make_model), ("plan", plan), ("dtype", dtype), ("k", kk), ("probes", probes))
    nodes, w = map_seeds(_quadrature_one, static, keys, (x,), (None,), per_seed_bytes=_per_seed_bytes(plan, x) * 2,
                         max_bytes=max_bytes, seed_batch=seed_batch)
    return SpectralQuadrature(nodes, w)


# ---- one name for both: a NetConfig or a model factory ------------------------------------------

def config_or_model(zoo_form: Callable, model_form: Callable) -> Callable:
    """``zoo_form(cfg, …)`` for a :class:`gradjax.config.NetConfig`, ``model_form(make_model, …)`` for a factory.

    The measurement keeps the zoo form's name, docstring and leading arguments; a factory's extra
    keywords (``layers=``, ``activation=``) are those of the model form.
    """

    @functools.wraps(zoo_form)
    def measure(net, *args, **kwargs):
        if isinstance(net, NetConfig):
            return zoo_form(net, *args, **kwargs)
        if callable(net):
            return model_form(net, *args, **kwargs)
        raise TypeError(f"the first argument must be a NetConfig or a model factory make_model(rngs) -> nnx.Module, "
                        f"got {net!r} of type {type(net).__name__}")

    measure.__doc__ = (zoo_form.__doc__ or "") + (
        f"\n    With a model factory ``make_model(rngs) -> nnx.Module`` in place of ``cfg``: "
        f":func:`gradjax.empirical.model.{model_form.__name__}`.\n")
    return measure
