"""Named experiments: the plug-in protocol every experiment of gradjax follows.

An experiment is a grid of cells × seeds. For every cell the sweep (``gradjax.experiments.sweep``)
computes the theory prediction once and the measurement across seeds (chunked to fit memory and
sharded over all local devices), and stores one netCDF file per cell (``gradjax.io``). The figure
and the agreement table are drawn later from the stored files only.

How to add an experiment
========================
1. Create ``gradjax/experiments/<module>.py`` (module named after the experiment with ``_`` for
   ``-``: ``phase-diagram`` → ``phase_diagram.py``) that builds one :class:`Experiment` as
   ``EXPERIMENT`` (it imports only the data classes of this module; nothing registers at import)::

       from gradjax.experiments import figures
       from gradjax.experiments.registry import AgreementRow, Experiment, Grid
       from gradjax.experiments.sweep import per_device

       def theory(cell):                     # seed-free prediction: computed once per cell
           cfg = NetConfig(depth=cell["depth"], width=cell["width"], activation=cell["activation"],
                           dtype=cell.dtype)
           return {"q_theory": (("layer",), gradjax.theory.q_profile(cfg, q0=1.0))}

       def _q(keys, cfg):                    # module level: seeds first, static config after
           return gradjax.empirical.q_profile(cfg, seeds=keys)                    # (S, L)

       def measure(cell, keys):              # keys: (S,) typed PRNG keys, one per seed
           cfg = ...                         # the same config
           return {"q": (("seed", "layer"), per_device(_q, keys, cfg=cfg))}

       def plot(results, out_dir):           # results: xarray.Dataset of every cell (see below)
           fig = ...                         # use gradjax.experiments.figures helpers
           return [figures.save(fig, out_dir, "signal")]

       def agreement(results):
           return [AgreementRow(quantity="q_L", where="tanh, L=50", theory=..., measured=...,
                                tolerance=0.05)]

       EXPERIMENT = Experiment(
           name="signal-propagation",
           description="Pre-activation length q_l per layer: mean-field recursion vs measurement.",
           sizes={
               "tiny":  Grid(axes={"activation": ("tanh",), "depth": (4,)}, seeds=2,
                             params={"width": 16}),
               "quick": Grid(axes={"activation": ("tanh", "relu"), "depth": (10, 50)}, seeds=16,
                             params={"width": 128}),
               "full":  Grid(axes={"activation": ("tanh", "relu"), "depth": (10, 50, 200)}, seeds=128,
                             params={"width": 1024}),
           },
           theory=theory, measure=measure, plot=plot, agreement=agreement, headline=False,
       )

2. Add ``<module>.EXPERIMENT`` to the list in :mod:`gradjax.experiments.catalog` (the one place
   that imports the experiment modules, in the order ``gradjax list`` shows them).
3. ``gradjax run <name> --tiny`` must finish in seconds (CI runs every experiment at ``tiny``
   through ``tests/experiments/test_every_experiment.py``), ``--quick`` in < 2 min on a 2-core
   CPU, ``full`` (the default size) is meant for one GPU.

The contract, precisely
=======================
* **Sizes.** ``sizes`` maps each of ``"tiny"``, ``"quick"``, ``"full"`` to a :class:`Grid`:
  ``axes`` (an ordered mapping name → tuple of values; the cells are their cartesian product, the
  last axis varying fastest) *or* ``cells`` (an explicit tuple of coordinate mappings, for grids
  that are not products, e.g. an init scheme with its own σ_w²); ``seeds`` (the default seed count,
  overridden by ``--seeds``); ``params`` (settings shared by every cell of that size: width, batch,
  steps, ...). Coordinate values are ``int``, ``float`` or ``str`` (no ``bool``: use a str);
  they become the dimensions of the merged results (``results.sel(activation="tanh", depth=50)``).
* **Cells.** ``theory`` and ``measure`` receive a :class:`Cell`: ``cell["depth"]`` looks the name
  up in the grid coordinates, then in the size's ``params``; ``cell.dtype`` is ``"float32"`` or
  ``"float64"`` (``--dtype``; pass it on to ``NetConfig(dtype=...)``); ``cell.size`` is the size
  name; ``cell.coords`` / ``cell.params`` are the two mappings.
* **theory(cell) → variables** (optional, ``None`` if the experiment has no theory): seed-free,
  called once per cell. **measure(cell, keys) → variables**: ``keys`` is a typed key array (S,)
  — seed k of the run is ``jax.random.key(k)``, so member k equals the network
  ``gradjax.nn.init_params(cfg, jax.random.key(k))`` — and every variable it returns has ``"seed"``
  as its FIRST dimension, of length S.
* **Variables** are a mapping name → ``(dims, array)`` or ``(dims, array, attrs)`` (xarray's own
  tuple form; arrays may be jax or numpy) or an ``xarray.DataArray`` (to attach coordinates).
  Dimension names are lowercase words; use ``"layer"`` for the per-layer axis (coordinate 1..L is
  added automatically when the variable gives none: entry ``l-1`` is block ``l``), ``"step"`` for
  training steps, ``"seed"`` for seeds (coordinate = the seed integers, added by the sweep). Any
  other dimension whose length can differ between cells needs explicit coordinates (return a
  DataArray), so that cells merge by label. Name measured quantities by what they are
  (``grad_norm``) and their predictions with a ``_theory`` suffix (``grad_norm_theory``); say
  ``attrs={"units": "log10"}`` for log10 magnitudes. A variable name must not be reused between
  ``theory`` and ``measure``.
* **Purity (what makes chunking, sharding and resume exact).** Seed k's values may depend only on
  ``keys[k]`` and the cell: derive every random draw of a member (weights, inputs, data order)
  from its own key inside a ``jax.vmap`` over ``keys`` — never draw one batch for all seeds from
  ``keys[0]`` — and keep the seed axis independent (no reductions across seeds inside
  ``measure``: medians and quantiles belong to ``plot``/``agreement``). Then a run split into any
  chunks, sharded over any number of devices, or interrupted and resumed gives the same numbers.
  The sweep hands ``measure`` its ``keys`` already sharded over the local devices (a 1-D mesh
  ``("seed",)``). A jitted ``vmap`` over ``keys`` follows that sharding by itself; anything else —
  in particular calls into ``gradjax.empirical``, which loops over seed groups internally — goes
  through ``gradjax.experiments.sweep.per_device(fn, keys, *args, **static)`` (a cached
  ``jax.shard_map``: each device runs ``fn`` on its own seeds; ``fn`` a module-level function
  taking the keys first, ``static`` hashable, e.g. the ``NetConfig``). ``gradjax.train.train``
  is the exception: it converts its history to host arrays and cannot run inside ``shard_map``, so
  call it directly with ``keys`` (it runs replicated; results are the same, only not split). ``theory`` and
  ``measure`` write no files, print nothing and change no global JAX configuration (reading
  packaged data such as ``gradjax.train.load_digits()`` is fine).
* **Cost.** Every distinct ``NetConfig`` (it is a static argument) compiles anew — about 1–5 s on a
  CPU — so keep the tiny grid to a handful of configurations (CI runs it) and let cells that
  differ only in a traced number share a program where the engine allows. Each cell is one file
  (about 0.1 s to write and to read back), so keep a size to at most a few hundred cells: an axis
  that is cheap and vmappable (the σ_w² row of a phase diagram, a grid of λ for a density) belongs
  inside a cell as an array dimension with coordinates, not in the grid.
* **Memory.** Optionally ``bytes_per_seed(cell) -> int``, a rough peak-memory estimate for one
  seed; the sweep then chunks the seed axis to fit the device's free memory. Without it, all seeds
  go in one call, and a call that runs out of device memory is retried with half the chunk.
* **plot(results, out_dir) → list of paths** draws the merged results of the experiment
  (``gradjax.io.load_results``: an ``xarray.Dataset`` with one dimension per grid axis, in grid
  order, plus the variables' own dimensions; cells absent from a non-product grid or not finished
  are NaN; ``json.loads(results.attrs["params"])`` is the size's ``params``) with ``gradjax.experiments.figures`` (theory as lines,
  measurement as median with a 10–90 % band across seeds) and saves the figures into ``out_dir``
  via ``figures.save``. It computes nothing with JAX.
* **agreement(results) → list of** :class:`AgreementRow` (optional): one row per headline
  comparison of theory and measurement (e.g. fitted slope of log10‖δ_l‖ vs ½·log10 χ₁), which the
  report lists in its table.
* **headline=True** puts the quick size into ``gradjax demo``.

Errors: ``catalog.get`` of an unknown name raises ``ValueError`` listing the experiments' names and
the closest one; :class:`Experiment` and :class:`Grid` validate themselves on construction.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gradjax._validate import check_int

SIZES = ("tiny", "quick", "full")  # CI seconds / 2-core CPU minutes / one GPU
DTYPES = ("float32", "float64")
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")  # kebab-case: the CLI name
_DIM = re.compile(r"^[a-z][a-z0-9_]*$")  # dimension / coordinate names: valid netCDF and Python names
_RESERVED = ("seed",)  # set by the sweep, never a grid axis
_MAX_ID = 180  # longest cell id: leaves room for ".failed.json", temporary-file suffixes and ".corrupt"


def _check_coord_value(axis: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, numbers.Real, str)):
        raise TypeError(
            f"grid coordinate {axis!r} values must be int, float or str (no bool: use a str), "
            f"got {value!r} of type {type(value).__name__}"
        )
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and not math.isfinite(value):
        raise ValueError(f"grid coordinate {axis!r} values must be finite, got {value!r}")


def _uniform(axis: str, values) -> tuple:
    """One type per coordinate (it becomes one netCDF variable): ints promoted to float if any float."""
    values = tuple(values)
    kinds = {"str" if isinstance(v, str) else "int" if isinstance(v, numbers.Integral) else "float" for v in values}
    if "str" in kinds and len(kinds) > 1:
        raise TypeError(f"grid coordinate {axis!r} mixes strings and numbers: {values!r}")
    if kinds == {"int"}:
        return tuple(int(v) for v in values)
    if kinds <= {"int", "float"}:
        return tuple(float(v) for v in values)
    return values


def _check_axis_name(axis: str) -> None:
    if not isinstance(axis, str) or not _DIM.match(axis):
        raise ValueError(f"grid axis names must be lowercase identifiers like 'sigma_w2', got {axis!r}")
    if axis in _RESERVED:
        raise ValueError(f"grid axis name {axis!r} is reserved (the sweep sets it); reserved: {list(_RESERVED)}")


@dataclasses.dataclass(frozen=True)
class Grid:
    """The cells of one size of an experiment, its default seed count and shared settings.

    Attributes:
      axes: ordered mapping axis name → tuple of values; cells are the cartesian product (last axis
        fastest). Give either ``axes`` or ``cells``.
      cells: explicit tuple of coordinate mappings (all with the same keys), for non-product grids.
      seeds: default number of seeds S (seed k uses ``jax.random.key(k)``), integer ≥ 1.
      params: settings shared by every cell of this size (e.g. ``{"width": 128, "batch": 64}``).
    """

    axes: Mapping[str, Sequence] = dataclasses.field(default_factory=dict)
    cells: Sequence[Mapping[str, Any]] | None = None
    seeds: int = 8
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 — frozen dataclass
        check_int("seeds", self.seeds)
        if (self.cells is None) == (not self.axes):
            raise ValueError("Grid needs exactly one of axes= (a cartesian product) or cells= (an explicit list)")
        if self.cells is None:
            axes = {}
            for axis, values in dict(self.axes).items():
                _check_axis_name(axis)
                values = tuple(values) if not isinstance(values, str) else (values,)
                if not values:
                    raise ValueError(f"grid axis {axis!r} has no values")
                for v in values:
                    _check_coord_value(axis, v)
                values = _uniform(axis, values)
                if len(set(values)) != len(values):
                    raise ValueError(f"grid axis {axis!r} repeats a value: {values!r}")
                axes[axis] = values
            set_("axes", axes)
        else:
            cells = tuple(dict(c) for c in self.cells)
            if not cells:
                raise ValueError("Grid cells= must not be empty")
            keys = tuple(cells[0])
            for c in cells:
                if tuple(c) != keys:
                    raise ValueError(f"every cell of a Grid must have the same coordinates {list(keys)}, got {list(c)}")
                for axis, v in c.items():
                    _check_axis_name(axis)
                    _check_coord_value(axis, v)
            columns = {k: _uniform(k, [c[k] for c in cells]) for k in keys}
            cells = tuple({k: columns[k][i] for k in keys} for i in range(len(cells)))
            if len({tuple(c.items()) for c in cells}) != len(cells):
                raise ValueError("Grid cells= repeats a cell")
            set_("cells", cells)
            set_("axes", {})
        params = dict(self.params)
        clash = sorted(set(params) & set(self.coord_names))
        if clash:
            raise ValueError(f"params {clash} are also grid coordinates; a name is one or the other")
        set_("params", params)

    @property
    def coord_names(self) -> tuple[str, ...]:
        """Names of the grid coordinates, in order."""
        return tuple(self.cells[0]) if self.cells is not None else tuple(self.axes)

    def points(self) -> tuple[dict, ...]:
        """Every cell's coordinates, in grid order."""
        if self.cells is not None:
            return tuple(dict(c) for c in self.cells)
        names = tuple(self.axes)
        return tuple(dict(zip(names, values)) for values in itertools.product(*self.axes.values()))


