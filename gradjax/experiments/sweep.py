"""Sweeps: every cell of an experiment's grid × seeds, chunked, sharded, resumable, loss-free.

For each cell assigned to this process the sweep

1. skips it if ``<root>/<size>/<name>/cells/<cell id>.nc`` already holds this very cell (same
   experiment, size, coordinates, params, seeds and dtype: the file's ``fingerprint``);
2. otherwise calls ``experiment.theory(cell)`` once and ``experiment.measure(cell, keys)`` on
   chunks of the seed axis, each chunk sharded over the local devices along a 1-D mesh ``("seed",)``;
3. writes the cell atomically (``gradjax.io.write_cell``: temporary file + rename) with its
   provenance, or, if ``theory``/``measure`` raised, a ``<cell id>.failed.json`` record with the
   error and traceback — and goes on with the next cell.

Hence a run killed at any moment loses at most the cell in flight, and rerunning the same command
computes exactly the missing (or failed) cells. Seed k is ``jax.random.key(k)`` whatever the chunk
size, device count or process, so every way of splitting the work gives the same numbers (the
purity rule of :mod:`gradjax.experiments.registry`).

Files found in the way are never silently used:

* **corrupt** (unreadable netCDF, damaged attributes — e.g. written by a tool that was killed
  without the atomic rename): a ``CorruptResultWarning`` names the file, it is renamed to
  ``<file>.corrupt`` (kept for inspection, ignored by readers) and the cell is recomputed;
* **foreign** (a valid cell file computed with other seeds, dtype or settings, or not a gradjax
  file): the sweep stops before computing anything with ``ForeignResultError`` naming the file;
  pass ``overwrite=True`` (``--overwrite``) to recompute such cells, or choose another ``root``;
* **stale** (cell files whose names are not cells of the current grid, e.g. after the grid was
  edited): a ``StaleResultWarning`` names them; they are left in place (``load_results`` would
  merge them), for the user to move away.

Several hosts (started with ``jax.distributed.initialize()``) split the cells round-robin by
``jax.process_index()`` and write into one shared results folder; each host shards its seeds over
its own local devices. A sweep returns only when every host is done, and a host that raises makes
every other host raise ``HostFailedError`` naming it and its cell, instead of waiting forever
(:mod:`gradjax.experiments.hosts`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import numpy as np
import xarray as xr
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gradjax import io
from gradjax.experiments import hosts, registry
from gradjax.experiments.registry import Cell, Experiment
from gradjax.nn import seed_keys

MEMORY_FRACTION = 0.5  # share of free device memory a chunk may plan for: XLA temporaries and fragmentation need the rest
SEED_AXIS = "seed"  # name of the 1-D device mesh axis and of the results dimension


class CorruptResultWarning(UserWarning):
    """A corrupt cell file was set aside and its cell recomputed."""


class StaleResultWarning(UserWarning):
    """The results folder holds cell files that are not cells of the current grid."""


@dataclasses.dataclass
class SweepReport:
    """What a sweep did on this process.

    Attributes:
      experiment, size: what ran.
      folder: the experiment's results folder.
      assigned: cell ids this process was responsible for.
      computed: cell ids computed and written by this run.
      skipped: cell ids already finished before this run.
      failed: cell id → one-line error, for cells whose computation raised.
      corrupt: paths of corrupt files set aside (renamed to ``*.corrupt``) and recomputed.
      wall_time_s: seconds for the whole sweep on this process.
    """

    experiment: str
    size: str
    folder: Path
    assigned: list = dataclasses.field(default_factory=list)
    computed: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    failed: dict = dataclasses.field(default_factory=dict)
    corrupt: list = dataclasses.field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every assigned cell is finished."""
        return not self.failed


# ---- devices and memory --------------------------------------------------------------------------


def seed_mesh(devices=None) -> Mesh:
    """A 1-D mesh ``("seed",)`` over ``devices`` (default: all local devices)."""
    devices = list(devices) if devices is not None else jax.local_devices()
    if not devices:
        raise ValueError("seed_mesh needs at least one device")
    return Mesh(np.array(devices), (SEED_AXIS,))


def shard_seeds(keys: jax.Array, mesh: Mesh) -> jax.Array:
    """Places ``keys`` (S,) on ``mesh``, split along the seed axis (S must divide evenly)."""
    return jax.device_put(keys, NamedSharding(mesh, PartitionSpec(SEED_AXIS)))


_PER_DEVICE_CACHE: dict = {}  # (fn, static kwargs, mesh, n args) -> jitted shard_map; reused across cells and chunks
_PER_DEVICE_CACHE_SIZE = 64  # entries kept (one per distinct static configuration; oldest dropped first)


