"""`cnnbench ls` and `report`: what is on disk, as a table or as one HTML page."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cnnbench.cli.output import (
    _fmt,
    _table,
    err,
    user_errors,
)
from cnnbench.errors import safe
from cnnbench.precision import dumps, plain

app = typer.Typer()


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
