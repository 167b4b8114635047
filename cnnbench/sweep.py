"""Learning-rate sweeps: one normal run folder per rate inside a sweep folder with sweep.json and summary.csv.

Plans and resumes sweeps (finished runs are kept), runs them in this process or on N worker processes.

>>> plan = plan_sweep(load_spec("convolutional_nn"), "0.01:0.16:0.02", "results/")   # reads, writes nothing
>>> result = run_sweep(plan, SweepOptions(parallel=2), on_event=print)               # trains what is not finished
>>> result.summary_path, result.best["learning_rate"]
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cnnbench import __version__, engines, results
from cnnbench import device as devices
from cnnbench import record as run_record
from cnnbench.aggregates import CsvLines, Throttled
from cnnbench.data import file_digest
from cnnbench.errors import CnnbenchError, UsageError, interrupt_reason, raise_if_stopped
from cnnbench.executor import Event, RayConfig, Task, make_executor
from cnnbench.files import check_folder
from cnnbench.lock import folder_lock, held_by, in_use
from cnnbench.results import FINISHED, now_iso, read_record, write_json
from cnnbench.spec import Spec
from cnnbench.train import RunOptions
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
CHECKPOINT = "checkpoint.npz"  # cnnbench.callbacks.CHECKPOINT, named here without importing Keras
RESUMABLE = ("interrupted", "running")  # stopped before the end (a `running` one that is still live is refused, in use)


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep's runs are executed (what they train is in the spec).

    parallel: runs at once; 1 trains in this process, more on worker processes (or Ray actors).
    threads: CPU threads per run; None means all cores when sequential and cores // workers per
    worker when parallel. engine: fit, fused or auto (None: the spec's). fuse: with the fused engine,
    at most this many rates share one program (None: all, capped by the device memory estimate).
    Where the runs execute (this machine or a Ray cluster) is not an option: it is `run_sweep`'s `ray`.
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
    resume: bool = False  # interrupted with a checkpoint: continues from it (as `train --resume`) instead of starting again

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
    run: PlannedRun | None  # None for "info"
    done: int
    total: int
    record: dict[str, Any] | None = None
    row: dict[str, Any] | None = None
    message: str = ""  # "info": where the runs execute (e.g. which Ray cluster, its CPUs and GPUs)


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

    @property
    def verdict(self) -> SweepVerdict:
        """What the sweep found, as data: the best rate, whether it sits at an end of the grid, what never learned."""
        best, values = self.best, self.plan.values
        edge = None
        if best is not None and self.best_at_edge:
            edge = "smallest" if best["learning_rate"] == min(values) else "largest"
        return SweepVerdict(
            best=best, edge=edge, low=min(values), high=max(values),
            learned_nothing=best is None and any(row["status"] == "ok" for row in self.rows),
            never_learned=[row["learning_rate"] for row in self.never_learned], failed=[row["learning_rate"] for row in self.failed],
        )  # fmt: skip


@dataclass(frozen=True)
class SweepVerdict:
    """What a learning-rate sweep found, as `sweep-lr` states it (and a report or a notebook can).

    best: the best rate's summary row (`SweepResult.best`), None when no run is ok and learned; edge: "smallest" or
    "largest" when the best rate is that end of the grid (of 2+ rates: the optimum may lie outside), else None;
    low, high: the grid's smallest and largest rate; learned_nothing: runs finished but every one stayed at chance
    level; never_learned, failed: the rates that ended no better than chance, or failed.
    """

    best: dict[str, Any] | None
    edge: str | None
    low: float
    high: float
    learned_nothing: bool
    never_learned: list[float]
    failed: list[float]


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
    if spec.data.path and not legacy:  # a data file is known by its content: changed in place, it is new data
        doc["data"]["sha256"] = file_digest(spec.data.path)
    identity = json.dumps({"spec": doc, "values": [format_value(v) for v in values]}, sort_keys=True)
    digest = hashlib.sha1(identity.encode()).hexdigest()[:6]
    lo, hi = format_value(min(values)), format_value(max(values))
    span = lo if lo == hi else f"{lo}..{hi}"
    if legacy:  # the name before 0.x: no epochs and seed in it
        return f"{spec.name}-lr-sweep-{span}-n{len(values)}-{digest}"
    return f"{spec.name}-lr-sweep-{span}-n{len(values)}-e{spec.training.epochs}-s{spec.training.seed}-{digest}"


def plan_sweep(spec: Spec, values: str | Sequence[float], out: str | Path = "results", force: bool = False) -> SweepPlan:
    """Plan a sweep of `spec` over learning rates (`--values` text or numbers) in `out/<sweep_name>`.

    Reads the statuses already on disk; writes nothing. Raises UsageError for bad values, UnsafeFileError
    for a link, pipe or device planted in the sweep folder. A run.json
    that cannot be trusted (a folder, torn JSON, wrong types) is planned as `corrupt`, with a warning
    naming it: it is trained again, its record set aside as run.json.corrupt (see run_sweep).
    """
    text = values if isinstance(values, str) else None
    rates = parse_values(values) if isinstance(values, str) else check_values(values)
    sweep_dir = Path(out) / sweep_name(spec, rates)
    legacy = Path(out) / _sweep_name(spec, rates, legacy=True)
    if not sweep_dir.exists() and (legacy / "sweep.json").is_file():
        sweep_dir = legacy  # a sweep started before names carried epochs and seed resumes where it is
    check_folder(sweep_dir)  # a link or pipe planted in it is refused now, as holding the folder would refuse it
    return SweepPlan(spec, tuple(rates), sweep_dir, _plan_runs(sweep_dir, rates, force), force, text)


def _plan_runs(sweep_dir: Path, rates: Sequence[float], force: bool, warned: Sequence[PlannedRun] = ()) -> tuple[PlannedRun, ...]:
    """Each rate's run folder and the status found there now; a warning for each untrusted record not in `warned`."""
    said = {run.run_dir for run in warned if run.problem}
    runs = []
    for rate in rates:
        run_dir = sweep_dir / f"lr-{format_value(rate)}"
        status, problem = results.record_status(run_dir)
        if problem and run_dir not in said:
            note = f"{run_dir / 'run.json'}: {problem}; this run will be trained again (the record is kept as run.json.corrupt)"
            warnings.warn(note, stacklevel=3)
        skip = status in FINISHED and not force
        runs.append(PlannedRun(rate, run_dir, status, skip=skip, problem=problem, resume=resumable(run_dir, status, force)))
    return tuple(runs)


