"""`cnnbench plot` and `compare`: figures of results on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnnbench.cli.output import (
    _fmt,
    _table,
    say,
    user_errors,
)
from cnnbench.precision import dumps

app = typer.Typer()


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
    width = max(len(columns) * 14, max(len(str(row[0])) for row in table) + 150)  # a study's `<point>/seed-<s>` on one line
    _table("compare: " + ", ".join(dict.fromkeys(r["source"] for r in rows)), columns, table, width=width)
    for path in figures:
        say(str(path))
