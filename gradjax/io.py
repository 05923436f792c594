"""Results store: labeled arrays (xarray) in netCDF files, one per cell, written atomically.

Layout of a results root (default ``results/``)::

    <root>/<size>/<experiment>/cells/<cell id>.nc           one finished cell (netCDF4 via h5netcdf)
    <root>/<size>/<experiment>/cells/<cell id>.failed.json  a cell whose computation raised
    <root>/<size>/<experiment>/*.png                        its figures
    <root>/<size>/report.md, report.html                    the report of that size

A cell file holds the cell's variables (measured ones with a leading ``seed`` dimension, theory ones
without) with the grid coordinates as scalar coordinates, and in its attributes:
``gradjax_format`` (:data:`FORMAT`), ``experiment``, ``size``, ``cell_id``, ``fingerprint`` (a
hash of everything that determines the numbers: experiment, size, coordinates, params, seeds,
dtype), ``grid`` (JSON list of ``[coordinate, [values in grid order]]``) and ``provenance`` (JSON:
config, seeds, versions, devices, git commit, wall time, command — see :func:`provenance`).

Writes go to a temporary file in the same folder, are flushed to disk and then renamed over the
target (``os.replace`` is atomic on POSIX and Windows), so a reader never sees a half-written file
and a killed run leaves at most a stray ``.*.tmp`` file, which every reader ignores.

``load_results`` merges a results folder into one ``xarray.Dataset`` in one call.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

FORMAT = 1  # version of the cell-file layout above; bump when it changes incompatibly
ENGINE = "h5netcdf"  # netCDF4/HDF5 writer; needs h5py
SIZES_BY_PRIORITY = ("full", "quick", "tiny")  # which size load_results picks when not told
DEFAULT_ROOT = "results"
_TMP_SUFFIX = ".tmp"


class ResultFileError(ValueError):
    """A file in a results folder that cannot be used: unreadable, or not the cell asked for."""


class CorruptResultError(ResultFileError):
    """The file cannot be read as a gradjax cell (truncated, not netCDF, missing attributes)."""


class ForeignResultError(ResultFileError):
    """The file is a readable cell, but of another experiment, size, grid point, seeds or dtype."""


# ---- paths ------------------------------------------------------------------------------------


def experiment_dir(root, size: str, name: str) -> Path:
    """``<root>/<size>/<name>``: where one experiment of one size keeps its cells and figures."""
    return Path(root) / size / name


def cells_dir(root, size: str, name: str) -> Path:
    """``<root>/<size>/<name>/cells``."""
    return experiment_dir(root, size, name) / "cells"


def cell_path(root, size: str, name: str, cell_id: str) -> Path:
    """Path of one cell's file."""
    return cells_dir(root, size, name) / f"{cell_id}.nc"


def failed_path(root, size: str, name: str, cell_id: str) -> Path:
    """Path of one cell's failure record."""
    return cells_dir(root, size, name) / f"{cell_id}.failed.json"


def cell_files(folder) -> list[Path]:
    """The cell files of a ``cells`` folder (temporary and hidden files excluded), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.nc") if not p.name.startswith("."))


# ---- atomic writes ------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_target(path: Path):
    """Yields a temporary path next to ``path``; on success, fsyncs and renames it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:  # flush the data before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def write_json(path, obj) -> Path:
    """Writes ``obj`` as JSON atomically."""
    with _atomic_target(Path(path)) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=_json_default) + "\n")
    return Path(path)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set, frozenset)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    return repr(o)


def to_json(obj) -> str:
    """Canonical JSON (sorted keys) of ``obj``, numpy scalars and tuples included."""
    return json.dumps(obj, sort_keys=True, default=_json_default)


def fingerprint(*, experiment: str, size: str, coords: Mapping, params: Mapping, seeds: Sequence[int],
                dtype: str) -> str:
    """SHA-256 (hex, 16 chars) of everything that determines a cell's numbers."""
    blob = to_json({"format": FORMAT, "experiment": experiment, "size": size, "coords": dict(coords),
                    "params": dict(params), "seeds": [int(s) for s in seeds], "dtype": dtype})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def grid_attr(grid: Mapping[str, Sequence]) -> str:
    """The ``grid`` attribute: JSON list of ``[name, [values in grid order]]`` pairs (keeps axis order)."""
    return json.dumps([[k, list(v)] for k, v in grid.items()], default=_json_default)


def _parse_grid(text: str) -> dict:
    return {k: v for k, v in json.loads(text)}


