"""Learning-rate sweeps: one normal run folder per rate inside a sweep folder with sweep.json and summary.csv.

Plans and resumes sweeps (finished runs are kept), runs them in this process or on N worker processes.

>>> plan = plan_sweep(load_spec("convolutional_nn"), "0.01:0.16:0.02", "results/")   # reads, writes nothing
>>> result = run_sweep(plan, SweepOptions(parallel=2), on_event=print)               # trains what is not finished
>>> result.summary_path, result.best["learning_rate"]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
import signal
import sys
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench import __version__, results
from cnnbench import device as devices
from cnnbench.errors import CnnbenchError, UsageError
from cnnbench.results import FINISHED, now_iso, read_record, write_csv, write_json
from cnnbench.spec import Spec
from cnnbench.train import RunOptions, engine_for, load_data_for, train_group, train_run
from cnnbench.values import check_values, format_value, parse_values

__all__ = [
    "SUMMARY_COLUMNS", "PlannedRun", "SweepEvent", "SweepOptions", "SweepPlan", "SweepResult",
    "format_value", "parse_values", "plan_sweep", "run_sweep", "summary_rows", "sweep_name",
]  # fmt: skip

SUMMARY_COLUMNS = (
    "learning_rate", "status", "final_val_error", "best_val_error", "best_epoch", "epochs_run", "total_time_s",
    "final_loss", "test_error", "epoch_s_median", "device", "backend", "error", "run_dir", "dataset",
    "learned", "engine", "fused_k",
)  # fmt: skip
PENDING = "pending"  # summary status of a planned run that has no run.json yet


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep's runs are executed (what they train is in the spec).

    parallel: worker processes; 1 trains in this process. threads: CPU threads per run; None means
    all cores when sequential and cores // workers per worker when parallel. engine: fit, fused or auto
    (None: the spec's). fuse: with the fused engine, at most this many rates share one program (None: all,
    capped by the device memory estimate); sequential sweeps only.
    """

    device: str = "auto"
    backend: str | None = None
    parallel: int = 1
    threads: int | None = None
    engine: str | None = None
    fuse: int | None = None


