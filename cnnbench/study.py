"""The study pipeline: plan runs by identity, keep what is finished, execute the rest, write the tables and verdict.

A study folder holds sweep.json, runs.csv, points.csv and one normal run folder per run, `<point>/seed-<s>/`.

>>> grid = make_grid(load_spec("convolutional_nn"), ["training.learning_rate=0.01,0.1"], seeds=3)
>>> plan = plan_study(grid, "results")                 # reads the folder, writes nothing
>>> result = run_study(plan, StudyOptions(parallel=2))  # trains what is not finished
>>> result.verdict.best["point"]
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench import __version__, results
from cnnbench import record as run_record
from cnnbench.aggregates import CsvLines, Throttled
from cnnbench.errors import CnnbenchError, UsageError, interrupt_reason
from cnnbench.executor import RayConfig
from cnnbench.grid import Grid, format_point_value
from cnnbench.lock import folder_lock, held_by, in_use
from cnnbench.results import FINISHED, now_iso, read_json, read_record, write_json
from cnnbench.spec import Spec, parse_spec
from cnnbench.sweep import SweepOptions, execute_runs, progress_event, resumable
from cnnbench.verdict import RANKS, Verdict, make_verdict, point_columns, point_rows

__all__ = ["RUN_COLUMNS", "StudyEvent", "StudyOptions", "StudyPlan", "StudyResult", "StudyRun", "plan_study", "run_study",
           "spec_identity", "study_name"]  # fmt: skip

KIND = "study"  # sweep.json's kind (sweep-lr writes "lr-sweep")
RUN_COLUMNS = ("seed", "status", "error", "best_val_error", "final_val_error", "best_epoch", "epochs_run", "total_time_s",
               "epoch_s_median", "learned", "engine", "fused_k", "device", "backend", "dataset", "identity", "run_dir")  # fmt: skip
PENDING = "pending"
_HOW_TO_RUN = ("engine", "steps_per_execution")  # training keys that change how a run executes, not what it learns


# --- identity ----------------------------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    """Numbers as a person means them: 1.0 and 1 alike, 0.07000000000000001 as 0.07."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        cleaned = float(f"{value:.12g}")
        return int(cleaned) if cleaned.is_integer() else cleaned
    return value


def identity_doc(spec: Spec) -> dict[str, Any]:
    """What makes two runs the same run: the resolved spec, seed included, without its name, description and the
    how-to-run keys (engine, steps_per_execution). Defaults are filled in, so older spec.json files read the same."""
    doc = parse_spec(spec.to_dict(), spec.source, default_name=spec.name).to_dict()
    for key in ("name", "description"):
        doc.pop(key)
    for key in _HOW_TO_RUN:
        doc["training"].pop(key, None)
    return _canonical(doc)


