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

The loss. Every profile here models the projection loss ⟨y, t⟩/B with random t (cotangent t/B at the
output, independent of the weights); the functions take ``loss="projection"`` and refuse any other, since
an mse cotangent y − t carries the forward signal (see :func:`gradient_profile`).

Finite width, batch B (mlp and resmlp without norm). The per-block ratio R_l = ‖δ_{l−1}‖²/‖δ_l‖², with
‖δ‖² summed over a batch of B examples, fluctuates around f_l with a relative variance v_l; with
independent blocks Var ln(‖δ_l‖²/‖δ_L‖²) ≈ Σ_{k>l} v_k and E ln R ≈ ln f − v/2 (the drift of the mean
log-norm below mean field; E R = f given the blocks above). For a dense block δ_{l−1,b} = D_b Wᵀ δ_{l,b},
D_b = diag φ′(h_{l−1,b}); the weights W (entries of variance σ_w²/N) are shared by the batch, the
directions δ_{l,b} are not (independent t_b). Per unit j the batch vector ((Wᵀδ_b)_j)_b is Gaussian with
covariance (σ_w²/N)·G, G_{bb′} = δ_b·δ_b′, so with μ_k = E φ′(√q z)^{2k} (Isserlis):

* one example's ratio has relative variance (3 μ₂/μ₁² − 1)/N (Hanin; relu 5/N, exact);
* two examples' ratios have covariance (κ (1 + 2ρ) − 1)/N: κ = E[φ′(u₁)²φ′(u₂)²]/μ₁² for their
  pre-activations of correlation c_{l−1} (the mean-field c-map from c_0 = 0, independent inputs), and
  ρ = E cos²(δ_b, δ_b′), the examples' directions overlapping through the shared weights;

    v_l = own/B_eff + (1 − 1/B_eff)·shared.

ρ follows the backward pass from the readout (ρ = 1/out_dim for the directions t_b):
ρ′ = [κ(1 + 2ρ)/N + (m/μ₁)² ρ (1 − 1/N)] / (1 + shared), m = E[φ′(u₁)φ′(u₂)]; it grows towards 1 as the
examples' inputs become correlated with depth (relu: c → 1), where what the examples share stops averaging.
B_eff: the batch sum weighs the examples by their own ‖δ_b‖², which drift apart (log-variance σ² =
Σ (own − shared) over the blocks above); B_eff = 1/E Σ_b w_b² for independent log-normal norms, by quadrature.
resmlp: R = 1 + 2α⟨δ, D Wᵀδ⟩ + α²‖D Wᵀδ‖² per example; the linear term (odd in W, uncorrelated with the
rest) contributes 4g μ₁/N to own and 4g m ρ/N to shared, the quadratic one (g μ₁)² times the dense terms,
all over (1 + g μ₁)², g = α²σ_w²; ρ′ likewise.

Forward length (mlp). Each example's h_i has conditional variance q̃_i =
q_i e^{ε_i}: ε_{i+1} = a_i ε_i + η_{i+1}, a = d ln Q/d ln q (Q the length map), η the sample mean of φ(h_i)²
over N units (relative variance σ_w⁴ Var φ²/(N q²), shared between examples by their correlation), ε_0 of
variance 2/in_dim from the input. Block i+1's factor moves by s_i ε̄_i, s = d ln μ₁/d ln q (0 for the
relu family, which is scale-free): an AR(1) along depth that correlates consecutive blocks, and whose
innovation covaries with block i+1's own derivative noise (the same h_i). The spread adds this (L, L)
covariance C. The drift (:func:`finite_width_shift`, E ln R_l − ln f_l) adds to −v_l/2:

* the forward length's own drift: per example m_{i+1} = E ε_{i+1} = a_i m_i + ½ b_i P_i − ½ Var η_{i+1}
  (b = d² ln Q/d(ln q)², P_i = Var ε_i, m_0 = −1/in_dim), moving block i+1 by s_i m_i + ½ s₂_i P_i,
  s₂ = d² ln μ₁/d(ln q)²;