@dataclass(frozen=True)
class PlannedRun:
    """One learning rate of a sweep: its run folder, the status found there, and whether it is kept."""

    learning_rate: float
    run_dir: Path
    status: str | None  # in run.json before the sweep; None when the run was never started
    skip: bool  # finished (ok, diverged, oom) and kept because --force was not given
    problem: str | None = None  # why run.json cannot be trusted, when status is `corrupt`

    @property
    def label(self) -> str:
        return format_value(self.learning_rate)


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep will do, computed without writing or importing anything heavy (`--dry-run` prints it)."""

    spec: Spec  # every run trains this spec with its own learning rate
    values: tuple[float, ...]
    sweep_dir: Path
    runs: tuple[PlannedRun, ...]
    force: bool = False
    values_text: str | None = None  # the --values text the values came from, for sweep.json

    @property
    def to_train(self) -> list[PlannedRun]:
        return [run for run in self.runs if not run.skip]

    def spec_for(self, run: PlannedRun) -> Spec:
        return self.spec.with_overrides(learning_rate=run.learning_rate)


@dataclass(frozen=True)
class SweepEvent:
    """Progress of a sweep, for `run_sweep(on_event=...)`.

    kind: "skip" (a finished run is kept; record is its run.json), "start" (record: the initial
    record), "epoch" (row: a history row), "end" (record: the final record). done and total count
    the runs this sweep trains (kept runs excluded), done including this one for "end".
    """

    kind: str
    run: PlannedRun
    done: int
    total: int
    record: dict[str, Any] | None = None
    row: dict[str, Any] | None = None


@dataclass(frozen=True)
class SweepResult:
    """What a sweep left on disk: the summary rows (as in summary.csv, with float rates) and where they are."""

    plan: SweepPlan
    rows: list[dict[str, Any]]  # summary.csv, one row per learning rate, ascending
    summary_path: Path

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["status"] == "failed"]

    @property
    def best(self) -> dict[str, Any] | None:
        """The best learning rate's row: None when no run is `ok` and learned (`learned` not false).

        Ties are broken explicitly, in this order: the lowest best_val_error, then the lowest
        final_val_error (the run that stayed good), then the smaller learning rate (the safer one).
        """
        ok = [row for row in self.rows if row["status"] == "ok" and row["best_val_error"] is not None and row.get("learned") is not False]

        def rank(row: dict[str, Any]) -> tuple:
            final = row.get("final_val_error")
            return row["best_val_error"], final if final is not None else float("inf"), row["learning_rate"]

        return min(ok, key=rank) if ok else None

    @property
    def best_at_edge(self) -> bool:
        """True when the best rate is the smallest or largest of the grid (of 2+ rates): the optimum may lie outside."""
        best = self.best
        values = self.plan.values
        return best is not None and len(values) > 1 and best["learning_rate"] in (min(values), max(values))

    @property
    def never_learned(self) -> list[dict[str, Any]]:
        """Rows of runs that ended no better than chance (`learned` false in run.json)."""
        return [row for row in self.rows if row.get("learned") is False]


# --- planning --------------------------------------------------------------------------------


def sweep_name(spec: Spec, values: Sequence[float]) -> str:
    """The sweep folder's name: readable (spec, rates, count) plus a digest of everything that shapes the runs.

    The same spec, options and values give the same name, so the same command resumes its sweep;
    another epoch count, dataset, seed, layer or value list gives another folder.

    The epochs (`e20`) and seed (`s0`) are in the readable part: sweeps of one grid for different
    epochs are told apart by name, not only by the digest.

    >>> sweep_name(load_spec("convolutional_nn"), [0.01, 0.03, 0.05])
    'convolutional_nn-lr-sweep-0.01..0.05-n3-e20-s0-2aaa81'
    """
    return _sweep_name(spec, values, legacy=False)


def _sweep_name(spec: Spec, values: Sequence[float], legacy: bool) -> str:
    doc = spec.to_dict()
    doc.pop("description")  # free text: editing it must not orphan a sweep
    doc["training"].pop("learning_rate")  # replaced in every run
    identity = json.dumps({"spec": doc, "values": [format_value(v) for v in values]}, sort_keys=True)
    digest = hashlib.sha1(identity.encode()).hexdigest()[:6]
    lo, hi = format_value(min(values)), format_value(max(values))
    span = lo if lo == hi else f"{lo}..{hi}"
    if legacy:  # the name before 0.x: no epochs and seed in it
        return f"{spec.name}-lr-sweep-{span}-n{len(values)}-{digest}"
    return f"{spec.name}-lr-sweep-{span}-n{len(values)}-e{spec.training.epochs}-s{spec.training.seed}-{digest}"


def plan_sweep(spec: Spec, values: str | Sequence[float], out: str | Path = "results", force: bool = False) -> SweepPlan:
    """Plan a sweep of `spec` over learning rates (`--values` text or numbers) in `out/<sweep_name>`.

    Reads the statuses already on disk; writes nothing. Raises UsageError for bad values. A run.json
    that cannot be trusted (a folder, torn JSON, wrong types) is planned as `corrupt`, with a warning
    naming it: it is trained again, its record set aside as run.json.corrupt (see run_sweep).
    """
    text = values if isinstance(values, str) else None
    rates = parse_values(values) if isinstance(values, str) else check_values(values)
    sweep_dir = Path(out) / sweep_name(spec, rates)
    legacy = Path(out) / _sweep_name(spec, rates, legacy=True)
    if not sweep_dir.exists() and (legacy / "sweep.json").is_file():
        sweep_dir = legacy  # a sweep started before names carried epochs and seed resumes where it is
    runs = []
    for rate in rates:
        run_dir = sweep_dir / f"lr-{format_value(rate)}"
        status, problem = results.record_status(run_dir)
        if problem:
            note = f"{run_dir / 'run.json'}: {problem}; this run will be trained again (the record is kept as run.json.corrupt)"
            warnings.warn(note, stacklevel=2)
        runs.append(PlannedRun(rate, run_dir, status, skip=status in FINISHED and not force, problem=problem))
    return SweepPlan(spec, tuple(rates), sweep_dir, tuple(runs), force, text)


# --- records and the summary -----------------------------------------------------------------


def _record(run_dir: Path) -> dict[str, Any] | None:
    return read_record(run_dir / "run.json")


def summary_rows(plan: SweepPlan) -> list[dict[str, Any]]:
    """One row per planned learning rate, read from its run.json (`pending` when there is none)."""
    rows = []
    for run in plan.runs:
        record = _record(run.run_dir) or {}
        timing = record.get("timing") or {}
        row = {key: record.get(key) for key in SUMMARY_COLUMNS}
        row.update(
            learning_rate=run.learning_rate,
            status=record.get("status") or PENDING,
            epoch_s_median=timing.get("epoch_s_median"),
            dataset=(record.get("data") or {}).get("name"),  # the data actually used (mnist may fall back to mnist-5k)
            run_dir=run.run_dir.name,  # relative: the sweep folder can be moved or shared
        )
        rows.append(row)
    return rows


def _write_summary(plan: SweepPlan) -> list[dict[str, Any]]:
    rows = summary_rows(plan)
    as_typed = [{**row, "learning_rate": format_value(row["learning_rate"])} for row in rows]  # 500, not 500.0
    write_csv(plan.sweep_dir / "summary.csv", as_typed, SUMMARY_COLUMNS)
    return rows


def _write_index(plan: SweepPlan, options: SweepOptions) -> None:
    path = plan.sweep_dir / "sweep.json"
    if results.inspect_record(path)[1]:
        results.set_aside(path)  # an untrusted sweep.json is kept beside the new one
    previous = read_record(path) or {}
    options_doc = {"device": options.device, "backend": options.backend, "parallel": options.parallel, "threads": options.threads,
                   "engine": options.engine, "fuse": options.fuse}  # fmt: skip
    index = {
        "kind": "lr-sweep",
        "parameter": "learning_rate",
        "name": plan.spec.name,
        "values": list(plan.values),
        "values_text": plan.values_text,
        "runs": [{"learning_rate": run.learning_rate, "run_dir": run.run_dir.name} for run in plan.runs],
        "spec": plan.spec.to_dict(),  # training.learning_rate is the spec's own; each run replaces it
        "options": {**options_doc, "force": plan.force},
        "cnnbench": __version__,
        "created_at": previous.get("created_at") or now_iso(),
        "updated_at": now_iso(),
    }
    write_json(path, index)


def _mark_interrupted(run_dir: Path, reason: str = "interrupted by the user (Ctrl-C)") -> None:
    """A run stopped outside `model.fit` (while saving, or with its worker) still says `running`: say why it stopped."""
    record = _record(run_dir)
    if record and record.get("status") == "running":
        record.update(status="interrupted", error=reason, ended_at=now_iso())
        write_json(run_dir / "run.json", record)


def _mark_failed(run_dir: Path, name: str, learning_rate: float, reason: str) -> None:
    record = _record(run_dir) or {"name": name, "learning_rate": learning_rate}
    if record.get("status") in (None, "running"):
        record.update(status="failed", error=reason, ended_at=now_iso())
        write_json(run_dir / "run.json", record)


# --- running ---------------------------------------------------------------------------------


def run_sweep(plan: SweepPlan, options: SweepOptions = SweepOptions(), on_event: Callable[[SweepEvent], None] | None = None) -> SweepResult:
    """Train every planned run that is not kept, writing sweep.json and (after every run) summary.csv.

    Diverged and failed runs are recorded and the sweep goes on. Ctrl-C marks the run(s) in
    progress `interrupted`, writes the summary and re-raises KeyboardInterrupt; a bad spec or
    dataset raises its CnnbenchError. `on_event` gets a SweepEvent at each step.
    """
    if options.parallel < 1:
        raise UsageError(f"--parallel must be at least 1, got {options.parallel}")
    if options.fuse is not None and options.fuse < 1:
        raise UsageError(f"--fuse must be at least 1, got {options.fuse}")
    emit = on_event or (lambda event: None)
    todo = plan.to_train
    new_folder = not plan.sweep_dir.exists()
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    for run in plan.runs:
        if run.status == results.CORRUPT:
            results.set_aside(run.run_dir / "run.json")  # kept for inspection, out of the retrained run's way
    _write_index(plan, options)
    for run in plan.runs:
        if run.skip:
            emit(SweepEvent("skip", run, 0, len(todo), record=_record(run.run_dir)))
    _write_summary(plan)
    try:
        # One remaining run gains nothing from a worker but its start-up cost.
        if options.parallel > 1 and len(todo) > 1:
            if options.fuse:
                warnings.warn("--fuse has no effect with --parallel: each worker trains one run at a time", stacklevel=2)
            _run_parallel(plan, todo, options, emit)
        else:
            _run_sequential(plan, todo, options, emit)
    except BaseException as exc:
        if isinstance(exc, CnnbenchError) and new_folder and not any(run.run_dir.exists() for run in plan.runs):
            shutil.rmtree(plan.sweep_dir)  # a typo in --data or the spec leaves no empty sweep behind
        else:
            try:
                _write_summary(plan)  # on Ctrl-C too: the summary always matches the run folders
            except OSError:
                pass  # a full disk: the error being raised says more than this one would
        raise
    return SweepResult(plan, _write_summary(plan), plan.sweep_dir / "summary.csv")


def _not_retracing(record: logging.LogRecord) -> bool:
    return "triggered tf.function retracing" not in record.getMessage()


def _quiet_retracing() -> None:
    """Each run builds a new model, so TensorFlow's "triggered tf.function retracing" warning is expected noise."""
    logger = logging.getLogger("tensorflow")
    if _not_retracing not in logger.filters:
        logger.addFilter(_not_retracing)


