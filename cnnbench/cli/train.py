"""`cnnbench train`: one run, new or resumed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnbench.cli.options import (
    _ENGINES,
    _SPEC_HELP,
    DEFAULT_SPEC,
    BackendOpt,
    DeviceOpt,
    SinkOptions,
    SpecOptions,
    ThreadsOpt,
    _engine_option,
    grouped,
)
from cnnbench.cli.output import _fmt, _interruptible, _never_learned, _table, err, say, user_errors
from cnnbench.completion import complete_spec as _complete_spec
from cnnbench.completion import offer as _offer
from cnnbench.errors import count

app = typer.Typer()


def _epoch_line(row: dict, epochs: int) -> str:
    parts = [f"epoch {row['epoch']:>3}/{epochs}", f"loss {row.get('loss', float('nan')):.4f}"]
    if "val_error" in row:
        parts.append(f"val_error {row['val_error']:.4f}")
    parts.append(f"{row['epoch_time_s']:.2f} s")
    parts.append(f"{row['samples_per_s']:,.0f} samples/s")
    return "  ".join(parts)


def _nothing_beside_resume(spec: str | None, overrides: dict) -> None:
    """--resume continues a run as it was specified: UsageError for a SPEC or spec options given beside it."""
    from cnnbench.errors import UsageError

    given = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None]
    if spec is not None or given:
        what = ", ".join(([f"SPEC {spec[:40]!r}"] if spec is not None else []) + given)
        raise UsageError(f"--resume continues a run as it was specified; drop {what}")


@app.command()
@user_errors
@grouped
def train(
    spec: Annotated[
        str | None, typer.Argument(help=f"{_SPEC_HELP} [default: {DEFAULT_SPEC}].",
                                   show_default=False, autocompletion=_complete_spec)
    ] = None,
    *,  # the rest are options; the option groups expand here (cli.options.grouped)
    learning_rate: Annotated[float | None, typer.Option("--learning-rate", "--lr", help="Override training.learning_rate.")] = None,
    spec_options: SpecOptions,
    device: DeviceOpt = "auto",
    backend: BackendOpt = None,
    out: Annotated[Path, typer.Option(help="Results folder; the run gets a sub-folder.")] = Path("results"),
    threads: ThreadsOpt = None,
    resume: Annotated[
        Path | None,
        typer.Option(metavar="RUN_DIR", help="Continue an interrupted run from its last finished epoch (model and optimizer state)."),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="fit (model.fit), fused (one compiled program per epoch; JAX) or auto (default: training.engine).",
                     autocompletion=_offer(*_ENGINES)),
    ] = None,
    sinks: SinkOptions,
) -> None:
    """Train a spec (model.fit, or the fused JAX engine), recording learning curves and timings in a run folder."""
    spec_options.go_offline()
    from cnnbench.run import plan_resume, plan_run, run_train
    from cnnbench.train import RunOptions

    given = spec_options.overrides()
    overrides = {"epochs": given.pop("epochs"), "learning_rate": learning_rate, **given}
    options = RunOptions(device=device, backend=backend, threads=threads, engine=engine)
    if resume is not None:
        _nothing_beside_resume(spec, {**overrides, "data": spec_options.data})
        plan = plan_resume(resume, options)
        if plan.finished:
            previous = plan.previous
            say(f"{resume}: already finished ({previous['status']}, {previous.get('epochs_run')}/{previous.get('epochs')} epochs); "
                "nothing to resume")  # fmt: skip
            return
    else:
        plan = plan_run(spec_options.load(spec or DEFAULT_SPEC, learning_rate=learning_rate), out, options)
    _engine_option(plan.options.engine)
    loaded, run_dir = plan.spec, plan.run_dir  # a new run's folder is made and held by run_train
    t = loaded.training

    def started(record: dict) -> None:
        d = record["data"]
        done = record["resumed"][-1]["from_epoch"] if record.get("resumed") else 0
        verb = f"resuming after epoch {done}/{t.epochs}:" if resume is not None else "training"
        err(f"{verb} {loaded.name} on {d['name']} ({d['train_samples']:,} train / {d['val_samples']:,} val), {record['device']}, "
            f"{record['backend']}, engine {record.get('engine')}: lr {t.learning_rate:g}, batch {t.batch_size}, "
            f"{count(t.epochs, 'epoch')} -> {run_dir}")  # fmt: skip

    def kept() -> str:
        return f"finished epochs are kept in {run_dir}; continue with: cnnbench train --resume {run_dir}"

    with _interruptible(kept), sinks.open() as opened:

        def held(folder: Path) -> None:
            nonlocal run_dir
            run_dir = folder

        def begin(record: dict) -> None:
            started(record)
            opened.run_started(run_dir, record)

        def epoch(row: dict) -> None:
            err(_epoch_line(row, t.epochs))
            opened.epoch(run_dir, row)

        record = run_train(plan, on_epoch=epoch, on_start=begin, on_folder=held).record
        opened.run_ended(run_dir)
    timing = record["timing"]
    data_info = record.get("data") or {}
    warning = _never_learned(record)
    learned = {True: "yes", False: f"NO (no better than chance {_fmt(record.get('chance_error'), '.3f')})", None: "-"}
    rows = [
        ["status", record["status"]],
        ["data", f"{data_info.get('name')} ({data_info.get('train_samples', 0):,}/{data_info.get('val_samples', 0):,}/"
                 f"{data_info.get('test_samples', 0):,})"],
        ["device", f"{record.get('device')} ({record.get('device_name')}), {record.get('backend')}"],
        ["engine", str(record.get("engine") or "-")],
        ["parameters", f"{record.get('params') or 0:,}"],
        ["epochs run", record["epochs_run"]],
        ["final val error", _fmt(record.get("final_val_error"))],
        ["best val error", f"{_fmt(record.get('best_val_error'))} (epoch {record.get('best_epoch')})"],
        ["learned", learned[record.get("learned")]],
        ["test error", _fmt(record.get("test_error"))],
        ["first epoch", f"{_fmt(timing.get('first_epoch_s'), '.3f')} s (includes tracing/compilation)"],
        ["steady epoch", f"{_fmt(timing.get('epoch_s_median'), '.3f')} s median "
                         f"[{_fmt(timing.get('epoch_s_min'), '.3f')}-{_fmt(timing.get('epoch_s_max'), '.3f')}]"],
        ["total", f"{_fmt(record.get('total_time_s'), '.2f')} s (+ {_fmt(timing.get('startup_s'), '.2f')} s start-up: Keras import, data)"],
        ["run folder", str(run_dir)],
    ]  # fmt: skip
    _table(f"{loaded.name}", ["metric", "value"], rows)
    if warning:
        err(f"warning: {warning}")
    if record["error"]:
        err(f"{record['status']}: {record['error']}")
    if record["status"] in ("failed", "oom"):
        if record["status"] == "failed":
            err(f"continue with: cnnbench train --resume {run_dir}")
        raise typer.Exit(1)
