"""Learning-curve figures of runs and sweeps: error and loss per epoch, error vs learning rate.

Every error-per-epoch axis carries the chance line (1 − 1/classes) and starts at 0, so a run that never
learned looks flat; such runs, and diverged ones, are marked in the legends. Error vs learning rate
answers which rate is best: it zooms to the rates that learned and notes chance where it lies beyond.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnbench.chance import chance_error
from cnnbench.errors import DataError
from cnnbench.plot.figure import DEFAULT_FORMATS, device_label, integer_epochs, join, log_axis, new_figure, num, save, styled
from cnnbench.plot.load import Run, numeric, read_run, read_table, warn
from cnnbench.results import HISTORY_COLUMNS, find_runs

VAL_ERROR = "validation error (fraction misclassified)"
CONFIDENCE_Z = 1.959964  # 95 % two-sided
_LINESTYLE = {"ok": "-", "diverged": "--"}  # every other status (running, failed, interrupted) dotted
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", "h", ">", "*", "p")
MANY_RUNS = 30  # above this many runs a panel's curves are one LineCollection, coloured and listed by rate
MAX_LEGEND_RATES = 24  # the legend of a many-run sweep lists at most this many of its rates, evenly spread


def wilson_interval(error: float, n: int, z: float = CONFIDENCE_Z) -> tuple[float, float]:
    """The Wilson score interval of an error rate measured on n samples (95 % by default).

    >>> [round(v, 4) for v in wilson_interval(0.1, 500)]
    [0.0767, 0.1294]
    """
    if n <= 0 or not math.isfinite(error):
        return float("nan"), float("nan")
    p = min(max(error, 0.0), 1.0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def run_caption(runs: Sequence[Run], extra: Sequence[str] = (), epochs: bool = True) -> list[str]:
    """Dataset (with its split), epochs and seed (unless told not to), device, backend, optimizer and batch of the runs."""
    records = [r.record for r in runs]
    dataset = join(r.data.get("name") for r in runs)
    split = [r.data for r in runs if r.data.get("train_samples") and r.data.get("val_samples")]
    sizes = join(f"{d['train_samples']:,} train / {d['val_samples']:,} val" for d in split)
    devices = join(device_label(r.get("device"), r.get("device_name")) for r in records if r.get("device"))
    backend = join(r.get("backend") for r in records)
    engine = join(r.get("engine") for r in records)
    batch = join(r.get("batch_size") for r in records)
    return [
        f"data: {dataset}" + (f" ({sizes})" if sizes else "") if dataset else "",
        *(_epochs_and_seed(runs) if epochs else []),
        f"device: {devices}" if devices else "",
        f"backend: {backend}" + (f" ({engine})" if engine else "") if backend else "",
        join(r.get("optimizer") for r in records),
        f"batch {batch}" if batch else "",
        *extra,
    ]


def _epochs_and_seed(runs: Sequence[Run]) -> list[str]:
    epochs, seed = join(r.record.get("epochs") for r in runs), join(r.record.get("seed") for r in runs)
    return [p for p in (f"{epochs} epoch{'' if epochs == '1' else 's'}" if epochs else "", f"seed {seed}" if seed else "") if p]


def epochs_and_seed(runs: Sequence[Run]) -> str:
    """'20 epochs, seed 0' (what a title needs to tell two sweeps of the same grid apart)."""
    return ", ".join(_epochs_and_seed(runs))


def chance_line(ax, runs: Sequence[Run]) -> float:
    """The dashed grey line at the error of guessing; returns its height."""
    classes = sorted({r.num_classes for r in runs})
    chance = chance_error(classes[-1])
    ax.axhline(chance, color="0.45", lw=1.1, ls=(0, (5, 3)), zorder=1, label=f"chance: {chance:.3g} (1 − 1/{classes[-1]})")
    return chance


def error_limits(ax, values: Sequence[float], chance: float, log_scale: bool) -> None:
    """From 0 (linear) to just above chance and every value, so a flat run at chance stays flat."""
    finite = [v for v in values if np.isfinite(v)]
    top = max([chance, *finite]) * (1.6 if log_scale else 1.06)
    if log_scale and log_axis(ax):
        ax.set_ylim(top=top)
    else:
        ax.set_ylim(0, top)


@styled
def plot_run(
    run_dir: str | Path, out_dir: str | Path | None = None, formats: Sequence[str] = DEFAULT_FORMATS, log_scale: bool = False
) -> list[Path]:
    """One `train` run → curves.*: error and loss vs epoch (training and validation), epoch times."""
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    history = run.history
    if history.empty:
        return []
    epochs = run.epochs
    title = run.name
    if run.lr is not None:
        title += f": learning rate {num(run.lr)}"
    title += run.label_note()
    if more := epochs_and_seed([run]):
        title += f"  ({more})"
    fig = new_figure(12, 3.9, run_caption([run], [f"run: {run_dir.name}"]))
    fig.suptitle(title)
    ax_err, ax_loss, ax_time = fig.subplots(1, 3)

    if "accuracy" in history:
        ax_err.plot(epochs, 1.0 - run.column("accuracy"), "o-", ms=3, label="training")
    ax_err.plot(epochs, run.val_error, "o-", ms=3, label="validation")
    chance = chance_line(ax_err, [run])
    error_limits(ax_err, [*run.val_error, *(1.0 - run.column("accuracy"))], chance, log_scale)
    ax_err.set(title="Error", xlabel="epoch", ylabel="error (fraction misclassified)")
    for column, label in (("loss", "training"), ("val_loss", "validation")):
        if column in history:
            ax_loss.plot(epochs, run.column(column), "o-", ms=3, label=label)
    ax_loss.set(title="Loss", xlabel="epoch", ylabel="cross-entropy loss")
    if log_scale:
        log_axis(ax_loss)
    for ax in (ax_err, ax_loss):
        ax.legend()
        integer_epochs(ax)

    times = run.column("epoch_time_s")
    if np.isfinite(times).any():
        from matplotlib.patches import Patch

        ax_time.bar(epochs, times, color=["tab:orange"] + ["tab:blue"] * (len(times) - 1), width=0.7)
        if np.isfinite(times[1:]).any():
            median = float(np.nanmedian(times[1:]))
            ax_time.axhline(median, color="0.3", lw=1, ls="--", label=f"steady median {median:.3g} s")
        handles = [Patch(color="tab:orange", label="first epoch (incl. tracing)"), *ax_time.get_legend_handles_labels()[0]]
        ax_time.legend(handles=handles)
        integer_epochs(ax_time)
    ax_time.set(title="Epoch time", xlabel="epoch", ylabel="time per epoch (s)")
    return save(fig, Path(out_dir or run_dir), "curves", formats)


# --- sweeps ------------------------------------------------------------------------------------


def load_sweep(sweep_dir: Path) -> tuple[list[Run], list[tuple[float, str]]]:
    """The sweep's runs that have epochs, sorted by learning rate, and (lr, status) of summary.csv rows
    with nothing to draw. A run folder that cannot be read is skipped with a warning."""
    runs = []
    for run_dir in find_runs(sweep_dir):
        try:
            run = read_run(run_dir)
        except DataError as exc:
            warn(f"skipped {exc}")
            continue
        if run.lr is not None and not run.history.empty:
            runs.append(run)
    if not runs:  # committed reference results (docs/study) keep curves.csv and summary.csv, not the run folders
        runs = _runs_from_tables(sweep_dir)
    runs.sort(key=lambda r: r.lr)
    missing: list[tuple[float, str]] = []
    summary = sweep_dir / "summary.csv"
    try:
        table = read_table(summary)
        rates = numeric(table, "learning_rate", summary) if "learning_rate" in table else []
    except DataError as exc:
        warn(f"{exc}; its rates are not listed")
        table, rates = None, []
    drawn = [r.lr for r in runs]
    for i, lr in enumerate(rates):
        if np.isfinite(lr) and not any(math.isclose(lr, d, rel_tol=1e-9) for d in drawn):
            status = table["status"].iloc[i] if "status" in table else "?"
            missing.append((float(lr), str(status)[:20]))
    return runs, sorted(missing)


def _runs_from_tables(sweep_dir: Path) -> list[Run]:
    """The sweep's runs rebuilt from its curves.csv (every epoch of every run) and summary.csv (their records)."""
    import pandas as pd

    curves_path, summary_path = sweep_dir / "curves.csv", sweep_dir / "summary.csv"
    if not curves_path.is_file():
        return []
    try:
        curves = read_table(curves_path)
        summary = read_table(summary_path) if summary_path.is_file() else pd.DataFrame()
    except DataError as exc:
        warn(f"skipped {exc}")
        return []
    if "run_dir" not in curves or "epoch" not in curves:
        return []
    records = {}
    if "run_dir" in summary:
        for row in summary.to_dict("records"):
            records[str(row["run_dir"])] = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
    runs = []
    for run_dir, group in curves.groupby("run_dir", sort=False):
        record = records.get(str(run_dir), {})
        if "name" in group and "name" not in record:
            record["name"] = str(group["name"].iloc[0])
        history = pd.DataFrame({c: numeric(group, c, curves_path) for c in HISTORY_COLUMNS if c in group})
        history = history[np.isfinite(history["epoch"])].sort_values("epoch", kind="stable").reset_index(drop=True)
        run = Run(sweep_dir / str(run_dir), record, history)
        if run.lr is not None and not history.empty:
            runs.append(run)
    return runs


