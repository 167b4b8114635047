"""Executors and process hygiene: no worker outlives its parent, SIGTERM is a Ctrl-C, one process per folder.

Real processes throughout (the faults are faults of processes): a CLI in its own session, killed or
terminated while its workers train, then every process it had is looked for.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import descendants, finish, start_cli, stop, survivors, training, wait_for
from typer.testing import CliRunner

from cnnbench.cli import app
from cnnbench.errors import DataError, SpecError, UsageError, error_from_payload, error_payload
from cnnbench.executor import Event, InlineExecutor, LocalExecutor, Task, make_executor, ray_config
from cnnbench.executor.fresh import USER_ERROR_EXIT, ChildExit, call_fresh
from cnnbench.lock import folder_lock
from cnnbench.results import read_json
from cnnbench.train import RunOptions

runner = CliRunner()


@pytest.fixture
def long_spec(tiny_spec, write_spec):
    """The tiny course net for 300 epochs: still training whenever a test strikes."""
    return write_spec(tiny_spec.with_overrides(epochs=300).to_dict(), "long.json")


def test_kill_9_of_a_parallel_sweep_leaves_no_worker_and_no_stuck_lock(long_spec, tmp_path):
    out = tmp_path / "results"
    process = start_cli("sweep-lr", str(long_spec), "--values", "0.01,0.02,0.03", "--parallel", "2", "--out", str(out))
    try:
        wait_for(training(out, "*/lr-*/history.csv", 2), process)
        family = descendants(process)
        assert len(family) >= 2  # the two workers (and multiprocessing's helpers)
        process.kill()
        process.wait()
        assert survivors(family, within_s=8) == []
    finally:
        finish(process)
    (sweep_dir,) = out.iterdir()
    with folder_lock(sweep_dir):  # the dead owner's lock went with it
        pass


def test_sigterm_records_interrupted_with_a_consistent_summary_and_a_second_sweep_is_refused(long_spec, tmp_path):
    out = tmp_path / "results"
    args = ["sweep-lr", str(long_spec), "--values", "0.01,0.02,0.03", "--parallel", "2", "--out", str(out)]
    process = start_cli(*args)
    try:
        wait_for(training(out, "*/lr-*/history.csv", 2), process)
        (sweep_dir,) = out.iterdir()
        second = runner.invoke(app, args)  # the same command again, while the first is training
        assert second.exit_code == 2
        assert "Traceback" not in second.stderr and second.stderr.count("error:") == 1
        error = second.stderr.strip().splitlines()[-1]
        assert error.startswith(f"error: {sweep_dir} is in use by cnnbench pid {process.pid} (cnnbench sweep-lr ")
        resume = runner.invoke(app, ["train", "--resume", str(sweep_dir / "lr-0.01")])  # a run of that sweep: the sweep's
        assert resume.exit_code == 2 and resume.stderr.count("error:") == 1
        assert f"which is in use by cnnbench pid {process.pid} (cnnbench sweep-lr " in resume.stderr
        family = descendants(process)
        _, stderr = stop(process, signal.SIGTERM)
    finally:
        finish(process)
    assert process.returncode == 143, stderr
    assert "terminated (SIGTERM): finished runs are kept" in stderr and "Traceback" not in stderr
    assert survivors(family, within_s=5) == []
    with open(sweep_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["status"] for row in rows] == ["interrupted", "interrupted", "pending"]
    for row in rows[:2]:
        record = read_json(sweep_dir / row["run_dir"] / "run.json")
        assert record["status"] == "interrupted"  # the run.json files say what the summary says
        assert record["error"] == "interrupted by SIGTERM"  # not a Ctrl-C nobody pressed


def test_one_process_per_run_folder_and_sigterm_stops_train_as_ctrl_c(long_spec, tmp_path):
    """`train --resume` holds its run: a second resume and a sweep that would retrain it are refused;
    SIGTERM records `interrupted by SIGTERM` (exit 143) and the run resumes again afterwards."""
    out = tmp_path / "results"
    args = ["sweep-lr", str(long_spec), "--values", "0.01", "--out", str(out)]
    sweep = start_cli(*args)
    try:
        wait_for(training(out, "*/lr-*/history.csv"), sweep)
        sweep.send_signal(signal.SIGINT)
        sweep.communicate(timeout=90)
    finally:
        finish(sweep)
    (run_dir,) = out.glob("*/lr-0.01")
    assert read_json(run_dir / "run.json")["status"] == "interrupted"

    since = time.time()
    train = start_cli("train", "--resume", str(run_dir))
    try:
        wait_for(lambda: (run_dir / "history.csv").stat().st_mtime > since, train)
        again = runner.invoke(app, ["train", "--resume", str(run_dir)])
        assert again.exit_code == 2 and again.stderr.count("error:") == 1
        assert again.stderr.strip().splitlines()[-1].startswith(f"error: {run_dir} is in use by cnnbench pid {train.pid} (cnnbench train ")
        resweep = runner.invoke(app, args)  # the same sweep again: it would retrain the run being resumed
        assert resweep.exit_code == 2 and f"{run_dir} is in use by cnnbench pid {train.pid}" in resweep.stderr
        family = descendants(train)
        _, stderr = stop(train, signal.SIGTERM)
    finally:
        finish(train)
    assert train.returncode == 143, stderr
    assert f"terminated (SIGTERM): finished epochs are kept in {run_dir}" in stderr and "Traceback" not in stderr
    record = read_json(run_dir / "run.json")
    assert record["status"] == "interrupted" and record["error"] == "interrupted by SIGTERM"
    assert not (run_dir / ".cnnbench.lock").exists() and survivors(family, within_s=5) == []


@pytest.fixture
def long_bench_args(tmp_path):
    return ["bench", "--devices", "cpu", "--filters", "4", "--epochs", "300", "--data", "mnist-5k", "--train-samples", "512",
            "--out", str(tmp_path / "results")]  # fmt: skip


def test_kill_9_of_a_bench_leaves_no_child_and_sigterm_marks_it_interrupted(long_bench_args, tmp_path):
    out = tmp_path / "results"
    process = start_cli(*long_bench_args)
    try:
        wait_for(training(out, "*/runs/*/history.csv"), process)
        family = descendants(process)
        assert family
        process.kill()
        process.wait()
        killed_at = time.time()
        assert survivors(family, within_s=8) == []
    finally:
        finish(process)

    process = start_cli(*long_bench_args)  # resumes the same folder: the lock is free again
    try:
        wait_for(training(out, "*/runs/*/history.csv", since=killed_at), process)
        family = descendants(process)
        _, stderr = stop(process, signal.SIGTERM)
    finally:
        finish(process)
    assert process.returncode == 143, stderr
    assert survivors(family, within_s=5) == []
    (bench_dir,) = out.iterdir()
    assert read_json(bench_dir / "bench.json")["status"] == "interrupted"
    (run_json,) = bench_dir.glob("runs/*/run.json")
    assert read_json(run_json)["status"] == "interrupted"


# --- the executors' contract, in-process ----------------------------------------------------------


def test_inline_and_local_executors_give_the_same_events(tiny_spec, tmp_path):
    spec = tiny_spec.with_overrides(epochs=1)
    for name, executor in (("inline", InlineExecutor(RunOptions(threads=1))), ("local", LocalExecutor(2, RunOptions(threads=1), spec))):
        tasks = [Task(key, ((spec.with_overrides(learning_rate=lr), tmp_path / name / f"lr-{lr}"),)) for key, lr in enumerate((0.01, 0.1))]
        events: list[Event] = []
        executor.run(tasks, events.append)
        assert sorted((e.key, e.kind) for e in events) == [(0, "end"), (0, "epoch"), (0, "start"), (1, "end"), (1, "epoch"), (1, "start")]
        assert [e.payload["status"] for e in events if e.kind == "end"] == ["ok", "ok"]
        assert all((tmp_path / name / f"lr-{lr}" / "run.json").is_file() for lr in (0.01, 0.1))


def test_an_error_raised_in_a_fresh_child_arrives_here_with_its_type_and_fields(tiny_spec, tmp_path):
    # More samples than mnist-5k has: the child raises DataError before training; this process gets a DataError.
    spec = tiny_spec.with_overrides(train_samples=4500, val_samples=900)
    events: list[Event] = []
    with make_executor(1, RunOptions(device="cpu", threads=1, save_model=False), policy="fresh") as executor:
        with pytest.raises(DataError, match=r"asked for 4500 \+ 900"):
            executor.run([Task(0, ((spec, tmp_path / "run"),))], events.append)
    assert [e.kind for e in events] == ["launch", "died"]
    died = events[1].payload
    assert isinstance(died, ChildExit) and isinstance(died.error, DataError) and died.code == USER_ERROR_EXIT
    child = read_json(tmp_path / "run" / "child.json")
    assert child["pid"] != os.getpid() and child["pinning"]["CUDA_VISIBLE_DEVICES"] == "-1" and child["error"]["type"] == "DataError"

    # One function in a fresh process: a SpecError keeps its fields; a bug keeps its traceback.
    from cnnbench.spec import parse_spec

    with pytest.raises(SpecError) as caught:
        call_fresh(parse_spec, {"name": "x"}, "net.yaml", options=RunOptions(device="cpu"), timeout_s=120)
    assert (caught.value.source, caught.value.path, str(caught.value)) == ("net.yaml", "input_shape", "net.yaml: input_shape: is required")
    try:
        int("x")
    except ValueError as exc:
        bug = error_from_payload(error_payload(exc), "a fresh process")
    assert type(bug) is RuntimeError and str(bug).startswith("a fresh process failed:\nTraceback") and "ValueError" in str(bug)


def test_a_lock_names_its_owner_and_ray_options_need_ray(tmp_path, monkeypatch):
    with folder_lock(tmp_path / "sweep", "sweep"):
        code = f"from cnnbench.lock import folder_lock\nwith folder_lock({str(tmp_path / 'sweep')!r}): pass"
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
        holder = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert f"is in use by cnnbench pid {os.getpid()} (" in holder.stderr
    with folder_lock(tmp_path / "sweep"):  # released when the owner is done
        pass
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_config() is None
    with pytest.raises(UsageError, match="apply to Ray"):
        ray_config(cpus_per_run=2)
    with pytest.raises(UsageError, match="give one of them"):
        ray_config(True, "127.0.0.1:6379")
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert ray_config(gpus_per_run=0.25).address == "auto" and ray_config().source == "RAY_ADDRESS"
