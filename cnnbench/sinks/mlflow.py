"""The MLflow sink: one parent run per sweep or bench, a nested child run per cnnbench run, from the driver only.

A child holds the resolved spec as parameters (by path: `training.learning_rate`, `layers.0.filters`), the
history as metrics (step = epoch), tags `status`, `learned`, `dataset`, `device`, `backend`, `engine`, and
run.json, spec.json and history.csv as artifacts. Runs are found again by the tag `cnnbench.run` (the run's
name) and skipped when their tag `cnnbench.digest` still matches; a changed run replaces its old MLflow run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from cnnbench.sinks import RunFolder, SinkError, flatten_spec, iso_seconds

EXPERIMENT = "cnnbench"  # unless MLFLOW_EXPERIMENT_NAME says otherwise
RUN_TAG, DIGEST_TAG, GROUP_TAG, KIND_TAG = "cnnbench.run", "cnnbench.digest", "cnnbench.group", "cnnbench.kind"
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "val_error", "epoch_time_s", "train_time_s", "val_time_s",
           "samples_per_s", "learning_rate")  # fmt: skip
FINAL_METRICS = ("best_val_error", "final_val_error", "test_error", "total_time_s")
ARTIFACTS = ("run.json", "spec.json", "history.csv")
GROUP_ARTIFACTS = ("sweep.json", "summary.csv", "runs.csv", "points.csv", "bench.json", "bench.csv", "report.html")
STATUS = {"ok": "FINISHED", "diverged": "FINISHED", "failed": "FAILED", "oom": "FAILED", "interrupted": "KILLED"}
DEFAULT_URI = "sqlite:///mlflow.db"  # MLflow 3's default store, unless ./mlruns holds a file store
FILE_STORE_HINT = ("MLflow refuses a plain file store: use a database, e.g. {option} sqlite:///mlruns.db, "
                   "or set MLFLOW_ALLOW_FILE_STORE=true")  # fmt: skip


def _millis(iso: str | None) -> int | None:
    seconds = iso_seconds(iso)
    return int(seconds * 1000) if seconds is not None else None


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def _reason(exc: BaseException, option: str) -> str:
    text = " ".join(str(exc).split())
    if "MLFLOW_ALLOW_FILE_STORE" in text or "filesystem tracking backend" in text:
        return FILE_STORE_HINT.format(option=option)
    return text[:300] or type(exc).__name__


def _refuses_file_store() -> bool:
    """MLflow 3.13 and later refuse a file store unless MLFLOW_ALLOW_FILE_STORE is true (mlflow/mlflow#23634)."""
    from importlib import metadata

    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1"):
        return False
    for dist in ("mlflow", "mlflow-skinny"):
        try:
            major, minor = (int(part) for part in metadata.version(dist).split(".")[:2])
        except (metadata.PackageNotFoundError, ValueError):
            continue
        return (major, minor) >= (3, 13)
    return False


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///FILE` URI (relative or, with four slashes, absolute); None for others."""
    if not uri.startswith("sqlite:///") or uri == "sqlite:///:memory:" or "?" in uri:
        return None
    return Path(uri[len("sqlite:///") :]).absolute()


def _migrations() -> tuple[str, set[str]] | None:
    """(the schema revision this MLflow writes, every revision it knows), read from its migration scripts without
    importing MLflow; None when they cannot be read (a layout this code does not know)."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("mlflow")  # the top-level package's location only: nothing of MLflow runs
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "store" / "db_migrations" / "versions"
    revisions, downs = set(), set()
    for script in folder.glob("*.py"):
        text = script.read_text(errors="replace")
        if found := re.search(r"^revision\s*=\s*[\"'](\w+)[\"']", text, re.M):
            revisions.add(found.group(1))
        if found := re.search(r"^down_revision\s*=(.*)$", text, re.M):
            downs.update(re.findall(r"[\"'](\w+)[\"']", found.group(1)))
    heads = revisions - downs
    return (next(iter(heads)), revisions) if len(heads) == 1 else None


def _database_state(path: Path, shown: str) -> str | None:
    """What a SQLite file holds for MLflow, read with the standard library: "new" (no file, empty, no MLflow
    schema yet), "current" (this MLflow's schema), None when only MLflow can tell (an older schema it may
    upgrade, a database it cannot read now). SinkError for a file that is no database or a schema from a
    newer MLflow, both of which MLflow refuses."""
    import sqlite3

    if path.exists() and not path.is_file():
        raise SinkError(f"{shown}: not a database file: {path}")
    if not path.exists() or path.stat().st_size == 0:
        return "new"
    if not os.access(path, os.R_OK | os.W_OK):
        raise SinkError(f"{shown}: the database cannot be written: {path}")
    try:
        with open(path, "rb") as f:
            header = f.read(16)
    except OSError:
        return None  # MLflow's own open says what it is
    if header != b"SQLite format 3\x00":
        raise SinkError(f"{shown}: file is not a database: {path}")
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            versions = [row[0] for row in db.execute("SELECT version_num FROM alembic_version")] if "alembic_version" in tables else []
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return None  # locked, unreadable: MLflow's own open says what it is
    if not versions:
        return "new"
    known = _migrations()
    if known is None or len(versions) != 1:
        return None
    head, revisions = known
    if versions[0] == head:
        return "current"
    if versions[0] not in revisions:
        raise SinkError(f"{shown}: the database was made by a newer MLflow (schema {versions[0]}, unknown to this one): "
                        f"upgrade MLflow, or use another database")  # fmt: skip
    return None


def check_uri(uri: str | None, option: str = "--mlflow") -> bool:
    """What can be said of a tracking URI without importing MLflow (seconds): a file store MLflow would refuse,
    a SQLite database in a folder that does not exist or cannot be written, a file that is no database or
    holds a newer MLflow's schema, a server that does not answer. SinkError, one line.

    True when that is every way MLflow could refuse the store when it opens it (a SQLite file, new or at this
    MLflow's schema): the store can then be opened later, away from the driver's path (`MlflowSink(deferred=True)`).
    """
    import urllib.error
    import urllib.parse
    import urllib.request

    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    if not uri:
        if _has_file_store_data(Path("mlruns")):
            return False  # MLflow's default is then ./mlruns, a file store: MLflow says what it makes of it
        uri = DEFAULT_URI
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme in ("", "file"):
        if _refuses_file_store():
            raise SinkError(f"{option} {uri}: {FILE_STORE_HINT.format(option=option)}")
    elif scheme == "sqlite" and uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        folder = Path(uri[len("sqlite:///") :].split("?")[0]).absolute().parent
        if not folder.is_dir():
            raise SinkError(f"{option} {uri}: no such folder for the database: {folder}")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise SinkError(f"{option} {uri}: the database's folder cannot be written: {folder}")
        path = _sqlite_path(uri)
        return path is not None and _database_state(path, f"{option} {uri}") is not None
    elif scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10):
                pass
        except urllib.error.HTTPError:
            pass  # it answered
        except (OSError, ValueError) as exc:
            reason = " ".join(str(getattr(exc, "reason", exc)).split())[:200]
            raise SinkError(f"{option} {uri}: the tracking server does not answer ({reason})") from None
    return False


def _has_file_store_data(folder: Path) -> bool:
    """Whether `folder` holds a file store's experiments (MLflow's default URI is then that folder, not DEFAULT_URI)."""
    try:
        return any(p.is_dir() and p.name.isdigit() and (p / "meta.yaml").exists() for p in folder.iterdir())
    except OSError:
        return False


def _artifact_location(uri: str | None) -> str | None:
    """For a SQLite store, artifacts beside the database (MLflow's default is ./mlruns in the working folder)."""
    if uri and uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).absolute().parent / "mlartifacts").as_uri()
    return None


