"""Runs that cannot trample each other: run folders made atomically and held, sweeps planned under their lock,
temporary files of killed writers removed, SIGTERM and SIGHUP never lost, and `ls` telling running from stopped.

Real processes where the fault is one of processes (concurrent commands, kill -9, signals).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from processes import descendants, finish, start_cli, stop, survivors, training, wait_for
from typer.testing import CliRunner

from cnnbench.callbacks import CHECKPOINT
from cnnbench.cli import app
from cnnbench.lock import LOCK_NAME, folder_lock
from cnnbench.results import new_run_dir, read_json, write_json
from cnnbench.sweep import SweepOptions, plan_sweep, run_sweep
from cnnbench.train import train_run

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _interrupted_run(spec, run_dir: Path, at_epoch: int = 1) -> None:
    """A run stopped by Ctrl-C after `at_epoch` epochs: its checkpoint and history are on disk."""

    def stop_at(row):
        if row["epoch"] == at_epoch:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(spec, run_dir, on_epoch=stop_at)


# --- 1. a run folder is made atomically and held before anything is written in it ------------------


def test_two_trains_started_together_get_a_folder_each_and_touch_no_other(tiny_spec, write_spec, tmp_path):
    """Every `<spec>-<timestamp>` name of the next minutes is already taken by another run's folder, so both
    commands collide with it, and with each other on `-2`: each gets a folder of its own, both `ok`."""
    from datetime import datetime, timedelta

    spec = write_spec(tiny_spec.to_dict())
    out = tmp_path / "results"
    now = datetime.now()
    theirs = [out / f"{tiny_spec.name}-{(now + timedelta(seconds=s)).strftime('%Y%m%d-%H%M%S')}" for s in range(-2, 600)]
    for folder in theirs:
        folder.mkdir(parents=True)
        (folder / "theirs.txt").write_text("another command's run")
    args = ["train", str(spec), "--out", str(out), "--threads", "1"]
    first, second = start_cli(*args, env=ENV), start_cli(*args, env=ENV)
    try:
        outputs = [first.communicate(timeout=300), second.communicate(timeout=300)]
    finally:
        finish(first)
        finish(second)
    assert (first.returncode, second.returncode) == (0, 0), outputs
    ours = sorted(p.parent for p in out.glob("*/run.json"))
    assert len(ours) == 2 and all(p.name.endswith(("-2", "-3")) for p in ours), ours
    for run_dir in ours:
        record = read_json(run_dir / "run.json")
        assert (record["status"], record["epochs_run"]) == ("ok", 2)
        assert sorted(p.name for p in run_dir.iterdir()) == ["history.csv", "model.keras", "run.json", "spec.json"]
        assert len((run_dir / "history.csv").read_text().splitlines()) == 3  # its own two epochs, nobody else's
    named = [line.rsplit(" -> ", 1)[-1] for _, stderr in outputs for line in stderr.splitlines() if line.startswith("training ")]
    assert sorted(named) == [str(p) for p in ours]  # each command said which folder it trained in
    assert all(sorted(p.name for p in folder.iterdir()) == ["theirs.txt"] for folder in theirs)


def test_a_new_run_folder_is_never_shared(tmp_path):
    made = [new_run_dir(tmp_path, "net") for _ in range(3)]  # the same second, most likely: -2 and -3 then
    assert len(set(made)) == 3 and all(p.is_dir() and not any(p.iterdir()) for p in made)


def test_bad_data_found_after_the_folder_was_made_leaves_nothing(tmp_path):
    """The folder is held from the moment it exists; when the data turn out too small, it goes again with the folders made for it."""
    import numpy as np

    path = tmp_path / "mnist.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, (40, 28, 28), dtype="uint8"), y_train=np.arange(40) % 10,
             x_test=rng.integers(0, 255, (10, 28, 28), dtype="uint8"), y_test=np.arange(10))  # fmt: skip
    result = runner.invoke(app, ["train", "--data", str(path), "--out", str(tmp_path / "a" / "b")])
    assert result.exit_code == 2 and result.stderr.count("error:") == 1, result.output
    assert "asked for 50000 + 10000 + 10000 samples, but it has 50" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist.npz"]


def test_resume_refuses_a_checkpoint_or_spec_that_is_not_the_runs(tiny_spec, tmp_path):
    spec = tiny_spec.with_overrides(epochs=3)
    mine, other = tmp_path / "mine", tmp_path / "other"
    _interrupted_run(spec, mine)
    _interrupted_run(spec.with_overrides(seed=7, learning_rate=0.05), other)  # the same model: its weights would load silently
    shutil.copy(other / CHECKPOINT, mine / CHECKPOINT)
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    copied = runner.invoke(app, ["train", "--resume", str(mine)])
    assert copied.exit_code == 2 and copied.stderr.count("\n") == 1, copied.output
    assert copied.stderr.startswith(f"error: --resume {mine}: {CHECKPOINT} belongs to another spec or data than this run's (checkpoint ")
    assert copied.stderr.rstrip().endswith(f"delete {CHECKPOINT} to start the run again")
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before  # nothing written, nothing lost

    doc = read_json(other / "spec.json")
    doc["training"]["learning_rate"] = 0.3  # edited after the run started
    write_json(other / "spec.json", doc)
    edited = runner.invoke(app, ["train", "--resume", str(other)])
    assert edited.exit_code == 2 and edited.stderr.count("\n") == 1, edited.output
    assert edited.stderr.strip() == (f"error: --resume {other}: its spec.json is not the spec this run was started with "
                                     "(run.json vs spec.json: learning_rate 0.05 vs 0.3); start a new run instead")  # fmt: skip


# --- 2. a sweep is planned under its lock ------------------------------------------------------------


def test_runs_finished_between_planning_and_the_lock_are_kept_not_retrained(tiny_spec, tmp_path):
    plan = plan_sweep(tiny_spec, "0.01,0.02", tmp_path)  # read before the lock: both runs to train
    assert [run.status for run in plan.runs] == [None, None] and len(plan.to_train) == 2
    for run in plan.runs:  # another sweep finishes them meanwhile
        write_json(run.run_dir / "run.json", {"name": tiny_spec.name, "status": "ok", "learning_rate": run.learning_rate,
                                              "best_val_error": 0.2, "final_val_error": 0.2, "best_epoch": 2, "epochs_run": 2})  # fmt: skip
    finished = {run.run_dir: (run.run_dir / "run.json").read_bytes() for run in plan.runs}
    events = []
    result = run_sweep(plan, SweepOptions(threads=1), on_event=events.append)
    assert [(e.kind, e.run.label) for e in events] == [("skip", "0.01"), ("skip", "0.02")]  # nothing trained again
    assert {d: (d / "run.json").read_bytes() for d in finished} == finished
    assert [row["status"] for row in result.rows] == ["ok", "ok"]


def test_a_sweep_started_while_another_holds_the_folder_is_refused_before_planning_anything(tiny_spec, write_spec, tmp_path):
    spec = write_spec(tiny_spec.to_dict())
    plan = plan_sweep(tiny_spec, "0.01", tmp_path)
    with folder_lock(plan.sweep_dir, "sweep"):
        result = runner.invoke(app, ["sweep-lr", str(spec), "--values", "0.01", "--out", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.count("error:") == 1
    assert f"error: {plan.sweep_dir} is in use by cnnbench pid {os.getpid()} (" in result.stderr
    assert sorted(p.name for p in plan.sweep_dir.iterdir()) == []  # nothing written, nothing set aside


# --- 3. temporary files of killed writers go when the folder is next held ------------------------------


def _kill_9_while_writing(path: Path) -> None:
    """A real process killed (SIGKILL) in the middle of cnnbench's atomic write of `path`: its temp file stays."""
    code = textwrap.dedent(f"""
        import os, signal
        from cnnbench.results import atomic_write_bytes
        def write(f):
            f.write(b"x" * 100_000)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        atomic_write_bytes({str(path)!r}, write)
    """)
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_leftovers_of_kill_9_are_removed_when_the_run_is_resumed_and_nothing_else(tiny_spec, tmp_path):
    run_dir = tmp_path / "run"
    _interrupted_run(tiny_spec, run_dir)
    _kill_9_while_writing(run_dir / CHECKPOINT)
    _kill_9_while_writing(run_dir / "history.csv")
    (leftover_checkpoint,) = run_dir.glob(f".{CHECKPOINT}.*.tmp")
    assert leftover_checkpoint.stat().st_size == 100_000 and len(list(run_dir.glob(".history.csv.*.tmp"))) == 1
    keep = {"notes.tmp": "mine", ".notes.tmp": "mine too", f"{CHECKPOINT}.abcdefgh.tmp": "not hidden: not cnnbench's"}
    for name, text in keep.items():
        (run_dir / name).write_text(text)
    # (a link named like one is refused with the folder: tests/test_hostile_results.py)
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert read_json(run_dir / "run.json")["status"] == "ok"
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        [*keep, "history.csv", "model.keras", "run.json", "spec.json"]
    )
    assert all((run_dir / name).read_text() == text for name, text in keep.items())