def spec_identity(spec: Spec) -> str:
    """A run's identity: a hash of its canonical resolved spec (two spellings of one configuration share it)."""
    text = json.dumps(identity_doc(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _short(path: str) -> str:
    return re.split(r"[.\]]", path.rstrip("]"))[-1] or path


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def study_name(grid: Grid) -> str:
    """`<spec>-sweep-<axes>-<digest>`: the digest covers the spec without the swept paths and the seed (not the values),
    so adding or removing values resumes the same folder, and spelling the same paths another way too."""
    doc = identity_doc(grid.spec)
    for axis in grid.axes:
        for target in axis.targets:
            parent = doc
            for part in target[:-1]:
                parent = parent.get(part) if isinstance(parent, dict) else parent[part]
            if isinstance(parent, dict):  # None: a knob the spec leaves unset, absent from the digest anyway
                parent.pop(target[-1], None)
    doc["training"].pop("seed")
    digest = hashlib.sha1(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:6]
    names = "-".join(dict.fromkeys(_safe(_short(axis.path)) for axis in grid.axes))[:80]
    return f"{grid.spec.name}-sweep-{names}-{digest}"


def point_label(grid: Grid, point: tuple[Any, ...]) -> str:
    """The folder name of a point: `filters-16_learning_rate-0.05` (the axis' last key, its full path when two share it)."""
    shorts = [_short(axis.path) for axis in grid.axes]
    parts = []
    for axis, short, value in zip(grid.axes, shorts, point, strict=True):
        name = short if shorts.count(short) == 1 else axis.path
        parts.append(f"{name}-{format_point_value(value)}")
    label = _safe("_".join(parts))
    if len(label) > 120:
        label = f"{label[:100]}-{hashlib.sha1(label.encode()).hexdigest()[:8]}"
    return label


# --- the plan --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyRun:
    """One run of a study: a point and a seed, its identity, its folder (found by identity), the status found there."""

    point: tuple[Any, ...]
    label: str  # the point's label
    seed: int  # the seed the run trains with (the spec's seed + the offset)
    spec: Spec
    identity: str
    run_dir: Path
    status: str | None
    skip: bool  # finished (ok, diverged, oom) and kept because --force was not given
    problem: str | None = None
    resume: bool = False  # interrupted with a checkpoint: continues from it instead of starting again


@dataclass(frozen=True)
class StudyPlan:
    """What a study will do, computed without writing or importing anything heavy (`--dry-run` prints it)."""

    grid: Grid
    study_dir: Path
    runs: tuple[StudyRun, ...]
    removed: tuple[dict[str, Any], ...] = ()  # sweep.json entries of earlier runs whose values left the grid
    force: bool = False
    tune: str | None = None
    rank: str = "mean"
    show_all: bool = False  # tables and verdict include the removed runs

    @property
    def to_train(self) -> list[StudyRun]:
        return [run for run in self.runs if not run.skip]

    @property
    def axes(self) -> list[str]:
        return [axis.path for axis in self.grid.axes]


def _previous_index(study_dir: Path) -> dict[str, Any]:
    return read_record(study_dir / "sweep.json") or {}


def _on_disk(study_dir: Path) -> dict[str, Path]:
    """identity -> run folder, from the spec.json of every `<point>/seed-<s>/` folder in the study."""
    found: dict[str, Path] = {}
    if not study_dir.is_dir():
        return found
    for spec_path in sorted(study_dir.glob("*/seed-*/spec.json")):
        try:
            spec = parse_spec(read_json(spec_path), str(spec_path))
        except (OSError, ValueError, RecursionError, CnnbenchError):
            continue  # not a spec cnnbench wrote: the run is planned anew
        found.setdefault(spec_identity(spec), spec_path.parent)
    return found


def plan_study(grid: Grid, out: str | Path = "results", force: bool = False, tune: str | None = None, rank: str = "mean",
               show_all: bool = False) -> StudyPlan:  # fmt: skip
    """Plan every point x seed of `grid` in `out/<study_name>`, finding earlier runs by identity; writes nothing.

    A run.json that cannot be trusted is planned as `corrupt` (warned; set aside when the study runs).
    """
    if tune is not None and tune not in [axis.path for axis in grid.axes]:
        raise UsageError(f"`tune` {tune}: not an axis; axes: {', '.join(axis.path for axis in grid.axes)}")
    if rank not in RANKS:
        raise UsageError(f"`rank` {rank}: must be one of {', '.join(RANKS)}")
    study_dir = Path(out) / study_name(grid)
    existing = _on_disk(study_dir)
    taken = {path.relative_to(study_dir) for path in existing.values()}
    runs = []
    for point in grid.points:
        label = point_label(grid, point)
        for offset in grid.seeds:
            spec = grid.point_spec(point, offset)
            identity = spec_identity(spec)
            run_dir = existing.get(identity)
            if run_dir is None:
                run_dir, n = study_dir / label / f"seed-{spec.training.seed}", 1
                while run_dir.relative_to(study_dir) in taken:  # that folder holds another configuration
                    n += 1
                    run_dir = study_dir / f"{label}-{n}" / f"seed-{spec.training.seed}"
            taken.add(run_dir.relative_to(study_dir))
            status, problem = results.record_status(run_dir)
            if problem:
                warnings.warn(f"{run_dir / 'run.json'}: {problem}; this run will be trained again (the record is kept as run.json.corrupt)",
                              stacklevel=2)  # fmt: skip
            skip = status in FINISHED and not force
            resume = not skip and resumable(run_dir, status, force)
            runs.append(StudyRun(point, label, spec.training.seed, spec, identity, run_dir, status, skip, problem, resume))
    planned = {run.identity for run in runs}
    previous = _previous_index(study_dir).get("runs") or []
    removed = tuple(entry for entry in previous if isinstance(entry, dict) and entry.get("identity") not in planned
                    and isinstance(entry.get("run_dir"), str))  # fmt: skip
    return StudyPlan(grid, study_dir, tuple(runs), removed, force, tune, rank, show_all)


# --- options, events, result ---------------------------------------------------------------------------


# How a study's runs execute is how sweep-lr's do: device, backend, parallel runs, threads per run, engine,
# fuse (at most K learning rates per fused program). One options type serves both; a Ray cluster is `run_study`'s `ray`.
StudyOptions = SweepOptions


@dataclass(frozen=True)
class StudyEvent:
    """Progress of a study: "skip" (a kept run; record: its run.json), "start", "epoch" (row), "end" (record), "info"."""

    kind: str
    run: StudyRun | None
    done: int
    total: int
    record: dict[str, Any] | None = None
    row: dict[str, Any] | None = None
    message: str = ""


@dataclass(frozen=True)
class StudyResult:
    """What a study left on disk: runs.csv and points.csv rows (typed), the verdict, and where they are."""

    plan: StudyPlan
    runs: list[dict[str, Any]]
    points: list[dict[str, Any]]
    verdict: Verdict

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [row for row in self.runs if row["status"] == "failed"]


# --- tables ---------------------------------------------------------------------------------------------


def run_row(plan: StudyPlan, point: dict[str, Any], label: str, run_dir: Path, identity: str | None,
            record: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    """One row of runs.csv: the point's values by axis path, then the run's record."""
    record = record or {}
    timing = record.get("timing") or {}
    row = {"point": label, **point, **{key: record.get(key) for key in RUN_COLUMNS}}
    row.update(status=record.get("status") or PENDING, epoch_s_median=timing.get("epoch_s_median"),
               dataset=(record.get("data") or {}).get("name"), identity=identity,
               run_dir=str(run_dir.relative_to(plan.study_dir)))  # fmt: skip
    if row["seed"] is None:
        row["seed"] = int(run_dir.name.removeprefix("seed-")) if run_dir.name.removeprefix("seed-").isdigit() else None
    return row


class _Tables:
    """runs.csv and points.csv, from records held in memory: rewritten at most once a second, and at the end."""

    def __init__(self, plan: StudyPlan) -> None:
        self.plan = plan
        self.records: dict[Path, dict[str, Any] | None] = {run.run_dir: read_record(run.run_dir / "run.json") for run in plan.runs}
        removed = plan.removed if plan.show_all else ()
        self.removed = [(entry, read_record(plan.study_dir / entry["run_dir"] / "run.json")) for entry in removed]
        self.throttle = Throttled(self._write)
        self.axes = self.columns(self.rows())  # the plan's axes, and any that only removed runs have
        self._runs_csv = CsvLines(["point", *self.axes, *RUN_COLUMNS])
        self._points_csv = CsvLines(point_columns(self.axes))
        self._rows: dict[Path, tuple[Any, dict[str, Any]]] = {}  # run folder -> (record, its runs.csv row)
        self._points: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {}  # point -> (its runs' rows, its points.csv row)

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for run in self.plan.runs:
            point = {axis: value for axis, value in zip(self.plan.axes, run.point, strict=True)}
            rows.append(run_row(self.plan, point, run.label, run.run_dir, run.identity, self.records.get(run.run_dir)))
        for entry, record in self.removed:
            point = entry.get("point") if isinstance(entry.get("point"), dict) else {}
            rows.append(run_row(self.plan, point, str(entry.get("point_label") or ""), self.plan.study_dir / entry["run_dir"],
                                entry.get("identity"), record))  # fmt: skip
        return rows

    def columns(self, rows: list[dict[str, Any]]) -> list[str]:
        axes = list(dict.fromkeys([*self.plan.axes, *(k for row in rows for k in row if k not in RUN_COLUMNS and k != "point")]))
        return axes

    def write(self, final: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        """Rewrite both tables now (`final`: the start, the end), else when due (`cnnbench.aggregates`): None if not."""
        if final:
            return self.throttle.flush()
        self.throttle.changed()
        return None

    def _row(self, run_dir: Path, make: Callable[[dict[str, Any] | None], dict[str, Any]], record: dict[str, Any] | None) -> dict[str, Any]:
        cached = self._rows.get(run_dir)
        if cached is None or cached[0] is not record:  # made again only for a run whose record changed
            cached = (record, make(record))
            self._rows[run_dir] = cached
        return cached[1]

    def _write(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        plan, axes = self.plan, self.axes
        rows = []
        for run in plan.runs:
            point = dict(zip(plan.axes, run.point, strict=True))
            make = lambda record, run=run, point=point: run_row(plan, point, run.label, run.run_dir, run.identity, record)  # noqa: E731
            rows.append(self._row(run.run_dir, make, self.records.get(run.run_dir)))
        for entry, record in self.removed:
            point = entry.get("point") if isinstance(entry.get("point"), dict) else {}
            run_dir = plan.study_dir / entry["run_dir"]
            make = lambda record, entry=entry, point=point, run_dir=run_dir: run_row(  # noqa: E731
                plan, point, str(entry.get("point_label") or ""), run_dir, entry.get("identity"), record)
            rows.append(self._row(run_dir, make, record))
        groups: dict[str, list[dict[str, Any]]] = {}
        lines = []
        for row in rows:
            groups.setdefault(row["point"], []).append(row)
            typed = lambda row=row: {**row, **{a: format_point_value(row[a]) if a in row else None for a in axes}}  # noqa: E731
            lines.append(self._runs_csv.line(row["run_dir"], (row,), typed))
        self._runs_csv.write(plan.study_dir / "runs.csv", lines)
        points, lines = [], []
        for label, members in groups.items():  # a point's row is made again only when one of its runs changed
            cached = self._points.get(label)
            if cached is None or len(cached[0]) != len(members) or any(a is not b for a, b in zip(cached[0], members, strict=False)):
                cached = (members, point_rows(members, axes)[0])
                self._points[label] = cached
            point = cached[1]
            points.append(point)
            shown = lambda point=point: {**point, **{a: format_point_value(point[a]) for a in axes}}  # noqa: E731
            lines.append(self._points_csv.line(label, (point,), shown))
        self._points_csv.write(plan.study_dir / "points.csv", lines)
        return rows, points


def _write_index(plan: StudyPlan, options: StudyOptions, verdict: Verdict | None = None) -> None:
    """sweep.json: the axes as given and expanded, method, seeds, every run planned so far (removed ones kept)."""
    path = plan.study_dir / "sweep.json"
    previous = results.previous_index(path)
    grid = plan.grid
    runs = [{"point_label": run.label, "point": dict(zip(plan.axes, run.point, strict=True)), "seed": run.seed,
             "identity": run.identity, "run_dir": str(run.run_dir.relative_to(plan.study_dir)), "in_grid": True}
            for run in plan.runs]  # fmt: skip
    runs += [{**entry, "in_grid": False} for entry in plan.removed]
    index = {
        "kind": KIND,
        "name": grid.spec.name,
        "axes": [{"path": axis.path, "expanded": axis.expanded, "values": list(axis.values),
                  "range": list(axis.range) if axis.range else None} for axis in grid.axes],  # fmt: skip
        "zip": [list(group) for group in grid.zips],
        "method": grid.method,
        "n": grid.n,
        "sample_seed": grid.sample_seed,
        "seeds": [grid.spec.training.seed + k for k in grid.seeds],
        "tune": plan.tune,
        "rank": plan.rank,
        "runs": runs,
        "spec": grid.spec.to_dict(),  # each run replaces the swept paths and the seed
        "options": {"device": options.device, "backend": options.backend, "parallel": options.parallel, "threads": options.threads,
                    "engine": options.engine, "fuse": options.fuse, "force": plan.force},  # fmt: skip
        "verdict": verdict.to_dict() if verdict else previous.get("verdict"),
        "cnnbench": __version__,
        "created_at": previous.get("created_at") or now_iso(),
        "updated_at": now_iso(),
    }
    write_json(path, index)


# --- running --------------------------------------------------------------------------------------------


def run_study(plan: StudyPlan, options: StudyOptions | None = None, on_event: Callable[[StudyEvent], None] | None = None,
              ray: RayConfig | None = None) -> StudyResult:  # fmt: skip
    """Train every planned run that is not kept; write sweep.json, runs.csv, points.csv and the verdict.

    Diverged and failed runs are recorded and the study goes on. Ctrl-C marks the runs in progress `interrupted`
    (they continue from their checkpoint next time), writes the tables and re-raises KeyboardInterrupt. The study
    folder is locked: a second process on it gets a UsageError. `options` None: one run at a time. `ray` (a RayConfig,
    see `cnnbench.executor.ray_config`) sends the runs to a Ray cluster; None trains them on this machine.
    """
    options = options or StudyOptions()
    if options.parallel < 1:
        raise UsageError(f"`parallel` must be at least 1, got {options.parallel}")
    if options.fuse is not None and options.fuse < 1:
        raise UsageError(f"`fuse` must be at least 1, got {options.fuse}")
    emit = on_event or (lambda event: None)
    todo = plan.to_train
    new_folder = not plan.study_dir.exists()
    with folder_lock(plan.study_dir, "sweep"):
        for run in todo:
            if owner := held_by(run.run_dir):
                raise in_use(run.run_dir, owner)
        for run in plan.runs:
            if run.status == results.CORRUPT:
                results.set_aside(run.run_dir / "run.json")
        _write_index(plan, options)
        tables = _Tables(plan)
        for run in plan.runs:
            if run.skip:
                emit(StudyEvent("skip", run, 0, len(todo), record=tables.records.get(run.run_dir)))
        tables.write(final=True)
        try:
            _execute(plan, todo, options, emit, tables, ray)
        except BaseException as exc:
            if isinstance(exc, CnnbenchError) and new_folder and not any(run.run_dir.exists() for run in plan.runs):
                shutil.rmtree(plan.study_dir)  # a typo in --data leaves no empty study behind
            else:
                try:
                    tables.write(final=True)
                except OSError:
                    pass
            raise
        rows, points = tables.write(final=True)
        axes = {path: list(values) for path, values in _axis_values(plan, rows).items()}
        verdict = make_verdict(points, axes, plan.grid.spec.to_dict(), plan.rank, plan.tune)
        _write_index(plan, options, verdict)
        return StudyResult(plan, rows, points, verdict)


def _axis_values(plan: StudyPlan, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    values = {axis.path: list(axis.values) for axis in plan.grid.axes}
    if plan.show_all:
        for row in rows:
            for path in values:
                if row.get(path) is not None and row[path] not in values[path]:
                    values[path].append(row[path])
    return values


def _groups(todo: list[StudyRun], options: StudyOptions, fused: bool) -> list[list[StudyRun]]:
    """Runs that train together: with the fused engine, runs that differ only in the learning rate (same seed, same
    everything else) as lanes of one program, at most --fuse per program; otherwise one run each."""
    if not fused:
        return [[run] for run in todo]
    buckets: dict[str, list[StudyRun]] = {}
    for run in todo:
        doc = identity_doc(run.spec)
        doc["training"].pop("learning_rate")
        key = "resume" + run.identity if run.resume else json.dumps(doc, sort_keys=True)  # a resumed run trains alone
        buckets.setdefault(key, []).append(run)
    groups = []
    for members in buckets.values():
        size = options.fuse or len(members)
        groups += [members[start : start + size] for start in range(0, len(members), size)]
    return groups


def _execute(plan: StudyPlan, todo: list[StudyRun], options: StudyOptions, emit, tables: _Tables, ray: RayConfig | None) -> None:
    """Train the runs of a study (through the executor sweep-lr uses) and record what comes back in the tables."""

    def on_event(kind: str, run: StudyRun | None, done: int, total: int, payload: Any) -> None:
        if kind != "end":
            emit(progress_event(StudyEvent, kind, run, done, total, payload))
            tables.throttle.tick()  # a run that ended less than a second ago is in the tables once the second is over
        else:
            record = read_record(run.run_dir / "run.json") if payload is None else payload
            tables.records[run.run_dir] = record
            emit(StudyEvent("end", run, done, total, record=record))
            tables.write()

    def on_died(run: StudyRun, reason: str) -> None:
        run_record.mark_ended(run.run_dir, "failed", reason, (None, "running"), {"name": run.run_dir.parent.name})

    def on_stopped(exc: BaseException) -> None:
        for run in todo:
            run_record.mark_ended(run.run_dir, "interrupted", interrupt_reason(exc), ("running",))
            tables.records[run.run_dir] = read_record(run.run_dir / "run.json")

    execute_runs(plan.grid.spec, todo, options, lambda run: run.spec, lambda runs, fused: _groups(runs, options, fused), on_event,
                 on_died, on_stopped, ray)  # fmt: skip
