"""`compare`: runs and sweeps side by side, as one table of their metrics and one figure of their curves.

>>> rows, figures = compare(["results/a-lr-sweep-…", "results/convolutional_nn-20251124-101500"], out="figures/")
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.errors import DataError, UsageError
from cnnbench.plot.curves import chance_line, diverged_marks, epochs_and_seed, error_limits, loss_ceiling, lr_colors, run_caption
from cnnbench.plot.figure import DEFAULT_FORMATS, integer_epochs, join, log_axis, new_figure, num, save, styled
from cnnbench.plot.load import Run, read_run, reporting, warn
from cnnbench.results import find_results, find_runs

COLUMNS = (
    "source", "run", "kind", "status", "learned", "dataset", "epochs", "epochs_run", "seed", "learning_rate", "optimizer",
    "batch_size", "best_val_error", "best_epoch", "final_val_error", "test_error", "epoch_s_median", "device", "backend", "engine",
    "run_dir",
)  # fmt: skip
_SOURCE_STYLES = ("-", "--", ":", "-.")


def _kind(path: Path) -> str:
    found = find_results(path)
    if found["sweeps"] == [path]:
        return "sweep"
    if found["benches"] == [path]:
        return "bench"
    if found["runs"] == [path]:
        return "run"
    return ""


def _runs_of(path: Path, kind: str) -> list[Run]:
    """A run folder's run (DataError when unreadable); a sweep's or bench's readable runs, in learning-rate order."""
    if kind == "run":
        return [read_run(path)]
    runs = []
    for run_dir in find_runs(path):
        try:
            runs.append(read_run(run_dir))
        except DataError as exc:
            warn(f"skipped {exc}")
    return sorted(runs, key=lambda r: (r.lr is None, r.lr or 0.0, natural_key(_run_name(r))))


def natural_key(name: str) -> tuple:
    """`f8` before `f16` before `f64`: the numbers in a name compare as numbers.

    >>> sorted(["cpu-f64-r1", "cpu-f8-r1", "cpu-f16-r1"], key=natural_key)
    ['cpu-f8-r1', 'cpu-f16-r1', 'cpu-f64-r1']
    """
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part)


def _run_name(run: Run) -> str:
    """A run's name in its sweep or bench: its folder's name (`lr-0.05`), or for a study's run, whose folder is
    `<point>/seed-<s>`, the point and the seed (`filters-8_learning_rate-0.05/seed-0`): `seed-0` alone names many."""
    name = run.run_dir.name
    if name.startswith("seed-") and run.run_dir.parent.name:
        return f"{run.run_dir.parent.name}/{name}"
    return name


def _value(run: Run, kind: str) -> str:
    """What a run stands for across sources, one colour each: a sweep's run its learning rate (a study's run its
    point), a bench's run its combination (`cpu-tensorflow-f8-r1`), a lone run its learning rate, else its folder's name."""
    if kind == "sweep" and run.run_dir.name.startswith("seed-"):
        return run.run_dir.parent.name[:30]
    if kind == "bench" or run.lr is None:
        return run.run_dir.name[:30]
    return f"lr {num(run.lr)}"


def row_of(run: Run, source: str, kind: str) -> dict[str, Any]:
    """The metrics of one run for the comparison table (None where the run did not record it)."""
    r = run.record
    finite = run.val_error[np.isfinite(run.val_error)]
    best = r.get("best_val_error", run.best_val_error if len(finite) else None)
    return {
        "source": source, "run": _run_name(run) if kind == "sweep" else run.run_dir.name, "kind": kind, "status": run.status,
        "learned": run.learned,
        "dataset": run.data.get("name"), "epochs": r.get("epochs"), "epochs_run": len(run.history), "seed": r.get("seed"),
        "learning_rate": run.lr, "optimizer": r.get("optimizer"), "batch_size": r.get("batch_size"), "best_val_error": best,
        "best_epoch": r.get("best_epoch"), "final_val_error": r.get("final_val_error", float(finite[-1]) if len(finite) else None),
        "test_error": r.get("test_error"), "epoch_s_median": (r.get("timing") or {}).get("epoch_s_median"),
        "device": r.get("device"), "backend": r.get("backend"), "engine": r.get("engine"), "run_dir": str(run.run_dir),
    }  # fmt: skip


def _colors(n: int) -> list:
    import matplotlib

    return [matplotlib.colormaps["tab10"](i) for i in range(n)] if n <= 10 else lr_colors(n)


