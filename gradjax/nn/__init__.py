"""Networks as stacks of blocks: activations, initializers, blocks, stacks, ensembles."""

from gradjax.nn.activations import ACTIVATIONS as ACTIVATIONS
from gradjax.nn.activations import get_activation as get_activation
from gradjax.nn.activations import resolve_activation as resolve_activation
from gradjax.nn.blocks import Block as Block
from gradjax.nn.blocks import block_apply as block_apply
from gradjax.nn.blocks import block_taps as block_taps
from gradjax.nn.blocks import init_block as init_block
from gradjax.nn.ensemble import ensemble_forward as ensemble_forward
from gradjax.nn.ensemble import ensemble_params as ensemble_params
from gradjax.nn.ensemble import make_ensemble as make_ensemble
from gradjax.nn.ensemble import seed_keys as seed_keys
from gradjax.nn.init import INITIALIZERS as INITIALIZERS
from gradjax.nn.init import get_initializer as get_initializer
from gradjax.nn.init import weight_sigma_w2 as weight_sigma_w2
from gradjax.nn.stack import Network as Network
from gradjax.nn.stack import Taps as Taps
from gradjax.nn.stack import forward as forward
from gradjax.nn.stack import init_params as init_params
from gradjax.nn.stack import input_shape as input_shape
from gradjax.nn.stack import params_of as params_of
from gradjax.nn.stack import readout as readout
from gradjax.nn.stack import step as step
from gradjax.nn.stack import unroll as unroll
