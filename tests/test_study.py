"""The study pipeline of `cnnbench sweep`: resume by identity, grid edits, statistics per point, verdicts, kill and resume."""

from __future__ import annotations

import csv
import math
import signal
import time
from pathlib import Path

import pytest
from processes import finish, start_cli, stop, wait_for
from typer.testing import CliRunner

from cnnbench.cli import app
from cnnbench.grid import make_grid
from cnnbench.results import read_json, write_json
from cnnbench.study import plan_study, run_study, spec_identity, study_name
from cnnbench.verdict import make_verdict, point_rows, stats

runner = CliRunner()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def fake_training(monkeypatch):
    """The one door to training replaced by an instant fake that writes spec.json and run.json as train_run does.

    `errors` maps (learning rate, first layer's filters, seed) to best_val_error (default 0.5); `statuses` the same keys
    to a status (default ok); calls lists the keys trained.
    """
    calls: list[tuple] = []
    errors: dict[tuple, float] = {}
    statuses: dict[tuple, str] = {}

    def fake_train_run(spec, run_dir, options, on_epoch=None, on_start=None):
        key = (spec.training.learning_rate, spec.layers[0].get("filters"), spec.training.seed)
        calls.append(key)
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "spec.json", spec.to_dict())
        record = {"name": spec.name, "status": "running", "error": None, "learning_rate": key[0], "seed": key[2]}
        write_json(run_dir / "run.json", record)
        if on_start:
            on_start(record)
        error = errors.get(key, 0.5)
        status = statuses.get(key, "ok")
        record.update(status=status, best_val_error=error, final_val_error=error + 0.01, best_epoch=1, epochs_run=1, total_time_s=0.01,
                      learned=error < 0.85, timing={"epoch_s_median": 0.5}, data={"name": "mnist-5k"})  # fmt: skip
        write_json(run_dir / "run.json", record)
        return record

    monkeypatch.setattr("cnnbench.train.train_run", fake_train_run)
    return calls, errors, statuses


def study(spec, tmp_path, sets, **kw):
    seeds = kw.pop("seeds", None)
    return plan_study(make_grid(spec, sets, seeds=seeds), tmp_path, **kw)


# --- resume by identity -------------------------------------------------------------------------------


def test_a_grid_edit_trains_only_new_points_and_keeps_removed_ones(fake_training, tiny_spec, tmp_path):
    calls, _, _ = fake_training
    first = run_study(study(tiny_spec, tmp_path, ["training.learning_rate=0.1,0.2"], seeds="2"))
    assert len(calls) == 4
    kept = {run.run_dir: snapshot(run.run_dir) for run in first.plan.runs}
    time.sleep(0.01)

    wider = study(tiny_spec, tmp_path, ["training.learning_rate=0.1,0.2,0.4"], seeds="2")
    assert wider.study_dir == first.plan.study_dir
    assert [run.skip for run in wider.runs] == [True, True, True, True, False, False]
    run_study(wider)
    assert calls[4:] == [(0.4, 16, 0), (0.4, 16, 1)]
    assert {d: snapshot(d) for d in kept} == kept  # the finished runs are untouched, bytes and times

    narrower = study(tiny_spec, tmp_path, ["training.learning_rate=0.2,0.4"], seeds="2")
    result = run_study(narrower)
    assert len(calls) == 6  # nothing trained
    assert (first.plan.study_dir / "learning_rate-0.1" / "seed-0" / "run.json").is_file()  # never deleted
    assert [row["training.learning_rate"] for row in read_csv(narrower.study_dir / "points.csv")] == ["0.2", "0.4"]
    assert len(result.runs) == 4
    index = read_json(narrower.study_dir / "sweep.json")
    assert sum(not r["in_grid"] for r in index["runs"]) == 2

    everything = run_study(study(tiny_spec, tmp_path, ["training.learning_rate=0.2,0.4"], seeds="2", show_all=True))
    assert len(everything.runs) == 6 and len(calls) == 6
    assert sorted(row["training.learning_rate"] for row in read_csv(narrower.study_dir / "points.csv")) == ["0.1", "0.2", "0.4"]


