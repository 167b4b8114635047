"""What a report is made of: the sweeps, benches and lone runs below some folders, read through the same
readers `plot` and `ls` use (never training code), each with the files it was read from.

A folder that cannot be read is kept as a `Skipped` entry (and a warning) instead of stopping the report.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench import record as run_record
from cnnbench.errors import DataError
from cnnbench.layout import is_study
from cnnbench.plot.curves import load_sweep
from cnnbench.plot.load import Run, read_bench, read_record_checked, read_run, read_table, warn
from cnnbench.results import HISTORY_COLUMNS, find_results, find_runs, list_results

KINDS = ("sweeps", "studies", "benches", "runs")  # the order of the page's sections


@dataclass
class Sweep:
    """A learning-rate sweep: sweep.json, summary.csv rows (floats where numeric) and its runs as figures see them."""

    folder: Path
    record: dict[str, Any]
    summary: list[dict[str, Any]]
    runs: list[Run]
    missing: list[tuple[float, str]]
    plot_dir: Path  # where `plot_sweep` reads it: the folder itself, or its run folders rebuilt from curves.csv
    rebuilt: bool = False
    inputs: list[Path] = field(default_factory=list)
    _by_rate: dict[str, Run] | None = field(default=None, repr=False)

    def run_at(self, lr: float) -> Run | None:
        """The first run of rate `lr` (equal within 1e-9 relative): a dict lookup, so a 1,000-run study's table is not
        10⁶ comparisons."""
        if self._by_rate is None:
            self._by_rate = {}
            for run in self.runs:
                if run.lr is not None:
                    self._by_rate.setdefault(rate_key(run.lr), run)
        run = self._by_rate.get(rate_key(lr))
        if run is not None:
            return run
        return next((r for r in self.runs if r.lr is not None and math.isclose(r.lr, lr, rel_tol=1e-9)), None)


def rate_key(lr: float) -> str:
    """A rate as a lookup key: rates equal to 9 significant digits share it."""
    return f"{lr:.8e}"


@dataclass
class Study:
    """A `cnnbench sweep` study (also `sweep-lr --seeds N`): sweep.json, points.csv and runs.csv rows (floats where
    numeric), the axis paths in order and their values as sweep.json gives them."""

    folder: Path
    index: dict[str, Any]
    points: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    axes: dict[str, list[Any]]
    inputs: list[Path] = field(default_factory=list)


@dataclass
class Bench:
    """A bench: every bench.csv row, the ok rows, bench.json and the fits.csv rows the verdicts come from."""

    folder: Path
    rows: Any  # DataFrame
    ok: Any  # DataFrame
    info: dict[str, Any]
    fits: list[dict[str, Any]] = field(default_factory=list)
    fits_path: Path | None = None  # the fits.csv the verdicts were read from (None: computed now, not on disk)
    inputs: list[Path] = field(default_factory=list)


@dataclass
class LoneRun:
    folder: Path
    run: Run
    inputs: list[Path] = field(default_factory=list)


@dataclass
class Skipped:
    folder: Path
    reason: str


@dataclass
class Collection:
    roots: list[Path]
    sweeps: list[Sweep] = field(default_factory=list)
    studies: list[Study] = field(default_factory=list)
    benches: list[Bench] = field(default_factory=list)
    runs: list[LoneRun] = field(default_factory=list)
    listing: list[dict[str, Any]] = field(default_factory=list)  # `cnnbench ls` rows
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    study_file: dict[str, Any] | None = None  # the study.json `cnnbench study` wrote at a root: its name, parts, claims

    @property
    def empty(self) -> bool:
        return not (self.sweeps or self.studies or self.benches or self.runs)


def number(value: Any) -> Any:
    """A CSV cell as a float when it is one ('0.01' → 0.01), None when empty, else the text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if text == "" or text.lower() == "nan":
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return float(text)
    except ValueError:
        return text


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A CSV table as a list of dicts with numbers as floats (empty list when absent)."""
    frame = read_table(path)
    return [{str(k): number(v) for k, v in row.items()} for row in frame.to_dict("records")]


def file_digest(path: Path) -> tuple[int, str]:
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def _rebuild_runs(sweep_dir: Path, record: dict[str, Any], summary: list[dict[str, Any]], scratch: Path) -> Path:
    """A sweep committed without its run folders (summary.csv + curves.csv, as in docs/study) rebuilt in
    `scratch` as the run folders `train` writes, so the figures come from `plot_sweep` itself."""
    target = scratch / sweep_dir.name
    target.mkdir(parents=True)
    spec = record.get("spec") if isinstance(record.get("spec"), dict) else {}
    training = spec.get("training") if isinstance(spec.get("training"), dict) else {}
    by_dir = {str(row.get("run_dir")): row for row in summary if row.get("run_dir")}
    curves = read_table(sweep_dir / "curves.csv")
    if curves.empty or "run_dir" not in curves:
        raise DataError(f"{sweep_dir / 'curves.csv'}: no 'run_dir' column")
    for run_dir, group in curves.groupby("run_dir", sort=True):
        name = str(run_dir)
        if not name or "/" in name or name.startswith("."):
            raise DataError(f"{sweep_dir / 'curves.csv'}: run_dir {name[:40]!r} is not a folder name")
        folder = target / name
        folder.mkdir()
        columns = ["epoch", *[c for c in HISTORY_COLUMNS if c in group and c != "epoch"]]
        buffer = io.StringIO()
        group[columns].to_csv(buffer, index=False, lineterminator="\n")
        (folder / "history.csv").write_text(buffer.getvalue())
        row = by_dir.get(name, {})
        first = group.iloc[0].to_dict()
        run = {
            "name": spec.get("name") or first.get("name"),
            "status": str(row.get("status") or first.get("status") or "?"),
            "learning_rate": row.get("learning_rate") or number(first.get("learning_rate")),
            "optimizer": training.get("optimizer"),
            "batch_size": training.get("batch_size"),
            "epochs": training.get("epochs"),
            "seed": training.get("seed"),
            "device": row.get("device") or first.get("device"),
            "backend": row.get("backend"),
            "engine": row.get("engine"),
            "data": {"name": row.get("dataset") or first.get("dataset")},
            "best_val_error": row.get("best_val_error"),
            "final_val_error": row.get("final_val_error"),
        }
        if isinstance(row.get("learned"), bool):
            run["learned"] = row["learned"]
        if isinstance(run["batch_size"], float):
            run["batch_size"] = int(run["batch_size"])
        run_record.copy(folder, {k: v for k, v in run.items() if v is not None})
    with open(target / "summary.csv", "w", newline="") as f:
        if summary:
            writer = csv.DictWriter(f, fieldnames=list(summary[0]))
            writer.writeheader()
            writer.writerows(summary)
    return target


def _sweep(folder: Path, scratch: Path) -> Sweep:
    record = read_record_checked(folder / "sweep.json")
    summary = read_rows(folder / "summary.csv")
    inputs = [p for p in (folder / "sweep.json", folder / "summary.csv") if p.is_file()]
    plot_dir, rebuilt = folder, False
    if not find_runs(folder) and (folder / "curves.csv").is_file():
        plot_dir, rebuilt = _rebuild_runs(folder, record, summary, scratch), True
        inputs.append(folder / "curves.csv")
    runs, missing = load_sweep(plot_dir)
    if not rebuilt:
        inputs += [p for r in runs for p in (r.run_dir / "run.json", r.run_dir / "history.csv") if p.is_file()]
    if not runs and not summary:
        raise DataError(f"{folder}: no run has an epoch yet and summary.csv has no row")
    return Sweep(folder, record, summary, runs, missing, plot_dir, rebuilt, inputs)


def _study(folder: Path) -> Study:
    index = read_record_checked(folder / "sweep.json")
    points, runs = read_rows(folder / "points.csv"), read_rows(folder / "runs.csv")
    if not points:
        raise DataError(f"{folder / 'points.csv'}: no point recorded yet")
    axes: dict[str, list[Any]] = {}
    for axis in index.get("axes") or []:
        if isinstance(axis, dict) and isinstance(axis.get("path"), str) and axis["path"] in points[0]:
            values = axis.get("values") if isinstance(axis.get("values"), list) else []
            axes[axis["path"]] = [v for v in values if isinstance(v, (int, float, str)) or v is None]
    if not axes:
        raise DataError(f"{folder / 'sweep.json'}: no axis of the study is a column of points.csv")
    for row in [*points, *runs]:
        for path, values in axes.items():  # a value as sweep.json types it (4, not 4.0); --all's points outside the grid join
            if row.get(path) is None:
                continue
            match = next((v for v in values if _same(row[path], v)), None)
            if match is None:
                values.append(row[path])
            else:
                row[path] = match
        for key in ("n", "n_ok", "n_diverged", "n_never_learned", "seed", "best_epoch", "epochs_run"):
            if isinstance(row.get(key), float) and row[key].is_integer():
                row[key] = int(row[key])
    inputs = [folder / name for name in ("sweep.json", "points.csv", "runs.csv") if (folder / name).is_file()]
    inside = [folder / r["run_dir"] for r in runs if isinstance(r.get("run_dir"), str) and _inside(r["run_dir"])]
    inputs += [p for run in inside for p in (run / "run.json", run / "history.csv") if p.is_file()]
    return Study(folder, index, points, runs, axes, inputs)


def _inside(run_dir: str) -> bool:
    """A runs.csv run_dir that stays inside its study (`<point>/seed-<s>`), never an absolute path or `..`."""
    parts = Path(run_dir).parts
    return bool(parts) and not Path(run_dir).is_absolute() and ".." not in parts


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9)
    return str(a) == str(b)


def _bench(folder: Path) -> Bench:
    rows, ok, info = read_bench(folder)
    if rows.empty:
        raise DataError(f"{folder / 'bench.csv'}: no row measured yet")
    inputs = [p for p in (folder / "bench.json", folder / "bench.csv") if p.is_file()]
    bench = Bench(folder, rows, ok, info, inputs=inputs)
    if (folder / "fits.csv").is_file():
        bench.fits, bench.fits_path = read_rows(folder / "fits.csv"), folder / "fits.csv"
        inputs.append(folder / "fits.csv")
    return bench


def collect(roots: list[Path], scratch: Path) -> Collection:
    """Every sweep, bench and lone run at or below `roots` (each a folder), as `plot` finds them."""
    found = Collection(list(roots))
    for index, root in enumerate(roots):
        kinds = find_results(root)
        for folder in kinds["sweeps"]:
            if is_study(folder):
                _guard(found, folder, lambda f=folder: found.studies.append(_study(f)))
                continue
            _guard(found, folder, lambda f=folder, i=index: found.sweeps.append(_sweep(f, scratch / f"sweep-{i}-{len(found.sweeps)}")))
        for folder in kinds["benches"]:
            _guard(found, folder, lambda f=folder: found.benches.append(_bench(f)))
        for folder in kinds["runs"]:

            def lone(f: Path = folder) -> None:
                run = read_run(f)
                if run.history.empty:
                    raise DataError(f"{f / 'history.csv'}: no epoch recorded yet")
                found.runs.append(LoneRun(f, run, [p for p in (f / "run.json", f / "history.csv") if p.is_file()]))

            _guard(found, folder, lone)
        found.listing += list_results(root)
        if found.study_file is None:
            found.study_file = _study_file(root)
    return found


def _study_file(root: Path) -> dict[str, Any] | None:
    """The study.json of a folder `cnnbench study` made (None when absent or not one)."""
    from cnnbench.files import UnsafeFileError, read_json

    if not (root / "study.json").is_file():
        return None
    try:
        doc = read_json(root / "study.json")
    except (OSError, ValueError, RecursionError, UnsafeFileError) as exc:
        warn(f"{root / 'study.json'}: cannot be read ({type(exc).__name__}); the study's claims are not compared")
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") == "study-file" else None


def _guard(found: Collection, folder: Path, read) -> None:
    try:
        read()
    except DataError as exc:
        found.skipped.append(Skipped(folder, str(exc)))
        warn(f"skipped {exc}")
