"""`cnnbench sweep-lr`: one run per learning rate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnbench.cli.options import (
    _ENGINES,
    DEFAULT_SPEC,
    MAX_PARALLEL,
    BackendOpt,
    DefaultSpecArg,
    DeviceOpt,
    ForceOpt,
    RayOptions,
    SharedThreadsOpt,
    SinkOptions,
    SpecOptions,
    _check_run_options,
    _engine_option,
    grouped,
    sweep_options,
)
from cnnbench.cli.output import _fmt, _never_learned, _output_may_fail, _resumable, _RunsProgress, _table, err, say, user_errors
from cnnbench.completion import offer as _offer
from cnnbench.errors import count

app = typer.Typer()


def _sweep_run_line(lr: str, record: dict | None) -> str:
    record = record or {}
    status = record.get("status") or "pending"
    line = f"lr {lr:<10} {status:<11}"
    if record.get("epochs_run"):
        best = f"best {_fmt(record.get('best_val_error'))} at epoch {record.get('best_epoch')}"
        line += f" val error {_fmt(record.get('final_val_error'))} ({best})"
        line += f"  {record['epochs_run']} epoch{'s' if record['epochs_run'] != 1 else ''}  {_fmt(record.get('total_time_s'), '.1f')} s"
    if status != "ok" and record.get("error"):
        line += f"  {record['error']}"
    if record.get("learned") is False:
        line += f"  NEVER LEARNED (chance {_fmt(record.get('chance_error'), '.3f')})"
    return line


class _SweepProgress(_RunsProgress):
    """A rich progress bar over a sweep's runs (on stderr) and one line per finished run, from `run_sweep`'s events."""

    def __init__(self, total: int, epochs: int) -> None:
        super().__init__(total, epochs)  # in_flight: learning rate -> epochs finished, for the runs in progress
        self.lanes_to_start = 0  # runs of the current fused program not yet started

    @_output_may_fail
    def __call__(self, event) -> None:
        if event.kind == "info":
            self.print(event.message)
            return
        if event.total != self.total:  # planned again under the sweep's lock: runs finished meanwhile are kept
            self.total = event.total
            self.progress.update(self.task, total=max(self.total, 1))
        lr = event.run.label
        if event.kind == "skip":
            self.print(f"{_sweep_run_line(lr, event.record)}  (kept: finished earlier)")
            return
        if event.kind == "start":
            self.in_flight[lr] = 0
            lanes = (event.record or {}).get("fused_k") or 1
            if lanes > 1 and self.lanes_to_start <= 0:  # the first run of a fused program
                self.print(f"fused engine: {lanes} learning rates train together as one program (epoch times are shared)")
                self.lanes_to_start = lanes
            self.lanes_to_start -= 1
        elif event.kind == "epoch":
            self.in_flight[lr] = event.row["epoch"]
        elif event.kind == "end":
            self.in_flight.pop(lr, None)
            self.done = event.done
            self.print(_sweep_run_line(lr, event.record))
        self.advance(", ".join(f"lr {k} ({v}/{self.epochs})" for k, v in self.in_flight.items()))


def _record_of(result, row: dict) -> dict:
    from cnnbench.results import read_record

    return read_record(result.plan.sweep_dir / row["run_dir"] / "run.json") or {}


def _engine_label(row: dict) -> str:
    engine = row.get("engine") or "-"
    return f"{engine} x{row['fused_k']}" if engine == "fused" and (row.get("fused_k") or 1) > 1 else engine


def _sweep_table(result) -> None:
    from cnnbench.values import format_value

    best = result.best
    rows = []
    for row in result.rows:
        mark = "<- best" if best is not None and row is best else ("never learned" if row.get("learned") is False else "")
        counts = ["-" if row[key] is None else row[key] for key in ("best_epoch", "epochs_run")]
        rows.append([format_value(row["learning_rate"]), row["status"], _fmt(row["final_val_error"]), _fmt(row["best_val_error"]),
                     *counts, _fmt(row["total_time_s"], ".1f"), _engine_label(row), mark])  # fmt: skip
    spec = result.plan.spec
    t = spec.training
    used = sorted({row["dataset"] for row in result.rows if row.get("dataset")})  # from the records: mnist may have fallen back
    dataset = ", ".join(used) if used else f"{spec.data.dataset} (no run has recorded its data)"
    columns = ["learning rate", "status", "final val error", "best val error", "best epoch", "epochs", "time s", "engine", ""]
    if len(used) > 1:  # kept runs from another day may have had other data: say which is which
        columns.insert(2, "dataset")
        for row, values in zip(result.rows, rows, strict=True):
            values.insert(2, row.get("dataset") or "-")
    title = f"{spec.name}: {dataset}, {t.optimizer}, batch {t.batch_size}, {count(t.epochs, 'epoch')}, seed {t.seed}"
    _table(title, columns, rows)


@app.command("sweep-lr")
@user_errors
@grouped
def sweep_lr(
    values: Annotated[
        str,
        typer.Option(
            help="Learning rates, comma-separated; ranges start:stop:step (0.01:0.16:0.02) and start:stop:*factor (1e-4:1e-1:*10).",
            show_default=False,
        ),
    ],
    spec: DefaultSpecArg = DEFAULT_SPEC,
    *,  # the rest are options; the option groups expand here (cli.options.grouped)
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the planned runs and train nothing.")] = False,
    parallel: Annotated[
        int, typer.Option(min=1, max=MAX_PARALLEL, help="Trainings at once, each in its own process with cores / N threads.")
    ] = 1,
    threads: SharedThreadsOpt = None,
    out: Annotated[Path, typer.Option(help="Results folder; the sweep gets a sub-folder named after spec and rates.")] = Path("results"),
    force: ForceOpt = False,
    spec_options: SpecOptions,
    device: DeviceOpt = "auto",
    backend: BackendOpt = None,
    engine: Annotated[
        str | None,
        typer.Option(help="fit, fused (rates train together as lanes of one JAX program) or auto (default: training.engine).",
                     autocompletion=_offer(*_ENGINES)),
    ] = None,
    fuse: Annotated[
        int | None, typer.Option(min=1, help="Fused engine: at most K rates per program (default: all, capped by device memory).")
    ] = None,
    where: RayOptions,
    sinks: SinkOptions,
    seeds: Annotated[str | None, typer.Option(help="Repeat every rate: N seeds (spec seed + 0..N-1) or offsets such as 0,3,7; "
                     "more than one seed is a study laid out as `cnnbench sweep` (points.csv, <point>/seed-<s>/).")] = None,  # fmt: skip
) -> None:
    """Train a spec once per learning rate; resumes an interrupted sweep, keeps every learning curve."""
    spec_options.go_offline()
    options = sweep_options(device, backend, parallel, threads, engine, fuse)
    if seeds is not None:
        from cnnbench.cli.sweep import StudyAxes, study
        from cnnbench.grid import parse_seeds

        if parse_seeds(seeds) != (0,):  # several seeds: the general study over the one axis, training.learning_rate
            axes = StudyAxes(sets=[f"training.learning_rate={values}"], seeds=seeds)
            return study(spec, spec_options, axes, options, where, sinks, out, force, dry_run)
    from cnnbench.results import FINISHED
    from cnnbench.sweep import format_value, plan_sweep, run_sweep

    on_ray = where.config()
    loaded = spec_options.load(spec)
    _check_run_options(out, threads, backend)
    plan = plan_sweep(loaded, values, out, force=force)
    todo = plan.to_train
    kept = len(plan.runs) - len(todo)
    if dry_run:
        state = "exists" if (plan.sweep_dir / "sweep.json").is_file() else "new"
        say(f"sweep folder: {plan.sweep_dir} ({state})")
        for run in plan.runs:
            if run.skip:
                action = f"keep (finished: {run.status})"
            elif run.status:
                more = ", --force" if run.status in FINISHED else ", continues from its checkpoint" if run.resume else ""
                action = f"train again (was {run.status}{more})"
            else:
                action = "train"
            say(f"  lr {run.label:<10} {action:<32} {run.run_dir}")
        typer.echo(f"{len(plan.runs)} runs: {len(todo)} to train, {kept} kept; nothing trained (--dry-run)")
        return

    opened = sinks.open()  # a missing extra or a refused URI: one line, before anything is printed or trained
    t = loaded.training
    from cnnbench.data import expected_dataset

    data_name = expected_dataset(loaded.data.dataset, loaded.data.path)
    err(f"sweep {loaded.name}: {len(plan.runs)} learning rates, {count(t.epochs, 'epoch')}, batch {t.batch_size}, data {data_name}")
    err(f"sweep folder: {plan.sweep_dir}")
    if kept:
        err(f"resuming: {kept} finished run(s) kept, {len(todo)} to train{' (--force redoes all)' if not force else ''}")
    progress = _SweepProgress(len(todo), t.epochs)
    with _resumable(progress, lambda: plan.sweep_dir), opened:
        _engine_option(options.engine)  # checked as the runs start: --dry-run shows the plan whatever it names
        result = run_sweep(plan, options, on_event=opened.watching(progress), ray=on_ray)
    _sweep_table(result)
    for row in result.never_learned:
        err(f"warning: {_never_learned({**_record_of(result, row), **row})}")
    verdict = result.verdict
    if verdict.best:
        best = verdict.best
        lr = format_value(best["learning_rate"])
        say(f"best: lr {lr}, best val error {_fmt(best['best_val_error'])} at epoch {best['best_epoch']}")
        if verdict.edge:
            lo, hi = format_value(verdict.low), format_value(verdict.high)
            say(f"note: lr {lr} is the {verdict.edge} rate of the grid ({lo}..{hi}): the optimum may lie outside the grid")
    elif verdict.learned_nothing:
        say("best: none (no rate learned anything: every finished run stayed at chance level)")
    say(f"summary: {result.summary_path}")
    if verdict.failed:
        err(f"{len(verdict.failed)} run(s) failed (tracebacks in error.txt of their run folders)")
        raise typer.Exit(1)
