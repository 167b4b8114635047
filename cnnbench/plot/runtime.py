"""Runtime figures of a bench: time vs parameters and vs FLOPs with fits, log-log and semi-log views,
GPU/CPU speed-up and throughput; the fits and their verdicts also go to fits.csv.

A series is one device × backend (× engine, when bench.csv has that column).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.errors import OutputError
from cnnbench.plot.figure import DEFAULT_FORMATS, count, device_label, join, log_axis, new_figure, num, save, sci, styled
from cnnbench.plot.fits import MODELS, Growth, compare_growth, predict
from cnnbench.plot.load import read_bench
from cnnbench.results import write_csv

TRAINING_FLOPS_FACTOR = 3  # forward + backward ≈ 3 × the forward pass (as bench.py counts GFLOP/s)
FITS_COLUMNS = (
    "x", "y", "device", "device_name", "backend", "engine", "points", "verdict", "verdict_margin", "local_slopes",
    "linear_a", "linear_b", "linear_r2", "linear_miss", "linear_max_rel_residual",
    "power_c", "power_k", "power_r2", "power_miss", "power_max_rel_residual",
    "exponential_c", "exponential_b", "exponential_r2", "exponential_miss", "exponential_max_rel_residual",
    "within_noise", "noise", "measured_spread", "verdict_reason", "flat_c", "flat_r2", "flat_miss", "flat_max_rel_residual",
)  # fmt: skip
_BACKEND_COLORS = {"tensorflow": "tab:orange", "jax": "tab:blue", "torch": "tab:red"}
_FUSED_COLORS = {"jax": "tab:purple", "tensorflow": "tab:brown"}
_DEVICE_MARKERS = {"cpu": "o", "gpu": "s"}
_FIT_STYLE = {"flat": (0, (1, 3)), "linear": "-", "power": "--", "exponential": ":"}


class Metric:
    """What a runtime figure plots on y: the steady epoch time where any row has one, else the total
    (a bench of one epoch has no steady epoch; its total is its first epoch)."""

    def __init__(self, ok) -> None:
        self.steady = "epoch_s_median" in ok and bool(np.isfinite(ok["epoch_s_median"].to_numpy(dtype=float)).any())
        self.column = "epoch_s_median" if self.steady else "total_s"
        self.label = "steady epoch time, median (s)" if self.steady else "total training time (s)"
        self.short = "steady epoch time" if self.steady else "total training time"


def _floats(frame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype=float) if column in frame else np.full(len(frame), np.nan)


def _bounds(rows, column: str) -> np.ndarray:
    """2 × n error-bar lengths from the recorded fastest/slowest steady epoch (0 where not recorded).

    Steady epoch: [epoch_s_min, epoch_s_max]. Total: first + (epochs − 1) × [min, max], which bounds
    the sum of the epochs (and the extrapolation of an estimated row).
    """
    y = _floats(rows, column)
    lo, hi = _floats(rows, "epoch_s_min"), _floats(rows, "epoch_s_max")
    if column != "epoch_s_median":
        first, epochs = _floats(rows, "first_epoch_s"), _floats(rows, "epochs")
        lo, hi = first + (epochs - 1) * lo, first + (epochs - 1) * hi
    with np.errstate(invalid="ignore"):
        below, above = np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)
    return np.nan_to_num(np.vstack([below, above]), nan=0.0)


def series(ok) -> Iterator[tuple[dict[str, str], Any]]:
    """({device, device_name, backend, engine}, rows sorted by filters) for every series measured."""
    keys = ["device", "device_name", "backend", "engine"]
    for values, group in ok.groupby(keys, sort=True):
        yield dict(zip(keys, values, strict=True)), group.sort_values("filters" if "filters" in group else "params")


def _label(s: dict[str, str], with_device: bool = True) -> str:
    parts = [device_label(s["device"], s["device_name"])] if with_device else []
    return " · ".join([*parts, s["backend"], *([s["engine"]] if s["engine"] else [])])


def _style(s: dict[str, str]) -> tuple[str, str, str]:
    """Colour by backend (and engine), marker and line style by device."""
    colors = _FUSED_COLORS if s["engine"] == "fused" else _BACKEND_COLORS
    return colors.get(s["backend"], "tab:gray"), _DEVICE_MARKERS.get(s["device"], "D"), "-" if s["device"] == "gpu" else "--"


def _points(ax, x, y, bars, estimated, color, marker: str, label: str | None) -> None:
    """Measured points filled, estimated ones hollow, each with its min–max bar; one legend entry."""
    estimated = np.asarray(estimated, dtype=bool)
    keep = np.isfinite(x) & np.isfinite(y)
    ax.errorbar(x[keep], y[keep], yerr=bars[:, keep], fmt="none", ecolor=color, elinewidth=1, capsize=3, alpha=0.8, zorder=2)
    for mask, face in ((~estimated & keep, color), (estimated & keep, "none")):
        if mask.any():
            ax.scatter(x[mask], y[mask], facecolors=face, edgecolors=color, marker=marker, s=40, lw=1.4, zorder=3, label=label)
            label = None


def growth_of(group, x, column: str, expected: str | None = None) -> Growth:
    """The verdict of one series, judged against its recorded spread: the one call behind fits.csv and every figure."""
    y = _floats(group, column)
    bars = _bounds(group, column)
    return compare_growth(x, y, y - bars[0], y + bars[1], expected=expected)


def verdict_line(growth: Growth) -> str:
    """'verdict: power: the only candidate …' — fits.csv's `verdict` and `verdict_reason`, word for word."""
    return f"verdict: {growth.summary()}" if growth.verdict else ""


