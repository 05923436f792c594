"""gradjax: vanishing and exploding gradients, predicted by mean-field theory and measured in JAX.

Subpackages, in dependency order: ``nn`` (networks as stacks of blocks), ``theory`` and
``empirical`` (two independent answers under the same names), ``train`` (optax training across
seeds). Named experiments and the command line live in ``gradjax.experiments`` / ``gradjax.cli``
and are imported on demand.
"""

from gradjax import empirical as empirical
from gradjax import nn as nn
from gradjax import theory as theory
from gradjax import train as train
from gradjax.config import NetConfig as NetConfig
from gradjax.nn import Network as Network
from gradjax.nn import make_ensemble as make_ensemble
from gradjax.train import TrainConfig as TrainConfig

__version__ = "0.1.0"
