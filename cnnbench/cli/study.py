"""`cnnbench study`: every part of a study file (or a built-in study) in order, then its report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnbench.cli.options import (
    MAX_PARALLEL,
    DataOpt,
    DeviceOpt,
    OfflineOpt,
    RayOptions,
    SharedThreadsOpt,
    _check_run_options,
    _go_offline,
    grouped,
)
from cnnbench.cli.output import _resumable, err, say, user_errors
from cnnbench.errors import count

app = typer.Typer()


def _progress(plan):
    """The progress its command shows for the part's pipeline."""
    kind = plan.part.kind
    if kind == "bench":
        from cnnbench.cli.bench import _BenchProgress

        return _BenchProgress()
    epochs = plan.part.spec.training.epochs
    if kind == "train":
        return lambda row: err(f"  epoch {row.get('epoch')}/{epochs}: val error {row.get('val_error', '-')}")
    from cnnbench.sweep import SweepPlan

    if isinstance(plan.plan, SweepPlan):
        from cnnbench.cli.sweep_lr import _SweepProgress

        return _SweepProgress(plan.train, epochs)
    from cnnbench.cli.sweep import _StudyProgress

    return _StudyProgress(plan.train, epochs)


@app.command("study")
@user_errors
@grouped
def study(
    file: Annotated[
        str, typer.Argument(help="A study file (.yaml/.json; docs/study-files.md) or a built-in study (course).", show_default=False)
    ],  # fmt: skip
    out: Annotated[Path | None, typer.Option(help="The study's folder (default: results/<study name>); one sub-folder per part.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print every part's plan (runs to train and kept) and train nothing.")] = False,
    report_only: Annotated[bool, typer.Option("--report-only", help="Only write the report again over the study's folder.")] = False,
    parallel: Annotated[int, typer.Option(min=1, max=MAX_PARALLEL, help="Trainings at once in sweeps, as `sweep --parallel`.")] = 1,
    data: DataOpt = None,
    device: DeviceOpt = "auto",
    threads: SharedThreadsOpt = None,
    offline: OfflineOpt = False,
    *,
    where: RayOptions,
) -> None:
    """Run a study file: its trainings, sweeps and benches in order, each through its command's pipeline, then the report."""
    _go_offline(offline)
    from cnnbench.studyfile import load_study, plan_part, record_study, run_part, write_study_report
    from cnnbench.train import RunOptions

    loaded = load_study(file, data=data)  # everything checked before anything trains
    folder = out if out is not None else Path("results") / loaded.name
    command = f"cnnbench study {file} --out {folder}"
    if not report_only:
        _check_run_options(folder, threads)
        on_ray = where.config()  # sweeps and benches on Ray as their commands run them; trainings stay here
        run_options = RunOptions(device=device, threads=threads)
        plans = [plan_part(part, folder, run_options) for part in loaded.parts]
        if dry_run:
            say(f"study {loaded.name}: {count(len(plans), 'part')} in {folder}")
            for plan in plans:
                unit = "combination" if plan.part.kind == "bench" else "run"
                total = count(plan.train + plan.keep, unit)
                say(f"  {plan.part.folder}: {plan.part.kind}, {total}: {plan.train} to train, {plan.keep} kept")
            say("nothing trained (--dry-run)")
            return
        from cnnbench.sinks import open_sinks

        with open_sinks(loaded.sinks.get("tensorboard"), loaded.sinks.get("mlflow")) as sinks:
            record_study(folder, loaded)  # the report finds the study's parts and claims here
            for number, plan in enumerate(plans, 1):
                plan = plan_part(plan.part, folder, run_options)  # planned when its turn comes
                err(f"part {number}/{len(plans)} {plan.part.folder} ({plan.part.kind}): {plan.train} to train, {plan.keep} kept")
                progress = _progress(plan)
                if plan.part.kind == "train":
                    run_part(plan, run_options, parallel, on_event=progress, sinks=sinks)
                    continue
                with _resumable(progress, lambda plan=plan: plan.folder):
                    run_part(plan, run_options, parallel, on_event=sinks.watching(progress), ray=on_ray)
    if report_only:  # the page is all that was asked for: its failure is the command's
        if folder.is_dir():
            record_study(folder, loaded)
        say(f"report: {write_study_report(folder, command=command).path}")
        return
    try:
        report = write_study_report(folder, command=command)
    except Exception as exc:  # noqa: BLE001 - the runs are on disk whatever the page does
        err(f"warning: the report could not be written: {exc}; the runs are kept in {folder} (`cnnbench report {folder}`)")
        return
    say(f"report: {report.path}")
