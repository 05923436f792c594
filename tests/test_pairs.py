"""Theory and measurement as true pairs: a name in both ``gradjax.theory`` and ``gradjax.empirical``
is the same quantity, in the same units, with the same argument names and defaults (the measured one
with a leading seed axis); q and c are compared on one config here, the gradient pair in
tests/test_gradient_pair.py and the token similarity in tests/theory/test_attention.py.

The predicted values are mean-field (infinite width); the measured ones are finite networks, so every
comparison states width, seeds and tolerance. The README's table of pairs lists the same names.
"""

import inspect

import jax.numpy as jnp
import numpy as np
import pytest

import gradjax.empirical as E
import gradjax.theory as T
from gradjax import NetConfig

#: The pairs, with the per-network form of each measurement (params and inputs in, no seeds).
PAIRS = {"q_profile": "q_profile_of", "c_profile": "c_profile_of", "gradient_profile": "grad_norms",
         "token_similarity": "token_similarity_of"}


def _public_functions(module):
    """Public callables that are not classes or modules (jitted functions included)."""
    return {n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))
            and not inspect.isclass(getattr(module, n)) and not inspect.ismodule(getattr(module, n))}


def test_the_shared_names_are_exactly_the_pairs():
    assert _public_functions(T) & _public_functions(E) == set(PAIRS)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_a_pair_shares_its_leading_argument_and_the_defaults_of_shared_arguments(name):
    th = inspect.signature(getattr(T, name)).parameters
    em = inspect.signature(getattr(E, name)).parameters
    assert list(th)[0] == list(em)[0] == "cfg"
    assert list(em)[1] == "seeds"  # the measurement's leading seed axis
    for arg in set(th) & set(em) - {"cfg"}:
        assert th[arg].default == em[arg].default, (name, arg)
    # the measurement's per-network form takes the network and its parameters, then inputs; no seeds
    per_network = list(inspect.signature(getattr(E, PAIRS[name])).parameters)
    assert per_network[:2] == ["cfg", "params"] and "seeds" not in per_network


def test_q_profile_pair():
    # width 512, 4 seeds × 64 examples: the seed mean of q_l within 4 % of the mean-field q_l
    cfg = NetConfig(depth=8, width=512, activation="tanh", sigma_w2=1.8, sigma_b2=0.1, dtype="float64")
    measured = np.asarray(jnp.mean(E.q_profile(cfg, seeds=4), axis=0))
    assert E.q_profile(cfg, seeds=2).shape == (2, cfg.depth)
    np.testing.assert_allclose(measured, np.asarray(T.q_profile(cfg)), rtol=0.04)


def test_c_profile_pair():
    # width 512, 4 seeds × 64 pairs: the seed mean of c_l within 0.03 of the mean-field c_l, both from
    # the default c0 (the same default on both sides)
    cfg = NetConfig(depth=8, width=512, activation="tanh", sigma_w2=2.5, sigma_b2=0.05, dtype="float64")
    measured = np.asarray(jnp.mean(E.c_profile(cfg, seeds=4), axis=0))
    np.testing.assert_allclose(measured, np.asarray(T.c_profile(cfg)), atol=0.03)
