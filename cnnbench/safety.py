"""The command line's last line of defence: standard streams that cannot fail a command, and any
unexpected error turned into one line naming a log file that holds its traceback.
"""

from __future__ import annotations

import errno
import io
import os
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

INTERNAL_ERROR_EXIT = 70  # EX_SOFTWARE (sysexits.h): a fault of cnnbench, not of the input
OUTPUT_ERROR_EXIT = 74  # EX_IOERR: the results could not be written to stdout (a full disk, /dev/full)


def reopen_closed_std_fds() -> None:
    """A standard stream closed by the caller (`2>&-`) is reopened on /dev/null.

    Otherwise the next file cnnbench opens (a lock, a run record) would get descriptor 2 and
    TensorFlow's log lines would be written into it; and Python's `sys.stderr` is None then.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # descriptors are allocated lowest first, so this only happens if a lower one was closed too
                os.dup2(null, fd)
                os.close(null)
    for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False, encoding="utf-8", errors="replace"))  # noqa: SIM115


class _GuardedRaw(io.RawIOBase):
    """A write-only file descriptor whose write errors are recorded instead of raised: output never
    stops a command (the run goes on and its folder is complete); the command reports it at its end."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)

    def write(self, data) -> int:
        if self.error is None:
            try:
                return os.write(self.fd, data)
            except OSError as exc:
                self.error = exc
        return len(data)  # dropped: the reader is gone or the disk is full


def guard_stream(name: str) -> _GuardedRaw | None:
    """Replace sys.stdout or sys.stderr by the same descriptor behind a `_GuardedRaw`; returns the guard."""
    stream = getattr(sys, name)
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None  # not a real file (a test runner's capture): left as it is
    raw = _GuardedRaw(fd)
    wrapped = io.TextIOWrapper(io.BufferedWriter(raw), encoding=stream.encoding, errors=stream.errors or "strict",
                               line_buffering=stream.line_buffering or name == "stderr", write_through=name == "stderr")  # fmt: skip
    try:
        stream.flush()
    except OSError:
        pass
    setattr(sys, name, wrapped)
    return raw


def output_error(raw: _GuardedRaw | None) -> str | None:
    """The problem writing to a guarded stream, if any; a reader that went away (`| head`) is none."""
    if raw is None:
        return None
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    exc = raw.error
    if exc is None or exc.errno == errno.EPIPE:
        return None
    return exc.strerror or type(exc).__name__


def write_crash_log(exc: BaseException, argv: list[str]) -> Path | None:
    """The traceback of an unexpected error, with the command line and version, in a new log file:
    under the cnnbench cache folder (`CNNBENCH_CACHE`, else ~/.cache/cnnbench) or, failing that, the
    system's temporary folder. None if neither can be written (a full disk)."""
    import tempfile

    from cnnbench import __version__

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    text = (f"cnnbench {__version__}, Python {sys.version.split()[0]}\ncommand: {' '.join(argv)}\n\n"
            + "".join(traceback.format_exception(exc)))  # fmt: skip
    cache = Path(os.environ.get("CNNBENCH_CACHE") or Path.home() / ".cache" / "cnnbench")
    for folder in (cache / "crashes", Path(tempfile.gettempdir())):
        path = folder / f"cnnbench-crash-{stamp}-{os.getpid()}.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(path, "x", encoding="utf-8", errors="replace") as handle:
                handle.write(text)
            return path
        except OSError:
            try:
                path.unlink(missing_ok=True)  # a half-written log on a full disk is no log
            except OSError:
                pass
    return None


def crash_line(exc: BaseException, argv: list[str]) -> str:
    """One line for an unexpected error: what it was, and where its traceback is."""
    what = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    kind = type(exc).__name__ + (f": {what}" if what else "")
    log = write_crash_log(exc, argv)
    where = f"the traceback is in {log}" if log else "its traceback could not be saved (no space for a log file)"
    return f"error: internal error ({kind}); {where}; please report it"
