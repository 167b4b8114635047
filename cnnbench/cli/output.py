"""The one door to the terminal: result lines on stdout, messages on stderr, tables, and the translation of
the library's typed errors (and of a signal) into one line and an exit code."""

from __future__ import annotations

import errno
import functools
import sys
import warnings
from collections.abc import Callable
from contextlib import contextmanager

import typer

from cnnbench.errors import CnnbenchError, safe

_BROKEN: set[str] = set()  # streams whose reader went away (`cnnbench train ... | head`)


def _broken_pipe(exc: BaseException) -> bool:
    return isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE)


def _emit(message: str, stream: str) -> None:
    """Print one line; once a stream's reader has gone, stop printing there. Output must never stop training."""
    if stream in _BROKEN:
        return
    try:
        typer.echo(safe(_with_flags(message)), err=stream == "stderr")  # the one door to the terminal: no control character passes
    except OSError as exc:
        if not _broken_pipe(exc):
            raise
        _BROKEN.add(stream)


# The app's root command, set by cnnbench.cli once its commands are assembled (this module cannot import it).
_ROOT: list = []


@functools.cache
def _app_flags() -> frozenset[str]:
    import typer.main

    from cnnbench.cli_flags import command_flags

    return command_flags(typer.main.get_command(_ROOT[0])) if _ROOT else frozenset()


def _with_flags(message: str) -> str:
    """The library names its parameters (`parallel`); the user reads the flags they typed (--parallel): cnnbench.cli_flags."""
    if "`" not in message:
        return message
    from cnnbench.cli_flags import as_flags

    return as_flags(message, _app_flags())


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


class _RunsProgress:
    """A rich progress bar over runs on stderr, with lines printed above it. The bar counts runs, advanced by the epochs
    of the runs in flight (`in_flight`: key -> epochs finished), so that the ETA moves during long runs."""

    def __init__(self, total: int, epochs: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.total, self.epochs, self.done = total, epochs, 0
        self.in_flight: dict[str, int] = {}
        columns = (TextColumn("{task.description:<30}"), BarColumn(), TextColumn("{task.fields[runs]}"), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())  # fmt: skip
        self.progress = Progress(*columns, console=Console(stderr=True))
        self.task = self.progress.add_task("starting", total=max(total, 1), runs=f"0/{total} runs")
        if total:  # when every run is kept: their lines, no bar
            self.progress.start()

    def advance(self, description: str) -> None:
        completed = self.done + sum(min(v, self.epochs) / self.epochs for v in self.in_flight.values())
        self.progress.update(self.task, completed=completed, description=description, runs=f"{self.done}/{self.total} runs")

    def print(self, line: str) -> None:
        self.progress.console.print(safe(_with_flags(line)), soft_wrap=True, markup=False, highlight=False)  # errors may hold [brackets]

    @_output_may_fail
    def stop(self) -> None:
        self.progress.stop()


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


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _never_learned(record: dict) -> str | None:
    """The warning for a run that ended no better than chance (run.json `learned: false`), else None."""
    if record.get("learned") is not False:
        return None
    from cnnbench.values import format_value

    return (f"lr {format_value(record['learning_rate'])} never learned: best val error {_fmt(record.get('best_val_error'), '.3f')} "
            f"≈ chance {_fmt(record.get('chance_error'), '.3f')}")  # fmt: skip


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
