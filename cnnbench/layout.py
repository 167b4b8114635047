"""The folder layout of results: which folder is a run, a sweep (or study), a bench, and which runs belong to
which. Every reader asks here; only `train`, `sweep`, `study` and `bench` make folders, with these names.

    results/<run>/                 run.json, spec.json, history.csv          a lone run (`train`)
    results/<sweep>/<run>/         sweep.json, summary.csv beside the runs   a sweep (`sweep-lr`)
    results/<study>/<point>/<run>/ sweep.json (`kind: study`), points.csv    a study (`sweep`): a run per point and seed
    results/<bench>/runs/<run>/    bench.json, bench.csv beside runs/        a bench
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

RUN_RECORD = "run.json"
SWEEP_INDEX = "sweep.json"
BENCH_INDEX = "bench.json"
BENCH_TABLE = "bench.csv"
BENCH_RUNS = "runs"  # a bench's run folders live in <bench>/runs/
SWEEP_MARKERS = frozenset({SWEEP_INDEX})  # the files that make a folder a sweep's (a study's too)
BENCH_MARKERS = frozenset({BENCH_INDEX, BENCH_TABLE})  # ... or a bench's (bench.csv alone: an older bench)
INDEX = {"sweep": SWEEP_INDEX, "bench": BENCH_INDEX}  # the record of a group of runs
TABLE = {"sweep": "summary.csv", "bench": BENCH_TABLE}  # its table of runs, which outlives the run folders


def kind_of_files(names: Iterable[str]) -> str | None:
    """"sweep", "bench" or "run" for a folder holding the files `names` (None: none of them).

    A sweep's or bench's marker wins over run.json: what lies inside a sweep, bench or run belongs to it.
    """
    names = set(names)
    if names & SWEEP_MARKERS:
        return "sweep"
    if names & BENCH_MARKERS:
        return "bench"
    return "run" if RUN_RECORD in names else None


def is_run(folder: str | Path) -> bool:
    return (Path(folder) / RUN_RECORD).is_file()


def is_sweep(folder: str | Path) -> bool:
    return any((Path(folder) / name).is_file() for name in SWEEP_MARKERS)


def is_bench(folder: str | Path) -> bool:
    return any((Path(folder) / name).is_file() for name in BENCH_MARKERS)


def is_study(folder: str | Path) -> bool:
    """A sweep folder whose sweep.json says `kind: study` (`cnnbench sweep`; `sweep-lr` writes none)."""
    from cnnbench.files import UnsafeFileError, read_json  # the bounded reader (results imports this module)

    try:
        index = read_json(Path(folder) / SWEEP_INDEX)
    except (OSError, ValueError, RecursionError, UnsafeFileError):
        return False
    return isinstance(index, dict) and index.get("kind") == "study"


def group_of(run_dir: str | Path) -> tuple[str, Path | None]:
    """The group a run folder belongs to: ("sweep", its sweep or study folder), ("bench", its bench folder) or ("train", None)."""
    parent = Path(run_dir).parent
    if is_sweep(parent):
        return "sweep", parent
    if is_sweep(parent.parent):  # a study's <point>/seed-<s>
        return "sweep", parent.parent
    if parent.name == BENCH_RUNS and is_bench(parent.parent):
        return "bench", parent.parent
    return "train", None


def holders(run_dir: str | Path) -> list[Path]:
    """The folders whose lock covers a run: the run's own, its sweep's (one up) and its bench's (two up, past runs/)."""
    run_dir = Path(run_dir).absolute()
    return [run_dir, *list(run_dir.parents)[:2]]


def member_runs(folder: Path, kind: str, index: dict[str, Any] | None = None) -> list[Path]:
    """The run folders of a sweep (those its sweep.json plans, then any other on disk) or of a bench (<bench>/runs/*)."""
    if kind == "bench":
        runs_dir = folder / BENCH_RUNS
        return sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    planned = [r.get("run_dir") for r in (index or {}).get("runs") or [] if isinstance(r, dict) and isinstance(r.get("run_dir"), str)]
    on_disk = [p.name for p in sorted(folder.iterdir()) if p.is_dir() and (p / RUN_RECORD).exists()]
    return [folder / name for name in dict.fromkeys([*planned, *on_disk])]
