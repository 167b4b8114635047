"""One run through the library as `cnnbench train` runs it (cnnbench/run.py): a new folder made and held, an
interrupted run resumed, a finished one left alone, a folder another process holds refused."""

from __future__ import annotations

import json
import re

import pytest

from cnnbench.errors import OutputError, UsageError
from cnnbench.lock import folder_lock, held_by
from cnnbench.run import plan_resume, plan_run, run_train
from cnnbench.train import RunOptions


def test_a_new_run_gets_its_own_folder_held_while_it_trains(tiny_spec, tmp_path):
    seen = {}

    def start(record: dict) -> None:
        seen["held"] = held_by(seen["folder"])

    result = run_train(plan_run(tiny_spec.with_overrides(epochs=1), tmp_path / "out"), on_start=start,
                       on_folder=lambda folder: seen.setdefault("folder", folder))  # fmt: skip
    assert result.trained and result.record["status"] == "ok"
    assert result.run_dir == seen["folder"] and result.run_dir.parent == tmp_path / "out"
    assert result.run_dir.name.startswith(f"{tiny_spec.name}-")
    assert seen["held"] is not None and "pid" in seen["held"]  # held by this process while it trained
    assert held_by(result.run_dir) is None  # and let go once done
    assert json.loads((result.run_dir / "run.json").read_text())["status"] == "ok"


def test_plan_run_refuses_an_out_folder_that_is_a_file(tiny_spec, tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(OutputError, match="taken"):
        plan_run(tiny_spec, tmp_path / "taken")
    assert (tmp_path / "taken").is_file()


def test_an_interrupted_run_resumes_under_its_lock_and_a_finished_one_is_left_alone(tiny_spec, tmp_path):
    spec = tiny_spec.with_overrides(epochs=2)
    folders = []

    def stop_after_first_epoch(row: dict) -> None:
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_train(plan_run(spec, tmp_path / "sweep"), on_epoch=stop_after_first_epoch, on_folder=folders.append)
    (run_dir,) = folders
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"

    plan = plan_resume(run_dir, RunOptions(threads=1))
    assert plan.resume and plan.options.resume and not plan.finished
    assert plan.spec.training.epochs == 2 and plan.options.threads == 1
    assert plan.options.backend == plan.previous["backend"]  # the backend it ran on, unless told otherwise
    with folder_lock(run_dir, "run"), pytest.raises(UsageError, match=r"is in use by cnnbench pid \d+"):
        run_train(plan)  # another process (here: another open lock) holds the run folder
    belongs = rf"{re.escape(str(run_dir))} belongs to .*sweep, which is in use by"
    with folder_lock(tmp_path / "sweep", "sweep"), pytest.raises(UsageError, match=belongs):
        plan_resume(run_dir)  # a run of a sweep that is still going is the sweep's

    result = run_train(plan)
    assert result.trained and result.run_dir == run_dir
    assert result.record["status"] == "ok" and result.record["epochs_run"] == 2
    assert result.record["resumed"][0]["from_epoch"] == 1

    written = (run_dir / "run.json").read_text()
    finished = plan_resume(run_dir)
    assert finished.finished
    again = run_train(finished)
    assert not again.trained and again.record["status"] == "ok"
    assert (run_dir / "run.json").read_text() == written  # nothing was touched


def test_resume_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(UsageError, match="not a run folder"):
        plan_resume(tmp_path)
