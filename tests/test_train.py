"""Training through the one door, `train_run`: real learning, the run folder, statuses, atomic files."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cnnbench.errors import SpecError
from cnnbench.lock import LOCK_NAME, held_by
from cnnbench.results import HISTORY_COLUMNS, atomic_write_text, load_histories, load_runs, read_json
from cnnbench.train import RunOptions, train_run

RUN_JSON_KEYS = {
    "status", "error", "learning_rate", "batch_size", "epochs", "seed", "params", "flops_per_sample", "data", "device",
    "device_name", "backend", "environment", "started_at", "ended_at", "final_val_error", "best_val_error", "best_epoch",
    "test_error", "timing", "epochs_run", "total_time_s",
}  # fmt: skip


def test_real_training_on_real_digits_learns(course_spec, tmp_path):
    spec = course_spec.with_overrides(epochs=3, dataset="mnist-5k", train_samples=2000, val_samples=500, test_samples=500)
    record = train_run(spec, tmp_path / "run", RunOptions(save_model=False))
    errors = [row["val_error"] for row in csv.DictReader(open(tmp_path / "run" / "history.csv"))]
    assert record["status"] == "ok"
    assert float(errors[-1]) < float(errors[0])
    assert record["final_val_error"] < 0.3 and record["test_error"] < 0.3  # chance is 0.9
    assert record["data"] == {**record["data"], "name": "mnist-5k", "train_samples": 2000, "val_samples": 500, "test_samples": 500}


def test_run_folder_holds_spec_record_history_and_model(tiny_spec, tmp_path):
    run_dir = tmp_path / "run"
    record = train_run(tiny_spec, run_dir)
    assert sorted(p.name for p in run_dir.iterdir()) == ["history.csv", "model.keras", "run.json", "spec.json"]
    assert read_json(run_dir / "spec.json") == json.loads(json.dumps(tiny_spec.to_dict()))
    assert read_json(run_dir / "run.json") == json.loads(json.dumps(record))
    assert RUN_JSON_KEYS <= set(record)
    assert record["params"] == 104_250 and record["flops_per_sample"] == 1_332_224
    assert record["environment"]["keras"] and record["environment"]["python"] and record["seed"] == 0
    timing = record["timing"]
    assert timing["first_epoch_s"] > 0 and timing["steady_epochs"] == 1 and timing["epoch_s_median"] > 0
    rows = list(csv.DictReader(open(run_dir / "history.csv")))
    assert len(rows) == 2 and [r["epoch"] for r in rows] == ["1", "2"]
    assert set(HISTORY_COLUMNS) <= set(rows[0])
    assert abs(float(rows[1]["val_error"]) - (1 - float(rows[1]["val_accuracy"]))) < 1e-9


def test_results_load_as_tidy_frames(tiny_spec, tmp_path):
    train_run(tiny_spec, tmp_path / "a", RunOptions(save_model=False))
    train_run(tiny_spec.with_overrides(learning_rate=0.05), tmp_path / "b", RunOptions(save_model=False))
    runs, curves = load_runs(tmp_path), load_histories(tmp_path)
    assert sorted(runs["learning_rate"]) == [0.05, 0.1] and "timing.epoch_s_median" in runs
    assert len(curves) == 4 and {"run_dir", "epoch", "val_error", "learning_rate", "dataset"} <= set(curves.columns)


def test_same_seed_gives_the_same_curve(tiny_spec, tmp_path):
    a = train_run(tiny_spec, tmp_path / "a", RunOptions(save_model=False))
    b = train_run(tiny_spec, tmp_path / "b", RunOptions(save_model=False))
    assert a["final_loss"] == b["final_loss"] and a["final_val_error"] == b["final_val_error"]


def test_a_huge_learning_rate_is_recorded_as_diverged(tiny_spec, tmp_path):
    record = train_run(tiny_spec.with_overrides(learning_rate=500.0, epochs=5), tmp_path / "run")
    assert record["status"] == "diverged"
    assert record["epochs_run"] < 5
    assert "training loss" in record["error"]
    assert not (tmp_path / "run" / "model.keras").exists()
    assert read_json(tmp_path / "run" / "run.json")["status"] == "diverged"


def test_ctrl_c_marks_the_run_interrupted_and_keeps_finished_epochs(tiny_spec, tmp_path):
    def interrupt(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(tiny_spec.with_overrides(epochs=4), tmp_path / "run", on_epoch=interrupt)
    record = read_json(tmp_path / "run" / "run.json")
    assert record["status"] == "interrupted" and record["epochs_run"] == 2


def test_a_crash_is_recorded_as_failed_with_its_traceback(tiny_spec, tmp_path):
    def crash(row):
        raise RuntimeError("disk on fire")

    record = train_run(tiny_spec, tmp_path / "run", on_epoch=crash)
    assert record["status"] == "failed" and record["error"] == "RuntimeError: disk on fire"
    assert "disk on fire" in (tmp_path / "run" / "error.txt").read_text()


def test_spec_that_does_not_fit_the_data_fails_before_writing(course_spec, tmp_path):
    layers = (*course_spec.layers[:-1], {"type": "Dense", "units": 5, "activation": "softmax"})
    spec = type(course_spec)(**{**course_spec.__dict__, "layers": layers}).with_overrides(dataset="mnist-5k")
    with pytest.raises(SpecError, match=r"layers\[6\]: the model must end in 10 outputs \(one per class of mnist-5k\)"):
        train_run(spec, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    target.write_text('{"status": "ok"}')

    def crash(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, '{"status": "runn')
    assert target.read_text() == '{"status": "ok"}'
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_killed_training_process_leaves_only_whole_files(tmp_path):
    """SIGKILL a `cnnbench train` mid-run: whatever is on disk parses completely."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnbench", "train", "convolutional_nn", "--epochs", "50", "--data", "mnist-5k", "--out", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    history = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(tmp_path.glob("*/history.csv"))
        if found and len(found[0].read_text().splitlines()) >= 3:
            history = found[0]
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert history is not None, "training never wrote two epochs"
    run_dir = history.parent
    rows = list(csv.DictReader(open(history)))
    assert rows and all(len(r) == len(rows[0]) and None not in r.values() for r in rows)
    assert read_json(run_dir / "run.json")["status"] == "running"  # never finished: a sweep would redo it
    leftovers = [p.name for p in run_dir.iterdir() if p.name.startswith(".") and p.name != LOCK_NAME]
    assert all(name.endswith(".tmp") for name in leftovers)  # at most an abandoned temp file, never a torn real one
    assert held_by(run_dir) is None  # the dead owner's lock file locks nothing: `train --resume` may go on