def resumable(run_dir: Path, status: str | None, force: bool) -> bool:
    """True when a run of a sweep or study continues from its checkpoint: stopped before its end (Ctrl-C, a kill) with a
    checkpoint.npz left, and --force not given. Such a run continues as `train --resume` would, at its next epoch."""
    return not force and status in RESUMABLE and (run_dir / CHECKPOINT).is_file()


# --- records and the summary -----------------------------------------------------------------


def _record(run_dir: Path) -> dict[str, Any] | None:
    return read_record(run_dir / "run.json")


def summary_rows(plan: SweepPlan, records: dict[Path, dict[str, Any] | None] | None = None) -> list[dict[str, Any]]:
    """One row per planned learning rate, read from its run.json (`pending` when there is none).

    records: run folder -> record, as the sweep holds them while it runs (a run not in it is read from its run.json).
    """
    return [_summary_row(run, _held(run, records)) for run in plan.runs]


def _held(run: PlannedRun, records: dict[Path, dict[str, Any] | None] | None) -> dict[str, Any] | None:
    return records[run.run_dir] if records is not None and run.run_dir in records else _record(run.run_dir)


def _summary_row(run: PlannedRun, record: dict[str, Any] | None) -> dict[str, Any]:
    record = record or {}
    timing = record.get("timing") or {}
    row = {key: record.get(key) for key in SUMMARY_COLUMNS}
    row.update(
        learning_rate=run.learning_rate,
        status=record.get("status") or PENDING,
        epoch_s_median=timing.get("epoch_s_median"),
        dataset=(record.get("data") or {}).get("name"),  # the data actually used (mnist may fall back to mnist-5k)
        run_dir=run.run_dir.name,  # relative: the sweep folder can be moved or shared
    )
    return row


class _Summary:
    """summary.csv from the records the sweep holds (a run not held is read from its run.json): a rewrite makes the
    row of a run again only when its record changed."""

    def __init__(self, plan: SweepPlan, records: dict[Path, dict[str, Any] | None]) -> None:
        self.plan, self.records = plan, records
        self.csv = CsvLines(SUMMARY_COLUMNS)
        self.rows: dict[Path, tuple[Any, dict[str, Any]]] = {}

    def write(self) -> list[dict[str, Any]]:
        rows, lines = [], []
        for run in self.plan.runs:
            record = _held(run, self.records)
            cached = self.rows.get(run.run_dir)
            if cached is None or cached[0] is not record:
                cached = (record, _summary_row(run, record))
                self.rows[run.run_dir] = cached
            row = cached[1]
            rows.append(row)
            lines.append(self.csv.line(run.run_dir, (row,), lambda row=row: {**row, "learning_rate": format_value(row["learning_rate"])}))
        self.csv.write(self.plan.sweep_dir / "summary.csv", lines)  # rates as typed: 500, not 500.0
        return rows


