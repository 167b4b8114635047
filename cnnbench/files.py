"""Touching files in a results folder safely: never through a link, regular files only, every read bounded.

Results folders are shared, copied and unpacked from archives: a planted link, pipe or device must not
redirect a write, hang a read or fill memory. Every reader and writer of a results file comes through here.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from cnnbench.errors import OutputError
from cnnbench.precision import plain

MAX_RESULT_BYTES = 64 * 2**20  # run.json, history.csv, bench.csv ...: cnnbench writes a few KB to a few MB
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO returns at once, so fstat can refuse it
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_REMOVE_IT = "cnnbench reads and writes only regular files in a results folder (remove it)"
TEMP_SUFFIX = ".tmp"  # atomic writes go through `.<name>.<8 random characters>.tmp` (results.TEMP_FILE)
_UMASK = os.umask(0)
os.umask(_UMASK)


class UnsafeFileError(OutputError):
    """A file in a results folder that is not a regular file (a link, a pipe, a device) or is too large.

    >>> str(UnsafeFileError("results/run/run.json", "is a symbolic link"))
    'results/run/run.json: is a symbolic link; cnnbench reads and writes only regular files in a results folder (remove it)'
    """

    def __init__(self, path: str | Path, what: str):
        self.path, self.what = str(path), what
        super().__init__(f"{shown_path(path)}: {what}; {_REMOVE_IT if what.startswith(('is a ', 'is not')) else 'remove it'}")


def shown_path(path: str | Path, limit: int = 200) -> str:
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit // 2]}…{text[-limit // 2 :]}"


def kind_of(mode: int) -> str:
    """What a file that is not a regular file is, in words ('a symbolic link', 'a named pipe (FIFO)', ...)."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def check_target(path: str | Path) -> None:
    """For writers, before replacing or creating `path`: fine when it is missing or a regular file, else UnsafeFileError."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise UnsafeFileError(path, f"is {kind_of(mode)}")


def check_folder(folder: str | Path, depth: int = 3) -> None:
    """Refuse a held folder that is a link, or in which something other than regular files and real folders
    was planted, up to `depth` levels down (a bench's runs/<run>/ files are 3): UnsafeFileError naming the first.

    One lstat per entry, nothing followed: a sweep of 400 runs is a few thousand calls.
    """
    if os.path.islink(folder):
        raise UnsafeFileError(folder, "is a symbolic link")
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, PermissionError):  # gone meanwhile, or unreadable: its own writes will say so
        return
    for entry in entries:
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except FileNotFoundError:  # another process's temporary file, renamed meanwhile
            continue
        if stat.S_ISDIR(mode):
            if depth > 1:
                check_folder(entry.path, depth - 1)
        elif not stat.S_ISREG(mode):
            raise UnsafeFileError(entry.path, f"is {kind_of(mode)}")


def open_regular(path: str | Path, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """A file descriptor of `path`, opened without following a link and without blocking on a pipe;
    UnsafeFileError when it is a link or not a regular file. FileNotFoundError passes through."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | _NONBLOCK | _CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW met a link (EMLINK on FreeBSD)
            raise UnsafeFileError(path, "is a symbolic link") from None
        if exc.errno in (errno.ENXIO, errno.EISDIR):  # a FIFO opened for writing without a reader; a folder
            try:
                what = kind_of(os.lstat(path).st_mode)
            except OSError:
                raise exc from None
            raise UnsafeFileError(path, f"is {what}") from None
        raise
    mode_now = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode_now):
        os.close(fd)
        raise UnsafeFileError(path, f"is {kind_of(mode_now)}")
    return fd  # O_NONBLOCK stays: it changes nothing for a regular file


def read_bytes(path: str | Path, limit: int = MAX_RESULT_BYTES, tail: bool = False) -> bytes:
    """The content of a regular file, at most `limit` bytes: UnsafeFileError when it is larger (or, with
    `tail`, its last `limit` bytes: a log's end). Links, pipes and devices are refused, never opened."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            if not tail:
                cap = f"{limit / 2**20:,.0f} MiB"
                raise UnsafeFileError(path, f"is {size / 2**20:,.1f} MiB, larger than any file cnnbench writes there ({cap})")
            os.lseek(fd, size - limit, os.SEEK_SET)
        chunks, length = [], 0
        # Ask for what fstat said (+1 to see growth), then in 1 MiB steps: os.read allocates what it is asked for.
        while chunk := os.read(fd, min(limit + 1 - length, min(size, limit) + 1 if not chunks else 2**20)):
            chunks.append(chunk)
            length += len(chunk)
            if length > limit:
                break
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:  # it grew meanwhile
        if not tail:
            raise UnsafeFileError(path, f"grew beyond {limit / 2**20:,.0f} MiB while it was read")
        data = data[-limit:]
    return data


def read_text(path: str | Path, limit: int = MAX_RESULT_BYTES) -> str:
    """read_bytes, decoded as UTF-8 (UnicodeDecodeError, a ValueError, when it is not)."""
    return read_bytes(path, limit).decode("utf-8")


def open_for_writing(path: str | Path) -> int:
    """A descriptor to write `path` from its start (created, or an existing regular file emptied): never a link's target."""
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT)
    os.ftruncate(fd, 0)
    return fd


# --- atomic writes ------------------------------------------------------------------------------


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temp file in the same folder + rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_bytes(path: str | Path, write: Any) -> None:
    """Like atomic_write_text, for binary content: `write(file)` fills the temp file (np.savez, ...)."""
    path = Path(path)
    check_target(path)  # a link planted in its place is refused, not replaced (the temp file is O_EXCL: never a link)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)  # named as TEMP_FILE matches
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are meant to be shared
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno and not exc.filename:  # a full disk: say which file could not be written
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(plain(json.loads(json.dumps(data, default=_json_default))), indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    """A JSON file of a results folder, read through the bounded reader (regular files only, size capped)."""
    return json.loads(read_bytes(path).decode("utf-8"))
