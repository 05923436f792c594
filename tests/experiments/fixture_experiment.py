"""A small real experiment that tests the sweep machinery: signal propagation in a deep MLP.

Measured: q_l = mean over batch and units of h_l² (the pre-activation length after layer l) across
seeds, in a plain MLP h_l = W_l φ(h_{l-1}) + b_l with W_l ~ N(0, σ_w²/N), b_l ~ N(0, σ_b²) and unit
Gaussian inputs h_0 (so q_0 = 1). It is written here with σ_w², σ_b² as traced arguments (one XLA
compilation per activation and depth, not per cell) to keep the test folder fast.
Theory: the mean-field length map q_l = σ_w² E[φ(√q_{l-1} z)²] + σ_b², evaluated by numpy
Gauss–Hermite quadrature — an independent computation for the tests (Poole et al. 2016,
"Exponential expressivity in deep neural networks through transient chaos", arXiv:1606.05340, eq. 3).

Test hooks (environment variables, read at call time):
  GRADJAX_TEST_COUNTER: a file to which every ``measure`` call appends its cell id (counts calls).
  GRADJAX_TEST_KILL_AT: a cell id; ``measure`` SIGKILLs its own process when it reaches that cell.
  GRADJAX_TEST_FAIL_AT: a cell id whose ``measure`` raises RuntimeError.
"""

from __future__ import annotations

import functools
import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np

from gradjax.experiments import figures
from gradjax.experiments.catalog import register
from gradjax.experiments.registry import AgreementRow, Experiment, Grid
from gradjax.experiments.sweep import per_device

NAME = "test-signal"
_GH_NODES = 80  # Gauss–Hermite nodes: E[tanh(√q z)²] for q ≤ 10 converges far below the test tolerances
_PHI = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def _q_map_numpy(activation: str, sigma_w2: float, sigma_b2: float, q: float) -> float:
    z, w = np.polynomial.hermite_e.hermegauss(_GH_NODES)
    w = w / w.sum()  # probabilists' weights normalized: E over N(0, 1)
    u = np.sqrt(q) * z
    phi = np.tanh(u) if activation == "tanh" else np.maximum(u, 0.0)
    return sigma_w2 * float(np.sum(w * phi**2)) + sigma_b2


def theory(cell):
    q, out = 1.0, []
    for _ in range(cell["depth"]):
        q = _q_map_numpy(cell["activation"], cell["sigma_w2"], cell["sigma_b2"], q)
        out.append(q)
    return {"q_theory": (("layer",), np.asarray(out))}


@functools.partial(jax.jit, static_argnames=("activation", "depth", "width", "batch", "dtype"))
def q_profile(keys, sigma_w2, sigma_b2, *, activation, depth, width, batch, dtype):
    """(S, L) mean squared pre-activation per layer, one network and input batch per key."""
    phi = _PHI[activation]

    def one(key):
        kx, kw, kb = jax.random.split(key, 3)
        h = jax.random.normal(kx, (batch, width), dtype)
        w = jax.random.normal(kw, (depth, width, width), dtype) * jnp.sqrt(sigma_w2 / width).astype(dtype)
        b = jax.random.normal(kb, (depth, width), dtype) * jnp.sqrt(sigma_b2).astype(dtype)

        def layer(h, wb):
            h = phi(h) @ wb[0] + wb[1][None, :]
            return h, jnp.mean(h**2)

        return jax.lax.scan(layer, h, (w, b))[1]

    return jax.vmap(one)(keys)


def measure(cell, keys):
    counter = os.environ.get("GRADJAX_TEST_COUNTER")
    if counter:
        with open(counter, "a") as f:
            f.write(cell.id + "\n")
    if os.environ.get("GRADJAX_TEST_KILL_AT") == cell.id:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("GRADJAX_TEST_FAIL_AT") == cell.id:
        raise RuntimeError(f"requested failure at {cell.id}")
    q = per_device(q_profile, keys, cell["sigma_w2"], cell["sigma_b2"], activation=cell["activation"],
                   depth=cell["depth"], width=cell["width"], batch=cell["batch"], dtype=cell.dtype)
    return {"q": (("seed", "layer"), q, {"units": "linear"})}


def plot(results, out_dir):
    fig = figures.profile_figure(results, "q", theory="q_theory", panel="activation", hue="sigma_w2",
                                 fixed={"depth": results.depth.values.max()}, ylabel="q_l")
    return [figures.save(fig, out_dir, "q_profile")]


def agreement(results):
    rows = []
    deepest = results.sel(depth=results.depth.values.max())
    for act in deepest.activation.values:
        for sw2 in deepest.sigma_w2.values:
            sub = deepest.sel(activation=act, sigma_w2=sw2)
            rows.append(AgreementRow(quantity="q_L", where=f"{act}, σ_w²={sw2}", theory=float(sub.q_theory[-1]),
                                     measured=float(np.median(sub.q[:, -1])), tolerance=0.5,
                                     note=f"width {json.loads(results.attrs['params'])['width']}"))
    return rows


def _grid(width, depths, seeds):
    return Grid(axes={"activation": ("tanh", "relu"), "sigma_w2": (1.0, 2.0), "depth": depths}, seeds=seeds,
                params={"width": width, "batch": 8, "sigma_b2": 0.05})


EXPERIMENT = Experiment(
    name=NAME,
    description="Pre-activation length q_l per layer (test fixture): mean-field map vs measurement.",
    sizes={"tiny": _grid(8, (3,), 3), "quick": _grid(16, (2, 4), 4), "full": _grid(64, (8, 16), 8)},
    theory=theory, measure=measure, plot=plot, agreement=agreement,
    bytes_per_seed=lambda cell: 4 * cell["width"] * (cell["width"] + cell["batch"]) * cell["depth"],
)


def ensure_registered(**changes):
    """Registers the fixture (with optional field ``changes``, e.g. ``headline=True``) and returns it."""
    import dataclasses

    return register(dataclasses.replace(EXPERIMENT, **changes) if changes else EXPERIMENT, replace=True)