def lr_colors(n: int) -> list:
    """n colours of distinct hue in rate order (small rate: blue … large: red), from 'turbo' with its pale
    yellow-green middle darkened so every line reads on white; 8–10 rates stay told apart."""
    import matplotlib
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    cmap = matplotlib.colormaps["turbo"]
    colors = []
    for i in range(n):
        rgb = np.array(cmap(0.08 + 0.86 * i / (n - 1) if n > 1 else 0.15)[:3])
        hsv = rgb_to_hsv(rgb)
        hsv[2] = min(hsv[2], 0.78)  # no line paler than this: yellow and light green become olive/green
        colors.append((*hsv_to_rgb(hsv), 1.0))
    return colors


def _line_style(run: Run) -> str:
    if run.status == "ok" and run.learned is False:
        return "-."
    return _LINESTYLE.get(run.status, ":")


def sweep_colors(runs: Sequence[Run]) -> list:
    """One colour per run: `lr_colors` in run order, or, above MANY_RUNS runs, one colour per distinct rate
    (the seeds and other points of one rate share it)."""
    if len(runs) <= MANY_RUNS:
        return lr_colors(len(runs))
    rates = sorted({r.lr for r in runs})
    palette = dict(zip(rates, lr_colors(len(rates)), strict=True))
    return [palette[r.lr] for r in runs]


