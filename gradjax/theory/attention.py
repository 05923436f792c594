"""Mean field of transformer stacks at initialization: the token Grams forward, the cotangents' backward.

The T tokens of one input are taken exchangeable: their Gram matrix (per feature) is
q·[(1−ρ) I + ρ 11ᵀ], q the tokens' second moment and ρ their mean cosine similarity. As N → ∞:

* **Attention logits.** With W_Q, W_K of variance σ_w²/N and head size d → ∞, the logits of row i are
  ℓ_ij = τ₁ Z_ij + τ₀ Y_j + (a constant of row i), Z, Y i.i.d. N(0, 1), Y shared by all rows, with
  τ₁ = σ_w² q (1−ρ) and τ₀ = σ_w² q √(ρ(1−ρ)) (the common part of the tokens shifts a row's logits
  together, which softmax ignores). They stay O(1) and random: the attention matrix A does not
  concentrate, so the map below is for the mean over A.
* **Attention output** A X W_V W_O (+ b_O) has Gram σ_w⁴ q [(1−ρ) A Aᵀ + ρ 11ᵀ] (+ σ_b²), so with
  m₂ = E‖A_i‖² and m₁₁ = E⟨A_i, A_k⟩ (i ≠ k):  q' = σ_w⁴ q [(1−ρ) m₂ + ρ] + σ_b²,
  q'ρ' = σ_w⁴ q [(1−ρ) m₁₁ + ρ] + σ_b².
  For small τ (ρ → 1) m₂ − m₁₁ ≈ τ₁² (T−1)/T², so 1 − ρ' ≈ σ_w⁴q²(T−1)/T² · (1 − ρ)³: pure attention
  collapses the tokens to one direction doubly exponentially, 1 − ρ_l ~ c^{3^l} (Dong, Cordonnier &
  Loukas 2021, "Attention is not all you need: pure attention loses rank doubly exponentially with
  depth", arXiv:2103.03404, Thm 2.2 bounds the same cubic contraction).
* **MLP** φ(x W_1 + b_1) W_2 + b_2: the mlp's q and c maps (``gradjax.theory.gaussian``).
* **Norms** (layer/rms, per token): q → q/(q + ε), ρ unchanged (the per-token feature mean is O(1/√N)).
* **Residual branches** x + α·branch: the branch's Gram adds with weight α² (its output projection is
  independent of x, so the cross terms vanish): with α ∝ 1/√L the similarity moves by O(1/L) per
  block and does not collapse (Noci et al. 2022, "Signal Propagation in Transformers: Theoretical
  Perspectives and the Role of Rank Collapse", arXiv:2206.03126, Sec. 3–4).

m₂ and m₁₁ are Gaussian integrals over T softmax inputs, reduced to one and two dimensions with
1/S² = ∫ t e^{−tS} dt and 1/(S S') = ∫∫ e^{−tS − uS'} dt du (the logits are independent given Y):

    m₂ = T ∫ t E[e^{2ℓ − t e^ℓ}] E[e^{−t e^ℓ}]^{T−1} dt,                      ℓ ~ N(0, τ₁² + τ₀²)
    m₁₁ = T ∫∫ E_Y[g₁(t, Y) g₁(u, Y)] E_Y[g₀(t, Y) g₀(u, Y)]^{T−1} dt du,  g_k(t, y) = E_Z[e^{kℓ − t e^ℓ}], ℓ = τ₁Z + τ₀y

evaluated with Gauss–Hermite rules in Z, Y and the trapezoid rule in log t.

**Backward** (gradient independence: the transposed weights of the backward pass taken independent of
the forward ones). The cotangent G = ∂loss/∂(tokens) has the per-feature Gram p[(1−κ) I + κ 11ᵀ]; at h_L
the projection loss on the token mean gives every token the same cotangent, κ_L = 1. Through one
sublayer (x its input, Gram q[(1−ρ) I + ρ 11ᵀ]; σ = σ_w²):

* value path A^T G W_Oᵀ W_Vᵀ: diagonal σ² p [m₂ + κ(T−1) m₁₁], off-diagonal
  σ² p [(1−κ)(1−m₂) + κ(T − m₂ − (T−1) m₁₁)]/(T−1) (the columns of A, not its rows: A^T mixes);
* logit path: ∂loss/∂ℓ_ij = s_ij = A_ij (u_ij − Σ_k A_ik u_ik) with u_ij = ⟨(G W_Oᵀ)_i, v_j⟩, Gaussian of
  covariance d σ²pq [(1−κ)δ + κ]_{ii'} [(1−ρ)δ + ρ]_{jj'} and independent of A given the Grams. Through
  the queries (Σ_j s_ij k_j W_Qᵀ/√d) and the keys (Σ_i s_ij q_i W_Kᵀ/√d), with λ = σ⁴ p q² (1−ρ):
  queries: diagonal λ(1−ρ) R₁, off-diagonal λ(1−ρ) κ R₂; keys: diagonal λ [R₁ + ρ(T−1) κ R₂], off-diagonal
  −(diagonal)/(T−1) (Σ_j s_ij = 0), where R₁ = E[‖A_i‖² − 2 Σ_j A_ij³ + ‖A_i‖⁴] and
  R₂ = E[⟨A_i, A_k⟩ − 2 Σ_j A_ij² A_kj + ⟨A_i, A_k⟩²] (more integrals of the form above). The three paths
  use independent weights, so their Grams add; the heads add up to the same totals as one head.
* MLP: σ² E[φ′(z_i) φ′(z_j)] (p, pκ) at the pre-activation Gram; norms divide the Gram by the variance they
  normalize, q + ε; a residual sum adds α² × the branch's (the cross term has mean 0).

Kedia et al. 2024 ("Transformers Get Stable: An End-to-End Signal Propagation Theory for Language
Models", arXiv:2403.09635) derive the same moment maps component by component (their attention backward
keeps the value path with uniform attention); here the softmax moments are exact in the logit scale.

Regime (measured, tests/theory/test_attention.py): one block against Monte Carlo within 1–2% at width 128;
whole pre-norm stacks within 7% (depth 8) for q and the gradient, post-norm within 2% to depth 4. This is the
N → ∞ answer, and deep stacks at width 64 sit above it by an O(1/N) amount that depth amplifies. Post-norm at
depth 8 (256 seeds × 4 inputs, 8 tokens, one head): the gradient growth ‖δ_1‖²/‖δ_L‖² is 22% above the theory
at width 64 (19% with the test's 512 seeds), 6% (standard error 1.5%) at width 256. The excess starts in the
forward pass: one post-norm block at ρ = 0.8 leaves 1 − ρ 2.5% above the map at width 64 and 0.5% at 256
(1,024 draws, standard error 0.9% and 0.4%), and the contraction of 1 − ρ, steeper than linear, amplifies it
block by block (1 − ρ after block 6: +34% at width 64, +8% at 256); the backward map walked along the measured
similarities instead of the predicted ones leaves 9.5% of the 22%. The cause is each example's normalization:
the ratio of the *mean* Grams of a post-norm sum follows the map to 1e-5 at width 64, the mean of the examples'
own cosines sits 2.3% further from 1. Sampling each example's Grams at its finite width and walking this module's
backward map along each (:mod:`gradjax.theory.token_walk`) brings post-norm depth 8 at width 64 within 5% at
every block (similarities within the standard error).
Drawing each example's attention matrices at N → ∞ (the T × T Grams as a random walk over blocks, the
same softmax rows in the forward and the backward pass; 1,024 walks) gives the mean field's similarities to
1e-3 and its gradient growth to 0.2% (post-norm, depth 8) and 0.05% (pre-norm, depth 64): neither the spread
of the Grams across examples nor the attention shared by the two passes is what the N → ∞ theory misses.
Pre-norm at depth 64: +22% at width 64 (log-normal estimate over 32 seeds); at widths 128 and 256 (32 seeds
each) +10% and +12% at the first block (standard error 4%), within 6% from block 2 on (128) and 5% from
block 20 on (256); at width 64 the finite-width walk (:mod:`gradjax.theory.token_walk`) follows the measured
gradient growth within 2% at every block (256 seeds against 1,024 walks; the mean field 28% low).
"""