@dataclasses.dataclass(frozen=True)
class Cell:
    """One point of an experiment's grid, as ``theory`` and ``measure`` see it.

    ``cell[name]`` looks ``name`` up in ``coords`` then ``params``; ``cell.get(name, default)``
    likewise.
    """

    experiment: str
    size: str
    coords: Mapping[str, Any]
    params: Mapping[str, Any]
    dtype: str = "float32"

    def __getitem__(self, name: str):
        if name in self.coords:
            return self.coords[name]
        if name in self.params:
            return self.params[name]
        raise KeyError(
            f"cell of {self.experiment!r} has no {name!r}; coordinates {list(self.coords)}, params {list(self.params)}"
        )

    def get(self, name: str, default=None):
        try:
            return self[name]
        except KeyError:
            return default

    @property
    def id(self) -> str:
        """File-name-safe identity of the cell from its coordinates, e.g. ``activation=tanh,depth=50``."""
        parts = []
        for k, v in self.coords.items():
            text = repr(float(v)) if isinstance(v, float) else str(v)
            parts.append(f"{k}={re.sub(r'[^A-Za-z0-9.+_-]', '_', text)}")
        text = ",".join(parts) or "cell"
        if len(text) > _MAX_ID:  # file-name length limits (255 bytes): keep a readable head + a hash
            text = text[: _MAX_ID - 17] + "~" + hashlib.sha256(text.encode()).hexdigest()[:16]
        return text


