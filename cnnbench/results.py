"""Results on disk: atomic writes, run folders (spec.json, run.json, history.csv) and their loaders.

A run folder is finished when its run.json has a final status; loaders return tidy pandas frames.

>>> runs = load_runs("results/")            # one row per run folder found below results/
>>> curves = load_histories("results/")     # one row per (run, epoch)
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from cnnbench import layout
from cnnbench.errors import OutputError, brief
from cnnbench.files import (  # noqa: F401  (atomic writes: long imported from here)
    TEMP_SUFFIX,
    UnsafeFileError,
    atomic_write_bytes,
    atomic_write_text,
    check_target,
    read_bytes,
    read_json,
    write_json,
)
from cnnbench.precision import plain
from cnnbench.provenance import environment, package_version  # noqa: F401 - provenance owns them; older callers import them here
from cnnbench.record import FIELDS as RUN_FIELDS  # noqa: F401
from cnnbench.record import (  # noqa: F401  (the run record's schema: long imported from here)
    FINISHED,
    OPTIONAL_DICT,
    OPTIONAL_NUMBER,
    OPTIONAL_STR,
    RUN_FILE,
    STATUSES,
    now_iso,
    type_problem,
)
from cnnbench.record import problem as run_problem

HISTORY_COLUMNS = (
    "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_error",
    "epoch_time_s", "train_time_s", "val_time_s", "samples_per_s", "learning_rate",
)  # fmt: skip


# The temporary files of atomic writes: `.<name>.<8 random characters>.tmp` (mkstemp), and the model's
# `.model.tmp.keras` (train._save_model). A process killed mid-write (kill -9) leaves one behind.
TEMP_FILE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp|\..+\.tmp\.keras")


def remove_leftovers(folder: str | Path, levels: int = 2, skip: Any = None) -> list[Path]:
    """Remove the temporary files of atomic writes that a killed writer left in `folder` and its sub-folders
    (down to `levels` below: a sweep's or bench's run folders), and nothing else; the paths removed.

    Call it only while holding `folder` (lock.folder_lock does). `skip(sub_folder)` True leaves a
    sub-folder alone (one that another process holds). Links and anything not a regular file are left.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False) and TEMP_FILE.fullmatch(entry.name):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            elif levels > 0 and entry.is_dir(follow_symlinks=False) and not (skip and skip(Path(entry.path))):
                removed += remove_leftovers(entry.path, levels - 1, skip)
        except OSError:
            continue  # gone meanwhile, or not ours to remove: a leftover is harmless
    return removed