from __future__ import annotations


import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from gradjax._validate import check_int
from gradjax.config import DEFAULT_BATCH

from gradjax.theory import gaussian as _g
from gradjax.theory.scalars import _f, _mean_square_after_norm, _norm_eps

# Gauss–Hermite nodes for Z and Y (probabilists'): 48 nodes integrate e^{kτz}, k ≤ 2, to ~1e-10 for
# τ ≤ TAU_MAX (checked against Monte Carlo in tests/theory/test_attention.py).
_GH_NODES = 48
#: Largest logit scale τ = σ_w² q the quadrature is accurate for (q ≤ 1 behind a norm, σ_w² ≤ 3).
TAU_MAX = 3.0
# log t grid: points and margin (in e-folds) beyond the range of e^{±τz} that the nodes reach.
_LOG_T_POINTS = 600
_LOG_T_MARGIN = 12.0


def _hermite():
    z, w = np.polynomial.hermite_e.hermegauss(_GH_NODES)
    return jnp.asarray(z), jnp.asarray(w / np.sqrt(2 * np.pi))


def _log_t_grid(spread, tokens):
    """Trapezoid nodes s (log t) and weights covering where the integrands live."""
    z_max = float(np.max(np.polynomial.hermite_e.hermegauss(_GH_NODES)[0]))
    lo = -spread * z_max - np.log(tokens) - _LOG_T_MARGIN
    hi = spread * z_max + _LOG_T_MARGIN
    s = jnp.linspace(lo, hi, _LOG_T_POINTS)
    w = jnp.full_like(s, (hi - lo) / (_LOG_T_POINTS - 1)).at[0].multiply(0.5).at[-1].multiply(0.5)
    return s, w


