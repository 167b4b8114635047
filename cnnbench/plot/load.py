"""Reading results folders for figures: every value a figure uses is checked once, here.

A file that cannot be read, or holds a value of the wrong kind, raises DataError naming the file and
the field; the caller skips that folder with a warning and draws the rest.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.chance import chance_error, learned
from cnnbench.data import dataset_classes
from cnnbench.errors import DataError
from cnnbench.files import MAX_RESULT_BYTES, UnsafeFileError, read_text
from cnnbench.plot.figure import short
from cnnbench.results import HISTORY_COLUMNS, inspect_record

MAX_FILE_BYTES = MAX_RESULT_BYTES  # a results file larger than this is not one cnnbench wrote


class PlotWarning(UserWarning):
    """Something in a results folder was left out of a figure; the message says what and why."""


def warn(message: str) -> None:
    warnings.warn(message, PlotWarning, stacklevel=2)


@contextmanager
def reporting() -> Iterator[None]:
    """Report every PlotWarning, however often the same file is read in one process."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", PlotWarning)
        yield


# --- files -----------------------------------------------------------------------------------


def read_result_text(path: Path) -> str:
    """A results file as text through the bounded reader; DataError naming the file when it cannot be trusted."""
    try:
        return read_text(path, MAX_FILE_BYTES)  # the one bounded reader: regular files only, size capped
    except UnsafeFileError as exc:
        raise DataError(f"{path}: {exc.what}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not text (byte {exc.start} is not UTF-8)") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None


def read_table(path: Path):
    """A CSV file as a DataFrame of strings-or-numbers (empty frame when absent or empty)."""
    import pandas as pd

    if not path.exists() and not path.is_symlink():
        return pd.DataFrame()
    text = read_result_text(path)
    if not text:
        return pd.DataFrame()
    if "\x00" in text:
        raise DataError(f"{path}: not a CSV table (it holds NUL bytes)")
    if text and not text.endswith("\n"):  # cnnbench ends every line: the last one was cut off (a torn copy or a full disk)
        text = text[: text.rfind("\n") + 1]
        warn(f"{path}: its last line is incomplete (cut off); that row is not drawn")
    try:
        frame = pd.read_csv(io.StringIO(text))
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a CSV table ({reason[:120]})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def numeric(frame, column: str, path: Path) -> np.ndarray:
    """`column` as floats. Empty cells become NaN; text that is not a number is a DataError."""
    import pandas as pd

    raw = frame[column]
    if raw.dtype.kind in "fiu":  # read_csv parsed every cell as a number (empty ones as NaN): nothing to check
        return raw.to_numpy(dtype=float)
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if bad.any():
        i = bad.to_numpy().nonzero()[0][0]
        raise DataError(f"{path}: column {column!r}, row {int(raw.index[i]) + 1}: {short(raw.iloc[i])} is not a number")
    return values.to_numpy(dtype=float)


# --- runs ------------------------------------------------------------------------------------


def read_record_checked(path: Path) -> dict[str, Any]:
    """A run.json, sweep.json or bench.json through cnnbench's one record reader (`inspect_record`), with
    null values dropped; DataError naming the file when it is absent or cannot be trusted."""
    record, problem = inspect_record(path)
    if problem or record is None:
        raise DataError(f"{path}: {problem or 'is missing'}")
    return {k: v for k, v in record.items() if v is not None}


def _finite_number(record: dict[str, Any], key: str, path: Path, positive: bool = False) -> None:
    """Values the record reader accepts but no figure can use: NaN, inf (JSON allows them), ≤ 0 where a rate is meant."""
    value = record.get(key)
    if value is not None and (not math.isfinite(value) or (positive and value <= 0)):
        raise DataError(f"{path}: {key} must be a {'positive' if positive else 'finite'} number, got {short(value)}")


