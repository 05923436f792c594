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
from gradjax.config import ARCHS, NORMS, NORM_POSITIONS
from gradjax.nn.init import INITIALIZERS

IID = ("gaussian", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "lecun_normal")


def _modelled(name, cfg):
    """(field, allowed values) the function refuses ``cfg`` for, or None where it models ``cfg``."""
    if name in ("jacobian_spectrum", "jacobian_moments"):  # free products of independent D_l W_l, no norm
        for field, ok in (("arch", ("mlp",)), ("norm", ("none",))):
            if getattr(cfg, field) not in ok:
                return field, ok
    if name in ("gradient_spread", "gradient_profile_finite_width"):  # independent i.i.d. blocks (Hanin)
        for field, ok in (("arch", ("mlp", "resmlp")), ("init", IID)):
            if getattr(cfg, field) not in ok:
                return field, ok
    if name == "c_profile" and cfg.norm == "batchnorm":
        return "norm", ("none", "layernorm", "rmsnorm")
    return None


CALLS = {
    "q_profile": lambda c: T.q_profile(c),
    "c_profile": lambda c: T.c_profile(c),
    "gradient_profile": lambda c: T.gradient_profile(c),
    "gradient_profile_finite_width": lambda c: T.gradient_profile(c, finite_width=True),
    "gradient_spread": lambda c: T.gradient_spread(c),
    "jacobian_moments": lambda c: T.jacobian_moments(c, 1.0),
    "jacobian_spectrum": lambda c: T.jacobian_spectrum(c, points=64),
}


def _structures(inits=tuple(INITIALIZERS)):
    for arch, norm, pos, init in itertools.product(ARCHS, NORMS, NORM_POSITIONS, inits):
        if arch == "rnn" and norm == "batchnorm":
            continue  # NetConfig itself refuses it
        if norm == "none" and pos == "post":
            continue  # the same network as pre
        yield NetConfig(depth=2, width=4, arch=arch, norm=norm, norm_position=pos, init=init, activation="tanh")


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_structure_outside_the_model_is_refused(name):
    refused = 0
    for cfg in _structures():
        why = _modelled(name, cfg)
        if why is None:
            continue
        field, ok = why
        with pytest.raises(ValueError, match=rf"models {field} in {list(ok)!r}, got {field}={getattr(cfg, field)!r}".replace("[", r"\[").replace("]", r"\]")):
            CALLS[name](cfg)
        refused += 1
    assert refused > 0 or name in ("q_profile", "gradient_profile")


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_modelled_structure_still_answers(name):
    # Each (arch, norm, position) once, the init cycling through one of each kind (Gaussian i.i.d.,
    # uniform i.i.d., orthogonal): the init enters no code path but σ_w² and the refusals above.
    # Not jitted: one compilation per structure would cost ~1 s each, op by op at depth 2 is cheaper.
    kinds = ("gaussian", "he_uniform", "orthogonal")
    seen = set()
    for i, cfg in enumerate(c for c in _structures() if c.init == "gaussian"):
        cfg = cfg.with_(init=kinds[i % 3])
        if _modelled(name, cfg) is not None:
            cfg = cfg.with_(init="gaussian")
            if _modelled(name, cfg) is not None:
                continue
        seen.add((cfg.arch, cfg.norm, cfg.norm_position))
        with jax.disable_jit(name != "jacobian_spectrum"):
            out = CALLS[name](cfg)
        leaves = [np.asarray(x) for x in (out if isinstance(out, tuple) else (out,))]
        assert all(np.all(np.isfinite(x)) for x in leaves), (name, cfg)
    assert len(seen) == {"jacobian_spectrum": 1, "jacobian_moments": 1, "c_profile": 15, "gradient_spread": 14,
                         "gradient_profile_finite_width": 14}.get(name, 19), seen


def test_refusal_names_the_reason():
    with pytest.raises(ValueError, match=r"arch='resmlp'.*Tarnowski et al. 2019"):
        T.jacobian_spectrum(NetConfig(depth=3, width=4, arch="resmlp"))
    with pytest.raises(ValueError, match=r"arch='rnn'.*reuses one W"):
        T.jacobian_spectrum(NetConfig(depth=3, width=4, arch="rnn"))
    with pytest.raises(ValueError, match=r"norm='layernorm'.*projection"):
        T.jacobian_spectrum(NetConfig(depth=3, width=4, norm="layernorm"))
    with pytest.raises(ValueError, match=r"init='orthogonal'.*does not fluctuate"):
        T.gradient_spread(NetConfig(depth=3, width=4, init="orthogonal"))
    with pytest.raises(ValueError, match=r"arch='rnn'.*not independent"):
        T.gradient_profile(NetConfig(depth=3, width=4, arch="rnn"), finite_width=True)
    with pytest.raises(ValueError, match=r"norm='batchnorm'.*couples the examples"):
        T.c_profile(NetConfig(depth=3, width=4, norm="batchnorm"))