def _g_table(k, tau1, tau0, s, y):
    """g_k(t, y) = E_Z[e^{kℓ − t e^ℓ}] on the grid t = e^s (n_s,) × y (n_y,): (n_s, n_y)."""
    z, wz = _hermite()
    ell = tau1 * z[None, None, :] + tau0 * y[None, :, None]  # (1, n_y, n_z)
    expo = k * ell - jnp.exp(s[:, None, None] + ell)
    return jnp.sum(wz[None, None, :] * jnp.exp(expo), axis=-1)


def softmax_overlaps(tau1, tau0, tokens: int):
    """(m₂, m₁₁) = (E‖A_i‖², E⟨A_i, A_k⟩) for softmax rows with logits τ₁ Z_ij + τ₀ Y_j (module docstring).

    Args:
      tau1, tau0: () logit scales (≥ 0, τ₁² + τ₀² ≤ TAU_MAX²). tokens: T ≥ 2 (static).

    Returns:
      ``(m2, m11)`` (); both 1/T for τ = 0 (uniform attention).
    """
    # m₂: a single row's logits are i.i.d. N(0, τ₁² + τ₀²) (it sees Y as part of its own noise).
    return _row_moments(jnp.sqrt(tau1**2 + tau0**2), tokens)[0], _pair_moments(tau1, tau0, tokens)[0]


def _row_moments(sig, tokens: int):
    """Single-row softmax moments (E‖A_i‖², E Σ_j A_ij³, E‖A_i‖⁴) for i.i.d. logits N(0, sig²) in the row.

    1/S^n = ∫ t^{n−1} e^{−tS} dt/(n−1)! turns each moment into one integral over t of products of
    E[e^{kℓ − t e^ℓ}] (module docstring; the same rule and grid as :func:`softmax_overlaps`).
    """
    s, ws = _log_t_grid(TAU_MAX, tokens)
    t = jnp.exp(s)
    zero = jnp.zeros((1,), s.dtype)
    g = {k: _g_table(k, sig, 0.0, s, zero)[:, 0] for k in (0, 2, 3, 4)}
    w = ws * t  # dt = t ds
    rest = g[0] ** (tokens - 1)
    m2 = tokens * jnp.sum(w * t * g[2] * rest)
    m3 = tokens * jnp.sum(w * t**2 / 2 * g[3] * rest)
    m4 = tokens * jnp.sum(w * t**3 / 6 * (g[4] * rest + (tokens - 1) * g[2] ** 2 * g[0] ** (tokens - 2)))
    return m2, m3, m4