@dataclass
class Run:
    """One run folder as figures see it: checked run.json fields and a numeric history."""

    run_dir: Path
    record: dict[str, Any]
    history: Any  # DataFrame: epoch plus the HISTORY_COLUMNS present, as floats (not changed after reading)
    data: dict[str, Any] = field(default_factory=dict)
    _columns: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.record.get("name") or self.run_dir.name

    @property
    def status(self) -> str:
        return self.record.get("status", "?")

    @property
    def lr(self) -> float | None:
        lr = self.record.get("learning_rate")
        if lr is None and "learning_rate" in self.history and len(self.history):
            first = float(self.history["learning_rate"].iloc[0])
            lr = first if math.isfinite(first) and first > 0 else None
        return None if lr is None else float(lr)

    @property
    def num_classes(self) -> int:
        """run.json's `data.num_classes`; an older record without it: the classes of its dataset."""
        return self.data.get("num_classes") or dataset_classes(self.data.get("name"))

    @property
    def chance(self) -> float:
        """The error of guessing: 1 − 1/classes."""
        return chance_error(self.num_classes)

    @property
    def epochs(self) -> np.ndarray:
        return self.column("epoch")

    def column(self, name: str) -> np.ndarray:
        """A history column as floats (NaN where absent); read from the frame once (a 1,000-run figure asks often)."""
        if name not in self._columns:
            values = self.history[name].to_numpy(dtype=float) if name in self.history else np.full(len(self.history), np.nan)
            values.flags.writeable = False
            self._columns[name] = values
        return self._columns[name]

    @property
    def val_error(self) -> np.ndarray:
        if "val_error" in self.history and np.isfinite(self.column("val_error")).any():
            return self.column("val_error")
        return 1.0 - self.column("val_accuracy")

    @property
    def best_val_error(self) -> float:
        finite = self.val_error[np.isfinite(self.val_error)]
        return float(finite.min()) if len(finite) else float("nan")

    @property
    def learned(self) -> bool | None:
        """run.json's `learned`; without it (or null), the rule `train` records it by (`cnnbench.chance.learned`)
        applied to the history's best validation error (None when the record does not say how many validation samples)."""
        if "learned" in self.record:
            return self.record["learned"]
        val_samples = self.data.get("val_samples")
        return None if val_samples is None else learned(self.best_val_error, self.num_classes, val_samples)

    def label_note(self) -> str:
        """'' for an ok run that learned; else ' (diverged)', ' (did not learn)', …"""
        notes = [] if self.status == "ok" else [self.status]
        if self.learned is False and self.status != "diverged":
            notes.append("did not learn")
        return f" ({', '.join(notes)})" if notes else ""


_UNIT_INTERVAL = ("accuracy", "val_accuracy", "val_error")


_NUMBER_START = frozenset("0123456789+-.")


def _plain_numbers(path: Path) -> dict[str, np.ndarray] | None:
    """history.csv as `train` writes it (a header, then rows of plain numbers or empty cells, every line ended) parsed
    without pandas' per-file cost (~20× faster on a 20-row file); None for anything else, which `read_table` then
    reads with its checks and messages."""
    if not path.is_file() or path.is_symlink():
        return None
    try:
        text = read_result_text(path)
    except DataError:
        return None
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if not text.endswith("\n") or '"' in text or "\x00" in text or "\r" in text:
        return None
    lines = text[:-1].split("\n")
    header = lines[0].split(",")
    if len(lines) < 2 or len(set(header)) != len(header) or any(not h or h != h.strip() for h in header):
        return None
    rows = []
    for line in lines[1:]:
        cells = line.split(",")
        if len(cells) != len(header):
            return None
        row = []
        for cell in cells:
            if cell == "":
                row.append(math.nan)
            elif cell[0] in _NUMBER_START and cell[-1] not in " \t":
                try:
                    row.append(float(cell))
                except ValueError:
                    return None
            elif cell in ("nan", "NaN", "inf", "-inf"):
                row.append(float(cell))
            else:
                return None
        rows.append(row)
    table = np.array(rows, dtype=float).reshape(len(rows), len(header))
    return {h: table[:, i] for i, h in enumerate(header)}


def read_history(path: Path):
    """history.csv with numeric columns: rows without an epoch dropped, sorted by epoch. Loss may be
    NaN or inf (a diverged run); errors outside 0…1 and negative times become NaN, with a warning."""
    import pandas as pd

    plain = _plain_numbers(path)
    if plain is not None and "epoch" in plain:
        return _checked_history({c: plain[c] for c in HISTORY_COLUMNS if c in plain}, path)
    frame = read_table(path)
    if frame.empty:
        return pd.DataFrame(columns=["epoch"])
    if "epoch" not in frame:
        raise DataError(f"{path}: no 'epoch' column (columns: {short(', '.join(map(str, frame.columns)), 60)})")
    return _checked_history({c: numeric(frame, c, path) for c in HISTORY_COLUMNS if c in frame}, path)


def _checked_history(columns: dict[str, np.ndarray], path: Path):
    """Rows without a finite epoch dropped, sorted by epoch (the last of a repeated one kept), values out of range NaN;
    done on the arrays, so the frame is built once."""
    import pandas as pd

    epochs = columns["epoch"]
    if np.isfinite(epochs).all() and (np.diff(epochs) > 0).all():  # as train writes it: nothing to reorder
        columns = {c: np.array(v, dtype=float) for c, v in columns.items()}
    else:
        kept = np.flatnonzero(np.isfinite(epochs))
        kept = kept[np.argsort(epochs[kept], kind="stable")]
        sorted_epochs = epochs[kept]
        kept = kept[np.append(sorted_epochs[1:] != sorted_epochs[:-1], True)]  # of a repeated epoch, the last row
        columns = {c: np.array(v, dtype=float)[kept] for c, v in columns.items()}
    dropped = []
    for column, values in columns.items():
        if column in _UNIT_INTERVAL:
            bad = ~((values >= 0) & (values <= 1)) & ~np.isnan(values)
        elif column.endswith("_s") or column == "samples_per_s":
            bad = ~(values >= 0) & ~np.isnan(values) | np.isinf(values)
        else:
            continue
        if bad.any():
            dropped.append(f"{int(bad.sum())} {column}")
            values[bad] = np.nan
    if dropped:
        warn(f"{path}: not drawn: {', '.join(dropped)} value(s) out of range or not finite")
    return pd.DataFrame(columns)


