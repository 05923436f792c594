"""The ``gradjax`` command: list, run, plot and report the named experiments; ``demo`` for a quick tour.

  gradjax list [--names]
  gradjax run NAME [--tiny|--quick|--full] [--seeds S] [--out DIR] [--dtype float32|float64] [--quiet]
  gradjax plot NAME [--tiny|--quick|--full] [--out DIR]
  gradjax report [--tiny|--quick|--full] [--out DIR]
  gradjax demo [--out DIR] [--quiet]

Results go to ``DIR/<size>/<NAME>/`` (default ``DIR`` = ``results`` in the current directory).
Bad input prints one line on stderr and exits with status 2; a run with failed cells exits with 1.
Set ``GRADJAX_DEBUG=1`` to see full tracebacks.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

DEFAULT_OUT = "results"
EXIT_FAILED_CELLS = 1  # the run finished, but some cells raised (recorded as *.failed.json)
EXIT_USAGE = 2  # bad input: unknown experiment, bad numbers, unwritable folder, unusable files
EXIT_INTERRUPTED = 130  # Ctrl-C, the shell convention 128 + SIGINT
EXIT_HOST_FAILED = 3  # multi-host run: another host failed (its host, cell and error are printed)
_CACHE_ENV = "GRADJAX_CACHE_DIR"  # where compiled XLA programs are kept between runs; "off" disables


class UsageError(Exception):
    """Bad command-line input; printed as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (no usage block) and exits with status 2."""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_size(p, *, default: str | None):
    g = p.add_mutually_exclusive_group()
    note = " (the default)" if default == "full" else ""
    g.add_argument("--tiny", dest="size", action="store_const", const="tiny", help="CI size: seconds")
    g.add_argument("--quick", dest="size", action="store_const", const="quick",
                   help="quick size: minutes on a 2-core CPU (most under 2; finite-width about 4, delta-orthogonal about 5)")
    g.add_argument("--full", dest="size", action="store_const", const="full",
                   help=f"full size, meant for a GPU{note}" + ("" if default else
                        "; without a size flag: the largest size that has results"))
    p.set_defaults(size=default)


def _add_out(p):
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"results root; an experiment's files go to DIR/<size>/<name>/ (default: {DEFAULT_OUT})")


def _enable_compilation_cache() -> None:
    """Keeps compiled XLA programs on disk so that reruns and resumed sweeps skip compilation."""
    where = os.environ.get(_CACHE_ENV)
    if where is not None and where.strip().lower() in ("", "off", "0", "none"):
        return
    if where is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        where = os.path.join(base, "gradjax", "xla")
    try:
        os.makedirs(where, exist_ok=True)
    except OSError:  # an unwritable cache only costs compile time
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", where)


def _setup_jax(args) -> None:
    import jax

    if getattr(args, "distributed", False):
        jax.distributed.initialize()  # coordinates from SLURM / TPU-pod / env vars
    if getattr(args, "dtype", None) == "float64":
        jax.config.update("jax_enable_x64", True)
    _enable_compilation_cache()


def _err(msg: str) -> None:
    print(f"gradjax: error: {msg}", file=sys.stderr)


def _info(args, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr)


# ---- subcommands --------------------------------------------------------------------------------


def _list(args) -> int:
    from gradjax.experiments import catalog

    names = catalog.names()
    if args.names:
        for n in names:
            print(n)
        return 0
    if not names:
        print("no experiments registered")
        return 0
    width = max(len(n) for n in names)
    for n in names:
        exp = catalog.get(n)
        mark = " *" if exp.headline else "  "
        print(f"{n:<{width}}{mark} {exp.summary}")
    if any(catalog.get(n).headline for n in names):
        print("\n* part of `gradjax demo`")
    return 0


def _command_line(args) -> str:
    parts = ["gradjax", "run", args.name, f"--{args.size}", "--seeds", str(args.seeds_resolved),
             "--dtype", args.dtype, "--out", args.out]
    return shlex.join(parts)


def _run_one(args, name: str, size: str, *, plot: bool = True) -> int:
    import jax

    from gradjax import io
    from gradjax.experiments import catalog
    from gradjax.experiments.sweep import run_sweep

    exp = catalog.get(name)
    args.name, args.size = name, size
    args.seeds_resolved = args.seeds if args.seeds is not None else exp.sizes[size].seeds
    report = run_sweep(exp, size, seeds=args.seeds, root=args.out, dtype=args.dtype, quiet=args.quiet,
                       overwrite=getattr(args, "overwrite", False),
                       seeds_per_call=getattr(args, "seeds_per_call", None), command=_command_line(args),
                       host_timeout_s=getattr(args, "host_timeout", None))
    _info(args, f"{name} [{size}]: {len(report.assigned)} cells — {len(report.computed)} computed, "
                f"{len(report.skipped)} already done, {len(report.failed)} failed — {report.wall_time_s:.1f} s "
                f"→ {report.folder}")
    for cell_id, line in report.failed.items():
        print(f"gradjax: cell {cell_id} of {name} failed: {line} "
              f"(details: {io.failed_path(args.out, size, name, cell_id)})", file=sys.stderr)
    # run_sweep returned on every host only once every host's cells are written (or it raised)
    if plot and jax.process_index() == 0:
        try:
            results = io.load_results(report.folder)
        except FileNotFoundError:
            results = None  # every cell failed: nothing to draw
        if results is not None:
            for path in exp.plot(results, report.folder):
                _info(args, f"  figure: {path}")
    return EXIT_FAILED_CELLS if report.failed else 0


def _run(args) -> int:
    from gradjax.experiments import catalog

    catalog.get(args.name)  # an unknown name is the first thing to report
    _setup_jax(args)
    check_out(args.out)
    return _run_one(args, args.name, args.size, plot=not args.no_plot)


def _resolve_size(args, name: str | None = None) -> str:
    from gradjax.experiments.report import available_sizes
    from gradjax import io

    if args.size is not None:
        return args.size
    if name is None:
        sizes = available_sizes(args.out)
    else:
        sizes = [s for s in io.SIZES_BY_PRIORITY if io.cell_files(io.cells_dir(args.out, s, name))]
    if not sizes:
        what = f"results for {name!r}" if name else "results"
        raise FileNotFoundError(f"no {what} under {args.out}: run `gradjax run {name or 'NAME'}` first")
    return sizes[0]


def _plot(args) -> int:
    from gradjax import io
    from gradjax.experiments import catalog

    exp = catalog.get(args.name)
    size = _resolve_size(args, args.name)
    folder = io.experiment_dir(args.out, size, args.name)
    check_out(folder)
    results = io.load_results(folder)
    for path in exp.plot(results, folder):
        print(path)
    return 0


def _report(args) -> int:
    from gradjax.experiments.report import write_report

    size = _resolve_size(args)
    check_out(Path(args.out) / size)
    rep = write_report(args.out, size, html_page=not args.no_html)
    print(rep.markdown)
    if rep.html:
        print(rep.html)
    for name, problem in rep.problems.items():
        print(f"gradjax: {name}: {problem}", file=sys.stderr)
    return EXIT_FAILED_CELLS if rep.problems else 0


def _demo(args) -> int:
    from gradjax.experiments import catalog

    _setup_jax(args)
    headline = [n for n in catalog.names() if catalog.get(n).headline]
    if not headline:
        raise ValueError("no headline experiment is registered; mark one with Experiment(headline=True)")
    check_out(args.out)
    status = 0
    for name in headline:
        status = max(status, _run_one(args, name, "quick"))
    from gradjax.experiments.report import write_report

    rep = write_report(args.out, "quick", names=headline)
    print(f"report: {rep.markdown}" + (f" and {rep.html}" if rep.html else ""))
    return status


def load_factory(target: str):
    """``"path/to/file.py:make_model"`` → the callable ``make_model`` defined in that file."""
    import importlib.util

    path, sep, name = target.rpartition(":")
    if not sep or not path or not name:
        raise UsageError(f"target must be FILE.py:FACTORY (e.g. my_model.py:make_model), got {target!r}")
    if not Path(path).is_file():
        raise UsageError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(Path(path).resolve().parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    factory = getattr(module, name, None)
    if not callable(factory):
        names = sorted(n for n in vars(module) if callable(vars(module)[n]) and not n.startswith("_"))
        raise UsageError(f"{path} defines no callable {name!r}; callables there: {names}")
    return factory


def load_inputs(spec: str):
    """``--inputs``: a .npy file, or a comma-separated shape ``B,…`` of unit Gaussian float32 inputs
    (drawn from key 0), or ``int:V:B,…`` for integer tokens uniform in [0, V)."""
    import jax
    import numpy as np

    if spec.endswith(".npy"):
        if not Path(spec).is_file():
            raise UsageError(f"no such inputs file: {spec}")
        return np.load(spec)
    vocab = None
    if spec.startswith("int:"):
        _, v, spec = spec.split(":", 2)
        vocab = _positive_int(v)
    try:
        shape = tuple(_positive_int(d) for d in spec.split(","))
    except (argparse.ArgumentTypeError, ValueError):
        raise UsageError(f"--inputs must be a .npy file, a shape like 64,8,8,1 or int:V:B,T, got {spec!r}") from None
    key = jax.random.key(0)
    return jax.random.randint(key, shape, 0, vocab) if vocab else jax.random.normal(key, shape)


def _inspect(args) -> int:
    import numpy as np

    from gradjax import empirical

    _setup_jax(args)
    factory = load_factory(args.target)
    x = load_inputs(args.inputs)
    try:
        labels = empirical.layer_paths(factory, x)
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from None
    g = empirical.gradient_profile(factory, args.seeds, x)
    q = empirical.q_profile(factory, args.seeds, x)
    qs = np.nanquantile(np.asarray(g.hidden, np.float64), [0.1, 0.5, 0.9], axis=0)
    print(f"{args.target}: {len(labels)} layers (nnx.Linear / nnx.Conv outputs in call order), {args.seeds} seeds, "
          f"inputs {tuple(np.shape(x))}; projection loss with unit Gaussian targets")
    print(f"{'layer':<32s} {'log10 |dloss/dh| median [10%, 90%]':>38s} {'q = mean h^2':>14s}")
    for i, lab in enumerate(labels):
        print(f"{lab:<32s} {qs[1, i]:+10.3f}  [{qs[0, i]:+8.3f}, {qs[2, i]:+8.3f}]    {np.median(np.asarray(q)[:, i]):12.4g}")
    if args.out:
        import xarray as xr

        ds = xr.Dataset({"log10_grad_hidden": (("seed", "layer"), np.asarray(g.hidden)),
                         "log10_grad_kernel": (("seed", "layer"), np.asarray(g.weights)),
                         "q": (("seed", "layer"), np.asarray(q))},
                        coords={"layer": list(labels), "seed": np.arange(args.seeds)},
                        attrs={"target": args.target, "inputs": args.inputs})
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        ds.to_netcdf(args.out)
        print(f"stored: {args.out}")
    return 0


def check_out(folder) -> Path:
    """Raises ``PermissionError`` with one clear line unless ``folder`` can be created and written."""
    from gradjax.experiments.sweep import check_writable

    return check_writable(folder)


# ---- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gradjax", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("list", help="list the named experiments", description="List the named experiments.")
    p.add_argument("--names", action="store_true", help="names only, one per line (for scripts)")
    p.set_defaults(fn=_list)

    p = sub.add_parser("run", help="run (or resume) an experiment and draw its figures",
                       description="Run every cell of an experiment's grid × seeds (resuming where a previous run "
                                   "stopped), store one netCDF file per cell, and draw the figures.")
    p.add_argument("name", metavar="NAME", help="experiment name (see `gradjax list`)")
    _add_size(p, default="full")
    p.add_argument("--seeds", type=_positive_int, default=None, metavar="S",
                   help="number of seeds (default: the experiment's for that size)")
    _add_out(p)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="floating-point precision")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages (for batch logs)")
    p.add_argument("--overwrite", action="store_true",
                   help="recompute cells whose files were computed with other seeds/dtype/settings")
    p.add_argument("--seeds-per-call", type=_positive_int, default=None, metavar="N",
                   help="cap on seeds measured per call (default: fit the free device memory)")
    p.add_argument("--no-plot", action="store_true", help="store results only, draw nothing")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() first (multi-host: SLURM, TPU pod); "
                        "hosts split the cells and write into one --out folder")
    p.add_argument("--host-timeout", type=_positive_int, default=None, metavar="SECONDS",
                   help="multi-host: stop with an error if the other hosts are not done this long after this "
                        "one (default: no limit; a host that raises always stops the others)")
    p.set_defaults(fn=_run)

    p = sub.add_parser("plot", help="redraw an experiment's figures from stored results",
                       description="Redraw an experiment's figures from its stored results (no computation).")
    p.add_argument("name", metavar="NAME", help="experiment name")
    _add_size(p, default=None)
    _add_out(p)
    p.set_defaults(fn=_plot)

    p = sub.add_parser("report", help="write the report page (figures + agreement table)",
                       description="Redraw every experiment with results and write DIR/<size>/report.md and "
                                   "report.html: every figure and the theory-vs-measurement table.")
    _add_size(p, default=None)
    _add_out(p)
    p.add_argument("--no-html", action="store_true", help="write report.md only")
    p.set_defaults(fn=_report)

    p = sub.add_parser("inspect", help="measure a Flax NNX model from a factory in your own file",
                       description="Gradient profile and q profile across seeds, at initialization, of the "
                                   "model that FILE.py:FACTORY builds (FACTORY(rngs: nnx.Rngs) -> nnx.Module).")
    p.add_argument("target", metavar="FILE.py:FACTORY", help="e.g. my_model.py:make_model")
    p.add_argument("--inputs", required=True, metavar="SPEC",
                   help="a .npy file, a shape B,... of unit Gaussian inputs, or int:V:B,T integer tokens")
    p.add_argument("--seeds", type=_positive_int, default=4, metavar="S", help="number of seeds (default 4)")
    p.add_argument("--out", default=None, metavar="FILE.nc", help="also store the results (netCDF, layer labels)")
    p.set_defaults(fn=_inspect)

    p = sub.add_parser("demo", help="quick versions of the headline experiments and the report",
                       description="Run the quick size of the headline experiments and write the report.")
    _add_out(p)
    p.add_argument("--seeds", type=_positive_int, default=None, metavar="S", help="number of seeds")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(fn=_demo, dtype="float32")
    return parser


def main(argv=None) -> int:
    """Entry point of the ``gradjax`` command; returns the exit status."""
    debug = os.environ.get("GRADJAX_DEBUG", "") not in ("", "0")
    try:
        args = build_parser().parse_args(argv)
        return args.fn(args)
    except UsageError as e:
        _err(str(e))
        return EXIT_USAGE
    except RuntimeError as e:
        from gradjax.experiments.hosts import HostFailedError  # imported late: the cli starts without jax

        if debug or not isinstance(e, HostFailedError):
            raise
        _err(str(e))
        return EXIT_HOST_FAILED
    except KeyboardInterrupt:
        print("gradjax: interrupted; finished cells are saved, rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, OSError) as e:  # bad input surfaces as these; one line, no traceback
        if debug:
            raise
        _err(str(e).splitlines()[0] if str(e) else type(e).__name__)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
