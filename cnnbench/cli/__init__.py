"""The `cnnbench` command: parses options, calls one library function, prints the result.

No training logic lives here, and nothing heavy is imported at module level, so --help is instant.
Each command group is a module of its own with an `app = typer.Typer()` and its `@app.command()`s, merged
below into one app (Typer's one file per command); `output` is the one door to the terminal (`err`, `say`,
tables, `user_errors`), `options` the options several commands share. A new command: a module here and
one entry in the tuple below.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cnnbench import __version__
from cnnbench.cli import bench, build, export, output, plot, results, study, sweep, sweep_lr, train
from cnnbench.cli.output import err

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


# One file per command group, merged into one app in the order `cnnbench --help` lists them.
for _module in (build, train, plot, bench, sweep_lr, sweep, study, results, export):
    app.add_typer(_module.app)
output._ROOT.append(app)  # error lines name the flags the user typed (cnnbench.cli_flags)


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
