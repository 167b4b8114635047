"""cnnbench's own figures as inline SVG for one HTML page: ids unique per figure, one group per series
(legend entry) with a <title> for hover text, an accessible label, the caption and the plotted numbers.

The figures are drawn by `cnnbench.plot` itself (captured instead of saved), so the page shows what `plot` writes.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.plot.figure import capture_figures

_NO_MARKER = (None, "None", "none", "", " ", "_", "|")  # "_" and "|": error-bar caps, not data


@dataclass
class Figure:
    """One inlined figure: `anchor` is its page id, `svg` the markup, `rows` the plotted numbers."""

    anchor: str
    stem: str
    title: str
    caption: str
    svg: str
    series: list[str]
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def render(plot: Callable[..., Any], folder: Path, scratch: Path, prefix: str, *extra: Any) -> list[Figure]:
    """Run `plot(folder, scratch, ("svg",), *extra)` with every figure captured and turned into a Figure."""
    figures: list[Figure] = []

    def sink(fig, stem: str) -> None:
        figures.append(_figure(fig, stem, f"{prefix}-{stem}".replace("_", "-")))

    with capture_figures(sink):
        plot(folder, scratch, ("svg",), *extra)
    return figures


def _clean(text: str) -> str:
    """A matplotlib label as plain text: mathtext markers and macros dropped."""
    for macro, plain in ((r"\propto", "∝"), (r"\times", "×"), (r"\,", " "), ("◀ best", "(best)")):
        text = text.replace(macro, plain)
    return re.sub(r"\s+", " ", text.replace("$", "").replace("{", "").replace("}", "")).strip()


def _color_key(artist) -> tuple | None:
    from matplotlib.colors import to_rgba

    try:
        if hasattr(artist, "get_color") and not hasattr(artist, "get_offsets"):
            color = artist.get_color()
        elif hasattr(artist, "get_edgecolor"):
            colors = artist.get_edgecolor()
            color = colors[0] if len(colors) else None
            if color is None or (hasattr(artist, "get_offsets") and len(colors) and colors[0][3] == 0):
                faces = artist.get_facecolor()
                color = faces[0] if len(faces) else None
        else:
            return None
        return None if color is None else tuple(round(float(c), 3) for c in to_rgba(color))
    except (ValueError, TypeError, IndexError):
        return None


def _has_marker(artist) -> bool:
    from matplotlib.collections import PathCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    if isinstance(artist, Line2D):
        return artist.get_marker() not in _NO_MARKER
    return isinstance(artist, (PathCollection, Rectangle))


def _artists(ax) -> list:
    return [*ax.lines, *ax.collections, *ax.patches]


def _assign_series(fig) -> tuple[list[str], dict[int, int]]:
    """Give every legend entry a series number and mark its artists, its legend key and its legend text with gids
    (`cnbs<n>m<k>`, `cnbk<n>m<k>`). Unlabelled artists of a labelled series' colour (the left loss panel, a
    ✕ mark, error bars) join it. Returns the series titles and {id(artist): series}."""
    legends = [lg for lg in [*(ax.get_legend() for ax in fig.axes), *fig.legends] if lg is not None]
    titles: list[str] = []
    index: dict[str, int] = {}
    counter = iter(range(10**9))
    for legend in legends:
        heading = _clean(legend.get_title().get_text().split("\n")[0])
        for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=False):
            label = text.get_text()
            if label not in index:
                index[label] = len(titles)
                titles.append(f"{heading} {_clean(label)}".strip() if heading else _clean(label))
            n = index[label]
            text.set_gid(f"cnbk{n}m{next(counter)}")
            if handle is not None:
                handle.set_gid(f"cnbk{n}m{next(counter)}")
    owner: dict[int, int] = {}
    for ax in fig.axes:
        for container in ax.containers:
            if container.get_label() in index:
                for child in container.get_children():
                    if child is not None:
                        owner[id(child)] = index[container.get_label()]
        for artist in _artists(ax):
            if id(artist) not in owner and artist.get_label() in index:
                owner[id(artist)] = index[artist.get_label()]
    by_color: dict[tuple, set[int]] = {}
    for ax in fig.axes:
        for artist in _artists(ax):
            if id(artist) in owner and _has_marker(artist) and (key := _color_key(artist)) is not None:
                by_color.setdefault(key, set()).add(owner[id(artist)])
    for ax in fig.axes:
        for artist in _artists(ax):
            if id(artist) not in owner and str(artist.get_label()).startswith("_"):
                match = by_color.get(_color_key(artist) or (), set())
                if len(match) == 1:
                    owner[id(artist)] = next(iter(match))
    for ax in fig.axes:
        for artist in _artists(ax):
            if id(artist) in owner:
                points = "p" if _has_marker(artist) else ""
                artist.set_gid(f"cnbs{owner[id(artist)]}m{next(counter)}{points}")
    return titles, owner


def _fmt(value: float) -> str:
    return "" if value != value else f"{value:.6g}"


def _plotted(fig, titles: Sequence[str], owner: dict[int, int]) -> tuple[list[str], list[list[str]]]:
    """The drawn points (artists with markers) of every series: panel, series, x, y."""
    from matplotlib.collections import PathCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    rows: list[list[str]] = []
    xlabels, ylabels = [], []
    for ax in fig.axes:
        panel = _clean(ax.get_title()) or _clean(fig.get_suptitle() if hasattr(fig, "get_suptitle") else "")
        ticks = {round(float(t.get_position()[0]), 6): t.get_text() for t in ax.get_xticklabels() if t.get_text()}
        drew = False
        for artist in _artists(ax):
            if id(artist) not in owner or not _has_marker(artist):
                continue
            name = titles[owner[id(artist)]]
            if isinstance(artist, Line2D):
                points = zip(artist.get_xdata(), artist.get_ydata(), strict=True)
            elif isinstance(artist, PathCollection):
                points = (tuple(p) for p in artist.get_offsets())
            elif isinstance(artist, Rectangle):
                x = artist.get_x() + artist.get_width() / 2
                points = [(ticks.get(round(min(ticks, key=lambda t: abs(t - x)), 6), x) if ticks else x, artist.get_height())]
            else:
                continue
            for x, y in points:
                rows.append([panel, name, x if isinstance(x, str) else _fmt(float(x)), _fmt(float(y))])
                drew = True
        if drew:
            xlabels.append(_clean(ax.get_xlabel()))
            ylabels.append(_clean(ax.get_ylabel()))
    x = " / ".join(dict.fromkeys(v for v in xlabels if v)) or "x"
    y = " / ".join(dict.fromkeys(v for v in ylabels if v)) or "y"
    return ["panel", "series", x, y], rows


_SERIES = re.compile(r'<g id="(cnb[sk])(\d+)m(\d+)(p?)"')
_ID = re.compile(r'\bid="([^"]+)"')
_HREF = re.compile(r'(\bxlink:href|\bhref)="#([^"]+)"')
_URL = re.compile(r"url\(#([^)]+)\)")
_PATH = re.compile(r'\b(d|x|y)="([^"]*)"')
_DECIMALS = re.compile(r"(\d\.\d\d)\d+")


def _round(m: re.Match) -> str:
    """Path data and positions to 1/100 pt (matplotlib writes 1/10⁶): a third smaller, the same picture."""
    return m[1] + '="' + _DECIMALS.sub(r"\1", m[2]) + '"'


def _series_attributes(m: re.Match) -> str:
    kind = "cnb-series" if m[1] == "cnbs" else "cnb-key"
    return f'<g id="{m[1]}{m[2]}m{m[3]}{m[4]}" data-series="{m[2]}" class="{kind}{" cnb-points" if m[4] else ""}"'


def _figure(fig, stem: str, anchor: str) -> Figure:
    titles, owner = _assign_series(fig)
    columns, rows = _plotted(fig, titles, owner)
    title = fig.get_suptitle() if hasattr(fig, "get_suptitle") else ""
    title = _clean(title or next((ax.get_title() for ax in fig.axes if ax.get_title()), stem))
    caption = next((t.get_text() for t in fig.texts if t.get_fontsize() < 8 and t.get_text()), "")
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = _PATH.sub(_round, svg)
    svg = _SERIES.sub(_series_attributes, svg)

    def with_title(m: re.Match) -> str:
        return f"{m[0]}<title>{html.escape(titles[int(m[1])])}</title>"

    svg = re.sub(r'<g id="cnb[sk]\d+m\d+p?" data-series="(\d+)" class="[^"]+"[^>]*>', with_title, svg)
    svg = _ID.sub(lambda m: f'id="{anchor}-{m[1]}"', svg)
    svg = _HREF.sub(lambda m: f'{m[1]}="#{anchor}-{m[2]}"', svg)
    svg = _URL.sub(lambda m: f"url(#{anchor}-{m[1]})", svg)
    label = f"{title}. Series: {', '.join(titles)}" if titles else title
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(label[:600])}" class="cnb-svg" ', 1)
    return Figure(anchor, stem, title, caption, svg, titles, columns, rows)