* the batch sum's re-weighting: Σ_b ‖δ_b‖² weighs example b by its own ‖δ_b‖², which its forward length
  moves, so block l's mean log-factor gains (1 − 1/B) Σ_{j>l} C^d_{lj}, C^d the covariance C for what is
  specific to one example (one example's minus the shared part). 0 at B = 1; positive for tanh;
* the shared weights (below).

Shared forward and backward weights (mlp). Given the forward pass, W_l = Z̃_l X⁺ + W′_l (I − P_X) exactly
(Z̃_l = W_l X_{l−1}, X_{l−1} = φ(H_{l−1}) the block's inputs, W′_l an independent copy), so the backward
step W_lᵀδ_l has, along each input x = φ(h_{l−1}), the coefficient t_l = z_l·δ_l/‖x‖ (z_l = h_l − b_l)
where gradient independence puts a fresh z′·δ_l/‖x‖. At one example, with ρ_l = E t_l²‖x‖²/(q_z,l ‖δ_l‖²)
(1 under gradient independence), block l's mean factor moves by Δ_l = (ρ_l − 1) τ_{l−1}/N,
τ = E[φ′²φ²]/(μ₁ V), and t is carried down the backward pass:
ρ_L = 1 + 2 q_z μ₁′/μ₁ (δ_L = D_L g with g independent of z_L; Stein's lemma), and
ρ_{l−1} = [λ² ρ_l q_z,l + σ_w² (E[z²φ′²] − E[zφ′φ]²/V)]/(σ_w² μ₁ q_z,l−1), λ = E[zφ′φ]/V,
E[z²φ′²] = q_z μ₁ + 2 q_z² μ₁′, E[zφ′φ] = q_z V′ (μ₁′ = dμ₁/dq, V′ = dV/dq, at the layer's q;
q_z = q − σ_b²). Linear φ: λ = 1, no injection, ρ ≡ 1; relu: ρ ≡ 1 (Hanin's exactness at B = 1); tanh:
ρ < 1 (E[z²φ′²] < q_z μ₁), a shift towards vanishing that grows as Σ q_l/N. For B examples the first-order
(Stein) part of Δ is the same (the other examples' directions cancel: Σ_b′ x̃_b′ Cov(z_b′, h_b) ∝ x_b), and
each example's own mean is Δ's at every B (measured below).

Shared weights between examples (mlp, B > 1). Example a's step through block l has, along example b's
input x = φ(h_{l−1,b}), the coefficient t_l = z_{l,b}·δ_{l,a}/‖x‖ where gradient independence puts a fresh
z′·δ_{l,a}/‖x‖. Normalised by the latter's variance, τ_l² = N t_l²/(σ_w² ‖δ_{l,a}‖²) adds (τ_l² − 1)/N to a's
ln R_l. Given b's forward pass, t_l carries t_{l+1} through layer l (a's φ′, b's z and φ(h), independent
units at c = 0) and takes a fresh part from the rest of W_{l+1}ᵀδ_{l+1,a}; at this order exactly

    E[τ_l² − 1] = Λ_l E[τ_{l+1}² − 1] + u_l,   Λ_l = q_z m₁⁴/(V μ₁) at h_l (m₁ = E φ′),   τ_{L+1}² ≡ 1,

u_l = ‖z_{l,b}‖²/(σ_w² ‖x_{l−1,b}‖²) − 1, example b's own gain noise at layer l (variance 2/N). Near q = 0
tanh has Λ = 1 − O(q²): a's log-norm carries b's gains almost without loss. b's log-norm depends on the same
gains: u_l shifts ln q_l by (q_z/q) u_l, which moves b's block k > l by G_lk = s_{k−1} ∏_{m=l}^{k−2} a_m (the
forward length's s and a), and Cov(u_l, u_l) = 2/N. The covariance of a's block-l with b's block-k log-factor
is therefore

    M_lk = (2/N²) Σ_{l ≤ i < k} ∏_{m=l}^{i−1} Λ_m (q_z/q)_i G_ik,   K = M + Mᵀ   (:func:`_cross_example_covariance`),

negative for tanh (s < 0: b's larger gain lowers b's φ′² while a gains along b), zero for the scale-free relu
family and linear φ (s = 0), of order L²/N² in total (the next order is measured below). A batch spreads with (1 − 1/√(B_eff,k B_eff,l)) K_kl added
to its blocks' covariance, and block l's mean log-factor gains −(1 − 1/B) Σ_{k>l} K_lk (the batch sum re-weighs
examples that share less, as for the forward length). Gradient independence (``backward="independent"``)
has neither. Regime: c = 0 between the examples (what their correlation adds is not carried), leading order in
L/N.

Each example's own direction (mlp, relu and linear φ, B > 1). Where φ(h) = φ′(h) h with φ′ ∈ {0, 1}, D x = x for
the block's own input x = φ(h_{l−1}), so example a's component along its own input survives D: its coefficient
is s_{l−1}/‖x_{l−1,a}‖² with s_l = h_{l,a}·δ_{l,a}, and s_{l−1} = s_l − b_l·δ_{l,a} (exactly conserved at
σ_b² = 0, at any batch). Normalised, τ_l² = N s_l²/(σ_w² ‖δ_{l,a}‖² ‖x_{l−1,a}‖²) is a fresh χ²₁ under gradient
independence; here it adds ε_{l−1} τ_l² (ε = 1/(N μ₁)) to block l's factor and evolves as
τ_{l−1}² = τ_l² A_{l−1}/(C_{l−1} + τ_l²) (A = the forward ‖x_{l−1}‖²/(q̂ N) of layer l−1, C its backward χ² of
gradient independence). At one example this gives exactly ln(‖δ_1‖²/‖δ_L‖²) = ln(‖x_{L−1}‖²/‖x_0‖²) + ln τ_L² − ln τ_1²:
the backward log-norm follows the forward one, up to τ², which relaxes at the rate ε. Linearised at τ² = 1, y = ln τ²
takes the forward log-gain α_p minus the backward one γ_p of every layer p above, decaying by 1 − ε − σ_b²/q_z per
layer (the bias refreshes s), so block i's log-factor is γ_{i−1} + Σ_{p ≥ i} H_ip (α_p − γ_p),
H_ip = ε_{i−1} ∏_{m=i}^{p−1} (1 − ε_m − σ_b²/q_z,m+1). Per example this only reshuffles variance (each example's
variance stays gradient independence's); between two examples it adds

    J = H diag(C_α + C_γ − 2C_αγ) Hᵀ + Q + Qᵀ,   Q_ij = H_{j,i−1} (C_αγ − C_γ)_{i−1} (j < i)   (:func:`_own_direction_covariance`),

C_α, C_γ, C_αγ the pair covariances of the two examples' forward and backward log-gains at layer p (their
pre-activations of correlation c_p): relu's examples become strongly correlated with depth (c = 0.74 by layer 5,
0.98 by layer 30 from c_0 = 0), their forward gains are nearly the same, and J > 0 (the examples share more than
gradient independence says), of order (L/N)² in total. J enters like K: the spread adds
(1 − 1/√(B_eff,k B_eff,l)) J_kl and block l's mean log-factor −(1 − 1/B)(½ J_ll + Σ_{k>l} J_lk). Other φ (leaky relu:
D x ≠ x; gelu, softplus, tanh: φ(h) ≠ φ′(h) h) have no conserved component: J = 0, not derived (measured below).

Regime: leading order in 1/N per block, blocks independent given the mean-field q and c trajectories
except through the forward length, Σ v ≲ 1 for the log-normal reading. Checked against simulated tanh and
relu MLPs (L = 30, N = 64 unless said; log10 units; "GI": the same forward pass, backward through
independent copies W′_l; 1024 seeds, 4096 at critical tanh B = 1, 256 at N = 256):

* Drift at B = 1 (all terms derived): critical tanh −0.130 predicted, −0.123 ± 0.004 measured (GI −0.080 ±
  0.004 vs −0.078 predicted without Δ); chaotic tanh (σ_w² = 4, σ_b² = 0.3) −0.297 vs −0.285 ± 0.012;
  relu/He −0.246 vs −0.244 ± 0.011.
* Under GI at B > 1, paired control above, 8192 seeds (4096 at B = 64): spread predicted / measured, critical
  tanh 0.136 / 0.130 (B = 8) and 0.109 / 0.109 (B = 64), chaotic tanh 0.198 / 0.198 (B = 8), relu 0.203 / 0.202
  (B = 8); drift (re-weighting and length drift) critical tanh +0.011 / +0.0095 ± 0.0014 (B = 8) and +0.025 /
  +0.021 ± 0.002 (B = 64), chaotic −0.038 / −0.046 ± 0.002 (B = 8), relu −0.095 / −0.103 ± 0.002 (B = 8). B_eff
  is the exact log-normal expectation; the interpolation (B + e^{σ²} − 1)/e^{σ²} it replaced put chaotic
  tanh's spread at 0.228 (+15%) and its network drift at −0.091 against −0.068 ± 0.002.
* The shared weights at B > 1, against a paired control: the same networks with only the span of each
  block's inputs redrawn for the backward pass (W_l + P_X(W′_l − W_l): given the forward pass, W_l(I − P_X)
  already has the independent law), so that real − GI is resolved per seed. float64, L = 30:
  - Each example's own mean shift is Δ at every batch (critical tanh, N = 64, ln units: real − GI −0.236 ±
    0.008 at B = 1, −0.247 ± 0.008 at B = 2, −0.226 ± 0.007 at B = 8, −0.209 ± 0.012 at B = 64, against
    Δ = −0.240), and each example's variance is GI's (B = 8: 1.19 against 1.20).
  - Two examples' log-norms (B = 2, ln² units, sum of K over blocks 2..L): real − GI pair covariance −0.16 ±
    0.02 and −0.11 ± 0.02 (two seed sets, 4096 and 8192 seeds) against −0.121 at N = 64; −0.034 ± 0.010
    against −0.030 at N = 128. The part carried by each example's component along the other's input
    (Σ (τ_l² − 1)/N with the other's log-norm, ×2): −0.083 ± 0.013 (N = 64), −0.025 ± 0.005 (N = 128). The
    gains' sensitivity Cov(u_l, ln R_b)·N/2 is the forward length's G summed over blocks: −0.81 measured at l = 1
    (N = 64 and 128) against −0.81. Chaotic tanh: −0.003 ± 0.05 against −0.026. The next order in L/N is
    measured, not derived. For critical tanh its parts nearly cancel (B = 2, N = 64, 4096 seeds, hybrids that
    redraw only each example's own input direction or only the other's: each example's own direction, which
    also carries its gains, adds +0.06 to +0.07 through the other's carried coefficient and −0.03 to −0.05
    through the examples' correlated gains, two seed sets). relu, where G = 0, has it alone, and J derives it: its
    pair covariance is 0.621 against GI's 0.436, all of the difference in each example's own direction (0.606 with
    the other's direction redrawn, 0.434 with the own one redrawn); in another 4096 seeds real − GI is
    +0.202 ± 0.049 against J's +0.201, and the forward log-norms of the two examples covary by 2.0 (each example's
    backward log-norm with its own forward one: 1.03, GI 0.48). Other rectifiers show more of it (σ_w² = 2, σ_b² = 0):
    gelu 1.09 against GI's 0.71 (K: +0.016), softplus 4.9 against 3.0 (K: +0.033; far outside Σ v ≲ 1); they
    conserve no own component (J = 0), so their finite-width spread and drift at B > 1 carry this unmodelled term.
  - Drift and spread of log10 ‖δ_1‖/‖δ_L‖ (batch sums), predicted / measured, 8192 seeds (4096 at B = 64
    and at N = 128, 2048 at N = 128, B = 64):

    | net, N | B | drift | spread | GI drift |
    |---|---|---|---|---|
    | critical tanh, 64 | 1 | −0.1296 / −0.1266 ± 0.0026 | 0.239 / 0.236 | −0.0776 / −0.0783 ± 0.0026 |
    | critical tanh, 64 | 8 | −0.0296 / −0.0313 ± 0.0013 | 0.118 / 0.115 | +0.0110 / +0.0077 ± 0.0015 |
    | critical tanh, 64 | 64 | −0.0143 / −0.0123 ± 0.0012 | 0.079 / 0.079 | +0.0249 / +0.0238 ± 0.0017 |
    | critical tanh, 128 | 8 | −0.0117 / −0.0110 ± 0.0012 | 0.073 / 0.075 | +0.0115 / +0.0109 ± 0.0013 |
    | critical tanh, 128 | 64 | −0.0041 / −0.0015 ± 0.0010 | 0.042 / 0.044 | +0.0187 / +0.0186 ± 0.0013 |
    | chaotic tanh, 64 | 8 | −0.0621 / −0.0719 ± 0.0021 | 0.195 / 0.193 | −0.0379 / −0.0484 ± 0.0022 |
    | chaotic tanh, 64 | 64 | −0.0048 / −0.0065 ± 0.0018 | 0.108 / 0.115 | +0.0190 / +0.0164 ± 0.0019 |
    | relu, 64 | 8 | −0.1137 / −0.1140 ± 0.0024 | 0.220 / 0.214 | −0.0946 / −0.0981 ± 0.0023 |
    | relu, 64 | 64 | −0.0817 / −0.0816 ± 0.0029 | 0.188 / 0.184 | −0.0602 / −0.0644 ± 0.0026 |
    | relu, 128 | 8 | −0.0433 / −0.0438 ± 0.0021 | 0.137 / 0.136 | −0.0393 / −0.0407 ± 0.0021 |
    | relu, 128 | 64 | −0.0286 / −0.0308 ± 0.0025 | 0.111 / 0.112 | −0.0241 / −0.0235 ± 0.0023 |
    | relu σ_b² = 0.1, 64 | 8 | −0.1072 / −0.1088 ± 0.0024 | 0.215 / 0.213 | −0.1012 / −0.1024 ± 0.0023 |
    | relu σ_b² = 0.1, 64 | 64 | −0.0756 / −0.0778 ± 0.0028 | 0.181 / 0.181 | −0.0689 / −0.0688 ± 0.0027 |

    Without K the critical tanh drift was −0.0411 (B = 8) and −0.0272 (B = 64) at N = 64, its spread 0.136
    (B = 8); without J relu's drift was −0.0946 (B = 8) and −0.0602 (B = 64) at N = 64, −0.0393 and −0.0241 at
    N = 128, its spread 0.203 (N = 64, B = 8) and 0.102 (N = 128, B = 64). With a bias (σ_b² = 0.1) J's sum falls
    from 0.20 to 0.067 (ln², blocks 1..L) and real − GI of the drift is −0.0064 ± 0.0024 (B = 8) and −0.0090 ± 0.0027
    (B = 64) against −0.0060 and −0.0067 predicted (4096 seeds at B = 64).
  - Given the forward pass, W_l is fixed on span(X_{l−1}), so at B ≥ N the backward pass has no randomness
    of its own: outside the derivation, but measured to follow it (N = 64, B = 64 above; B = 128, 2048 seeds,
    predicted / measured: drift critical tanh −0.0131 / −0.0134 ± 0.0017, chaotic +0.0014 / +0.0021 ± 0.0022, relu
    −0.0785 / −0.0792 ± 0.0040; spread 0.075 / 0.076, 0.093 / 0.101, 0.184 / 0.180).
* resmlp: gradient independence and no forward-length terms (not derived).

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

from gradjax._validate import check_choice, check_int
from gradjax.config import BACKWARDS, DEFAULT_BATCH
from gradjax.nn.activations import SLOPED, resolve_activation
from gradjax.theory import gaussian as _g
from gradjax.theory import sphere as _sphere
from gradjax.theory.attention import transformer_cotangents
from gradjax.theory.meanfield import block_kind, _default_q0, _f, _mean_square_after_norm, _norm_eps, c_profile, length_recursion
from gradjax.theory.support import requires

#: The loss the profiles model: ⟨y, t⟩/B with t independent of the network, so the cotangent entering
#: the top layer is independent of the weights (the gradient-independence setting of the δ recursion).
LOSSES = ("projection",)
_LN10 = math.log(10.0)
#: Floor of q where a finite-width term divides by it or takes its log (a zero h is its small-q limit).
_TINY_Q = 1e-12


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
def batchnorm_rate(activation, batch_size=DEFAULT_BATCH, *, slope=None):
    """Per-layer growth λ_B of E‖δ‖² in a batch-normalized MLP at initialization (any σ_w², σ_b²).

    λ_B = B T / (a (B−1)(B−3)) (module docstring); (B−2)/(B−3) for linear, → π/(π−1) for relu as B → ∞.
    T and a are expectations over x uniform on {x : Σx = 0, ‖x‖² = B}, by quadrature over its exact one-
    and two-coordinate marginals split at the activation's kinks (``gradjax.theory.sphere``; ≲1e-9
    relative, checked against a 10⁶-sample Monte Carlo of the sphere for every registry activation). A
    callable activation has no known kinks: its rule is not split.

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


def block_factors(cfg, q0=None, *, q_in=1.0, batch=DEFAULT_BATCH):
    """f_l = E‖δ_{l−1}‖²/E‖δ_l‖² for every block l = 1..L (module docstring).

    Args:
      cfg: the network (a pytree: structure static, numbers traced).
      q0: () second moment of h_0; q_in: () variance of the rnn input drive.
      batch: B for batchnorm (static; the other blocks do not depend on it).

    Returns:
      (L,) linear units; entry l−1 belongs to block l (it maps δ_l to δ_{l−1}).
    """
    kind = block_kind(cfg, "block_factors")  # a cnn's factor is the mlp's
    act, sl = cfg.activation, cfg.leaky_slope
    sw, sb, a2 = _f(cfg.sigma_w2), _f(cfg.sigma_b2), _f(cfg.alpha) ** 2
    eps = _norm_eps()
    q, nu = length_recursion(cfg, _default_q0(cfg, q0), q_in)
    q_prev, nu_prev = q[:-1], nu[:-1]  # what enters block l
    pre, post = cfg.pre_norm, cfg.post_norm
    per_example = cfg.norm in ("layernorm", "rmsnorm")

    if cfg.norm == "batchnorm":
        B = float(batch)
        T, T_I, a = _bn_traces(act, sl, batch)
        if kind == "mlp":
            return jnp.full_like(q_prev, B * T / (a * (B - 1) * (B - 3)))
        if pre:  # resmlp, BN on the branch input; ν of the residual stream from the recursion
            return 1 + a2 * sw * T_I / ((B - 3) * jnp.maximum(nu_prev, 1e-300))
        # resmlp, BN after the sum: ν_r = B/(B−1) + α² σ_w² a for a normalised h_{l−1}
        nu_r = B / (B - 1) + a2 * sw * a
        return jnp.full_like(q_prev, B * ((B - 2) + a2 * sw * T) / (nu_r * (B - 1) * (B - 3)))

    qx = _mean_square_after_norm(q_prev) if (pre and per_example) else q_prev
    mu1 = jax.vmap(lambda t: _g.derivative_moment(act, t, slope=sl))(qx)
    scale = 1.0 / (q_prev + eps) if (pre and per_example) else jnp.ones_like(q_prev)
    f = 1 + a2 * sw * scale * mu1 if kind == "resmlp" else sw * scale * mu1
    if post and per_example:
        V = jax.vmap(lambda t: _g.second_moment(act, t, slope=sl))(q_prev)
        if kind == "mlp":
            r = sw * V + sb
        elif kind == "resmlp":
            r = q_prev + a2 * (sw * V + sb)
        else:
            r = sw * V + sb + _f(q_in)
        f = f / (r + eps)
    return f


# ---- finite width ------------------------------------------------------------------------------------

#: Blocks whose finite-width fluctuation is derived here (dense and residual blocks without a norm);
#: the rnn shares one W over time (the blocks are not independent) and the norms couple units or examples.
FINITE_WIDTH_ARCHS = ("mlp", "resmlp")
#: Weight schemes with i.i.d. entries (Hanin's setting; the fluctuation depends on them only through σ_w²).
FINITE_WIDTH_INITS = ("gaussian", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "lecun_normal")


_FINITE_WIDTH_WHY = {
    "arch": "independent blocks: an rnn reuses one W at every step",
    "norm": "the norms couple units or examples",
    "init": "the fluctuation comes from i.i.d. weights; an orthogonal W does not fluctuate in norm",
}


def _check_finite_width(cfg, batch):
    requires(cfg, "the finite-width prediction", why=_FINITE_WIDTH_WHY, arch=FINITE_WIDTH_ARCHS, norm=("none",),
             init=FINITE_WIDTH_INITS)
    check_int("batch", batch)


def _square_derivative_pair(activation, q, c, slope):
    """E[φ′(u₁)² φ′(u₂)²] for a pair of variance q and correlation c.

    relu family: φ′ takes the values a and 1, so φ′² is the derivative of the same family at slope a²
    (relu: a = 0) and the closed form of ``derivative_pair_moment`` applies; hard_tanh: φ′² = φ′, the same;
    otherwise Mehler's series (panels cut at the kinks).
    """
    if activation == "linear":
        return jnp.ones_like(q * c)
    if activation == "relu" or activation in SLOPED:
        a = 0.0 if activation == "relu" else slope
        return _g.derivative_pair_moment("leaky_relu", q, q, c, slope=a * a)
    if activation == "hard_tanh":  # φ′ ∈ {0, 1}: φ′² = φ′, the split-rule derivative pair moment
        return _g.derivative_pair_moment("hard_tanh", q, q, c)
    d = _g.derivative(resolve_activation(activation, slope=slope))
    return _g.mehler_pair(lambda x: d(x) ** 2, lambda x: d(x) ** 2, q, q, c, kinks=_g.closed_forms(activation).kinks)


def _dense_covariances(mu1, mu2, kappa, rho, n):
    """(own, shared): relative variance of one example's ratio and covariance of two examples' ratios
    for a dense block δ ↦ D Wᵀδ (module docstring)."""
    return (3.0 * mu2 / mu1**2 - 1.0) / n, (kappa * (1.0 + 2.0 * rho) - 1.0) / n


def _overlap_step(rho, mu1, kappa, m, n, shared):
    """Mean squared cosine of two examples' δ after Wᵀ then D, normalised by E‖δ′_b‖²‖δ′_b′‖² (module docstring)."""
    return (kappa * (1.0 + 2.0 * rho) / n + (m / mu1) ** 2 * rho * (1.0 - 1.0 / n)) / (1.0 + shared)


def _derivative_statistics(cfg, q0, q_in):
    """μ₁, μ₂, κ, m of D_l = diag φ′(h_l) for l = 0..L: (L + 1,) each (module docstring)."""
    act, sl = cfg.activation, cfg.leaky_slope
    q = length_recursion(cfg, _default_q0(cfg, q0), q_in)[0]
    # correlation of two independent inputs' h_l (c_0 = 0: independent unit Gaussian examples)
    c = jnp.concatenate([jnp.zeros((1,), q.dtype), c_profile(cfg, q0=q0, c0=0.0)])
    mu1 = jax.vmap(lambda t: _g.derivative_moment(act, t, slope=sl))(q)
    mu2 = jax.vmap(lambda t: _g.derivative_moment(act, t, power=4, slope=sl))(q)
    kappa = jax.vmap(lambda t, r: _square_derivative_pair(act, t, r, sl))(q, c) / mu1**2
    m = jax.vmap(lambda t, r: _g.derivative_pair_moment(act, t, t, r, slope=sl))(q, c)
    return mu1, mu2, kappa, m


def _block_variances(cfg, q0, q_in, batch):
    """(v, B_eff, shared): (L,) each, block l's relative variance, the effective batch it sees, and the covariance
    of two examples' ratios through block l under gradient independence (module docstring)."""
    _check_finite_width(cfg, batch)
    g = _f(cfg.alpha) ** 2 * _f(cfg.sigma_w2)
    n, B = float(cfg.width), float(batch)
    mu1, mu2, kappa, m = _derivative_statistics(cfg, q0, q_in)
    # δ_L = D_L W_out t_b/B: the readout is a step from directions t_b of overlap 1/out_dim
    rho_top = _overlap_step(1.0 / cfg.out_dim, mu1[-1], kappa[-1], m[-1], n,
                            _dense_covariances(mu1[-1], mu2[-1], kappa[-1], 1.0 / cfg.out_dim, n)[1])

    def block(carry, d):  # block l: δ_l (overlap ρ, per-example log-norm variance σ²) → δ_{l−1}, D_{l−1}'s d
        rho, sig2 = carry
        mu1_, mu2_, kappa_, m_ = d
        b_eff = _effective_batch(B, sig2)
        own, shared = _dense_covariances(mu1_, mu2_, kappa_, rho, n)
        if cfg.arch == "mlp":
            rho_next = _overlap_step(rho, mu1_, kappa_, m_, n, shared)
        else:  # resmlp: δ + α D Wᵀδ; the linear term is odd in W, so uncorrelated with the rest
            gm = g * mu1_
            own = (4 * gm / n + gm**2 * own) / (1 + gm) ** 2
            shared = (4 * g * m_ * rho / n + gm**2 * shared) / (1 + gm) ** 2
            rho_next = ((rho * (1 + g * m_) ** 2 * (1 - 1 / n) + 2 * gm * (1 + rho) / n
                         + gm**2 * kappa_ * (1 + 2 * rho) / n) / ((1 + gm) ** 2 * (1 + shared)))
        v = own / b_eff + (1 - 1 / b_eff) * shared
        return (rho_next, sig2 + jnp.maximum(own - shared, 0.0)), (v, b_eff, shared)

    stats = tuple(x[:-1] for x in (mu1, mu2, kappa, m))  # D_{l−1} for l = 1..L
    _, out = jax.lax.scan(block, (rho_top, jnp.zeros_like(rho_top)), stats, reverse=True)
    return out


def _effective_batch(B, sig2):
    """B_eff = 1/E Σ_b w_b², w_b = e^{Y_b}/Σ_b′ e^{Y_b′}, for B independent log-normal per-example norms,
    Y_b ~ N(0, σ²): B at σ² = 0, 1 at B = 1, → 1 as σ² → ∞.

    Exact by quadrature: with 1/S² = ∫₀^∞ t e^{−tS} dt and u = ln t,
    E Σ_b w_b² = B ∫ E[x² e^{−x}] (E[e^{−x}])^{B−1} du,  x = e^{u + Y},
    each expectation over Y by the trapezoid rule on a grid of ±9σ, the u-integral by the trapezoid rule
    over [−9σ − 25, 9σ + 8] (the integrand is below e^{−25} outside). Converged to ~1e-12 relative with these
    grids up to σ² = 50 (checked against a 4× finer grid and a Monte Carlo of the weights).
    """
    if B == 1:
        return jnp.ones_like(sig2)
    # the grids resolve σ² ≤ 50 (B_eff ≤ 1.5 there at any B); beyond it Σ v ≫ 1, far outside the regime, and
    # σ² is held at 50 (B_eff → 1 only as 1/σ)
    s = jnp.sqrt(jnp.clip(sig2, 0.0, _BEFF_MAX_SIG2))
    z = jnp.linspace(-9.0, 9.0, _BEFF_NODES[0])
    wz = jnp.exp(-0.5 * z**2)
    wz = wz / jnp.sum(wz)
    u = jnp.linspace(-9.0 * s - 25.0, 9.0 * s + 8.0, _BEFF_NODES[1])
    lx = u[:, None] + s * z[None, :]  # ln x
    g0 = jnp.exp(-jnp.exp(lx)) @ wz  # E e^{−x}
    g2 = jnp.exp(2.0 * lx - jnp.exp(lx)) @ wz  # E x² e^{−x}
    f = g2 * jnp.power(g0, B - 1.0)
    return 1.0 / (B * (u[1] - u[0]) * (jnp.sum(f) - 0.5 * (f[0] + f[-1])))


#: Nodes of :func:`_effective_batch`'s grids: Y (the log-norm) and u = ln t; the largest σ² they resolve.
_BEFF_NODES = (361, 481)
_BEFF_MAX_SIG2 = 50.0


def finite_width_variance(cfg, q0=None, *, q_in=1.0, batch=DEFAULT_BATCH):
    """v_l: relative variance of the per-block ratio R_l = ‖δ_{l−1}‖²/‖δ_l‖² at width N and batch B.

    See the module docstring (finite width) for the derivation and its regime.

    Args:
      cfg: the network (static): arch "mlp" or "resmlp", norm "none".
      q0: () second moment of h_0; q_in: unused (rnn is not modelled), kept for the common signature.
      batch: B examples sharing the weights (static), integer ≥ 1.

    Returns:
      (L,) linear units; entry l−1 belongs to block l.

    References: Hanin 2018, arXiv:1801.03744 (B = 1).
    """
    return _block_variances(cfg, q0, q_in, batch)[0]


def _forward_length_statistics(cfg, q0, q_in, b_eff):
    """Per h_i (i = 0..L−1, the input of block i+1): s_i, a_i, Var η̄_i, Cov(ξ_{i+1}, η̄_{i+1}) (module docstring)."""
    act, sl = cfg.activation, cfg.leaky_slope
    sw = _f(cfg.sigma_w2)
    n = float(cfg.width)
    # a vanishing h (q → 0) at its small-q limit: q at least _TINY_Q, and q_{i+1} = σ_w² V(q_i) + σ_b² from that
    # same q (the q-map), so that the ratios below keep their limits where q² underflows
    q = jnp.maximum(length_recursion(cfg, _default_q0(cfg, q0), q_in)[0][:-1], _TINY_Q)
    c = jnp.concatenate([jnp.zeros((1,), q.dtype), c_profile(cfg, q0=q0, c0=0.0)])[:-1]
    phi = resolve_activation(act, slope=sl)
    d = _g.derivative(phi)
    sq, dsq = (lambda x: phi(x) ** 2), (lambda x: d(x) ** 2)
    kinks = _g.closed_forms(act).kinks  # hard_tanh's move with q: the rule is split there

    def one(t, r, B):
        mu1 = _g.derivative_moment(act, t, slope=sl)
        s = t * jax.grad(lambda u: _g.derivative_moment(act, u, slope=sl))(t) / mu1  # d ln μ₁/d ln q
        V = _g.second_moment(act, t, slope=sl)
        dV = _g.q_map_slope_kernel(act, t, slope=sl)
        var_own = _g.expect_split(lambda x: sq(x) ** 2, t, kinks) - V**2
        var_shared = _g.mehler_pair(sq, sq, t, t, r, kinks=kinks) - V**2
        cov_own = _g.expect_split(lambda x: dsq(x) * sq(x), t, kinks) - mu1 * V
        cov_shared = _g.mehler_pair(dsq, sq, t, t, r, kinks=kinks) - mu1 * V
        return s, dV, mu1, V, var_own / B + (1 - 1 / B) * var_shared, cov_own / B + (1 - 1 / B) * cov_shared

    s, dV, mu1, V, var_s, cov_s = jax.vmap(one)(q, c, b_eff)
    q_next = sw * V + _f(cfg.sigma_b2)
    a = sw * dV * q / q_next  # ε_{i+1} = a ε_i + η̄_{i+1}, a = d ln Q/d ln q at q_i
    var_eta = sw**2 * var_s / (n * q_next**2)  # η̄_{i+1}: the sample mean of φ(h_i)² over N units, batch-averaged
    cov_xi_eta = sw * cov_s / (n * q_next * mu1)  # block i+1's derivative noise with η̄_{i+1}: the same h_i
    return s, a, var_eta, cov_xi_eta


def _forward_length_covariance(cfg, q0, q_in, b_eff):
    """(L, L) covariance of the blocks' log-factor fluctuations through the forward length (module docstring),
    for the blocks' effective batch ``b_eff`` ((L,), from :func:`_block_variances`: block i+1 weighs the
    examples' h_i).

    Block k's factor moves by s_{k−1} ε̄_{k−1}, ε̄ the batch mean of ln(q̃/q), an AR(1) along depth
    (coefficient a, innovations η̄ from the sample mean of φ² over N units, correlated with the block's own
    derivative noise). Zero for scale-free φ (relu family: s = 0); resmlp is left at zero (not derived).
    """
    if cfg.arch != "mlp":
        return jnp.zeros((cfg.depth, cfg.depth))
    return _length_covariance_at(cfg, q0, q_in, b_eff)


def _chain_products(x):
    """(L, L) P[i, j] = ∏_{m=i}^{j−1} x_m for j ≥ i (1 on the diagonal), 0 below it: what a quantity carried from
    index m to m + 1 by the factor x_m (``x`` (L,), its last entry unused) keeps from i to j. Each x is floored at
    1e-300 before its log (a product that underflows is 0)."""
    L = x.shape[0]
    lx = jnp.concatenate([jnp.zeros((1,), x.dtype), jnp.cumsum(jnp.log(jnp.maximum(x[:-1], 1e-300)))])
    i, j = jnp.arange(L)[:, None], jnp.arange(L)[None, :]
    return jnp.where(j >= i, jnp.exp(lx[None, :] - lx[:, None]), 0.0)


def _length_covariance_at(cfg, q0, q_in, b_eff):
    """The (L, L) forward-length covariance of :func:`_forward_length_covariance` for batch weights ``b_eff``
    ((L,) effective batch per block; 1 for one example, ∞ for what the examples share)."""
    L = cfg.depth
    s, a, var_eta, cov_xi_eta = _forward_length_statistics(cfg, q0, q_in, b_eff)

    def var_step(p, x):
        a_, ve = x
        p = a_**2 * p + ve
        return p, p

    p0 = 2.0 / (cfg.in_dim * b_eff[0])  # h_0 = x W_in: ‖x‖²/in_dim of a unit Gaussian input, per example
    _, p_rest = jax.lax.scan(var_step, p0, (a[:-1], var_eta[:-1]))
    P = jnp.concatenate([p0[None], p_rest])  # Var ε̄_i, i = 0..L−1
    # A[i, j] = ∏_{m=i+1..j} a_m for j ≥ i (a_m maps ε_{m−1} → ε_m: entry m−1 of ``a``), else 0
    A = _chain_products(a)
    i, j = jnp.arange(L)[:, None], jnp.arange(L)[None, :]
    eps_cov = P[:, None] * A  # Cov(ε̄_i, ε̄_j), i ≤ j (upper triangle)
    # blocks k < j (0-based rows k, columns j: block k+1 uses ε̄_k, block j+1 uses ε̄_j)
    upper = s[:, None] * s[None, :] * eps_cov
    # block k+1's own noise ξ with ε̄_j for j ≥ k+1: Cov(ξ, η̄_{k+1}) · A[k+1, j]
    A_next = jnp.concatenate([A[1:], jnp.zeros((1, L), s.dtype)], axis=0)
    upper = upper + jnp.where(j > i, cov_xi_eta[:, None] * A_next * s[None, :], 0.0)
    C = jnp.where(j > i, upper, 0.0)
    return C + C.T + jnp.diag(s**2 * P)


def _length_reweighting(cfg, q0, q_in, batch):
    """(L,) mean shift of ln R_l from the batch sum's weighting of the examples by their own ‖δ_b‖² (module
    docstring): (1 − 1/B) Σ_{j>l} C^d_{lj}, C^d the forward-length covariance of what is specific to one
    example (one example's minus the shared part). 0 at B = 1 and for the relu family (s = 0); mlp only."""
    L = cfg.depth
    if cfg.arch != "mlp" or batch == 1:
        return jnp.zeros((L,))
    one = _length_covariance_at(cfg, q0, q_in, jnp.ones((L,)))
    shared = _length_covariance_at(cfg, q0, q_in, jnp.full((L,), jnp.inf))
    i, j = jnp.arange(L)[:, None], jnp.arange(L)[None, :]
    return (1.0 - 1.0 / batch) * jnp.sum(jnp.where(j > i, one - shared, 0.0), axis=1)


def _length_mean_shift(cfg, q0, q_in):
    """(L,) mean shift of ln R_l from the forward length's finite-width drift (module docstring), mlp only.

    Per example, m_i = E ε_i and P_i = Var ε_i: m_0 = −1/in_dim, P_0 = 2/in_dim (‖x‖²/in_dim), and
    m_{i+1} = a_i m_i + ½ b_i P_i − ½ Var η_{i+1}, P_{i+1} = a_i² P_i + Var η_{i+1}
    (b = d² ln Q/d(ln q)², the −½ Var η from ln of the sample mean); block i+1 moves by s_i m_i + ½ s₂_i P_i,
    s₂ = d² ln μ₁/d(ln q)².
    """
    L = cfg.depth
    if cfg.arch != "mlp":
        return jnp.zeros((L,))
    act, sl = cfg.activation, cfg.leaky_slope
    sw, sb = _f(cfg.sigma_w2), _f(cfg.sigma_b2)
    q = jnp.maximum(length_recursion(cfg, _default_q0(cfg, q0), q_in)[0][:-1], _TINY_Q)  # small-q limit at q = 0
    s, a, var_eta, _ = _forward_length_statistics(cfg, q0, q_in, jnp.ones((L,)))
    ln_q_map = lambda u: jnp.log(sw * _g.second_moment(act, jnp.exp(u), slope=sl) + sb)  # noqa: E731
    ln_mu1 = lambda u: jnp.log(_g.derivative_moment(act, jnp.exp(u), slope=sl))  # noqa: E731
    b = jax.vmap(jax.grad(jax.grad(ln_q_map)))(jnp.log(q))
    s2 = jax.vmap(jax.grad(jax.grad(ln_mu1)))(jnp.log(q))

    def step(carry, x):
        m, p = carry
        a_, b_, ve = x
        return (a_ * m + 0.5 * b_ * p - 0.5 * ve, a_**2 * p + ve), (m, p)

    init = (jnp.asarray(-1.0 / cfg.in_dim, q.dtype), jnp.asarray(2.0 / cfg.in_dim, q.dtype))
    _, (m, p) = jax.lax.scan(step, init, (a, b, var_eta))
    return s * m + 0.5 * s2 * p


def _shared_weight_shift(cfg, q0, q_in):
    """(L,) mean shift Δ_l of ln R_l from the forward and backward pass sharing W_l (module docstring).

    Along the input x = φ(h_{l−1}) of block l the forward pass fixes W_l: W_lᵀδ_l has the component
    x (z_l·δ_l)/‖x‖², z_l = W_l x = h_l − b_l, where gradient independence would put z′·δ_l with z′ a fresh
    copy. With ρ_l = E(z_l·δ_l)²/(q_z,l ‖δ_l‖²) (1 under gradient independence),
    Δ_l = (ρ_l − 1) τ_{l−1}/N, τ = E[φ′²φ²]/(μ₁ V), and ρ follows the backward pass exactly at this order:
    ρ_L = 1 + 2 q_z μ₁′/μ₁ and
    ρ_{l−1} = [λ² ρ_l q_z,l + σ_w² (E[z²φ′²] − E[zφ′φ]²/V)] / (σ_w² μ₁ q_z,l−1), λ = E[zφ′φ]/V,
    with E[z²φ′²] = q_z μ₁ + 2 q_z² μ₁′, E[zφ′φ] = q_z V′ (Stein's lemma; μ₁′ = dμ₁/dq, V′ = dV/dq),
    everything at the layer's q (q_z = q − σ_b²). mlp only (resmlp: 0, not derived).
    """
    L = cfg.depth
    if cfg.arch != "mlp":
        return jnp.zeros((L,))
    act, sl = cfg.activation, cfg.leaky_slope
    sw = _f(cfg.sigma_w2)
    sb = _f(cfg.sigma_b2)
    # (L + 1,) h_0..h_L. A vanishing h (q → 0, e.g. q0 = 0 or σ_w² < 1 at σ_b² = 0) is evaluated at its small-q
    # limit: q_z at least _TINY_Q, and every ratio of two vanishing moments taken at the same q.
    q_raw = length_recursion(cfg, _default_q0(cfg, q0), q_in)[0]
    qz = jnp.maximum(jnp.concatenate([q_raw[:1], q_raw[1:] - sb]), _TINY_Q)
    q = jnp.concatenate([qz[:1], qz[1:] + sb])
    mu = lambda t: _g.derivative_moment(act, t, slope=sl)  # noqa: E731
    phi = resolve_activation(act, slope=sl)
    d = _g.derivative(phi)
    mu1 = jax.vmap(mu)(q)
    dmu1 = jax.vmap(jax.grad(mu))(q)
    V = jax.vmap(lambda t: _g.second_moment(act, t, slope=sl))(q)
    dV = jax.vmap(lambda t: _g.q_map_slope_kernel(act, t, slope=sl))(q)
    kinks = _g.closed_forms(act).kinks  # hard_tanh's move with q: the rule is split there
    tau = jax.vmap(lambda t: _g.expect_split(lambda x: (d(x) * phi(x)) ** 2, t, kinks))(q) / (mu1 * V)
    lam = qz * dV / V  # E[z φ′(h) φ(h)]/V
    # injection over q_z: σ_w² (E[z²φ′²] − E[zφ′φ]²/V)/q_z, and q_z,l/q_z,l−1 = σ_w² V(q_{l−1})/q_z,l−1 (the
    # q-map), both finite as q → 0 (where q_z,l itself underflows: a vanishing network)
    inject_rel = sw * (mu1 + 2.0 * qz * dmu1 - qz * dV**2 / V)
    ratio = sw * V / qz

    def block(rho, l):  # block l = L..1: δ_l (ρ_l) → δ_{l−1} (ρ_{l−1})
        shift = (rho - 1.0) * tau[l - 1] / cfg.width
        rho_next = (lam[l - 1] ** 2 * rho * ratio[l - 1] + inject_rel[l - 1]) / (sw * mu1[l - 1])
        return rho_next, shift

    rho_top = 1.0 + 2.0 * qz[-1] * dmu1[-1] / mu1[-1]
    _, shift = jax.lax.scan(block, rho_top, jnp.arange(L, 0, -1))
    return shift[::-1]


def _cross_example_covariance(cfg, q0, q_in):
    """(L, L) K: covariance of one example's block-l log-factor with another example's block-k log-factor from the
    forward and backward pass sharing W (module docstring: the shared weights between examples), mlp only.

    Example a's backward step through block l has, along example b's input x_{l−1,b}, the coefficient
    t_l = z_{l,b}·δ_{l,a} (gradient independence: a fresh z′·δ_{l,a}). Normalised, τ_l² = N t_l²/(q̂_z,l ‖δ_{l,a}‖²)
    (q̂_z,l = σ_w² ‖x_{l−1,b}‖²/N) adds (τ_l² − 1)/N to ln R_{l,a}, and given b's forward pass
    E[τ_l² − 1] = Λ_l E[τ_{l+1}² − 1] + u_l exactly at this order (u_l = ‖z_{l,b}‖²/(N q̂_z,l) − 1, b's own gain
    noise, variance 2/N; Λ_l = q_z m₁⁴/(V μ₁) at layer l, m₁ = E φ′; τ_{L+1} = 1). u_l is a shift of
    ln q_l by (q_z/q) u_l, which moves b's block k by G_lk = s_{k−1} ∏_{m=l}^{k−2} a_m (k > l; the forward
    length's s and a). So M_lk = (2/N²) Σ_{l ≤ i < k} ∏_{m=l}^{i−1} Λ_m (q_z/q)_i G_ik, and K = M + Mᵀ.
    """
    L = cfg.depth
    if cfg.arch != "mlp":
        return jnp.zeros((L, L))
    act, sl = cfg.activation, cfg.leaky_slope
    sb, n = _f(cfg.sigma_b2), float(cfg.width)
    q_raw = length_recursion(cfg, _default_q0(cfg, q0), q_in)[0][1:]  # h_1..h_L
    qz = jnp.maximum(q_raw - sb, _TINY_Q)  # a vanishing h at its small-q limit (the ratios below keep it)
    q = qz + sb
    m1 = jax.vmap(lambda t: _g.derivative_moment(act, t, power=1, slope=sl))(q)
    mu1 = jax.vmap(lambda t: _g.derivative_moment(act, t, slope=sl))(q)
    V = jax.vmap(lambda t: _g.second_moment(act, t, slope=sl))(q)
    lam = qz * m1**4 / (V * mu1)  # Λ at h_1..h_L
    s, a, _, _ = _forward_length_statistics(cfg, q0, q_in, jnp.ones((L,)))  # at h_0..h_{L−1}
    T = _chain_products(lam)  # T[l−1, i−1] = ∏_{m=l}^{i−1} Λ_m (i ≥ l): how b's u_i reaches a's τ_l
    # G[h, k−1] = s_{k−1} ∏_{m=h}^{k−2} a_m (k − 1 ≥ h): a shift of ln q_h moves block k; rows h = 1..L (h_L: none)
    G = _chain_products(a) * s[None, :]
    G = jnp.concatenate([G[1:], jnp.zeros((1, L), G.dtype)], axis=0)
    M = (2.0 / n**2) * (T * (qz / q)[None, :]) @ G
    return M + M.T


#: Activations whose backward pass keeps each example's own component: φ(h) = φ′(h) h and φ′ ∈ {0, 1}, so that
#: D_b x_b = x_b (:func:`_own_direction_covariance`).
OWN_DIRECTION_ACTIVATIONS = ("relu", "linear")


def _own_direction_covariance(cfg, q0, q_in, shared=None):
    """(L, L) J: covariance of one example's block-i log-factor with another's block-j log-factor from each example's
    backward pass carrying its own forward gains (module docstring: each example's own direction), relu and linear
    (mlp); zeros otherwise (not derived).

    For φ with φ(h) = φ′(h) h and φ′ ∈ {0, 1}, the component of example a's W_lᵀδ_{l,a} along its own input x_{l−1,a}
    has the coefficient s_{l−1}/‖x_{l−1,a}‖², s_l = h_{l,a}·δ_{l,a}, and s_{l−1} = s_l − b_l·δ_{l,a} (conserved at
    σ_b² = 0). Normalised as τ_l² = s_l² N/(σ_w² ‖δ_{l,a}‖² ‖x_{l−1,a}‖²) (gradient independence: a fresh χ²₁), it
    adds ε_{l−1} (τ_l² − 1) to block l's log-factor, ε = 1/(N μ₁), and
    y_{l−1} = y_l + α_{l−1} − γ_{l−1} − ε_{l−1} τ_l² (+ σ_b²/(q_z,l τ_l²) from the bias), y = ln τ², α_p the forward
    log-gain ln ‖x_p‖²/‖x_{p−1}‖² of layer p and γ_p the backward one of gradient independence (both about their means).
    Linearised at τ² = 1: block i's log-factor is γ_{i−1} + Σ_{p ≥ i} H_ip (α_p − γ_p),
    H_ip = ε_{i−1} ∏_{m=i}^{p−1} (1 − ε_m − σ_b²/q_z,m+1). With per-layer pair covariances (examples a ≠ b, their
    pre-activations of correlation c_p) C_α = Cov(α_a, α_b), C_γ = Cov(γ_a, γ_b) (the dense block's shared term),
    C_αγ = Cov(α_a, γ_b):

        J = H diag(C_α + C_γ − 2C_αγ) Hᵀ + Q + Qᵀ,   Q_ij = H_{j,i−1} (C_αγ − C_γ)_{i−1} for j ≤ i − 1.

    Patterns p = 1..L (h_L's: the readout's step carries the same component). ``shared`` (L,): the blocks' C_γ from
    :func:`_block_variances` where the caller has it (it does not depend on the batch), else computed here.
    """
    L = cfg.depth
    if cfg.arch != "mlp" or cfg.activation not in OWN_DIRECTION_ACTIVATIONS:
        return jnp.zeros((L, L))
    act, sl = cfg.activation, cfg.leaky_slope
    sb, n = _f(cfg.sigma_b2), float(cfg.width)
    q_all = length_recursion(cfg, _default_q0(cfg, q0), q_in)[0]  # h_0..h_L
    q = q_all[1:]
    c = c_profile(cfg, q0=q0, c0=0.0)  # h_1..h_L: two examples of independent inputs
    phi = resolve_activation(act, slope=sl)
    d = _g.derivative(phi)
    sq, dsq = (lambda x: phi(x) ** 2), (lambda x: d(x) ** 2)
    kinks = _g.closed_forms(act).kinks
    mu1, mu2, kappa, _ = _derivative_statistics(cfg, q0, q_in)  # h_0..h_L
    # the normalised pair moments of a positively homogeneous φ do not depend on q: taken at q = 1 (finite where a
    # vanishing network's q underflows)
    one = jnp.ones_like(q)
    V = _g.second_moment(act, one[0], slope=sl)
    c_alpha = (jax.vmap(lambda t, r: _g.mehler_pair(sq, sq, t, t, r, kinks=kinks))(one, c) / V**2 - 1.0) / n
    c_alpha_gamma = (jax.vmap(lambda t, r: _g.mehler_pair(sq, dsq, t, t, r, kinks=kinks))(one, c)
                     / (V * mu1[1:]) - 1.0) / n
    if shared is None:
        shared = _block_variances(cfg, q0, q_in, 1)[2]  # block l: D_{l−1}, patterns 0..L−1
    top = _dense_covariances(mu1[-1], mu2[-1], kappa[-1], 1.0 / cfg.out_dim, n)[1]  # the readout's, pattern L
    c_gamma = jnp.concatenate([shared[1:], top[None]])  # patterns 1..L
    eps = 1.0 / (n * mu1)  # patterns 0..L
    qz = jnp.maximum(q - sb, _TINY_Q)  # q_z,1..q_z,L
    decay = 1.0 - eps[1:] - sb / jnp.concatenate([qz[1:], qz[-1:]])  # step to pattern m = 1..L (last unused)
    H = eps[:-1, None] * _chain_products(decay)  # rows blocks i = 1..L, columns patterns p = 1..L
    D = c_alpha + c_gamma - 2.0 * c_alpha_gamma
    E = c_alpha_gamma - c_gamma  # Cov(α_a − γ_a, γ_b), patterns 1..L
    # Q[i, j] (1-based blocks, j ≤ i − 1): a's own γ_{i−1} with b's block j's response to pattern i − 1
    i, j = jnp.arange(L)[:, None], jnp.arange(L)[None, :]  # 0-based: block i+1, j+1; pattern i (1-based) = col i−1
    Hprev = jnp.concatenate([jnp.zeros((L, 1), H.dtype), H[:, :-1]], axis=1)  # Hprev[j, i] = H[block j+1, pattern i]
    Q = jnp.where(j < i, Hprev.T * jnp.concatenate([jnp.zeros((1,), E.dtype), E[:-1]])[:, None], 0.0)
    return (H * D[None, :]) @ H.T + Q + Q.T


def _suffix_variance(v, C):
    """Entry l−1: Σ_{k,j > l} (diag(v) + C)_{kj}, the variance of the log-factor sum over the blocks above h_l."""
    tot = jnp.diag(v) + C
    suf = jnp.cumsum(jnp.cumsum(tot[::-1, ::-1], axis=0), axis=1)[::-1, ::-1]
    return jnp.concatenate([jnp.diagonal(suf)[1:], jnp.zeros((1,), v.dtype)])


def _from_factors(log10_f):
    """Entry l−1 = Σ_{k=l+1..L} log10_f[k−1]: the sum over the blocks above h_l (0 for h_L)."""
    rc = jnp.cumsum(log10_f[::-1])[::-1]
    return jnp.concatenate([rc[1:], jnp.zeros((1,), rc.dtype)])


def _check_loss(loss):
    if not (isinstance(loss, str) and loss in LOSSES):
        raise ValueError(
            f"loss must be one of {list(LOSSES)}, got {loss!r}: the mean-field profile models an output cotangent "
            "independent of the weights (⟨y, t⟩/B). An mse cotangent y − t carries the forward signal, which a "
            "positively homogeneous net (relu, leaky_relu, linear) aligns with the Jacobians it travels back "
            "through (relu at He init: +0.5 decades over the top layers); measure such losses, do not compare "
            "them with this profile")


@functools.partial(jax.jit, static_argnames=("loss", "batch", "finite_width", "backward"))
def gradient_profile(cfg, q0=None, *, q_in=1.0, loss="projection", batch=DEFAULT_BATCH, finite_width=None,
                     backward="shared"):
    """Expected log10 ‖∂loss/∂h_l‖ − log10 ‖∂loss/∂h_L‖ after every block (entry l−1 for h_l).

    Mean field: ½ Σ_{k>l} log10 f_k with the per-block factors of the module docstring, evaluated along
    the q-trajectory from q0 (the transient, not only the fixed point); a transformer's from the mean field
    of its token Grams (:func:`gradjax.theory.attention.transformer_cotangents`). The last entry is exactly 0
    (the reference). The finite-width form adds the width-N, batch-B drift of the mean log-norm,
    Σ_{k>l} shift_k/(2 ln 10) (:func:`finite_width_shift`: −v_k/2, the forward length's drift and
    re-weighting, and the shared forward/backward weights at one example's order). The same quantity, loss and batch as
    ``gradjax.empirical.gradient_profile(cfg, seeds).relative()`` at its defaults.

    Args:
      cfg: the network (a pytree: structure static, numbers traced).
      q0: () second moment of h_0 (default 1 for mlp/resmlp with unit-variance inputs, 0 for rnn).
      q_in: () variance of the rnn input drive.
      loss: "projection" (static), the only loss modelled: ⟨y, t⟩/B with random t; any other raises.
      batch: B examples per network (static): batchnorm's rate and the finite-width drift depend on it.
      finite_width: include the width-N, batch-B drift (static). ``None`` (default): included where it
        is modelled (``cfg.arch`` in ``FINITE_WIDTH_ARCHS``, ``norm="none"``, ``cfg.init`` in
        ``FINITE_WIDTH_INITS``), mean field elsewhere;
        ``True``: included, refused (ValueError) where not modelled; ``False``: mean field (N → ∞).
      backward: "shared" (default: the network's gradient) or "independent": the backward pass through
        independent copies of the weights (static), the setting that
        ``gradjax.empirical.gradient_profile(..., backward="independent")`` measures. The two differ only
        in the finite-width drift, by the shared-weight shift Δ (module docstring); the mean field is the
        same.

    Returns:
      (L,) log10 units.

    References: Schoenholz et al. 2017, arXiv:1611.01232; Yang et al. 2019, arXiv:1902.08129;
    Hanin 2018, arXiv:1801.03744.
    """
    _check_loss(loss)
    check_int("batch", batch)
    _check_backward(backward)
    if cfg.arch == "transformer":
        if finite_width:  # the same refusal, naming arch, as every other structure outside the finite-width model
            _check_finite_width(cfg, batch)
        return 0.5 * transformer_cotangents(cfg, q0)
    lf = 0.5 * jnp.log10(block_factors(cfg, q0, q_in=q_in, batch=batch))
    if finite_width is None:
        finite_width = (cfg.arch in FINITE_WIDTH_ARCHS and cfg.norm == "none"
                        and cfg.init in FINITE_WIDTH_INITS)
    if finite_width:
        lf = lf + finite_width_shift(cfg, q0, q_in=q_in, batch=batch, backward=backward) / (2 * _LN10)
    return _from_factors(lf)


def _check_backward(backward):
    check_choice("backward", backward, BACKWARDS)


def finite_width_shift(cfg, q0=None, *, q_in=1.0, batch=DEFAULT_BATCH, backward="shared"):
    """E ln R_l − ln f_l: the width-N, batch-B shift of block l's mean log-factor (module docstring).

    −v_l/2 (:func:`finite_width_variance`), plus the shift from the forward and backward pass sharing W_l
    (mlp; derived per example, exact at B = 1, and between examples at B > 1 as the batch sum's re-weighting
    −(1 − 1/B)(½ X_ll + Σ_{k>l} X_lk), X = K + J of the module docstring; not with ``backward="independent"``) and the
    batch sum's re-weighting of the examples by their forward length (mlp, B > 1).

    Args: as :func:`finite_width_variance`; backward: "shared" or "independent" (:func:`gradient_profile`).

    Returns:
      (L,) natural-log units of the squared-norm ratio; entry l−1 belongs to block l.

    References: Hanin 2018, "Which Neural Net Architectures Give Rise to Exploding and Vanishing
    Gradients?", arXiv:1801.03744 (the −v/2 of one example); the other terms are derived in the module
    docstring and checked there against simulated networks.
    """
    _check_backward(backward)
    v, _, shared_g = _block_variances(cfg, q0, q_in, batch)  # v: finite_width_variance
    shared = 0.0
    if backward == "shared":
        shared = _shared_weight_shift(cfg, q0, q_in)
        if batch > 1:  # the batch sum re-weighs examples that share less (or more) than gradient independence says
            X = _examples_covariance(cfg, q0, q_in, shared_g)
            shared = shared - (1.0 - 1.0 / batch) * (jnp.sum(jnp.triu(X, 1), 1) + 0.5 * jnp.diagonal(X))
    return -0.5 * v + shared + _length_mean_shift(cfg, q0, q_in) + _length_reweighting(cfg, q0, q_in, batch)


def _cross_example_term(cfg, q0, q_in, b_eff, shared=None):
    """(L, L): what the shared weights between examples add to the covariance of the batch's block log-factors,
    (1 − 1/√(B_eff,k B_eff,l)) X_kl (X = K + J: :func:`_examples_covariance`; ``b_eff`` (L,): the blocks' effective
    batch, and ``shared`` (L,) their C_γ, both from :func:`_block_variances`)."""
    return (1.0 - 1.0 / jnp.sqrt(b_eff[:, None] * b_eff[None, :])) * _examples_covariance(cfg, q0, q_in, shared)


def _examples_covariance(cfg, q0, q_in, shared=None):
    """(L, L) what the weights shared by the forward and backward pass add to the covariance of two examples' block
    log-factors: K (the other's input direction, :func:`_cross_example_covariance`) + J (each one's own direction,
    :func:`_own_direction_covariance`)."""
    return _cross_example_covariance(cfg, q0, q_in) + _own_direction_covariance(cfg, q0, q_in, shared)


@functools.partial(jax.jit, static_argnames=("loss", "batch", "backward"))
def gradient_spread(cfg, q0=None, *, q_in=1.0, loss="projection", batch=DEFAULT_BATCH, backward="shared"):
    """Predicted std across seeds of log10(‖δ_l‖/‖δ_L‖) at width N and batch B: ½ √(Σ_{k>l} v_k)/ln 10.

    v_k from :func:`finite_width_variance` (module docstring: derivation and regime). At B = 1 this is
    Hanin's per-input statement; a batch of B independent directions through the same weights averages
    the per-example part (∝ 1/B) but not what the examples share (the weights, and the derivative
    pattern as far as the examples' pre-activations are correlated). With ``backward="shared"`` the weights
    shared by the forward and backward pass make two examples covary less (critical tanh: each one's component
    along the other's input carries the other's forward gains; K of the module docstring) or more (relu and linear:
    each one's own component carries its own forward gains, and the examples' gains are correlated; J), which a
    batch averages: (1 − 1/B_eff)(K + J) is added to the blocks' covariance (L = 30, B = 8, 8192 seeds (4096 at
    N = 128), networks / their control with ``backward="independent"`` / predicted for the networks: critical tanh
    N = 64 0.115 / 0.133 / 0.118, N = 128 0.075 / 0.081 / 0.073; chaotic tanh N = 64 0.193 / 0.196 / 0.195; relu
    N = 64 0.214 / 0.207 / 0.220, N = 128 0.136 / 0.132 / 0.137).
    ``gradjax.empirical.gradient_profile(..., backward="independent")`` measures the control. Derived for B < N; at
    B ≥ N the forward pass fixes every W_l on the whole input space and the backward pass has no randomness of its
    own, yet the same expansion holds there as measured (L = 30, N = 64, networks, measured / predicted: B = 64,
    4096 seeds, critical tanh 0.079 / 0.079, chaotic 0.115 / 0.108, relu 0.184 / 0.188; B = 128, 2048 seeds,
    0.076 / 0.075, 0.101 / 0.093, 0.180 / 0.184; without K and J the critical tanh ratio at N = B = 64 is 0.73).

    Args: as :func:`gradient_profile` (no ``finite_width``: the spread exists only at finite width).
      ``backward="independent"``: the backward pass through independent copies of the weights (no shared-weight
      terms); ``"shared"`` (default): the network's own.

    Returns:
      (L,) log10 units; 0 for the last entry.

    Raises:
      ValueError: a structure outside the finite-width model (arch, norm, init), a loss other than the
        projection.

    References: Hanin 2018, "Which Neural Net Architectures Give Rise to Exploding and Vanishing
    Gradients?", arXiv:1801.03744 (Thm 1: Var log‖δ‖² grows with Σ 1/n_l).
    """
    _check_loss(loss)
    _check_backward(backward)
    v, b_eff, shared_g = _block_variances(cfg, q0, q_in, batch)  # what finite_width_variance returns, and B_eff
    C = _forward_length_covariance(cfg, q0, q_in, b_eff)
    if backward == "shared" and batch > 1:  # at B = 1 (B_eff = 1) the examples' term has weight 0
        C = C + _cross_example_term(cfg, q0, q_in, b_eff, shared_g)
    return 0.5 * jnp.sqrt(jnp.maximum(_suffix_variance(v, C), 0.0)) / _LN10