def per_device(fn, keys: jax.Array, *args, **static):
    """``fn(keys, *args, **static)`` with every device computing only its own shard of the seeds.

    Inside ``measure``, wrap the seed-parallel computation with it when that computation does not
    follow the keys' sharding by itself — e.g. ``gradjax.empirical`` functions, which loop over seed
    groups with ``lax.map`` and would otherwise run replicated on every device::

        def _grad(keys, cfg, batch):                    # module level: it keys the compile cache
            return gradjax.empirical.gradient_profile(cfg, seeds=keys, batch=batch).hidden

        def measure(cell, keys):
            g = per_device(_grad, keys, cfg=config_of(cell), batch=cell["batch"])   # (S, L)

    It is ``jax.shard_map`` over the keys' 1-D ``("seed",)`` mesh: ``keys`` split along it, ``args``
    (arrays or numbers, traced) replicated, ``static`` (hashable keyword arguments, e.g. a
    ``NetConfig``) fixed; every output leaf must have the seed axis first. On one device, or with
    keys not sharded by the sweep, it is just ``fn(keys, *args, **static)``. Seed k's numbers do not
    depend on the device count as long as ``fn`` treats seeds independently (the purity rule).

    Returns:
      ``fn``'s output, sharded along the seed axis.
    """
    sharding = getattr(keys, "sharding", None)
    if (not isinstance(sharding, NamedSharding) or sharding.mesh.size == 1
            or tuple(sharding.spec) != (SEED_AXIS,)):
        return fn(keys, *args, **static)
    cache_key = (fn, tuple(sorted(static.items())), sharding.mesh, len(args))
    try:
        compiled = _PER_DEVICE_CACHE.get(cache_key)
    except TypeError:  # unhashable static arguments: compile for this call only
        cache_key, compiled = None, None
    if compiled is None:
        def local(k, *a):
            return fn(k, *a, **static)

        specs = (PartitionSpec(SEED_AXIS),) + (PartitionSpec(),) * len(args)
        compiled = jax.jit(jax.shard_map(local, mesh=sharding.mesh, in_specs=specs,
                                         out_specs=PartitionSpec(SEED_AXIS), check_vma=False))
        if cache_key is not None:
            if len(_PER_DEVICE_CACHE) >= _PER_DEVICE_CACHE_SIZE:
                _PER_DEVICE_CACHE.pop(next(iter(_PER_DEVICE_CACHE)))
            _PER_DEVICE_CACHE[cache_key] = compiled
    return compiled(keys, *args)


def free_bytes(device) -> int | None:
    """Free memory of one device in bytes, or None when unknown.

    Accelerators report ``bytes_limit − bytes_in_use``; for the CPU the host's available physical
    memory is used (shared by all CPU devices).
    """
    try:
        stats = device.memory_stats()
    except Exception:  # some backends do not implement memory_stats
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    if device.platform == "cpu":
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # not Linux
            return None
    return None


