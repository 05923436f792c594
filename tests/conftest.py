"""Strict test settings: rank promotion raises, float64 available, a `key` fixture."""

import jax
import pytest

jax.config.update("jax_enable_x64", True)  # float64 configs are tested; float32 paths cast explicitly
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)


def rtol_for(dtype) -> float:
    """Relative tolerance keyed by dtype (float32 ~ 5e-3 statistical / 1e-4 exact paths; float64 1e-8)."""
    return 1e-8 if str(dtype) == "float64" else 5e-3
