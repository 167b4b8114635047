"""Who owns a run folder: a new one is made atomically and held before anything is written in it,
and a run recorded `running` whose owner is gone is told apart from one that is still training."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cnnbench.layout import holders
from cnnbench.lock import folder_lock, held_by
from cnnbench.results import new_run_dir


@contextmanager
def new_run_folder(out: str | Path, name: str) -> Iterator[Path]:
    """A new run folder `out/<name>-<timestamp>` (`-2`, `-3`, ... when another command took the name), held by
    this process (lock.folder_lock) from the moment it exists; removed again, with the folders made for it,
    when nothing was recorded in it (bad data found after the spec's checks, Ctrl-C while loading).
    """
    made = [folder for folder in [Path(out), *Path(out).parents] if not folder.exists()]  # deepest first
    run_dir = new_run_dir(out, name)
    try:
        with folder_lock(run_dir, "run"):
            yield run_dir
    finally:
        for folder in [run_dir, *made]:
            try:
                folder.rmdir()  # only an empty folder: a run that started keeps its files
            except OSError:
                break


def run_is_live(run_dir: str | Path) -> bool:
    """True when a process holds the run folder, or the sweep or bench folder it belongs to (one or two levels up):
    a run recorded `running` without one was stopped without a chance to say so (kill -9, a power cut)."""
    return any(held_by(folder) is not None for folder in holders(run_dir))
