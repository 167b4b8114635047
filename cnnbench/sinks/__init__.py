"""Tracking sinks: cnnbench's runs written to TensorBoard and MLflow, while a command runs and after the fact.

A sink writes one finished run folder (run.json, spec.json, history.csv) at a time, in the process that
drives the runs: `train` after its run, sweeps and benches as each run's files land (never from workers).
`cnnbench export` runs the same code over folders already on disk, so live and exported runs are identical.

>>> with open_sinks(tensorboard="tb/", mlflow="sqlite:///mlruns.db") as sinks:   # checks extras and the URI
...     run_sweep(plan, options, on_event=sinks.watching(progress))              # the one line a driver needs
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cnnbench import layout, results
from cnnbench.errors import UsageError

__all__ = ["FILE_KEYS", "REGISTRY", "RunFolder", "Sink", "SinkError", "Sinks", "create_sink", "file_targets", "open_sinks", "read_run",
           "run_name"]  # fmt: skip

class SinkError(UsageError):
    """A sink cannot be used (its extra is missing, its URI is refused): one line, exit 2, before anything trains."""


@dataclass
class RunFolder:
    """What a sink writes of one run: its records, its history rows, and the name and key it is written under.

    name: the run folder relative to the results root (the folder holding the run's sweep or bench, or the
    lone run itself), as `ls` and TensorBoard name it. group: that sweep's or bench's folder (None for a lone
    run). digest: of history.csv and the status, so that a run that changed since is written again.
    """

    run_dir: Path
    name: str
    record: dict[str, Any]
    spec: dict[str, Any]
    history: list[dict[str, float]]
    digest: str
    group: Path | None = None
    group_kind: str | None = None
    swept: tuple[str, ...] = field(default_factory=tuple)  # spec paths the group varies (beyond the fixed hparams)

    @property
    def status(self) -> str:
        return self.record.get("status") or "unknown"


def _group_of(run_dir: Path) -> tuple[Path | None, str | None]:
    """(the sweep, study or bench folder a run belongs to, its kind), or (None, None) for a lone run (`layout.group_of`)."""
    kind, folder = layout.group_of(run_dir)
    return (folder, kind) if folder else (None, None)


def run_name(run_dir: str | Path) -> str:
    """The run's name in the sinks: its folder relative to the results root (`<sweep>/lr-0.1`, `<run>`)."""
    run_dir = Path(run_dir).resolve()
    group, _ = _group_of(run_dir)
    return run_dir.relative_to(group.parent).as_posix() if group else run_dir.name


def iso_seconds(iso: str | None) -> float | None:
    """Seconds since the epoch of an ISO time in a record (None when absent or unreadable)."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).timestamp() if isinstance(iso, str) else None
    except ValueError:
        return None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _history(path: Path) -> tuple[list[dict[str, float]], bytes]:
    import csv
    import io

    raw = path.read_bytes() if path.is_file() else b""
    rows = []
    for row in csv.DictReader(io.StringIO(raw.decode("utf-8", errors="replace"))):
        values = {k: _number(v) for k, v in row.items() if k and v not in (None, "")}
        if values.get("epoch") is not None:
            rows.append({k: v for k, v in values.items() if v is not None})
    return rows, raw


def swept_paths(index: dict[str, Any]) -> tuple[str, ...]:
    """The spec paths a sweep's index says it varies: `parameter` (sweep-lr), `parameters` or `axes` (a study)."""
    found: list[str] = []
    for key in ("parameter", "parameters", "axes"):
        value = index.get(key)
        items = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, dict)) else []
        for item in items:
            if isinstance(item, str):
                found.append(item)
            elif isinstance(item, dict):
                paths = item.get("paths") or item.get("path") or []
                found.extend([paths] if isinstance(paths, str) else [p for p in paths if isinstance(p, str)])
    return tuple(dict.fromkeys(p if "." in p else f"training.{p}" for p in found))


def read_run(run_dir: str | Path) -> RunFolder | None:
    """The run folder as a sink sees it; None when it has no trustworthy run.json or is still `running`."""
    run_dir = Path(run_dir)
    record = results.read_record(run_dir / "run.json")
    if record is None or record.get("status") == "running":
        return None
    history, raw = _history(run_dir / "history.csv")
    digest = hashlib.sha256(raw + b"\0" + str(record.get("status")).encode()).hexdigest()[:16]
    group, kind = _group_of(run_dir.resolve())
    index = (results.read_record(group / layout.INDEX[kind]) or {}) if group else {}
    spec = results.read_record(run_dir / "spec.json") or {}
    return RunFolder(run_dir, run_name(run_dir), record, spec, history, digest, group, kind, swept_paths(index))


def flatten_spec(spec: Any, prefix: str = "") -> dict[str, Any]:
    """The spec's leaves by path, as `sweep --set` names them: `training.learning_rate`, `layers.0.filters`."""
    if isinstance(spec, dict):
        items = spec.items()
    elif isinstance(spec, list):
        items = ((str(i), v) for i, v in enumerate(spec))
    else:
        return {prefix.rstrip("."): spec}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten_spec(value, f"{prefix}{key}."))
    return flat


class Sink(Protocol):
    """A place runs are written to. `on_run_end` returns `written`, `updated` or `unchanged` (idempotent)."""

    name: str

    def on_run_start(self, run_dir: Path, record: dict[str, Any]) -> None: ...

    def on_epoch(self, run_dir: Path, row: dict[str, Any]) -> None: ...

    def on_run_end(self, run: RunFolder) -> str: ...

    def close(self) -> None: ...


