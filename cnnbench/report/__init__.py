"""`cnnbench report`: the study's conclusions and figures as one self-contained HTML page.

Finds sweeps, benches and runs as `plot` does, draws them with `cnnbench.plot` (inline SVG), states the
verdicts first and lists every input file with its sha256. Never imports Keras or TensorFlow.

>>> result = write_report(["results/"])            # results/report.html
>>> result.verdicts["sweeps"][0]["best"]["learning_rate"]
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.errors import UsageError
from cnnbench.plot.load import PlotWarning, warn

SIZE_WARN_BYTES = 10 * 2**20  # pages of tens of MB are where other tools' reports start to crash browsers

__all__ = ["SIZE_WARN_BYTES", "ReportResult", "build_report", "default_out", "write_report"]


@dataclass(frozen=True)
class ReportResult:
    path: Path | None
    html: str
    verdicts: dict[str, Any]
    size: int
    warnings: tuple[str, ...]


def default_out(results: Sequence[Path]) -> Path:
    """RESULTS/report.html for one folder, ./report.html for several."""
    return Path(results[0]) / "report.html" if len(results) == 1 else Path("report.html")


def _generated() -> str | None:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch:
        return None
    try:
        return dt.datetime.fromtimestamp(int(epoch), tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError, OSError):
        raise UsageError(f"SOURCE_DATE_EPOCH must be a number of seconds, got {epoch[:30]!r}") from None


def build_report(
    results: Sequence[str | Path], out: Path, script: bool = True, title: str | None = None, log_scale: bool = False, command: str = ""
) -> ReportResult:
    """The page for `results` (as it would be written to `out`, which only sets relative links) and its verdicts."""
    from cnnbench.plot.curves import plot_run, plot_sweep
    from cnnbench.plot.runtime import plot_bench
    from cnnbench.plot.study import plot_study
    from cnnbench.report.collect import collect, file_digest, read_rows
    from cnnbench.report.figures import render
    from cnnbench.report.page import PageInput, render_page
    from cnnbench.report.verdicts import verdicts

    roots = [Path(r) for r in results] or [Path("results")]
    for root in roots:
        if not root.is_dir():
            raise UsageError(f"{root}: no such folder")
    generated = _generated()
    with tempfile.TemporaryDirectory(prefix="cnnbench-report-") as tmp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PlotWarning)
        scratch = Path(tmp)
        found = collect(roots, scratch)
        if found.empty:
            why = (
                f"{len(found.skipped)} folder(s) could not be read: {found.skipped[0].reason}"
                if found.skipped
                else "no run, sweep or bench"
            )
            raise UsageError(f"nothing to report under {', '.join(map(str, roots))}: {why}")
        anchors: dict[Any, str] = {}
        figures: dict[int, list] = {}
        for kind, items in (("sweep", found.sweeps), ("study", found.studies), ("bench", found.benches), ("run", found.runs)):
            for i, item in enumerate(items, 1):
                anchors[id(item)] = anchors[str(item.folder)] = f"{kind}-{i}"
        for s in found.sweeps:
            figures[id(s)] = render(plot_sweep, s.plot_dir, scratch / anchors[id(s)], anchors[id(s)], log_scale, (s.runs, s.missing))
        for st in found.studies:  # `plot`'s own study figures: error vs each axis (a dot per seed, band), heat map, --tune
            figures[id(st)] = render(plot_study, st.folder, scratch / anchors[id(st)], anchors[id(st)])
        for b in found.benches:
            figures[id(b)] = render(plot_bench, b.folder, scratch / anchors[id(b)], anchors[id(b)])
            if b.fits_path is None and (scratch / anchors[id(b)] / "fits.csv").is_file():
                b.fits = read_rows(scratch / anchors[id(b)] / "fits.csv")
        for r in found.runs:
            figures[id(r)] = render(plot_run, r.folder, scratch / anchors[id(r)], anchors[id(r)], log_scale)
        facts = verdicts(found, anchors)
        if (found.study_file or {}).get("claims") == "course":
            from cnnbench.report.course import course_answers

            facts["course"] = course_answers(found, facts)
        files = []
        for item in [*found.sweeps, *found.studies, *found.benches, *found.runs]:
            for path in dict.fromkeys(item.inputs):
                size, digest = file_digest(path)
                files.append((str(path), size, digest))
        found.warnings = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, PlotWarning)))
        others = [w for w in caught if not issubclass(w.category, PlotWarning)]
        default_title = "cnnbench report: " + ", ".join(
            dict.fromkeys(str(v["name"]) for v in [*facts["sweeps"], *facts["studies"], *facts["benches"]] if v["name"])
        )
        page = PageInput(
            found,
            facts,
            anchors,
            figures,
            files,
            out,
            title or default_title.rstrip(": ") or "cnnbench report",
            command or "cnnbench report " + " ".join(map(str, roots)),
            script,
            generated,
        )
        html = render_page(page)
    for w in others:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for message in found.warnings:
        warn(message)
    size = len(html.encode("utf-8"))
    if size > SIZE_WARN_BYTES:
        warn(f"the report is {size / 2**20:.1f} MB, above {SIZE_WARN_BYTES // 2**20} MB: browsers may be slow to open it")
    return ReportResult(None, html, facts, size, tuple(found.warnings))


def write_report(
    results: Sequence[str | Path],
    out: str | Path | None = None,
    script: bool = True,
    title: str | None = None,
    log_scale: bool = False,
    command: str = "",
) -> ReportResult:
    """Build the page and write it atomically to `out` (default: `default_out(results)`)."""
    from cnnbench.errors import OutputError
    from cnnbench.results import atomic_write_text, check_out_dir

    roots = [Path(r) for r in results] or [Path("results")]
    path = Path(out) if out is not None else default_out(roots)
    if path.is_dir():
        raise UsageError(f"`out` {path}: is a folder; give a file name such as {path / 'report.html'}")
    check_out_dir(path.parent if str(path.parent) else Path("."))
    result = build_report(roots, path, script, title, log_scale, command)
    try:
        atomic_write_text(path, result.html)
    except OSError as exc:
        raise OutputError(f"cannot write {str(path)[:200]}: {exc.strerror or type(exc).__name__}") from None
    return ReportResult(path, result.html, result.verdicts, result.size, result.warnings)
