"""`cnnbench sweep`: a study over any fields of a spec, repeated over seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cnnbench.cli.options import (
    DEFAULT_SPEC,
    BackendOpt,
    DeviceOpt,
    RayOptions,
    SharedThreadsOpt,
    SinkOptions,
    SpecOptions,
    _check_run_options,
    _engine_option,
    grouped,
    sweep_options,
)
from cnnbench.cli.output import _fmt, _output_may_fail, _resumable, _RunsProgress, _table, err, say, user_errors
from cnnbench.errors import count

if TYPE_CHECKING:
    from cnnbench.study import StudyOptions

app = typer.Typer()


class _StudyProgress(_RunsProgress):
    """A progress bar over a study's runs (on stderr) and one line per finished or kept run, from `run_study`'s events."""

    @staticmethod
    def line(run, record: dict | None) -> str:
        record = record or {}
        status = record.get("status") or "pending"
        line = f"{run.label} seed {run.seed}: {status}"
        if record.get("epochs_run"):
            line += f", best val error {_fmt(record.get('best_val_error'))} at epoch {record.get('best_epoch')}"
            line += f", {_fmt(record.get('total_time_s'), '.1f')} s"
        if status != "ok" and record.get("error"):
            line += f"  {record['error']}"
        return line + ("  NEVER LEARNED" if record.get("learned") is False else "")

    @_output_may_fail
    def __call__(self, event) -> None:
        if event.kind == "info":
            self.print(event.message)
            return
        key = f"{event.run.label} seed {event.run.seed}"
        if event.kind == "skip":
            self.print(f"{self.line(event.run, event.record)}  (kept: finished earlier)")
            return
        if event.kind == "start":
            self.in_flight[key] = 0
        elif event.kind == "epoch":
            self.in_flight[key] = event.row["epoch"]
        elif event.kind == "end":
            self.in_flight.pop(key, None)
            self.done = event.done
            self.print(self.line(event.run, event.record))
        self.advance(", ".join(self.in_flight)[:60])


def _study_point_cells(point: dict) -> list:
    def interval(row: dict) -> str:
        low, high = row.get("best_val_error_ci95_low"), row.get("best_val_error_ci95_high")
        return "-" if low is None else f"{_fmt(max(0.0, low))}..{_fmt(min(1.0, high))}"  # an error lies in [0, 1]

    return [f"{point['n_ok']}/{point['n']}", _fmt(point.get("best_val_error_mean")), interval(point),
            _fmt(point.get("best_val_error_median")), _fmt(point.get("final_val_error_mean"))]  # fmt: skip


def _study_table(result) -> None:
    """The verdict at the end of a study: every point (or, with --tune, the best per value of the other axes)."""
    from cnnbench.grid import format_point_value

    plan, verdict = result.plan, result.verdict
    spec = plan.grid.spec
    t = spec.training
    used = sorted({row["dataset"] for row in result.runs if row.get("dataset")})
    seeds = len(plan.grid.seeds)
    title = (f"{spec.name}: {', '.join(used) or spec.data.dataset}, {count(t.epochs, 'epoch')}, {count(seeds, 'seed')}, "
             f"ranked by the {verdict.rank} best val error")  # fmt: skip
    stats = ["ok seeds", "mean best val error", "95% interval", "median", "mean final val error"]
    axes = plan.axes
    if verdict.tune:
        others = [a for a in axes if a != verdict.tune]
        rows = []
        for item in verdict.tuned:
            best = item["best"]
            cells = [format_point_value(item[a]) for a in others]
            if best is None:
                rows.append([*cells, "-", "-", "-", "-", "-", "-", "never learned"])
                continue
            mark = ("at the edge " if item["at_edge"] else "") + ("flagged" if best.get("flagged") else "")
            rows.append([*cells, format_point_value(best[verdict.tune]), *_study_point_cells(best), mark.strip()])
        columns = [*others, f"best {verdict.tune}", *stats, ""]
        _table(f"{title}; best {verdict.tune} for each {', '.join(others) or 'point'}", columns, rows, width=_study_width(columns))
    else:
        rows = []
        for point in result.points:
            mark = "<- best" if verdict.best is not None and point["point"] == verdict.best["point"] else ""
            if point["point"] in verdict.never_learned:
                mark = "never learned"
            elif point.get("flagged"):
                mark = f"{mark} (flagged)".strip()
            rows.append([*(format_point_value(point.get(a)) for a in axes), *_study_point_cells(point), mark])
        _table(title, [*axes, *stats, ""], rows, width=_study_width([*axes, *stats, ""]))


def _study_width(columns: list[str]) -> int:
    """Wide enough for axis paths and intervals on one line."""
    return max(100, sum(max(len(column), 14) + 3 for column in columns) + 16)


@app.command("sweep")
@user_errors
@grouped
def sweep(
    spec: Annotated[str, typer.Argument(help="A spec file (.json/.yaml) or a built-in spec name.")] = DEFAULT_SPEC,
    *,  # the rest are options; the option groups expand here (cli.options.grouped)
    set_: Annotated[list[str] | None, typer.Option("--set", help="An axis PATH=VALUES (repeatable): training.learning_rate=0.01:0.16:0.02, "
                    "'layers.*.filters=8,16,32', layers[type=Conv2D].kernel_size=3,5, training.optimizer=sgd,adam, or lo..hi to sample.",
                    show_default=False)] = None,  # fmt: skip
    zip_: Annotated[list[str] | None, typer.Option("--zip", help="Pair axes of equal length instead of crossing them: A,B (repeatable).",
                    show_default=False)] = None,  # fmt: skip
    seeds: Annotated[str | None, typer.Option(help="Repeat every point: N seeds (spec seed + 0..N-1), or offsets such as 0,3,7.")] = None,
    tune: Annotated[str | None, typer.Option(help="A nuisance axis: the verdict shows its best for each value of the others.")] = None,
    method: Annotated[str | None, typer.Option(help="grid (default), random or sobol: sample the lo..hi ranges with --n points.")] = None,
    n: Annotated[int | None, typer.Option("--n", min=1, help="Points sampled by --method random or sobol.")] = None,
    sweep_file: Annotated[Path | None, typer.Option("--sweep", help="A YAML/JSON file with set, zip, seeds, tune, method, n, rank, "
                          "tensorboard, mlflow; options given here win.")] = None,  # fmt: skip
    rank: Annotated[str | None, typer.Option(help="mean (default) or median (a diverged or never-learning seed counted worst).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the axes, points and runs (keep or train) and train nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Retrain finished runs instead of keeping them.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="Keep runs of values no longer in the grid in the tables and verdict.")] = False,
    parallel: Annotated[int, typer.Option(min=1, help="Trainings at once, each in its own process with cores / N threads.")] = 1,
    threads: SharedThreadsOpt = None,
    out: Annotated[Path, typer.Option(help="Results folder; the study gets a sub-folder named after spec and axes.")] = Path("results"),
    # --seed with sweep's own help; `grouped` passes its value into spec_options too
    seed: Annotated[int | None, typer.Option(min=0, help="Override training.seed (seed k of a point is this + k).")] = None,
    spec_options: SpecOptions,
    device: DeviceOpt = "auto",
    backend: BackendOpt = None,
    engine: Annotated[str | None, typer.Option(help="fit, fused (runs differing only in the rate train as lanes of one JAX program) "
                      "or auto (default: training.engine).")] = None,  # fmt: skip
    fuse: Annotated[int | None, typer.Option(min=1, help="Fused engine: at most K rates per program (default: all).")] = None,
    where: RayOptions,
    sinks: SinkOptions,
) -> None:
    """Study any fields of a spec: axes by path, crossed or zipped, repeated over seeds; resumes by run identity."""
    spec_options.go_offline()
    axes = StudyAxes(set_ or [], zip_ or [], seeds, tune, method, n, sweep_file, rank, show_all)
    study(spec, spec_options, axes, sweep_options(device, backend, parallel, threads, engine, fuse), where, sinks, out, force, dry_run)


@dataclass(frozen=True)
class StudyAxes:
    """What a study varies, as the command line gave it: axes, zips, seeds, sampling, the verdict's tune and rank.
    A --sweep file fills in what the options leave out."""

    sets: list[str] = field(default_factory=list)
    zips: list[str] = field(default_factory=list)
    seeds: str | None = None
    tune: str | None = None
    method: str | None = None
    n: int | None = None
    sweep_file: Path | None = None
    rank: str | None = None
    show_all: bool = False


def study(spec: str, spec_options: SpecOptions, axes: StudyAxes, options: StudyOptions, where: RayOptions, sinks: SinkOptions,
          out: Path, force: bool, dry_run: bool) -> None:  # fmt: skip
    """A study from parsed options, printed as `cnnbench sweep` prints it (also `sweep-lr --seeds N`); `options` from
    `sweep_options`."""
    from cnnbench.grid import make_grid, merge_sets, read_sweep_file
    from cnnbench.study import plan_study, run_study

    on_ray = where.config()
    loaded = spec_options.load(spec)
    _check_run_options(out, options.threads, options.backend)
    given = read_sweep_file(axes.sweep_file) if axes.sweep_file is not None else {}
    grid = make_grid(loaded, merge_sets(given.get("set", []), axes.sets), axes.zips or given.get("zip", []),
                     axes.seeds if axes.seeds is not None else given.get("seeds"), axes.method or given.get("method", "grid"),
                     axes.n if axes.n is not None else given.get("n"))  # fmt: skip
    plan = plan_study(grid, out, force=force, tune=axes.tune or given.get("tune"), rank=axes.rank or given.get("rank", "mean"),
                      show_all=axes.show_all)  # fmt: skip
    todo = plan.to_train
    runs_text = f"{count(len(grid.points), 'point')} x {count(len(grid.seeds), 'seed')} = {count(len(plan.runs), 'run')}"
    if dry_run:
        state = "exists" if (plan.study_dir / "sweep.json").is_file() else "new"
        typer.echo(f"sweep folder: {plan.study_dir} ({state})")
        for axis in grid.axes:
            paths = "" if axis.expanded == [axis.path] else f" -> {', '.join(axis.expanded)}"
            values = ", ".join(map(str, (_fmt_value(v) for v in axis.values)))
            sampled = f" (sampled from {_fmt_value(axis.range[0])}..{_fmt_value(axis.range[1])})" if axis.range else ""
            typer.echo(f"axis {axis.path}{paths}: {values}{sampled}")
        for group in grid.zips:
            typer.echo(f"zip {', '.join(group)}: paired, {count(len(grid.axis(group[0]).values), 'pair')}")
        if grid.method != "grid":
            typer.echo(f"method {grid.method}: {count(grid.n, 'point')} sampled with seed {grid.sample_seed}")
        for run in plan.runs:
            if run.skip:
                action = f"keep (finished: {run.status})"
            elif run.status:
                action = f"train again (was {run.status}{', continues from its checkpoint' if run.resume else ''})"
            else:
                action = "train"
            typer.echo(f"  {run.run_dir.relative_to(plan.study_dir)}  {action}")
        typer.echo(f"{runs_text}: {len(todo)} to train, {len(plan.runs) - len(todo)} kept; nothing trained (--dry-run)")
        return
    opened = sinks.open(given)  # a missing extra or a refused URI: one line, before anything is printed or trained
    t = loaded.training
    err(f"sweep {loaded.name}: {runs_text}, {count(t.epochs, 'epoch')}, batch {t.batch_size}")
    err(f"sweep folder: {plan.study_dir}")
    if len(plan.runs) > len(todo):
        err(f"resuming: {len(plan.runs) - len(todo)} finished run(s) kept, {len(todo)} to train")
    progress = _StudyProgress(len(todo), t.epochs)
    with _resumable(progress, lambda: plan.study_dir), opened:
        _engine_option(options.engine)  # checked as the runs start: --dry-run shows the plan whatever it names
        result = run_study(plan, options, on_event=opened.watching(progress), ray=on_ray)
    _study_table(result)
    verdict = result.verdict
    if verdict.best is not None:
        flagged = " (flagged: a seed diverged or never learned)" if verdict.flagged else ""
        say(f"best: {verdict.best['point']}, {verdict.rank} best val error {_fmt(verdict.score)}{flagged}")
        for path in verdict.at_edge:
            say(f"note: the best point sits at the edge of {path}: the optimum may lie outside the grid")
    else:
        say("best: none (no point learned anything)")
    if verdict.never_learned:
        err(f"warning: {count(len(verdict.never_learned), 'point')} never learned: {', '.join(verdict.never_learned)}")
    if verdict.note:
        say(f"note: {verdict.note}")
    say(f"points: {plan.study_dir / 'points.csv'}")
    if result.failed:
        err(f"{len(result.failed)} run(s) failed (tracebacks in error.txt of their run folders)")
        raise typer.Exit(1)


def _fmt_value(value) -> str:
    from cnnbench.grid import format_point_value

    return format_point_value(value)
