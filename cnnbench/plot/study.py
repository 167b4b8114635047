"""Figures of a `cnnbench sweep` study: error vs each axis (a dot per seed, mean and 95 % band), a heat map of two
axes, the `--tune` isolation view, and validation curves as mean ± band per point. Reads only the study's files.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnbench.errors import DataError
from cnnbench.plot.figure import DEFAULT_FORMATS, join, new_figure, save, styled
from cnnbench.plot.load import read_result_text, warn
from cnnbench.results import inside_name, read_record

MAX_LINES = 8  # lines per panel: more combinations of the other axes are not drawn (said in the legend)


class _Row(dict):
    """A table row whose missing columns read as empty: a table edited or cut short draws less, never raises."""

    def __missing__(self, key: str) -> str:
        return ""


def _rows(path: Path) -> list[dict[str, str]]:
    """A study table's rows, through the bounded reader (regular files only, size capped): DataError when it is
    a link, pipe, device, huge or not text; [] when absent."""
    if not path.exists() and not path.is_symlink():
        return []
    try:
        return [_Row(row) for row in csv.DictReader(io.StringIO(read_result_text(path), newline=""))]
    except csv.Error as exc:
        raise DataError(f"{path}: not a CSV table ({str(exc)[:120]})") from None


def _history(study_dir: Path, run_dir: str) -> list[dict[str, str]]:
    """A run's history.csv, when runs.csv names a folder inside the study and it can be read; else [] and a warning."""
    if not inside_name(run_dir):
        warn(f"{study_dir / 'runs.csv'}: run_dir {run_dir!r} is not a folder inside the study; its curve is not drawn")
        return []
    try:
        return _rows(study_dir / run_dir / "history.csv")
    except DataError as exc:
        warn(f"skipped {exc}")
        return []


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _caption(index: dict[str, Any], runs: list[dict[str, str]], folder: Path) -> list[str]:
    training = (index.get("spec") or {}).get("training") or {}
    seeds = index.get("seeds") or []
    return [
        f"data: {join(r.get('dataset') for r in runs) or '-'}",
        f"device: {join(r.get('device') for r in runs) or '-'}",
        f"backend: {join(r.get('backend') for r in runs) or '-'}",
        f"engine: {join(r.get('engine') for r in runs) or '-'}",
        f"epochs: {training.get('epochs')}",
        f"seeds: {len(seeds)} ({', '.join(map(str, seeds[:8]))}{', …' if len(seeds) > 8 else ''})",
        f"study: {folder.name}",
        "band: 95 % Student-t interval of the mean over ok seeds; x: diverged seed; hollow: never learned",
    ]


def _clip(values) -> list[float]:
    """An interval of an error shown within [0, 1], the range an error can take."""
    return [min(1.0, max(0.0, v)) if math.isfinite(v) else v for v in values]


def _position(values: list[str]) -> tuple[dict[str, float], bool, list[str]]:
    """x positions of an axis' values: the numbers themselves (log when positive over a decade), else 0, 1, 2."""
    numbers = [_float(v) for v in values]
    if all(math.isfinite(n) for n in numbers):
        log = min(numbers) > 0 and max(numbers) / min(numbers) > 10
        return dict(zip(values, numbers, strict=True)), log, []
    return {v: float(i) for i, v in enumerate(values)}, False, values