def _fit_curves(ax, x, y, color, growth: Growth, var: str = "P") -> None:
    """The fits of t(x) drawn over the data's span, each with its equation, R² and typical miss as a legend entry;
    the verdict's curve marked, none when the verdict is flat or inconclusive (flat drawn only where it fits)."""
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if not growth.fits:
        return
    grid = np.geomspace(x[keep].min(), x[keep].max(), 200)
    equations = {
        "flat": lambda p, q: rf"flat: $t = {sci(p)}$",
        "linear": lambda p, q: rf"linear: $t = {_line(p, q, var)}$",
        "power": lambda p, q: rf"power: $t = {sci(p)}\,{var}^{{{q:.2f}}}$",
        "exponential": lambda p, q: rf"exponential: $t = {sci(p)}\,e^{{{sci(q)}\,{var}}}$",
    }
    for model in MODELS:
        if model in growth.fits and (model != "flat" or model in growth.within):
            fit = growth.fits[model]
            p, q = fit.p, fit.q
            mark = "  ◀ verdict" if model == growth.verdict else ""
            ax.plot(grid, predict(model, (p, q), grid), ls=_FIT_STYLE[model], color=color, lw=1.2, alpha=0.8,
                    label=f"{equations[model](p, q)}   $R^2$ = {fit.r2:.3f}, miss {fit.miss_pct}{mark}")  # fmt: skip


def _line(a: float, b: float, var: str) -> str:
    """'0.15 + 8\\times10^{-7}\\,P' or '1.85 - 1.44\\times10^{-6}\\,P' (mathtext, no '+ -')."""
    return rf"{sci(a)} {'-' if b < 0 else '+'} {sci(abs(b))}\,{var}"


def _fit_row(x: str, y: str, s: dict[str, str], growth: Growth) -> dict[str, Any]:
    row: dict[str, Any] = {"x": x, "y": y, **s, "points": growth.n, "verdict": growth.verdict, "verdict_margin": growth.margin,
                           "local_slopes": ";".join(f"{v:.3f}" for v in growth.slopes), "within_noise": ";".join(growth.within),
                           "noise": growth.noise, "measured_spread": growth.spread, "verdict_reason": growth.reason}  # fmt: skip
    names = {"flat": ("c", None), "linear": ("a", "b"), "power": ("c", "k"), "exponential": ("c", "b")}
    for model, fit in growth.fits.items():
        first, second = names[model]
        row.update({f"{model}_{first}": fit.p, f"{model}_r2": fit.r2, f"{model}_miss": fit.miss,
                    f"{model}_max_rel_residual": fit.max_rel_residual})  # fmt: skip
        if second:
            row[f"{model}_{second}"] = fit.q
    return row