def read_run(run_dir: Path) -> Run:
    """The run in `run_dir`; DataError when run.json or history.csv is unreadable or holds wrong kinds."""
    path = run_dir / "run.json"
    record = read_record_checked(path)
    _finite_number(record, "learning_rate", path, positive=True)
    for key in ("best_val_error", "final_val_error", "test_error"):
        _finite_number(record, key, path)
    data = {k: v for k, v in (record.get("data") or {}).items() if v is not None}
    if data.get("num_classes", 2) < 2 or data.get("val_samples", 1) < 1:
        raise DataError(f"{path}: data.num_classes must be ≥ 2 and data.val_samples ≥ 1")
    return Run(run_dir, record, read_history(run_dir / "history.csv"), data)


# --- benches ---------------------------------------------------------------------------------

BENCH_NUMERIC = ("filters", "params", "flops_per_sample", "batch_size", "epochs", "measured_epochs", "first_epoch_s",
                 "epoch_s_median", "epoch_s_min", "epoch_s_max", "total_s", "samples_per_s", "gflops_per_s",
                 "train_samples", "repeats")  # fmt: skip
_TIMES = ("first_epoch_s", "epoch_s_median", "epoch_s_min", "epoch_s_max", "total_s", "samples_per_s", "gflops_per_s")


def read_bench(bench_dir: Path):
    """(all rows, ok rows, bench.json) of a bench. The ok rows have numeric columns, a positive
    parameter count and a finite positive total or steady time; other ok rows are dropped with a warning."""
    import pandas as pd

    path = bench_dir / "bench.csv"
    frame = read_table(path)
    info: dict[str, Any] = {}
    if (bench_dir / "bench.json").exists():
        try:
            info = read_record_checked(bench_dir / "bench.json")
        except DataError as exc:
            warn(f"{exc}; the captions go without it")
    if frame.empty:
        return frame, frame, info
    missing = [c for c in ("status", "device", "backend", "params") if c not in frame]
    if missing or not {"epoch_s_median", "total_s"} & set(frame.columns):
        need = ", ".join(repr(c) for c in missing) or "'epoch_s_median' or 'total_s'"
        raise DataError(f"{path}: no {need} column")
    for column in ("status", "device", "backend", "device_name", "engine", "dataset"):
        if column in frame:
            frame[column] = frame[column].astype(str).str.strip().replace("nan", "")
    ok = frame[frame["status"] == "ok"].copy()
    skipped = []
    for column in BENCH_NUMERIC:
        if column in ok:
            try:
                ok[column] = numeric(ok, column, path)
            except DataError:
                ok[column] = pd.to_numeric(ok[column], errors="coerce")
                skipped.append(f"{column} not a number")
    for column in _TIMES:
        if column in ok:
            values = ok[column].to_numpy(dtype=float)
            bad = np.isinf(values) | (values <= 0)
            if bad.any():
                skipped.append(f"{column} {short(values[bad][0])}")
                ok.loc[bad, column] = np.nan
    if "device_name" not in ok:
        ok["device_name"] = ok["device"]
    if "engine" not in ok:
        ok["engine"] = ""
    ok["estimated"] = ok["estimated"].astype(str).str.strip().str.lower().isin(("true", "1", "yes")) if "estimated" in ok else False
    steady = ok["epoch_s_median"] if "epoch_s_median" in ok else pd.Series(np.nan, index=ok.index)
    total = ok["total_s"] if "total_s" in ok else pd.Series(np.nan, index=ok.index)
    usable = np.isfinite(ok["params"]) & (ok["params"] > 0) & (np.isfinite(steady) | np.isfinite(total))
    if skipped:
        warn(f"{path}: values left out of the figures: {'; '.join(dict.fromkeys(skipped))}")
    if not usable.all():
        where = ", ".join(_row_name(r) for r in ok[~usable].to_dict("records")[:4])
        warn(f"{path}: {int((~usable).sum())} ok row(s) not drawn (no usable parameter count or time): {where}")
    return frame, ok[usable].copy(), info


def _row_name(row: dict[str, Any]) -> str:
    filters = row.get("filters")
    filters = f"{filters:g} filters" if isinstance(filters, float) and math.isfinite(filters) else "? filters"
    return "·".join(str(row.get(k)) for k in ("device", "backend", "engine") if row.get(k)) + f" {filters}"