def _axis_panel(ax, axis: str, others: list[str], points: list[dict[str, str]], runs: list[dict[str, str]]) -> None:
    values = list(dict.fromkeys(p[axis] for p in points))
    x, log, labels = _position(values)
    combos = list(dict.fromkeys(tuple(p[o] for o in others) for p in points))
    for combo in combos[:MAX_LINES]:
        label = ", ".join(f"{o.split('.')[-1]} {v}" for o, v in zip(others, combo, strict=True)) or "mean"
        mine = [p for p in points if tuple(p[o] for o in others) == combo]
        mine.sort(key=lambda p: x[p[axis]])
        xs = [x[p[axis]] for p in mine]
        line = ax.plot(xs, [_float(p["best_val_error_mean"]) for p in mine], marker="o", label=label)[0]
        low = [_float(p["best_val_error_ci95_low"]) for p in mine]
        high = [_float(p["best_val_error_ci95_high"]) for p in mine]
        ax.fill_between(xs, _clip(low), _clip(high), color=line.get_color(), alpha=0.15, linewidth=0)
        dots: dict[str, tuple[list[float], list[float]]] = {"diverged": ([], []), "learned": ([], []), "hollow": ([], [])}
        for run in runs:  # one artist per kind of dot, not one per run: a 1,000-run study saves in a second
            if tuple(run[o] for o in others) != combo or run[axis] not in x:
                continue
            error = _float(run["best_val_error"])
            if run["status"] == "diverged":
                kind, error = "diverged", 1.0
            elif run["status"] == "ok" and math.isfinite(error):
                kind = "hollow" if run.get("learned", "").lower() == "false" else "learned"
            else:
                continue
            dots[kind][0].append(x[run[axis]])
            dots[kind][1].append(error)
        if dots["diverged"][0]:
            ax.plot(*dots["diverged"], marker="x", markersize=7, markeredgewidth=2, color=line.get_color(), linestyle="none")
        for kind in ("learned", "hollow"):
            if dots[kind][0]:
                ax.plot(*dots[kind], marker="o", markersize=3.5, linestyle="none", color=line.get_color(),
                        markerfacecolor="none" if kind == "hollow" else line.get_color(), alpha=0.6)  # fmt: skip
    if log:
        ax.set_xscale("log")
    if labels:
        ax.set_xticks(range(len(labels)), labels)
    more = f" (first {MAX_LINES} of {len(combos)} lines)" if len(combos) > MAX_LINES else ""
    ax.set(xlabel=axis, ylabel="best validation error", title=f"error vs {axis}{more}")
    ax.legend(loc="best")