def _bench_caption(bench_dir: Path, info: dict[str, Any], rows, extra: Sequence[str] = ()) -> list[str]:
    """Spec name, dataset, batch and epochs (from bench.json where the rows lack them)."""
    options = info.get("options") if isinstance(info.get("options"), dict) else {}
    spec = info.get("spec") if isinstance(info.get("spec"), dict) else {}
    dataset = join(rows["dataset"]) if "dataset" in rows else None
    dataset = dataset or options.get("data") or options.get("dataset")
    dataset = dataset if isinstance(dataset, (str, int, float)) else None
    epochs = join(f"{v:g}" for v in rows["epochs"].dropna()) if "epochs" in rows else options.get("epochs")
    batch = join(f"{v:g}" for v in rows["batch_size"].dropna()) if "batch_size" in rows else options.get("batch_size")
    name = spec.get("name") if isinstance(spec.get("name"), str) else ""
    return [
        name[:60],
        f"data: {str(dataset)[:60]}" if dataset else "",
        f"batch {str(batch)[:20]}" if batch else "",
        f"{str(epochs)[:20]} epoch{'' if str(epochs) == '1' else 's'}" if epochs else "",
        f"bench: {bench_dir.name}",
        *extra,
    ]


def _estimate_note(rows) -> list[str]:
    estimated = rows[rows["estimated"].astype(bool)]
    if estimated.empty:
        return []
    measured = join(f"{v:g}" for v in estimated["measured_epochs"].dropna()) if "measured_epochs" in estimated else ""
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
        key = tuple(str(r.get(k, ""))[:20] for k in ("device", "backend", "engine", "status"))
        groups.setdefault(key, []).append(num(r.get("filters"))[:10])
    items = [f"{'·'.join(p for p in key[:3] if p and p != 'nan')} {'/'.join(f)} filters ({key[3]})" for key, f in list(groups.items())[:8]]
    return ["not measured: " + ", ".join(items)] if items else []


def _bars_note(metric: Metric) -> str:
    if metric.steady:
        return "error bars: fastest–slowest steady epoch (total: first + (epochs − 1) × that range)"
    return "one epoch: no steady epoch; times are totals (first epoch included); no spread recorded"


def _runtime_vs_params(ok, bench, device: str, bench_dir: Path, info: dict[str, Any], metric: Metric, fits: list):
    rows = ok[ok["device"] == device]
    extra = [*_estimate_note(rows), *_not_measured(bench, device), "numbers next to points: filters per conv layer", _bars_note(metric),
             "t in seconds"]  # fmt: skip
    panels = [("epoch_s_median", metric.label, "Time per epoch")] if metric.steady else []
    panels.append(("total_s", "total training time (s)", "Total training time (all epochs)"))
    fig = new_figure(13, _panel_height(rows) * len(panels) + 1.2, _bench_caption(bench_dir, info, rows, extra))
    fig.suptitle(f"Training time vs number of parameters on {device_label(device, join(rows['device_name']))}")
    axes = np.atleast_1d(fig.subplots(len(panels), 1))
    for ax, (column, ylabel, title) in zip(axes, panels, strict=True):
        for s, group in series(rows):
            color, marker, _ = _style(s)
            x, y = _floats(group, "params"), _floats(group, column)
            growth = growth_of(group, x, column)
            label = "\n".join(p for p in (_label(s, False), verdict_line(growth)) if p)
            _points(ax, x, y, _bounds(group, column), group["estimated"].to_numpy(), color, marker, label)
            _fit_curves(ax, x, y, color, growth)
            fits.append(_fit_row("params", column, s, growth))
            for xi, yi, f in zip(x, y, _floats(group, "filters"), strict=True):
                if np.isfinite(yi) and np.isfinite(f):
                    ax.annotate(f"{f:g}", (xi, yi), textcoords="offset points", xytext=(5, -11), fontsize=7, color="0.4")
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(count))
        ax.set(title=title, xlabel="parameters P", ylabel=ylabel)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _panel_height(rows) -> float:
    """Tall enough for the legend beside the panel: 4 entries (points and three fits) per series."""
    return max(4.2, 0.75 * len(list(series(rows))) + 1.2)


def _slopes_labels(ax, x, y, color) -> None:
    """The local log-log slope written between each pair of neighbouring points."""
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[keep], y[keep]
    order = np.argsort(x)
    x, y = x[order], y[order]
    for i in range(len(x) - 1):
        if x[i + 1] > x[i]:
            k = np.log(y[i + 1] / y[i]) / np.log(x[i + 1] / x[i])
            mid = (np.sqrt(x[i] * x[i + 1]), np.sqrt(y[i] * y[i + 1]))
            ax.annotate(f"{k:.2f}", mid, textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7, color=color,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})  # fmt: skip