def write_csv(path: str | Path, rows: list[dict[str, Any]], columns: list[str] | tuple[str, ...] | None = None) -> None:
    """Write rows atomically; columns default to the union of the rows' keys in first-seen order."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(plain(dict(row)) for row in rows)  # floats at the precision they have, NaN as an empty cell
    atomic_write_text(path, buffer.getvalue())


_NAME_MAX = 255  # bytes in one path component on Linux, macOS and Windows file systems


def _shown(path: Path, limit: int = 200) -> str:
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit // 2]}…{text[-limit // 2 :]} ({len(text)} characters)"


def check_out_dir(out: str | Path, option: str = "`out`") -> Path:
    """Refuse, before any work, a results folder that cannot be written: OutputError naming `option`.

    A file in the way, a name too long, a read-only or missing-permission parent: each is one line.
    Creates nothing (the folder is made when the first record is written): a probe file is made
    and removed in the nearest folder that exists.
    """
    path = Path(out)
    where = f"{option} {_shown(path)}"
    too_long = [part for part in path.parts if len(os.fsencode(part)) > _NAME_MAX]
    if too_long:
        raise OutputError(f"{where}: a name in it is too long ({len(os.fsencode(too_long[0]))} bytes; the limit is {_NAME_MAX})")
    existing = path
    try:
        while not existing.exists():
            if existing.is_symlink():
                raise OutputError(f"{where}: {_shown(existing)} is a broken link")
            existing = existing.parent
    except OSError as exc:  # a path longer than the system allows
        raise OutputError(f"{where}: {exc.strerror or exc}") from None
    if not existing.is_dir():
        what = "is a file" if existing == path else f"lies inside {_shown(existing)}, which is a file"
        raise OutputError(f"{where}: not a folder ({what})")
    try:
        fd, probe = tempfile.mkstemp(prefix=".cnnbench-probe-", dir=existing)
    except OSError as exc:
        raise OutputError(f"{where}: cannot write in {_shown(existing)} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def timestamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def new_run_dir(out: str | Path, name: str) -> Path:
    """Make and return a new, empty folder `out/<name>-<YYYYmmdd-HHMMSS>` (`-2`, `-3`, ... when taken).

    Made atomically (mkdir fails when the name exists): two commands started in the same second get
    two folders, never one shared.
    """
    base = Path(out) / f"{name}-{timestamp()}"
    Path(out).mkdir(parents=True, exist_ok=True)
    path, n = base, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


# --- reading records: one validated reader ------------------------------------------------------

INDEX_FIELDS: dict[str, tuple[type, ...]] = {  # sweep.json and bench.json
    "name": OPTIONAL_STR, "status": OPTIONAL_STR, "spec": OPTIONAL_DICT, "options": OPTIONAL_DICT, "models": OPTIONAL_DICT,
    "values": (list, type(None)), "runs": (list, type(None)), "warnings": (list, type(None)), "created_at": OPTIONAL_STR,
    "updated_at": OPTIONAL_STR, "started_at": OPTIONAL_STR, "ended_at": OPTIONAL_STR,
}  # fmt: skip
CORRUPT = "corrupt"  # the status shown for a run.json that exists but cannot be trusted


def record_problem(path: str | Path, record: Any) -> str | None:
    """Why a parsed record file cannot be trusted (None when it can): not an object, or a key of the wrong type."""
    if not isinstance(record, dict):
        return f"holds {type(record).__name__ if record is not None else 'null'}, not a JSON object"
    name = Path(path).name
    if name == RUN_FILE:
        return run_problem(record)
    elif name in ("sweep.json", "bench.json"):
        return type_problem(record, INDEX_FIELDS) or _runs_problem(record.get("runs") or []) or _models_problem(record.get("models") or {})
    return None


def plain_name(name: object) -> bool:
    """A single folder name inside its sweep or bench: not a path, not `..`, not absolute (records are not trusted to be)."""
    return isinstance(name, str) and 0 < len(name) <= _NAME_MAX and name not in (".", "..") and not any(c in name for c in "/\\\0")


def inside_name(name: object) -> bool:
    """A run folder inside its sweep: a plain name, or a study's `<point>/seed-<s>` (plain names, at most 3 deep)."""
    return isinstance(name, str) and 0 < name.count("/") + 1 <= 3 and all(plain_name(part) for part in name.split("/"))


def _runs_problem(runs: list) -> str | None:
    """A sweep's planned runs: each a learning rate and a run folder named inside the sweep."""
    for i, run in enumerate(runs):
        if not isinstance(run, dict):
            return f"runs[{i}] is {brief(run)}, expected an object"
        if "run_dir" in run and not inside_name(run["run_dir"]):
            return f"runs[{i}].run_dir is {brief(run['run_dir'])}, expected a folder name inside the sweep"
        if problem := type_problem(run, {"learning_rate": OPTIONAL_NUMBER}, f"runs[{i}]."):
            return problem
    return None


