"""Empirical measurements across seeds: gradient norms, activation statistics, Jacobian spectra."""

from gradjax.empirical.gradients import GradNorms as GradNorms
from gradjax.empirical.gradients import fitted_slope as fitted_slope
from gradjax.empirical.gradients import grad_norms as grad_norms
from gradjax.empirical.gradients import gradient_profile as gradient_profile
from gradjax.empirical.gradients import growth_rate as growth_rate
from gradjax.empirical.gradients import relative_profile as relative_profile
from gradjax.empirical.gradients import seed_median as seed_median
from gradjax.empirical.gradients import seed_quantiles as seed_quantiles
from gradjax.empirical.losses import DEFAULT_LOSS as DEFAULT_LOSS
from gradjax.empirical.losses import LOSSES as LOSSES
from gradjax.empirical.losses import loss_fn as loss_fn
from gradjax.empirical.propagate import backward_walk as backward_walk
from gradjax.empirical.propagate import forward_taps as forward_taps
from gradjax.empirical.activations import ActivationStats as ActivationStats
from gradjax.empirical.activations import activation_stats as activation_stats
from gradjax.empirical.activations import activation_stats_of as activation_stats_of
from gradjax.empirical.activations import c_profile as c_profile
from gradjax.empirical.activations import q_profile as q_profile
from gradjax.empirical.jacobians import SpectralQuadrature as SpectralQuadrature
from gradjax.empirical.jacobians import jacobian_spectral_density as jacobian_spectral_density
from gradjax.empirical.jacobians import jacobian_spectrum as jacobian_spectrum
from gradjax.empirical.jacobians import log10_singular_values as log10_singular_values
