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
    points: int | None = None  # the plotted points the rows hold (a curve of a collection is one row); None: one per row


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


def _colors(artist) -> list:
    """The per-element colours of a collection (edge colours of lines, face colours of filled markers)."""
    from matplotlib.collections import LineCollection

    if isinstance(artist, LineCollection):
        return list(artist.get_edgecolor())
    faces = artist.get_facecolor()
    return list(faces) if len(faces) else list(artist.get_edgecolor())


def _split_collections(fig) -> None:
    """Replace every collection drawn in several colours (many curves as one LineCollection, a scatter coloured by
    value) by one collection per colour, so each can join its legend entry's series: its group toggles with the
    legend and its numbers are listed under that series. The picture is the same."""
    from matplotlib.collections import LineCollection, PathCollection
    from matplotlib.colors import to_rgba

    for ax in fig.axes:
        for c in list(ax.collections):
            if not isinstance(c, (LineCollection, PathCollection)):
                continue
            n = len(c.get_segments()) if isinstance(c, LineCollection) else len(c.get_offsets())
            colors = _colors(c)
            if n < 2 or len(colors) != n:
                continue
            groups: dict[tuple, list[int]] = {}
            for i, color in enumerate(colors):
                groups.setdefault(tuple(round(float(v), 3) for v in to_rgba(color)), []).append(i)
            if len(groups) < 2:
                continue

            def pick(values, index: list[int], n: int = n) -> list:
                values = list(values)
                return [values[i] for i in index] if len(values) == n else values

            segments = c.get_segments() if isinstance(c, LineCollection) else []
            for k, index in enumerate(groups.values()):
                if isinstance(c, LineCollection):
                    part = LineCollection([segments[i] for i in index], colors=[colors[index[0]]],
                                          linestyles=pick(c.get_linestyles(), index),
                                          linewidths=pick(c.get_linewidths(), index))  # fmt: skip
                else:
                    sizes = c.get_sizes()
                    part = PathCollection(c.get_paths(), sizes=pick(sizes, index) if len(sizes) else None,
                                          offsets=c.get_offsets()[index], offset_transform=c.get_offset_transform(),
                                          facecolors=pick(c.get_facecolor(), index), edgecolors=pick(c.get_edgecolor(), index),
                                          linewidths=pick(c.get_linewidths(), index))  # fmt: skip
                part.set(alpha=c.get_alpha(), zorder=c.get_zorder() + k * 1e-6, label=c.get_label(), clip_on=c.get_clip_on(),
                         transform=c.get_transform())  # fmt: skip
                ax.add_collection(part, autolim=False)
            c.remove()


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
    ✕ mark, error bars) join it, and so does each colour of a multi-colour collection (split per colour first).
    Returns the series titles and {id(artist): series}."""
    legends = [lg for lg in [*(ax.get_legend() for ax in fig.axes), *fig.legends] if lg is not None]
    titles: list[str] = []
    index: dict[str, int] = {}
    key_colors: dict[tuple, set[int]] = {}  # a legend key's colour → its series (for artists only the colour ties)
    counter = iter(range(10**9))
    _split_collections(fig)
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
                if (key := _color_key(handle)) is not None:
                    key_colors.setdefault(key[:3], set()).add(n)
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
    in_panel: dict[tuple, set[int]] = {}  # (panel, colour) → series: two panels may draw different series in one colour
    for ax in fig.axes:
        for artist in _artists(ax):
            if id(artist) in owner and _has_marker(artist) and (key := _color_key(artist)) is not None:
                by_color.setdefault(key, set()).add(owner[id(artist)])
                in_panel.setdefault((id(ax), key[:3]), set()).add(owner[id(artist)])
    for ax in fig.axes:
        for artist in _artists(ax):
            if id(artist) not in owner and str(artist.get_label()).startswith("_"):
                key = _color_key(artist) or ()
                match = in_panel.get((id(ax), key[:3]), set()) or by_color.get(key, set())
                if not match:  # many curves: the legend keys are proxies, so the colour of a key is all that ties
                    match = key_colors.get((_color_key(artist) or ())[:3], set())
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


def _plotted(fig, titles: Sequence[str], owner: dict[int, int]) -> tuple[list[str], list[list[str]], int]:
    """The drawn points of every series: panel, series, x, y — a row per marker; a row per curve of a LineCollection
    (many runs), its x and y as space-separated lists, so 1,000 curves of 20 epochs stay a readable, small table.
    Returns the columns, the rows and the number of points they hold."""
    from matplotlib.collections import LineCollection, PathCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    rows: list[list[str]] = []
    count = 0
    xlabels, ylabels = [], []
    for ax in fig.axes:
        panel = _clean(ax.get_title()) or _clean(fig.get_suptitle() if hasattr(fig, "get_suptitle") else "")
        ticks = {round(float(t.get_position()[0]), 6): t.get_text() for t in ax.get_xticklabels() if t.get_text()}
        drew = False
        bars = {id(child) for container in ax.containers for child in container.get_children() if child is not None}
        for artist in _artists(ax):
            curves = isinstance(artist, LineCollection) and id(artist) not in bars  # error bars are not plotted numbers
            if id(artist) not in owner or not (_has_marker(artist) or curves):
                continue
            name = titles[owner[id(artist)]]
            if isinstance(artist, LineCollection):
                for segment in artist.get_segments():
                    if len(segment):
                        rows.append([panel, name, " ".join(_fmt(float(x)) for x in segment[:, 0]),
                                     " ".join(_fmt(float(y)) for y in segment[:, 1])])  # fmt: skip
                        count += len(segment)
                        drew = True
                continue
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
                count += 1
                drew = True
        if drew:
            xlabels.append(_clean(ax.get_xlabel()))
            ylabels.append(_clean(ax.get_ylabel()))
    x = " / ".join(dict.fromkeys(v for v in xlabels if v)) or "x"
    y = " / ".join(dict.fromkeys(v for v in ylabels if v)) or "y"
    return ["panel", "series", x, y], rows, count


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
    columns, rows, points = _plotted(fig, titles, owner)
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
    return Figure(anchor, stem, title, caption, svg, titles, columns, rows, points)