def test_two_spellings_of_one_configuration_are_the_same_runs(fake_training, tiny_spec, tmp_path):
    calls, _, _ = fake_training
    run_study(study(tiny_spec, tmp_path, ["layers.*.filters=8", "training.learning_rate=0.1"]))
    again = study(tiny_spec, tmp_path, ["layers.0.filters=8", "layers.2.filters=8", "training.learning_rate=1e-1"])
    assert [run.skip for run in again.runs] == [True]
    assert again.runs[0].run_dir.relative_to(again.study_dir) == Path("filters-8_learning_rate-0.1/seed-0")
    run_study(again)
    assert len(calls) == 1


def test_a_run_written_before_a_change_keeps_its_identity(fake_training, tiny_spec, tmp_path):
    """A run folder as an earlier cnnbench left it: its spec.json without the keys added since (engine,
    steps_per_execution, the knobs), another description, in a folder named otherwise. The study keeps it."""
    calls, _, _ = fake_training
    layers = [{"type": "Conv2D", "filters": 16, "kernel_size": 3, "strides": 1, "padding": "same", "activation": "relu"},
              {"type": "MaxPooling2D", "pool_size": 2},
              {"type": "Conv2D", "filters": 16, "kernel_size": 3, "strides": 1, "padding": "same", "activation": "relu"},
              {"type": "MaxPooling2D", "pool_size": 2}, {"type": "Flatten"}, {"type": "Dense", "units": 128, "activation": "relu"},
              {"type": "Dense", "units": 10, "activation": "softmax"}]  # fmt: skip
    older = {"name": "convolutional_nn", "description": "written by an earlier version", "input_shape": [28, 28, 1], "layers": layers,
             "training": {"optimizer": "sgd", "learning_rate": 0.05, "batch_size": 64, "epochs": 2, "seed": 0},
             "data": {"dataset": "mnist-5k", "path": None, "train_samples": 512, "val_samples": 128, "test_samples": 128}}  # fmt: skip
    grid = make_grid(tiny_spec, ["training.learning_rate=0.05"])
    # Frozen: a change to what identifies a run (a new key with a default in spec.json, another hash) fails here.
    identity = (spec_identity(grid.point_spec(grid.points[0])), study_name(grid))
    assert identity == ("b4bc458f7a132ca3", "convolutional_nn-sweep-learning_rate-9e54a6")
    run_dir = tmp_path / "convolutional_nn-sweep-learning_rate-9e54a6" / "lr-0.05-earlier" / "seed-0"
    run_dir.mkdir(parents=True)
    write_json(run_dir / "spec.json", older)
    write_json(run_dir / "run.json", {"name": "convolutional_nn", "status": "ok", "best_val_error": 0.3, "final_val_error": 0.31,
                                      "epochs_run": 2, "learned": True})  # fmt: skip
    plan = plan_study(grid, tmp_path)
    assert [(run.run_dir, run.skip, run.identity) for run in plan.runs] == [(run_dir, True, "b4bc458f7a132ca3")]
    result = run_study(plan)
    assert calls == [] and result.runs[0]["best_val_error"] == 0.3


def test_finished_statuses_kept_the_rest_retrained_force_retrains_corrupt_set_aside(fake_training, tiny_spec, tmp_path):
    calls, _, statuses = fake_training
    statuses[(0.2, 16, 0)] = "failed"
    statuses[(0.4, 16, 0)] = "diverged"
    plan = study(tiny_spec, tmp_path, ["training.learning_rate=0.1,0.2,0.4"])
    run_study(plan)
    (plan.study_dir / "learning_rate-0.1" / "seed-0" / "run.json").write_text("{torn")
    with pytest.warns(UserWarning, match="this run will be trained again"):
        again = study(tiny_spec, tmp_path, ["training.learning_rate=0.1,0.2,0.4"])
    assert [(run.status, run.skip) for run in again.runs] == [("corrupt", False), ("failed", False), ("diverged", True)]
    run_study(again)
    assert calls[3:] == [(0.1, 16, 0), (0.2, 16, 0)]
    assert (plan.study_dir / "learning_rate-0.1" / "seed-0" / "run.json.corrupt").read_text() == "{torn"
    run_study(study(tiny_spec, tmp_path, ["training.learning_rate=0.1,0.2,0.4"], force=True))
    assert len(calls) == 8


# --- statistics and verdicts ---------------------------------------------------------------------------