def test_a_sweep_clears_its_runs_leftovers_but_not_a_run_another_process_holds(tiny_spec, write_spec, tmp_path):
    spec = write_spec(tiny_spec.to_dict())
    plan = plan_sweep(tiny_spec, "0.01,0.02", tmp_path)
    free, held = (run.run_dir for run in plan.runs)
    for run in plan.runs:
        write_json(run.run_dir / "run.json", {"name": tiny_spec.name, "status": "ok", "learning_rate": run.learning_rate})
    _kill_9_while_writing(free / CHECKPOINT)
    _kill_9_while_writing(plan.sweep_dir / "summary.csv")
    with folder_lock(held, "run"):  # `train --resume` of that run, writing its checkpoint right now
        _kill_9_while_writing(held / CHECKPOINT)
        result = runner.invoke(app, ["sweep-lr", str(spec), "--values", "0.01,0.02", "--out", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert len(list(held.glob(f".{CHECKPOINT}.*.tmp"))) == 1  # not the sweep's to remove
    assert [p.name for p in free.iterdir()] == ["run.json"]
    assert not list(plan.sweep_dir.glob(".summary.csv.*.tmp"))


# --- 4. SIGTERM and SIGHUP are never lost; `ls` tells running from stopped ------------------------------


@pytest.fixture
def long_spec(tiny_spec, write_spec):
    """The tiny course net for 300 epochs: still training whenever a test strikes."""
    return write_spec(tiny_spec.with_overrides(epochs=300).to_dict(), "long.json")


def test_a_sigterm_swallowed_by_a_finaliser_still_stops_the_sweep_at_the_epochs_end(tiny_spec, write_spec, tmp_path):
    """The handler's exception is raised inside an object's __del__, where Python prints and drops it: the
    sweep still stops at that epoch's end, records it and exits 143 (it used to run on and exit 0)."""
    spec = write_spec(tiny_spec.with_overrides(epochs=5).to_dict())
    out = tmp_path / "results"
    code = textwrap.dedent(f"""
        import os, signal, sys, time
        from cnnbench import callbacks
        original = callbacks.EpochNotifier.on_epoch_end

        class Finaliser:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # the handler runs in here: what it raises is swallowed

        def on_epoch_end(self, epoch, logs=None):
            original(self, epoch, logs)
            if epoch == 0:
                Finaliser()  # dropped at once

        callbacks.EpochNotifier.on_epoch_end = on_epoch_end
        sys.argv = ["cnnbench", "sweep-lr", {str(spec)!r}, "--values", "0.01,0.02", "--out", {str(out)!r}, "--threads", "1"]
        from cnnbench.cli import main
        main()
    """)
    done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=300)
    assert "Exception ignored" in done.stderr  # Python did swallow the raise
    assert done.returncode == 143, done.stderr[-2000:]
    assert "terminated (SIGTERM): finished runs are kept" in done.stderr
    (sweep_dir,) = out.iterdir()
    with open(sweep_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["status"], r["epochs_run"]) for r in rows] == [("interrupted", "1"), ("pending", "")]
    assert read_json(sweep_dir / "lr-0.01" / "run.json")["error"] == "interrupted by SIGTERM"


