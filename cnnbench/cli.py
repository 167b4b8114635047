"""The `cnnbench` command: parses options, calls one library function, prints the result.

No training logic lives here, and nothing heavy is imported at module level, so --help is instant.
"""

from __future__ import annotations

import errno
import functools
import json
import sys
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from cnnbench import __version__
from cnnbench.completion import complete_spec as _complete_spec
from cnnbench.completion import offer as _offer
from cnnbench.errors import CnnbenchError, count, safe
from cnnbench.precision import dumps, plain

OPTIONAL_VALUE = ("--mlflow",)  # options whose value may be left out: `--mlflow` alone means MLflow's default URI


class _Commands(typer.core.TyperGroup):
    """Typer has no option with an optional value: a bare `--mlflow` (last, or before another option) becomes `--mlflow=`."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        args = [f"{a}=" if a in OPTIONAL_VALUE and (i + 1 == len(args) or args[i + 1].startswith("-")) else a for i, a in enumerate(args)]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_Commands,
    name="cnnbench",
    help="Define, train, sweep and benchmark convolutional networks from a JSON/YAML spec.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion; loaded only when asked for
    pretty_exceptions_enable=False,
)


def _flags_take_no_value() -> None:
    """Typer 0.29 labels every boolean flag `<bool>` in --help as if it took a value (`--json <bool>`); a flag takes none."""
    from typer.core import TyperOption

    labelled = TyperOption.display_type_rich
    if getattr(labelled, "_cnnbench", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else labelled(self, ctx)

    display_type_rich._cnnbench = True
    TyperOption.display_type_rich = display_type_rich


_flags_take_no_value()

_BACKENDS, _ENGINES = ("tensorflow", "jax", "torch"), ("auto", "fit", "fused")
DATASET_NAMES = ("mnist", "mnist-5k", "synthetic")
_SPEC_HELP = "A spec file (.json/.yaml), a built-in spec name, - (read from stdin) or inline JSON"
SpecArg = Annotated[str, typer.Argument(help=f"{_SPEC_HELP}.", show_default=False, autocompletion=_complete_spec)]
DefaultSpecArg = Annotated[str, typer.Argument(help=f"{_SPEC_HELP}.", autocompletion=_complete_spec)]
DataOpt = Annotated[
    str | None,
    typer.Option(help="Dataset (mnist, mnist-5k, synthetic) or a path to mnist.npz.", autocompletion=_offer(*DATASET_NAMES)),
]
DeviceOpt = Annotated[str, typer.Option(help="cpu, gpu or auto.", autocompletion=_offer("cpu", "gpu", "auto"))]
BackendOpt = Annotated[
    str | None, typer.Option(help="Keras backend: tensorflow, jax or torch (default: KERAS_BACKEND).", autocompletion=_offer(*_BACKENDS))
]
OfflineOpt = Annotated[
    bool, typer.Option("--offline", help="Never download: full MNIST falls back to mnist-5k unless cached (CNNBENCH_OFFLINE=1).")
]
DEFAULT_SPEC = "convolutional_nn"
# Bounds of the options that size work; beyond them a value is a typo, and the system calls that take it overflow.
MAX_PARALLEL = 256  # trainings at once
MAX_REPEATS = 1000  # runs per bench combination
MAX_TIMEOUT_S = 30 * 24 * 3600.0  # 30 days per run
MAX_MEMORY_LIMIT_MB = 16 * 1024 * 1024  # 16 TiB per process


_BROKEN: set[str] = set()  # streams whose reader went away (`cnnbench train ... | head`)


def _broken_pipe(exc: BaseException) -> bool:
    return isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE)


def _emit(message: str, stream: str) -> None:
    """Print one line; once a stream's reader has gone, stop printing there. Output must never stop training."""
    if stream in _BROKEN:
        return
    try:
        typer.echo(safe(message), err=stream == "stderr")  # the one door to the terminal: no control character passes
    except OSError as exc:
        if not _broken_pipe(exc):
            raise
        _BROKEN.add(stream)


def err(message: str) -> None:
    _emit(message, "stderr")


def say(message: str) -> None:
    """Print a result line on stdout."""
    _emit(message, "stdout")


