"""`gradjax inspect FILE.py:FACTORY`: a user's model file measured from the command line."""

import numpy as np
import xarray as xr

from gradjax.cli import EXIT_USAGE, main

MODEL = '''
import jax.numpy as jnp
from flax import nnx


class Tiny(nnx.Module):
    def __init__(self, rngs):
        self.first = nnx.Linear(4, 8, rngs=rngs)
        self.second = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x):
        return self.second(jnp.tanh(self.first(x)))


def make_model(rngs):
    return Tiny(rngs)
'''


def test_inspect_prints_and_stores_labelled_layers(tmp_path, capsys):
    f = tmp_path / "my_model.py"
    f.write_text(MODEL)
    out = tmp_path / "r.nc"
    assert main(["inspect", f"{f}:make_model", "--inputs", "16,4", "--seeds", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 layers" in text and "\nfirst " in text and "\nsecond " in text
    ds = xr.load_dataset(out)
    assert list(ds["layer"].values) == ["first", "second"]
    assert ds["log10_grad_hidden"].shape == (3, 2) and np.all(np.isfinite(ds["log10_grad_hidden"].values))


def test_inspect_refuses_bad_targets_and_inputs(tmp_path, capsys):
    f = tmp_path / "my_model.py"
    f.write_text(MODEL)
    assert main(["inspect", f"{f}:make_modl", "--inputs", "16,4"]) == EXIT_USAGE
    assert "no callable 'make_modl'" in capsys.readouterr().err
    assert main(["inspect", f"{f}:make_model", "--inputs", "16,5"]) == EXIT_USAGE
    assert "do not run through" in capsys.readouterr().err
    assert main(["inspect", f"{f}", "--inputs", "16,4"]) == EXIT_USAGE