def _rate_handles(runs: Sequence[Run], colors) -> list:
    """Legend entries of a many-run sweep: one per distinct rate (at most MAX_LEGEND_RATES, evenly spread)."""
    from matplotlib.lines import Line2D

    by_rate = dict(sorted({r.lr: c for r, c in zip(runs, colors, strict=True)}.items()))
    rates = list(by_rate)
    if len(rates) > MAX_LEGEND_RATES:
        step = (len(rates) - 1) / (MAX_LEGEND_RATES - 1)
        rates = [rates[round(i * step)] for i in range(MAX_LEGEND_RATES)]
    count = {lr: sum(1 for r in runs if r.lr == lr) for lr in rates}
    return [Line2D([], [], color=by_rate[lr], lw=2, label=num(lr) + (f" ×{count[lr]}" if count[lr] > 1 else "")) for lr in rates]


def _draw_many(ax, runs: Sequence[Run], colors, key: str, ceiling: float | None) -> bool:
    """Every run's curve in one LineCollection (one artist instead of one per run: a 1,000-run study draws in a
    fraction of the time); no markers, line styles as for few runs."""
    from matplotlib.collections import LineCollection

    segments, styles, clipped = [], [], False
    for run in runs:
        y = run.val_error if key == "val_error" else run.column(key)
        if ceiling is not None and np.any(y > ceiling):
            y, clipped = np.minimum(y, ceiling), True
        segments.append(np.column_stack([run.epochs, y]))
        styles.append(_line_style(run))
    ax.add_collection(LineCollection(segments, colors=colors, linestyles=styles, linewidths=1.0, alpha=0.8))
    ax.autoscale_view()
    return clipped


