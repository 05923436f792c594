"""Every theory function that takes a NetConfig refuses the structures it does not model, and answers the rest.

The table below is the audit, written here independently of the library's own lists: for each public
function, the structures it models. Every structure of NetConfig (arch × norm × norm_position × init)
is checked against it: outside, a ValueError naming the field, its value and the modelled values;
inside, a finite answer.
"""

import itertools

import jax

import numpy as np
import pytest

from gradjax import NetConfig
from gradjax import theory as T
from gradjax.config import ARCHS, NORM_POSITIONS, NORMS
from gradjax.nn.init import INITIALIZERS

pytestmark = pytest.mark.quick_codegen  # compile-bound: see tests/conftest.py


IID = ("gaussian", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "lecun_normal")
MEAN_FIELD_ARCHS = ("mlp", "resmlp", "rnn", "cnn")  # one recursion per block; a cnn's is the mlp's
INITS = tuple(INITIALIZERS) + ("delta_orthogonal",)


def _modelled(name, cfg):
    """(field, value) the function refuses ``cfg`` for, or None where it models ``cfg``."""
    rules = []
    if name in ("jacobian_density", "jacobian_moments"):  # free products of independent D_l W_l, no norm
        rules = [("arch", ("mlp", "cnn")), ("norm", ("none",))]
        if cfg.arch == "cnn":
            rules.append(("init", ("delta_orthogonal",)))
    elif name in ("gradient_spread", "gradient_profile_finite_width"):  # independent i.i.d. blocks (Hanin)
        rules = [("arch", ("mlp", "resmlp")), ("norm", ("none",)), ("init", IID)]
    elif name == "c_profile":
        rules = [("norm", ("none", "layernorm", "rmsnorm")), ("arch", MEAN_FIELD_ARCHS)]
    elif name in ("q_profile", "gradient_profile"):  # transformers: the mean field of the token Grams
        rules = [("arch", MEAN_FIELD_ARCHS + ("transformer",))]
    else:
        rules = [("arch", MEAN_FIELD_ARCHS)]
    for field, ok in rules:
        if getattr(cfg, field) not in ok:
            return field, getattr(cfg, field)
    return None


CALLS = {
    "q_profile": lambda c: T.q_profile(c),
    "c_profile": lambda c: T.c_profile(c),
    "gradient_profile": lambda c: T.gradient_profile(c, finite_width=False),
    "gradient_profile_finite_width": lambda c: T.gradient_profile(c, finite_width=True),
    "gradient_spread": lambda c: T.gradient_spread(c, batch=2),
    "jacobian_moments": lambda c: T.jacobian_moments(c, 1.0),
    "jacobian_density": lambda c: T.jacobian_density(c, points=64),
}
_EXTRA = {"cnn": {"spatial": (4,)}, "transformer": {"tokens": 2}}


def _structures():
    """Every structure NetConfig accepts (arch × norm × position × init), at depth 2, width 4, σ_b² = 0.05
    (q* > 0: at q* = 0 an orthogonal tanh stack is the degenerate point-mass case)."""
    for arch, norm, pos, init in itertools.product(ARCHS, NORMS, NORM_POSITIONS, INITS):
        if norm == "none" and pos == "post":
            continue  # the same network as pre
        try:
            yield NetConfig(depth=2, width=4, arch=arch, norm=norm, norm_position=pos, init=init,
                            activation="tanh", sigma_b2=0.05, **_EXTRA.get(arch, {}))
        except ValueError:
            continue  # a structure NetConfig itself refuses (e.g. rnn + batchnorm, cnn + he_normal)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_structure_outside_the_model_is_refused(name):
    refused = 0
    for cfg in _structures():
        why = _modelled(name, cfg)
        if why is None:
            continue
        field, value = why
        with pytest.raises(ValueError) as e:
            CALLS[name](cfg)
        assert f"models {field} in [" in str(e.value) and f"got {field}={value!r}" in str(e.value), (cfg, e.value)
        refused += 1
    # q and gradient profiles model every structure NetConfig accepts (transformers by the token-Gram mean
    # field); every other function refuses some
    assert (refused == 0) if name in ("q_profile", "gradient_profile") else (refused > 0)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_modelled_structure_still_answers(name):
    # Each (arch, norm, position) once, with the first modelled init after cycling through the kinds
    # (Gaussian i.i.d., uniform i.i.d., orthogonal, delta-orthogonal): the init enters no code path but
    # σ_w² and the refusals above. Not jitted: a compilation per structure costs ~1 s; op by op at depth
    # 2 is cheaper.
    groups = {}
    for cfg in _structures():
        groups.setdefault((cfg.arch, cfg.norm, cfg.norm_position), []).append(cfg)
    kinds = ("gaussian", "he_uniform", "orthogonal", "delta_orthogonal")
    answered = 0
    for i, (group, cfgs) in enumerate(sorted(groups.items())):
        cfgs = sorted(cfgs, key=lambda c: (kinds.index(c.init) - i) % 4 if c.init in kinds else 9)
        cfg = next((c for c in cfgs if _modelled(name, c) is None), None)
        if cfg is None:
            continue
        with jax.disable_jit(name != "jacobian_density"):
            out = CALLS[name](cfg)
        leaves = [np.asarray(x) for x in (out if isinstance(out, tuple) else (out,))]
        assert all(np.all(np.isfinite(x)) for x in leaves), (name, cfg)
        answered += 1
    assert answered >= 2


def test_refusal_names_the_reason():
    with pytest.raises(ValueError, match=r"arch='resmlp'.*Tarnowski et al. 2019"):
        T.jacobian_density(NetConfig(depth=3, width=4, arch="resmlp"))
    with pytest.raises(ValueError, match=r"arch='rnn'.*reuses one W"):
        T.jacobian_density(NetConfig(depth=3, width=4, arch="rnn"))
    with pytest.raises(ValueError, match=r"norm='layernorm'.*projection"):
        T.jacobian_density(NetConfig(depth=3, width=4, norm="layernorm"))
    with pytest.raises(ValueError, match=r"init='orthogonal'.*does not fluctuate"):
        T.gradient_spread(NetConfig(depth=3, width=4, init="orthogonal"))
    with pytest.raises(ValueError, match=r"arch=.rnn.*reuses one W"):
        T.gradient_profile(NetConfig(depth=3, width=4, arch="rnn"), finite_width=True)
    with pytest.raises(ValueError, match=r"norm='batchnorm'.*couples the examples"):
        T.c_profile(NetConfig(depth=3, width=4, norm="batchnorm"))
