"""Tracking sinks: cnnbench's runs written to TensorBoard and MLflow, while a command runs and after the fact.

A sink writes one finished run folder (run.json, spec.json, history.csv) at a time, in the process that
drives the runs: `train` after its run, sweeps and benches as each run's files land (never from workers),
from one writer thread there, so that the driver never waits on a sink between runs (`Sinks`).
`cnnbench export` runs the same code over folders already on disk, so live and exported runs are identical.

>>> with open_sinks(tensorboard="tb/", mlflow="sqlite:///mlruns.db") as sinks:   # checks extras and the URI
...     run_sweep(plan, options, on_event=sinks.watching(progress))              # the one line a driver needs
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import queue
import threading
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
    """A place runs are written to. `on_run_end` returns `written`, `updated` or `unchanged` (idempotent).

    A sink made with `deferred=True` has checked its target (SinkError) but may leave its slow part (a library's
    import, opening a store) to `open()`, which `Sinks` calls on its writer thread before anything else."""

    name: str

    def open(self) -> None: ...

    def on_run_start(self, run_dir: Path, record: dict[str, Any]) -> None: ...

    def on_epoch(self, run_dir: Path, row: dict[str, Any]) -> None: ...

    def on_run_end(self, run: RunFolder) -> str: ...

    def close(self) -> None: ...


# name -> (module:class, the modules its extra brings, the option that asks for it)
REGISTRY: dict[str, tuple[str, tuple[str, ...], str]] = {
    "tensorboard": ("cnnbench.sinks.tensorboard:TensorBoardSink", ("tensorboardX",), "--tensorboard"),
    "mlflow": ("cnnbench.sinks.mlflow:MlflowSink", ("mlflow",), "--mlflow"),
}


def create_sink(name: str, target: str | Path | None, option: str | None = None, deferred: bool = False) -> Sink:
    """The sink `name` writing to `target` (a folder, a tracking URI); SinkError when its extra is missing or it refuses.

    deferred: check the target now but leave what only slows the start (imports, opening a store) to `sink.open()`."""
    where, modules, default_option = REGISTRY[name]
    option = option or default_option
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise SinkError(f"{option}: the {name} extra is not installed (no {', '.join(missing)}): pip install 'cnnbench[{name}]'")
    module, cls = where.split(":")
    return getattr(importlib.import_module(module), cls)(target, option, deferred=deferred)


INTERRUPT_WAIT_S = 10.0  # after Ctrl-C, how long the command waits for what is queued to be written


class Sinks:
    """The sinks of one command. A sink that raises is turned into one warning and left out from then on:
    a sink never costs a run (its folder and status are written before any sink hears of it).

    With `background=True` (what `open_sinks` makes) one writer thread does all of the sinks' work in the
    order the driver hands it over: first each sink's `open()`, then every run start, epoch and end, then
    `close()`. It begins once a run has started or ended in this command (the driver's own imports, Keras',
    are done by then, so MLflow's import overlaps training, not them). The driver never waits on a sink
    between runs; `close()` waits for the queue to be written (on Ctrl-C at most INTERRUPT_WAIT_S, then one warning per sink names what
    `cnnbench export` should fill in). Warnings are shown by the driver, at its next call or at close.
    """

    def __init__(self, sinks: list[Sink] = (), background: bool = False) -> None:
        self.active: list[Sink] = list(sinks)
        self.counts: dict[str, dict[str, int]] = {s.name: {} for s in self.active}
        self.seconds = 0.0  # the driver's time in the sinks: their hooks, or handing work over and waiting at close
        self.writer_seconds = 0.0  # the writer thread's time in the sinks (benchmarks/sinks_overhead.py)
        self._warnings: list[str] = []
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue | None = None
        self._unwritten = 0  # run ends handed to the writer thread and not yet written
        self._thread: threading.Thread | None = None
        self._go = threading.Event()  # set when a run starts or ends here, or at close: the writer thread begins
        if background and self.active:
            self._queue = queue.SimpleQueue()
            self._queue.put(("open",))
            self._thread = threading.Thread(target=self._write, name="cnnbench-sinks", daemon=True)
            self._thread.start()

    def __bool__(self) -> bool:
        return bool(self.active)

    # --- the work, on the writer thread (or in the caller's, without one) ---

    def _write(self) -> None:
        self._go.wait()
        while True:
            job = self._queue.get()
            start = time.perf_counter()
            try:
                self._do(*job)
            except Exception as exc:  # a run folder that cannot be read: that run is missing, the thread goes on
                reason = " ".join(str(exc).split())[:300] or type(exc).__name__
                for sink in list(self.active):
                    self._warn(f"{sink.name}: {job[1] if len(job) > 1 else job[0]}: not written ({reason}); "
                               f"fill the gap later with `cnnbench export {sink.name}`")  # fmt: skip
            finally:
                self.writer_seconds += time.perf_counter() - start
            if job[0] == "close":
                return

    def _do(self, what: str, *args: Any) -> None:
        if what == "end":
            try:
                run = read_run(args[0])
                if run is not None:
                    self._each("on_run_end", run)
            finally:
                if self._queue is not None:
                    with self._lock:
                        self._unwritten -= 1
        elif what == "open":
            self._each("open")
        elif what == "flush":
            args[0].set()
        else:
            self._each(what, *args)

    def _each(self, method: str, *args: Any) -> None:
        for sink in list(self.active):
            call = getattr(sink, method, None)
            if call is None:
                continue
            try:
                outcome = call(*args)
            except Exception as exc:  # a full disk, a locked database, a server gone: the results are unaffected
                self._drop(sink, " ".join(str(exc).split())[:300] or type(exc).__name__)
                continue
            if isinstance(outcome, str):
                counts = self.counts.setdefault(sink.name, {})
                counts[outcome] = counts.get(outcome, 0) + 1

    def _drop(self, sink: Sink, reason: str) -> None:
        if sink in self.active:
            self.active.remove(sink)
        self._warn(f"{sink.name}: {reason}; nothing more is written there by this command (the results are "
                   f"unaffected; fill the gap later with `cnnbench export {sink.name}`)")  # fmt: skip

    def _warn(self, message: str) -> None:
        with self._lock:
            self._warnings.append(message)

    def _show_warnings(self) -> None:
        with self._lock:
            found, self._warnings = self._warnings, []
        for message in found:
            warnings.warn(message, stacklevel=4)

    # --- the driver's side ---

    def _call(self, method: str, *args: Any, kept: bool = False) -> None:
        start = time.perf_counter()
        try:
            if self._queue is not None:
                if method == "end":
                    with self._lock:
                        self._unwritten += 1
                self._queue.put((method, *args))
                if method != "end" or not kept:
                    self._go.set()
            else:
                self._do(method, *args)
        finally:
            self.seconds += time.perf_counter() - start
            self._show_warnings()

    def run_started(self, run_dir: str | Path, record: dict[str, Any]) -> None:
        self._call("on_run_start", Path(run_dir), record)

    def epoch(self, run_dir: str | Path, row: dict[str, Any]) -> None:
        self._call("on_epoch", Path(run_dir), row)

    def run_ended(self, run_dir: str | Path, kept: bool = False) -> None:
        """Write a finished run folder to every sink (nothing when it has no final record yet). kept: a run
        finished before this command (a resumed sweep's), which does not begin the writer thread."""
        if self.active:
            self._call("end", Path(run_dir), kept=kept)

    def flush(self) -> None:
        """Wait until everything handed over so far is written (at once without a writer thread)."""
        if self._thread is not None and self._thread.is_alive():
            done = threading.Event()
            self._queue.put(("flush", done))
            self._go.set()
            while not done.wait(0.1) and self._thread.is_alive():
                pass
        self._show_warnings()

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
                self.run_ended(run_dir, kept=event.kind in ("skip", "skipped"))
            elif event.kind == "start" and isinstance(getattr(event, "record", None), dict):
                self.run_started(run_dir, event.record)
            elif event.kind == "epoch" and isinstance(getattr(event, "row", None), dict):
                self.epoch(run_dir, event.row)

        return handler if self.active else (on_event or (lambda event: None))

    def close(self, wait_s: float | None = None) -> None:
        """Write what is queued and close every sink: wait for it (at most `wait_s` seconds; None: until done).
        What is still unwritten after that, or when Ctrl-C cuts the wait short, is one warning per sink."""
        start = time.perf_counter()
        try:
            if self._thread is None:
                self._do("close")
            elif self._thread.is_alive():
                self._queue.put(("close",))
                self._go.set()
                try:
                    self._thread.join(wait_s)
                except KeyboardInterrupt:
                    self._thread.join(min(wait_s or INTERRUPT_WAIT_S, INTERRUPT_WAIT_S))
                    self._left_behind()
                    raise
                self._left_behind()
        finally:
            self.seconds += time.perf_counter() - start
            self._show_warnings()
        self.active = []

    def _left_behind(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        with self._lock:
            unwritten = self._unwritten
        what = f"{unwritten} finished run{'' if unwritten == 1 else 's'}" if unwritten else "the last run"
        for sink in list(self.active):
            self._drop(sink, f"not written in time when the command ended: {what} may be missing or incomplete")

    def __enter__(self) -> Sinks:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: Any) -> None:
        interrupted = kind is not None and issubclass(kind, KeyboardInterrupt)  # Ctrl-C, SIGTERM/SIGHUP (Terminated): exit soon
        self.close(INTERRUPT_WAIT_S if interrupted else None)


def open_sinks(tensorboard: str | Path | None = None, mlflow: str | None = None, background: bool = True) -> Sinks:
    """The sinks asked for (`--tensorboard DIR`, `--mlflow [URI]`; "" means MLflow's default URI), checked now:
    a missing extra, an unwritable folder or a refused URI is a SinkError before anything trains. With
    `background` their writing (and the slow part of opening them, MLflow's import) is done by a writer
    thread while the runs train (`Sinks`)."""
    sinks = []
    if tensorboard is not None:
        sinks.append(create_sink("tensorboard", tensorboard, deferred=background))
    if mlflow is not None:
        sinks.append(create_sink("mlflow", mlflow or None, deferred=background))
    return Sinks(sinks, background=background)


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
