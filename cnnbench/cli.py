"""The `cnnbench` command: parses options, calls one library function, prints the result.

No training logic lives here, and nothing heavy is imported at module level, so --help is instant.
"""

from __future__ import annotations

import functools
import json
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from cnnbench import __version__
from cnnbench.errors import CnnbenchError

app = typer.Typer(
    name="cnnbench",
    help="Define, train, sweep and benchmark convolutional networks from a JSON/YAML spec.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

SpecArg = Annotated[str, typer.Argument(help="A spec file (.json/.yaml) or a built-in spec name.", show_default=False)]
DEFAULT_SPEC = "convolutional_nn"


def err(message: str) -> None:
    typer.echo(message, err=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err(f"warning: {message}")


def user_errors(command):
    """Turn the library's typed errors into one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        warnings.showwarning = _show_warning
        try:
            return command(*args, **kwargs)
        except CnnbenchError as exc:
            err(f"error: {exc}")
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


def _data_override(data: str | None) -> dict:
    """`--data` takes a dataset name or a path to a local mnist.npz."""
    if data is None:
        return {}
    if data.endswith(".npz") or Path(data).is_file():
        return {"dataset": "mnist", "path": data}
    return {"dataset": data}


def _table(title: str, columns: list[str], rows: list[list], stream=None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 or column in ("type", "status", "metric") else "right")
    for row in rows:
        table.add_row(*(str(v) for v in row))
    Console(file=stream or sys.stdout, width=max(100, len(columns) * 14)).print(table)


def _shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


@app.command()
@user_errors
def build(
    spec: SpecArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of a table.")] = False,
) -> None:
    """Validate a spec and show the Keras model it makes: layers, parameters, FLOPs."""
    from cnnbench.model import build_model, summarize
    from cnnbench.spec import load_spec
    from cnnbench.train import make_optimizer

    loaded = load_spec(spec)
    model = build_model(loaded)
    make_optimizer(loaded)  # an unknown optimizer is a spec error too
    summary = summarize(loaded, model)
    if as_json:
        typer.echo(json.dumps({**summary.to_dict(), "spec": loaded.to_dict()}, indent=2))
        return
    rows = [[r.index, r.type, _shape(r.output_shape), f"{r.params:,}", f"{r.flops:,}"] for r in summary.layers]
    _table(f"{summary.name}  input {_shape((None, *summary.input_shape))}", ["#", "type", "output shape", "params", "FLOPs"], rows)
    typer.echo(f"total parameters: {summary.total_params:,} ({summary.trainable_params:,} trainable)")
    typer.echo(f"forward FLOPs per sample: {summary.flops_per_sample:,} (multiply-add = 2 FLOPs)")
    t = loaded.training
    typer.echo(f"training: {t.optimizer}, learning rate {t.learning_rate:g}, batch {t.batch_size}, {t.epochs} epochs, seed {t.seed}; data: {loaded.data.dataset}")


@app.command()
def schema() -> None:
    """Print the JSON Schema of the spec format (for editor validation and completion)."""
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


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


@app.command()
@user_errors
def train(
    spec: SpecArg,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override training.epochs.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Override training.learning_rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Override training.batch_size.")] = None,
    data: Annotated[str | None, typer.Option(help="Dataset (mnist, mnist-5k, synthetic) or a path to mnist.npz.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Override training.seed.")] = None,
    device: Annotated[str, typer.Option(help="cpu, gpu or auto.")] = "auto",
    backend: Annotated[str | None, typer.Option(help="Keras backend: tensorflow, jax or torch (default: KERAS_BACKEND).")] = None,
    out: Annotated[Path, typer.Option(help="Results folder; the run gets a sub-folder.")] = Path("results"),
) -> None:
    """Train a spec with model.fit, recording learning curves and timings in a run folder."""
    from cnnbench.results import new_run_dir
    from cnnbench.spec import load_spec
    from cnnbench.train import RunOptions, train_run

    loaded = load_spec(spec).with_overrides(
        epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, seed=seed, **_data_override(data)
    )
    options = RunOptions(device=device, backend=backend)
    run_dir = new_run_dir(out, loaded.name)
    t = loaded.training
    err(f"training {loaded.name}: lr {t.learning_rate:g}, batch {t.batch_size}, {t.epochs} epochs -> {run_dir}")
    try:
        record = train_run(loaded, run_dir, options, on_epoch=lambda row: err(_epoch_line(row, t.epochs)))
    except KeyboardInterrupt:
        err(f"interrupted: finished epochs are kept in {run_dir}")
        raise typer.Exit(130) from None
    timing = record["timing"]
    data_info = record["data"]
    rows = [
        ["status", record["status"]],
        ["data", f"{data_info['name']} ({data_info['train_samples']:,}/{data_info['val_samples']:,}/{data_info['test_samples']:,})"],
        ["device", f"{record['device']} ({record['device_name']}), {record['backend']}"],
        ["parameters", f"{record['params']:,}"],
        ["epochs run", record["epochs_run"]],
        ["final val error", _fmt(record.get("final_val_error"))],
        ["best val error", f"{_fmt(record.get('best_val_error'))} (epoch {record.get('best_epoch')})"],
        ["test error", _fmt(record.get("test_error"))],
        ["first epoch", f"{_fmt(timing.get('first_epoch_s'), '.3f')} s (includes tracing/compilation)"],
        ["steady epoch", f"{_fmt(timing.get('epoch_s_median'), '.3f')} s median [{_fmt(timing.get('epoch_s_min'), '.3f')}-{_fmt(timing.get('epoch_s_max'), '.3f')}]"],
        ["run folder", str(run_dir)],
    ]  # fmt: skip
    _table(f"{loaded.name}", ["metric", "value"], rows)
    if record["error"]:
        err(f"{record['status']}: {record['error']}")
    if record["status"] in ("failed", "oom"):
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
