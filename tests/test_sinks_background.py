"""The sinks' writer thread: MLflow opened off the driver's path, refusals still before anything trains, a sink
failing in the thread is a warning, every run written by the end, and Ctrl-C flushes what is queued, bounded."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnbench.cli import app
from tests.conftest import sink_net

pytest.importorskip("tensorboardX")
pytest.importorskip("mlflow")

runner = CliRunner()
TINY_NET = sink_net(epochs=1)
# The CLI in a fresh process; at its exit: was MLflow (or TensorFlow) ever imported, and the exit code.
PROBE = ("import sys\nfrom cnnbench.cli import main\nsys.argv = ['cnnbench', *sys.argv[1:]]\n"
         "try:\n    main()\nexcept SystemExit as exc:\n"
         "    print(sorted({'mlflow', 'tensorflow', 'keras'} & set(sys.modules)), exc.code)\n")  # fmt: skip


def finished_runs(root: Path, count: int) -> list[Path]:
    """`count` finished run folders of a sweep, as training leaves them (run.json, spec.json, history.csv): no training."""
    sweep = root / "results" / "tiny-lr-sweep"
    (root / "results").mkdir(parents=True, exist_ok=True)
    sweep.mkdir(exist_ok=True)
    (sweep / "sweep.json").write_text(json.dumps({"parameter": "learning_rate", "values": [0.1 * (i + 1) for i in range(count)]}))
    runs = []
    for i in range(count):
        run_dir = sweep / f"lr-{0.1 * (i + 1):g}"
        run_dir.mkdir()
        rate = 0.1 * (i + 1)
        (run_dir / "spec.json").write_text(json.dumps(sink_net(epochs=1, learning_rate=rate)))
        record = {"status": "ok", "learning_rate": rate, "started_at": "2026-12-06T03:00:00+00:00",
                  "ended_at": "2026-12-06T03:00:02+00:00", "best_val_error": 0.5 - i / 100}
        (run_dir / "run.json").write_text(json.dumps(record))
        with open(run_dir / "history.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_error", "epoch_time_s"])
            writer.writerows([[e, 2.0 / e, 0.3 * e, 2.1 / e, 0.25 * e, 1 - 0.25 * e, 1.0] for e in (1, 2)])
        runs.append(run_dir)
    return runs


def written_to_mlflow(db: Path) -> set[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("cnnbench")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return {r.info.run_name for r in runs if "mlflow.parentRunId" in r.data.tags and r.data.tags.get("cnnbench.digest")}


def written_to_tensorboard(tb: Path) -> set[str]:
    return {p.parent.relative_to(tb).as_posix() for p in tb.rglob(".cnnbench-export.json") if json.loads(p.read_text())["digest"]}


def newer_mlflow_database(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.execute("INSERT INTO alembic_version VALUES ('f0f0f0f0f0f0')")
    db.close()


@pytest.mark.parametrize("case", ["file store", "missing folder", "a folder", "no database", "newer schema"])
def test_a_refused_mlflow_uri_exits_2_before_anything_trains_without_importing_mlflow(tmp_path, case):
    uri = {"file store": str(tmp_path / "mlruns"), "missing folder": f"sqlite:///{tmp_path / 'nowhere' / 'm.db'}",
           "a folder": f"sqlite:///{tmp_path / 'a-folder'}",
           "no database": f"sqlite:///{tmp_path / 'm.db'}", "newer schema": f"sqlite:///{tmp_path / 'new.db'}"}[case]  # fmt: skip
    (tmp_path / "m.db").write_text("not a database")
    (tmp_path / "a-folder").mkdir()
    newer_mlflow_database(tmp_path / "new.db")
    expected = {"file store": "MLflow refuses a plain file store", "missing folder": "no such folder for the database",
                "a folder": "not a database file",
                "no database": "file is not a database", "newer schema": "the database was made by a newer MLflow"}[case]  # fmt: skip
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(TINY_NET))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_ALLOW_FILE_STORE"}
    result = subprocess.run([sys.executable, "-c", PROBE, "sweep-lr", str(spec), "--values", "0.1", "--out", str(tmp_path / "results"),
                             "--tensorboard", str(tmp_path / "tb"), "--mlflow", uri], capture_output=True, text=True, env=env)  # fmt: skip
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --mlflow {uri}: ") and expected in line, result.stderr
    assert result.stdout.strip() == "[] 2"  # exit 2, and neither MLflow nor TensorFlow was imported
    assert not (tmp_path / "results").exists() and not (tmp_path / "tb").exists()


def test_a_valid_sqlite_store_is_opened_by_the_writer_thread_not_before_training(tmp_path, mlflow_db):
    from cnnbench.sinks import open_sinks
    from cnnbench.sinks.mlflow import check_uri

    assert check_uri(f"sqlite:///{mlflow_db}") is True  # at this MLflow's schema: nothing left that MLflow could refuse
    assert check_uri(f"sqlite:///{tmp_path / 'new.db'}") is True  # a new database: MLflow makes it
    code = ("import sys\nfrom cnnbench.sinks import open_sinks\n"
            f"sinks = open_sinks(tensorboard={str(tmp_path / 'tb')!r}, mlflow={f'sqlite:///{mlflow_db}'!r})\n"
            "print('mlflow' in sys.modules)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"  # checked, to be opened by the writer thread once a run starts (none here)
    runs = finished_runs(tmp_path, 2)
    with open_sinks(tensorboard=tmp_path / "tb", mlflow=f"sqlite:///{mlflow_db}") as sinks:
        for run_dir in runs:
            sinks.run_ended(run_dir)
    names = {f"tiny-lr-sweep/{r.name}" for r in runs}
    assert written_to_mlflow(mlflow_db) == names and written_to_tensorboard(tmp_path / "tb") == names
    assert sinks.counts == {"tensorboard": {"written": 2}, "mlflow": {"written": 2}}


def test_a_sink_failing_in_the_writer_thread_is_a_warning_the_other_sink_and_the_runs_unaffected(tmp_path, mlflow_db):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{mlflow_db}")
    client.delete_experiment(client.create_experiment("cnnbench"))  # MLflow refuses new runs in a deleted experiment
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(TINY_NET))
    result = runner.invoke(app, ["sweep-lr", str(spec), "--values", "0.1", "--out", str(tmp_path / "results"), "--device", "cpu",
                                 "--tensorboard", str(tmp_path / "tb"), "--mlflow", f"sqlite:///{mlflow_db}"])  # fmt: skip
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: mlflow:")]
    assert len(warnings) == 1 and "fill the gap later with `cnnbench export mlflow`" in warnings[0], result.stderr
    assert "warning: tensorboard" not in result.stderr
    (sweep_dir,) = (tmp_path / "results").iterdir()
    runs = sorted(p for p in sweep_dir.iterdir() if (p / "run.json").is_file())
    assert [json.loads((r / "run.json").read_text())["status"] for r in runs] == ["ok"]
    assert written_to_tensorboard(tmp_path / "tb") == {f"{sweep_dir.name}/{r.name}" for r in runs}


def test_ctrl_c_writes_what_is_queued_before_the_command_ends(tmp_path, mlflow_db, monkeypatch):
    import cnnbench.sinks
    from cnnbench.sinks import open_sinks

    monkeypatch.setattr(cnnbench.sinks, "INTERRUPT_WAIT_S", 300.0)  # the bound is the next test's; here, the flush
    runs = finished_runs(tmp_path, 3)
    with pytest.raises(KeyboardInterrupt), open_sinks(tensorboard=tmp_path / "tb", mlflow=f"sqlite:///{mlflow_db}") as sinks:
        for run_dir in runs:
            sinks.run_ended(run_dir)
        raise KeyboardInterrupt  # Ctrl-C right after the last run ended: its records are still queued
    names = {f"tiny-lr-sweep/{r.name}" for r in runs}
    assert written_to_mlflow(mlflow_db) == names and written_to_tensorboard(tmp_path / "tb") == names


class Stuck:
    """A sink whose writes never return (a tracking server that hangs): what the bounded wait is for."""

    name = "stuck"

    def __init__(self) -> None:
        self.release = threading.Event()

    def on_run_end(self, run) -> str:
        self.release.wait()
        return "written"

    def close(self) -> None:
        pass


def test_after_ctrl_c_a_hung_sink_costs_a_bounded_wait_and_one_warning(tmp_path, monkeypatch):
    import cnnbench.sinks
    from cnnbench.sinks import Sinks

    monkeypatch.setattr(cnnbench.sinks, "INTERRUPT_WAIT_S", 0.5)
    stuck = Stuck()
    runs = finished_runs(tmp_path, 2)
    try:
        with pytest.warns(UserWarning) as caught, pytest.raises(KeyboardInterrupt), Sinks([stuck], background=True) as sinks:
            for run_dir in runs:
                sinks.run_ended(run_dir)
            raise KeyboardInterrupt
    finally:
        stuck.release.set()  # let the thread go
    (warning,) = [str(w.message) for w in caught]
    assert warning.startswith("stuck: not written in time when the command ended: 2 finished runs may be missing or incomplete")
    assert "fill the gap later with `cnnbench export stuck`" in warning