def _draw_curves(ax, runs: Sequence[Run], colors, key: str, ceiling: float | None, labels: bool) -> bool:
    if len(runs) > MANY_RUNS:
        return _draw_many(ax, runs, colors, key, ceiling)
    clipped = False
    for i, (run, color) in enumerate(zip(runs, colors, strict=True)):
        y = run.val_error if key == "val_error" else run.column(key)
        if ceiling is not None and np.any(y > ceiling):
            y, clipped = np.minimum(y, ceiling), True
        label = num(run.lr) + run.label_note() if labels else None
        ax.plot(run.epochs, y, _line_style(run), color=color, lw=1.8, marker=_MARKERS[i % len(_MARKERS)], ms=4, label=label)
    return clipped


def diverged_marks(ax, runs, colors, key: str) -> None:
    top = ax.get_ylim()[1]
    for run, color in zip(runs, colors, strict=True):
        if run.status == "diverged" and len(run.epochs):  # ✕ where it stopped; NaN/inf or off the scale is drawn at the top
            y = (run.val_error if key == "val_error" else run.column(key))[-1]
            y = y if np.isfinite(y) and y <= top else top
            ax.plot([run.epochs[-1]], [y], "X", color=color, ms=10, mec="black", mew=0.6, clip_on=False, zorder=4)