def _output_may_fail(method):
    """For printing callbacks that training calls (progress bars): a closed pipe turns them off, it never reaches the run."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if "stderr" in _BROKEN:
            return None
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            if not _broken_pipe(exc):
                raise
            _BROKEN.add("stderr")
            return None

    return wrapper


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err(f"warning: {message}")


_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


def user_errors(command):
    """Turn the library's typed errors into one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        warnings.showwarning = _show_warning
        _BROKEN.clear()  # a new command (in-process callers run several) starts with working streams
        try:
            return command(*args, **kwargs)
        except CnnbenchError as exc:
            err(f"error: {exc}")
            raise typer.Exit(2) from None
        except OSError as exc:  # the disk filled (or went read-only) while a result was written: what is on disk stays
            if exc.errno not in _DISK_ERRNOS or not exc.filename:
                raise
            err(f"error: {exc.filename}: cannot write: {exc.strerror}; what was written before is kept")
            raise typer.Exit(2) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cnnbench {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """Define, train, sweep and benchmark convolutional networks from a JSON/YAML spec."""
    from cnnbench.device import quiet_logs

    quiet_logs()


def _go_offline(offline: bool) -> None:
    """--offline: set CNNBENCH_OFFLINE=1 here, so that worker and bench child processes inherit it."""
    if offline:
        import os

        os.environ["CNNBENCH_OFFLINE"] = "1"


def _spec_from_options(spec: str, data: str | None, **overrides):
    """SPEC loaded, with the training and data options the user gave (None: the spec's own) applied and checked."""
    from cnnbench.spec import load_spec

    return load_spec(spec).with_overrides(**overrides, **_data_override(data))


def _data_override(data: str | None) -> dict:
    """`--data` takes a dataset name or a path to a local mnist.npz."""
    if data is None:
        return {}
    if data.endswith(".npz") or Path(data).is_file():
        return {"dataset": "mnist", "path": data}
    return {"dataset": data}


def _shown(value: object) -> str:
    """Text for a rich cell or title: names and paths read from disk are neither markup (`[/x]`) nor control characters."""
    from rich.markup import escape

    return escape(safe(value))


def _table(title: str, columns: list[str], rows: list[list], stream=None, width: int | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=_shown(title), title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 or column in ("type", "status", "metric", "name", "dataset") else "right")
    for row in rows:
        table.add_row(*(_shown(v) for v in row))
    if "stdout" in _BROKEN and stream is None:
        return
    try:
        Console(file=stream or sys.stdout, width=width or max(100, len(columns) * 14)).print(table)
    except OSError as exc:
        if not _broken_pipe(exc):
            raise
        _BROKEN.add("stdout")


@app.command()
@user_errors
def build(
    spec: SpecArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of a table.")] = False,
) -> None:
    """Run every check that needs no data (fields, layers, shapes, size, output) and show the model: layers, parameters, FLOPs."""
    from cnnbench.model import build_model, format_shape, summarize
    from cnnbench.spec import load_spec

    loaded = load_spec(spec)  # the optimizer is checked against the catalog here
    model = build_model(loaded)
    summary = summarize(loaded, model)
    if as_json:
        typer.echo(dumps({**summary.to_dict(), "spec": loaded.to_dict()}))
        return
    rows = [[r.index, r.type, format_shape(r.output_shape), f"{r.params:,}", f"{r.flops:,}"] for r in summary.layers]
    _table(f"{summary.name}  input {format_shape((None, *summary.input_shape))}", ["#", "type", "output shape", "params", "FLOPs"], rows)
    typer.echo(f"total parameters: {summary.total_params:,} ({summary.trainable_params:,} trainable)")
    typer.echo(f"forward FLOPs per sample: {summary.flops_per_sample:,} (multiply-add = 2 FLOPs)")
    t = loaded.training
    typer.echo(
        f"training: {t.optimizer}, learning rate {t.learning_rate:g}, batch {t.batch_size}, {count(t.epochs, 'epoch')}, seed {t.seed}; "
        f"data: {loaded.data.dataset}"
    )
    if knobs := t.knobs():  # the optional knobs this spec sets (docs/spec.md)
        typer.echo("also: " + ", ".join(f"{key} {json.dumps(value, separators=(', ', ': '))}" for key, value in knobs.items()))


@app.command()
def schema() -> None:
    """Print the JSON Schema of the spec format, generated from the catalog cnnbench checks against (docs/spec.md: editor setup)."""
    from cnnbench.spec import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@app.command("list")
def list_specs() -> None:
    """List the built-in specs (usable by name wherever a spec file is expected)."""
    from cnnbench.spec import builtin_specs, load_spec

    for name in builtin_specs():
        spec = load_spec(name)
        typer.echo(f"{name:24s} {spec.description}")


def _epoch_line(row: dict, epochs: int) -> str:
    parts = [f"epoch {row['epoch']:>3}/{epochs}", f"loss {row.get('loss', float('nan')):.4f}"]
    if "val_error" in row:
        parts.append(f"val_error {row['val_error']:.4f}")
    parts.append(f"{row['epoch_time_s']:.2f} s")
    parts.append(f"{row['samples_per_s']:,.0f} samples/s")
    return "  ".join(parts)


def _engine_option(engine: str | None) -> str | None:
    from cnnbench.errors import UsageError
    from cnnbench.spec import ENGINES

    if engine is not None and engine not in ENGINES:
        raise UsageError(f"--engine: unknown engine {engine[:40]!r}; use {', '.join(ENGINES)}")
    return engine


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


ThreadsOpt = Annotated[int | None, typer.Option(min=1, help="CPU threads per training process (default: all cores; at most 4 per core).")]
TrainSamplesOpt = Annotated[int | None, typer.Option(min=1, help="Override data.train_samples (training split size).")]
ValSamplesOpt = Annotated[int | None, typer.Option(min=1, help="Override data.val_samples (validation split size).")]
TestSamplesOpt = Annotated[int | None, typer.Option(min=1, help="Override data.test_samples (test split size).")]


def _check_run_options(out_dir: Path | None, threads: int | None = None, backend: str | None = None) -> None:
    """What can be refused before any work: an unwritable --out, absurd --threads, a backend that is not installed."""
    from cnnbench import device as devices
    from cnnbench.results import check_out_dir

    if out_dir is not None:
        check_out_dir(out_dir)
    devices.check_threads(threads)
    devices.check_backend(backend)


def _never_learned(record: dict) -> str | None:
    """The warning for a run that ended no better than chance (run.json `learned: false`), else None."""
    if record.get("learned") is not False:
        return None
    from cnnbench.values import format_value

    return (f"lr {format_value(record['learning_rate'])} never learned: best val error {_fmt(record.get('best_val_error'), '.3f')} "
            f"≈ chance {_fmt(record.get('chance_error'), '.3f')}")  # fmt: skip


def _resume_target(run_dir: Path, spec: str | None, overrides: dict) -> tuple:
    """The spec and record of the run to resume; UsageError for a SPEC or spec options given beside --resume."""
    from cnnbench.errors import UsageError
    from cnnbench.train import load_run

    given = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None]
    if spec is not None or given:
        what = ", ".join(([f"SPEC {spec[:40]!r}"] if spec is not None else []) + given)
        raise UsageError(f"--resume continues a run as it was specified; drop {what}")
    return load_run(run_dir)


