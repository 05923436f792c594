"""gradjax: vanishing and exploding gradients, predicted by mean-field theory and measured in JAX."""

from gradjax.config import NetConfig as NetConfig
from gradjax.nn import Network as Network
from gradjax.nn import make_ensemble as make_ensemble

__version__ = "0.1.0"