def _pair_moments(tau1, tau0, tokens: int):
    """Two-row softmax moments sharing the column logits Y (rows i ≠ k, module docstring):
    (E⟨A_i, A_k⟩, E Σ_j A_ij² A_kj, E⟨A_i, A_k⟩²)."""
    s, ws = _log_t_grid(TAU_MAX, tokens)
    y, wy = _hermite()
    t = jnp.exp(s)
    g = {k: _g_table(k, tau1, tau0, s, y) * t[:, None] for k in (0, 1, 2)}  # × t for dt = t ds

    def ey(a, b):  # E_Y[g_a(t, Y) g_b(u, Y)] on the (t, u) grid, times the two Jacobians t u
        return (a * wy[None, :]) @ b.T

    w2 = ws[:, None] * ws[None, :]
    tt, uu = t[:, None], t[None, :]
    b00 = ey(g[0], g[0]) / (tt * uu)  # g₀ carries no Jacobian of its own
    rest = b00 ** (tokens - 1)
    m11 = tokens * jnp.sum(w2 * ey(g[1], g[1]) * rest)
    c21 = tokens * jnp.sum(w2 * tt * ey(g[2], g[1]) * rest)
    o2 = jnp.sum(w2 * tt * uu * (tokens * ey(g[2], g[2]) * rest
                                 + tokens * (tokens - 1) * ey(g[1], g[1]) ** 2 / (tt * uu) * b00 ** (tokens - 2)))
    return m11, c21, o2


def _attention_gram(cfg, q, rho, moments=None):
    """(q, q·ρ) of the attention sublayer's output for input tokens of length q, similarity ρ (``moments``: the
    softmax moments' function, :func:`_logit_moments` by default)."""
    sw, sb = _f(cfg.sigma_w2), _f(cfg.sigma_b2)
    one_minus = jnp.maximum(1.0 - rho, 0.0)
    m2, m11 = (moments or _logit_moments)(cfg, q, rho)[:2]
    return sw * sw * q * (one_minus * m2 + rho) + sb, sw * sw * q * (one_minus * m11 + rho) + sb


def _mlp_gram(cfg, q, rho):
    """(q, q·ρ) of the MLP sublayer's output φ(x W₁ + b₁) W₂ + b₂ (the mlp's q and c maps, twice dense)."""
    sw, sb, act, sl = _f(cfg.sigma_w2), _f(cfg.sigma_b2), cfg.activation, cfg.leaky_slope
    qz, kz = sw * q + sb, sw * q * rho + sb
    cz = jnp.clip(kz / qz, -1.0, 1.0)
    return sw * _g.second_moment(act, qz, slope=sl) + sb, sw * _g.pair_moment(act, qz, qz, cz, slope=sl) + sb


def _sublayer(cfg, q, k, branch):
    """One sublayer on the token Gram (q, k = qρ): norm position, skip and α as in ``gradjax.nn.attention``."""
    a2 = _f(cfg.alpha) ** 2
    qb, kb = branch(cfg, _mean_square_after_norm(q) if cfg.pre_norm else q, k / q)
    qo, ko = (q + a2 * qb, k + a2 * kb) if cfg.skip else (qb, kb)
    if cfg.post_norm:
        scale = _mean_square_after_norm(qo) / qo
        qo, ko = qo * scale, ko * scale
    return qo, ko


def _logit_scales(cfg, q, rho):
    """(τ₁, τ₀) of the attention logits for input tokens of second moment q and similarity ρ."""
    sw = _f(cfg.sigma_w2)
    one_minus = jnp.maximum(1.0 - rho, 0.0)
    return sw * q * one_minus, sw * q * jnp.sqrt(jnp.maximum(rho, 0.0) * one_minus)


def _logit_moments(cfg, q, rho):
    """(m₂, m₁₁, R₁, R₂) of the attention matrices for input tokens of second moment q, similarity ρ."""
    tau1, tau0 = _logit_scales(cfg, q, rho)
    m2, m3, m4 = _row_moments(jnp.sqrt(tau1**2 + tau0**2), cfg.tokens)
    m11, c21, o2 = _pair_moments(tau1, tau0, cfg.tokens)
    return m2, m11, m2 - 2 * m3 + m4, m11 - 2 * c21 + o2


def _attention_cotangent(cfg, q, rho, p, k, moments=None):
    """Cotangent Gram (p, k) at the attention's input x from (p, k) at its output (module docstring).

    Value path A^T G W_Oᵀ W_Vᵀ, and the logit path through the queries and the keys; the three use
    independent weights, so their Grams add. q, ρ: the attention input's second moment and similarity.
    """
    sw, t = _f(cfg.sigma_w2), cfg.tokens
    one_minus = jnp.maximum(1.0 - rho, 0.0)
    m2, m11, r1, r2 = (moments or _logit_moments)(cfg, q, rho)
    kappa = k / p
    value = sw * sw * p * (m2 + kappa * (t - 1) * m11)
    value_off = sw * sw * p * ((1 - kappa) * (1 - m2) + kappa * (t - m2 - (t - 1) * m11)) / (t - 1)
    lam = sw**4 * p * q * q * one_minus
    key = lam * (r1 + rho * (t - 1) * kappa * r2)
    return (value + lam * one_minus * r1 + key,
            value_off + lam * one_minus * kappa * r2 - key / (t - 1))


