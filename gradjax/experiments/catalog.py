"""The named experiments of gradjax: one list, in the order ``gradjax list`` shows them.

This is the one module that imports the experiment modules; each of them builds its
``EXPERIMENT`` from the data classes of :mod:`gradjax.experiments.registry` and registers nothing.
:func:`register` adds an experiment defined elsewhere (a test fixture, a user's own) at run time.
"""

from __future__ import annotations

import difflib

from gradjax.experiments import batchnorm
from gradjax.experiments import clipping
from gradjax.experiments import delta_orthogonal
from gradjax.experiments import finite_width
from gradjax.experiments import init_schemes
from gradjax.experiments import jacobian_spectra
from gradjax.experiments import phase_diagram
from gradjax.experiments import rank_collapse
from gradjax.experiments import residual
from gradjax.experiments import saturation
from gradjax.experiments import trainability
from gradjax.experiments import weight_decay
from gradjax.experiments.registry import Experiment

#: Every experiment of the package, in display order.
EXPERIMENTS: tuple[Experiment, ...] = (
    saturation.EXPERIMENT,
    init_schemes.EXPERIMENT,
    phase_diagram.EXPERIMENT,
    trainability.EXPERIMENT,
    jacobian_spectra.EXPERIMENT,
    batchnorm.EXPERIMENT,
    residual.EXPERIMENT,
    clipping.EXPERIMENT,
    weight_decay.EXPERIMENT,
    finite_width.EXPERIMENT,
    rank_collapse.EXPERIMENT,
    delta_orthogonal.EXPERIMENT,
)

_added: dict[str, Experiment] = {}


def _all() -> dict[str, Experiment]:
    return {**{e.name: e for e in EXPERIMENTS}, **_added}


def names() -> tuple[str, ...]:
    """The experiments' names: the package's in display order, then those added by :func:`register`."""
    return tuple(_all())


def get(name: str) -> Experiment:
    """The experiment called ``name``.

    Raises:
      ValueError: unknown name; the message lists the names and the closest one.
    """
    known = _all()
    if isinstance(name, str) and name in known:
        return known[name]
    options = list(known)
    close = difflib.get_close_matches(str(name), options, n=1) if options else []
    if not close and isinstance(name, str) and name.replace("_", "-") in known:
        close = [name.replace("_", "-")]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown experiment {name!r}; choose one of: {', '.join(options)}{hint}")


def register(experiment: Experiment, *, replace: bool = False) -> Experiment:
    """Adds an experiment defined outside the package under its name and returns it.

    Raises:
      TypeError: not an :class:`Experiment`.
      ValueError: the name is taken (unless ``replace=True``; the package's own cannot be replaced).
    """
    if not isinstance(experiment, Experiment):
        raise TypeError(f"register takes an Experiment, got {type(experiment).__name__}")
    own = {e.name for e in EXPERIMENTS}
    if experiment.name in own or (experiment.name in _added and not replace):
        raise ValueError(f"an experiment named {experiment.name!r} is already registered")
    _added[experiment.name] = experiment
    return experiment


def unregister(name: str) -> None:
    """Removes an experiment added by :func:`register` (a no-op when absent)."""
    _added.pop(name, None)