def plan_seeds_per_call(n_seeds: int, n_devices: int, *, bytes_per_seed: int | None = None,
                        free: int | None = None, requested: int | None = None) -> int:
    """Seeds per ``measure`` call: a multiple of the device count, at most ``n_seeds`` rounded up.

    Args:
      n_seeds: seeds of the cell S.
      n_devices: devices the seed axis is sharded over.
      bytes_per_seed: the experiment's peak-memory estimate for one seed, or None (all at once).
      free: free bytes per device (``free_bytes``), or None (unknown: all at once).
      requested: an explicit cap from the user (``--seeds-per-call``), or None.
    """
    def round_up(n):
        return max(n_devices, math.ceil(n / n_devices) * n_devices)

    chunk = round_up(n_seeds)
    if bytes_per_seed and free:
        per_device = max(1, int(free * MEMORY_FRACTION) // int(bytes_per_seed))
        chunk = min(chunk, per_device * n_devices)
    if requested is not None:
        chunk = min(chunk, round_up(requested))
    return chunk


def _is_out_of_memory(e: BaseException) -> bool:
    return "RESOURCE_EXHAUSTED" in str(e) or "Out of memory" in str(e) or isinstance(e, MemoryError)


# ---- one cell ------------------------------------------------------------------------------------


def _to_dataarray(name: str, value, *, where: str) -> xr.DataArray:
    """One returned variable → a numpy-backed DataArray."""
    if isinstance(value, xr.DataArray):
        da = value.copy(data=np.asarray(value.values))
    elif isinstance(value, tuple) and len(value) in (2, 3):
        dims = (value[0],) if isinstance(value[0], str) else tuple(value[0])
        attrs = dict(value[2]) if len(value) == 3 else {}
        arr = np.asarray(value[1])
        if arr.ndim != len(dims):
            raise ValueError(f"{where} variable {name!r}: dims {dims} do not match array shape {arr.shape}")
        da = xr.DataArray(arr, dims=dims, attrs=attrs)
    else:
        raise TypeError(
            f"{where} variable {name!r} must be (dims, array), (dims, array, attrs) or an xarray.DataArray, "
            f"got {type(value).__name__}"
        )
    da.name = name
    return da


def _variables(out, *, where: str) -> dict:
    if not isinstance(out, Mapping):
        raise TypeError(f"{where} must return a mapping name -> (dims, array) or DataArray, got {type(out).__name__}")
    return {name: _to_dataarray(name, v, where=where) for name, v in out.items()}


def measure_seeds(experiment: Experiment, cell: Cell, seeds: Sequence[int], *, devices=None,
                  seeds_per_call: int | None = None) -> tuple[dict, int]:
    """``experiment.measure`` over ``seeds``, chunked and sharded.

    Returns:
      ``(variables, seeds_per_call)``: name → DataArray with leading ``seed`` dimension (coordinate:
      the seed integers), and the chunk size finally used.

    Each chunk of the seed axis is padded to a multiple of the device count (the padding repeats the
    last seed and is dropped), placed on a 1-D ``("seed",)`` mesh and measured; a chunk that runs out
    of device memory is retried with half as many seeds.
    """
    devices = list(devices) if devices is not None else jax.local_devices()
    n_dev = len(devices)
    mesh = seed_mesh(devices)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("measure_seeds needs at least one seed")
    per_seed = experiment.bytes_per_seed(cell) if experiment.bytes_per_seed is not None else None
    free = free_bytes(devices[0])
    if free is not None and devices[0].platform == "cpu":
        free //= n_dev  # simulated CPU devices share the host memory
    chunk = plan_seeds_per_call(len(seeds), n_dev, bytes_per_seed=per_seed, free=free, requested=seeds_per_call)
    where = f"{experiment.name}.measure"
    parts, start = [], 0
    while start < len(seeds):
        ids = seeds[start:start + chunk]
        padded = ids + [ids[-1]] * (-len(ids) % n_dev)
        keys = seed_keys(padded)  # seed k -> jax.random.key(k), as in gradjax.nn.seed_keys(S)
        try:
            out = _variables(experiment.measure(cell, shard_seeds(keys, mesh)), where=where)
        except Exception as e:
            if _is_out_of_memory(e) and chunk > n_dev:
                chunk = max(n_dev, (chunk // 2) // n_dev * n_dev)
                continue
            raise
        for name, da in out.items():
            if not da.dims or da.dims[0] != SEED_AXIS or da.shape[0] != len(padded):
                raise ValueError(
                    f"{where} variable {name!r} must have leading dimension 'seed' of length {len(padded)} "
                    f"(one entry per key), got dims {da.dims} shape {da.shape}"
                )
        parts.append({name: da.isel({SEED_AXIS: slice(0, len(ids))}) for name, da in out.items()})
        start += len(ids)
    names = list(parts[0])
    for p in parts[1:]:
        if list(p) != names:
            raise ValueError(f"{where} returned different variables for different seed chunks: {names} vs {list(p)}")
    merged = {n: xr.concat([p[n] for p in parts], dim=SEED_AXIS) if len(parts) > 1 else parts[0][n] for n in names}
    return {n: da.assign_coords({SEED_AXIS: seeds}) for n, da in merged.items()}, chunk


def compute_cell(experiment: Experiment, cell: Cell, seeds: Sequence[int], *, devices=None,
                 seeds_per_call: int | None = None) -> tuple[xr.Dataset, int]:
    """Theory and measurement of one cell as a Dataset (no attributes yet), and the seeds per call used."""
    theory = _variables(experiment.theory(cell), where=f"{experiment.name}.theory") if experiment.theory else {}
    measured, chunk = measure_seeds(experiment, cell, seeds, devices=devices, seeds_per_call=seeds_per_call)
    clash = sorted(set(theory) & set(measured))
    if clash:
        raise ValueError(f"{experiment.name}: variables {clash} are returned by both theory and measure")
    ds = xr.Dataset({**theory, **measured})
    for dim in ds.dims:
        if dim == "layer" and dim not in ds.coords:
            ds = ds.assign_coords(layer=np.arange(1, ds.sizes["layer"] + 1))  # entry l-1 is block l
    ds = ds.assign_coords({k: v for k, v in cell.coords.items()})
    return ds, chunk


def _grid_values(cells: Sequence[Cell]) -> dict:
    """Each grid coordinate's values in grid order (first appearance)."""
    out: dict = {}
    for c in cells:
        for k, v in c.coords.items():
            out.setdefault(k, [])
            if v not in out[k]:
                out[k].append(v)
    return out


def check_writable(folder) -> Path:
    """Creates ``folder`` if needed and checks a file can be written there.

    Raises:
      PermissionError / OSError: with a message naming the folder.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise PermissionError(f"cannot write results to {folder}: {e.strerror or e}") from None
    return folder


# ---- the sweep -----------------------------------------------------------------------------------


def run_sweep(experiment, size: str = "full", *, seeds: int | None = None, root=io.DEFAULT_ROOT,
              dtype: str = "float32", devices=None, seeds_per_call: int | None = None,
              overwrite: bool = False, quiet: bool = False, command: str | None = None,
              process_index: int | None = None, process_count: int | None = None,
              host_timeout_s: float | None = None) -> SweepReport:
    """Runs (or resumes) every cell of ``experiment`` at ``size`` assigned to this process.

    Args:
      experiment: an :class:`Experiment` (by name: ``gradjax.experiments.catalog.get(name)``).
      size: "tiny" | "quick" | "full".
      seeds: number of seeds S (seeds 0..S-1), default the grid's.
      root: results root; cells go to ``<root>/<size>/<name>/cells``.
      dtype: "float32" | "float64" (enables JAX's 64-bit mode if needed).
      devices: devices to shard the seed axis over (default: all local devices).
      seeds_per_call: cap on seeds per ``measure`` call (default: from memory, else all).
      overwrite: recompute cells whose files are foreign (other seeds/dtype/settings).
      quiet: no progress bar.
      command: the command line recorded in the provenance (default: ``sys.argv``).
      process_index, process_count: this process's share of the cells (default: from
        ``jax.process_index()`` / ``jax.process_count()``).
      host_timeout_s: with several hosts, the longest wait at the end for the others to finish
        (default: no limit; see :mod:`gradjax.experiments.hosts`).

    Returns:
      A :class:`SweepReport`. Cells that raised are in ``report.failed`` (and on disk as
      ``*.failed.json``); the sweep itself raises only for problems of the whole run.

    Raises:
      TypeError: ``experiment`` is not an :class:`Experiment`.
      ValueError: unknown size/dtype, bad seed count.
      PermissionError: the results folder is not writable.
      ForeignResultError: a file in the way belongs to another run (see module docstring).
      HostFailedError: another host of a multi-host run failed (it names the host, cell and error).
    """

    exp = experiment
    if not isinstance(exp, Experiment):
        raise TypeError(f"experiment must be an Experiment (by name: gradjax.experiments.catalog.get(name)), "
                        f"got {type(experiment).__name__}")
    registry.check_size(size)
    n_seeds = exp.sizes[size].seeds if seeds is None else seeds
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, (int, np.integer)) or n_seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1, got {n_seeds!r}")
    if seeds_per_call is not None and (isinstance(seeds_per_call, bool) or not isinstance(seeds_per_call, (int, np.integer))
                                       or seeds_per_call < 1):
        raise ValueError(f"seeds_per_call must be an integer >= 1, got {seeds_per_call!r}")
    cells = exp.cells(size, dtype=dtype)
    if dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)  # float64 results need 64-bit JAX; the sweep is the side-effect layer
    seed_list = list(range(int(n_seeds)))
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    sync = hosts.HostSync(hosts.distributed_store(), f"{exp.name}/{size}", pi, pc, timeout_s=host_timeout_s)
    try:
        report = _sweep_this_host(exp, size, cells, list(cells[pi::pc]), seed_list, sync, root=root, dtype=dtype,
                                  devices=devices, seeds_per_call=seeds_per_call, overwrite=overwrite,
                                  quiet=quiet, command=command, is_first_host=pi == 0)
    except BaseException as e:  # tell the other hosts before leaving, so that none waits forever
        sync.fail(e)
        raise
    sync.finish(report.failed)
    return report


def _classify_files(exp, size, cells, mine, seed_list, report, *, root, dtype, overwrite, is_first_host) -> list:
    """The cells of ``mine`` still to compute, as ``(cell, path, fingerprint)``: finished files are skipped
    (``report.skipped``), corrupt ones set aside (``report.corrupt``); foreign ones raise unless ``overwrite``."""
    todo, foreign = [], []
    for cell in mine:
        path = io.cell_path(root, size, exp.name, cell.id)
        fp = io.fingerprint(experiment=exp.name, size=size, coords=cell.coords, params=cell.params,
                            seeds=seed_list, dtype=dtype)
        if path.exists():
            try:
                io.read_cell(path, experiment=exp.name, size=size, fingerprint=fp)
                report.skipped.append(cell.id)
                continue
            except io.CorruptResultError as e:
                warnings.warn(f"{e}; set aside as {path.name}.corrupt and recomputing", CorruptResultWarning,
                              stacklevel=3)
                os.replace(path, path.with_name(path.name + ".corrupt"))
                report.corrupt.append(path)
            except io.ForeignResultError as e:
                if not overwrite:
                    foreign.append(str(e))
                    continue
        todo.append((cell, path, fp))
    known = {c.id for c in cells}
    stale = [p.name for p in io.cell_files(io.cells_dir(root, size, exp.name)) if p.stem not in known]
    if stale and is_first_host:
        warnings.warn(f"{report.folder / 'cells'} holds {len(stale)} file(s) that are not cells of the current grid "
                      f"(e.g. {stale[0]}); load_results merges them too — move them away if the grid changed",
                      StaleResultWarning, stacklevel=3)
    if foreign:
        raise io.ForeignResultError(
            f"{len(foreign)} result file(s) in the way were computed with other settings, e.g. {foreign[0]}; "
            "rerun with --overwrite to recompute them, or use another --out folder"
        )
    return todo


def _sweep_this_host(exp, size, cells, mine, seed_list, sync, *, root, dtype, devices, seeds_per_call, overwrite,
                     quiet, command, is_first_host) -> SweepReport:
    """The cells ``mine`` of this host: classify the files in the way, then compute what is missing."""
    from tqdm.auto import tqdm

    devices = list(devices) if devices is not None else jax.local_devices()
    command = command if command is not None else " ".join(sys.argv)
    folder = io.experiment_dir(root, size, exp.name)
    check_writable(io.cells_dir(root, size, exp.name))
    grid = io.grid_attr(_grid_values(cells))
    git = io.git_state()
    report = SweepReport(exp.name, size, folder, assigned=[c.id for c in mine])
    t_start = time.perf_counter()

    # Classify first, so that a foreign file stops the run before any work.
    todo = _classify_files(exp, size, cells, mine, seed_list, report, root=root, dtype=dtype, overwrite=overwrite,
                           is_first_host=is_first_host)

    bar = tqdm(total=len(mine), initial=len(report.skipped), unit="cell", desc=f"{exp.name} [{size}]",
               disable=quiet, file=sys.stderr, dynamic_ncols=True)
    try:
        for cell, path, fp in todo:
            sync.start_cell(cell.id)
            bar.set_postfix_str(cell.id, refresh=True)
            started, t0 = io.utc_now(), time.perf_counter()
            failed_marker = io.failed_path(root, size, exp.name, cell.id)
            try:
                ds, chunk = compute_cell(exp, cell, seed_list, devices=devices, seeds_per_call=seeds_per_call)
            except Exception as e:  # one failing cell must not lose the others: record it and go on
                line = f"{type(e).__name__}: {e}".splitlines()[0]
                report.failed[cell.id] = line
                io.write_json(failed_marker, {
                    "error": line, "traceback": traceback.format_exc(), "experiment": exp.name, "size": size,
                    "cell": dict(cell.coords), "params": dict(cell.params), "seeds": len(seed_list),
                    "dtype": dtype, "command": command, "time_utc": io.utc_now(),
                })
                bar.update(1)
                continue
            wall = time.perf_counter() - t0
            record = io.provenance(experiment=exp.name, size=size, coords=cell.coords, params=cell.params,
                                   seeds=seed_list, dtype=dtype, devices=devices, command=command,
                                   wall_time_s=round(wall, 3), started_utc=started, seeds_per_call=chunk, git=git)
            ds.attrs = {"gradjax_format": io.FORMAT, "experiment": exp.name, "size": size, "cell_id": cell.id,
                        "fingerprint": fp, "grid": grid, "provenance": io.to_json(record)}
            io.write_cell(path, ds)
            if failed_marker.exists():
                failed_marker.unlink()
            report.computed.append(cell.id)
            bar.update(1)
    finally:
        bar.close()
    report.wall_time_s = time.perf_counter() - t_start
    return report