def _query_weight_square(cfg, q, rho, p, k, moments=None):
    """E‖∂loss/∂W_Q‖² (= E‖∂loss/∂W_K‖²) of one example from the cotangent Gram (p, k) at the attention's
    output and its input's (q, ρ): N² σ³ p q³ (1−ρ)² T [R₁ + ρ(T−1) κ R₂].

    ∂loss/∂W_Q = Σ_i x_iᵀ (Σ_j s_ij k_j)/√d per head; ⟨x_i, x_i'⟩ = Nq[(1−ρ)δ + ρ], and Σ_j s_ij = 0 leaves
    ⟨Σ_j s_ij k_j, Σ_j s_i'j k_j⟩ = dσq(1−ρ) Σ_j s_ij s_i'j, whose mean is in the module docstring; the keys'
    gradient is the same sum read by columns. The heads add up to N.
    """
    sw, t, n = _f(cfg.sigma_w2), cfg.tokens, cfg.width
    _, _, r1, r2 = (moments or _logit_moments)(cfg, q, rho)
    one_minus = jnp.maximum(1.0 - rho, 0.0)
    return n * n * sw**3 * p * q**3 * one_minus**2 * t * (r1 + rho * (t - 1) * (k / p) * r2)


def _mlp_cotangent(cfg, q, rho, p, k):
    """Cotangent Gram at the MLP's input from (p, k) at its output: σ_w⁴ E[φ′(z_i) φ′(z_j)] (p, k)."""
    sw, sb, act, sl = _f(cfg.sigma_w2), _f(cfg.sigma_b2), cfg.activation, cfg.leaky_slope
    qz, kz = sw * q + sb, sw * q * rho + sb
    cz = jnp.clip(kz / qz, -1.0, 1.0)
    return (sw * sw * p * _g.derivative_moment(act, qz, slope=sl),
            sw * sw * k * _g.derivative_pair_moment(act, qz, qz, cz, slope=sl))


def _branch_output_cotangent(cfg, q, k, p, pk, branch):
    """Split the cotangent (p, pk) at a sublayer's output into the skip's share and the branch output's
    (α·branch: α² times it); a post-norm first divides it by the variance r + ε of the sum it normalizes.
    (q, k): the sublayer's input Gram."""
    a2, eps = _f(cfg.alpha) ** 2, _norm_eps()
    if cfg.post_norm:
        qb, _ = branch(cfg, q, k / q)
        r = q + a2 * qb if cfg.skip else qb
        p, pk = p / (r + eps), pk / (r + eps)
    return (p, pk), (a2 * p, a2 * pk)


def _branch_input(cfg, q):
    """Second moment the branch sees (after a pre-norm, q/(q + ε)) and the norm's factor on the cotangent's Gram."""
    return (_mean_square_after_norm(q), 1.0 / (q + _norm_eps())) if cfg.pre_norm else (q, 1.0)


def _sublayer_cotangent(cfg, q, k, p, pk, branch, cotangent):
    """(p, k) of the cotangent at a sublayer's input from those at its output; (q, k) the sublayer's
    input Gram (the state :func:`_sublayer` maps). A norm divides the cotangent's Gram by the variance
    it normalizes, q + ε (pre: the input; post: the sum r it normalizes)."""
    (ps, ks), (pb, kb) = _branch_output_cotangent(cfg, q, k, p, pk, branch)
    qx, scale = _branch_input(cfg, q)
    pb, kb = cotangent(cfg, qx, k / q, pb, kb)
    pb, kb = scale * pb, scale * kb
    return (ps + pb, ks + kb) if cfg.skip else (pb, kb)


def _check_transformer(cfg, what):
    if cfg.arch != "transformer":
        raise ValueError(f"{what} models arch='transformer', got arch={cfg.arch!r}")
    if cfg.tokens < 2:
        raise ValueError(f"{what} needs tokens >= 2 (a similarity between tokens), got tokens={cfg.tokens!r}")


