"""Empirical measurements across seeds: gradient norms, activation statistics, Jacobian spectra."""

from gradjax.empirical.gradients import GradNorms as GradNorms
from gradjax.empirical.gradients import fitted_slope as fitted_slope
from gradjax.empirical.gradients import grad_norms as grad_norms
from gradjax.empirical.gradients import growth_rate as growth_rate
from gradjax.empirical.gradients import relative_profile as relative_profile
from gradjax.empirical.gradients import log10_cotangents as log10_cotangents
from gradjax.empirical.losses import DEFAULT_LOSS as DEFAULT_LOSS
from gradjax.empirical.losses import LOSSES as LOSSES
from gradjax.empirical.losses import loss_fn as loss_fn
from gradjax.empirical.propagate import backward_walk as backward_walk
from gradjax.empirical.propagate import forward_taps as forward_taps
from gradjax.empirical.propagate import segment_length as segment_length
from gradjax.empirical.propagate import segmented_walk as segmented_walk
from gradjax.empirical.activations import ActivationStats as ActivationStats
from gradjax.empirical.activations import activation_stats_of as activation_stats_of
from gradjax.empirical.activations import c_profile_of as c_profile_of
from gradjax.empirical.activations import q_profile_of as q_profile_of
from gradjax.empirical.activations import spatial_covariance as spatial_covariance
from gradjax.empirical.activations import token_similarity as token_similarity
from gradjax.empirical.activations import token_similarity_of as token_similarity_of
from gradjax.empirical.jacobians import SpectralQuadrature as SpectralQuadrature
from gradjax.empirical.jacobians import jacobian_spectrum_of as jacobian_spectrum_of
from gradjax.empirical.jacobians import log10_singular_values as log10_singular_values
from gradjax.empirical.model import DEFAULT_LAYERS as DEFAULT_LAYERS
from gradjax.empirical.model import layer_paths as layer_paths
from gradjax.empirical.model import model_grad_norms as model_grad_norms

# The measurements take a NetConfig or a model factory make_model(rngs) -> nnx.Module.
from gradjax.empirical import activations as _act
from gradjax.empirical import gradients as _grad
from gradjax.empirical import jacobians as _jac
from gradjax.empirical import model as _model

gradient_profile = _model.config_or_model(_grad.gradient_profile, _model.model_gradient_profile)
activation_stats = _model.config_or_model(_act.activation_stats, _model.model_activation_stats)
q_profile = _model.config_or_model(_act.q_profile, _model.model_q_profile)
c_profile = _model.config_or_model(_act.c_profile, _model.model_c_profile)
jacobian_spectrum = _model.config_or_model(_jac.jacobian_spectrum, _model.model_jacobian_spectrum)
jacobian_spectral_density = _model.config_or_model(_jac.jacobian_spectral_density,
                                                   _model.model_jacobian_spectral_density)
from gradjax.empirical.hessian import HessianSpectrum as HessianSpectrum
from gradjax.empirical.hessian import hessian_blocks as hessian_blocks
from gradjax.empirical.hessian import hessian_spectrum as hessian_spectrum
from gradjax.empirical.hessian import hvp as hvp
