"""Mean-field signal propagation: the q- and c-maps, their fixed points, χ₁, depth scales, phases.

For a wide random network h_l = W_l φ(h_{l−1}) + b_l with W_ij ~ N(0, σ_w²/N), b_i ~ N(0, σ_b²), the
pre-activation length q_l = E[h_l²] and the correlation c_l of two inputs follow deterministic maps

    q_l = σ_w² E[φ(√q_{l−1} z)²] + σ_b²                                   (q-map)
    c_l = (σ_w² E[φ(u₁) φ(u₂)] + σ_b²) / q_l,  corr(u₁, u₂) = c_{l−1}      (c-map)

with the Gaussian integrals of ``gradjax.theory.gaussian``. χ₁ = σ_w² E[φ′(√q* z)²] is the slope of
the c-map at c = 1 and the per-layer growth of E‖∂loss/∂h‖²; χ₁ = 1 is the order-to-chaos line.

Scalar functions take ``(activation, sigma_w2, sigma_b2, ...)`` with ``activation`` a registry name or
an elementwise callable (static under ``jax.jit``) and ``slope`` (leaky_relu / prelu, keyword-only,
traced like σ_w² and σ_b²). Vmap over σ_w², σ_b² at the call site:
``jax.vmap(jax.vmap(chi_1, (None, None, 0)), (None, 0, None))("tanh", sw2_grid, sb2_grid)``.
The profiles along depth take a ``NetConfig``, a pytree whose numbers are traced:
``jax.vmap(lambda s: q_profile(cfg.with_(sigma_w2=s)))(sw2)`` compiles once.

Degenerate cases return clean values, never nan: q* = 0 (σ_b² = 0 in the ordered phase), q* = inf
(unbounded activations above criticality, e.g. relu with σ_w² > 2), depth scales inf where the
relevant slope is ≥ 1 (criticality, or q* = inf).

References:
  Poole et al. 2016, "Exponential expressivity in deep neural networks through transient chaos",
  arXiv:1606.05340.
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232 (χ₁, ξ_q, ξ_c).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from gradjax.theory import gaussian as _g
from gradjax.theory.scalars import _f, _mean_square_after_norm, _norm_eps
from gradjax.theory.support import requires

# q* above this is reported as inf (the map escapes: unbounded activation above criticality).
_Q_MAX = 1e30
# Quantities "at q* = inf" are evaluated at this finite q: every registry activation is then in its
# asymptotic (piecewise-linear / saturated) regime, and the closed forms do not depend on q.
_Q_EVAL_INF = 1e12
# Relative width of the bisection bracket at which the q* solve stops (float64 resolution).
_Q_RTOL = 1e-14
# Below this q the bracket is taken to have collapsed onto q* = 0.
_Q_FLOOR = 1e-200
_MAX_BISECT = 600
# Ulps within which G(q0) = q_map(q0) − q0 counts as 0 (the 320-node rule's sum rounds to ~n·eps;
# a root within this of q0 is q0 to the solve's own resolution _Q_RTOL).
_G_ROUND = 64
# Largest relative change the final Newton step of q_star may make (a converged root moves by ~1e-14).
_NEWTON_MAX_STEP = 1e-8
# Newton iterations for c* stop at this change (quadratic convergence; linear near criticality).
_C_TOL = 1e-14
_MAX_NEWTON_C = 200
#: Phase names indexed by the integer :func:`phase` returns.
PHASES = ("ordered", "critical", "chaotic")

# The activation is structure (static); σ_w², σ_b², q and the slope are numbers (traced).
_jit = functools.partial(jax.jit, static_argnames=("activation",))


@_jit
def q_map(activation, sigma_w2, sigma_b2, q, *, slope=None):
    """One step of the length map: σ_w² E[φ(√q z)²] + σ_b².

    Args:
      activation: registry name or elementwise callable (static).
      sigma_w2, sigma_b2: () effective weight variance and bias variance.
      q: () incoming pre-activation second moment.
      slope: leaky_relu / prelu slope (traced; default the registry default).

    Returns:
      () the next q (linear units).

    References: Poole et al. 2016, arXiv:1606.05340, Eq. 3.
    """
    return _f(sigma_w2) * _g.second_moment(activation, _f(q), slope=slope) + _f(sigma_b2)


def _q_map_slope(activation, sigma_w2, q, slope):
    """d q_map / dq = σ_w² E[φ′² + φφ″] (= χ₁ + σ_w² E[φ″φ])."""
    return _f(sigma_w2) * _g.q_map_slope_kernel(activation, q, slope=slope)


def _solve_q(activation, sigma_w2, sigma_b2, q0, slope):
    """The fixed point the length map reaches from q0, by bracketing and bisection (no gradients).

    q_map is increasing in q, so iterating it from q0 moves monotonically towards the nearest root of
    G(q) = q_map(q) − q in the direction of sign G(q0): bisection in that bracket finds the same point
    robustly, also where plain iteration converges only algebraically (near criticality).
    """
    G = lambda q: q_map(activation, sigma_w2, sigma_b2, q, slope=slope) - q  # noqa: E731
    q0 = jnp.where(q0 > 0, q0, 1.0)
    g0 = G(q0)
    up = g0 > 0

    # Expansion upwards: hi ← 16·hi until G(hi) ≤ 0 or hi passes _Q_MAX (then q* = inf).
    def grow_cond(s):
        lo, hi, ghi = s
        return (ghi > 0) & (hi < _Q_MAX)

    def grow_body(s):
        lo, hi, ghi = s
        return hi, 16.0 * hi, G(16.0 * hi)

    lo, hi, ghi = jax.lax.while_loop(grow_cond, grow_body, (jnp.where(up, q0, 0.0), q0, g0))
    escaped = ghi > 0

    # Bisection on [lo, hi] with G(lo) ≥ 0 ≥ G(hi); geometric midpoints over wide brackets, and a fast
    # descent while lo = 0 (q* may be many decades below q0 just above criticality at σ_b² = 0).
    def bis_cond(s):
        lo, hi, k = s
        return (hi - lo > _Q_RTOL * hi) & (hi > _Q_FLOOR) & (k < _MAX_BISECT)

    def bis_body(s):
        lo, hi, k = s
        mid = jnp.where(lo <= 0, hi / 16.0, jnp.where(hi > 4.0 * lo, jnp.sqrt(lo * hi), 0.5 * (lo + hi)))
        pos = G(mid) > 0
        return jnp.where(pos, mid, lo), jnp.where(pos, hi, mid), k + 1

    # Ordered phase at a zero-variance fixed point (G(0) = 0, G′(0) ≤ 0): q* = 0 without descending.
    g_at_0 = G(0.0)
    # (slope taken at a tiny q > 0: the clamped √ has no derivative at exactly 0)
    zero = (g_at_0 <= 0) & (_q_map_slope(activation, sigma_w2, 1e-30, slope) <= 1.0) & ~up
    lo, hi, _ = jax.lax.while_loop(bis_cond, bis_body, (lo, jnp.where(zero, 0.0, hi), 0))
    root = jnp.where(hi <= _Q_FLOOR, 0.0, 0.5 * (lo + hi))
    # q0 is itself a fixed point when G(q0) vanishes to rounding (e.g. relu at σ_w² = 2, σ_b² = 0,
    # where every q is fixed): an exact `== 0` test would let one machine's last bit send the solve
    # to 0 or inf. _G_ROUND ulps of the larger of q0 and q_map(q0) bound the rounding of G.
    eps = jnp.finfo(g0.dtype).eps
    fixed0 = jnp.abs(g0) <= _G_ROUND * eps * jnp.maximum(q0, jnp.abs(g0 + q0))
    return jnp.where(fixed0, q0, jnp.where(escaped, jnp.inf, root))


@_jit
def q_star(activation, sigma_w2, sigma_b2, *, q0=1.0, slope=None):
    """The fixed point q* of the length map reached from q0 (the attractor of the network's q_l).

    Found by bracketing and bisection (robust on whole phase-diagram grids), then one Newton step of
    G(q) = q_map(q) − q from the converged point: it leaves the value unchanged to rounding and gives
    the implicit-function derivative dq*/dθ = −∂_θG/∂_qG under autodiff.

    Returns:
      () q* (linear units): 0 where the map collapses (σ_b² = 0, ordered phase), inf where it escapes,
      q0 itself where the map moves q0 by less than its rounding (every q is then a fixed point for
      any practical depth, e.g. relu at σ_w² = 2, σ_b² = 0).

    References: Poole et al. 2016, arXiv:1606.05340, Sec. 2.
    """
    sw, sb = _f(sigma_w2), _f(sigma_b2)
    q = jax.lax.stop_gradient(_solve_q(activation, sw, sb, _f(q0), slope))
    ok = jnp.isfinite(q) & (q > 0)
    q_safe = jnp.where(ok, q, 1.0)
    g = q_map(activation, sw, sb, q_safe, slope=slope) - q_safe
    gp = _q_map_slope(activation, sw, q_safe, slope) - 1.0
    gp_safe = jnp.where(jnp.abs(gp) > 1e-300, gp, 1.0)
    newton = q_safe - g / gp_safe
    # The step only polishes a converged root (and carries the implicit derivative); where the map is
    # the identity to rounding (G′ ≈ 0, e.g. relu at σ_w² = 2, σ_b² = 0) g/G′ is rounding over
    # rounding and would throw the root anywhere: keep the solve's value there.
    polish = ok & (jnp.abs(gp) > 1e-300) & (jnp.abs(g) <= _NEWTON_MAX_STEP * jnp.abs(gp_safe) * q_safe)
    return jnp.where(polish, newton, q)


def _q_eval(q):
    return jnp.where(jnp.isinf(q), _Q_EVAL_INF, q)


@_jit
def chi_1(activation, sigma_w2, sigma_b2, *, slope=None):
    """χ₁ = σ_w² E[φ′(√q* z)²]: slope of the c-map at c = 1, per-layer growth of E‖δ‖².

    Returns:
      () χ₁ (linear units); < 1 ordered, > 1 chaotic.

    References: Schoenholz et al. 2017, arXiv:1611.01232, Eq. 5.
    """
    q = _q_eval(q_star(activation, sigma_w2, sigma_b2, slope=slope))
    return _f(sigma_w2) * _g.derivative_moment(activation, q, slope=slope)


def _c_map_at(activation, sw, sb, q, c, slope):
    num = sw * _g.pair_moment(activation, q, q, c, slope=slope) + sb
    den = sw * _g.second_moment(activation, q, slope=slope) + sb
    return num / den


@_jit
def c_map(activation, sigma_w2, sigma_b2, c, *, q=None, slope=None):
    """One step of the correlation map at length q (default q*):

        c ↦ (σ_w² E[φ(u₁)φ(u₂)] + σ_b²) / (σ_w² E[φ(√q z)²] + σ_b²),  u₁, u₂ of variance q, corr c.

    Normalising by the next length (not q itself) makes the map well defined also at q* = inf.

    Returns:
      () the next correlation.

    References: Poole et al. 2016, arXiv:1606.05340, Eq. 5.
    """
    sw, sb = _f(sigma_w2), _f(sigma_b2)
    q = q_star(activation, sw, sb, slope=slope) if q is None else _f(q)
    return _c_map_at(activation, sw, sb, _q_eval(q), _f(c), slope)


def _c_fixed_point(activation, sw, sb, q, slope):
    """c* and χ_c at length q > 0 (finite; callers map inf to _Q_EVAL_INF).

    The c-map is a power series in c with non-negative coefficients (Mehler), so F(c) = c_map(c) − c is
    convex on [0, 1] with F(0) ≥ 0 and F(1) = 0: Newton from c = 0 increases monotonically to the
    smallest root, the stable c* (= 1 in the ordered phase, where χ₁ ≤ 1 and c* = 1 is returned
    directly: Newton converges only linearly onto a double root).

    Returns:
      ``(c*, χ_c)``; χ_c = σ_w² q E[φ′(u₁)φ′(u₂)] / (σ_w² E[φ²] + σ_b²), which is σ_w² E[φ′φ′] at q = q*.
    """
    den = sw * _g.second_moment(activation, q, slope=slope) + sb
    den = jnp.where(den > 0, den, 1.0)
    k = _g.pair_kernel(activation, q, q, slope=slope)
    kd = _g.pair_kernel(activation, q, q, derivative_of=True, slope=slope)
    F = lambda c: (sw * k(c) + sb) / den - c  # noqa: E731
    Fp = lambda c: sw * q * kd(c) / den - 1.0  # noqa: E731
    ordered = Fp(jnp.ones_like(q)) <= 1e-12

    def cond(s):
        c, step, it = s
        return (step > _C_TOL) & (it < _MAX_NEWTON_C)

    def body(s):
        c, _, it = s
        fp = Fp(c)
        new = jnp.where(fp < 0, c - F(c) / jnp.where(fp < 0, fp, -1.0), 1.0)
        new = jnp.clip(new, c, 1.0)  # monotone from the left; never past c = 1
        return new, jnp.abs(new - c), it + 1

    c, _, _ = jax.lax.while_loop(cond, body, (jnp.zeros_like(q), jnp.where(ordered, 0.0, 1.0), 0))
    c = jnp.where(ordered | (c > 1.0 - 1e-13), 1.0, c)
    return c, Fp(c) + 1.0


def _state(activation, sw, sb, slope):
    """(q*, c*, χ₁, χ_c) computed once (shared by the public functions)."""
    q = q_star(activation, sw, sb, slope=slope)
    qe = _q_eval(jnp.where(q > 0, q, 1.0))
    c, xc = _c_fixed_point(activation, sw, sb, jax.lax.stop_gradient(qe), slope)
    chi1 = sw * _g.derivative_moment(activation, _q_eval(q), slope=slope)
    # q* = 0: the map linearises; c* = 1 and χ_c = χ₁ (the limit σ_b² → 0 of the ordered phase).
    c = jnp.where(q > 0, jax.lax.stop_gradient(c), 1.0)
    xc = jnp.where(q > 0, xc, chi1)
    return q, c, chi1, xc


@_jit
def c_star(activation, sigma_w2, sigma_b2, *, slope=None):
    """The stable fixed point c* of the correlation map at q*.

    Returns:
      () c* in [0, 1]; 1 in the ordered phase. At q* = 0 (σ_b² = 0, ordered) the map degenerates to
      the identity of the linearised network; c* = 1 is returned there (the limit from σ_b² > 0).

    References: Poole et al. 2016, arXiv:1606.05340; Schoenholz et al. 2017, arXiv:1611.01232.
    """
    return _state(activation, _f(sigma_w2), _f(sigma_b2), slope)[1]


@_jit
def chi_c(activation, sigma_w2, sigma_b2, *, slope=None):
    """χ_c = σ_w² E[φ′(u₁)φ′(u₂)] at (q*, c*): the slope of the c-map at its fixed point.

    By Price's theorem ∂/∂c E[φ(u₁)φ(u₂)] = q E[φ′(u₁)φ′(u₂)]; equals χ₁ where c* = 1. At q* = inf it is
    the slope of the normalised map (:func:`c_map`).

    References: Schoenholz et al. 2017, arXiv:1611.01232, Eq. 8.
    """
    return _state(activation, _f(sigma_w2), _f(sigma_b2), slope)[3]


# Slopes within this of 1 count as marginal (ξ = inf): closed-form marginal cases (relu above
# criticality, where the normalised c-map has slope exactly 1) come out 1 − O(1e-13) in floating point.
_MARGINAL = 1e-10


def _depth_scale(slope_value):
    """ξ = −1/ln(slope); inf where slope ≥ 1 (marginal or unstable), 0 where slope = 0."""
    s = jnp.clip(slope_value, 0.0, 1.0)
    marginal = s >= 1.0 - _MARGINAL
    safe = jnp.where(marginal, 0.5, s)
    return jnp.where(marginal, jnp.inf, -1.0 / jnp.log(safe))


@_jit
def depth_scale_q(activation, sigma_w2, sigma_b2, *, slope=None):
    """ξ_q = −1/ln[χ₁ + σ_w² E(φ″φ)] = −1/ln(q-map slope at q*): how fast q_l reaches q*.

    Returns:
      () ξ_q in layers; inf where the slope is ≥ 1 (criticality at σ_b² = 0, or q* = inf).

    References: Schoenholz et al. 2017, arXiv:1611.01232, Eq. 4.
    """
    q = q_star(activation, sigma_w2, sigma_b2, slope=slope)
    s = _q_map_slope(activation, sigma_w2, jnp.maximum(_q_eval(q), 1e-30), slope)
    return jnp.where(jnp.isinf(q), jnp.inf, _depth_scale(s))


@_jit
def depth_scale_c(activation, sigma_w2, sigma_b2, *, slope=None):
    """ξ_c = −1/ln χ_c: how fast correlations reach c* (diverges on the order-to-chaos line).

    Returns:
      () ξ_c in layers; inf at criticality.

    References: Schoenholz et al. 2017, arXiv:1611.01232, Eq. 9.
    """
    return _depth_scale(chi_c(activation, sigma_w2, sigma_b2, slope=slope))


@functools.partial(jax.jit, static_argnames=("activation", "bounds"))
def critical_sigma_w2(activation, sigma_b2, *, slope=None, bounds=(1e-3, 1e3)):
    """σ_w² on the order-to-chaos line at bias variance σ_b²: the root of χ₁(σ_w², σ_b²) = 1.

    Bisection in log σ_w² over ``bounds`` (χ₁ grows with σ_w² at fixed σ_b²). Cross-check: the
    parametric line σ_w² = 1/E[φ′(√q z)²], σ_b² = q − σ_w² E[φ(√q z)²] (tests/theory/test_meanfield.py).

    Returns:
      () σ_w²; inf if χ₁ < 1 throughout ``bounds``, 0 if χ₁ > 1 throughout.

    References: Schoenholz et al. 2017, arXiv:1611.01232, Sec. 3 (Fig. 1).
    """
    sb = _f(sigma_b2)
    h = lambda lsw: chi_1(activation, jnp.exp(lsw), sb, slope=slope) - 1.0  # noqa: E731
    lo, hi = jnp.log(_f(bounds[0])), jnp.log(_f(bounds[1]))
    h_lo, h_hi = h(lo), h(hi)

    def body(_, s):
        lo, hi = s
        mid = 0.5 * (lo + hi)
        neg = h(mid) < 0
        return jnp.where(neg, mid, lo), jnp.where(neg, hi, mid)

    # 64 halvings of a bracket of width ln(1e6) ≈ 14 reach below float64 resolution of log σ_w².
    lo, hi = jax.lax.fori_loop(0, 64, body, (lo, hi))
    out = jnp.exp(0.5 * (lo + hi))
    return jnp.where(h_hi < 0, jnp.inf, jnp.where(h_lo > 0, 0.0, out))


def critical_point(activation, q_star, *, slope=None):
    """The point of the order-to-chaos line whose length fixed point is ``q_star``.

    σ_w² = 1/E[φ′(√q* z)²] (χ₁ = 1) and σ_b² = q* − σ_w² E[φ(√q* z)²] (q* a fixed point of the length
    map). Small q* keeps a tanh network near its linear regime, where the correlation map approaches its
    fixed point c = 1 slowly: Xiao et al. 2018's delta-orthogonal networks take q* = 1/L. For tanh σ_b² ≈
    (4/3) q*³ at small q*, a difference of two numbers equal to relative q*², so the moments are taken in
    64-bit (scoped, whatever ``jax_enable_x64`` says); the result is 64-bit numpy.

    Args:
      activation: registry name or elementwise callable.
      q_star: () the fixed point q* > 0 (linear units).
      slope: leaky_relu / prelu slope (default the registry default).

    Returns:
      (σ_w², σ_b²) as numpy float64 scalars.

    Raises:
      ValueError: q_star is not positive and finite, or the activation has no critical point with that q*
        (σ_b² would be negative).

    References: Schoenholz et al. 2017, arXiv:1611.01232, Sec. 3; Xiao et al. 2018, arXiv:1806.05393
    (and its reference notebook, brain-research/mean-field-cnns: ``qstar = 1./DEPTH``).
    """
    q = float(q_star)
    if not (math.isfinite(q) and q > 0):
        raise ValueError(f"q_star must be a finite number > 0, got q_star={q_star!r}")
    with jax.enable_x64(True):
        mu1 = float(_g.derivative_moment(activation, jnp.float64(q), slope=slope))
        v = float(_g.second_moment(activation, jnp.float64(q), slope=slope))
    sw = 1.0 / mu1
    sb = q - sw * v
    if sb < -1e-12 * q:
        raise ValueError(f"critical_point: {activation!r} has no critical point with q_star={q!r} "
                         f"(σ_b² = q* − σ_w² E[φ²] = {sb:.3g} < 0)")
    return np.float64(sw), np.float64(max(sb, 0.0))


@functools.partial(jax.jit, static_argnames=("activation", "tol"))
def phase(activation, sigma_w2, sigma_b2, *, slope=None, tol=1e-6):
    """Phase of (σ_w², σ_b²) as an index into :data:`PHASES`: 0 ordered (χ₁ < 1 − tol), 1 critical,
    2 chaotic (χ₁ > 1 + tol).

    References: Schoenholz et al. 2017, arXiv:1611.01232.
    """
    x = chi_1(activation, sigma_w2, sigma_b2, slope=slope)
    return jnp.where(x < 1 - tol, 0, jnp.where(x > 1 + tol, 2, 1))


# ---- profiles along the actual depth of a NetConfig ---------------------------------------------


def _centred_variance(cfg, q):
    """Var φ(√q z) = E φ² − (E φ)²: per-feature variance over the batch of φ's output."""
    m = _g.mean_moment(cfg.activation, q, slope=cfg.leaky_slope)
    return _g.second_moment(cfg.activation, q, slope=cfg.leaky_slope) - m * m


#: Archs the per-block recursions here model; a cnn's q and c maps are the mlp's (see gradjax.theory.conv).
MODELLED_ARCHS = ("mlp", "resmlp", "rnn", "cnn")


def block_kind(cfg, what: str) -> str:
    """The dense recursion that models ``cfg``'s block: its arch, "mlp" for a cnn (a circular convolution
    has the mlp's q-map, c-map and backward factor at every position: Xiao et al. 2018, arXiv:1806.05393,
    Sec. 2.2). Raises ValueError naming ``arch`` for archs modelled elsewhere (transformer)."""
    if cfg.arch not in MODELLED_ARCHS:
        raise ValueError(f"{what} models arch in {list(MODELLED_ARCHS)}, got arch={cfg.arch!r} "
                         "(transformer theory: gradjax.theory.attention)")
    return "mlp" if cfg.arch == "cnn" else cfg.arch


def _default_q0(cfg, q0):
    if q0 is None:
        return 0.0 if cfg.arch == "rnn" else 1.0
    return q0


def length_recursion(cfg, q0, q_in=1.0):
    """The per-block mean-field state along depth: q_l and, for batchnorm, the centred variance ν_l.

    Every block type of ``gradjax.nn`` has one recursion (see :func:`q_profile` for the list).

    Returns:
      ``(q, nu)``: (L + 1,) each, entry l the value for h_l (entry 0 for h_0). ``nu`` is the per-feature
      variance over the batch (what batchnorm divides by); it equals q except where biases or φ's
      mean make h non-centred.
    """
    kind = block_kind(cfg, "length_recursion")
    sw, sb, a2 = _f(cfg.sigma_w2), _f(cfg.sigma_b2), _f(cfg.alpha) ** 2
    act, sl = cfg.activation, cfg.leaky_slope
    V = lambda q: _g.second_moment(act, q, slope=sl)  # noqa: E731
    var_phi = lambda q: _centred_variance(cfg, q)  # noqa: E731
    pre, post = cfg.pre_norm, cfg.post_norm
    bn = cfg.norm == "batchnorm"
    q0 = _f(q0)
    q_in = _f(q_in)

    def step(state, _):
        q, nu = state
        if pre:
            # pre-norm: φ sees norm(h); per-example norms rescale by q, batchnorm by the batch variance ν
            qx = _mean_square_after_norm(nu if bn else q)
        else:
            qx = q
        if kind == "mlp":
            r, nu_r = sw * V(qx) + sb, sw * var_phi(qx)
        elif kind == "resmlp":
            r, nu_r = q + a2 * (sw * V(qx) + sb), nu + a2 * sw * var_phi(qx)
        else:  # rnn: h_t = W φ(h_{t−1}) + U x_t + b, inputs of variance q_in
            r, nu_r = sw * V(qx) + sb + q_in, sw * var_phi(qx) + q_in
        if post:
            r = _mean_square_after_norm(nu_r if bn else r)
            nu_r = r if bn else nu_r
        return (r, nu_r), (r, nu_r)

    # h_0: the input layer gives q0 for unit-variance i.i.d. inputs (centred: ν_0 = q0); rnn h_0 = 0.
    _, (q, nu) = jax.lax.scan(step, (q0, q0), None, length=cfg.depth)
    return jnp.concatenate([q0[None], q]), jnp.concatenate([q0[None], nu])


@jax.jit
def q_profile(cfg, *, q0=None, q_in=1.0):
    """Pre-activation length q_l = mean(h_l²) after every block of ``cfg``, along the actual depth.

    Recursions (φ-integrals at the variance of what φ sees; α = ``cfg.alpha``; ε the norms' floor):

    * mlp:    q_l = σ_w² E[φ(√q_{l−1} z)²] + σ_b²
    * resmlp: q_l = q_{l−1} + α² (σ_w² E[φ²] + σ_b²)
    * rnn:    q_t = σ_w² E[φ(√q_{t−1} z)²] + σ_b² + q_in   (h_0 = 0; inputs U x_t of variance q_in)
    * cnn:    the mlp's, at every position (gaussian and delta_orthogonal kernels alike)
    * transformer: the tokens' Gram through attention, MLP, norms and α-weighted skips
      (:func:`gradjax.theory.attention.transformer_q_profile`; q0 = 1: uncorrelated unit tokens at h_0)
    * norm "pre": φ sees norm(h), of second moment q/(q + ε) (layer/rms) or ν/(ν + ε) (batch, ν the
      per-feature variance over the batch, tracked alongside q); norm "post": the block output is
      normalised, q_l = r/(r + ε) for the pre-norm second moment r (or ν_r for batchnorm).
    Batchnorm is modelled at large batch (φ's input Gaussian per feature); see
    ``gradjax.theory.gradients`` for its finite-batch gradient rate.

    Args:
      cfg: the network (a pytree: structure static, numbers traced).
      q0: () second moment of h_0; default 1 (mlp/resmlp with unit-variance inputs), 0 (rnn).
      q_in: () variance of the rnn input drive U x_t (1 for unit-variance inputs).

    Returns:
      (L,) q_l, entry l−1 after block l (linear units).

    References: Poole et al. 2016, arXiv:1606.05340; Yang et al. 2019, "A Mean Field Theory of Batch
    Normalization", arXiv:1902.08129.
    """
    if cfg.arch == "transformer":
        from gradjax.theory.attention import transformer_q_profile  # attention builds on this module

        return transformer_q_profile(cfg, _default_q0(cfg, q0))
    return length_recursion(cfg, _default_q0(cfg, q0), q_in)[0][1:]


@jax.jit
def c_profile(cfg, *, c0=0.5, q0=None, q_in=1.0, c_in=None):
    """Correlation c_l of two inputs' pre-activations after every block of ``cfg``.

    Both inputs start with second moment q0 and correlation c0. The covariance k_l follows the block
    recursion of :func:`q_profile` with E[φ(u₁)φ(u₂)] in place of E[φ²] (residual: k_l = k_{l−1} +
    α²(σ_w² E[φφ] + σ_b²); rnn: + c_in·q_in from inputs of correlation c_in, default c0); per-example
    norms rescale both inputs and leave c unchanged.

    Args:
      cfg: the network (structure static, numbers traced); ``norm="batchnorm"`` is not modelled here (it couples the examples
        of a batch) and raises ValueError.
      c0: () initial correlation of the two inputs (the measured pair's ``c0``, same default).
      q0: () second moment of h_0 (default as in :func:`q_profile`).

    Returns:
      (L,) c_l, entry l−1 after block l.

    References: Poole et al. 2016, arXiv:1606.05340, Eq. 5.
    """
    requires(cfg, "theory.c_profile", norm=("none", "layernorm", "rmsnorm"),
             why={"norm": "batchnorm couples the examples of a batch"})
    kind = block_kind(cfg, "c_profile")
    q0 = _f(_default_q0(cfg, q0))
    c_in = c0 if c_in is None else c_in
    sw, sb, a2 = _f(cfg.sigma_w2), _f(cfg.sigma_b2), _f(cfg.alpha) ** 2
    act, sl = cfg.activation, cfg.leaky_slope
    pre, post = cfg.pre_norm, cfg.post_norm
    q_in, c_in = _f(q_in), _f(c_in)

    def step(state, _):
        q, k = state
        c = jnp.where(q > 0, k / jnp.where(q > 0, q, 1.0), 1.0)
        qx = _mean_square_after_norm(q) if pre else q
        V = _g.second_moment(act, qx, slope=sl)
        P = _g.pair_moment(act, qx, qx, jnp.clip(c, -1.0, 1.0), slope=sl)
        if kind == "mlp":
            r, kr = sw * V + sb, sw * P + sb
        elif kind == "resmlp":
            r, kr = q + a2 * (sw * V + sb), k + a2 * (sw * P + sb)
        else:
            r, kr = sw * V + sb + q_in, sw * P + sb + c_in * q_in
        if post:
            scale = _mean_square_after_norm(r) / jnp.where(r > 0, r, 1.0)
            r, kr = r * scale, kr * scale
        return (r, kr), kr / jnp.where(r > 0, r, 1.0)

    _, c = jax.lax.scan(step, (q0, _f(c0) * q0), None, length=cfg.depth)
    return c