def token_profile(cfg, rho0=0.0, q0=1.0):
    """Tokens' second moment q_l and mean cosine similarity ρ_l after every block, from (q0, ρ0) at h_0.

    Args:
      cfg: a transformer (structure static, numbers traced); any norm, norm position, α or no skip, with or without MLP.
      rho0: () similarity of the tokens entering block 1 (0 for i.i.d. token embeddings).
      q0: () their second moment (1 for unit-variance inputs through the LeCun input layer).

    Returns:
      ``(q, rho)``: (L,) each, entry l−1 after block l (linear units).

    The quadrature needs float64 (e^{±τz} and the log t grid over- and underflow float32): with 64-bit
    JAX disabled it runs inside a scoped ``jax.enable_x64(True)`` and returns float64 arrays.

    References: Dong et al. 2021, arXiv:2103.03404; Noci et al. 2022, arXiv:2206.03126.
    """
    _check_transformer(cfg, "token_profile")
    return _in_x64(_token_profile, cfg, rho0, q0)


@jax.jit
def _token_profile(cfg, rho0, q0):
    def block(carry, _):
        q, k = _block_grams(cfg, *carry)[2]
        return (q, k), (q, k / q)

    q0 = _f(q0)
    _, (q, rho) = jax.lax.scan(block, (q0, q0 * _f(rho0)), None, length=cfg.depth)
    return q, rho

def token_similarity(cfg, *, rho0=0.0, q0=1.0):
    """Predicted mean cosine similarity between distinct tokens after every block: (L,).

    The mean-field answer to ``gradjax.empirical.token_similarity`` (same name, (S, L) there); see
    :func:`token_profile` for the arguments.
    """
    return token_profile(cfg, rho0=rho0, q0=q0)[1]


def _in_x64(fn, *args):
    """Runs ``fn`` with 64-bit JAX (the quadrature over- and underflows float32), scoped if it is off."""
    if not jax.config.jax_enable_x64:
        with jax.enable_x64(True):
            return fn(*args)
    return fn(*args)


def cotangent_profile(cfg, rho0=0.0, q0=1.0):
    """The cotangent ∂loss/∂h_l after every block: log10 of its second moment relative to h_L, and the
    tokens' cotangent correlation κ_l.

    Walks the blocks back from h_L, where the projection loss ⟨mean_tokens(h_L) W_out, t⟩/B gives every
    token the same cotangent (κ_L = 1), through each sublayer's transposed Jacobian in the mean field
    (module docstring): the Gram (p, p·κ) of the cotangent maps linearly, with the forward Grams of
    :func:`token_profile` along the way. With pre-norm the per-block gain is 1 + α²(…)/(q_l + ε), the
    residual stream's q_l growing with depth, so the gradient grows towards the input polynomially;
    post-norm divides by the normalized sum's variance at every block, so it changes geometrically
    (Kedia et al. 2024, Sec. 4–5; Xiong et al. 2020).

    Args: as :func:`token_profile`.

    Returns:
      ``(log10_p, kappa)``: (L,) each, entry l−1 for h_l; log10_p is log10 E‖∂loss/∂h_l‖² −
      log10 E‖∂loss/∂h_L‖² (0 at the last entry), kappa the cosine of two tokens' cotangents.

    References: Kedia et al. 2024, "Transformers Get Stable: An End-to-End Signal Propagation Theory for
    Language Models", arXiv:2403.09635; Xiong et al. 2020, "On Layer Normalization in the Transformer
    Architecture", arXiv:2002.04745.
    """
    _check_transformer(cfg, "cotangent_profile")
    return _in_x64(_cotangent_profile, cfg, rho0, q0)[:2]


def _block_grams(cfg, q, k, moments=None):
    """Forward Grams of one block from its input's (q, k): ``((attention input), (MLP input), output)``
    (``moments``: the softmax moments' function, :func:`_logit_moments` by default)."""
    mid = _sublayer(cfg, q, k, functools.partial(_attention_gram, moments=moments))
    return (q, k), mid, (_sublayer(cfg, *mid, _mlp_gram) if cfg.mlp else mid)