def _legend(ax, runs: Sequence[Run], clipped: bool = False, colors=None) -> None:
    title = "learning rate"
    handles = None
    if len(runs) > MANY_RUNS and colors is not None:
        handles = _rate_handles(runs, colors)
        rates = len({r.lr for r in runs})
        title += f"\n({len(runs)} runs, {rates} rates" + (f", {len(handles)} listed" if len(handles) < rates else "") + ")"
    notes = []
    if any(r.status == "diverged" for r in runs):
        notes.append("dashed, ✕: diverged" + (", clipped at the top" if clipped else ""))
    if any(r.status == "ok" and r.learned is False for r in runs):
        notes.append("dash-dot: did not learn")
    if notes:
        title += "\n(" + ";\n".join(notes) + ")"
    ax.legend(handles=handles, title=title, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _val_error_figure(runs, colors, title: str, caption, log_scale: bool):
    fig = new_figure(8.5, 5.2, caption)
    ax = fig.subplots()
    _draw_curves(ax, runs, colors, "val_error", None, True)
    chance = chance_line(ax, runs)
    error_limits(ax, [v for r in runs for v in r.val_error], chance, log_scale)
    diverged_marks(ax, runs, colors, "val_error")
    ax.set(title=title, xlabel="epoch", ylabel=VAL_ERROR)
    integer_epochs(ax)
    _legend(ax, runs, colors=colors)
    return fig


def loss_ceiling(runs: Sequence[Run], keys: Sequence[str], log_scale: bool) -> float | None:
    """Where to cut the loss axis so a diverged run's loss (1e8 is common: Keras clips cross-entropy)
    does not flatten every other curve; None when nothing needs cutting."""
    values = [v for r in runs for k in keys for v in r.column(k) if np.isfinite(v)]
    healthy = [v for r in runs if r.status != "diverged" for k in keys for v in r.column(k) if np.isfinite(v) and v > 0]
    if healthy and max(values) > (100 if log_scale else 3) * max(healthy):
        return (10 if log_scale else 1.15) * max(healthy)
    return None


def _loss_figure(runs, colors, title: str, caption, log_scale: bool):
    """Training loss and validation loss side by side, on one y scale."""
    fig = new_figure(13, 5.2, caption)
    fig.suptitle(title)
    axes = fig.subplots(1, 2, sharey=True)
    keys = [k for k in ("loss", "val_loss") if any(np.isfinite(r.column(k)).any() for r in runs)] or ["loss"]
    ceiling = loss_ceiling(runs, keys, log_scale)
    clipped = False
    for ax, key, what in zip(axes, ("loss", "val_loss"), ("training loss", "validation loss"), strict=True):
        clipped |= _draw_curves(ax, runs, colors, key, ceiling, ax is axes[-1])
        ax.set(title=what.capitalize() + ("" if key in keys else " (not recorded)"), xlabel="epoch", ylabel=f"{what} (cross-entropy)")
        integer_epochs(ax)
    if log_scale and log_axis(axes[0]):
        axes[0].set_ylim(top=ceiling)
    elif ceiling is not None:
        axes[0].set_ylim(0, ceiling)
    else:
        axes[0].set_ylim(bottom=0)
    for ax, key in zip(axes, ("loss", "val_loss"), strict=True):
        diverged_marks(ax, runs, colors, key)
    _legend(axes[-1], runs, clipped, colors)
    return fig


@styled
def plot_sweep(
    sweep_dir: str | Path,
    out_dir: str | Path | None = None,
    formats: Sequence[str] = DEFAULT_FORMATS,
    log_scale: bool = False,
    loaded: tuple[list[Run], list[tuple[float, str]]] | None = None,
) -> list[Path]:
    """A learning-rate sweep → val_error_curves.*, loss_curves.* (training and validation loss; one line
    per rate, coloured by rate) and error_vs_lr.* (final and best validation error vs rate, 95 % CI).
    `loaded`: what `load_sweep(sweep_dir)` returned, when the caller has read it already."""
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir or sweep_dir)
    runs, missing = loaded if loaded is not None else load_sweep(sweep_dir)
    if not runs:
        return []
    name = join(r.record.get("name") for r in runs) or sweep_dir.name
    if more := epochs_and_seed(runs):
        name += f" ({more})"
    extra = [f"sweep: {sweep_dir.name}"]
    if missing:
        extra.append("no epochs recorded for " + ", ".join(f"lr {num(lr)} ({status})" for lr, status in missing))
    caption = run_caption(runs, extra)
    colors = sweep_colors(runs)
    written = save(_val_error_figure(runs, colors, f"{name}: validation error per learning rate", caption, log_scale), out_dir,
                   "val_error_curves", formats)  # fmt: skip
    written += save(_loss_figure(runs, colors, f"{name}: loss per learning rate", caption, log_scale), out_dir, "loss_curves", formats)
    ci = "error bars: 95 % Wilson interval from the validation set's size"
    written += save(_error_vs_lr_figure(runs, name, [*caption, ci], log_scale), out_dir, "error_vs_lr", formats)
    return written