def _write_index(plan: SweepPlan, options: SweepOptions) -> None:
    path = plan.sweep_dir / "sweep.json"
    previous = results.previous_index(path)
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


# --- running ---------------------------------------------------------------------------------


def run_sweep(plan: SweepPlan, options: SweepOptions = SweepOptions(), on_event: Callable[[SweepEvent], None] | None = None,
              ray: RayConfig | None = None) -> SweepResult:  # fmt: skip
    """Train every planned run that is not kept, writing sweep.json and summary.csv (at the start, at most once a
    second while runs finish, and at the end: `cnnbench.aggregates`).

    `ray` (a RayConfig, see `cnnbench.executor.ray_config`) sends the runs to a Ray cluster; None trains them here.

    Diverged and failed runs are recorded and the sweep goes on. Ctrl-C marks the run(s) in
    progress `interrupted`, writes the summary and re-raises KeyboardInterrupt; a bad spec or
    dataset raises its CnnbenchError. `on_event` gets a SweepEvent at each step. The sweep folder
    is locked: a second process on it gets a UsageError; the statuses `plan` read are read again
    once the lock is held (a run finished meanwhile is kept), and the result's plan is that one.
    """
    if options.parallel < 1:
        raise UsageError(f"`parallel` must be at least 1, got {options.parallel}")
    if options.fuse is not None and options.fuse < 1:
        raise UsageError(f"`fuse` must be at least 1, got {options.fuse}")
    emit = on_event or (lambda event: None)
    new_folder = not plan.sweep_dir.exists()
    with folder_lock(plan.sweep_dir, "sweep"):
        # Planned again under the lock: a run that another process finished since `plan_sweep` read it is kept.
        plan = replace(plan, runs=_plan_runs(plan.sweep_dir, plan.values, plan.force, warned=plan.runs))
        todo = plan.to_train
        for run in todo:
            if owner := held_by(run.run_dir):  # `cnnbench train --resume` of this run, still going
                raise in_use(run.run_dir, owner)
        for run in plan.runs:
            if run.status == results.CORRUPT:
                results.set_aside(run.run_dir / "run.json")  # kept for inspection, out of the retrained run's way
        _write_index(plan, options)
        records = {run.run_dir: _record(run.run_dir) for run in plan.runs}  # what summary.csv shows while runs finish
        for run in plan.runs:
            if run.skip:
                emit(SweepEvent("skip", run, 0, len(todo), record=records[run.run_dir]))
        summary = Throttled(_Summary(plan, records).write)  # rewritten at most once a second, and at the end
        summary.flush()
        try:
            _execute(plan, todo, options, emit, records, summary, ray)
            raise_if_stopped()  # a SIGTERM or SIGHUP swallowed while the last run was recorded still ends the sweep as stopped
        except BaseException as exc:
            if isinstance(exc, CnnbenchError) and new_folder and not any(run.run_dir.exists() for run in plan.runs):
                shutil.rmtree(plan.sweep_dir)  # a typo in --data or the spec leaves no empty sweep behind
            else:
                try:
                    records.clear()  # read again: the runs' records as they were left (interrupted, failed)
                    summary.flush()  # on Ctrl-C too: the summary always matches the run folders
                except OSError:
                    pass  # a full disk: the error being raised says more than this one would
            raise
        records.clear()  # the final summary is read from the run folders, once
        return SweepResult(plan, summary.flush(), plan.sweep_dir / "summary.csv")


def planned_engine(spec: Spec, options: SweepOptions) -> str:
    """The engine the sweep's runs will use, decided here without importing Keras (workers may train elsewhere).

    UsageError for fused on a backend other than JAX, as train_run would raise in every run.
    """
    backend = devices.requested_backend(options.backend)
    gpu = options.device == "gpu" or (options.device == "auto" and bool(devices.nvidia_gpus()))
    return engines.resolve(options.engine or spec.training.engine, backend, "gpu" if gpu else "cpu")


def _groups(todo: list[PlannedRun], options: SweepOptions, fused: bool) -> list[list[PlannedRun]]:
    """Runs that train together: up to --fuse rates as lanes of one fused program, else one run each."""
    size = (options.fuse or len(todo)) if fused else 1
    return [todo[start : start + size] for start in range(0, len(todo), size)]


