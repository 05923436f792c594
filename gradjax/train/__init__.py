"""Training under optax: clipping and weight-decay chains, data sets, vmapped multi-seed training."""

from gradjax.train.data import Dataset as Dataset
from gradjax.train.data import adding_problem as adding_problem
from gradjax.train.data import copy_task as copy_task
from gradjax.train.data import load_digits as load_digits
from gradjax.train.data import load_npz as load_npz
from gradjax.train.data import teacher_student as teacher_student
from gradjax.train.optim import TrainConfig as TrainConfig
from gradjax.train.optim import clip_by_layer_norm as clip_by_layer_norm
from gradjax.train.optim import adaptive_clip_by_layer as adaptive_clip_by_layer
from gradjax.train.optim import layer_norms as layer_norms
from gradjax.train.optim import make_clipper as make_clipper
from gradjax.train.optim import make_optimizer as make_optimizer
from gradjax.train.optim import make_schedule as make_schedule
from gradjax.train.optim import map_layers as map_layers
from gradjax.train.optim import penalty as penalty
from gradjax.train.optim import weight_mask as weight_mask
from gradjax.train.loop import History as History
from gradjax.train.loop import minibatch_indices as minibatch_indices
from gradjax.train.loop import train as train
from gradjax.train.monitor import GradientFlowRecord as GradientFlowRecord
from gradjax.train.monitor import gradient_flow_monitor as gradient_flow_monitor
from gradjax.train.monitor import gradient_flow_records as gradient_flow_records
