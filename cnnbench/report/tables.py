"""Small HTML pieces every part of the page uses: escaped tables, numbers as the page prints them, links."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape as e
from typing import Any

from cnnbench.plot.figure import num


class Raw(str):
    """Markup already escaped (a link inside a table cell)."""


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], anchor: str = "", numeric: Sequence[int] = ()) -> str:
    """An HTML table; every cell escaped unless it is Raw; `numeric` columns right-aligned."""

    def cell(tag: str, i: int, value: Any) -> str:
        align = " class=n" if i in numeric else ""
        return f"<{tag}{align}>{value if isinstance(value, Raw) else e(str(value))}</{tag}>"

    head = "".join(cell("th", i, c) for i, c in enumerate(columns))
    body = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>" for r in rows)
    ident = f' id="{anchor}"' if anchor else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fixed(value: Any, spec: str = ".3f") -> str:
    """A number as the page prints it ('–' for none, NaN or inf)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "–"
    return format(value, spec)


def rates(values: Iterable[Any]) -> str:
    return ", ".join(num(v) for v in values)


def count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def link(anchor: str, text: str) -> str:
    return f'<a href="#{e(anchor)}">{e(text)}</a>'