def execute_runs(
    spec: Spec,
    todo: Sequence[Any],
    options: SweepOptions,
    spec_of: Callable[[Any], Spec],
    group: Callable[[list[Any], bool], list[list[Any]]],
    on_event: Callable[[str, Any, int, int, Any], None],
    on_died: Callable[[Any, str], None],
    on_stopped: Callable[[BaseException], None],
    ray: RayConfig | None = None,
) -> None:
    """Hand the planned runs of a sweep or study to an executor (this process, local workers or Ray); report what comes back.

    Each run has `.run_dir` and `.resume`; `spec_of(run)` is the spec it trains; `group(runs, fused)` says which train
    together. Runs that continue from their checkpoint go first, in a pass of their own (`train --resume`), then the
    rest. `on_event(kind, run, done, total, payload)`: "info" (run None, payload the message), "start" (the initial
    record), "epoch" (a history row), "end" (the final record; None when the run's worker died, after `on_died(run,
    reason)`). On Ctrl-C or any error, `on_stopped(exc)` is called before it is raised again. `ray`: a Ray cluster's
    RayConfig, or None for this machine.
    """
    if not todo:
        return
    fused = engines.get(planned_engine(spec, options)).lanes_together
    if options.fuse and not fused:
        warnings.warn("`fuse` has no effect: these runs train with model.fit (the fused engine is JAX-only; see `engine`)", stacklevel=3)
    on_ray = ray is not None  # a Ray worker trains in its own folder: the checkpoint is not there to continue from
    total, done = len(todo), 0
    passes = [(True, [run for run in todo if run.resume and not on_ray]), (False, [run for run in todo if not run.resume or on_ray])]
    for resume, runs in passes:
        if not runs:
            continue
        groups = group(runs, fused)
        parallel = min(options.parallel, len(groups)) or 1
        run_options = RunOptions(device=options.device, backend=options.backend, threads=options.threads, engine=options.engine,
                                 resume=resume)  # the threads per run: executor.resources  # fmt: skip
        executor = make_executor(parallel, run_options, spec, len(groups), ray)
        tasks = [Task(key, tuple((spec_of(run), run.run_dir) for run in members), "train_run" if len(members) == 1 else "train_group")
                 for key, members in enumerate(groups)]  # fmt: skip
        if hasattr(executor, "on_info"):
            executor.on_info = lambda message: on_event("info", None, 0, total, message)

        def relay(event: Event, groups: list[list[Any]] = groups) -> None:
            nonlocal done
            run = groups[event.key][event.lane]
            if event.kind in ("start", "epoch"):
                on_event(event.kind, run, done, total, event.payload)
                return
            if event.kind == "died":
                on_died(run, event.payload)
            done += 1
            on_event("end", run, done, total, None if event.kind == "died" else event.payload)

        try:
            executor.run(tasks, relay)
        except BaseException as exc:
            on_stopped(exc)
            raise


def progress_event(event_type: type, kind: str, run: Any, done: int, total: int, payload: Any):
    """An "info", "start" or "epoch" event of `execute_runs` as the caller's event type (SweepEvent, StudyEvent)."""
    if kind == "info":
        return event_type("info", None, 0, total, message=payload)
    return event_type(kind, run, done, total, **{"record" if kind == "start" else "row": payload})


def _execute(plan: SweepPlan, todo: list[PlannedRun], options: SweepOptions, emit, records: dict[Path, Any],
             summary: Throttled, ray: RayConfig | None) -> None:  # fmt: skip
    """Train the runs of a learning-rate sweep, keeping `records` (what summary.csv shows) as runs start and end."""

    def on_event(kind: str, run: PlannedRun | None, done: int, total: int, payload: Any) -> None:
        if kind != "end":
            emit(progress_event(SweepEvent, kind, run, done, total, payload))
            if kind == "start":
                records[run.run_dir] = payload  # shown `running` from the next write on
            summary.tick()  # a run that ended less than a second ago is in the summary once the second is over
        else:
            records[run.run_dir] = _record(run.run_dir)  # this run's record as it is on disk: one file per finished run
            emit(SweepEvent("end", run, done, total, record=records[run.run_dir] if payload is None else payload))
            summary.changed()

    def on_died(run: PlannedRun, reason: str) -> None:
        base = {"name": plan.spec.name, "learning_rate": run.learning_rate}
        run_record.mark_ended(run.run_dir, "failed", reason, (None, "running"), base)

    def on_stopped(exc: BaseException) -> None:
        for run in todo:
            run_record.mark_ended(run.run_dir, "interrupted", interrupt_reason(exc), ("running",))

    execute_runs(plan.spec, todo, options, plan.spec_for, lambda runs, fused: _groups(runs, options, fused), on_event, on_died, on_stopped,
                 ray)  # fmt: skip