def write_cell(path, ds: xr.Dataset) -> Path:
    """Writes one cell's Dataset to ``path`` atomically (temporary file + fsync + rename).

    ``ds`` must carry the attributes of the module docstring (``gradjax_format``, ``experiment``,
    ``size``, ``cell_id``, ``fingerprint``, ``grid``, ``provenance``).
    """
    missing = [k for k in _REQUIRED_ATTRS if k not in ds.attrs]
    if missing:
        raise ValueError(f"cell dataset lacks attributes {missing}")
    _require_h5py()
    with _atomic_target(Path(path)) as tmp:
        ds.to_netcdf(tmp, engine=ENGINE)
    return Path(path)


def _require_h5py() -> None:
    """h5netcdf writes through h5py; say so clearly where it is missing."""
    try:
        import h5py  # noqa: F401
    except ImportError:
        raise ImportError("gradjax stores results as netCDF4 through h5netcdf, which needs h5py: "
                          "pip install h5py") from None


_REQUIRED_ATTRS = ("gradjax_format", "experiment", "size", "cell_id", "fingerprint", "grid", "provenance")


def read_cell(path, *, experiment: str | None = None, size: str | None = None,
              fingerprint: str | None = None) -> xr.Dataset:
    """Reads and checks one cell file (fully into memory; the file is closed).

    Args:
      path: the ``.nc`` file.
      experiment, size, fingerprint: when given, the file must match them.

    Raises:
      CorruptResultError: not readable as netCDF, or lacking gradjax's attributes/provenance.
      ForeignResultError: a valid cell of another format version, experiment, size or fingerprint.
    """
    path = Path(path)
    _require_h5py()
    try:
        with xr.open_dataset(path, engine=ENGINE) as f:
            ds = f.load()
    except Exception as e:  # h5py/h5netcdf raise OSError, ValueError, KeyError... on damaged files
        raise CorruptResultError(f"{path}: not a readable netCDF file ({type(e).__name__}: {e})") from None
    missing = [k for k in _REQUIRED_ATTRS if k not in ds.attrs]
    if missing:
        raise ForeignResultError(f"{path}: not a gradjax cell file (attributes {missing} missing)")
    if int(ds.attrs["gradjax_format"]) != FORMAT:
        raise ForeignResultError(f"{path}: cell file format {ds.attrs['gradjax_format']}, this gradjax reads {FORMAT}")
    try:
        for k in ("grid", "provenance"):
            json.loads(ds.attrs[k])
        _parse_grid(ds.attrs["grid"])
    except (TypeError, ValueError) as e:
        raise CorruptResultError(f"{path}: attribute {k!r} is not valid JSON ({e})") from None
    for field, want in (("experiment", experiment), ("size", size), ("fingerprint", fingerprint)):
        if want is not None and ds.attrs[field] != want:
            raise ForeignResultError(
                f"{path}: {field} is {ds.attrs[field]!r}, expected {want!r} (a file from another run or settings)"
            )
    return ds


# ---- provenance ---------------------------------------------------------------------------------


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # not installed / not a distribution: record None rather than fail a run
        return None


def versions() -> dict:
    """Versions of Python and of the packages that determine the numbers."""
    import gradjax

    out = {"python": platform.python_version(), "gradjax": gradjax.__version__}
    for dist in ("jax", "jaxlib", "flax", "optax", "numpy", "xarray", "h5netcdf"):
        out[dist] = _version(dist)
    return out


def git_state(folder=None) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the git checkout holding gradjax."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent
    def git(*args):
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no")
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):  # no git on this machine: provenance says so
        return {"commit": None, "dirty": None}


def device_info(devices=None) -> dict:
    """Platform, kind and counts of the devices a computation uses (``devices``) and can see."""
    import jax

    devices = list(devices) if devices is not None else jax.local_devices()
    return {
        "platform": devices[0].platform,
        "kind": devices[0].device_kind,
        "used": len(devices),
        "local_count": jax.local_device_count(),
        "global_count": jax.device_count(),
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
    }


