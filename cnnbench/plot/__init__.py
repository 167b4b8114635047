"""Figures from results folders: learning curves of runs and sweeps, runtime plots of benches, comparisons.

Reads only what `train`, `sweep-lr` and `bench` wrote (never training code); returns the paths it wrote.

>>> paths = plot_results("results/")                 # every run, sweep and bench below results/
>>> a, b, r2 = fit_linear([1, 2, 3], [3, 5, 7])      # t = a + b·P
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from cnnbench.errors import DataError, UsageError
from cnnbench.layout import is_study
from cnnbench.plot.compare import compare
from cnnbench.plot.curves import plot_run, plot_sweep, wilson_interval
from cnnbench.plot.figure import DEFAULT_FORMATS, FORMATS
from cnnbench.plot.fits import MIN_FIT_POINTS, compare_growth, fit_exponential, fit_linear, fit_power, local_slopes
from cnnbench.plot.load import PlotWarning, reporting, warn
from cnnbench.plot.runtime import plot_bench
from cnnbench.plot.study import plot_study
from cnnbench.results import find_results

__all__ = [
    "DEFAULT_FORMATS", "FORMATS", "MIN_FIT_POINTS", "PlotWarning", "compare", "compare_growth", "fit_exponential", "fit_linear",
    "fit_power", "local_slopes", "parse_formats", "plot_bench", "plot_results", "plot_run", "plot_study", "plot_sweep", "wilson_interval",
]  # fmt: skip


def parse_formats(text: str | Iterable[str]) -> tuple[str, ...]:
    """'png,svg' → ('png', 'svg'); UsageError for an empty list or an unknown format."""
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = tuple(dict.fromkeys(item.strip().lower().lstrip(".") for item in items if item.strip()))
    if not formats:
        raise UsageError(f"`formats` needs at least one of {', '.join(FORMATS)}")
    for fmt in formats:
        if fmt not in FORMATS:
            raise UsageError(f"unknown figure format {fmt[:20]!r} in `formats`; use {', '.join(FORMATS)} (comma-separated)")
    return formats


def plot_results(
    root: str | Path,
    formats: Sequence[str] = DEFAULT_FORMATS,
    log_scale: bool = False,
    out: str | Path | None = None,
) -> list[Path]:
    """Plot every plain run, sweep and bench at or below `root`; return the files written.

    Figures go into the folder they plot, or with `out` into `out/<that folder relative to root>`.
    `log_scale` puts error and loss curves on a log y axis. A folder whose files cannot be read is
    skipped with a PlotWarning naming the file and why; the others are drawn. Raises UsageError
    when root holds nothing to plot.
    """
    root = Path(root)
    formats = parse_formats(formats)
    if not root.is_dir():
        raise UsageError(f"no such folder: {root}")
    found = find_results(root)
    if not any(found.values()):
        raise UsageError(f"no runs, sweeps or benches found under {root}")

    def target(folder: Path) -> Path:
        return folder if out is None else Path(out) / folder.relative_to(root)

    jobs = [(plot_sweep, f, (log_scale,)) for f in found["sweeps"]]
    jobs += [(plot_study, f, ()) for f in found["sweeps"] if is_study(f)]  # a `cnnbench sweep` study: its own figures too
    jobs += [(plot_bench, f, ()) for f in found["benches"]]
    jobs += [(plot_run, f, (log_scale,)) for f in found["runs"]]
    written: list[Path] = []
    skipped = 0
    with reporting():
        for plot, folder, extra in jobs:
            try:
                written += plot(folder, target(folder), formats, *extra)
            except DataError as exc:
                skipped += 1
                warn(f"skipped {exc}")
    if not written:
        singular = {"runs": "run", "sweeps": "sweep", "benches": "bench"}
        counts = ", ".join(f"{len(v)} {singular[k] if len(v) == 1 else k}" for k, v in found.items() if v)
        why = f"{skipped} could not be read (see the warnings)" if skipped else "no finished epoch or measured row yet"
        raise UsageError(f"nothing to plot under {root}: found {counts}, but {why}")
    return written