@styled
def compare(
    paths: Sequence[str | Path], out: str | Path | None = None, formats: Sequence[str] = DEFAULT_FORMATS, log_scale: bool = False
) -> tuple[list[dict[str, Any]], list[Path]]:
    """Runs, sweeps (or benches) side by side: one table row per run and one figure, compare.<fmt> in
    `out` (default: the current folder), of their validation error, training and validation loss
    curves overlaid. Sources are lettered A, B, … in the table and the figure.

    UsageError for a path that is not a run, sweep or bench folder, or that holds no readable run.
    """
    if not paths:
        raise UsageError("compare needs at least one run or sweep folder")
    with reporting():
        sources = _sources(paths)
    rows = [row_of(run, f"{letter}: {path.name}", kind) for letter, path, kind, runs in sources for run in runs]
    figure = _compare_figure(sources, log_scale)
    return rows, save(figure, Path(out) if out is not None else Path.cwd(), "compare", formats)


def _sources(paths: Sequence[str | Path]) -> list[tuple[str, Path, str, list[Run]]]:
    """(letter, folder, kind, runs) for each path; UsageError for one with nothing to compare."""
    sources = []
    for i, raw in enumerate(paths):
        path = Path(raw)
        if not path.is_dir():
            raise UsageError(f"no such folder: {str(path)[:200]}")
        kind = _kind(path)
        if not kind:
            raise UsageError(f"{str(path)[:200]}: not a run, sweep or bench folder (no run.json, sweep.json or bench.json in it)")
        runs = _runs_of(path, kind)
        if not runs:
            raise UsageError(f"{str(path)[:200]}: no readable run in this {kind}")
        letter = string.ascii_uppercase[i] if i < 26 else f"S{i + 1}"
        sources.append((letter, path, kind, runs))
    return sources


def _compare_figure(sources, log_scale: bool):
    all_runs = [run for *_, runs in sources for run in runs]
    caption = [
        f"{letter} = {path.name} ({kind}{', ' + more if (more := epochs_and_seed(runs)) else ''})" for letter, path, kind, runs in sources
    ]
    caption += run_caption(all_runs, epochs=False)  # each source's epochs and seed are named above
    fig = new_figure(16, 5.6, caption)
    fig.suptitle("Comparison: " + ", ".join(f"{letter} {join(r.name for r in runs)}" for letter, _, _, runs in sources))
    ax_err, ax_loss, ax_val = fig.subplots(1, 3)
    keyed = [(_value(run, kind), run) for _, _, kind, runs in sources for run in runs]
    values = sorted(dict.fromkeys(v for v, _ in keyed), key=lambda v: _first_run_key(v, keyed))
    palette = dict(zip(values, _colors(len(values)), strict=True))  # the same rate (or combination) has one colour in A and B
    colors = [palette[v] for v, _ in keyed]
    ceiling = loss_ceiling(all_runs, ("loss", "val_loss"), log_scale)
    k = 0
    for s, (letter, _, kind, runs) in enumerate(sources):
        for run in runs:
            label = f"{letter} {_value(run, kind)}{run.label_note()}"
            style = dict(color=colors[k], ls=_SOURCE_STYLES[s % len(_SOURCE_STYLES)], lw=1.6, marker="o", ms=3)
            ax_err.plot(run.epochs, run.val_error, label=label, **style)
            for ax, key in ((ax_loss, "loss"), (ax_val, "val_loss")):
                y = run.column(key)
                ax.plot(run.epochs, y if ceiling is None else np.minimum(y, ceiling), **style)
            k += 1
    chance = chance_line(ax_err, all_runs)
    error_limits(ax_err, [v for r in all_runs for v in r.val_error], chance, log_scale)
    ax_err.set(title="Validation error", ylabel="validation error (fraction misclassified)")
    ax_loss.set(title="Training loss", ylabel="training loss (cross-entropy)")
    ax_val.set(title="Validation loss", ylabel="validation loss (cross-entropy)")
    for ax in (ax_loss, ax_val):
        if log_scale and log_axis(ax):
            ax.set_ylim(top=ceiling)
        else:
            ax.set_ylim(0, ceiling)
    for ax, key in ((ax_err, "val_error"), (ax_loss, "loss"), (ax_val, "val_loss")):
        diverged_marks(ax, all_runs, colors, key)
    for ax in (ax_err, ax_loss, ax_val):
        ax.set_xlabel("epoch")
        integer_epochs(ax)
    from matplotlib.lines import Line2D

    handles, labels = ax_err.get_legend_handles_labels()
    for s, (letter, path, _, _) in enumerate(sources):  # what each line style means
        handles.append(Line2D([], [], color="0.35", lw=1.6, ls=_SOURCE_STYLES[s % len(_SOURCE_STYLES)]))
        labels.append(f"{letter} = {path.name[:30]} (line style)")
    fig.legend(handles, labels, loc="outside right upper", title="source · run (colour: run, line style: source)", title_fontsize=8)
    return fig


def _first_run_key(value: str, keyed: list[tuple[str, Run]]) -> tuple:
    """Colours follow the natural order of the runs' values: lr ascending, then f8, f16, f32, f64."""
    run = next(r for v, r in keyed if v == value)
    return (run.lr is None, run.lr or 0.0, natural_key(run.run_dir.name))
