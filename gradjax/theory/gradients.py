"""Predicted gradient-norm profiles: one backward factor per block type, along the q-trajectory.

Mean field (gradient independence, infinite width): the squared norm of δ_l = ∂loss/∂h_l changes by a
deterministic factor per block, E‖δ_{l−1}‖² = f_l · E‖δ_l‖², so the expected log-norm relative to the
output is a sum of ½ log10 f_k over the blocks above. The factors (φ-moments at what φ sees in block l):

* mlp / rnn:      f_l = σ_w² E[φ′(√q_{l−1} z)²]            (= χ₁ at the fixed point; rnn with its shared W)
* resmlp:         f_l = 1 + α² σ_w² E[φ′²]                  (h + α(W φ(h) + b); cross term has mean 0)
* layer/rms norm: × 1/(q + ε) for the normalised vector's second moment q (pre: h_{l−1}; post: the
  block output before the norm), φ evaluated at the normalised variance q/(q + ε).
* batchnorm:      the finite-batch rate λ_B of Yang et al. 2019 (below), pre or post (the same chain of
  operations per period); residual + batchnorm by the same computation with the residual stream.

Batchnorm at batch size B. For one feature, BN(h) = √B·G h/‖G h‖ with G = I − 11ᵀ/B. Its input over the
batch is Gaussian with covariance ∝ G at the BSB1 fixed point (Yang et al. 2019), so the
output x is uniform on the sphere of radius √B in the centred subspace, independent of ‖Gh‖² ~ ν χ²_{B−1}.
With an isotropic centred upstream gradient, one layer multiplies E‖δ‖² by

    λ_B = B · T / (a (B−1)(B−3)),   T = E[tr(G D G D) − x̂ᵀ D G D x̂],   a = E φ(x₁)² − E φ(x₁)φ(x₂),

D = diag φ′(x), x̂ = x/√B, and E[B/‖Gh‖²] = B/(ν(B−3)) (mean of an inverse χ²_{B−1}). Linear φ gives
exactly (B−2)/(B−3); as B → ∞, λ → E[φ′(z)²]/Var φ(z), which is π/(π−1) for relu — the values of
Yang et al. 2019. The expectations over x are over the exact one- and two-coordinate marginals of the
uniform law on the sphere (quadrature split at the kinks of φ, ``gradjax.theory.sphere``): a Gaussian
pair with the same moments would be exact for linear φ only (for tanh at B = 8 it gives 1.568
instead of 1.359).

Finite width (Hanin 2018): the per-block ratio R_l = ‖δ_{l−1}‖²/‖δ_l‖² fluctuates with relative variance
v_l = (3 μ₂/μ₁² − 1)/N for a dense block (μ_k = E φ′^{2k}; relu: 5/N, so E‖Ju‖⁴/‖u‖⁴ = ∏(1 + 5/n_l)); with
independent blocks Var log‖δ_l‖² ≈ Σ v_k and E log R ≈ log E R − v/2 (the finite-width drift of the
mean log-norm below ½ log10 χ₁).

References:
  Schoenholz et al. 2017, "Deep Information Propagation", arXiv:1611.01232 (Sec. 4, backward).
  Yang et al. 2019, "A Mean Field Theory of Batch Normalization", arXiv:1902.08129.
  Hanin 2018, "Which Neural Net Architectures Give Rise to Exploding and Vanishing Gradients?",
  arXiv:1801.03744.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from gradjax._validate import check_int
from gradjax.nn.activations import resolve_activation
from gradjax.theory import gaussian as _g
from gradjax.theory import sphere as _sphere
from gradjax.theory.meanfield import _default_q0, _f, _mean_square_after_norm, _norm_eps, length_recursion

#: Default batch size for the batchnorm rate (the training batch of the experiments).
DEFAULT_BATCH_SIZE = 128
_LN10 = math.log(10.0)


def _bn_moments(activation, slope, batch_size):
    """(A, Ap, X, Xp, a): E φ′², E φ′₁φ′₂, E x²φ′², E x₁x₂φ′₁φ′₂, Eφ² − Eφ₁φ₂ for x uniform on S_B."""
    phi = resolve_activation(activation, slope=slope)
    dphi = _g.derivative(phi)
    xdphi = lambda x: x * dphi(x)  # noqa: E731
    kinks = _g.closed_forms(activation).kinks
    one = functools.partial(_sphere.expect_marginal, batch_size=batch_size, kinks=kinks)
    two = functools.partial(_sphere.expect_pair, batch_size=batch_size, kinks=kinks)
    A, X = one(lambda x: dphi(x) ** 2), one(lambda x: xdphi(x) ** 2)
    Ap, Xp = two(dphi, dphi), two(xdphi, xdphi)
    a = one(lambda x: phi(x) ** 2) - two(phi, phi)
    return A, Ap, X, Xp, a


def _bn_traces(activation, slope, batch_size):
    """T = E[tr(GDGD) − x̂ᵀDGDx̂], T_I = E[tr(G D²) − x̂ᵀD²x̂] and a (see module docstring)."""
    B = float(batch_size)
    A, Ap, X, Xp, a = _bn_moments(activation, slope, batch_size)
    tr_gdgd = (1 - 2 / B) * B * A + (B * A + B * (B - 1) * Ap) / B**2
    xdgdx = X - (X + (B - 1) * Xp) / B
    return tr_gdgd - xdgdx, (B - 1) * A - X, a


@functools.partial(jax.jit, static_argnames=("activation", "slope", "batch_size"))
def batchnorm_rate(activation, batch_size=DEFAULT_BATCH_SIZE, *, slope=None):
    """Per-layer growth λ_B of E‖δ‖² in a batch-normalized MLP at initialization (any σ_w², σ_b²).

    λ_B = B T / (a (B−1)(B−3)) (module docstring); (B−2)/(B−3) for linear, → π/(π−1) for relu as B → ∞.

    Args:
      activation: registry name or elementwise callable (static).
      batch_size: B ≥ 4 (static).

    Returns:
      () λ_B (linear units; the log10-norm slope is ½ log10 λ_B per layer).

    References: Yang et al. 2019, "A Mean Field Theory of Batch Normalization", arXiv:1902.08129.
    """
    check_int("batch_size", batch_size, minimum=4)
    B = float(batch_size)
    T, _, a = _bn_traces(activation, slope, batch_size)
    return B * T / (a * (B - 1) * (B - 3))


def block_factors(cfg, q0=None, *, q_in=1.0, batch_size=DEFAULT_BATCH_SIZE):
    """f_l = E‖δ_{l−1}‖²/E‖δ_l‖² for every block l = 1..L, and the finite-width variances v_l.

    Returns:
      ``(f, v)``: (L,) each; entry l−1 belongs to block l (it maps δ_l to δ_{l−1}).
    """
    act, sl = cfg.activation, cfg.leaky_slope
    sw, sb, a2 = _f(cfg.sigma_w2), _f(cfg.sigma_b2), _f(cfg.alpha) ** 2
    n = float(cfg.width)
    eps = _norm_eps()
    q, nu = length_recursion(cfg, _default_q0(cfg, q0), q_in)
    q_prev, nu_prev = q[:-1], nu[:-1]  # what enters block l
    pre = cfg.norm != "none" and cfg.norm_position == "pre"
    post = cfg.norm != "none" and cfg.norm_position == "post"
    per_example = cfg.norm in ("layernorm", "rmsnorm")

    def moments(qq):
        return (jax.vmap(lambda t: _g.derivative_moment(act, t, slope=sl))(qq),
                jax.vmap(lambda t: _g.derivative_moment(act, t, power=4, slope=sl))(qq))

    def dense_v(mu1, mu2):
        return (3.0 * mu2 / mu1**2 - 1.0) / n

    def residual_v(gain, mu1, mu2):
        # 1 + 2α⟨u, D u Wᵀ⟩ + α²‖D u Wᵀ‖²: variances α²·4 g μ₁/N and α⁴ g²(3μ₂ − μ₁²)/N (g = σ_w²·scale)
        return (4 * a2 * gain * mu1 + a2**2 * gain**2 * (3 * mu2 - mu1**2)) / (n * (1 + a2 * gain * mu1) ** 2)

    if cfg.norm == "batchnorm":
        B = float(batch_size)
        T, T_I, a = _bn_traces(act, sl, batch_size)
        mu1, mu2 = moments(jnp.ones_like(q_prev))
        if cfg.arch == "mlp":
            lam = B * T / (a * (B - 1) * (B - 3))
            f = jnp.full_like(q_prev, lam)
            v = dense_v(mu1, mu2)
        elif pre:  # resmlp, BN on the branch input; ν of the residual stream from the recursion
            gain = sw * T_I / ((B - 3) * jnp.maximum(nu_prev, 1e-300))
            f = 1 + a2 * gain
            v = residual_v(sw / jnp.maximum(nu_prev, 1e-300), mu1, mu2)
        else:  # resmlp, BN after the sum: ν_r = B/(B−1) + α² σ_w² a for a normalised h_{l−1}
            nu_r = B / (B - 1) + a2 * sw * a
            f = jnp.full_like(q_prev, B * ((B - 2) + a2 * sw * T) / (nu_r * (B - 1) * (B - 3)))
            v = residual_v(sw, mu1, mu2)
        return f, v

    qx = _mean_square_after_norm(q_prev) if (pre and per_example) else q_prev
    mu1, mu2 = moments(qx)
    scale = 1.0 / (q_prev + eps) if (pre and per_example) else jnp.ones_like(q_prev)
    if cfg.arch == "resmlp":
        gain = sw * scale
        f = 1 + a2 * gain * mu1
        v = residual_v(gain, mu1, mu2)
    else:
        f = sw * scale * mu1
        v = dense_v(mu1, mu2)
    if post and per_example:
        V = jax.vmap(lambda t: _g.second_moment(act, t, slope=sl))(q_prev)
        if cfg.arch == "mlp":
            r = sw * V + sb
        elif cfg.arch == "resmlp":
            r = q_prev + a2 * (sw * V + sb)
        else:
            r = sw * V + sb + _f(q_in)
        f = f / (r + eps)
    return f, v


def _from_factors(log10_f):
    """Entry l−1 = Σ_{k=l+1..L} log10_f[k−1]: the sum over the blocks above h_l (0 for h_L)."""
    rc = jnp.cumsum(log10_f[::-1])[::-1]
    return jnp.concatenate([rc[1:], jnp.zeros((1,), rc.dtype)])


@functools.partial(jax.jit, static_argnames=("cfg", "batch_size", "finite_width"))
def gradient_profile(cfg, q0=None, *, q_in=1.0, batch_size=DEFAULT_BATCH_SIZE, finite_width=False):
    """Expected log10 ‖∂loss/∂h_l‖ − log10 ‖∂loss/∂h_L‖ after every block (entry l−1 for h_l).

    Mean field: ½ Σ_{k>l} log10 f_k with the per-block factors of the module docstring, evaluated along
    the q-trajectory from q0 (the transient, not only the fixed point). The last entry is exactly 0
    (the reference). ``finite_width=True`` adds Hanin's drift of the mean log-norm, −Σ_{k>l} v_k/(4 ln 10).

    Args:
      cfg: the network (static).
      q0: () second moment of h_0 (default 1 for mlp/resmlp with unit-variance inputs, 0 for rnn).
      q_in: () variance of the rnn input drive.
      batch_size: B for batchnorm (static).
      finite_width: include the width-N drift (static).

    Returns:
      (L,) log10 units.

    References: Schoenholz et al. 2017, arXiv:1611.01232; Yang et al. 2019, arXiv:1902.08129;
    Hanin 2018, arXiv:1801.03744.
    """
    f, v = block_factors(cfg, q0, q_in=q_in, batch_size=batch_size)
    lf = 0.5 * jnp.log10(f)
    if finite_width:
        lf = lf - v / (4 * _LN10)
    return _from_factors(lf)


@functools.partial(jax.jit, static_argnames=("cfg", "batch_size"))
def gradient_spread(cfg, q0=None, *, q_in=1.0, batch_size=DEFAULT_BATCH_SIZE):
    """Predicted std across seeds of log10(‖δ_l‖/‖δ_L‖) at width N (Hanin 2018): ½ √(Σ_{k>l} v_k)/ln 10.

    Args: as :func:`gradient_profile`.

    Returns:
      (L,) log10 units; 0 for the last entry.

    References: Hanin 2018, "Which Neural Net Architectures Give Rise to Exploding and Vanishing
    Gradients?", arXiv:1801.03744 (Thm 1: Var log‖δ‖² grows with Σ 1/n_l).
    """
    _, v = block_factors(cfg, q0, q_in=q_in, batch_size=batch_size)
    return 0.5 * jnp.sqrt(_from_factors(v)) / _LN10