def _last_finite(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if len(finite) else float("nan")


def _interval(errors: np.ndarray, runs: Sequence[Run]) -> np.ndarray:
    """2 × n distances below and above each error (0 where the validation size is unknown)."""
    bars = np.zeros((2, len(runs)))
    for i, (e, run) in enumerate(zip(errors, runs, strict=True)):
        n = run.data.get("val_samples")
        if n and np.isfinite(e):
            lo, hi = wilson_interval(e, n)
            bars[:, i] = e - lo, hi - e
    return bars


def _zoom(ax, lows: np.ndarray, highs: np.ndarray, log_scale: bool) -> tuple[float, float]:
    """y limits around the interval [lows, highs] of the data, a little margin beside it; nothing else forced in."""
    lows, highs = lows[np.isfinite(lows)], highs[np.isfinite(highs)]
    if log_scale and log_axis(ax):
        lows = lows[lows > 0]
        bottom, top = (float(lows.min()), float(highs.max())) if len(lows) and len(highs) else (1e-3, 1.0)
        pad = (top / bottom) ** 0.08 if top > bottom else 1.5
        bottom, top = bottom / pad, top * pad
        ax.grid(True, which="minor", axis="y", alpha=0.12)  # the log-spaced grid of a log axis
    else:
        bottom, top = (float(lows.min()), float(highs.max())) if len(lows) and len(highs) else (0.0, 1.0)
        pad = 0.08 * (top - bottom) or 0.01
        bottom, top = max(0.0, bottom - pad), min(1.0, top + pad) if top <= 1.0 else top + pad
    ax.grid(True, which="major", axis="y")  # evenly spaced on the axis' own scale
    ax.set_ylim(bottom, top)
    return bottom, top


def _error_vs_lr_figure(runs: Sequence[Run], name: str, caption: Sequence[str], log_scale: bool = False):
    """Which rate is best: final and best validation error per rate, the y axis zoomed to the runs that learned
    (with their 95 % bars); chance, and runs that did not learn, marked at the edge when they lie beyond it."""
    from matplotlib.ticker import LogLocator, NullFormatter

    fig = new_figure(8.5, 5.2, caption)
    ax = fig.subplots()
    rates = np.array([r.lr for r in runs])
    final = np.array([_last_finite(r.val_error) for r in runs])
    best = np.array([r.best_val_error for r in runs])
    final_bars, best_bars = _interval(final, runs), _interval(best, runs)
    ax.errorbar(rates, final, yerr=final_bars, fmt="o-", color="tab:blue", capsize=3, label="final (last epoch)")
    ax.errorbar(rates, best, yerr=best_bars, fmt="^--", color="tab:green", capsize=3, label="best (lowest over epochs)")
    chance = chance_line(ax, runs)
    ok = [i for i, r in enumerate(runs) if r.status == "ok" and np.isfinite(best[i]) and r.learned is not False]
    if ok:
        i = min(ok, key=lambda j: (best[j], rates[j]))
        ax.plot([rates[i]], [best[i]], "*", color="gold", ms=16, mec="black", mew=0.6, ls="none", zorder=4,
                label=f"lowest of the ok runs: {best[i]:.3f} at lr {num(rates[i])}")  # fmt: skip
    zoom = ok or list(range(len(runs)))
    bottom, top = _zoom(ax, np.concatenate([final[zoom] - final_bars[0, zoom], best[zoom] - best_bars[0, zoom]]),
                        np.concatenate([final[zoom] + final_bars[1, zoom], best[zoom] + best_bars[1, zoom]]), log_scale)  # fmt: skip
    if chance > top:  # noted, not forcing the range: the rates that learned would shrink to a line at the bottom
        ax.annotate(f"chance {chance:.3g} (above)", xy=(0.5, 1.0), xytext=(0.5, 0.9), xycoords="axes fraction", color="0.35",
                    fontsize=8, ha="center", va="top", arrowprops={"arrowstyle": "->", "color": "0.45"})  # fmt: skip
    bad = [i for i, r in enumerate(runs) if r.status != "ok" or r.learned is False]
    if bad:
        inside = [bool(np.isfinite(final[i]) and bottom <= final[i] <= top) for i in bad]
        y_bad = np.array([final[i] if keep else top for i, keep in zip(bad, inside, strict=True)])
        ax.plot(rates[bad], y_bad, "X", color="tab:red", ms=10, mec="black", mew=0.6, ls="none", zorder=4, clip_on=False,
                label="not ok or did not learn (named beside it; ↑ value: beyond the top)")  # fmt: skip
        for i, y, keep in zip(bad, y_bad, inside, strict=True):
            text = runs[i].label_note().strip(" ()") + ("" if keep else f" ↑ {final[i]:.3g}" if np.isfinite(final[i]) else " ↑")
            ax.annotate(text, (rates[i], y), textcoords="offset points", xytext=(0, 9 if keep else -18), ha="center", fontsize=8,
                        c="tab:red", annotation_clip=False)  # fmt: skip
    ax.set_xscale("log")
    ax.margins(x=0.06)
    if len(rates) <= 12:
        ax.set_xticks(rates, [num(r) for r in rates], rotation=45 if len(rates) > 6 else 0)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(False, which="major", axis="x")  # ticks at the rates; the grid stays log-spaced, below
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.grid(True, which="minor", axis="x")
    ylabel = VAL_ERROR + (", log scale" if ax.get_yscale() == "log" else "")
    ax.set(title=f"{name}: validation error vs learning rate", xlabel="learning rate (log scale)", ylabel=ylabel)
    ax.legend(loc="best")
    return fig
