"""Named experiments (theory beside measurement), sweeps over grid × seeds, and their figures.

The plug-in protocol is documented in :mod:`gradjax.experiments.registry`; the list of experiments
(and ``get``/``names``) is :mod:`gradjax.experiments.catalog`, imported on demand.
"""

from gradjax.experiments.registry import SIZES as SIZES
from gradjax.experiments.registry import AgreementRow as AgreementRow
from gradjax.experiments.registry import Cell as Cell
from gradjax.experiments.registry import Experiment as Experiment
from gradjax.experiments.registry import Grid as Grid
from gradjax.experiments.sweep import per_device as per_device
from gradjax.experiments.sweep import run_sweep as run_sweep