def _block_cotangent(cfg, attn_in, mlp_in, p, pk, moments=None):
    """The cotangent's (p, k) at a block's input from those at its output (the block's forward Grams given),
    and E‖∂loss/∂W_Q‖² of the block's attention for that cotangent (one example); ``moments`` as in
    :func:`_block_grams`."""
    if cfg.mlp:
        p, pk = _sublayer_cotangent(cfg, *mlp_in, p, pk, _mlp_gram, _mlp_cotangent)
    gram = functools.partial(_attention_gram, moments=moments)
    _, attn_out = _branch_output_cotangent(cfg, *attn_in, p, pk, gram)
    w = _query_weight_square(cfg, _branch_input(cfg, attn_in[0])[0], attn_in[1] / attn_in[0], *attn_out,
                             moments=moments)
    cotangent = functools.partial(_attention_cotangent, moments=moments)
    return _sublayer_cotangent(cfg, *attn_in, p, pk, gram, cotangent), w


@jax.jit
def _cotangent_profile(cfg, rho0, q0):
    """(log10 p_l/p_L, κ_l, log10 E‖∂loss/∂W_Q,l‖²/p_L): (L,) each, per example (module docstring)."""
    def forward(carry, _):
        attn_in, mlp_in, out = _block_grams(cfg, *carry)
        return out, (attn_in, mlp_in)

    def backward(carry, grams):
        log_p, kappa = carry
        (p, pk), w = _block_cotangent(cfg, *grams, jnp.ones_like(log_p), kappa)
        return (log_p + jnp.log10(p), pk / p), (log_p, kappa, log_p + jnp.log10(w))

    q0 = _f(q0)
    _, grams = jax.lax.scan(forward, (q0, q0 * _f(rho0)), None, length=cfg.depth)
    _, out = jax.lax.scan(backward, (jnp.zeros_like(q0), jnp.ones_like(q0)), grams, reverse=True)
    return out


def _check_x64(what):
    if not jax.config.jax_enable_x64:
        raise ValueError(f"{what} of arch='transformer' needs 64-bit JAX (the softmax quadrature over- and underflows "
                         "float32): call jax.config.update('jax_enable_x64', True), or use "
                         "gradjax.theory.attention.token_profile / cotangent_profile, which enable it in a scope")


def transformer_q_profile(cfg, q0):
    """``theory.q_profile`` of a transformer inside its trace: the q of :func:`token_profile` (64-bit JAX)."""
    _check_transformer(cfg, "q_profile")
    _check_x64("q_profile")
    return _token_profile(cfg, 0.0, q0)[0]


def transformer_cotangents(cfg, q0):
    """log10 E‖δ_l‖²/E‖δ_L‖² of :func:`cotangent_profile` for ``theory.gradient_profile`` inside its trace
    (64-bit JAX; ``q0`` None means 1; the mean field only: ``gradient_profile`` refuses ``finite_width=True``)."""
    _check_transformer(cfg, "gradient_profile")
    _check_x64("gradient_profile")
    return _cotangent_profile(cfg, 0.0, 1.0 if q0 is None else q0)[0]


def query_gradient_profile(cfg, batch: int = DEFAULT_BATCH, rho0=0.0, q0=1.0):
    """log10 ‖∂loss/∂W_Q‖ of every block's attention (the same for W_K), in absolute units.

    The projection loss ⟨mean_tokens(h_L) W_out, t⟩/B with unit Gaussian t and a LeCun readout gives every
    token of every example the cotangent W_out t/(B T), of per-feature second moment p_L = out_dim/(N B² T²);
    the B examples' contributions add in square (independent t). Per block: N² σ³ p q³ (1−ρ)² T [R₁ +
    ρ(T−1)κR₂] with the attention's input Gram (q, ρ) and its output's cotangent (p, κ) (module docstring):
    it vanishes as (1−ρ)² when the tokens collapse (Noci et al. 2022, Sec. 3.2).

    Args: ``batch`` B (static); the rest as :func:`token_profile`.

    Returns:
      (L,) log10 units, entry l−1 for block l; the measured pair is
      ``gradjax.empirical.gradient_profile(cfg, seeds, batch=B).params["query"]`` (and ``["key"]``).

    References: Noci et al. 2022, arXiv:2206.03126; Kedia et al. 2024, arXiv:2403.09635.
    """
    _check_transformer(cfg, "query_gradient_profile")
    check_int("batch", batch)
    p_top = cfg.out_dim / (cfg.width * batch**2 * cfg.tokens**2)
    return _in_x64(lambda: 0.5 * (_cotangent_profile(cfg, rho0, q0)[2] + math.log10(batch * p_top)))
