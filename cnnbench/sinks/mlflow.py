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


def check_uri(uri: str | None, option: str = "--mlflow") -> None:
    """What can be said of a tracking URI without importing MLflow (seconds): a file store MLflow would refuse,
    a SQLite database in a folder that does not exist, a server that does not answer. SinkError, one line."""
    import urllib.error
    import urllib.parse
    import urllib.request

    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    if not uri:
        return
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme in ("", "file"):
        if _refuses_file_store():
            raise SinkError(f"{option} {uri}: {FILE_STORE_HINT.format(option=option)}")
    elif scheme == "sqlite" and uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        folder = Path(uri[len("sqlite:///") :]).absolute().parent
        if not folder.is_dir():
            raise SinkError(f"{option} {uri}: no such folder for the database: {folder}")
    elif scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10):
                pass
        except urllib.error.HTTPError:
            pass  # it answered
        except (OSError, ValueError) as exc:
            reason = " ".join(str(getattr(exc, "reason", exc)).split())[:200]
            raise SinkError(f"{option} {uri}: the tracking server does not answer ({reason})") from None


def _artifact_location(uri: str | None) -> str | None:
    """For a SQLite store, artifacts beside the database (MLflow's default is ./mlruns in the working folder)."""
    if uri and uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).absolute().parent / "mlartifacts").as_uri()
    return None


class MlflowSink:
    """Writes finished runs to an MLflow tracking server or database; checks the URI when made (SinkError)."""

    name = "mlflow"

    def __init__(self, uri: str | None = None, option: str = "--mlflow") -> None:
        # A server that is gone must cost a warning, not MLflow's default 7 retries with back-off (minutes per call).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        # MLflow 3 sends usage telemetry by default; like Ray's usage statistics, off unless the user turned it on.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        check_uri(uri, option)  # the plainest cases, named plainly, before MLflow's import (seconds) and its own messages
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # schema migrations log INFO lines on a new database (mlflow sets its level on import)
            logging.getLogger(name).setLevel(logging.WARNING)

        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        shown = self.uri or "(MLflow's default)"
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                self.experiment_id = self.client.create_experiment(name, artifact_location=_artifact_location(self.uri))
            else:
                self.experiment_id = experiment.experiment_id
            self.runs = self._find(RUN_TAG)  # name -> run, for idempotent writing
            self.groups = self._find(GROUP_TAG)
        except Exception as exc:
            raise SinkError(f"{option} {shown}: {_reason(exc, option)}") from None
        self.opened: dict[str, Path] = {}  # parent run id -> its group folder, terminated at close()

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
        for run_id, folder in self.opened.items():  # the sweep's or bench's own files, as they are now
            for name in GROUP_ARTIFACTS:
                if (folder / name).is_file():
                    self.client.log_artifact(run_id, str(folder / name))
            self.client.set_terminated(run_id, "FINISHED")
        self.opened = {}