@app.command()
@user_errors
def train(
    spec: Annotated[
        str | None, typer.Argument(help=f"{_SPEC_HELP} [default: {DEFAULT_SPEC}].",
                                   show_default=False, autocompletion=_complete_spec)
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override training.epochs.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--learning-rate", "--lr", help="Override training.learning_rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Override training.batch_size.")] = None,
    data: DataOpt = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Override training.seed.")] = None,
    device: DeviceOpt = "auto",
    backend: BackendOpt = None,
    out: Annotated[Path, typer.Option(help="Results folder; the run gets a sub-folder.")] = Path("results"),
    threads: ThreadsOpt = None,
    train_samples: TrainSamplesOpt = None,
    val_samples: ValSamplesOpt = None,
    test_samples: TestSamplesOpt = None,
    resume: Annotated[
        Path | None,
        typer.Option(metavar="RUN_DIR", help="Continue an interrupted run from its last finished epoch (model and optimizer state)."),
    ] = None,
    offline: OfflineOpt = False,
    engine: Annotated[
        str | None,
        typer.Option(help="fit (model.fit), fused (one compiled program per epoch; JAX) or auto (default: training.engine).",
                     autocompletion=_offer(*_ENGINES)),
    ] = None,
    tensorboard: TensorboardOption = None,
    mlflow: MlflowOption = None,
) -> None:
    """Train a spec (model.fit, or the fused JAX engine), recording learning curves and timings in a run folder."""
    _go_offline(offline)
    from cnnbench.results import FINISHED
    from cnnbench.train import RunOptions, train_run

    overrides = {"epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size, "seed": seed,
                 "train_samples": train_samples, "val_samples": val_samples, "test_samples": test_samples}  # fmt: skip
    if resume is not None:
        loaded, previous = _resume_target(resume, spec, {**overrides, "data": data})
        run_dir = resume
        if previous.get("status") in FINISHED:
            say(f"{run_dir}: already finished ({previous['status']}, {previous.get('epochs_run')}/{previous.get('epochs')} epochs); "
                "nothing to resume")  # fmt: skip
            return
        backend = backend or previous.get("backend")
        engine = engine or previous.get("engine")  # a resumed run keeps its engine unless told otherwise
        _check_run_options(None, threads, backend)
    else:
        loaded = _spec_from_options(spec or DEFAULT_SPEC, data, **overrides)
        _check_run_options(out, threads, backend)
        run_dir = None  # made and held below, once the options are checked
    options = RunOptions(device=device, backend=backend, threads=threads, resume=resume is not None, engine=_engine_option(engine))
    t = loaded.training

    def started(record: dict) -> None:
        d = record["data"]
        done = record["resumed"][-1]["from_epoch"] if record.get("resumed") else 0
        verb = f"resuming after epoch {done}/{t.epochs}:" if resume is not None else "training"
        err(f"{verb} {loaded.name} on {d['name']} ({d['train_samples']:,} train / {d['val_samples']:,} val), {record['device']}, "
            f"{record['backend']}, engine {record.get('engine')}: lr {t.learning_rate:g}, batch {t.batch_size}, "
            f"{count(t.epochs, 'epoch')} -> {run_dir}")  # fmt: skip

    from cnnbench.errors import UsageError
    from cnnbench.folders import new_run_folder
    from cnnbench.lock import folder_lock, held_by

    if resume is not None:  # a run of a sweep or bench that is still going is theirs
        for folder in list(run_dir.resolve().parents)[:2]:
            if owner := held_by(folder):
                raise UsageError(f"{run_dir} belongs to {folder}, which is in use by {owner}; wait for it to end or stop it")

    def kept() -> str:
        return f"finished epochs are kept in {run_dir}; continue with: cnnbench train --resume {run_dir}"

    from cnnbench.sinks import open_sinks

    # One process per run folder, held before anything is written or deleted in it; a new one is made
    # atomically (another `train` in the same second gets `-2`) and removed again if nothing was recorded.
    with _interruptible(kept), open_sinks(tensorboard, mlflow) as sinks, \
            (folder_lock(run_dir, "run") if resume is not None else new_run_folder(out, loaded.name)) as run_dir:

        def begin(record: dict) -> None:
            started(record)
            sinks.run_started(run_dir, record)

        def epoch(row: dict) -> None:
            err(_epoch_line(row, t.epochs))
            sinks.epoch(run_dir, row)

        record = train_run(loaded, run_dir, options, on_epoch=epoch, on_start=begin)
        sinks.run_ended(run_dir)
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


@app.command()
@user_errors
def plot(
    results: Annotated[Path, typer.Argument(metavar="RESULTS", help="Every run, sweep and bench below it is plotted.")] = Path("results"),
    formats: Annotated[str, typer.Option("--format", help="Image formats, comma-separated: png, svg, pdf.")] = "png,svg",
    log_scale: Annotated[bool, typer.Option("--log-scale", help="Log y axis for error and loss curves.")] = False,
    out: Annotated[Path | None, typer.Option(help="Write figures here (same sub-folders) instead of next to the results.")] = None,
) -> None:
    """Draw learning curves, error vs learning rate and runtime plots for every run, sweep and bench found."""
    from cnnbench.plot import parse_formats, plot_results
    from cnnbench.results import check_out_dir

    if out is not None:
        check_out_dir(out)
    for path in plot_results(results, formats=parse_formats(formats), log_scale=log_scale, out=out):
        say(str(path))


def _compare_row(r: dict) -> list:
    def error(value, epoch=None) -> str:
        return "-" if value is None else f"{value:.4f}" + (f" (ep {epoch})" if epoch else "")

    status = r["status"] + (" (did not learn)" if r["learned"] is False else "")
    epochs = f"{r['epochs_run']}/{'?' if r['epochs'] is None else r['epochs']}"
    lr = "-" if r["learning_rate"] is None else f"{r['learning_rate']:g}"
    where = " · ".join(str(v) for v in (r["device"], r["backend"], r["engine"]) if v) or "-"
    return [f"{r['source'].split(':')[0]} {r['run']}", status, r["dataset"] or "-", epochs, "-" if r["seed"] is None else r["seed"], lr,
            error(r["best_val_error"], r["best_epoch"]), error(r["final_val_error"]), error(r["test_error"]),
            _fmt(r["epoch_s_median"], ".3f"), where]  # fmt: skip


@app.command()
@user_errors
def compare(
    paths: Annotated[list[Path], typer.Argument(metavar="FOLDER...", help="Run, sweep or bench folders to compare.", show_default=False)],
    out: Annotated[Path | None, typer.Option(help="Folder for the figure compare.<format> (default: the current folder).")] = None,
    formats: Annotated[str, typer.Option("--format", help="Image formats, comma-separated: png, svg, pdf.")] = "png,svg",
    log_scale: Annotated[bool, typer.Option("--log-scale", help="Log y axis for error and loss curves.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object (runs, figures) instead of a table.")] = False,
) -> None:
    """Put runs and sweeps side by side: a table of their metrics and one figure of their curves overlaid."""
    from cnnbench.plot import compare as compare_runs
    from cnnbench.plot import parse_formats
    from cnnbench.results import check_out_dir

    check_out_dir(out if out is not None else Path.cwd())
    rows, figures = compare_runs(paths, out=out, formats=parse_formats(formats), log_scale=log_scale)
    if as_json:
        typer.echo(dumps({"runs": rows, "figures": [str(p) for p in figures]}))
        return

    columns = ["run", "status", "dataset", "epochs", "seed", "lr", "best val error", "final val error", "test error", "steady epoch s",
               "device · backend"]  # fmt: skip
    table = [_compare_row(r) for r in rows]
    _table("compare: " + ", ".join(dict.fromkeys(r["source"] for r in rows)), columns, table)
    for path in figures:
        say(str(path))


@contextmanager
def _interruptible(kept: Callable[[], str], progress=None):
    """SIGTERM and SIGHUP are a Ctrl-C within the block; each says what is kept and exits 130 (Ctrl-C) or
    128 + the signal (143 SIGTERM, 129 SIGHUP), also when the signal's first raise was swallowed on the way.
    A progress bar is stopped however the block ends."""
    from cnnbench.errors import Terminated, raise_if_stopped
    from cnnbench.executor import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            yield
            raise_if_stopped()  # a signal that arrived while the last records were written
    except KeyboardInterrupt as exc:
        if progress is not None:
            progress.stop()
        how = f"terminated ({exc.name})" if isinstance(exc, Terminated) else "interrupted"
        err(f"{how}: {kept()}")
        raise typer.Exit(128 + exc.signum if isinstance(exc, Terminated) else 130) from None
    finally:
        if progress is not None:
            progress.stop()


def _resumable(progress, folder):
    """`_interruptible` for a sweep or bench: the finished runs are kept in `folder()`."""
    return _interruptible(lambda: f"finished runs are kept in {folder()}; run the same command to resume", progress)


RayOption = Annotated[bool, typer.Option("--ray", help="Run on a private local Ray instance (pip install 'cnnbench\\[ray]').")]
AddressOption = Annotated[
    str | None, typer.Option("--address", help="Run on this Ray cluster: HOST:PORT, auto or ray://... (default: $RAY_ADDRESS).")
]
CpusPerRunOption = Annotated[float | None, typer.Option("--cpus-per-run", max=1024, help="Ray: CPUs (threads) reserved per run.")]
GpusPerRunOption = Annotated[
    float | None, typer.Option("--gpus-per-run", max=64, help="Ray: GPUs per run; fractions share a GPU (0.25: 4 runs).")
]
TensorboardOption = Annotated[
    Path | None, typer.Option("--tensorboard", metavar="DIR", help="Also write each run to this TensorBoard log folder (docs/tracking.md).")
]
MlflowOption = Annotated[
    str | None,
    typer.Option("--mlflow", metavar="[URI]", help="Also write each run to MLflow at URI (alone: $MLFLOW_TRACKING_URI; docs/tracking.md)."),
]


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
def bench(
    spec: DefaultSpecArg = DEFAULT_SPEC,
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
    epochs: Annotated[int | None, typer.Option(min=1, help="Override training.epochs.")] = None,
    measure_epochs: Annotated[int | None, typer.Option(min=1, help="Train only k epochs and extrapolate to --epochs.")] = None,
    data: DataOpt = None,
    train_samples: Annotated[int | None, typer.Option(min=1, help="Override data.train_samples.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Override training.batch_size.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Override training.seed.")] = None,
    threads: ThreadsOpt = None,
    memory_limit_mb: Annotated[
        int | None, typer.Option(min=1, max=MAX_MEMORY_LIMIT_MB, help="Cap each training process's address space (MB).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=1, max=MAX_TIMEOUT_S, help="Kill a run after this many seconds, start-up included.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Results folder; the bench gets a sub-folder.")] = Path("results"),
    force: Annotated[bool, typer.Option("--force", help="Redo finished runs instead of keeping them.")] = False,
    val_samples: ValSamplesOpt = None,
    test_samples: TestSamplesOpt = None,
    offline: OfflineOpt = False,
    engines: Annotated[
        str,
        typer.Option(
            help="Comma list of training engines: fit, fused, auto (auto: the spec's engine).",
            autocompletion=_offer(*_ENGINES, comma_list=True),
        ),
    ] = "auto",
    ray: RayOption = False,
    address: AddressOption = None,
    cpus_per_run: CpusPerRunOption = None,
    gpus_per_run: GpusPerRunOption = None,
    tensorboard: TensorboardOption = None,
    mlflow: MlflowOption = None,
) -> None:
    """Time training per device x Keras backend x filter count (x engine), each run in a fresh process."""
    _go_offline(offline)
    from cnnbench.bench import BenchOptions, parse_list, run_bench
    from cnnbench.device import check_threads
    from cnnbench.executor import ray_config
    from cnnbench.results import check_out_dir

    loaded = _spec_from_options(spec, data, epochs=epochs, batch_size=batch_size, seed=seed, train_samples=train_samples,
                                val_samples=val_samples, test_samples=test_samples)  # fmt: skip
    check_out_dir(out)
    check_threads(threads)  # a missing backend becomes an `unavailable` row, as bench always did
    options = BenchOptions(
        devices=parse_list(devices, "--devices") if devices else None,
        backends=parse_list(backends, "--backends") if backends else None,
        filters=parse_list(filters, "--filters", int),
        repeats=repeats, measure_epochs=measure_epochs, threads=threads,
        memory_limit_mb=memory_limit_mb, timeout_s=timeout, force=force, engines=parse_list(engines, "--engines"),
        ray=ray_config(ray, address, cpus_per_run, gpus_per_run),
    )  # fmt: skip
    from cnnbench.sinks import open_sinks

    progress = _BenchProgress()
    with _resumable(progress, lambda: progress.path), open_sinks(tensorboard, mlflow) as sinks:
        result = run_bench(loaded, options, out, on_event=sinks.watching(progress))
    columns = ["device", "backend", "filters", "params", "first epoch s", "steady epoch s", "total s", "samples/s", "GFLOP/s",
               "peak MB", "status", "engine"]  # fmt: skip
    t = loaded.training
    used = ", ".join(sorted({row["dataset"] for row in result.rows if row.get("dataset")})) or loaded.data.dataset  # as recorded
    _table(f"{loaded.name}: {used}, batch {t.batch_size}, {count(t.epochs, 'epoch')}", columns, _bench_rows(result.rows))
    for row in result.rows:
        if row["status"] in ("oom", "failed"):
            engine = f" {row.get('engine')}" if options.engines != ("auto",) else ""  # named when engines are a dimension
            err(f"{row['device']} {row['backend']} {row['filters']} filters{engine}: {row['status']}: {row['error']}")
    say(f"results: {result.csv_path}")
    if any(row["status"] == "failed" for row in result.rows):
        raise typer.Exit(1)


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


class _SweepProgress:
    """A rich progress bar over a sweep's runs (on stderr) and one line per finished run, from `run_sweep`'s events."""

    def __init__(self, total: int, epochs: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.total, self.epochs = total, epochs
        self.in_flight: dict[str, int] = {}  # learning rate -> epochs finished, for the runs in progress
        self.lanes_to_start = 0  # runs of the current fused program not yet started
        columns = (TextColumn("{task.description:<30}"), BarColumn(), TextColumn("{task.fields[runs]}"), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip
        self.progress = Progress(*columns, console=Console(stderr=True))
        # The bar counts runs, advanced by epochs within a run, so that the ETA moves during long runs.
        self.task = self.progress.add_task("starting", total=max(total, 1), runs=f"0/{total} runs")
        self.done = 0
        if total:  # a sweep whose runs are all kept shows their lines, no bar
            self.progress.start()

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
        running = ", ".join(f"lr {k} ({v}/{self.epochs})" for k, v in self.in_flight.items())
        completed = self.done + sum(min(v, self.epochs) / self.epochs for v in self.in_flight.values())
        self.progress.update(self.task, completed=completed, description=running or "", runs=f"{self.done}/{self.total} runs")

    def print(self, line: str) -> None:
        self.progress.console.print(safe(line), soft_wrap=True, markup=False, highlight=False)  # errors may hold [brackets]

    @_output_may_fail
    def stop(self) -> None:
        self.progress.stop()


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
def sweep_lr(
    values: Annotated[
        str,
        typer.Option(
            help="Learning rates, comma-separated; ranges start:stop:step (0.01:0.16:0.02) and start:stop:*factor (1e-4:1e-1:*10).",
            show_default=False,
        ),
    ],
    spec: DefaultSpecArg = DEFAULT_SPEC,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the planned runs and train nothing.")] = False,
    parallel: Annotated[
        int, typer.Option(min=1, max=MAX_PARALLEL, help="Trainings at once, each in its own process with cores / N threads.")
    ] = 1,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads per training (default: all cores, shared by --parallel).")] = None,
    out: Annotated[Path, typer.Option(help="Results folder; the sweep gets a sub-folder named after spec and rates.")] = Path("results"),
    force: Annotated[bool, typer.Option("--force", help="Redo finished runs instead of keeping them.")] = False,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override training.epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Override training.batch_size.")] = None,
    data: DataOpt = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Override training.seed.")] = None,
    device: DeviceOpt = "auto",
    backend: BackendOpt = None,
    train_samples: TrainSamplesOpt = None,
    val_samples: ValSamplesOpt = None,
    test_samples: TestSamplesOpt = None,
    offline: OfflineOpt = False,
    engine: Annotated[
        str | None,
        typer.Option(help="fit, fused (rates train together as lanes of one JAX program) or auto (default: training.engine).",
                     autocompletion=_offer(*_ENGINES)),
    ] = None,
    fuse: Annotated[
        int | None, typer.Option(min=1, help="Fused engine: at most K rates per program (default: all, capped by device memory).")
    ] = None,
    ray: RayOption = False,
    address: AddressOption = None,
    cpus_per_run: CpusPerRunOption = None,
    gpus_per_run: GpusPerRunOption = None,
    tensorboard: TensorboardOption = None,
    mlflow: MlflowOption = None,
) -> None:
    """Train a spec once per learning rate; resumes an interrupted sweep, keeps every learning curve."""
    _go_offline(offline)
    from cnnbench.executor import ray_config
    from cnnbench.results import FINISHED
    from cnnbench.sweep import SweepOptions, format_value, plan_sweep, run_sweep

    on_ray = ray_config(ray, address, cpus_per_run, gpus_per_run)
    loaded = _spec_from_options(spec, data, epochs=epochs, batch_size=batch_size, seed=seed, train_samples=train_samples,
                                val_samples=val_samples, test_samples=test_samples)  # fmt: skip
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
                action = f"train again (was {run.status}{', --force' if run.status in FINISHED else ''})"
            else:
                action = "train"
            say(f"  lr {run.label:<10} {action:<32} {run.run_dir}")
        typer.echo(f"{len(plan.runs)} runs: {len(todo)} to train, {kept} kept; nothing trained (--dry-run)")
        return

    from cnnbench.sinks import open_sinks

    sinks = open_sinks(tensorboard, mlflow)  # a missing extra or a refused URI: one line, before anything is printed or trained
    t = loaded.training
    from cnnbench.data import expected_dataset

    data_name = expected_dataset(loaded.data.dataset, loaded.data.path)
    err(f"sweep {loaded.name}: {len(plan.runs)} learning rates, {count(t.epochs, 'epoch')}, batch {t.batch_size}, data {data_name}")
    err(f"sweep folder: {plan.sweep_dir}")
    if kept:
        err(f"resuming: {kept} finished run(s) kept, {len(todo)} to train{' (--force redoes all)' if not force else ''}")
    progress = _SweepProgress(len(todo), t.epochs)
    with _resumable(progress, lambda: plan.sweep_dir), sinks:
        sweep_options = SweepOptions(
            device=device, backend=backend, parallel=parallel, threads=threads, engine=_engine_option(engine), fuse=fuse,
            ray=on_ray,
        )
        result = run_sweep(plan, sweep_options, on_event=sinks.watching(progress))
    _sweep_table(result)
    for row in result.never_learned:
        err(f"warning: {_never_learned({**_record_of(result, row), **row})}")
    if result.best:
        best = result.best
        lr = format_value(best["learning_rate"])
        say(f"best: lr {lr}, best val error {_fmt(best['best_val_error'])} at epoch {best['best_epoch']}")
        if result.best_at_edge:
            lo, hi = format_value(min(result.plan.values)), format_value(max(result.plan.values))
            side = "smallest" if best["learning_rate"] == min(result.plan.values) else "largest"
            say(f"note: lr {lr} is the {side} rate of the grid ({lo}..{hi}): the optimum may lie outside the grid")
    elif any(row["status"] == "ok" for row in result.rows):
        say("best: none (no rate learned anything: every finished run stayed at chance level)")
    say(f"summary: {result.summary_path}")
    if result.failed:
        err(f"{len(result.failed)} run(s) failed (tracebacks in error.txt of their run folders)")
        raise typer.Exit(1)


class _StudyProgress:
    """A progress bar over a study's runs (on stderr) and one line per finished or kept run, from `run_study`'s events."""

    def __init__(self, total: int, epochs: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.total, self.epochs, self.done = total, epochs, 0
        self.in_flight: dict[str, int] = {}
        columns = (TextColumn("{task.description:<30}"), BarColumn(), TextColumn("{task.fields[runs]}"), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip
        self.progress = Progress(*columns, console=Console(stderr=True))
        self.task = self.progress.add_task("starting", total=max(total, 1), runs=f"0/{total} runs")
        if total:
            self.progress.start()

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
        completed = self.done + sum(min(v, self.epochs) / self.epochs for v in self.in_flight.values())
        self.progress.update(self.task, completed=completed, description=", ".join(self.in_flight)[:60],
                             runs=f"{self.done}/{self.total} runs")  # fmt: skip

    def print(self, line: str) -> None:
        self.progress.console.print(line, soft_wrap=True, markup=False, highlight=False)

    @_output_may_fail
    def stop(self) -> None:
        self.progress.stop()


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
def sweep(
    spec: Annotated[str, typer.Argument(help="A spec file (.json/.yaml) or a built-in spec name.")] = DEFAULT_SPEC,
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
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads per training (default: all cores, shared by --parallel).")] = None,
    out: Annotated[Path, typer.Option(help="Results folder; the study gets a sub-folder named after spec and axes.")] = Path("results"),
    epochs: Annotated[int | None, typer.Option(min=1, help="Override training.epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Override training.batch_size.")] = None,
    data: Annotated[str | None, typer.Option(help="Dataset (mnist, mnist-5k, synthetic) or a path to mnist.npz.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Override training.seed (seed k of a point is this + k).")] = None,
    device: Annotated[str, typer.Option(help="cpu, gpu or auto.")] = "auto",
    backend: Annotated[str | None, typer.Option(help="Keras backend: tensorflow, jax or torch (default: KERAS_BACKEND).")] = None,
    train_samples: TrainSamplesOpt = None,
    val_samples: ValSamplesOpt = None,
    test_samples: TestSamplesOpt = None,
    offline: OfflineOpt = False,
    engine: Annotated[str | None, typer.Option(help="fit, fused (runs differing only in the rate train as lanes of one JAX program) "
                      "or auto (default: training.engine).")] = None,  # fmt: skip
    fuse: Annotated[int | None, typer.Option(min=1, help="Fused engine: at most K rates per program (default: all).")] = None,
    ray: RayOption = False,
    address: AddressOption = None,
    cpus_per_run: CpusPerRunOption = None,
    gpus_per_run: GpusPerRunOption = None,
    tensorboard: TensorboardOption = None,
    mlflow: MlflowOption = None,
) -> None:
    """Study any fields of a spec: axes by path, crossed or zipped, repeated over seeds; resumes by run identity."""
    _go_offline(offline)
    from cnnbench.executor import ray_config
    from cnnbench.grid import make_grid, merge_sets, read_sweep_file
    from cnnbench.study import StudyOptions, plan_study, run_study

    on_ray = ray_config(ray, address, cpus_per_run, gpus_per_run)
    loaded = _spec_from_options(spec, data, epochs=epochs, batch_size=batch_size, seed=seed, train_samples=train_samples,
                                val_samples=val_samples, test_samples=test_samples)  # fmt: skip
    _check_run_options(out, threads, backend)
    given = read_sweep_file(sweep_file) if sweep_file is not None else {}
    grid = make_grid(loaded, merge_sets(given.get("set", []), set_ or []), zip_ or given.get("zip", []),
                     seeds if seeds is not None else given.get("seeds"), method or given.get("method", "grid"),
                     n if n is not None else given.get("n"))  # fmt: skip
    plan = plan_study(grid, out, force=force, tune=tune or given.get("tune"), rank=rank or given.get("rank", "mean"), show_all=show_all)
    todo = plan.to_train
    runs_text = f"{count(len(grid.points), 'point')} x {count(len(grid.seeds), 'seed')} = {count(len(plan.runs), 'run')}"
    if dry_run:
        state = "exists" if (plan.study_dir / "sweep.json").is_file() else "new"
        typer.echo(f"sweep folder: {plan.study_dir} ({state})")
        for axis in grid.axes:
            paths = "" if axis.expanded == [axis.path] else f" -> {', '.join(axis.expanded)}"
            values = ", ".join(map(str, (_fmt_value(v) for v in axis.values)))
            typer.echo(f"axis {axis.path}{paths}: {values}")
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
    from cnnbench.sinks import open_sinks

    tensorboard = tensorboard if tensorboard is not None else given.get("tensorboard")  # the options win over the file
    mlflow = mlflow if mlflow is not None else given.get("mlflow")
    sinks = open_sinks(tensorboard, mlflow)  # a missing extra or a refused URI: one line, before anything is printed or trained
    t = loaded.training
    err(f"sweep {loaded.name}: {runs_text}, {count(t.epochs, 'epoch')}, batch {t.batch_size}")
    err(f"sweep folder: {plan.study_dir}")
    if len(plan.runs) > len(todo):
        err(f"resuming: {len(plan.runs) - len(todo)} finished run(s) kept, {len(todo)} to train")
    progress = _StudyProgress(len(todo), t.epochs)
    with _resumable(progress, lambda: plan.study_dir), sinks:
        options = StudyOptions(device=device, backend=backend, parallel=parallel, threads=threads, engine=_engine_option(engine),
                               fuse=fuse, ray=on_ray)  # fmt: skip
        result = run_study(plan, options, on_event=sinks.watching(progress))
    _study_table(result)
    verdict = result.verdict
    if verdict.best is not None:
        flagged = " (flagged: a seed diverged or never learned)" if verdict.flagged else ""
        score = verdict.best["best_val_error_mean" if verdict.rank == "mean" else "median_rank_error"]
        say(f"best: {verdict.best['point']}, {verdict.rank} best val error {_fmt(score)}{flagged}")
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


def _when(iso: str | None) -> str:
    """2026-11-25T13:39:35+00:00 -> 2026-11-25 13:39 (as recorded, in the recording machine's time zone)."""
    return iso[:16].replace("T", " ") if iso else "-"


@app.command("ls")
@user_errors
def ls(
    results: Annotated[Path, typer.Argument(metavar="[RESULTS]", help="The folder to list (every run, sweep and bench below it).")] = Path(
        "results"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
) -> None:
    """List runs, sweeps and benches: kind, name, dataset actually used, epochs, status, best error, when."""
    import csv

    from cnnbench.errors import UsageError
    from cnnbench.folders import run_is_live
    from cnnbench.results import LIST_COLUMNS, list_results

    if not results.is_dir():
        raise UsageError(f"{results}: no such folder")
    rows = list_results(results, is_live=run_is_live)  # a `running` run nobody holds is listed `interrupted`
    if as_json:
        typer.echo(dumps(rows))  # NaN (not JSON) as null, float32 metrics without their noise
        return
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(LIST_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: safe(v) if isinstance(v, str) else v for k, v in plain(row).items()} for row in rows)
        return
    if not rows:
        err(f"nothing below {results}: no run, sweep or bench folder")
        return

    def name(row: dict) -> str:
        path = Path(row["path"])
        return str(path.relative_to(results)) if path != results and path.is_relative_to(results) else path.name

    def status(row: dict) -> str:
        never = row["not_learned"]
        return row["status"] + ("" if not never else " (never learned)" if row["runs"] == 1 else f" ({never} never learned)")

    table = [[r["kind"], name(r), r["dataset"] or "-", "-" if r["epochs"] is None else r["epochs"], status(r),
              _fmt(r["best_val_error"]), r["runs"], _when(r["started_at"])] for r in rows]  # fmt: skip
    columns = ["kind", "name", "dataset", "epochs", "status", "best val error", "runs", "started"]
    width = max(120, max(len(safe(t[1])) for t in table) + 100)  # long sweep names stay on one line
    _table(f"{results}: {len(rows)} item{'s' if len(rows) != 1 else ''}", columns, table, width=width)


@app.command()
@user_errors
def report(
    results: Annotated[
        list[Path] | None, typer.Argument(metavar="RESULTS", help="Folders searched as `plot` does (default: results).", show_default=False)
    ] = None,
    out: Annotated[Path | None, typer.Option(help="The HTML file (default: RESULTS/report.html, or ./report.html for several).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON (the page is still written).")] = False,
    open_page: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    no_script: Annotated[bool, typer.Option("--no-script", help="No <script> (no legend toggles); the page is complete without.")] = False,
    title: Annotated[str | None, typer.Option(help="Page title (default: from the spec names).")] = None,
    log_scale: Annotated[bool, typer.Option("--log-scale", help="Log y axis for error and loss curves.")] = False,
) -> None:
    """Write the study's report: verdicts first, then every figure (inline SVG) and table, with provenance; one offline HTML file."""
    from cnnbench.report import write_report

    roots = results or [Path("results")]
    options = [*(["--out", str(out)] if out else []), *(["--no-script"] if no_script else [])]
    command = " ".join(["cnnbench report", *map(str, roots), *options])
    result = write_report(roots, out, script=not no_script, title=title, log_scale=log_scale, command=command)
    if as_json:
        typer.echo(json.dumps(result.verdicts, indent=2))
    else:
        typer.echo(f"{result.path} ({result.size / 1e6:.2f} MB)")
    if open_page:
        import webbrowser

        webbrowser.open(result.path.resolve().as_uri())


@app.command()
@user_errors
def export(
    target: Annotated[str, typer.Argument(metavar="tensorboard|mlflow", help="Where to write: tensorboard or mlflow.", show_default=False)],
    results: Annotated[list[Path], typer.Argument(metavar="RESULTS...", help="Results, sweep, bench or run folders.", show_default=False)],
    to: Annotated[Path | None, typer.Option("--to", metavar="DIR", help="tensorboard: the log folder to write.")] = None,
    uri: Annotated[str | None, typer.Option("--uri", help="mlflow: the tracking URI (default: $MLFLOW_TRACKING_URI).")] = None,
) -> None:
    """Write run folders already on disk to TensorBoard or MLflow; exporting again adds nothing, a changed run is updated."""
    from cnnbench.export import export as export_runs

    say(export_runs(target, results, to if target == "tensorboard" else uri).line())


def main() -> None:
    """The `cnnbench` command. Its last line of defence: closed or failing standard streams never stop a
    command, and an unexpected error is one line naming the log file with its traceback (exit 70)."""
    from cnnbench import safety

    safety.reopen_closed_std_fds()
    stdout = safety.guard_stream("stdout")
    safety.guard_stream("stderr")
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:  # noqa: BLE001 - whatever it is, what was written stays; the user gets one line
        err(safety.crash_line(exc, sys.argv))
        code = safety.INTERNAL_ERROR_EXIT
    if problem := safety.output_error(stdout):
        err(f"error: stdout: cannot write the output: {problem}")
        code = code or safety.OUTPUT_ERROR_EXIT
    sys.exit(code)


if __name__ == "__main__":
    main()