def test_per_point_statistics_against_hand_computed_numbers(fake_training, tiny_spec, tmp_path):
    _, errors, statuses = fake_training
    errors.update({(0.1, 16, 0): 0.10, (0.1, 16, 1): 0.12, (0.1, 16, 2): 0.11, (0.2, 16, 0): 0.30, (0.2, 16, 1): 0.20})
    statuses[(0.2, 16, 2)] = "diverged"
    plan = study(tiny_spec, tmp_path, ["training.learning_rate=0.1,0.2"], seeds="3")
    run_study(plan)
    points = read_csv(plan.study_dir / "points.csv")
    a, b = points
    assert (a["n"], a["n_ok"], a["n_diverged"], a["flagged"]) == ("3", "3", "0", "False")
    # 0.10, 0.12, 0.11: mean 0.11, std 0.01, t(0.975, 2) = 4.302653, half width 4.302653 * 0.01 / sqrt(3) = 0.0248414
    assert float(a["best_val_error_mean"]) == pytest.approx(0.11)
    assert float(a["best_val_error_std"]) == pytest.approx(0.01)
    assert float(a["best_val_error_median"]) == pytest.approx(0.11)
    assert (float(a["best_val_error_min"]), float(a["best_val_error_max"])) == (0.10, 0.12)
    assert float(a["best_val_error_ci95_low"]) == pytest.approx(0.11 - 0.0248414, abs=1e-7)
    assert float(a["best_val_error_ci95_high"]) == pytest.approx(0.11 + 0.0248414, abs=1e-7)
    assert float(a["final_val_error_mean"]) == pytest.approx(0.12)
    assert float(a["epoch_s_median_mean"]) == 0.5
    # the diverged seed is counted, not averaged: 0.30 and 0.20 over 2 ok seeds, t(0.975, 1) = 12.706205
    assert (b["n"], b["n_ok"], b["n_diverged"], b["flagged"]) == ("3", "2", "1", "True")
    assert float(b["best_val_error_mean"]) == pytest.approx(0.25)
    half = 12.706205 * math.sqrt(0.005) / math.sqrt(2)
    assert float(b["best_val_error_ci95_high"]) == pytest.approx(0.25 + half)
    assert stats([0.4])["ci95_low"] is None  # one seed: no interval
    runs = read_csv(plan.study_dir / "runs.csv")
    assert [r["seed"] for r in runs] == ["0", "1", "2", "0", "1", "2"] and runs[5]["status"] == "diverged"


