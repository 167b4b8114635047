"""Figures from results folders: learning curves of runs and sweeps, runtime plots of benches.

Reads only what `train`, `sweep-lr` and `bench` wrote (never training code); returns the paths it wrote.

>>> paths = plot_results("results/")                 # every run, sweep and bench below results/
>>> a, b, r2 = fit_linear([1, 2, 3], [3, 5, 7])      # t = a + b·P
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.errors import UsageError
from cnnbench.results import find_results, find_runs, load_bench, load_history, read_record

FORMATS = ("png", "svg", "pdf")
DEFAULT_FORMATS = ("png", "svg")
MIN_FIT_POINTS = 3  # two points fit any curve exactly; R² means something from three on

_STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.axisbelow": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.framealpha": 0.9,
    "svg.hashsalt": "cnnbench",  # stable SVG ids, so committed figures only change when the data do
}
_METADATA = {"png": {}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
_CAPTION_PT = 7.5
_SEP = "  ·  "


# --- curve fits (numpy only) -------------------------------------------------------------------


def _points(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("x and y must be 1-D sequences of the same length")
    if len(np.unique(x)) < 2:
        raise ValueError("a fit needs at least two distinct x values")
    return x, y


def _r2(y: np.ndarray, predicted: np.ndarray) -> float:
    ss_res = float(np.sum((y - predicted) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


def fit_linear(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares line y = a + b·x: returns (a, b, R²).

    >>> [round(v, 6) for v in fit_linear([1, 2, 3], [3, 5, 7])]
    [1.0, 2.0, 1.0]
    """
    x, y = _points(x, y)
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b), _r2(y, a + b * x)


