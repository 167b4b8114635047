"""Figure plumbing shared by every plot: house style, captions, atomic saving, tick labels.

Matplotlib is imported inside the functions (pyplot never: each figure has its own Agg canvas).
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from cnnbench.errors import OutputError, safe
from cnnbench.files import check_target

FORMATS = ("png", "svg", "pdf")
DEFAULT_FORMATS = ("png", "svg")

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
_CAPTURE: ContextVar[Callable[[Any, str], None] | None] = ContextVar("cnnbench_figure_capture", default=None)
_CAPTION_PT = 7.5
_SEP = "  ·  "


def styled(plot: Callable[..., Any]) -> Callable[..., Any]:
    """Build the figures of `plot` under the house style (rcParams are read as artists are made)."""

    @functools.wraps(plot)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import matplotlib

        with matplotlib.rc_context(_STYLE):
            return plot(*args, **kwargs)

    return wrapper


def caption_lines(parts: Sequence[str], width_in: float) -> list[str]:
    """Caption parts joined by ' · ', broken into lines between parts where possible."""
    limit = int(width_in * 72 / (_CAPTION_PT * 0.52))
    lines: list[str] = []
    for part in (p for p in parts if p):
        if lines and len(lines[-1]) + len(_SEP) + len(part) <= limit:
            lines[-1] += _SEP + part
        else:
            lines += textwrap.wrap(part, width=limit)
    return lines


def new_figure(width: float, height: float, caption: Sequence[str]):
    """A pyplot-free Agg figure (no global backend switch) with a caption at the bottom."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    lines = caption_lines(caption, width)
    if lines:
        bottom = (len(lines) * _CAPTION_PT * 1.35 + 10) / 72 / height
        fig.get_layout_engine().set(rect=(0, bottom, 1, 1 - bottom))
        fig.text(0.01, 0.015, "\n".join(lines), fontsize=_CAPTION_PT, color="0.35", va="bottom", ha="left", linespacing=1.35)
    return fig


@contextmanager
def capture_figures(sink: Callable[[Any, str], None]) -> Iterator[None]:
    """Within this block `save` hands each figure to sink(fig, stem) instead of writing files (still under
    the house style), so `cnnbench report` inlines exactly the figures `plot` draws."""
    token = _CAPTURE.set(sink)
    try:
        yield
    finally:
        _CAPTURE.reset(token)


def save(fig, folder: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    """Write `folder/stem.<fmt>` for each format, each atomically (temp file + rename); OutputError
    (one line) when the folder cannot be made or written, e.g. a full disk: no temporary file is left."""
    from matplotlib.text import Text

    for text in fig.findobj(Text):  # names and fields read from disk: a control character is shown as its escape, not drawn
        if (shown := safe(text.get_text())) != text.get_text():
            text.set_text(shown)
    if (sink := _CAPTURE.get()) is not None:
        sink(fig, stem)
        return [folder / f"{stem}.svg"]
    paths: list[Path] = []
    path = folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            path = folder / f"{stem}.{fmt}"
            check_target(path)  # a link planted where the figure goes is refused, not replaced
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
    except OSError as exc:
        raise OutputError(f"cannot write {str(path)[:200]}: {exc.strerror or type(exc).__name__}") from None
    return paths


def join(values: Iterable[Any]) -> str:
    """Distinct non-empty values joined by '/' (one value when all agree)."""
    return "/".join(dict.fromkeys(str(v) for v in values if v is not None and v == v and str(v) not in ("", "nan")))


def device_label(device: Any, name: Any) -> str:
    return f"{device} ({name})" if name and str(name) not in (str(device), "nan") else str(device)


def num(value: Any) -> str:
    """8, 0.07, 1e-05: a number without float noise (anything else as it is)."""
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def sci(value: float, digits: int = 3) -> str:
    """A number as mathtext: 0.152, 7.61\\times10^{-7}."""
    if value == 0 or not math.isfinite(value) or 1e-3 <= abs(value) < 1e4:
        return f"{value:.{digits}g}"
    exponent = math.floor(math.log10(abs(value)))
    return rf"{value / 10**exponent:.{digits}g}\times10^{{{exponent}}}"


def count(value: float, _pos: Any = None) -> str:
    """Parameter counts on an axis: 500k, 1M, 2.2M, 3.1G."""
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


def plain(value: float, _pos: Any = None) -> str:
    """A tick label: 0.02, 5000, and powers of ten beyond that range ($10^{7}$)."""
    if 1e-3 <= abs(value) < 1e6 or value == 0:
        return f"{value:g}"
    return f"${sci(value, 2)}$".replace("$1\\times", "$")


def plain_log_ticks(axis, formatter: Callable[[float, Any], str] = plain) -> None:
    """Log-axis labels as plain numbers (0.2, 0.5, 1, 2) instead of 2×10⁻¹: every decade, and between
    decades only 2 and 5 (2…8 within one decade, every tick within half a decade), so labels never collide."""
    from matplotlib.ticker import Formatter

    class Plain(Formatter):
        def __call__(self, x, pos=None):
            if not (x > 0 and math.isfinite(x)):
                return ""
            low, high = sorted(self.axis.get_view_interval())
            span = math.log10(high / low) if low > 0 else 99
            if span <= 0.5:  # less than half a decade: every tick matplotlib places is needed to read it
                return formatter(x)
            mantissa = round(x / 10 ** math.floor(math.log10(x) + 1e-9), 6)
            shown = {1.0} if span > 4 else {1.0, 2.0, 5.0} if span > 1 else {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0}
            return formatter(x) if mantissa in shown else ""

    axis.set_major_formatter(Plain())
    axis.set_minor_formatter(Plain())


def log_axis(ax, which: str = "y", formatter: Callable[[float, Any], str] = plain, **kwargs: Any) -> bool:
    """Put `which` axis on a log scale with plain labels, unless nothing drawn on it is positive (matplotlib
    refuses to log-scale an empty axis): then it stays linear and this returns False."""
    import numpy as np

    values = [np.asarray(line.get_xdata() if which == "x" else line.get_ydata(), dtype=float) for line in ax.lines]
    values += [np.asarray(c.get_offsets(), dtype=float).reshape(-1, 2)[:, 0 if which == "x" else 1] for c in ax.collections]
    if not any(np.any(np.isfinite(v) & (v > 0)) for v in values):
        return False
    (ax.set_xscale if which == "x" else ax.set_yscale)("log", **kwargs)
    plain_log_ticks(ax.xaxis if which == "x" else ax.yaxis, formatter)
    return True


def short(value: Any, limit: int = 40) -> str:
    """repr of a user value, cut to `limit` characters (messages never print an unbounded value)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