@styled
def plot_study(study_dir: str | Path, out_dir: str | Path | None = None, formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    """A study → error_vs_axes.* (one panel per axis), heatmap.* (two axes or more), isolation.* (with --tune) and
    study_curves.* (validation error per epoch, mean ± band per point); the files written."""
    study_dir = Path(study_dir)
    out_dir = Path(out_dir or study_dir)
    index = read_record(study_dir / "sweep.json") or {}
    points, runs = _rows(study_dir / "points.csv"), _rows(study_dir / "runs.csv")
    axes = [a["path"] for a in index.get("axes") or [] if isinstance(a, dict) and a.get("path") in (points[0] if points else {})]
    if not points or not axes:
        return []
    name = index.get("name") or study_dir.name
    caption = _caption(index, runs, study_dir)
    fig = new_figure(5.5 * len(axes), 4.6, caption)
    panels = fig.subplots(1, len(axes), squeeze=False)[0]
    for ax, axis in zip(panels, axes, strict=True):
        _axis_panel(ax, axis, [a for a in axes if a != axis], points, runs)
    fig.suptitle(f"{name}: best validation error per point (dots: seeds)")
    written = save(fig, out_dir, "error_vs_axes", formats)
    if len(axes) >= 2:
        written += save(_heatmap(name, axes, points, caption), out_dir, "heatmap", formats)
    tune = index.get("tune")
    verdict = index.get("verdict") or {}
    if tune in axes and len(axes) >= 2 and verdict.get("tuned"):
        written += save(_isolation(name, tune, [a for a in axes if a != tune], verdict["tuned"], caption), out_dir, "isolation", formats)
    written += save(_curves(name, study_dir, points, runs, caption), out_dir, "study_curves", formats)
    return written


def _heatmap(name: str, axes: list[str], points: list[dict[str, str]], caption: list[str]):
    a, b = axes[:2]
    rows, cols = list(dict.fromkeys(p[a] for p in points)), list(dict.fromkeys(p[b] for p in points))
    grid = [[math.nan] * len(cols) for _ in rows]
    for p in points:  # with more than two axes, each cell is the best over the others
        value = _float(p["best_val_error_mean"])
        i, j = rows.index(p[a]), cols.index(p[b])
        if math.isfinite(value) and not value >= grid[i][j]:
            grid[i][j] = value
    fig = new_figure(max(5.0, 1.0 * len(cols) + 3), max(4.0, 0.6 * len(rows) + 2.5), caption)
    ax = fig.subplots()
    image = ax.imshow(grid, cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    for i in range(len(rows)):
        for j in range(len(cols)):
            if math.isfinite(grid[i][j]):
                ax.text(j, i, f"{grid[i][j]:.3f}", ha="center", va="center", fontsize=8, color="white")
    ax.set(xlabel=b, ylabel=a, title=f"{name}: mean best validation error" + (" (best over the other axes)" if len(axes) > 2 else ""))
    fig.colorbar(image, ax=ax, label="best validation error")
    return fig


def _isolation(name: str, tune: str, others: list[str], tuned: list[dict[str, Any]], caption: list[str]):
    axis = others[0]
    fig = new_figure(7.5, 4.6, caption)
    ax = fig.subplots()
    rows = [t for t in tuned if t.get("best")]
    values = [str(t[axis]) for t in rows]
    x, log, labels = _position(values)
    xs = [x[v] for v in values]
    means = [t["best"].get("best_val_error_mean") for t in rows]
    ax.plot(xs, [m if m is not None else math.nan for m in means], marker="o", label=f"best over {tune.split('.')[-1]}")
    low = [t["best"].get("best_val_error_ci95_low") for t in rows]
    high = [t["best"].get("best_val_error_ci95_high") for t in rows]
    ax.fill_between(xs, _clip(v if v is not None else math.nan for v in low), _clip(v if v is not None else math.nan for v in high),
                    alpha=0.15, linewidth=0)  # fmt: skip
    for xv, t in zip(xs, rows, strict=True):
        ax.annotate(f"{tune.split('.')[-1]} {t['best'].get(tune)}" + (" (edge)" if t.get("at_edge") else ""), (xv, t["best"].get(
            "best_val_error_mean") or 0), textcoords="offset points", xytext=(4, 6), fontsize=7)  # fmt: skip
    if log:
        ax.set_xscale("log")
    if labels:
        ax.set_xticks(range(len(labels)), labels)
    ax.set(xlabel=axis, ylabel="best validation error", title=f"{name}: best over {tune.split('.')[-1]} for each {axis}")
    ax.legend(loc="best")
    return fig


def _curves(name: str, study_dir: Path, points: list[dict[str, str]], runs: list[dict[str, str]], caption: list[str]):
    import numpy as np

    fig = new_figure(7.5, 4.8, caption)
    ax = fig.subplots()
    for p in points[:MAX_LINES * 2]:
        histories = []
        for run in runs:
            if run["point"] == p["point"] and run["status"] in ("ok", "diverged"):
                rows = _history(study_dir, run["run_dir"])
                histories.append([_float(r.get("val_error")) for r in rows])
        if not histories:
            continue
        length = max(len(h) for h in histories)
        table = np.array([h + [math.nan] * (length - len(h)) for h in histories])
        epochs = np.arange(1, length + 1)
        with np.errstate(all="ignore"):
            mean = np.nanmean(table, axis=0)
            std = np.nanstd(table, axis=0, ddof=1) if len(histories) > 1 else np.zeros(length)
        line = ax.plot(epochs, mean, label=p["point"])[0]
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.12, linewidth=0)
    ax.set(xlabel="epoch", ylabel="validation error", title=f"{name}: validation error, mean ± 1 std over seeds per point")
    ax.legend(loc="best", fontsize=6)
    return fig