def fit_power(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Power law y = c·x^k, fitted as a line in log-log space: returns (c, k, R²).

    R² is measured on y itself (not on log y), so it compares with `fit_linear`'s.
    k ≈ 1 is linear growth, k > 1 faster than linear; exponential growth would show as a k that
    keeps rising with x.

    >>> [round(v, 6) for v in fit_power([1, 2, 4], [3, 12, 48])]
    [3.0, 2.0, 1.0]
    """
    x, y = _points(x, y)
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("a power-law fit needs positive x and y")
    k, log_c = np.polyfit(np.log(x), np.log(y), 1)
    c = math.exp(log_c)
    return c, float(k), _r2(y, c * x**k)


# --- the one door ------------------------------------------------------------------------------


def parse_formats(text: str | Iterable[str]) -> tuple[str, ...]:
    """'png,svg' → ('png', 'svg'); UsageError for an empty list or an unknown format."""
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = tuple(dict.fromkeys(item.strip().lower().lstrip(".") for item in items if item.strip()))
    if not formats:
        raise UsageError(f"--format needs at least one of {', '.join(FORMATS)}")
    for fmt in formats:
        if fmt not in FORMATS:
            raise UsageError(f"unknown figure format {fmt!r} in --format; use {', '.join(FORMATS)} (comma-separated)")
    return formats


def plot_results(
    root: str | Path,
    formats: Sequence[str] = DEFAULT_FORMATS,
    log_scale: bool = False,
    out: str | Path | None = None,
) -> list[Path]:
    """Plot every plain run, sweep and bench at or below `root`; return the files written.

    Figures go into the folder they plot, or with `out` into `out/<that folder relative to root>`.
    `log_scale` puts error and loss curves on a log y axis. Raises UsageError when root holds
    nothing to plot.
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

    written: list[Path] = []
    for folder in found["sweeps"]:
        written += plot_sweep(folder, target(folder), formats, log_scale)
    for folder in found["benches"]:
        written += plot_bench(folder, target(folder), formats)
    for folder in found["runs"]:
        written += plot_run(folder, target(folder), formats, log_scale)
    if not written:
        singular = {"runs": "run", "sweeps": "sweep", "benches": "bench"}
        counts = ", ".join(f"{len(v)} {singular[k] if len(v) == 1 else k}" for k, v in found.items() if v)
        raise UsageError(f"nothing to plot under {root}: found {counts}, but no finished epoch or measured row yet")
    return written


# --- figure plumbing ---------------------------------------------------------------------------


def _styled(plot: Callable[..., list[Path]]) -> Callable[..., list[Path]]:
    """Build the figures of `plot` under the house style (rcParams are read as artists are made)."""

    @functools.wraps(plot)
    def wrapper(*args: Any, **kwargs: Any) -> list[Path]:
        import matplotlib

        with matplotlib.rc_context(_STYLE):
            return plot(*args, **kwargs)

    return wrapper


def _caption_lines(parts: Sequence[str], width_in: float) -> list[str]:
    """Caption parts joined by ' · ', broken into lines between parts where possible."""
    limit = int(width_in * 72 / (_CAPTION_PT * 0.52))
    lines: list[str] = []
    for part in (p for p in parts if p):
        if lines and len(lines[-1]) + len(_SEP) + len(part) <= limit:
            lines[-1] += _SEP + part
        else:
            lines += textwrap.wrap(part, width=limit)
    return lines


def _figure(width: float, height: float, caption: Sequence[str]):
    """A pyplot-free Agg figure (no global backend switch) with a caption at the bottom."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    lines = _caption_lines(caption, width)
    if lines:
        bottom = (len(lines) * _CAPTION_PT * 1.35 + 10) / 72 / height
        fig.get_layout_engine().set(rect=(0, bottom, 1, 1 - bottom))
        fig.text(0.01, 0.015, "\n".join(lines), fontsize=_CAPTION_PT, color="0.35", va="bottom", ha="left", linespacing=1.35)
    return fig


def _save(fig, folder: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    """Write `folder/stem.<fmt>` for each format, each atomically (temp file + rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = folder / f"{stem}.{fmt}"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        try:
            fig.savefig(tmp, format=fmt, dpi=150, metadata=_METADATA[fmt])
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        paths.append(path)
    return paths


def _join(values: Iterable[Any]) -> str:
    """Distinct non-empty values joined by '/' (one value when all agree)."""
    return "/".join(dict.fromkeys(str(v) for v in values if v is not None and v == v and str(v) not in ("", "nan")))


def _device_label(device: Any, name: Any) -> str:
    return f"{device} ({name})" if name and str(name) not in (str(device), "nan") else str(device)


def _num(value: Any) -> str:
    """8, 0.07, 1e-05: a number without float noise (anything else as it is)."""
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _sci(value: float, digits: int = 3) -> str:
    """A number as mathtext: 0.152, 7.61\\times10^{-7}."""
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.{digits}g}"
    exponent = math.floor(math.log10(abs(value)))
    return rf"{value / 10**exponent:.{digits}g}\times10^{{{exponent}}}"


def _count(value: float, _pos: Any = None) -> str:
    """Parameter counts on an axis: 500k, 1M, 2.2M."""
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def _plain(value: float, _pos: Any = None) -> str:
    """A tick label: 0.02, 5000, and powers of ten beyond that range ($10^{7}$)."""
    if 1e-3 <= abs(value) < 1e6 or value == 0:
        return f"{value:g}"
    return f"${_sci(value, 2)}$".replace("$1\\times", "$")


def _plain_log_ticks(axis, formatter: Callable[[float, Any], str] = _plain) -> None:
    """Log-axis labels as plain numbers (0.2, 0.5, 1, 2) instead of 2×10⁻¹, on the ticks that
    matplotlib would label (ticks between decades only when the axis spans few decades)."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        def _num_to_string(self, x, vmin, vmax):
            return formatter(x)

    axis.set_major_formatter(Plain())
    axis.set_minor_formatter(Plain(minor_thresholds=(2, 1)))


# --- runs and sweeps ---------------------------------------------------------------------------


def _run_record(run_dir: Path) -> dict[str, Any]:
    return read_record(run_dir / "run.json") or {}


def _run_caption(records: Sequence[dict[str, Any]], extra: Sequence[str] = ()) -> list[str]:
    """Dataset (with its split), device (with its name), backend, optimizer and batch of the runs."""
    data = [r.get("data") or {} for r in records]
    dataset = _join(d.get("name") for d in data)
    split = [d for d in data if d.get("train_samples") and d.get("val_samples")]
    sizes = _join(f"{d['train_samples']:,} train / {d['val_samples']:,} val" for d in split)
    devices = _join(_device_label(r.get("device"), r.get("device_name")) for r in records if r.get("device"))
    backend = _join(r.get("backend") for r in records)
    batch = _join(r.get("batch_size") for r in records)
    return [
        f"data: {dataset}" + (f" ({sizes})" if sizes else "") if dataset else "",
        f"device: {devices}" if devices else "",
        f"backend: {backend}" if backend else "",
        _join(r.get("optimizer") for r in records),
        f"batch {batch}" if batch else "",
        *extra,
    ]


def _error_series(history) -> tuple[np.ndarray, np.ndarray]:
    if "val_error" in history:
        errors = history["val_error"].to_numpy(dtype=float)
    elif "val_accuracy" in history:
        errors = 1.0 - history["val_accuracy"].to_numpy(dtype=float)
    else:
        errors = np.full(len(history), np.nan)
    return history["epoch"].to_numpy(dtype=float), errors


@_styled
def plot_run(
    run_dir: str | Path, out_dir: str | Path | None = None, formats: Sequence[str] = DEFAULT_FORMATS, log_scale: bool = False
) -> list[Path]:
    """One `train` run → curves.*: error and loss vs epoch (training and validation), epoch times."""
    run_dir = Path(run_dir)
    record, history = _run_record(run_dir), load_history(run_dir)
    if history.empty or "epoch" not in history:
        return []
    epochs, val_error = _error_series(history)
    title = record.get("name", run_dir.name)
    if "learning_rate" in record:
        title += f": learning rate {_num(record['learning_rate'])}"
    if record.get("status", "ok") != "ok":
        title += f" ({record['status']})"
    fig = _figure(12, 3.8, _run_caption([record], [f"run: {run_dir.name}"]))
    fig.suptitle(title)
    ax_err, ax_loss, ax_time = fig.subplots(1, 3)

    if "accuracy" in history:
        ax_err.plot(epochs, 1.0 - history["accuracy"].to_numpy(dtype=float), "o-", ms=3, label="training")
    ax_err.plot(epochs, val_error, "o-", ms=3, label="validation")
    ax_err.set(title="Error", xlabel="epoch", ylabel="error (fraction misclassified)")
    for column, label in (("loss", "training"), ("val_loss", "validation")):
        if column in history:
            ax_loss.plot(epochs, history[column].to_numpy(dtype=float), "o-", ms=3, label=label)
    ax_loss.set(title="Loss", xlabel="epoch", ylabel="cross-entropy loss")
    for ax in (ax_err, ax_loss):
        ax.legend()
        _integer_epochs(ax)
        if log_scale:
            ax.set_yscale("log")
            _plain_log_ticks(ax.yaxis)

    if "epoch_time_s" in history:
        from matplotlib.patches import Patch

        times = history["epoch_time_s"].to_numpy(dtype=float)
        ax_time.bar(epochs, times, color=["tab:orange"] + ["tab:blue"] * (len(times) - 1), width=0.7)
        if len(times) > 1:
            median = float(np.median(times[1:]))
            ax_time.axhline(median, color="0.3", lw=1, ls="--", label=f"steady median {median:.3g} s")
        handles = [Patch(color="tab:orange", label="first epoch (incl. tracing)"), *ax_time.get_legend_handles_labels()[0]]
        ax_time.legend(handles=handles)
        _integer_epochs(ax_time)
    ax_time.set(title="Epoch time", xlabel="epoch", ylabel="time per epoch (s)")
    return _save(fig, Path(out_dir or run_dir), "curves", formats)


_VAL_ERROR = "validation error (fraction misclassified)"
_LINESTYLE = {"ok": "-", "diverged": "--"}  # every other status (running, failed, interrupted) dotted


def _load_sweep(sweep_dir: Path) -> tuple[list[dict[str, Any]], list[tuple[float, str]]]:
    """The sweep's runs that have epochs, sorted by learning rate ({lr, status, record, epochs,
    val_error, loss} each), and (lr, status) of summary.csv rows with nothing to draw."""
    import pandas as pd

    runs = []
    for run_dir in find_runs(sweep_dir):
        record, history = _run_record(run_dir), load_history(run_dir)
        lr = record.get("learning_rate")
        if lr is None and "learning_rate" in history and len(history):
            lr = float(history["learning_rate"].iloc[0])
        if lr is None or history.empty or "epoch" not in history:
            continue
        epochs, val_error = _error_series(history)
        loss = history["loss"].to_numpy(dtype=float) if "loss" in history else np.full(len(history), np.nan)
        status = record.get("status", "?")
        runs.append({"lr": float(lr), "status": status, "record": record, "epochs": epochs, "val_error": val_error, "loss": loss})
    runs.sort(key=lambda r: r["lr"])
    missing: list[tuple[float, str]] = []
    summary = sweep_dir / "summary.csv"
    if summary.is_file() and summary.stat().st_size:
        drawn = [r["lr"] for r in runs]
        for row in pd.read_csv(summary).to_dict("records"):
            lr = pd.to_numeric(row.get("learning_rate"), errors="coerce")
            if lr == lr and not any(math.isclose(lr, d, rel_tol=1e-9) for d in drawn):
                missing.append((float(lr), str(row.get("status", "?"))))
    return runs, sorted(missing)


def _lr_colors(rates: Sequence[float]) -> list:
    """Sequential viridis colours (dark: small rate), evenly spaced by rank of the rates (given sorted).

    Rank rather than log rate: one far-off rate (a diverging 500 next to 0.001…0.1) would otherwise
    squeeze all the others into one shade; for log-spaced grids both are the same.
    """
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    n = len(rates)
    return [cmap(0.88 * i / (n - 1)) if n > 1 else cmap(0.45) for i in range(n)]


def _curves_figure(runs, colors, key: str, ylabel: str, title: str, caption: Sequence[str], log_scale: bool):
    fig = _figure(8, 5, caption)
    ax = fig.subplots()
    # A diverged run's loss (1e8 is common: Keras clips cross-entropy) would flatten every other curve.
    ceiling = None
    healthy = [v for r in runs if r["status"] != "diverged" for v in r[key] if np.isfinite(v) and v > 0]
    everything = [v for r in runs for v in r[key] if np.isfinite(v)]
    if healthy and max(everything) > (100 if log_scale else 3) * max(healthy):
        ceiling = (10 if log_scale else 1.15) * max(healthy)
    clipped = False
    for run, color in zip(runs, colors, strict=True):
        status, y = run["status"], run[key]
        if ceiling is not None and np.any(y > ceiling):
            y, clipped = np.minimum(y, ceiling), True
        label = _num(run["lr"]) + ("" if status == "ok" else f" ({status})")
        ax.plot(run["epochs"], y, _LINESTYLE.get(status, ":"), color=color, lw=1.8, marker="o", ms=3, label=label)
    if log_scale:
        ax.set_yscale("log")
        ax.set_ylim(top=ceiling)
        _plain_log_ticks(ax.yaxis)
    elif ceiling is not None:
        ax.set_ylim(0, ceiling)
    top = ax.get_ylim()[1]
    for run, color in zip(runs, colors, strict=True):
        if run["status"] == "diverged":  # ✕ where it stopped; NaN/inf or off the scale is drawn at the top
            y = run[key][-1]
            y = y if np.isfinite(y) and y <= top else top
            ax.plot([run["epochs"][-1]], [y], "X", color=color, ms=10, mec="black", mew=0.6, clip_on=False, zorder=4)
    ax.set(title=title, xlabel="epoch", ylabel=ylabel)
    _integer_epochs(ax)
    legend_title = "learning rate"
    if any(r["status"] == "diverged" for r in runs):
        legend_title += "\n(dashed, ✕: diverged" + (";\nclipped at the top)" if clipped else ")")
    ax.legend(title=legend_title, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


@_styled
def plot_sweep(
    sweep_dir: str | Path, out_dir: str | Path | None = None, formats: Sequence[str] = DEFAULT_FORMATS, log_scale: bool = False
) -> list[Path]:
    """A learning-rate sweep → val_error_curves.*, loss_curves.* (one line per rate, coloured by
    rate) and error_vs_lr.* (final and best validation error vs learning rate)."""
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir or sweep_dir)
    runs, missing = _load_sweep(sweep_dir)
    if not runs:
        return []
    name = _join(r["record"].get("name") for r in runs) or sweep_dir.name
    extra = [f"sweep: {sweep_dir.name}"]
    if missing:
        extra.append("no epochs recorded for " + ", ".join(f"lr {_num(lr)} ({status})" for lr, status in missing))
    caption = _run_caption([r["record"] for r in runs], extra)
    colors = _lr_colors([r["lr"] for r in runs])
    written = []
    for key, ylabel, what, stem in (
        ("val_error", _VAL_ERROR, "validation error", "val_error_curves"),
        ("loss", "training loss (cross-entropy)", "training loss", "loss_curves"),
    ):
        fig = _curves_figure(runs, colors, key, ylabel, f"{name}: {what} per learning rate", caption, log_scale)
        written += _save(fig, out_dir, stem, formats)
    written += _save(_error_vs_lr_figure(runs, name, caption), out_dir, "error_vs_lr", formats)
    return written


def _last_finite(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if len(finite) else float("nan")


def _error_vs_lr_figure(runs, name: str, caption: Sequence[str]):
    fig = _figure(8, 5, caption)
    ax = fig.subplots()
    rates = np.array([r["lr"] for r in runs])
    final = np.array([_last_finite(r["val_error"]) for r in runs])
    best = np.array([np.nanmin(r["val_error"]) if np.isfinite(r["val_error"]).any() else np.nan for r in runs])
    ax.plot(rates, final, "o-", color="tab:blue", label="final (last epoch)")
    ax.plot(rates, best, "^--", color="tab:green", label="best (lowest over epochs)")
    ok = [i for i, r in enumerate(runs) if r["status"] == "ok" and np.isfinite(best[i])]
    if ok:
        i = min(ok, key=lambda j: best[j])
        ax.plot([rates[i]], [best[i]], "*", color="gold", ms=16, mec="black", mew=0.6, ls="none", zorder=4,
                label=f"lowest of the ok runs: {best[i]:.3f} at lr {_num(rates[i])}")  # fmt: skip
    bad = [i for i, r in enumerate(runs) if r["status"] != "ok"]
    if bad:
        y_bad = np.where(np.isfinite(final[bad]), final[bad], np.nanmax(final))
        ax.plot(rates[bad], y_bad, "X", color="tab:red", ms=10, mec="black", mew=0.6, ls="none", zorder=4, label="not ok (status written)")
        for i, y in zip(bad, y_bad, strict=True):
            ax.annotate(runs[i]["status"], (rates[i], y), textcoords="offset points", xytext=(0, 9), ha="center", fontsize=8, c="tab:red")
    ax.set_xscale("log")
    ax.margins(x=0.06, y=0.1)
    if len(rates) <= 12:
        from matplotlib.ticker import NullFormatter

        ax.set_xticks(rates, [_num(r) for r in rates], rotation=45 if len(rates) > 6 else 0)
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(title=f"{name}: validation error vs learning rate", xlabel="learning rate (log scale)", ylabel=_VAL_ERROR)
    ax.legend(loc="best")
    return fig


# --- benches -----------------------------------------------------------------------------------

_BACKEND_COLORS = {"tensorflow": "tab:orange", "jax": "tab:blue", "torch": "tab:red", "jax·fit": "tab:blue", "jax·fused": "tab:green"}
_DEVICE_MARKERS = {"cpu": "o", "gpu": "s"}
_NUMERIC = ("filters", "params", "batch_size", "epochs", "epoch_s_median", "total_s", "samples_per_s", "gflops_per_s")


def _ok_rows(bench):
    """The rows measured ok that have a parameter count and a steady epoch time, numbers as floats."""
    import pandas as pd

    if bench.empty or not {"status", "device", "backend", "params", "epoch_s_median"} <= set(bench.columns):
        return pd.DataFrame()
    ok = bench[bench["status"].astype(str) == "ok"].copy()
    for column in _NUMERIC:
        if column in ok:
            ok[column] = pd.to_numeric(ok[column], errors="coerce")
    ok["device"], ok["backend"] = ok["device"].astype(str), ok["backend"].astype(str)
    ok["device_name"] = ok["device_name"].astype(str) if "device_name" in ok else ok["device"]
    if "engine" in ok and ok["engine"].nunique(dropna=True) > 1:  # bench --engines fit,fused: one series per backend · engine
        ok["backend"] = ok["backend"] + "·" + ok["engine"].fillna("-").astype(str)
    if "estimated" not in ok:
        ok["estimated"] = False
    return ok.dropna(subset=["params", "epoch_s_median"])


def _bench_caption(bench_dir: Path, info: dict[str, Any], rows, extra: Sequence[str] = ()) -> list[str]:
    """Spec name, dataset, batch and epochs (from bench.json where the rows lack them)."""
    options = info.get("options") if isinstance(info.get("options"), dict) else {}
    spec = info.get("spec") if isinstance(info.get("spec"), dict) else {}
    dataset = _join(rows["dataset"]) if "dataset" in rows else None
    dataset = dataset or options.get("data") or options.get("dataset") or (spec.get("data") or {}).get("dataset")
    if isinstance(dataset, dict):
        dataset = dataset.get("name") or dataset.get("dataset")
    epochs = _join(f"{v:g}" for v in rows["epochs"].dropna()) if "epochs" in rows else options.get("epochs")
    batch = _join(f"{v:g}" for v in rows["batch_size"].dropna()) if "batch_size" in rows else options.get("batch_size")
    return [
        spec.get("name") or "",
        f"data: {dataset}" if dataset else "",
        f"batch {batch}" if batch else "",
        f"{epochs} epochs" if epochs else "",
        f"bench: {bench_dir.name}",
        *extra,
    ]


def _estimate_note(rows) -> list[str]:
    estimated = rows[rows["estimated"].astype(bool)]
    if estimated.empty:
        return []
    measured = _join(f"{v:g}" for v in estimated["measured_epochs"].dropna()) if "measured_epochs" in estimated else ""
    return [f"hollow markers: estimated rows (total time extrapolated from {measured or 'the'} measured epochs)"]


def _not_measured(bench, device: str | None = None) -> list[str]:
    """'not measured: gpu·jax 256 filters (oom), …' for the rows that are not ok."""
    if "status" not in bench:
        return []
    bad = bench[bench["status"].astype(str) != "ok"]
    if device is not None and "device" in bad:
        bad = bad[bad["device"].astype(str) == device]
    groups: dict[tuple, list[str]] = {}
    for r in bad.to_dict("records"):
        groups.setdefault((r.get("device"), r.get("backend"), r.get("status")), []).append(_num(r.get("filters")))
    items = [f"{device}·{backend} {'/'.join(filters)} filters ({status})" for (device, backend, status), filters in groups.items()]
    return ["not measured: " + ", ".join(items)] if items else []


def _scatter(ax, x, y, estimated, color, marker: str, label: str) -> None:
    """Measured points filled, estimated ones hollow; one legend entry either way."""
    estimated = np.asarray(estimated, dtype=bool)
    for mask, face in ((~estimated, color), (estimated, "none")):
        if mask.any():
            ax.scatter(x[mask], y[mask], facecolors=face, edgecolors=color, marker=marker, s=40, lw=1.4, zorder=3, label=label)
            label = None


def _fit_lines(ax, x: np.ndarray, y: np.ndarray, color) -> None:
    """The linear and power-law fits of t(P), with equations and R² as legend entries."""
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[keep], y[keep]
    if len(np.unique(x)) < MIN_FIT_POINTS:
        return
    grid = np.linspace(x.min(), x.max(), 200)
    a, b, r2 = fit_linear(x, y)
    ax.plot(grid, a + b * grid, "-", color=color, lw=1.2, alpha=0.8, label=rf"linear: $t = {_sci(a)} + {_sci(b)}\,P$   $R^2$ = {r2:.3f}")
    c, k, r2 = fit_power(x, y)
    ax.plot(grid, c * grid**k, "--", color=color, lw=1.2, alpha=0.8, label=rf"power: $t = {_sci(c)}\,P^{{{k:.2f}}}$   $R^2$ = {r2:.3f}")


def _series(ok):
    """(device, device name, backend, rows sorted by filters) for every device × backend measured."""
    for (device, name, backend), group in ok.groupby(["device", "device_name", "backend"], sort=True):
        yield device, name, backend, group.sort_values("filters")


def _style_of(device: str, backend: str) -> tuple[str, str, str]:
    """Colour by backend, marker and line style by device."""
    return _BACKEND_COLORS.get(backend, "tab:gray"), _DEVICE_MARKERS.get(device, "D"), "-" if device == "gpu" else "--"


def _runtime_vs_params(ok, bench, device: str, bench_dir: Path, info: dict[str, Any]):
    rows = ok[ok["device"] == device]
    extra = [*_estimate_note(rows), *_not_measured(bench, device), "numbers next to points: filters per conv layer", "t in seconds"]
    fig = _figure(13, 6.4, _bench_caption(bench_dir, info, rows, extra))
    fig.suptitle(f"Training time vs number of parameters on {_device_label(device, _join(rows['device_name']))}")
    for ax, column, ylabel, title in zip(
        fig.subplots(1, 2),
        ("epoch_s_median", "total_s"),
        ("steady epoch time, median (s)", "total training time (s)"),
        ("Time per epoch", "Total training time (all epochs)"),
        strict=True,
    ):
        for backend, group in rows.groupby("backend", sort=True):
            group = group.sort_values("params")
            color, marker, _ = _style_of(device, backend)
            x, y = group["params"].to_numpy(dtype=float), _floats(group, column)
            _scatter(ax, x, y, group["estimated"].to_numpy(), color, marker, backend)
            _fit_lines(ax, x, y, color)
            for xi, yi, f in zip(x, y, group["filters"], strict=True):
                if np.isfinite(yi):
                    ax.annotate(f"{f:g}", (xi, yi), textcoords="offset points", xytext=(5, -11), fontsize=7, color="0.4")
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(_count))
        ax.set(title=title, xlabel="parameters P", ylabel=ylabel)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=min(rows["backend"].nunique(), 2), frameon=False)
    return fig


def _floats(frame, column: str) -> np.ndarray:
    """A column as floats (NaN where missing or not a number)."""
    if column not in frame:
        return np.full(len(frame), np.nan)
    import pandas as pd

    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def _runtime_loglog(ok, bench, bench_dir: Path, info: dict[str, Any]):
    fig = _figure(10, 5.4, _bench_caption(bench_dir, info, ok, _estimate_note(ok) + _not_measured(bench)))
    ax = fig.subplots()
    for device, name, backend, group in _series(ok):
        x, y = group["params"].to_numpy(dtype=float), group["epoch_s_median"].to_numpy(dtype=float)
        label = f"{_device_label(device, name)} · {backend}"
        keep = (x > 0) & (y > 0)
        if len(np.unique(x[keep])) >= MIN_FIT_POINTS:
            label += f"   $t \\propto P^{{{fit_power(x[keep], y[keep])[1]:.2f}}}$"
        color, marker, line = _style_of(device, backend)
        ax.plot(x, y, color=color, lw=1, alpha=0.6, ls=line)
        _scatter(ax, x, y, group["estimated"].to_numpy(), color, marker, label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax.xaxis, _count)
    _plain_log_ticks(ax.yaxis)
    ax.set(title="Steady epoch time vs parameters, all devices and backends", xlabel="parameters P (log scale)")
    ax.set_ylabel("steady epoch time, median (s, log scale)")
    ax.legend(title="device · backend   power-law exponent", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _speedups(ok):
    """GPU/CPU speed-up for every (backend, filters) measured ok on both devices; empty if none."""
    index = ["backend", "filters"]
    columns = [c for c in ("epoch_s_median", "total_s") if c in ok]
    cpu = ok[ok["device"] == "cpu"].groupby(index)[columns].median()
    gpu = ok[ok["device"] == "gpu"].groupby(index)[columns].median()
    both = cpu.join(gpu, lsuffix="_cpu", rsuffix="_gpu", how="inner").reset_index()
    both["speedup"] = both["epoch_s_median_cpu"] / both["epoch_s_median_gpu"]
    return both[np.isfinite(both["speedup"])]


def _speedup_figure(speedup, ok, bench_dir: Path, info: dict[str, Any]):
    devices = " over ".join(_device_label(d, _join(ok.loc[ok["device"] == d, "device_name"])) for d in ("gpu", "cpu"))
    caption = _bench_caption(bench_dir, info, ok, [devices, "speed-up = CPU steady epoch time / GPU steady epoch time, same backend"])
    fig = _figure(9, 5, caption)
    ax = fig.subplots()
    filters = sorted(speedup["filters"].unique())
    backends = sorted(speedup["backend"].unique())
    width = 0.8 / len(backends)
    for j, backend in enumerate(backends):
        group = speedup[speedup["backend"] == backend].set_index("filters")
        xs = [i + (j - (len(backends) - 1) / 2) * width for i, f in enumerate(filters) if f in group.index]
        values = [float(group.loc[f, "speedup"]) for f in filters if f in group.index]
        bars = ax.bar(xs, values, width=width * 0.9, color=_BACKEND_COLORS.get(backend, "tab:gray"), label=backend)
        ax.bar_label(bars, labels=[f"{v:.1f}×" for v in values], fontsize=8, padding=2)
    ax.axhline(1.0, color="0.3", lw=1, ls="--", label="1× (same speed)")
    ax.set_xticks(range(len(filters)), [f"{f:g}" for f in filters])
    ax.margins(y=0.12)
    ax.grid(axis="x", visible=False)
    ax.set(title="GPU speed-up over CPU per filter count", xlabel="filters per convolution layer", ylabel="speed-up (× faster on GPU)")
    ax.legend(title="backend")
    return fig


def _throughput_figure(ok, bench, bench_dir: Path, info: dict[str, Any]):
    from matplotlib.ticker import NullLocator

    extra = _estimate_note(ok) + _not_measured(bench) + ["GFLOP/s counts training as 3 × forward FLOPs per sample"]
    fig = _figure(13, 5.2, _bench_caption(bench_dir, info, ok, extra))
    fig.suptitle("Training throughput per filter count")
    filters = sorted(ok["filters"].dropna().unique())
    for ax, column, ylabel, title in zip(
        fig.subplots(1, 2),
        ("samples_per_s", "gflops_per_s"),
        ("samples per second (log scale)", "achieved GFLOP/s (log scale)"),
        ("Samples per second", "Achieved GFLOP/s"),
        strict=True,
    ):
        for device, name, backend, group in _series(ok):
            x, y = group["filters"].to_numpy(dtype=float), _floats(group, column)
            color, marker, line = _style_of(device, backend)
            ax.plot(x, y, color=color, lw=1, alpha=0.6, ls=line)
            _scatter(ax, x, y, group["estimated"].to_numpy(), color, marker, f"{_device_label(device, name)} · {backend}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(filters, [f"{f:g}" for f in filters])
        ax.xaxis.set_minor_locator(NullLocator())
        _plain_log_ticks(ax.yaxis)
        ax.set(title=title, xlabel="filters per convolution layer", ylabel=ylabel)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", title="device · backend")
    return fig


@_styled
def plot_bench(bench_dir: str | Path, out_dir: str | Path | None = None, formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    """A bench → runtime_vs_params_<device>.* (with linear and power-law fits), runtime_loglog.*,
    speedup.* (only when CPU and GPU were both measured ok) and throughput.*."""
    bench_dir = Path(bench_dir)
    out_dir = Path(out_dir or bench_dir)
    bench = load_bench(bench_dir)
    ok = _ok_rows(bench)
    if ok.empty:
        return []
    info = read_record(bench_dir / "bench.json") or {}
    written = []
    for device in sorted(ok["device"].unique()):
        written += _save(_runtime_vs_params(ok, bench, device, bench_dir, info), out_dir, f"runtime_vs_params_{device}", formats)
    written += _save(_runtime_loglog(ok, bench, bench_dir, info), out_dir, "runtime_loglog", formats)
    speedup = _speedups(ok)
    if not speedup.empty:
        written += _save(_speedup_figure(speedup, ok, bench_dir, info), out_dir, "speedup", formats)
    written += _save(_throughput_figure(ok, bench, bench_dir, info), out_dir, "throughput", formats)
    return written