def _models_problem(models: dict) -> str | None:
    """A bench's model sizes: {"<filters>": {"params": n, "flops_per_sample": n}}, non-negative integers."""
    for key, model in models.items():
        if not isinstance(model, dict):
            return f"models[{brief(key)}] is {brief(model)}, expected an object"
        for field in ("params", "flops_per_sample"):
            value = model.get(field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return f"models[{brief(key)}].{field} is {brief(value)}, expected a non-negative integer"
    return None


def inspect_record(path: str | Path) -> tuple[dict[str, Any] | None, str | None]:
    """(record, problem) of a JSON record file: (dict, None) when it is valid, (None, None) when it is
    missing, (None, why) when something is there that cannot be trusted (a folder, torn JSON, wrong types).

    Every reader of run.json, sweep.json and bench.json goes through here.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return None, None
    if path.is_dir():
        return None, "is a folder, not a file"
    try:
        data = read_json(path)
    except UnsafeFileError as exc:
        return None, f"{exc.what}, not a record cnnbench wrote"
    except (OSError, ValueError, RecursionError) as exc:
        kind = "not valid JSON (torn or edited)" if isinstance(exc, (ValueError, RecursionError)) else f"unreadable ({type(exc).__name__})"
        return None, kind
    problem = record_problem(path, data)
    return (None, problem) if problem else (data, None)


def read_record(path: str | Path) -> dict[str, Any] | None:
    """A valid JSON record (run.json, sweep.json, ...), or None when it is missing, torn, a folder or of the wrong types."""
    return inspect_record(path)[0]


def record_status(run_dir: str | Path) -> tuple[str | None, str | None]:
    """(status, problem) of run_dir/run.json: (None, None) when there is none, ("corrupt", why) when it cannot be trusted."""
    record, problem = inspect_record(Path(run_dir) / "run.json")
    if problem:
        return CORRUPT, problem
    return (record or {}).get("status"), None


def run_status(run_dir: str | Path) -> str | None:
    """The status in run_dir/run.json: None when there is none, `corrupt` when it cannot be trusted."""
    return record_status(run_dir)[0]


def is_finished(run_dir: str | Path) -> bool:
    return run_status(run_dir) in FINISHED


def previous_index(path: str | Path) -> dict[str, Any]:
    """The index (sweep.json) about to be rewritten, {} when there is none; an untrusted one is set aside, kept beside the new one."""
    previous, problem = inspect_record(path)
    if problem:
        set_aside(path)
        return {}
    return previous or {}


def set_aside(path: str | Path) -> Path | None:
    """Move an untrusted record (file or folder) out of the way, to `<name>.corrupt[-N]` beside it; nothing is deleted."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return None
    target, n = path.with_name(f"{path.name}.corrupt"), 1
    while target.exists() or target.is_symlink():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{n}")
    os.replace(path, target)
    return target


# --- loading ---------------------------------------------------------------------------------


def find_runs(root: str | Path) -> list[Path]:
    """Every run folder (one holding run.json) at or below root, sorted by path."""
    root = Path(root)
    return sorted(p.parent for p in root.rglob("run.json"))


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            flat[f"{prefix}{key}"] = value
    return flat


IDENTITY_COLUMNS = ("kind", "group", "filters", "epochs", "dataset")


def run_identity(run_dir: str | Path, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """What tells a run apart from unrelated ones, from the folder layout, run.json and spec.json (old results too).

    kind: `sweep` (it lives in a sweep or study folder), `bench` (in <bench>/runs/) or `train` (`layout.group_of`);
    group: that sweep, study or bench folder's name ("" for a lone run); filters: the first layer's `filters`
    in spec.json (None when no layer has one); epochs: planned; dataset: the data actually used.
    """
    run_dir = Path(run_dir)
    record = read_record(run_dir / "run.json") if record is None else record
    record = record or {}
    kind, folder = layout.group_of(run_dir)
    group = folder.name if folder else ""
    spec = read_record(run_dir / "spec.json") or {}
    layers = spec.get("layers") if isinstance(spec.get("layers"), list) else []
    filters = next((layer["filters"] for layer in layers if isinstance(layer, dict) and "filters" in layer), record.get("filters"))
    training = spec.get("training") if isinstance(spec.get("training"), dict) else {}
    epochs = record.get("epochs") if record.get("epochs") is not None else training.get("epochs")
    dataset = (record.get("data") or {}).get("name")
    return dict(zip(IDENTITY_COLUMNS, (kind, group, filters, epochs, dataset), strict=True))


def load_runs(root: str | Path):
    """One row per run found below root: its identity (kind, group, filters, epochs, dataset), run_dir,
    and run.json flattened (`timing.epoch_s_median`, ...). Runs without a trustworthy run.json are left out.

    Select before comparing: `runs[(runs.kind == "sweep") & (runs.group == name)]`.
    """
    import pandas as pd

    rows = []
    for run_dir in find_runs(root):
        if (record := read_record(run_dir / "run.json")) is None:
            continue
        flat = _flatten(record)
        identity = run_identity(run_dir, record)
        rows.append({"run_dir": str(run_dir), **identity, **{k: v for k, v in flat.items() if k not in identity}})
    return pd.DataFrame(rows)


def load_history(run_dir: str | Path):
    """The per-epoch table of one run (empty frame with the standard columns if none yet, or if it is unreadable)."""
    import pandas as pd

    path = Path(run_dir) / "history.csv"
    empty = pd.DataFrame(columns=list(HISTORY_COLUMNS))
    try:
        content = read_bytes(path)
        frame = pd.read_csv(io.BytesIO(content)) if content else empty
    except (OSError, ValueError, UnsafeFileError, pd.errors.ParserError):
        return empty  # missing, a link, a pipe, too large or torn
    if "epoch" not in frame or not pd.api.types.is_numeric_dtype(frame["epoch"]):
        return empty  # not a history cnnbench wrote
    return frame


def load_histories(root: str | Path):
    """Tidy per-epoch table of every run below root: run_dir, its identity (kind, group, filters, epochs,
    dataset), name, status, learning_rate, batch_size, seed, device, backend, engine, learned and the history columns.

    Pivot one sweep at a time, with `pivot` (which refuses duplicates) rather than `pivot_table` (which averages them).
    """
    import pandas as pd

    frames = []
    for run_dir in find_runs(root):
        if (record := read_record(run_dir / "run.json")) is None:
            continue
        history = load_history(run_dir)
        if history.empty:
            continue
        history.insert(0, "run_dir", str(run_dir))
        for i, (key, value) in enumerate(run_identity(run_dir, record).items(), start=1):
            history = history.drop(columns=key, errors="ignore")
            history.insert(i, key, value)
        for key in ("name", "status", "learning_rate", "batch_size", "seed", "device", "backend", "engine", "learned"):
            history[key] = record.get(key)
        frames.append(history)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --- finding sweeps and benches (for `plot`) --------------------------------------------------


def find_results(root: str | Path) -> dict[str, list[Path]]:
    """Plain runs, sweeps and benches at or below root: {"runs": [...], "sweeps": [...], "benches": [...]}.

    A sweep folder holds sweep.json, a bench folder bench.json or bench.csv; the run folders inside
    them belong to them and are not listed as plain runs. Hidden folders are skipped.
    """
    found: dict[str, list[Path]] = {"runs": [], "sweeps": [], "benches": []}
    plural = {"run": "runs", "sweep": "sweeps", "bench": "benches"}
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        if kind := layout.kind_of_files(files):
            found[plural[kind]].append(Path(folder))
            subdirs[:] = []  # what lies inside a sweep, bench or run belongs to it
    return found


def load_bench(bench_dir: str | Path):
    """bench.csv as a frame, one row per combination (`estimated` as bool); empty if not written yet."""
    import pandas as pd

    path = Path(bench_dir) / "bench.csv"
    try:
        content = read_bytes(path)
    except FileNotFoundError:
        return pd.DataFrame()
    if not content:
        return pd.DataFrame()
    frame = pd.read_csv(io.BytesIO(content))
    if "estimated" in frame:
        frame["estimated"] = frame["estimated"].astype(str).str.strip().str.lower().isin(("true", "1", "yes"))
    return frame


# --- one table of everything below a results folder (`cnnbench ls`) ------------------------------

LIST_COLUMNS = ("kind", "name", "dataset", "epochs", "status", "best_val_error", "runs", "not_learned", "started_at", "path")


def _run_row(run_dir: Path, is_live: Any = None) -> dict[str, Any]:
    """status, dataset, epochs, best error and start of one run folder (status `corrupt` for an untrusted run.json).

    A `running` run for which `is_live(run_dir)` is False (its owner is gone) is shown `interrupted`.
    """
    record, problem = inspect_record(run_dir / "run.json")
    if problem:
        return {"status": CORRUPT, "dataset": None, "epochs": None, "best_val_error": None, "started_at": None, "not_learned": 0}
    record = record or {}
    identity = run_identity(run_dir, record)
    status = record.get("status") or "pending"
    if status == "running" and is_live is not None and not is_live(run_dir):
        status = "interrupted"
    return {"status": status, "dataset": identity["dataset"], "epochs": identity["epochs"],
            "best_val_error": record.get("best_val_error"), "started_at": record.get("started_at"),
            "not_learned": int(record.get("learned") is False)}  # fmt: skip


def _group_status(statuses: list[str], overall: str | None = None) -> str:
    """`ok` when every run is, else the counts (`2 ok, 1 diverged, 1 pending`), after the folder's own status if any."""
    counts = {s: statuses.count(s) for s in dict.fromkeys(statuses)}
    text = "ok" if statuses and set(statuses) == {"ok"} else ", ".join(f"{n} {s}" for s, n in counts.items()) or "empty"
    return f"{overall}: {text}" if overall and overall != "complete" else text


_TABLE_MAX_BYTES = 10_000_000


def _table_rows(path: Path) -> list[dict[str, Any]]:
    """`ls` rows of the runs a summary.csv or bench.csv records: what committed reference results
    (docs/study, docs/bench-cpu) keep when their run folders were left out."""
    try:
        rows = list(csv.DictReader(io.StringIO(read_bytes(path, _TABLE_MAX_BYTES).decode("utf-8"), newline="")))
    except (OSError, UnsafeFileError, UnicodeDecodeError, csv.Error):  # absent, a link, pipe or device, too large, not text
        return []

    def number(text: Any) -> float | None:
        try:
            value = float(text)
        except (TypeError, ValueError):
            return None
        return value if value == value else None

    return [{"status": str(r.get("status") or "pending"), "dataset": r.get("dataset") or None,
             "best_val_error": number(r.get("best_val_error")), "started_at": None,
             "not_learned": int(str(r.get("learned")).lower() == "false")} for r in rows]  # fmt: skip


def _group_row(kind: str, folder: Path, run_dirs: list[Path], index: dict[str, Any], epochs: Any, is_live: Any = None) -> dict[str, Any]:
    runs = [_run_row(d, is_live) for d in run_dirs]
    if not any((d / "run.json").is_file() for d in run_dirs):  # run folders left out: the folder's own table says what ran
        runs = _table_rows(folder / layout.TABLE[kind]) or runs
    ok_errors = [r["best_val_error"] for r in runs if r["status"] == "ok" and r["best_val_error"] is not None]
    datasets = sorted({r["dataset"] for r in runs if r["dataset"]})
    starts = sorted(r["started_at"] for r in runs if r["started_at"])
    return {
        "kind": kind,
        "name": folder.name,
        "dataset": ",".join(datasets) or None,  # what the runs used, not what the spec asked for
        "epochs": epochs,
        "status": _group_status([r["status"] for r in runs], index.get("status") if kind == "bench" else None),
        "best_val_error": min(ok_errors) if kind == "sweep" and ok_errors else None,  # a bench measures time, not error
        "runs": len(runs),
        "not_learned": sum(r["not_learned"] for r in runs),
        "started_at": index.get("created_at") or index.get("started_at") or (starts[0] if starts else None),
        "path": str(folder),
    }


def _spec_epochs(index: dict[str, Any]) -> Any:
    spec = index.get("spec") or {}
    training = spec.get("training") if isinstance(spec.get("training"), dict) else {}
    return training.get("epochs")


def list_results(root: str | Path, is_live: Any = None) -> list[dict[str, Any]]:
    """One row per lone run, sweep and bench at or below root (LIST_COLUMNS), oldest first.

    `is_live(run_dir)`, if given, says whether a run recorded `running` still has an owner
    (folders.run_is_live): one that has none is listed `interrupted`. Nothing is written.

    A sweep's status counts its runs' statuses (planned runs without a record are `pending`); its
    best_val_error is the lowest of its ok runs; `dataset` is the data the runs actually used;
    `not_learned` counts runs recorded `learned: false` (never clearly below chance level).
    """
    found = find_results(root)
    rows = []
    for run_dir in found["runs"]:
        row = _run_row(run_dir, is_live)
        rows.append({"kind": "train", "name": run_dir.name, **row, "runs": 1, "path": str(run_dir)})
    for kind, folders in (("sweep", found["sweeps"]), ("bench", found["benches"])):
        for folder in folders:
            index = read_record(folder / layout.INDEX[kind]) or {}
            rows.append(_group_row(kind, folder, layout.member_runs(folder, kind, index), index, _spec_epochs(index), is_live))
    rows = [{key: row.get(key) for key in LIST_COLUMNS} for row in rows]
    return sorted(rows, key=lambda row: (row["started_at"] is None, str(row["started_at"] or ""), row["path"]))
