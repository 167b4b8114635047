"""`cnnbench export`: run folders on disk written to TensorBoard or MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnbench.cli.output import (
    say,
    user_errors,
)

app = typer.Typer()


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