def test_sighup_stops_train_like_sigterm_exit_129(long_spec, tmp_path):
    out = tmp_path / "results"
    process = start_cli("train", str(long_spec), "--out", str(out), "--threads", "1", env=ENV)
    try:
        wait_for(training(out, "*/history.csv"), process)
        family = descendants(process)
        _, stderr = stop(process, signal.SIGHUP, group=True)  # a closed terminal hangs up its whole process group
    finally:
        finish(process)
    assert process.returncode == 129, stderr
    (run_dir,) = out.iterdir()
    assert f"terminated (SIGHUP): finished epochs are kept in {run_dir}" in stderr and "Traceback" not in stderr
    record = read_json(run_dir / "run.json")
    assert (record["status"], record["error"]) == ("interrupted", "interrupted by SIGHUP")
    assert not (run_dir / LOCK_NAME).exists() and survivors(family, within_s=5) == []


def test_sighup_stops_a_parallel_sweep_and_its_workers_exit_129(long_spec, tmp_path):
    out = tmp_path / "results"
    process = start_cli("sweep-lr", str(long_spec), "--values", "0.01,0.02,0.03", "--parallel", "2", "--out", str(out), env=ENV)
    try:
        wait_for(training(out, "*/lr-*/history.csv", 2), process)
        family = descendants(process)
        _, stderr = stop(process, signal.SIGHUP, group=True)
    finally:
        finish(process)
    assert process.returncode == 129, stderr
    assert "terminated (SIGHUP): finished runs are kept" in stderr and "Traceback" not in stderr
    assert survivors(family, within_s=5) == []
    (sweep_dir,) = out.iterdir()
    with open(sweep_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["status"] for row in rows] == ["interrupted", "interrupted", "pending"]
    assert [read_json(sweep_dir / r["run_dir"] / "run.json")["error"] for r in rows[:2]] == ["interrupted by SIGHUP"] * 2


