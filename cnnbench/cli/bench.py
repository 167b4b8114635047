"""`cnnbench bench`: training time per device x backend x filter count (x engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnbench.cli.options import (
    _BACKENDS,
    _ENGINES,
    DEFAULT_SPEC,
    MAX_MEMORY_LIMIT_MB,
    MAX_REPEATS,
    MAX_TIMEOUT_S,
    DefaultSpecArg,
    ForceOpt,
    RayOptions,
    SinkOptions,
    SpecOptions,
    ThreadsOpt,
    grouped,
)
from cnnbench.cli.output import _output_may_fail, _resumable, _table, err, say, user_errors
from cnnbench.completion import offer as _offer
from cnnbench.errors import count, safe

app = typer.Typer()


class _BenchProgress:
    """A rich progress bar over a bench's runs, on stderr, driven by `run_bench`'s events."""

    def __init__(self) -> None:
        self.progress = self.task = None
        self.path = ""

    @_output_may_fail
    def __call__(self, event) -> None:
        if event.kind == "info":
            err(event.message)
            return
        if event.kind == "begin":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.path = event.message
            err(f"bench folder: {self.path}")
            columns = (TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self.progress = Progress(*columns, console=Console(stderr=True))
            self.task = self.progress.add_task("runs", total=event.total)
            self.progress.start()
            return
        combo = event.combination
        engine = "" if combo.engine == "auto" else f" {combo.engine}"
        label = f"{combo.device} {combo.backend} {combo.filters} filters{engine} r{event.repeat}"
        if event.kind == "start":
            self.progress.update(self.task, description=label)
        else:
            self.progress.advance(self.task)
            if event.status != "ok":
                self.progress.console.print(safe(f"{label}: {event.status}"), markup=False, highlight=False)

    @_output_may_fail
    def stop(self) -> None:
        if self.progress:
            self.progress.stop()


def _bench_rows(rows: list[dict]) -> list[list]:
    def num(value, spec: str) -> str:
        return "-" if value is None or value != value else format(value, spec)

    table = []
    for r in rows:
        steady = num(r.get("epoch_s_median"), ".3f")
        if r.get("epoch_s_median") is not None:
            steady += f" [{num(r.get('epoch_s_min'), '.3f')}-{num(r.get('epoch_s_max'), '.3f')}]"
        total = num(r.get("total_s"), ".2f") + (" est." if r.get("estimated") else "")
        table.append([r["device"], r["backend"], r["filters"], num(r.get("params"), ","), num(r.get("first_epoch_s"), ".3f"), steady,
                      total, num(r.get("samples_per_s"), ",.0f"), num(r.get("gflops_per_s"), ".1f"), num(r.get("peak_mem_mb"), ",.0f"),
                      r["status"], r.get("engine") or "-"])  # fmt: skip
    return table


@app.command()
@user_errors
@grouped
def bench(
    spec: DefaultSpecArg = DEFAULT_SPEC,
    *,  # the rest are options; the option groups expand here (cli.options.grouped)
    devices: Annotated[
        str | None,
        typer.Option(
            help="Comma list of cpu, gpu (default: cpu, plus gpu if nvidia-smi lists one).",
            autocompletion=_offer("cpu", "gpu", comma_list=True),
        ),
    ] = None,
    filters: Annotated[str, typer.Option(help="Comma list of filter counts, set in every layer that has `filters`.")] = "8,16,32,64",
    backends: Annotated[
        str | None,
        typer.Option(help="Comma list of Keras backends: tensorflow, jax, torch (default: $KERAS_BACKEND or tensorflow).",
                     autocompletion=_offer(*_BACKENDS, comma_list=True)),
    ] = None,
    repeats: Annotated[
        int, typer.Option(min=1, max=MAX_REPEATS, help="Training runs per combination; their steady epochs are pooled.")
    ] = 1,
    measure_epochs: Annotated[int | None, typer.Option(min=1, help="Train only k epochs and extrapolate to --epochs.")] = None,
    # --train-samples with bench's own help; `grouped` passes its value into spec_options too
    train_samples: Annotated[int | None, typer.Option(min=1, help="Override data.train_samples.")] = None,
    spec_options: SpecOptions,
    threads: ThreadsOpt = None,
    memory_limit_mb: Annotated[
        int | None, typer.Option(min=1, max=MAX_MEMORY_LIMIT_MB, help="Cap each training process's address space (MB).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=1, max=MAX_TIMEOUT_S, help="Kill a run after this many seconds, start-up included.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Results folder; the bench gets a sub-folder.")] = Path("results"),
    force: ForceOpt = False,
    engines: Annotated[
        str,
        typer.Option(
            help="Comma list of training engines: fit, fused, auto (auto: the spec's engine).",
            autocompletion=_offer(*_ENGINES, comma_list=True),
        ),
    ] = "auto",
    where: RayOptions,
    sinks: SinkOptions,
) -> None:
    """Time training per device x Keras backend x filter count (x engine), each run in a fresh process."""
    spec_options.go_offline()
    from cnnbench.bench import BenchOptions, parse_list, run_bench
    from cnnbench.device import check_threads
    from cnnbench.results import check_out_dir

    loaded = spec_options.load(spec)
    check_out_dir(out)
    check_threads(threads)  # a missing backend becomes an `unavailable` row, as bench always did
    options = BenchOptions(
        devices=parse_list(devices, "--devices") if devices else None,
        backends=parse_list(backends, "--backends") if backends else None,
        filters=parse_list(filters, "--filters", int),
        repeats=repeats, measure_epochs=measure_epochs, threads=threads,
        memory_limit_mb=memory_limit_mb, timeout_s=timeout, force=force, engines=parse_list(engines, "--engines"),
    )  # fmt: skip
    on_ray = where.config()
    progress = _BenchProgress()
    with _resumable(progress, lambda: progress.path), sinks.open() as opened:
        result = run_bench(loaded, options, out, on_event=opened.watching(progress), ray=on_ray)
    columns = ["device", "backend", "filters", "params", "first epoch s", "steady epoch s", "total s", "samples/s", "GFLOP/s",
               "peak MB", "status", "engine"]  # fmt: skip
    t = loaded.training
    used = ", ".join(sorted({row["dataset"] for row in result.rows if row.get("dataset")})) or loaded.data.dataset  # as recorded
    _table(f"{loaded.name}: {used}, batch {t.batch_size}, {count(t.epochs, 'epoch')}", columns, _bench_rows(result.rows))
    for row in result.problems:
        engine = f" {row.get('engine')}" if options.engines != ("auto",) else ""  # named when engines are a dimension
        err(f"{row['device']} {row['backend']} {row['filters']} filters{engine}: {row['status']}: {row['error']}")
    say(f"results: {result.csv_path}")
    if result.failed:
        raise typer.Exit(1)