@dataclasses.dataclass(frozen=True)
class AgreementRow:
    """One line of the theory-vs-measurement table.

    Attributes:
      quantity: what is compared, e.g. ``"slope of log10‖δ_l‖ per layer"``.
      where: the cell or setting, e.g. ``"tanh, σ_w²=4, L=50"``.
      theory: predicted value.
      measured: measured value (median across seeds, or a fit to them).
      tolerance: optional bound on ``error``; the report marks rows within it as agreeing.
      metric: ``"relative"`` (|measured − theory| / |theory|) or ``"absolute"``.
      note: free text (e.g. the width and seed count behind ``measured``).
    """

    quantity: str
    where: str
    theory: float
    measured: float
    tolerance: float | None = None
    metric: str = "relative"
    note: str = ""

    def __post_init__(self):
        if self.metric not in ("relative", "absolute"):
            raise ValueError(f"metric must be one of ['relative', 'absolute'], got {self.metric!r}")
        object.__setattr__(self, "theory", float(self.theory))
        object.__setattr__(self, "measured", float(self.measured))

    @property
    def error(self) -> float:
        """|measured − theory|, divided by |theory| when ``metric == "relative"``."""
        diff = abs(self.measured - self.theory)
        if self.metric == "absolute":
            return diff
        return diff / abs(self.theory) if self.theory != 0 else (0.0 if diff == 0 else math.inf)

    @property
    def agrees(self) -> bool | None:
        """``error <= tolerance``, or ``None`` without a tolerance."""
        return None if self.tolerance is None else bool(self.error <= self.tolerance)


