"""A folder's aggregate tables (summary.csv, runs.csv, points.csv, bench.csv), rewritten at most once a second.

A sweep, study or bench keeps its tables from records held in memory and rewrites them whole, atomically (a reader
sees the old file or the new one, never a part): at the start, at most once per `INTERVAL_S` while runs finish, and
always at the end, on Ctrl-C and errors too. Rewriting after every run made a study's own work per run grow with
its size (quadratic in runs); this keeps it flat.

>>> tables = Throttled(lambda: write_csv(path, rows(), COLUMNS))
>>> tables.flush()     # now: the start, the end
>>> tables.changed()   # a run ended: rewritten if the last write is INTERVAL_S old, else at a later tick or the end
>>> tables.tick()      # any other event: writes what changed once it is due
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from cnnbench.files import atomic_write_text
from cnnbench.precision import plain

__all__ = ["INTERVAL_S", "CsvLines", "Throttled", "clock"]

INTERVAL_S = 1.0  # the tables are rewritten at most this often while runs finish (and always at the end)
clock: Callable[[], float] = time.monotonic  # seconds; tests give a clock of their own

T = TypeVar("T")


class Throttled(Generic[T]):
    """The rewriting of one set of aggregate files: `write()` rewrites them all from memory and returns what it wrote.

    writes: how many times `write` ran (the start and end included).
    """

    def __init__(self, write: Callable[[], T]) -> None:
        self._write = write
        self._last: float | None = None
        self._stale = False
        self.writes = 0

    def changed(self) -> None:
        """Something the tables show changed: rewrite now if due, else once due (at a later `tick`) or at `flush`."""
        self._stale = True
        self.tick()

    def tick(self) -> None:
        """Rewrite what changed since the last write, when the last write is at least `INTERVAL_S` old."""
        if self._stale and (self._last is None or clock() - self._last >= INTERVAL_S):
            self.flush()

    def flush(self) -> T:
        """Rewrite now (the start and the end of a sweep, study or bench), whatever the interval."""
        result = self._write()
        self._last = clock()
        self._stale = False
        self.writes += 1
        return result


class CsvLines:
    """A table's CSV text kept line by line: a rewrite serializes only the rows that changed, so rewriting a table of
    1,000 rows costs about as much as one of 25. Each line is what `results.write_csv` writes for its row."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self._buffer = io.StringIO()
        self._writer = csv.DictWriter(self._buffer, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        self._writer.writeheader()
        self.header = self._take()
        self._lines: dict[Any, tuple[tuple[Any, ...], str]] = {}

    def _take(self) -> str:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text

    def line(self, key: Any, sources: tuple[Any, ...], row: Callable[[], dict[str, Any]]) -> str:
        """The line of the row `key`: made again by `row()` only when `sources` (the objects it is made from) are not the
        very objects it was last made from."""
        cached = self._lines.get(key)
        if cached is not None and len(cached[0]) == len(sources) and all(a is b for a, b in zip(cached[0], sources, strict=True)):
            return cached[1]
        self._writer.writerow(plain(dict(row())))  # floats at the precision they have, NaN as an empty cell
        text = self._take()
        self._lines[key] = (sources, text)
        return text

    def write(self, path: str | Path, lines: Sequence[str]) -> None:
        """Rewrite the table atomically from its lines, in this order."""
        atomic_write_text(path, self.header + "".join(lines))