def test_ls_shows_a_running_run_without_an_owner_as_interrupted_and_writes_nothing(tmp_path):
    lone = tmp_path / "net-20260101-000000"
    write_json(lone / "run.json", {"name": "net", "status": "running", "started_at": "2026-01-01T00:00:00+00:00"})
    sweep = tmp_path / "net-lr-sweep"
    write_json(sweep / "sweep.json", {"name": "net", "runs": [{"learning_rate": 0.1, "run_dir": "lr-0.1"}]})
    write_json(sweep / "lr-0.1" / "run.json", {"name": "net", "status": "running", "learning_rate": 0.1})
    (lone / LOCK_NAME).write_text('{"pid": 999999}')  # a lock file its dead owner left: it locks nothing

    def listing() -> dict[str, str]:
        result = runner.invoke(app, ["ls", str(tmp_path), "--json"])
        assert result.exit_code == 0, result.output
        return {Path(row["path"]).name: row["status"] for row in json.loads(result.stdout)}

    def files() -> dict[Path, tuple[bytes | None, int]]:
        return {p: (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")}

    before = files()
    assert listing() == {lone.name: "interrupted", sweep.name: "1 interrupted"}
    assert files() == before  # ls only reads
    with folder_lock(lone, "run"), folder_lock(sweep, "sweep"):  # their owners are alive: they are running
        assert listing() == {lone.name: "running", sweep.name: "1 running"}
    assert read_json(lone / "run.json")["status"] == read_json(sweep / "lr-0.1" / "run.json")["status"] == "running"


def test_sighup_stops_a_bench_records_it_and_leaves_no_child(tmp_path):
    out = tmp_path / "results"
    args = ["bench", "--devices", "cpu", "--filters", "4", "--epochs", "300", "--data", "mnist-5k", "--train-samples", "512",
            "--out", str(out)]  # fmt: skip
    process = start_cli(*args, env=ENV)
    try:
        wait_for(training(out, "*/runs/*/history.csv"), process)
        family = descendants(process)
        _, stderr = stop(process, signal.SIGHUP, group=True)
    finally:
        finish(process)
    assert process.returncode == 129, stderr
    assert "terminated (SIGHUP): finished runs are kept" in stderr and "Traceback" not in stderr
    assert survivors(family, within_s=5) == []
    (bench_dir,) = out.iterdir()
    assert read_json(bench_dir / "bench.json")["status"] == "interrupted"
    (run_json,) = bench_dir.glob("runs/*/run.json")
    assert (read_json(run_json)["status"], read_json(run_json)["error"]) == ("interrupted", "interrupted by SIGHUP")
