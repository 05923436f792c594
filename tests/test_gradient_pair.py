"""``theory.gradient_profile`` and ``empirical.gradient_profile``: one quantity, compared at the defaults.

The pair shares the loss (projection ⟨y, t⟩/B), the batch and the units (log10 ‖δ_l‖/‖δ_L‖ via
``GradNorms.relative()``), so a comparison needs no argument beyond the seed count.
"""

import inspect

import numpy as np

import gradjax.empirical as E
import gradjax.theory as T
from gradjax import NetConfig


def _defaults(fn):
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}


def test_the_pair_has_the_same_loss_and_batch_defaults():
    th, em = _defaults(T.gradient_profile), _defaults(E.gradient_profile)
    assert th["loss"] == em["loss"] == "projection"
    assert th["batch"] == em["batch"]
    assert _defaults(T.gradient_spread)["batch"] == em["batch"]
