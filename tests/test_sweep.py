"""Learning-rate sweeps: planning and folder names, divergence and failures, interrupt and resume, parallel = sequential."""

from __future__ import annotations

import csv
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import finish, start_cli, stop, wait_for
from typer.testing import CliRunner

from cnnbench.cli import app
from cnnbench.device import cpu_cores
from cnnbench.errors import UsageError
from cnnbench.results import read_json, write_json
from cnnbench.sweep import SUMMARY_COLUMNS, SweepOptions, plan_sweep, run_sweep, sweep_name

runner = CliRunner()


def read_summary(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and modification time: a finished run must keep both."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def fake_training(monkeypatch):
    """Replace the one door to training with an instant fake: `statuses` maps a rate to its outcome."""
    calls: list[float] = []
    statuses: dict[float, str] = {}

    def fake_train_run(spec, run_dir, options, on_epoch=None, on_start=None):
        lr = spec.training.learning_rate
        calls.append(lr)
        status = statuses.get(lr, "ok")
        if status == "interrupt":
            raise KeyboardInterrupt
        record = {"name": spec.name, "learning_rate": lr, "status": "running", "error": None}
        write_json(Path(run_dir) / "run.json", record)
        if on_start:
            on_start(record)
        if on_epoch:
            on_epoch({"epoch": 1, "loss": 1.0, "val_error": lr})
        record.update(status=status, error="RuntimeError: boom" if status == "failed" else None, final_val_error=lr,
                      best_val_error=lr, best_epoch=1, epochs_run=1, total_time_s=0.01)  # fmt: skip
        write_json(Path(run_dir) / "run.json", record)
        return record

    monkeypatch.setattr("cnnbench.train.train_run", fake_train_run)  # the one door, whichever executor calls it
    return calls, statuses


# --- planning: no training, no files -----------------------------------------------------------


def test_sweep_folder_name_is_readable_and_changes_with_what_shapes_the_runs(tiny_spec):
    name = sweep_name(tiny_spec, [0.01, 0.03, 0.05])
    assert name.startswith("convolutional_nn-lr-sweep-0.01..0.05-n3-")
    assert sweep_name(tiny_spec, [0.01, 0.03, 0.05]) == name  # the same command finds its sweep again
    assert sweep_name(tiny_spec.with_overrides(learning_rate=0.5), [0.01, 0.03, 0.05]) == name  # replaced in every run
    for other in (
        sweep_name(tiny_spec.with_overrides(epochs=3), [0.01, 0.03, 0.05]),
        sweep_name(tiny_spec.with_overrides(seed=1), [0.01, 0.03, 0.05]),
        sweep_name(tiny_spec.with_overrides(batch_size=32), [0.01, 0.03, 0.05]),
        sweep_name(tiny_spec.with_overrides(dataset="synthetic"), [0.01, 0.03, 0.05]),
        sweep_name(tiny_spec, [0.01, 0.05]),
        sweep_name(tiny_spec, [0.01, 0.02, 0.05]),
    ):
        assert other != name


def test_plan_reads_statuses_and_writes_nothing(tiny_spec, tmp_path):
    plan = plan_sweep(tiny_spec, "0.01,0.02:0.06:0.02", tmp_path)
    assert plan.values == (0.01, 0.02, 0.04, 0.06)
    assert [run.run_dir.name for run in plan.runs] == ["lr-0.01", "lr-0.02", "lr-0.04", "lr-0.06"]
    assert list(tmp_path.iterdir()) == []
    for name, status in (("lr-0.01", "ok"), ("lr-0.02", "diverged"), ("lr-0.04", "interrupted")):
        write_json(plan.sweep_dir / name / "run.json", {"status": status})
    plan = plan_sweep(tiny_spec, "0.01,0.02:0.06:0.02", tmp_path)
    assert [(run.status, run.skip) for run in plan.runs] == [("ok", True), ("diverged", True), ("interrupted", False), (None, False)]
    forced = plan_sweep(tiny_spec, "0.01,0.02:0.06:0.02", tmp_path, force=True)
    assert not any(run.skip for run in forced.runs)
    with pytest.raises(UsageError):
        plan_sweep(tiny_spec, "0.1:0.01:0.01", tmp_path)


def test_dry_run_prints_the_plan_and_trains_nothing(tmp_path):
    result = runner.invoke(app, ["sweep-lr", "--values", "1e-4:1e-1:*10", "--dry-run", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"sweep folder: {tmp_path}/convolutional_nn-lr-sweep-0.0001..0.1-n4-") and lines[0].endswith("(new)")
    assert [line.split()[1] for line in lines[1:5]] == ["0.0001", "0.001", "0.01", "0.1"]
    assert all("train" in line and "/lr-" in line for line in lines[1:5])
    assert lines[5] == "4 runs: 4 to train, 0 kept; nothing trained (--dry-run)"
    assert list(tmp_path.iterdir()) == []


def test_bad_values_are_one_line_and_exit_2(tmp_path):
    result = runner.invoke(app, ["sweep-lr", "--values", "0.01:0.1:0", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --values: the step of '0.01:0.1:0' must be positive, got 0"


# --- the CLI's outcomes, with instant fake training ----------------------------------------------


def test_a_failed_run_is_recorded_the_sweep_goes_on_and_exits_1(fake_training, tmp_path):
    calls, statuses = fake_training
    statuses[0.2] = "failed"
    result = runner.invoke(app, ["sweep-lr", "--values", "0.1:0.3:0.1", "--out", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert calls == [0.1, 0.2, 0.3]
    assert re.search(r"^lr 0.2 +failed .*RuntimeError: boom$", result.stderr, re.M)
    assert "1 run(s) failed" in result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert [line.split("│")[1].strip() for line in table] == ["0.1", "0.2", "0.3"]
    assert "<- best" in table[0]  # lowest best_val_error among ok runs
    (sweep_dir,) = tmp_path.iterdir()
    assert [row["status"] for row in read_summary(sweep_dir)] == ["ok", "failed", "ok"]


def test_resume_keeps_finished_runs_and_force_redoes_them(fake_training, tmp_path):
    calls, statuses = fake_training
    statuses.update({0.1: "diverged", 0.2: "failed"})
    args = ["sweep-lr", "--values", "0.1,0.2,0.3", "--out", str(tmp_path)]
    runner.invoke(app, args)
    statuses.clear()
    calls.clear()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert calls == [0.2]  # diverged and ok are results; failed is redone
    assert "resuming: 2 finished run(s) kept, 1 to train" in result.stderr
    assert result.stderr.count("(kept: finished earlier)") == 2
    calls.clear()
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    assert calls == [0.1, 0.2, 0.3]


def test_ctrl_c_exits_130_with_the_summary_written(fake_training, tmp_path):
    calls, statuses = fake_training
    statuses[0.2] = "interrupt"
    result = runner.invoke(app, ["sweep-lr", "--values", "0.1,0.2,0.3", "--out", str(tmp_path)])
    assert result.exit_code == 130
    assert "interrupted: finished runs are kept in" in result.stderr and "run the same command to resume" in result.stderr
    (sweep_dir,) = tmp_path.iterdir()
    assert [row["status"] for row in read_summary(sweep_dir)] == ["ok", "pending", "pending"]


# --- real training on tiny data --------------------------------------------------------------------


def test_a_diverging_rate_next_to_a_healthy_one_and_a_crash(tiny_spec, tmp_path):
    def crash_at_lr_01(event):
        if event.kind == "epoch" and event.run.learning_rate == 0.1:
            raise RuntimeError("simulated crash")  # inside model.fit: train_run records `failed`

    plan = plan_sweep(tiny_spec, [0.05, 0.1, 500], tmp_path)
    result = run_sweep(plan, on_event=crash_at_lr_01)
    by_lr = {row["learning_rate"]: row for row in result.rows}
    assert [by_lr[lr]["status"] for lr in (0.05, 0.1, 500)] == ["ok", "failed", "diverged"]
    assert "exceeds" in by_lr[500]["error"] and by_lr[500]["epochs_run"] == 1  # stopped at once, sweep went on
    assert "simulated crash" in by_lr[0.1]["error"]
    assert result.best["learning_rate"] == 0.05 and [row["learning_rate"] for row in result.failed] == [0.1]
    rows = read_summary(plan.sweep_dir)
    assert list(rows[0])[:7] == list(SUMMARY_COLUMNS[:7])
    assert [row["learning_rate"] for row in rows] == ["0.05", "0.1", "500"]
    assert [row["run_dir"] for row in rows] == ["lr-0.05", "lr-0.1", "lr-500"]
    for row in rows:  # every run is a normal run folder, as `train` makes
        assert {"spec.json", "run.json", "history.csv"} <= {p.name for p in (plan.sweep_dir / row["run_dir"]).iterdir()}
    index = read_json(plan.sweep_dir / "sweep.json")
    assert index["values"] == [0.05, 0.1, 500] and index["spec"]["training"]["epochs"] == 2
    assert read_json(plan.sweep_dir / "lr-500" / "spec.json")["training"]["learning_rate"] == 500


def test_interrupted_sweep_resumes_without_touching_finished_runs(tiny_spec, tmp_path):
    def ctrl_c_in_second_run(event):
        if event.kind == "epoch" and event.run.learning_rate == 0.1:
            raise KeyboardInterrupt

    plan = plan_sweep(tiny_spec, "0.05,0.1,0.2", tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, on_event=ctrl_c_in_second_run)
    assert [row["status"] for row in read_summary(plan.sweep_dir)] == ["ok", "interrupted", "pending"]
    finished = snapshot(plan.sweep_dir / "lr-0.05")
    created_at = read_json(plan.sweep_dir / "sweep.json")["created_at"]
    time.sleep(0.01)  # a rewrite would show in the mtime

    events = []
    resumed = plan_sweep(tiny_spec, "0.05,0.1,0.2", tmp_path)
    assert resumed.sweep_dir == plan.sweep_dir
    assert [run.resume for run in resumed.runs] == [False, True, False]  # lr-0.1 left its checkpoint at epoch 1
    dry = runner.invoke(app, ["sweep-lr", "--values", "0.05,0.1,0.2", "--epochs", "2", "--data", "mnist-5k", "--train-samples", "512",
                              "--val-samples", "128", "--test-samples", "128", "--dry-run", "--out", str(tmp_path)])  # fmt: skip
    assert "train again (was interrupted, continues from its checkpoint)" in dry.stdout, dry.output
    result = run_sweep(resumed, on_event=lambda e: events.append((e.kind, e.run.label)) if e.kind != "epoch" else None)
    assert events == [("skip", "0.05"), ("start", "0.1"), ("end", "0.1"), ("start", "0.2"), ("end", "0.2")]
    assert snapshot(plan.sweep_dir / "lr-0.05") == finished
    assert [row["status"] for row in read_summary(plan.sweep_dir)] == ["ok", "ok", "ok"]
    assert [row["epochs_run"] for row in result.rows] == [2, 2, 2]
    continued = read_json(plan.sweep_dir / "lr-0.1" / "run.json")
    assert [r["from_epoch"] for r in continued["resumed"]] == [1]  # as `train --resume`: epoch 1 kept, epoch 2 trained
    assert len(read_summary(plan.sweep_dir)) == 3 and "resumed" not in read_json(plan.sweep_dir / "lr-0.2" / "run.json")
    assert read_json(plan.sweep_dir / "sweep.json")["created_at"] == created_at


def test_parallel_2_gives_the_same_summary_as_sequential(tiny_spec, tmp_path, write_spec):
    """Bit for bit when every run uses the same number of threads; within float noise otherwise.

    TensorFlow's (oneDNN's) convolution filter gradient sums its partial results in an order that
    depends on the thread count, so a 2-thread run and a 1-thread run differ in the last bits of the
    weights after the first step; a few epochs later a validation digit or two may flip. Split,
    initial weights and shuffling are the same in both modes (the seed), so with the same thread
    count every number is identical.
    """
    values = "0.05,0.1,0.2"  # three runs on two workers: one worker trains two
    threads = max(1, cpu_cores() // 2)  # what each of 2 workers gets
    spec_file = write_spec(tiny_spec.to_dict(), "tiny.json")
    # The sequential reference with the workers' thread count has to be a fresh process: threads are
    # fixed when TensorFlow is imported, and this test process may have imported it already.
    args = ["sweep-lr", str(spec_file), "--values", values, "--threads", str(threads), "--out", str(tmp_path / "seq")]
    cli = subprocess.run([sys.executable, "-m", "cnnbench", *args], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    assert "<- best" in cli.stdout and "3/3 runs" in cli.stderr

    events = []
    parallel = run_sweep(plan_sweep(tiny_spec, values, tmp_path / "par"), SweepOptions(parallel=2), on_event=events.append)
    assert sorted(e.run.label for e in events if e.kind == "end") == ["0.05", "0.1", "0.2"]
    assert sum(e.kind == "epoch" for e in events) == 6  # the workers' epochs reach the parent's progress
    (seq_dir,) = (tmp_path / "seq").iterdir()
    assert seq_dir.name == parallel.plan.sweep_dir.name
    records = [read_json(parallel.plan.sweep_dir / f"lr-{v}" / "run.json") for v in ("0.05", "0.1", "0.2")]
    assert {r["environment"]["threads"] for r in records} == {threads}

    keys = ("learning_rate", "status", "final_val_error", "best_val_error", "best_epoch", "epochs_run", "final_loss", "test_error")
    summary = lambda rows: [{k: row[k] for k in keys} for row in rows]  # noqa: E731
    assert summary(read_summary(parallel.plan.sweep_dir)) == summary(read_summary(seq_dir))

    # The default sequential sweep (all cores, in this process) agrees to float noise.
    default = run_sweep(plan_sweep(tiny_spec, values, tmp_path / "default"))
    val_samples = tiny_spec.data.val_samples
    for a, b in zip(default.rows, parallel.rows, strict=True):
        assert a["status"] == b["status"] == "ok"
        assert abs(a["final_val_error"] - b["final_val_error"]) <= 2 / val_samples + 1e-9  # at most two digits flip
        assert math.isclose(a["final_loss"], b["final_loss"], rel_tol=1e-3)  # observed: ~1e-5


def history_rows(run_dir: Path) -> int:
    """Epochs a run folder's history.csv holds so far (0 before the first)."""
    try:
        return max(0, len((run_dir / "history.csv").read_text().splitlines()) - 1)
    except OSError:
        return 0


def test_ctrl_c_in_a_terminal_stops_a_parallel_sweep_cleanly(tiny_spec, tmp_path, write_spec):
    """SIGINT to the whole process group, as a terminal's Ctrl-C does: workers and parent all get it."""
    spec_file = write_spec(tiny_spec.with_overrides(epochs=12).to_dict(), "tiny.json")
    out = tmp_path / "results"
    args = ["sweep-lr", str(spec_file), "--values", "0.01:0.06:0.01", "--parallel", "2", "--out", str(out)]
    process = start_cli(*args)
    try:
        # one run finished and a later one early in its 12 epochs (not the finished run's twin, which started
        # with it and may finish before the signal lands), past its first epoch: in the training loop
        def early_run() -> bool:
            statuses = {p.parent: read_json(p).get("status") for p in out.glob("*/lr-*/run.json")}
            early = [d for d, s in statuses.items() if s == "running" and 1 <= history_rows(d) < 4]  # training, not starting
            return "ok" in statuses.values() and bool(early)

        wait_for(early_run, process)
        stdout, stderr = stop(process, signal.SIGINT, group=True, timeout=120)
    finally:
        finish(process)
    assert process.returncode == 130, stderr
    assert "run the same command to resume" in stderr and "Traceback" not in stderr
    (sweep_dir,) = out.iterdir()
    statuses = [row["status"] for row in read_summary(sweep_dir)]
    errors = [read_json(p).get("error") for p in sweep_dir.glob("lr-*/run.json") if read_json(p).get("status") == "failed"]
    assert "ok" in statuses and "interrupted" in statuses and "running" not in statuses, (statuses, errors, stderr[-2000:])
    assert set(statuses) <= {"ok", "interrupted", "pending"}, (statuses, errors, stderr[-2000:])
    for row in read_summary(sweep_dir):
        if row["status"] != "pending":
            assert read_json(sweep_dir / row["run_dir"] / "run.json")["status"] == row["status"]
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert f"{statuses.count('ok')} kept" in dry.stdout


def test_best_rate_ties_are_broken_by_final_error_then_the_smaller_rate_and_never_learned_runs_are_not_best(course_spec, tmp_path):
    from cnnbench.sweep import SweepResult, plan_sweep

    plan = plan_sweep(course_spec, [0.01, 0.03, 0.1, 0.3], tmp_path)

    def row(lr, best, final, learned=True, status="ok"):
        return {"learning_rate": lr, "status": status, "best_val_error": best, "final_val_error": final, "learned": learned}

    def best(*rows):
        result = SweepResult(plan, list(rows), tmp_path / "summary.csv")
        return result.best and result.best["learning_rate"], result.best_at_edge

    assert best(row(0.01, 0.9, 0.9, False), row(0.03, 0.05, 0.07), row(0.1, 0.05, 0.06), row(0.3, 0.2, 0.2)) == (0.1, False)
    assert best(row(0.01, 0.9, 0.9, False), row(0.03, 0.05, 0.06), row(0.1, 0.05, 0.06), row(0.3, 0.2, 0.2)) == (0.03, False)
    assert best(row(0.01, 0.04, 0.04), row(0.03, 0.05, 0.06), row(0.1, 0.05, 0.06), row(0.3, 0.2, 0.2)) == (0.01, True)
    assert best(row(0.01, 0.88, 0.9, False), row(0.3, 0.1, 0.1, status="diverged")) == (None, False)


def test_the_sweep_verdict_is_data_the_command_states(course_spec, tmp_path):
    """Best rate, the end of the grid it sits at, never learned and failed rates: what `sweep-lr` prints, as data."""
    from cnnbench.sweep import SweepResult, plan_sweep

    plan = plan_sweep(course_spec, [0.01, 0.03, 0.1, 0.3], tmp_path)

    def verdict(*rows):
        return SweepResult(plan, [{"best_val_error": None, "final_val_error": None, **r} for r in rows], tmp_path / "s.csv").verdict

    at_top = verdict({"learning_rate": 0.01, "status": "ok", "best_val_error": 0.9, "learned": False},
                     {"learning_rate": 0.1, "status": "failed"}, {"learning_rate": 0.3, "status": "ok", "best_val_error": 0.1})
    assert at_top.best["learning_rate"] == 0.3 and at_top.edge == "largest" and (at_top.low, at_top.high) == (0.01, 0.3)
    assert at_top.never_learned == [0.01] and at_top.failed == [0.1] and not at_top.learned_nothing
    at_bottom = verdict({"learning_rate": 0.01, "status": "ok", "best_val_error": 0.1}, {"learning_rate": 0.03, "status": "ok",
                        "best_val_error": 0.2})  # fmt: skip
    assert at_bottom.edge == "smallest"
    inside = verdict({"learning_rate": 0.01, "status": "ok", "best_val_error": 0.3}, {"learning_rate": 0.03, "status": "ok",
                     "best_val_error": 0.2})  # fmt: skip
    assert inside.best["learning_rate"] == 0.03 and inside.edge is None
    nothing = verdict({"learning_rate": 0.01, "status": "ok", "best_val_error": 0.9, "learned": False},
                      {"learning_rate": 0.3, "status": "diverged"})
    assert nothing.best is None and nothing.edge is None and nothing.learned_nothing
    assert not verdict({"learning_rate": 0.3, "status": "diverged"}).learned_nothing  # nothing finished: nothing to say
def test_sweep_lr_with_seeds_is_the_general_study_over_the_rate(fake_training, tmp_path):
    calls, _ = fake_training
    base = ["sweep-lr", "--values", "0.05,0.1", "--epochs", "1", "--data", "mnist-5k", "--out", str(tmp_path)]
    one = runner.invoke(app, [*base, "--seeds", "1", "--dry-run"])
    assert one.exit_code == 0 and "/lr-0.05" in one.stdout  # one seed: sweep-lr's own layout, unchanged
    result = runner.invoke(app, [*base, "--seeds", "2"])
    assert result.exit_code == 0, result.output
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("convolutional_nn-sweep-learning_rate-")
    assert sorted(str(p.parent.relative_to(folder)) for p in folder.glob("*/seed-*/run.json")) == [
        "learning_rate-0.05/seed-0", "learning_rate-0.05/seed-1", "learning_rate-0.1/seed-0", "learning_rate-0.1/seed-1"]  # fmt: skip
    assert sorted(calls) == [0.05, 0.05, 0.1, 0.1]
    assert "points: " in result.stdout and (folder / "points.csv").is_file()
    sinks = runner.invoke(app, [*base, "--seeds", "2", "--tensorboard", str(tmp_path / "tb"), "--dry-run"])
    assert sinks.exit_code == 0 and "4 runs: 0 to train, 4 kept" in sinks.stdout, sinks.output  # the sinks go with it to `sweep`
