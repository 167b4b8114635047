"""Results on disk: atomic writes, run folders (spec.json, run.json, history.csv) and their loaders.

A run folder is finished when its run.json has a final status; loaders return tidy pandas frames.

>>> runs = load_runs("results/")            # one row per run folder found below results/
>>> curves = load_histories("results/")     # one row per (run, epoch)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import socket
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from cnnbench.errors import OutputError

STATUSES = ("ok", "diverged", "failed", "interrupted", "oom", "running")
FINISHED = ("ok", "diverged", "oom")  # statuses a resumed sweep or bench keeps; others are redone
HISTORY_COLUMNS = (
    "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_error",
    "epoch_time_s", "train_time_s", "val_time_s", "samples_per_s", "learning_rate",
)  # fmt: skip


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temp file in the same folder + rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are meant to be shared
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno and not exc.filename:  # a full disk: say which file could not be written
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def atomic_write_bytes(path: str | Path, write: Any) -> None:
    """Like atomic_write_text, for binary content: `write(file)` fills the temp file (np.savez, ...)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
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


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null (a diverged run's loss is often one)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(_finite(json.loads(json.dumps(data, default=_json_default))), indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_csv(path: str | Path, rows: list[dict[str, Any]], columns: list[str] | tuple[str, ...] | None = None) -> None:
    """Write rows atomically; columns default to the union of the rows' keys in first-seen order."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


_NAME_MAX = 255  # bytes in one path component on Linux, macOS and Windows file systems


def _shown(path: Path, limit: int = 200) -> str:
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit // 2]}…{text[-limit // 2 :]} ({len(text)} characters)"


def check_out_dir(out: str | Path, option: str = "--out") -> Path:
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


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def timestamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def new_run_dir(out: str | Path, name: str) -> Path:
    """A path `out/<name>-<YYYYmmdd-HHMMSS>` (suffixed if taken) that does not exist yet.

    The folder itself is made by `train_run` once the spec and data have passed every check.
    """
    base = Path(out) / f"{name}-{timestamp()}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def read_record(path: str | Path) -> dict[str, Any] | None:
    """A JSON object file (run.json, sweep.json, ...), or None when it is missing, torn or not an object."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_status(run_dir: str | Path) -> str | None:
    """The status in run_dir/run.json, or None when there is no readable record."""
    return (read_record(Path(run_dir) / "run.json") or {}).get("status")


def is_finished(run_dir: str | Path) -> bool:
    return run_status(run_dir) in FINISHED


def package_version(*names: str) -> str | None:
    """The installed version of the first of `names` that is installed (None if none is)."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def environment(threads: int | None = None) -> dict[str, Any]:
    """Versions and machine facts for a run record (reads no framework state but the backend name)."""
    from cnnbench import __version__
    from cnnbench.device import cpu_cores, cpu_model

    backend = sys.modules["keras"].backend.backend() if "keras" in sys.modules else os.environ.get("KERAS_BACKEND", "tensorflow")
    return {
        "cnnbench": __version__,
        "python": platform.python_version(),
        "keras": package_version("keras"),
        "tensorflow": package_version("tensorflow", "tensorflow-cpu"),
        "jax": package_version("jax") if backend == "jax" else None,
        "torch": package_version("torch") if backend == "torch" else None,
        "numpy": package_version("numpy"),
        "backend": backend,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_cores": cpu_cores(),
        "threads": threads,
    }


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


def load_runs(root: str | Path):
    """One row per run found below root: run.json flattened (`timing.epoch_s_median`, ...) + `run_dir`."""
    import pandas as pd

    rows = []
    for run_dir in find_runs(root):
        if (record := read_record(run_dir / "run.json")) is None:
            continue
        rows.append({"run_dir": str(run_dir), **_flatten(record)})
    return pd.DataFrame(rows)


def load_history(run_dir: str | Path):
    """The per-epoch table of one run (empty frame with the standard columns if none yet)."""
    import pandas as pd

    path = Path(run_dir) / "history.csv"
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    return pd.read_csv(path)


def load_histories(root: str | Path):
    """Tidy per-epoch table of every run below root, tagged with run_dir, name, learning_rate, status."""
    import pandas as pd

    frames = []
    for run_dir in find_runs(root):
        if (record := read_record(run_dir / "run.json")) is None:
            continue
        history = load_history(run_dir)
        if history.empty:
            continue
        history.insert(0, "run_dir", str(run_dir))
        for key in ("name", "status", "learning_rate", "batch_size"):
            history[key] = record.get(key)
        history["dataset"] = (record.get("data") or {}).get("name")
        history["device"] = record.get("device")
        frames.append(history)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --- finding sweeps and benches (for `plot`) --------------------------------------------------


def find_results(root: str | Path) -> dict[str, list[Path]]:
    """Plain runs, sweeps and benches at or below root: {"runs": [...], "sweeps": [...], "benches": [...]}.

    A sweep folder holds sweep.json, a bench folder bench.json or bench.csv; the run folders inside
    them belong to them and are not listed as plain runs. Hidden folders are skipped.
    """
    found: dict[str, list[Path]] = {"runs": [], "sweeps": [], "benches": []}
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        names = set(files)
        if "sweep.json" in names:
            kind = "sweeps"
        elif names & {"bench.json", "bench.csv"}:
            kind = "benches"
        else:
            kind = "runs" if "run.json" in names else None
        if kind:
            found[kind].append(Path(folder))
            subdirs[:] = []  # what lies inside a sweep, bench or run belongs to it
    return found


def load_bench(bench_dir: str | Path):
    """bench.csv as a frame, one row per combination (`estimated` as bool); empty if not written yet."""
    import pandas as pd

    path = Path(bench_dir) / "bench.csv"
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    frame = pd.read_csv(path)
    if "estimated" in frame:
        frame["estimated"] = frame["estimated"].astype(str).str.strip().str.lower().isin(("true", "1", "yes"))
    return frame
