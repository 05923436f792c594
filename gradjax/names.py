"""The names a ``NetConfig`` is validated against, and the numbers they fix.

This module is the ground floor beside ``gradjax.config``: it imports nothing from gradjax but the
validation helpers. The
functions behind the names (activations, initializers) live in ``gradjax.nn``, whose registries are
keyed by exactly these names (tests/nn/test_zoo.py checks that they agree).
"""

from __future__ import annotations

from gradjax._validate import check_choice

#: Activation names (``gradjax.nn.activations.ACTIVATIONS`` holds their functions).
ACTIVATION_NAMES = ("linear", "sigmoid", "tanh", "hard_tanh", "erf", "relu", "leaky_relu", "prelu", "elu",
                    "selu", "gelu", "silu", "softplus")
#: Activations with a slope parameter (``NetConfig.leaky_slope``).
SLOPED = ("leaky_relu", "prelu")
# Default slopes: 0.01 for leaky ReLU (Maas et al. 2013); 0.25 initial slope for PReLU
# (He et al. 2015, "Delving Deep into Rectifiers", arXiv:1502.01852, Sec. 2.1).
DEFAULT_LEAKY_SLOPE = 0.01
DEFAULT_PRELU_SLOPE = 0.25

#: Weight-initialization names (``gradjax.nn.init.INITIALIZERS`` holds their functions).
INIT_NAMES = ("gaussian", "orthogonal", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform",
              "lecun_normal")
#: Schemes whose scale is set by ``sigma_w2``; the others fix the variance themselves.
SCALED = ("gaussian", "orthogonal")


def default_slope(activation: str) -> float:
    """The registry default of the slope of a sloped activation (leaky_relu 0.01, prelu 0.25)."""
    return DEFAULT_LEAKY_SLOPE if activation == "leaky_relu" else DEFAULT_PRELU_SLOPE


def weight_sigma_w2(init: str, fan_in: int, fan_out: int, sigma_w2: float = 1.0) -> float:
    """Effective σ_w² = fan_in · Var(W_ij) of a scheme (what mean-field theory calls σ_w²).

    ``sigma_w2`` is returned as given for the scaled schemes (it may be a traced array there).

    References: Glorot & Bengio 2010; He et al. 2015, arXiv:1502.01852; LeCun et al. 1998.
    """
    check_choice("init", init, INIT_NAMES)
    if init in SCALED:
        return sigma_w2
    if init in ("xavier_normal", "xavier_uniform"):
        return 2.0 * fan_in / (fan_in + fan_out)
    if init in ("he_normal", "he_uniform"):
        return 2.0
    return 1.0  # lecun_normal