def _runtime_growth(ok, bench, bench_dir: Path, info: dict[str, Any], metric: Metric):
    """Left: log-log (a power law is a straight line; local slopes written between points).
    Right: semi-log (an exponential in P is a straight line there)."""
    reading = "a straight line on log-log axes is a power law t ∝ P^k (k = the slope); on semi-log axes, an exponential t ∝ e^(bP)"
    extra = [*_estimate_note(ok), *_not_measured(bench), _bars_note(metric), reading]
    n = len(list(series(ok)))
    fig = new_figure(15, 6.0 + 0.42 * n, _bench_caption(bench_dir, info, ok, extra))
    fig.suptitle(f"{metric.short.capitalize()} vs parameters: which growth fits, all devices and backends")
    ax_log, ax_semi = fig.subplots(1, 2)
    data_y: list[float] = []
    for s, group in series(ok):
        color, marker, line = _style(s)
        x, y = _floats(group, "params"), _floats(group, metric.column)
        keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
        data_y += list(y[keep])
        bars = _bounds(group, metric.column)
        growth = growth_of(group, x, metric.column)
        verdict = f"\n   {verdict_line(growth)}" if growth.verdict else ""
        _points(ax_log, x, y, bars, group["estimated"].to_numpy(), color, marker, None)
        _points(ax_semi, x, y, bars, group["estimated"].to_numpy(), color, marker, _label(s) + verdict)
        if not growth.fits:
            continue
        grid = np.geomspace(x[keep].min(), x[keep].max(), 200)
        fit = growth.fits["power"]
        ax_log.plot(grid, predict("power", (fit.p, fit.q), grid), ls=line, color=color, lw=1.2, alpha=0.7,
                    label=rf"{_label(s)}: power $t \propto P^{{{fit.q:.2f}}}$, miss {fit.miss_pct}")  # fmt: skip
        fit = growth.fits["linear"]  # a line with an intercept bends on log-log axes: drawn too, as far as it stays positive
        t = predict("linear", (fit.p, fit.q), grid)
        shown = t > 0.5 * y[keep].min()  # a negative intercept sends the line to 0 (−∞ here) below the data
        ax_log.plot(grid[shown], t[shown], "-", color=color, lw=0.9, alpha=0.9,
                    label=rf"{_label(s)}: linear $t = {_line(fit.p, fit.q, 'P')}$, miss {fit.miss_pct}")  # fmt: skip
        fit = growth.fits["exponential"]
        ax_semi.plot(grid, predict("exponential", (fit.p, fit.q), grid), ls=line, color=color, lw=1.2, alpha=0.7,
                     label=rf"   exponential fit $t \propto e^{{{sci(fit.q)}\,P}}$, miss {fit.miss_pct}")  # fmt: skip
        _slopes_labels(ax_log, x, y, color)
    for ax in (ax_log, ax_semi):
        log_axis(ax)
        if data_y:
            ax.set_ylim(min(data_y) / 1.25, max(data_y) * 1.25)
        ax.set_ylabel(f"{metric.label[:-4]} (s, log scale)")
    log_axis(ax_log, "x", count)
    from matplotlib.ticker import FuncFormatter

    ax_semi.xaxis.set_major_formatter(FuncFormatter(count))
    ax_log.set(title="log-log: power law = straight line (numbers: local slope k)", xlabel="parameters P (log scale)")
    ax_semi.set(title="semi-log: exponential = straight line", xlabel="parameters P (linear scale)")
    below = {"title_fontsize": 8, "loc": "upper center", "bbox_to_anchor": (0.5, -0.13), "frameon": False}
    if ax_log.get_legend_handles_labels()[0]:
        ax_log.legend(title="fits (dashed: power law; solid: linear)", **below)
    ax_semi.legend(title="device · backend → verdict (as in fits.csv)", **below)
    return fig


def _flops_per_epoch(rows) -> tuple[np.ndarray, str]:
    """Training FLOPs of one epoch (3 × forward × samples) where the sample count is known, else forward FLOPs per sample."""
    forward = _floats(rows, "flops_per_sample")
    samples = _floats(rows, "train_samples")
    if np.isfinite(samples).all() and len(samples):
        return TRAINING_FLOPS_FACTOR * forward * samples, "training FLOPs per epoch (3 × forward × training samples)"
    return forward, "forward FLOPs per sample"


