"""The report: one Markdown (and HTML) page with every figure and the theory-vs-measurement table.

``write_report(root, size)`` redraws every registered experiment that has results under
``<root>/<size>/`` (``plot`` reads the stored files only), collects its ``agreement`` rows, and
writes ``<root>/<size>/report.md`` and ``report.html`` with relative links to the figures, so the
folder can be committed or served as is. One experiment that fails to draw does not stop the
others: its section says what went wrong.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from pathlib import Path

from gradjax import io
from gradjax.experiments import catalog, registry
from gradjax.experiments.registry import AgreementRow


@dataclasses.dataclass
class Section:
    """What the report says about one experiment."""

    name: str
    summary: str
    description: str
    figures: list = dataclasses.field(default_factory=list)  # paths relative to the report
    rows: list = dataclasses.field(default_factory=list)  # AgreementRow
    cells: int = 0
    failed: dict = dataclasses.field(default_factory=dict)
    seeds: int | None = None
    devices: str = ""
    wall_time_s: float = 0.0
    command: str | None = None
    commit: str | None = None
    problem: str | None = None


@dataclasses.dataclass
class Report:
    """Paths written and the sections (``problems`` lists experiments that failed to draw)."""

    markdown: Path
    html: Path | None
    sections: list

    @property
    def problems(self) -> dict:
        return {s.name: s.problem for s in self.sections if s.problem}


def available_sizes(root=io.DEFAULT_ROOT) -> list[str]:
    """Sizes with at least one experiment folder under ``root``, largest first."""
    root = Path(root)
    return [s for s in io.SIZES_BY_PRIORITY if (root / s).is_dir() and any(
        io.cell_files(d / "cells") for d in (root / s).iterdir() if d.is_dir())]


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.4g}"


def _verdict(row: AgreementRow) -> str:
    return {True: "✓", False: "✗", None: ""}[row.agrees]


def _section(name: str, folder: Path, report_dir: Path) -> Section:
    exp = catalog.get(name)
    sec = Section(name=name, summary=exp.summary, description=exp.description.strip())
    try:
        results = io.load_results(folder)
    except Exception as e:  # a damaged folder: say so in the report, keep the others
        sec.problem = f"results could not be loaded: {type(e).__name__}: {e}"
        return sec
    records = json.loads(results.attrs["provenance"])
    sec.failed = json.loads(results.attrs["failed_cells"])
    sec.cells = len(records)
    if records:
        r0 = records[0]
        sec.seeds = len(r0.get("seeds", []))
        d = r0.get("devices", {})
        sec.devices = f"{d.get('used', '?')} × {d.get('kind', '?')}"
        sec.wall_time_s = sum(float(r.get("wall_time_s") or 0.0) for r in records)
        sec.command = r0.get("command")
        sec.commit = (r0.get("git") or {}).get("commit")
    try:
        paths = exp.plot(results, folder)
        sec.figures = [Path(p).resolve().relative_to(report_dir.resolve()).as_posix() for p in paths]
    except Exception as e:  # drawing bugs are reported in the page, not fatal to the report
        sec.problem = f"plot failed: {type(e).__name__}: {e}"
    if exp.agreement is not None:
        try:
            sec.rows = list(exp.agreement(results))
        except Exception as e:
            sec.problem = (sec.problem + "; " if sec.problem else "") + f"agreement failed: {type(e).__name__}: {e}"
    return sec


def _markdown(size: str, sections: list, unknown: list) -> str:
    import gradjax

    out = [f"# gradjax report — `{size}` size", "",
           f"Generated {io.utc_now()} by gradjax {gradjax.__version__}. Theory as lines; measurement as the "
           "median across seeds with a 10–90% band.", ""]
    rows = [(s.name, r) for s in sections for r in s.rows]
    out += ["## Theory vs measurement", ""]
    if rows:
        out += ["| experiment | quantity | where | theory | measured | error | tolerance | agrees | note |",
                "|---|---|---|---:|---:|---:|---:|:---:|---|"]
        for name, r in rows:
            err = _fmt(r.error) + (" (rel.)" if r.metric == "relative" else " (abs.)")
            out.append(f"| [{name}](#{name}) | {r.quantity} | {r.where} | {_fmt(r.theory)} | {_fmt(r.measured)} | "
                       f"{err} | {_fmt(r.tolerance) if r.tolerance is not None else ''} | {_verdict(r)} | {r.note} |")
    else:
        out.append("No agreement rows.")
    out.append("")
    for s in sections:
        out += [f"## {s.name}", "", s.description, ""]
        if s.problem:
            out += [f"**Problem:** {s.problem}", ""]
        for f in s.figures:
            out += [f"![{s.name}]({f})", ""]
        info = f"{s.cells} cells, {s.seeds} seeds each, on {s.devices}, {s.wall_time_s:.1f} s of compute"
        if s.failed:
            info += f"; **{len(s.failed)} failed**: " + "; ".join(f"`{k}`: {v}" for k, v in sorted(s.failed.items()))
        out += [info + ".", ""]
        if s.command:
            out += ["Reproduce: `" + s.command + "`" + (f" (commit `{s.commit[:12]}`)" if s.commit else ""), ""]
    if unknown:
        out += ["## Not shown", "", "Folders without a registered experiment: " + ", ".join(f"`{u}`" for u in unknown), ""]
    return "\n".join(out)


def _html(size: str, sections: list, unknown: list) -> str:
    import gradjax

    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>gradjax report — {e(size)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
        "td.num{text-align:right}img{max-width:100%}.bad{color:#b00}.good{color:#070}</style></head><body>",
        f"<h1>gradjax report — <code>{e(size)}</code> size</h1>",
        f"<p>Generated {e(io.utc_now())} by gradjax {e(gradjax.__version__)}. Theory as lines; measurement as the "
        "median across seeds with a 10–90% band.</p>",
        "<h2>Theory vs measurement</h2>",
    ]
    rows = [(s.name, r) for s in sections for r in s.rows]
    if rows:
        parts.append("<table><tr><th>experiment</th><th>quantity</th><th>where</th><th>theory</th><th>measured</th>"
                     "<th>error</th><th>tolerance</th><th>agrees</th><th>note</th></tr>")
        for name, r in rows:
            cls = {True: "good", False: "bad", None: ""}[r.agrees]
            parts.append(
                f"<tr><td><a href='#{e(name)}'>{e(name)}</a></td><td>{e(r.quantity)}</td><td>{e(r.where)}</td>"
                f"<td class=num>{_fmt(r.theory)}</td><td class=num>{_fmt(r.measured)}</td>"
                f"<td class=num>{_fmt(r.error)} ({'rel.' if r.metric == 'relative' else 'abs.'})</td>"
                f"<td class=num>{_fmt(r.tolerance) if r.tolerance is not None else ''}</td>"
                f"<td class='{cls}'>{_verdict(r)}</td><td>{e(r.note)}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>No agreement rows.</p>")
    for s in sections:
        parts.append(f"<h2 id='{e(s.name)}'>{e(s.name)}</h2><p>{e(s.description)}</p>")
        if s.problem:
            parts.append(f"<p class=bad><b>Problem:</b> {e(s.problem)}</p>")
        parts += [f"<p><img src='{e(f)}' alt='{e(s.name)}'></p>" for f in s.figures]
        info = f"{s.cells} cells, {s.seeds} seeds each, on {s.devices}, {s.wall_time_s:.1f} s of compute"
        if s.failed:
            info += f"; {len(s.failed)} failed: " + "; ".join(f"{k}: {v}" for k, v in sorted(s.failed.items()))
        parts.append(f"<p>{e(info)}.</p>")
        if s.command:
            parts.append(f"<p>Reproduce: <code>{e(s.command)}</code></p>")
    if unknown:
        parts.append("<p>Folders without a registered experiment: " + e(", ".join(unknown)) + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(root=io.DEFAULT_ROOT, size: str | None = None, *, names=None, html_page: bool = True) -> Report:
    """Draws every experiment with results at ``size`` and writes ``report.md`` (and ``report.html``).

    Args:
      root: results root.
      size: "tiny" | "quick" | "full"; default the largest size with results.
      names: experiments to include (default: every registered one with results).
      html_page: also write ``report.html``.

    Raises:
      FileNotFoundError: no results at all under ``root`` (or at ``size``).
    """
    root = Path(root)
    if size is None:
        sizes = available_sizes(root)
        if not sizes:
            raise FileNotFoundError(f"no results under {root}: run `gradjax run NAME` first")
        size = sizes[0]
    registry.check_size(size)
    report_dir = root / size
    if not report_dir.is_dir():
        raise FileNotFoundError(f"no results of size {size!r} under {root}")
    present = sorted(d.name for d in report_dir.iterdir() if d.is_dir() and (d / "cells").is_dir())
    wanted = list(names) if names is not None else [n for n in catalog.names() if n in present]
    for n in wanted:
        catalog.get(n)  # unknown names raise with the list of options
    unknown = [p for p in present if p not in catalog.names()]
    sections = [_section(n, io.experiment_dir(root, size, n), report_dir) for n in wanted if n in present]
    if not sections:
        raise FileNotFoundError(f"no results of registered experiments under {report_dir}")
    md = report_dir / "report.md"
    md.write_text(_markdown(size, sections, unknown))
    page = None
    if html_page:
        page = report_dir / "report.html"
        page.write_text(_html(size, sections, unknown))
    return Report(md, page, sections)