# --- honest verdicts, start-up apart, resuming ------------------------------------------------


def test_learned_rule_is_three_binomial_sigmas_below_chance_and_at_least_0_02():
    from cnnbench.chance import chance_error, learned, learned_margin

    assert chance_error(10) == pytest.approx(0.9)
    assert learned_margin(10, 500) == pytest.approx(0.0402, abs=1e-4)
    assert learned_margin(10, 128) == pytest.approx(0.0795, abs=1e-4)
    assert learned_margin(10, 1_000_000) == 0.02
    assert learned(0.87, 10, 500) is False and learned(0.85, 10, 500) is True and learned(None, 10, 500) is None


def test_a_run_that_never_learns_is_recorded_learned_false(tiny_spec, tmp_path):
    """Adam at 0.05 keeps the course net at chance (0.9) — status ok, but learned: false."""
    stuck = train_run(tiny_spec.with_overrides(optimizer="adam", learning_rate=0.05), tmp_path / "stuck", RunOptions(save_model=False))
    good = train_run(tiny_spec, tmp_path / "good", RunOptions(save_model=False))
    assert stuck["status"] == "ok" and stuck["learned"] is False and stuck["chance_error"] == pytest.approx(0.9)
    assert stuck["best_val_error"] >= 0.9 - stuck["learned_margin"]
    assert good["learned"] is True
    assert read_json(tmp_path / "stuck" / "run.json")["learned"] is False


def test_startup_is_recorded_apart_from_the_run_time(tiny_spec, tmp_path):
    from cnnbench.data import forget_datasets

    forget_datasets()  # as in a fresh process: the data load is start-up
    first = train_run(tiny_spec, tmp_path / "a", RunOptions(save_model=False))
    second = train_run(tiny_spec, tmp_path / "b", RunOptions(save_model=False))
    assert first["timing"]["startup_s"] > second["timing"]["startup_s"] >= 0
    assert second["timing"]["startup_s"] < 0.05  # Keras and the data were already there


def test_steps_per_execution_beyond_an_epoch_is_clamped_and_trains(tiny_spec, tmp_path):
    record = train_run(tiny_spec.with_overrides(steps_per_execution=10_000), tmp_path / "run", RunOptions(save_model=False))  # the maximum
    assert record["status"] == "ok" and record["epochs_run"] == 2
    assert record["steps_per_execution"] == 8  # 512 samples / batch 64