def _runtime_vs_flops(ok, bench, bench_dir: Path, info: dict[str, Any], metric: Metric, fits: list):
    devices = sorted(ok["device"].unique())
    height = sum(_panel_height(ok[ok["device"] == d]) for d in devices) + 1.2
    fig = new_figure(13, height, _bench_caption(bench_dir, info, ok, [*_estimate_note(ok), _bars_note(metric), "t in seconds"]))
    fig.suptitle(f"{metric.short.capitalize()} vs floating-point work")
    axes = np.atleast_1d(fig.subplots(len(devices), 1))
    for ax, device in zip(axes, devices, strict=True):
        rows = ok[ok["device"] == device]
        xlabel = "FLOPs"
        for s, group in series(rows):
            color, marker, _ = _style(s)
            x, xlabel = _flops_per_epoch(group)
            y = _floats(group, metric.column)
            growth = growth_of(group, x, metric.column, expected="linear")  # runtime is a fixed cost plus a cost per FLOP
            label = "\n".join(p for p in (_label(s, False), verdict_line(growth)) if p)
            _points(ax, x, y, _bounds(group, metric.column), group["estimated"].to_numpy(), color, marker, label)
            _fit_curves(ax, x, y, color, growth, var="F")
            fits.append(_fit_row("flops", metric.column, s, growth))
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(count))
        ax.set(title=device_label(device, join(rows["device_name"])), xlabel=xlabel, ylabel=metric.label)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _speedups(ok, metric: Metric):
    """GPU/CPU speed-up for every (backend, engine, filters) measured ok on both devices; empty if none."""
    index = ["backend", "engine", "filters"]
    ok = ok.assign(t=_floats(ok, metric.column))
    bars = _bounds(ok, metric.column)
    ok = ok.assign(t_lo=ok["t"] - bars[0], t_hi=ok["t"] + bars[1])
    cpu = ok[ok["device"] == "cpu"].groupby(index)[["t", "t_lo", "t_hi"]].median()
    gpu = ok[ok["device"] == "gpu"].groupby(index)[["t", "t_lo", "t_hi"]].median()
    both = cpu.join(gpu, lsuffix="_cpu", rsuffix="_gpu", how="inner").reset_index()
    both["speedup"] = both["t_cpu"] / both["t_gpu"]
    # the range the recorded spread allows: fastest CPU over slowest GPU … slowest CPU over fastest GPU
    both["speedup_lo"], both["speedup_hi"] = both["t_lo_cpu"] / both["t_hi_gpu"], both["t_hi_cpu"] / both["t_lo_gpu"]
    return both[np.isfinite(both["speedup"])]


def _speedup_figure(speedup, ok, bench_dir: Path, info: dict[str, Any], metric: Metric):
    devices = " over ".join(device_label(d, join(ok.loc[ok["device"] == d, "device_name"])) for d in ("gpu", "cpu"))
    what = f"speed-up = CPU {metric.short} / GPU {metric.short}, same backend; error bars: {_bars_note(metric).split(': ', 1)[-1]}"
    fig = new_figure(9, 5, _bench_caption(bench_dir, info, ok, [devices, what]))
    ax = fig.subplots()
    filters = sorted(speedup["filters"].unique())
    kinds = sorted({(b, e) for b, e in zip(speedup["backend"], speedup["engine"], strict=True)})
    width = 0.8 / len(kinds)
    for j, (backend, engine) in enumerate(kinds):
        group = speedup[(speedup["backend"] == backend) & (speedup["engine"] == engine)].set_index("filters")
        xs = [i + (j - (len(kinds) - 1) / 2) * width for i, f in enumerate(filters) if f in group.index]
        values = [float(group.loc[f, "speedup"]) for f in filters if f in group.index]
        spread = np.array([[v - group.loc[f, "speedup_lo"], group.loc[f, "speedup_hi"] - v] for f, v in zip(
            [f for f in filters if f in group.index], values, strict=True)], dtype=float).T.reshape(2, -1)  # fmt: skip
        color = _style({"device": "gpu", "backend": backend, "engine": engine})[0]
        bars = ax.bar(xs, values, width=width * 0.9, color=color, label=" · ".join(p for p in (backend, engine) if p),
                      yerr=np.nan_to_num(np.clip(spread, 0, None)), capsize=3, error_kw={"elinewidth": 1, "ecolor": "0.25"})  # fmt: skip
        ax.bar_label(bars, labels=[f"{v:.1f}×" for v in values], fontsize=8, label_type="center",  # clear of the error bar
                     bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.9})  # fmt: skip
    ax.axhline(1.0, color="0.3", lw=1, ls="--", label="1× (same speed)")
    ax.set_xticks(range(len(filters)), [f"{f:g}" for f in filters])
    ax.margins(y=0.12)
    ax.grid(axis="x", visible=False)
    ax.set(title="GPU speed-up over CPU per filter count", xlabel="filters per convolution layer", ylabel="speed-up (× faster on GPU)")
    ax.legend(title="backend")
    return fig


