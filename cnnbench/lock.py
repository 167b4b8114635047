"""Folder locks: one cnnbench process at a time writes a sweep or bench folder.

An advisory `fcntl.flock` on `<folder>/.cnnbench.lock`: the kernel drops it when its owner dies, however it dies.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cnnbench.errors import UsageError
from cnnbench.files import UnsafeFileError, check_folder, open_regular, read_bytes
from cnnbench.results import now_iso, remove_leftovers

LOCK_NAME = ".cnnbench.lock"


@contextmanager
def folder_lock(folder: str | Path, what: str = "folder") -> Iterator[Path]:
    """Hold `folder` (created if missing) for this process; UsageError naming the owner when another holds it.

    The lock file records the owner (pid, command, start time) for that message and is removed on
    release; after a crash it stays behind, harmless: a lock file nobody holds locks nothing. Once held,
    the temporary files of atomic writes that a killed process left (results.remove_leftovers) are removed.
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        fd = open_regular(path, os.O_RDWR | os.O_CREAT)  # a link planted as the lock file is refused, never followed
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise in_use(folder, _owner(path)) from None
        try:
            if os.lstat(path).st_ino == os.fstat(fd).st_ino:
                break  # the file we hold is still the lock file (its last owner did not remove it meanwhile)
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        check_folder(folder)  # held now: a link or pipe planted inside is refused before anything is written
        program = "cnnbench" if Path(sys.argv[0]).parent.name == "cnnbench" or Path(sys.argv[0]).name == "cnnbench" else sys.argv[0]
        owner = {"pid": os.getpid(), "what": what, "command": " ".join([program, *sys.argv[1:]])[:200], "since": now_iso()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        remove_leftovers(folder, skip=held_by)  # temporary files a killed writer left: this process owns the folder now
        yield folder
    finally:
        try:
            os.unlink(path)  # removed while still held: nothing is left behind, and a waiter re-checks the inode
        except OSError:
            pass  # the folder was removed meanwhile (an empty sweep after a typo)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def in_use(folder: str | Path, owner: str) -> UsageError:
    """The one-line error for a folder that `owner` ('cnnbench pid N (...)') holds."""
    return UsageError(f"{folder} is in use by {owner}; wait for it to end or stop it, then run the command again")


def held_by(folder: str | Path) -> str | None:
    """Who holds `folder`'s lock ('cnnbench pid N (...)'), or None when nobody does (or it has no lock file)."""
    import fcntl

    path = Path(folder) / LOCK_NAME
    try:
        fd = open_regular(path)  # a FIFO planted as the lock file must not hang `ls`
    except (OSError, UnsafeFileError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _owner(path)
    finally:
        os.close(fd)  # closing drops the probe's own lock, if it got one
    return None


def _owner(path: Path) -> str:
    """'cnnbench pid 123 (sweep-lr ..., since ...)' from a lock file, as far as it can be read."""
    try:
        owner = json.loads(read_bytes(path, 4096))
        pid = int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError, UnsafeFileError):
        return "another cnnbench process"
    command = str(owner.get("command") or "")[:80]
    since = str(owner.get("since") or "")[:40]
    return f"cnnbench pid {pid} ({command}{', ' if command and since else ''}{'since ' + since if since else ''})"