# name -> (module:class, the modules its extra brings, the option that asks for it)
REGISTRY: dict[str, tuple[str, tuple[str, ...], str]] = {
    "tensorboard": ("cnnbench.sinks.tensorboard:TensorBoardSink", ("tensorboardX",), "--tensorboard"),
    "mlflow": ("cnnbench.sinks.mlflow:MlflowSink", ("mlflow",), "--mlflow"),
}


def create_sink(name: str, target: str | Path | None, option: str | None = None) -> Sink:
    """The sink `name` writing to `target` (a folder, a tracking URI); SinkError when its extra is missing or it refuses."""
    where, modules, default_option = REGISTRY[name]
    option = option or default_option
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise SinkError(f"{option}: the {name} extra is not installed (no {', '.join(missing)}): pip install 'cnnbench[{name}]'")
    module, cls = where.split(":")
    return getattr(importlib.import_module(module), cls)(target, option)


class Sinks:
    """The sinks of one command. A sink that raises is turned into one warning and left out from then on:
    a sink never costs a run (its folder and status are written before any sink hears of it)."""

    def __init__(self, sinks: list[Sink] = ()) -> None:
        self.active: list[Sink] = list(sinks)
        self.counts: dict[str, dict[str, int]] = {s.name: {} for s in self.active}
        self.seconds = 0.0  # spent in the sinks' hooks (benchmarks/sinks_overhead.py)

    def __bool__(self) -> bool:
        return bool(self.active)

    def _call(self, method: str, *args: Any) -> None:
        start = time.perf_counter()
        try:
            self._each(method, *args)
        finally:
            self.seconds += time.perf_counter() - start

    def _each(self, method: str, *args: Any) -> None:
        for sink in list(self.active):
            try:
                outcome = getattr(sink, method)(*args)
            except Exception as exc:  # a full disk, a locked database, a server gone: the results are unaffected
                self.active.remove(sink)
                reason = " ".join(str(exc).split())[:300] or type(exc).__name__
                warnings.warn(f"{sink.name}: {reason}; nothing more is written there by this command (the results are "
                              f"unaffected; fill the gap later with `cnnbench export {sink.name}`)", stacklevel=3)  # fmt: skip
                continue
            if isinstance(outcome, str):
                counts = self.counts.setdefault(sink.name, {})
                counts[outcome] = counts.get(outcome, 0) + 1

    def run_started(self, run_dir: str | Path, record: dict[str, Any]) -> None:
        self._call("on_run_start", Path(run_dir), record)

    def epoch(self, run_dir: str | Path, row: dict[str, Any]) -> None:
        self._call("on_epoch", Path(run_dir), row)

    def run_ended(self, run_dir: str | Path) -> None:
        """Write a finished run folder to every sink (nothing when it has no final record yet)."""
        if self.active and (run := read_run(run_dir)) is not None:
            self._call("on_run_end", run)

    def watching(self, on_event: Callable[[Any], None] | None = None) -> Callable[[Any], None]:
        """`on_event` for run_sweep / run_bench that also writes each run: its epochs as they reach this process
        (sweeps), the whole run folder when it ends or is kept."""

        def handler(event: Any) -> None:
            if on_event is not None:
                on_event(event)
            run_dir = getattr(event, "run_dir", None) or getattr(getattr(event, "run", None), "run_dir", None)
            if run_dir is None or not self.active:
                return
            if event.kind in ("end", "skip", "done", "skipped"):
                self.run_ended(run_dir)
            elif event.kind == "start" and isinstance(getattr(event, "record", None), dict):
                self.run_started(run_dir, event.record)
            elif event.kind == "epoch" and isinstance(getattr(event, "row", None), dict):
                self.epoch(run_dir, event.row)

        return handler if self.active else (on_event or (lambda event: None))

    def close(self) -> None:
        self._call("close")
        self.active = []

    def __enter__(self) -> Sinks:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_sinks(tensorboard: str | Path | None = None, mlflow: str | None = None) -> Sinks:
    """The sinks asked for (`--tensorboard DIR`, `--mlflow [URI]`; "" means MLflow's default URI), checked now:
    a missing extra, an unwritable folder or a refused URI is a SinkError before anything trains."""
    sinks = []
    if tensorboard is not None:
        sinks.append(create_sink("tensorboard", tensorboard))
    if mlflow is not None:
        sinks.append(create_sink("mlflow", mlflow or None))
    return Sinks(sinks)


FILE_KEYS = ("tensorboard", "mlflow")  # a sweep or study file's keys for the sinks, as the options name them


def file_targets(doc: dict[str, Any], source: str) -> dict[str, str]:
    """The sinks a sweep or study file asks for: `tensorboard: DIR` (a folder, relative to the working folder as
    on the command line) and `mlflow: URI` (or `mlflow: true`: MLFLOW_TRACKING_URI, else MLflow's default),
    as {key: the option's value} ("" for MLflow's default). SpecError naming the file and the key otherwise."""
    from cnnbench.errors import SpecError, brief

    found: dict[str, str] = {}
    value = doc.get("tensorboard")
    if value is not None:
        if not isinstance(value, str) or not value.strip():
            raise SpecError(source, "tensorboard", f"must be a folder (the TensorBoard log folder), got {brief(value)}")
        found["tensorboard"] = value
    value = doc.get("mlflow")
    if value is not None and value is not False:
        if value is True:
            found["mlflow"] = ""
        elif isinstance(value, str) and value.strip():
            found["mlflow"] = value
        else:
            raise SpecError(source, "mlflow", f"must be a tracking URI such as sqlite:///mlruns.db, or true, got {brief(value)}")
    return found
