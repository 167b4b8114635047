"""`cnnbench build`, `schema` and `list`: a spec checked and shown, the spec format, the built-in specs."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cnnbench.cli.options import (
    SpecArg,
)
from cnnbench.cli.output import (
    _table,
    user_errors,
)
from cnnbench.errors import count
from cnnbench.precision import dumps

app = typer.Typer()


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
def schema(
    study: Annotated[bool, typer.Option("--study", help="The schema of a study file instead (docs/study-files.md).")] = False,
) -> None:
    """Print the JSON Schema of the spec format, generated from the catalog cnnbench checks against (docs/spec.md: editor setup)."""
    if study:
        from cnnbench.studyfile import json_schema as study_schema

        typer.echo(json.dumps(study_schema(), indent=2))
        return
    from cnnbench.spec import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@app.command("list")
def list_specs() -> None:
    """List the built-in specs (usable by name wherever a spec file is expected)."""
    from cnnbench.spec import builtin_specs, load_spec

    for name in builtin_specs():
        spec = load_spec(name)
        typer.echo(f"{name:24s} {spec.description}")