def _release_previous_run() -> None:
    """Free the previous run's model and traced functions; every run re-seeds itself in build_model."""
    if devices.keras_imported():
        sys.modules["keras"].backend.clear_session()


def _run_sequential(plan: SweepPlan, todo: list[PlannedRun], options: SweepOptions, emit) -> None:
    # Nothing is pinned: one process, all cores, Keras imported and the data loaded once for all runs.
    run_options = RunOptions(device=options.device, backend=options.backend, threads=options.threads, engine=options.engine)
    _quiet_retracing()
    total = len(todo)
    progress = {"done": 0}
    # With the fused engine, up to --fuse runs share one program as lanes (train_group); otherwise one run at a time.
    fused = bool(todo) and engine_for(plan.spec, run_options) == "fused"
    if options.fuse and not fused:
        warnings.warn("--fuse has no effect: these runs train with model.fit (the fused engine is JAX-only; see --engine)", stacklevel=2)
    size = (options.fuse or total) if fused else 1
    for start in range(0, total, size):
        group = todo[start : start + size]
        if start:
            _release_previous_run()

        def ended(lane: int, record: dict, group=group) -> None:
            progress["done"] += 1
            emit(SweepEvent("end", group[lane], progress["done"], total, record=record))
            _write_summary(plan)

        def started(lane: int, record: dict, group=group) -> None:
            emit(SweepEvent("start", group[lane], progress["done"], total, record=record))

        def epoch(lane: int, row: dict, group=group) -> None:
            emit(SweepEvent("epoch", group[lane], progress["done"], total, row=row))

        try:
            if len(group) == 1:
                run = group[0]
                ended(0, train_run(plan.spec_for(run), run.run_dir, run_options, lambda row: epoch(0, row), lambda r: started(0, r)))
            else:
                specs = [plan.spec_for(run) for run in group]
                train_group(specs, [run.run_dir for run in group], run_options, on_epoch=epoch, on_start=started, on_end=ended)
        except KeyboardInterrupt:
            for run in group:
                _mark_interrupted(run.run_dir)
            raise