def _rate_bounds(rows, y: np.ndarray) -> np.ndarray:
    """Error bars of a rate (samples/s, GFLOP/s) from the steady epoch spread: a rate ∝ 1/time, so it spans
    y·median/max … y·median/min."""
    median, lo, hi = _floats(rows, "epoch_s_median"), _floats(rows, "epoch_s_min"), _floats(rows, "epoch_s_max")
    with np.errstate(invalid="ignore", divide="ignore"):
        bars = np.vstack([y - y * median / hi, y * median / lo - y])
    return np.nan_to_num(np.clip(bars, 0, None), nan=0.0, posinf=0.0)


def _throughput_figure(ok, bench, bench_dir: Path, info: dict[str, Any]):
    from matplotlib.ticker import NullLocator

    extra = [*_estimate_note(ok), *_not_measured(bench), "GFLOP/s counts training as 3 × forward FLOPs per sample",
             "error bars: the rate of the slowest–fastest steady epoch"]  # fmt: skip
    fig = new_figure(13, 5.2, _bench_caption(bench_dir, info, ok, extra))
    fig.suptitle("Training throughput per filter count")
    filters = sorted(ok["filters"].dropna().unique()) if "filters" in ok else []
    for ax, column, ylabel, title in zip(
        fig.subplots(1, 2),
        ("samples_per_s", "gflops_per_s"),
        ("samples per second (log scale)", "achieved GFLOP/s (log scale)"),
        ("Samples per second", "Achieved GFLOP/s"),
        strict=True,
    ):
        for s, group in series(ok):
            x, y = _floats(group, "filters"), _floats(group, column)
            color, marker, line = _style(s)
            ax.plot(x, y, color=color, lw=1, alpha=0.6, ls=line)
            _points(ax, x, y, _rate_bounds(group, y), group["estimated"].to_numpy(), color, marker, _label(s))
        if log_axis(ax, "x", base=2) and filters:
            ax.set_xticks(filters, [f"{f:g}" for f in filters])
            ax.xaxis.set_minor_locator(NullLocator())
        if not log_axis(ax):
            title += " (not recorded)"
        ax.set(title=title, xlabel="filters per convolution layer", ylabel=ylabel)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", title="device · backend")
    return fig


@styled
def plot_bench(bench_dir: str | Path, out_dir: str | Path | None = None, formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    """A bench → runtime_vs_params_<device>.*, runtime_loglog.*, runtime_vs_flops.*, speedup.* (only when
    CPU and GPU were both measured ok), throughput.* and fits.csv (every fit and its verdict)."""
    bench_dir = Path(bench_dir)
    out_dir = Path(out_dir or bench_dir)
    bench, ok, info = read_bench(bench_dir)
    if ok.empty:
        return []
    metric = Metric(ok)
    fits: list[dict[str, Any]] = []
    written = []
    for device in sorted(ok["device"].unique()):
        written += save(
            _runtime_vs_params(ok, bench, device, bench_dir, info, metric, fits), out_dir, f"runtime_vs_params_{device}", formats
        )
    written += save(_runtime_growth(ok, bench, bench_dir, info, metric), out_dir, "runtime_loglog", formats)
    if "flops_per_sample" in ok and np.isfinite(_floats(ok, "flops_per_sample")).any():
        written += save(_runtime_vs_flops(ok, bench, bench_dir, info, metric, fits), out_dir, "runtime_vs_flops", formats)
    if "filters" in ok:
        speedup = _speedups(ok, metric)
        if not speedup.empty:
            written += save(_speedup_figure(speedup, ok, bench_dir, info, metric), out_dir, "speedup", formats)
        if np.isfinite(_floats(ok, "samples_per_s")).any():
            written += save(_throughput_figure(ok, bench, bench_dir, info), out_dir, "throughput", formats)
    if fits:
        try:
            write_csv(out_dir / "fits.csv", fits, FITS_COLUMNS)
        except OSError as exc:
            raise OutputError(f"cannot write {str(out_dir / 'fits.csv')[:200]}: {exc.strerror or type(exc).__name__}") from None
        written.append(out_dir / "fits.csv")
    return written
