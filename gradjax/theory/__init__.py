"""Theory: mean-field signal propagation, predicted gradient profiles and Jacobian spectra, in pure JAX.

``gaussian`` (Gaussian expectations of activations) → ``meanfield`` (q/c maps, fixed points, χ₁, depth
scales, critical line, q/c profiles) → ``gradients`` (per-block backward factors, gradient profiles,
finite-width spread) and ``spectra`` (free-probability Jacobian spectra). Never imports
``gradjax.empirical``: the two are independent answers to the same questions.
"""

from gradjax.theory.gradients import LOSSES as LOSSES
from gradjax.theory.gradients import batchnorm_rate as batchnorm_rate
from gradjax.theory.gradients import block_factors as block_factors
from gradjax.theory.gradients import finite_width_variance as finite_width_variance
from gradjax.theory.gradients import finite_width_shift as finite_width_shift
from gradjax.theory.gradients import gradient_profile as gradient_profile
from gradjax.theory.gradients import gradient_spread as gradient_spread
from gradjax.theory.meanfield import PHASES as PHASES
from gradjax.theory.meanfield import c_map as c_map
from gradjax.theory.meanfield import c_profile as c_profile
from gradjax.theory.meanfield import c_star as c_star
from gradjax.theory.meanfield import chi_1 as chi_1
from gradjax.theory.meanfield import chi_c as chi_c
from gradjax.theory.meanfield import critical_point as critical_point
from gradjax.theory.meanfield import critical_sigma_w2 as critical_sigma_w2
from gradjax.theory.meanfield import depth_scale_c as depth_scale_c
from gradjax.theory.meanfield import depth_scale_q as depth_scale_q
from gradjax.theory.meanfield import length_recursion as length_recursion
from gradjax.theory.meanfield import phase as phase
from gradjax.theory.meanfield import q_map as q_map
from gradjax.theory.meanfield import q_profile as q_profile
from gradjax.theory.meanfield import q_star as q_star
from gradjax.theory.attention import token_profile as token_profile
from gradjax.theory.conv import averaging_eigenvalues as averaging_eigenvalues
from gradjax.theory.conv import mode_depth_scales as mode_depth_scales
from gradjax.theory.conv import position_gradient_profile as position_gradient_profile
from gradjax.theory.conv import position_jacobian_sv2_mean as position_jacobian_sv2_mean
from gradjax.theory.conv import position_q_profile as position_q_profile
from gradjax.theory.conv import spatial_covariance_profile as spatial_covariance_profile
from gradjax.theory.attention import token_similarity as token_similarity
from gradjax.theory.spectra import JacobianDensity as JacobianDensity
from gradjax.theory.spectra import jacobian_density as jacobian_density
from gradjax.theory.spectra import jacobian_moments as jacobian_moments