def test_synthetic_data_too_large_to_allocate_is_recorded_oom(write_spec, tmp_path):
    from cnnbench.spec import load_spec

    layers = [{"type": "Conv2D", "filters": 2, "kernel_size": 3}, {"type": "GlobalAveragePooling2D"}, {"type": "Dense", "units": 10}]
    doc = {"name": "huge", "input_shape": [30000, 30000, 3], "data": {"dataset": "synthetic"}, "training": {"epochs": 1}, "layers": layers}
    record = train_run(load_spec(str(write_spec(doc))), tmp_path / "run")
    assert record["status"] == "oom" and "GiB" in record["error"] and "free memory" in record["error"]
    assert read_json(tmp_path / "run" / "run.json")["status"] == "oom"


def _stop_at(epoch):
    def stop(row):
        if row["epoch"] == epoch:
            raise KeyboardInterrupt

    return stop


def test_resume_continues_with_the_model_and_optimizer_state(tiny_spec, tmp_path):
    """Adam's moments are part of the checkpoint: a resumed run follows the uninterrupted curve."""
    spec = tiny_spec.with_overrides(epochs=4, optimizer="adam", learning_rate=0.001)
    with pytest.raises(KeyboardInterrupt):
        train_run(spec, tmp_path / "run", on_epoch=_stop_at(3))
    assert read_json(tmp_path / "run" / "run.json")["status"] == "interrupted"
    assert (tmp_path / "run" / "checkpoint.npz").is_file()
    resumed = train_run(spec, tmp_path / "run", RunOptions(resume=True))
    full = train_run(spec, tmp_path / "full")
    assert resumed["status"] == "ok" and resumed["epochs_run"] == 4
    assert resumed["resumed"][0]["from_epoch"] == 3  # epoch 3 was reported, so its row and checkpoint were already taken
    rows = list(csv.DictReader(open(tmp_path / "run" / "history.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert resumed["final_val_loss"] == pytest.approx(full["final_val_loss"], rel=1e-3)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["history.csv", "model.keras", "run.json", "spec.json"]


def test_resume_refuses_a_damaged_checkpoint_in_one_line(tiny_spec, tmp_path):
    from cnnbench.errors import UsageError

    with pytest.raises(KeyboardInterrupt):
        train_run(tiny_spec.with_overrides(epochs=3), tmp_path / "run", on_epoch=_stop_at(2))
    (tmp_path / "run" / "checkpoint.npz").write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(UsageError, match=r"unreadable checkpoint .*; delete checkpoint.npz to start the run again"):
        train_run(tiny_spec.with_overrides(epochs=3), tmp_path / "run", RunOptions(resume=True))


# --- full disks -------------------------------------------------------------------------------


def _fill(disk, leave: int) -> None:
    stat = os.statvfs(disk)
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))


def _checkpoint_on_disk(path, epoch: int, timeout: float = 60.0) -> None:
    """Wait until `path` holds `epoch`'s checkpoint: it is written in the background while training goes on."""
    from cnnbench.callbacks import read_checkpoint

    deadline = time.monotonic() + timeout
    while (state := read_checkpoint(path)) is None or state.epoch < epoch:
        assert time.monotonic() < deadline, f"no checkpoint of epoch {epoch} in {path} after {timeout:.0f} s"
        time.sleep(0.01)


def test_a_full_disk_while_saving_the_model_is_recorded_failed_and_leaves_no_temp_file(tiny_spec, small_disk):
    """The last checkpoint (≈420 kB) still fits, model.keras (≈450 kB) does not."""
    from cnnbench.callbacks import read_checkpoint

    def fill_at_last_epoch(row):
        if row["epoch"] == 2:
            # Epoch 2's checkpoint may still be in flight when the epoch is reported (callbacks.Checkpoint);
            # its rename frees the previous one (≈420 kB), which would leave room for model.keras.
            _checkpoint_on_disk(small_disk / "run" / "checkpoint.npz", epoch=2)
            _fill(small_disk, leave=435_000)

    record = train_run(tiny_spec, small_disk / "run", on_epoch=fill_at_last_epoch)
    assert record["status"] == "failed"
    assert record["error"].startswith("no space left on device")
    assert record["test_error"] is not None  # the test evaluation had run
    assert read_json(small_disk / "run" / "run.json")["status"] == "failed"
    assert sorted(p.name for p in (small_disk / "run").iterdir() if p.name.startswith(".")) == []
    assert not (small_disk / "run" / "model.keras").exists()
    assert read_checkpoint(small_disk / "run" / "checkpoint.npz").epoch == 2  # kept: a failed run can be resumed