def test_tune_picks_the_best_rate_for_each_width_and_the_cli_prints_it(fake_training, tiny_spec, tmp_path):
    _, errors, _ = fake_training
    # filters 4 learn best at 0.2, filters 8 at 0.1; overall best: filters 8 at 0.1
    errors.update({(0.1, 4, 0): 0.40, (0.2, 4, 0): 0.30, (0.1, 8, 0): 0.20, (0.2, 8, 0): 0.25})
    args = ["sweep", "--set", "layers.*.filters=4,8", "--set", "training.learning_rate=0.1,0.2", "--tune", "training.learning_rate",
            "--epochs", "1", "--data", "mnist-5k", "--out", str(tmp_path)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (folder,) = tmp_path.iterdir()
    verdict = read_json(folder / "sweep.json")["verdict"]
    assert verdict["best"]["point"] == "filters-8_learning_rate-0.1"
    assert verdict["at_edge"] == ["layers.*.filters", "training.learning_rate"]
    assert [(t["layers.*.filters"], t["best"]["training.learning_rate"], t["at_edge"]) for t in verdict["tuned"]] == [(4, 0.2, True),
                                                                                                                   (8, 0.1, True)]
    assert "best training.learning_rate" in result.stdout
    assert "best: filters-8_learning_rate-0.1, mean best val error 0.2000" in result.stdout


def test_median_rank_counts_a_bad_seed_worst_and_flags_never_learned_points():
    runs = [
        {"point": "a", "x": 1, "status": "ok", "best_val_error": 0.10, "learned": True},
        {"point": "a", "x": 1, "status": "diverged", "best_val_error": None},
        {"point": "a", "x": 1, "status": "diverged", "best_val_error": None},
        {"point": "b", "x": 2, "status": "ok", "best_val_error": 0.20, "learned": True},
        {"point": "b", "x": 2, "status": "ok", "best_val_error": 0.22, "learned": True},
        {"point": "b", "x": 2, "status": "ok", "best_val_error": 0.21, "learned": True},
        {"point": "c", "x": 3, "status": "ok", "best_val_error": 0.89, "learned": False},
    ]
    points = point_rows(runs, ["x"])
    by_mean = make_verdict(points, {"x": [1, 2, 3]}, rank="mean")
    assert by_mean.best["point"] == "a" and by_mean.flagged and by_mean.at_edge == ["x"]
    by_median = make_verdict(points, {"x": [1, 2, 3]}, rank="median")
    assert by_median.best["point"] == "b" and not by_median.flagged and by_median.at_edge == []
    assert by_mean.never_learned == ["c"]
    assert by_mean.score == pytest.approx(0.10) and by_median.score == pytest.approx(0.21)  # the error each ranks by
    assert make_verdict([], {"x": [1, 2, 3]}).score is None
    fixed = make_verdict(points, {"layers.*.filters": [1, 2, 3]}, {"training": {"learning_rate": 0.1}})
    assert fixed.note.startswith("the learning rate is held at 0.1 for every point")
    assert make_verdict(points, {"training.learning_rate": [1, 2, 3]}, {"training": {"learning_rate": 0.1}}).note is None


# --- real training: kill, interrupt, resume ---------------------------------------------------------------


def test_a_killed_study_resumes_with_finished_runs_byte_identical(tiny_spec, tmp_path, write_spec):
    spec_file = write_spec(tiny_spec.with_overrides(epochs=3).to_dict(), "tiny.json")
    out = tmp_path / "results"
    process = start_cli("sweep", str(spec_file), "--set", "training.learning_rate=0.05,0.1", "--out", str(out))
    try:
        runs = lambda: sorted(out.glob("*/*/seed-0/run.json"))  # noqa: E731

        def second_run_early() -> bool:
            # the first run finished and the second one running, at most 1 of its 3 epochs done: killed before it
            # ends (a second run already `ok` when this looks would make the resume below a different test)
            found = runs()
            if [read_json(p).get("status") for p in found] != ["ok", "running"]:
                return False
            history = found[1].parent / "history.csv"
            return not history.is_file() or len(history.read_text().splitlines()) <= 2

        wait_for(second_run_early, process)
        stop(process, signal.SIGKILL, group=True)
    finally:
        finish(process)
    (folder,) = out.iterdir()
    finished = snapshot(folder / "learning_rate-0.05" / "seed-0")
    time.sleep(0.01)
    plan = plan_study(make_grid(tiny_spec.with_overrides(epochs=3), ["training.learning_rate=0.05,0.1"]), out)
    assert plan.study_dir == folder
    assert [(run.status, run.skip) for run in plan.runs] == [("ok", True), ("running", False)]
    result = run_study(plan)
    assert snapshot(folder / "learning_rate-0.05" / "seed-0") == finished
    assert [row["status"] for row in read_csv(folder / "runs.csv")] == ["ok", "ok"]
    assert [row["epochs_run"] for row in result.runs] == [3, 3]


def test_an_interrupted_run_continues_from_its_checkpoint(tiny_spec, tmp_path):
    spec = tiny_spec.with_overrides(epochs=3)

    def ctrl_c_after_epoch_1(event):
        if event.kind == "epoch" and event.row["epoch"] == 1:
            raise KeyboardInterrupt

    plan = plan_study(make_grid(spec, ["training.learning_rate=0.05"]), tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_study(plan, on_event=ctrl_c_after_epoch_1)
    assert [row["status"] for row in read_csv(plan.study_dir / "runs.csv")] == ["interrupted"]
    again = plan_study(make_grid(spec, ["training.learning_rate=0.05"]), tmp_path)
    assert again.runs[0].resume
    dry = runner.invoke(app, ["sweep", "--set", "training.learning_rate=0.05", "--epochs", "3", "--data", "mnist-5k", "--train-samples",
                              "512", "--val-samples", "128", "--test-samples", "128", "--dry-run", "--out", str(tmp_path)])  # fmt: skip
    assert "train again (was interrupted, continues from its checkpoint)" in dry.stdout, dry.output
    result = run_study(again)
    record = read_json(again.runs[0].run_dir / "run.json")
    assert record["status"] == "ok" and record["epochs_run"] == 3
    assert [r["from_epoch"] for r in record["resumed"]] == [1]
    assert len(read_csv(again.runs[0].run_dir / "history.csv")) == 3
    assert result.verdict.best["point"] == "learning_rate-0.05"


def test_fused_groups_join_runs_that_differ_only_in_the_rate_and_seeds_stay_apart(tiny_spec, tmp_path):
    from cnnbench.study import StudyOptions, _groups

    plan = study(tiny_spec, tmp_path, ["layers.*.filters=8,16", "training.learning_rate=0.05,0.1,0.2"], seeds="2")
    groups = _groups(plan.to_train, StudyOptions(fuse=2), fused=True)
    shown = [[(run.point, run.seed) for run in group] for group in groups]
    assert shown == [
        [((8, 0.05), 0), ((8, 0.1), 0)], [((8, 0.2), 0)], [((8, 0.05), 1), ((8, 0.1), 1)], [((8, 0.2), 1)],
        [((16, 0.05), 0), ((16, 0.1), 0)], [((16, 0.2), 0)], [((16, 0.05), 1), ((16, 0.1), 1)], [((16, 0.2), 1)],
    ]  # fmt: skip
    assert len(_groups(plan.to_train, StudyOptions(), fused=False)) == 12


def test_a_study_folder_in_use_is_refused_in_one_line(fake_training, tiny_spec, tmp_path):
    from cnnbench.errors import UsageError
    from cnnbench.lock import folder_lock

    plan = study(tiny_spec, tmp_path, ["training.learning_rate=0.1"])
    with folder_lock(plan.study_dir, "sweep"), pytest.raises(UsageError, match="in use"):
        run_study(plan)
    assert fake_training[0] == []


def test_plot_draws_the_study_figures(fake_training, tiny_spec, tmp_path):
    from cnnbench.plot import plot_results

    _, errors, statuses = fake_training
    statuses[(0.2, 8, 1)] = "diverged"
    plan = study(tiny_spec, tmp_path, ["layers.*.filters=4,8", "training.learning_rate=0.1,0.2"], seeds="2", tune="training.learning_rate")
    run_study(plan)
    written = plot_results(tmp_path, formats=("png",))
    names = {p.name for p in written if p.parent == plan.study_dir}
    assert {"error_vs_axes.png", "heatmap.png", "isolation.png", "study_curves.png"} <= names
    from cnnbench.plot import compare

    rows, _ = compare([plan.study_dir], out=tmp_path / "compared", formats=("png",))
    assert [row["run"] for row in rows] == [f"filters-{f}_learning_rate-{lr}/seed-{s}" for lr in (0.1, 0.2) for f in (4, 8) for s in (0, 1)]


def test_the_cli_keeps_removed_values_out_unless_all_and_records_the_sampling(fake_training, tmp_path):
    calls, _, _ = fake_training
    base = ["sweep", "--epochs", "1", "--data", "mnist-5k", "--out", str(tmp_path)]
    assert runner.invoke(app, [*base, "--set", "training.learning_rate=0.1,0.2"]).exit_code == 0
    narrower = runner.invoke(app, [*base, "--set", "training.learning_rate=0.2"])
    assert narrower.exit_code == 0 and len(calls) == 2
    (folder,) = tmp_path.iterdir()
    assert [r["training.learning_rate"] for r in read_csv(folder / "runs.csv")] == ["0.2"]
    everything = runner.invoke(app, [*base, "--set", "training.learning_rate=0.2", "--all"])
    assert everything.exit_code == 0 and len(calls) == 2
    assert sorted(r["training.learning_rate"] for r in read_csv(folder / "runs.csv")) == ["0.1", "0.2"]

    sampled = runner.invoke(app, [*base, "--set", "training.learning_rate=1e-3..1e-1", "--method", "sobol", "--n", "4"])
    assert sampled.exit_code == 0, sampled.output
    assert list(tmp_path.iterdir()) == [folder]  # the same axis on the same spec: the same study, whatever the values
    index = read_json(folder / "sweep.json")
    assert (index["method"], index["n"], index["sample_seed"]) == ("sobol", 4, 0)
    assert index["axes"][0]["range"] == [0.001, 0.1] and len(index["axes"][0]["values"]) == 4