# --- parallel: N spawned workers, each trains many runs --------------------------------------

_START_TIMEOUT_S = 600.0  # a worker that is not ready by then (import + data) is considered stuck
_INTERRUPT_GRACE_S = 1.0  # a terminal's Ctrl-C reaches the workers too; give them this long before forwarding it
_INTERRUPT_WAIT_S = 30.0  # how long interrupted workers get to write their records


def _worker_main(tasks, events, stop, spec: Spec, run_options: RunOptions) -> None:
    """A worker process: configure threads and device, import Keras and load the data once, then train runs.

    Messages to the parent are (kind, task index, pid, payload). SIGINT is ignored between runs, so
    the parent decides what an interrupt means; during a run it interrupts the run (train_run
    records `interrupted`) and the worker exits.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pid = os.getpid()
    warnings.showwarning = lambda message, *args, **kwargs: print(f"warning: {message}", file=sys.stderr)
    try:
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # N workers share one GPU: none may take it all
        devices.configure(run_options.device, run_options.backend, run_options.threads)
        devices.import_keras()
        _quiet_retracing()
        if spec.data.dataset != "synthetic":  # synthetic data is shaped by the model; it is generated quickly anyway
            load_data_for(spec, 10)
    except Exception as exc:
        events.put(("fatal", None, pid, _describe(exc)))
        return
    events.put(("ready", None, pid, None))
    trained = 0
    while (task := tasks.get()) is not None:
        index, run_spec, run_dir = task
        events.put(("take", index, pid, None))
        if trained:
            _release_previous_run()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            if stop.is_set():  # checked after the handler is set, so a stop is never missed
                raise KeyboardInterrupt
            record = train_run(
                run_spec, run_dir, run_options,
                on_epoch=lambda row, i=index: events.put(("epoch", i, pid, row)),
                on_start=lambda record, i=index: events.put(("start", i, pid, record)),
            )  # fmt: skip
        except KeyboardInterrupt:
            events.put(("interrupted", index, pid, None))
            return
        except Exception as exc:  # a bad spec or dataset: every other run would fail the same way
            events.put(("fatal", index, pid, _describe(exc)))
            return
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        trained += 1
        events.put(("end", index, pid, record))


def _describe(exc: BaseException) -> tuple[bool, str]:
    """(is a user error, message) of an exception raised in a worker; a bug keeps its traceback."""
    if isinstance(exc, CnnbenchError):
        return True, str(exc)
    return False, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


class _Workers:
    """The worker processes of one parallel sweep and the two queues that connect them to the parent."""

    def __init__(self, size: int, spec: Spec, run_options: RunOptions) -> None:
        import multiprocessing

        # spawn, not fork: a fresh interpreter whose Keras is configured (threads, device) before it is imported.
        self.context = multiprocessing.get_context("spawn")
        self.tasks, self.events, self.stop = self.context.Queue(), self.context.Queue(), self.context.Event()
        self.spec, self.run_options = spec, run_options
        self.processes: dict[int, Any] = {}
        self.ready: set[int] = set()
        self.started = time.monotonic()
        for _ in range(size):
            self.spawn()

    def spawn(self) -> None:
        process = self.context.Process(
            target=_worker_main, args=(self.tasks, self.events, self.stop, self.spec, self.run_options), daemon=True
        )
        process.start()
        self.processes[process.pid] = process

    def dead(self) -> list[tuple[int, int]]:
        """(pid, exit code) of workers that exited since the last call; they are forgotten."""
        gone = [(pid, p.exitcode) for pid, p in self.processes.items() if p.exitcode is not None]
        for pid, _ in gone:
            self.processes.pop(pid)
        return gone

    def interrupt(self, busy: Sequence[int]) -> None:
        """Stop: no run starts any more, runs in progress are interrupted and write their records."""
        self.stop.set()
        for _ in self.processes:
            self.tasks.put(None)
        self._wait(_INTERRUPT_GRACE_S)
        for pid in busy:
            if pid in self.processes and self.processes[pid].exitcode is None:
                try:
                    os.kill(pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        self._wait(_INTERRUPT_WAIT_S)

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(p.exitcode is None for p in self.processes.values()):
            try:
                self.events.get(timeout=0.1)  # drained, or a worker could block flushing its last messages
            except queue.Empty:
                pass

    def close(self) -> None:
        """Let idle workers exit, and end any that do not."""
        for _ in self.processes:
            self.tasks.put(None)
        self._wait(10.0)
        for process in self.processes.values():
            if process.exitcode is None:
                process.terminate()
            process.join(5.0)
        self.tasks.cancel_join_thread()  # sentinels nobody reads must not keep this process alive
        self.tasks.close()
        self.events.close()


def _run_parallel(plan: SweepPlan, todo: list[PlannedRun], options: SweepOptions, emit) -> None:
    size = min(options.parallel, len(todo))
    # The cores are shared out: N workers x (cores // N) threads; TensorFlow reads the count once, at import.
    threads = options.threads or max(1, devices.cpu_cores() // size)
    run_options = RunOptions(device=options.device, backend=options.backend, threads=threads, engine=options.engine)
    _ParallelSweep(plan, todo, run_options, size, emit).run()


class _ParallelSweep:
    """The parent's side of a parallel sweep: hands runs to workers, relays their events, handles stops and deaths."""

    def __init__(self, plan: SweepPlan, todo: list[PlannedRun], run_options: RunOptions, size: int, emit) -> None:
        self.plan, self.todo, self.size, self.emit = plan, todo, size, emit
        self.workers = _Workers(size, plan.spec, run_options)
        self.waiting = deque(range(len(todo)))
        self.taken: dict[int, int] = {}  # task index -> pid of the worker training it
        self.done = self.queued = 0

    def run(self) -> None:
        try:
            self.feed()
            while self.done < len(self.todo):
                try:
                    message = self.workers.events.get(timeout=0.5)
                except queue.Empty:
                    self.check_workers()
                    continue
                self.handle(*message)
        except BaseException:  # Ctrl-C, or an error every run would hit: stop the others cleanly
            try:
                self.workers.interrupt(list(self.taken.values()))
            finally:
                for run in self.todo:
                    _mark_interrupted(run.run_dir)
            raise
        finally:
            self.workers.close()

    def feed(self) -> None:
        # One task per idle worker, never a backlog: a stop then never finds runs already queued.
        while self.waiting and self.queued < self.size:
            index = self.waiting.popleft()
            self.workers.tasks.put((index, self.plan.spec_for(self.todo[index]), self.todo[index].run_dir))
            self.queued += 1

    def handle(self, kind: str, index: int | None, pid: int, payload: Any) -> None:
        if kind == "ready":
            self.workers.ready.add(pid)
        elif kind == "fatal":
            user_error, message = payload
            raise CnnbenchError(message) if user_error else RuntimeError(f"a sweep worker failed:\n{message}")
        elif kind == "take":
            self.taken[index] = pid
        elif kind == "start":
            self.emit(SweepEvent("start", self.todo[index], self.done, len(self.todo), record=payload))
        elif kind == "epoch":
            self.emit(SweepEvent("epoch", self.todo[index], self.done, len(self.todo), row=payload))
        elif kind == "end":
            self.finish(index, payload)
        elif kind == "interrupted":  # a Ctrl-C that reached a worker alone still stops the sweep
            self.taken.pop(index, None)
            raise KeyboardInterrupt

    def finish(self, index: int, record: dict[str, Any] | None) -> None:
        self.taken.pop(index, None)
        self.done += 1
        self.queued -= 1
        self.emit(SweepEvent("end", self.todo[index], self.done, len(self.todo), record=record))
        _write_summary(self.plan)
        self.feed()

    def check_workers(self) -> None:
        """A worker that died (killed, out of memory, a crash in native code) fails its run; another takes its place."""
        for pid, code in self.workers.dead():
            if pid not in self.workers.ready:
                raise CnnbenchError(f"a sweep worker exited while starting (exit code {code}); try --parallel 1 to see why")
            for index in [i for i, p in self.taken.items() if p == pid]:
                killed = ", killed: perhaps out of memory" if code == -signal.SIGKILL else ""
                run = self.todo[index]
                _mark_failed(run.run_dir, self.plan.spec.name, run.learning_rate, f"the worker process died (exit code {code}{killed})")
                self.finish(index, _record(run.run_dir))
            if self.done < len(self.todo):
                self.workers.spawn()
        if not self.workers.ready and time.monotonic() - self.workers.started > _START_TIMEOUT_S:
            raise CnnbenchError(f"no sweep worker became ready within {_START_TIMEOUT_S:.0f} s")