class MlflowSink:
    """Writes finished runs to an MLflow tracking server or database; checks the URI when made (SinkError)."""

    name = "mlflow"

    def __init__(self, uri: str | None = None, option: str = "--mlflow", deferred: bool = False) -> None:
        """Check the URI now (SinkError); open the store now too, unless `deferred` and the check covered every
        way MLflow could refuse it: then `open()` (MLflow's import, seconds) is left to the caller's writer thread."""
        # A server that is gone must cost a warning, not MLflow's default 7 retries with back-off (minutes per call).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        # MLflow 3 sends usage telemetry by default; like Ray's usage statistics, off unless the user turned it on.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        checked = check_uri(uri, option)  # named plainly, before MLflow's import (seconds) and its own messages
        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        self.option = option
        self.client: Any = None
        self.opened: dict[str, Path] = {}  # parent run id -> its group folder, terminated at close()
        if not (deferred and checked):
            self.open()

    def open(self) -> None:
        """Import MLflow and open the store and the experiment (once); SinkError, one line, when MLflow refuses it."""
        if self.client is not None:
            return
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # schema migrations log INFO lines on a new database (mlflow sets its level on import)
            logging.getLogger(name).setLevel(logging.WARNING)
        shown = self.uri or "(MLflow's default)"
        try:
            client = MlflowClient(tracking_uri=self.uri)
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                self.experiment_id = client.create_experiment(name, artifact_location=_artifact_location(self.uri))
            else:
                self.experiment_id = experiment.experiment_id
            self.client = client
            self.runs = self._find(RUN_TAG)  # name -> run, for idempotent writing
            self.groups = self._find(GROUP_TAG)
        except Exception as exc:
            self.client = None
            raise SinkError(f"{self.option} {shown}: {_reason(exc, self.option)}") from None

    def _find(self, tag: str) -> dict[str, Any]:
        found, token = {}, None
        while True:
            page = self.client.search_runs([self.experiment_id], f"tags.`{tag}` != ''", max_results=1000, page_token=token)
            for run in page:
                found.setdefault(run.data.tags[tag], run)
            token = page.token
            if not token:
                return found

    def on_run_start(self, run_dir: Path, record: dict[str, Any]) -> None:
        pass

    def on_epoch(self, run_dir: Path, row: dict[str, Any]) -> None:
        pass

    def _parent(self, run: RunFolder) -> str | None:
        if run.group is None:
            return None
        key = run.group.name
        parent = self.groups.get(key)
        if parent is None:
            parent = self.client.create_run(self.experiment_id, run_name=key, tags={GROUP_TAG: key, KIND_TAG: run.group_kind or ""})
            self.groups[key] = parent
        self.opened[parent.info.run_id] = run.group
        return parent.info.run_id

    def on_run_end(self, run: RunFolder) -> str:
        from mlflow.entities import Metric, Param

        self.open()
        old = self.runs.get(run.name)
        if old is not None and old.data.tags.get(DIGEST_TAG) == run.digest:
            return "unchanged"
        parent = self._parent(run)
        record = run.record
        tags = {RUN_TAG: run.name, "status": run.status, "learned": str(record.get("learned")),
                "dataset": str((record.get("data") or {}).get("name")), "device": str(record.get("device")),
                "backend": str(record.get("backend")), "engine": str(record.get("engine")),
                "run_dir": str(run.run_dir.absolute())}  # fmt: skip
        if parent:
            tags["mlflow.parentRunId"] = parent
        if old is not None:  # a changed run (resumed, redone): replace it, so MLflow never shows it twice
            self.client.delete_run(old.info.run_id)
        child = self.client.create_run(self.experiment_id, start_time=_millis(record.get("started_at")), tags=tags, run_name=run.name)
        run_id = child.info.run_id
        params = [Param(k[:250], str(v)[:6000]) for k, v in flatten_spec(run.spec).items()]
        clock = _millis(record.get("started_at")) or 0
        metrics = []
        for row in run.history:
            clock += int((row.get("epoch_time_s") or 0.0) * 1000)
            metrics.extend(Metric(k, row[k], clock, int(row["epoch"])) for k in METRICS if k in row)
        last = int(run.history[-1]["epoch"]) if run.history else 0
        for key in FINAL_METRICS:
            value = record.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics.append(Metric(key, float(value), clock, last))
        for chunk in _chunks(params, 100):
            self.client.log_batch(run_id, params=chunk)
        for chunk in _chunks(metrics, 1000):
            self.client.log_batch(run_id, metrics=chunk)
        for name in ARTIFACTS:
            if (run.run_dir / name).is_file():
                self.client.log_artifact(run_id, str(run.run_dir / name))
        self.client.set_terminated(run_id, STATUS.get(run.status, "FINISHED"), end_time=_millis(record.get("ended_at")))
        self.client.set_tag(run_id, DIGEST_TAG, run.digest)  # last: a run cut off while written is rewritten by the next export
        self.runs[run.name] = self.client.get_run(run_id)
        return "updated" if old is not None else "written"

    def close(self) -> None:
        if self.client is None:
            return
        for run_id, folder in self.opened.items():  # the sweep's or bench's own files, as they are now
            for name in GROUP_ARTIFACTS:
                if (folder / name).is_file():
                    self.client.log_artifact(run_id, str(folder / name))
            self.client.set_terminated(run_id, "FINISHED")
        self.opened = {}