def utc_now() -> str:
    """Current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def provenance(*, experiment: str, size: str, coords: Mapping, params: Mapping, seeds: Sequence[int],
               dtype: str, devices=None, command: str | None = None, wall_time_s: float | None = None,
               started_utc: str | None = None, seeds_per_call: int | None = None, git: dict | None = None,
               **extra) -> dict:
    """The record stored with every cell: what was computed, with what, where, and how to redo it."""
    return {
        "experiment": experiment,
        "size": size,
        "cell": dict(coords),
        "params": dict(params),
        "seeds": [int(s) for s in seeds],
        "dtype": dtype,
        "versions": versions(),
        "devices": device_info(devices),
        "git": git if git is not None else git_state(),
        "host": socket.gethostname(),
        "command": command,
        "wall_time_s": wall_time_s,
        "started_utc": started_utc,
        "finished_utc": utc_now(),
        "seeds_per_call": seeds_per_call,
        **extra,
    }


# ---- loading ------------------------------------------------------------------------------------


def resolve_results_dir(dir_or_name, *, size: str | None = None, root=DEFAULT_ROOT) -> Path:
    """The experiment folder meant by ``dir_or_name``.

    An existing folder (an experiment folder or its ``cells`` subfolder) is used as is; otherwise
    ``dir_or_name`` is an experiment name looked up under ``<root>/<size>/`` — the largest size
    present (full, then quick, then tiny) when ``size`` is None.

    Raises:
      FileNotFoundError: nothing found; the message says where it looked.
    """
    p = Path(dir_or_name)
    if p.is_dir() and (cell_files(p) or (p / "cells").is_dir()):
        return p.parent if p.name == "cells" else p
    sizes = (size,) if size is not None else SIZES_BY_PRIORITY
    tried = []
    for s in sizes:
        d = experiment_dir(root, s, str(dir_or_name))
        tried.append(str(d))
        if cell_files(d / "cells") or any((d / "cells").glob("*.failed.json")):
            return d
    raise FileNotFoundError(f"no results for {str(dir_or_name)!r}: looked in {', '.join(tried)}")


def _grid_order(values, preferred):
    """Sorts ``values`` as they appear in ``preferred`` (grid order), unknown ones last."""
    rank = {v: i for i, v in enumerate(preferred)}
    return sorted(values, key=lambda v: (rank.get(v, len(rank)), str(v)))


def load_results(dir_or_name, *, size: str | None = None, root=DEFAULT_ROOT) -> xr.Dataset:
    """Every finished cell of one experiment, merged into one labeled Dataset.

    Each grid coordinate (e.g. ``activation``, ``depth``, ``sigma_w2``) becomes a dimension, in
    grid order, beside the variables' own dimensions (``seed``, ``layer``, ...); cells not present
    (unfinished, failed, or outside a non-product grid) are NaN.

    Args:
      dir_or_name: an experiment results folder, or an experiment name looked up under ``root``.
      size: "tiny" | "quick" | "full" when looking up by name (default: the largest present).
      root: the results root (default ``results`` in the current directory).

    Returns:
      ``xarray.Dataset`` with attributes ``experiment``, ``size``, ``params`` (JSON: the size's shared
      settings), ``provenance`` (JSON list of the per-cell provenance records) and ``failed_cells`` (JSON mapping cell id → error line).

    Raises:
      FileNotFoundError: no results there.
      CorruptResultError, ForeignResultError: a file that cannot be used (named in the message).
    """
    folder = resolve_results_dir(dir_or_name, size=size, root=root)
    files = cell_files(folder / "cells")
    failed = {}
    for fp in sorted((folder / "cells").glob("*.failed.json")):
        try:
            failed[fp.name[: -len(".failed.json")]] = json.loads(fp.read_text()).get("error", "")
        except (OSError, ValueError):
            failed[fp.name[: -len(".failed.json")]] = "(unreadable failure record)"
    if not files:
        raise FileNotFoundError(f"no finished cells in {folder / 'cells'}" + (f" ({len(failed)} failed)" if failed else ""))
    cells = [read_cell(f) for f in files]
    first = cells[0].attrs
    for f, ds in zip(files, cells):
        for field in ("experiment", "size"):
            if ds.attrs[field] != first[field]:
                raise ForeignResultError(
                    f"{f}: {field} {ds.attrs[field]!r} differs from {first[field]!r} of {files[0].name} in the same folder"
                )
    grid = _parse_grid(first["grid"])
    coord_names = list(grid)
    expanded = []
    for ds in cells:
        records = json.loads(ds.attrs["provenance"])
        ds = ds.expand_dims(coord_names)
        ds.attrs = {"provenance": records}
        expanded.append(ds)
    merged = xr.merge(expanded, join="outer", compat="no_conflicts", combine_attrs="drop")
    for name in coord_names:
        merged = merged.reindex({name: _grid_order(merged[name].values.tolist(), grid[name])})
    merged = merged.transpose(*coord_names, ...)
    merged.attrs = {
        "experiment": first["experiment"],
        "size": first["size"],
        "params": to_json(expanded[0].attrs["provenance"].get("params", {})),
        "provenance": to_json([ds.attrs["provenance"] for ds in expanded]),
        "failed_cells": to_json(failed),
        "source": str(folder),
    }
    return merged
