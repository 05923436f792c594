"""Mean field of transformer stacks at initialization: the token correlation, block by block.

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
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from gradjax.theory import gaussian as _g
from gradjax.theory.meanfield import _f, _mean_square_after_norm

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
    s, ws = _log_t_grid(TAU_MAX, tokens)
    y, wy = _hermite()
    t = jnp.exp(s)
    # m₂: rows are i.i.d. logits N(0, τ₁² + τ₀²) (a single row sees Y as part of its own noise).
    sig = jnp.sqrt(tau1**2 + tau0**2)
    zero = jnp.zeros((1,), s.dtype)
    g2 = _g_table(2, sig, 0.0, s, zero)[:, 0]
    g0 = _g_table(0, sig, 0.0, s, zero)[:, 0]
    m2 = tokens * jnp.sum(ws * t * t * g2 * g0 ** (tokens - 1))
    # m₁₁: two rows share Y; given Y they are independent.
    g1y = _g_table(1, tau1, tau0, s, y) * t[:, None]  # × t for dt = t ds
    g0y = _g_table(0, tau1, tau0, s, y)
    a = (g1y * wy[None, :]) @ g1y.T  # E_Y[g₁(t,Y) g₁(u,Y)] t u
    b = (g0y * wy[None, :]) @ g0y.T
    m11 = tokens * jnp.sum(ws[:, None] * ws[None, :] * a * b ** (tokens - 1))
    return m2, m11


def _attention_gram(cfg, q, rho):
    """(q, q·ρ) of the attention sublayer's output for input tokens of length q, similarity ρ."""
    sw, sb = _f(cfg.sigma_w2), _f(cfg.sigma_b2)
    one_minus = jnp.maximum(1.0 - rho, 0.0)
    m2, m11 = softmax_overlaps(sw * q * one_minus, sw * q * jnp.sqrt(jnp.maximum(rho, 0.0) * one_minus), cfg.tokens)
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
    if not jax.config.jax_enable_x64:
        with jax.enable_x64(True):
            return _token_profile(cfg, rho0, q0)
    return _token_profile(cfg, rho0, q0)


@jax.jit
def _token_profile(cfg, rho0, q0):
    def block(carry, _):
        q, k = _sublayer(cfg, *carry, _attention_gram)
        if cfg.mlp:
            q, k = _sublayer(cfg, q, k, _mlp_gram)
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