Variables = Mapping[str, Any]  # name -> (dims, array[, attrs]) | xarray.DataArray


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A named experiment (see the module docstring for the protocol).

    Attributes:
      name: kebab-case name used on the command line, e.g. ``"phase-diagram"``.
      description: one line shown by ``gradjax list`` (further lines go into the report).
      sizes: ``{"tiny": Grid, "quick": Grid, "full": Grid}``.
      measure: ``measure(cell, keys) -> Variables``, every variable with leading dim ``"seed"``.
      plot: ``plot(results, out_dir) -> list[pathlib.Path]``.
      theory: ``theory(cell) -> Variables`` (seed-free), or ``None``.
      agreement: ``agreement(results) -> list[AgreementRow]``, or ``None``.
      bytes_per_seed: ``bytes_per_seed(cell) -> int`` peak-memory estimate, or ``None``.
      headline: run the quick size in ``gradjax demo``.
    """

    name: str
    description: str
    sizes: Mapping[str, Grid]
    measure: Callable[[Cell, Any], Variables]
    plot: Callable[[Any, Any], Sequence]
    theory: Callable[[Cell], Variables] | None = None
    agreement: Callable[[Any], Sequence[AgreementRow]] | None = None
    bytes_per_seed: Callable[[Cell], int] | None = None
    headline: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"experiment name must be kebab-case like 'phase-diagram', got {self.name!r}")
        if not isinstance(self.description, str) or not self.description.strip():
            raise ValueError(f"experiment {self.name!r} needs a non-empty description")
        sizes = dict(self.sizes)
        if set(sizes) != set(SIZES):
            raise ValueError(f"experiment {self.name!r} sizes must be exactly {list(SIZES)}, got {sorted(sizes)}")
        for size, grid in sizes.items():
            if not isinstance(grid, Grid):
                raise TypeError(f"experiment {self.name!r} size {size!r} must be a Grid, got {type(grid).__name__}")
        object.__setattr__(self, "sizes", {s: sizes[s] for s in SIZES})
        for field in ("measure", "plot"):
            if not callable(getattr(self, field)):
                raise TypeError(f"experiment {self.name!r} {field} must be callable")
        for field in ("theory", "agreement", "bytes_per_seed"):
            if getattr(self, field) is not None and not callable(getattr(self, field)):
                raise TypeError(f"experiment {self.name!r} {field} must be callable or None")

    @property
    def summary(self) -> str:
        """The first line of the description."""
        return self.description.strip().splitlines()[0]

    def cells(self, size: str, *, dtype: str = "float32") -> tuple[Cell, ...]:
        """The cells of one size, in grid order."""
        check_size(size)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
        grid = self.sizes[size]
        cells = tuple(Cell(self.name, size, point, grid.params, dtype) for point in grid.points())
        ids = [c.id for c in cells]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"experiment {self.name!r} size {size!r}: cells share the file name(s) {dup}; "
                             "make the coordinate values differ in more than punctuation")
        return cells


def check_size(size: str) -> None:
    """Raises ``ValueError`` unless ``size`` is one of :data:`SIZES`."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {list(SIZES)}, got {size!r}")
