"""Records on disk: the validated reader, run identity in the loaders, `list_results` / `cnnbench ls`, corrupt records on resume."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cnnbench import results as records
from cnnbench.cli import app
from cnnbench.results import CORRUPT, inspect_record, list_results, load_histories, load_runs, read_json, read_record, record_status
from cnnbench.sweep import plan_sweep, run_sweep, sweep_name

runner = CliRunner()


def _spec_doc(epochs: int, filters: int = 16) -> dict:
    return {
        "name": "convolutional_nn",
        "layers": [{"type": "Conv2D", "filters": filters, "kernel_size": 3}, {"type": "Dense", "units": 10}],
        "training": {"epochs": epochs, "learning_rate": 0.1, "seed": 0},
    }


def _run(run_dir: Path, lr: float, epochs: int, errors: list[float], filters: int = 16, dataset: str = "mnist-5k",
         started: str = "2026-11-20T10:00:00+00:00", status: str = "ok") -> None:  # fmt: skip
    """A finished run folder as train_run leaves it: spec.json, run.json and history.csv."""
    records.write_json(run_dir / "spec.json", _spec_doc(epochs, filters))
    best = min(errors)
    record = {"name": "convolutional_nn", "status": status, "error": None, "learning_rate": lr, "batch_size": 64, "epochs": epochs,
              "epochs_run": len(errors), "best_val_error": best, "final_val_error": errors[-1], "best_epoch": 1 + errors.index(best),
              "data": {"name": dataset, "requested": "mnist", "train_samples": 4000}, "timing": {"epoch_s_median": 0.3},
              "started_at": started}  # fmt: skip
    records.write_json(run_dir / "run.json", record)
    records.write_csv(run_dir / "history.csv", [{"epoch": i + 1, "val_error": e, "learning_rate": lr} for i, e in enumerate(errors)])


def _sweep(folder: Path, epochs: int, errors: dict[float, list[float]], started: str) -> None:
    records.write_json(folder / "sweep.json", {"kind": "lr-sweep", "spec": _spec_doc(epochs), "created_at": started,
                                       "runs": [{"learning_rate": lr, "run_dir": f"lr-{lr:g}"} for lr in errors]})  # fmt: skip
    for lr, curve in errors.items():
        _run(folder / f"lr-{lr:g}", lr, epochs, curve, started=started)


@pytest.fixture
def results(tmp_path) -> Path:
    """A results folder as a student's looks after the course study: train runs, two sweeps of one grid, a bench."""
    root = tmp_path / "results"
    _run(root / "convolutional_nn-20261120-090000", 0.1, 2, [0.30, 0.20], started="2026-11-20T09:00:00+00:00")
    _run(root / "convolutional_nn-20261120-090500", 0.1, 2, [0.35, 0.25], dataset="mnist", started="2026-11-20T09:05:00+00:00")
    _sweep(root / "convolutional_nn-lr-sweep-0.01..0.1-n2-e3-s0-aaaaaa", 3, {0.01: [0.9, 0.8, 0.7], 0.1: [0.5, 0.3, 0.2]},
           "2026-11-20T10:00:00+00:00")  # fmt: skip
    _sweep(root / "convolutional_nn-lr-sweep-0.01..0.1-n2-e4-s0-bbbbbb", 4, {0.01: [0.9, 0.8, 0.7, 0.6], 0.1: [0.4, 0.2, 0.1, 0.05]},
           "2026-11-20T11:00:00+00:00")  # fmt: skip
    bench = root / "bench-convolutional_nn-cccccccc"
    records.write_json(bench / "bench.json", {"spec": _spec_doc(2), "status": "complete", "started_at": "2026-11-20T12:00:00+00:00"})
    records.write_csv(bench / "bench.csv", [{"device": "cpu", "filters": 8}, {"device": "cpu", "filters": 64}])
    for filters in (8, 64):
        _run(bench / "runs" / f"cpu-tensorflow-f{filters}-r1", 0.1, 2, [0.4, 0.3], filters=filters, started="2026-11-20T12:00:00+00:00")
    return root


# --- identity ----------------------------------------------------------------------------------


def test_every_run_says_what_it_is_kind_group_filters_epochs_dataset(results):
    runs = load_runs(results).set_index("run_dir")
    assert list(runs.columns[:5]) == ["kind", "group", "filters", "epochs", "dataset"]
    by_kind = runs.groupby("kind").size().to_dict()
    assert by_kind == {"bench": 2, "sweep": 4, "train": 2}
    bench = runs[runs.kind == "bench"]
    assert sorted(bench.filters) == [8, 64] and set(bench.group) == {"bench-convolutional_nn-cccccccc"}
    sweeps = runs[runs.kind == "sweep"]
    assert sorted(set(zip(sweeps.group, sweeps.epochs, strict=True))) == [
        ("convolutional_nn-lr-sweep-0.01..0.1-n2-e3-s0-aaaaaa", 3), ("convolutional_nn-lr-sweep-0.01..0.1-n2-e4-s0-bbbbbb", 4)]  # fmt: skip
    train = runs[runs.kind == "train"]
    assert set(train.group) == {""} and sorted(train.dataset) == ["mnist", "mnist-5k"]


def test_identity_of_an_old_run_comes_from_its_folder_and_spec(tmp_path):
    # An early record: no epochs, no data block; spec.json knows the epochs and the width.
    records.write_json(tmp_path / "old" / "run.json", {"status": "ok", "learning_rate": 0.1})
    records.write_json(tmp_path / "old" / "spec.json", _spec_doc(7, filters=32))
    assert records.run_identity(tmp_path / "old") == {"kind": "train", "group": "", "filters": 32, "epochs": 7, "dataset": None}


def test_the_readme_example_cannot_mix_unrelated_runs(results):
    # The README's example, verbatim but for the folder name.
    curves = load_histories(results)
    print(curves.groupby(["kind", "group"]).size())  # what is there
    sweep = curves[(curves.kind == "sweep") & (curves.group == "convolutional_nn-lr-sweep-0.01..0.1-n2-e3-s0-aaaaaa")]
    table = sweep.pivot(index="epoch", columns="learning_rate", values="val_error")  # pivot refuses duplicates: nothing is averaged

    assert table.shape == (3, 2) and table.loc[3, 0.1] == 0.2 and table.loc[1, 0.01] == 0.9
    # The old example averaged four runs into lr 0.1; pivot over everything now refuses instead.
    with pytest.raises(ValueError):
        curves.pivot(index="epoch", columns="learning_rate", values="val_error")
    mixed = curves.pivot_table(index="epoch", columns="learning_rate", values="val_error")
    assert mixed.loc[1, 0.1] != 0.5  # what the old example silently showed


# --- ls ----------------------------------------------------------------------------------------


def test_list_results_has_one_row_per_run_sweep_and_bench(results):
    rows = list_results(results)
    assert [(r["kind"], r["name"]) for r in rows] == [
        ("train", "convolutional_nn-20261120-090000"), ("train", "convolutional_nn-20261120-090500"),
        ("sweep", "convolutional_nn-lr-sweep-0.01..0.1-n2-e3-s0-aaaaaa"), ("sweep", "convolutional_nn-lr-sweep-0.01..0.1-n2-e4-s0-bbbbbb"),
        ("bench", "bench-convolutional_nn-cccccccc"),
    ]  # fmt: skip
    first_sweep = rows[2]
    assert (first_sweep["epochs"], first_sweep["status"], first_sweep["best_val_error"], first_sweep["runs"]) == (3, "ok", 0.2, 2)
    assert first_sweep["dataset"] == "mnist-5k"
    bench = rows[4]
    assert (bench["status"], bench["runs"], bench["best_val_error"], bench["epochs"]) == ("ok", 2, None, 2)


def test_a_sweep_with_pending_and_failed_runs_counts_them(results):
    sweep = results / "convolutional_nn-lr-sweep-0.01..0.1-n2-e4-s0-bbbbbb"
    records.write_json(sweep / "lr-0.01" / "run.json", {"status": "failed", "error": "RuntimeError: boom"})
    index = read_json(sweep / "sweep.json")
    index["runs"].append({"learning_rate": 1.0, "run_dir": "lr-1"})
    records.write_json(sweep / "sweep.json", index)
    row = next(r for r in list_results(results) if r["path"] == str(sweep))
    assert (row["status"], row["runs"], row["best_val_error"]) == ("1 failed, 1 ok, 1 pending", 3, 0.05)


def test_ls_marks_runs_that_never_learned(results):
    run = results / "convolutional_nn-20261120-090000" / "run.json"
    records.write_json(run, {**read_json(run), "learned": False})
    sweep_run = results / "convolutional_nn-lr-sweep-0.01..0.1-n2-e3-s0-aaaaaa" / "lr-0.01" / "run.json"
    records.write_json(sweep_run, {**read_json(sweep_run), "learned": False})
    rows = {r["name"]: r for r in list_results(results)}
    assert rows["convolutional_nn-20261120-090000"]["not_learned"] == 1
    assert rows["convolutional_nn-lr-sweep-0.01..0.1-n2-e3-s0-aaaaaa"]["not_learned"] == 1
    lines = runner.invoke(app, ["ls", str(results)]).stdout.splitlines()
    assert "ok (never learned)" in next(line for line in lines if "convolutional_nn-20261120-090000" in line)
    assert "ok (1 never learned)" in next(line for line in lines if "e3-s0-aaaaaa" in line)


def test_cnnbench_ls_prints_a_table_json_and_csv(results):
    table = runner.invoke(app, ["ls", str(results)])
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].rstrip() == f"{results}: 5 items"
    body = [line for line in lines if "convolutional_nn" in line]
    assert len(body) == 5
    assert "sweep" in body[2] and "convolutional_nn-lr-sweep-0.01..0.1-n2-e3-s0-aaaaaa" in body[2] and "0.2000" in body[2]
    assert "2026-11-20 10:00" in body[2] and "mnist-5k" in body[2]

    as_json = runner.invoke(app, ["ls", str(results), "--json"])
    assert [r["kind"] for r in json.loads(as_json.stdout)] == ["train", "train", "sweep", "sweep", "bench"]
    as_csv = runner.invoke(app, ["ls", str(results), "--csv"])
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(parsed) == 5 and parsed[3]["epochs"] == "4" and parsed[3]["best_val_error"] == "0.05"


def test_ls_of_a_missing_or_empty_folder(tmp_path):
    missing = runner.invoke(app, ["ls", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and missing.stderr.strip() == f"error: {tmp_path / 'nope'}: no such folder"
    empty = runner.invoke(app, ["ls", str(tmp_path)])
    assert empty.exit_code == 0 and "nothing below" in empty.stderr and empty.stdout == ""


# --- records that cannot be trusted ------------------------------------------------------------

BAD_RECORDS = {
    "torn": ('{"status": "ok", "best_val', "not valid JSON"),
    "a list": ("[1, 2]", "holds list, not a JSON object"),
    "no status": ('{"learning_rate": 0.1}', "has no status"),
    "status a number": ('{"status": 5}', "status is 5, expected a string"),
    "unknown status": ('{"status": "finished"}', "status 'finished' is not one of ok, diverged"),
    "error as text number": ('{"status": "ok", "best_val_error": "0.2"}', "best_val_error is '0.2', expected a number or null"),
    "boolean epochs": ('{"status": "ok", "epochs": true}', "epochs is True, expected an integer or null"),
    "timing a list": ('{"status": "ok", "timing": [1]}', "timing is [1], expected an object or null"),
    "timing value text": ('{"status": "ok", "timing": {"epoch_s_median": "fast"}}', "timing.epoch_s_median is 'fast'"),
    "data name number": ('{"status": "ok", "data": {"name": 3}}', "data.name is 3, expected a string or null"),
    "huge value": ('{"status": "' + "x" * 5000 + '"}', "status '" + "x" * 56 + "... is not one of"),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_a_run_json_that_cannot_be_trusted_is_named_not_used(case, tmp_path):
    text, problem = BAD_RECORDS[case]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(text)
    record, found = inspect_record(tmp_path / "run" / "run.json")
    assert record is None and found.startswith(problem) and len(found) < 200
    assert read_record(tmp_path / "run" / "run.json") is None
    assert record_status(tmp_path / "run") == (CORRUPT, found)


def test_a_folder_where_run_json_should_be(tmp_path):
    (tmp_path / "run" / "run.json").mkdir(parents=True)
    assert record_status(tmp_path / "run") == (CORRUPT, "is a folder, not a file")
    assert record_status(tmp_path / "missing") == (None, None)


def test_loaders_and_ls_skip_corrupt_runs_and_name_them(results):
    bad = results / "convolutional_nn-20261120-090000" / "run.json"
    bad.write_text('{"status": "ok", "epochs_run": "two"}')
    (results / "convolutional_nn-lr-sweep-0.01..0.1-n2-e3-s0-aaaaaa" / "lr-0.01" / "run.json").unlink()
    (results / "convolutional_nn-lr-sweep-0.01..0.1-n2-e3-s0-aaaaaa" / "lr-0.01" / "run.json").mkdir()
    assert len(load_runs(results)) == 6 and load_histories(results).run_dir.nunique() == 6
    rows = {r["name"]: r for r in list_results(results)}
    assert rows["convolutional_nn-20261120-090000"]["status"] == CORRUPT
    assert rows["convolutional_nn-lr-sweep-0.01..0.1-n2-e3-s0-aaaaaa"]["status"] == "1 corrupt, 1 ok"


def test_a_garbage_history_is_an_empty_curve_not_a_traceback(results):
    (results / "convolutional_nn-20261120-090000" / "history.csv").write_bytes(b"\x00\xff garbage\n\"unclosed")
    curves = load_histories(results)
    assert "convolutional_nn-20261120-090000" not in " ".join(curves.run_dir) and curves.run_dir.nunique() == 7


@pytest.fixture
def fake_training(monkeypatch):
    """The one door to training replaced by an instant fake that records what it trained."""
    trained: list[float] = []

    def fake_train_run(spec, run_dir, options, on_epoch=None, on_start=None):
        trained.append(spec.training.learning_rate)
        record = {"name": spec.name, "status": "ok", "error": None, "learning_rate": spec.training.learning_rate, "best_val_error": 0.1,
                  "epochs_run": 1, "data": {"name": "mnist-5k"}}  # fmt: skip
        records.write_json(Path(run_dir) / "run.json", record)
        return record

    monkeypatch.setattr("cnnbench.train.train_run", fake_train_run)  # the one door, whichever executor calls it
    return trained


def test_a_corrupt_record_of_a_finished_run_is_announced_kept_aside_and_retrained(tiny_spec, tmp_path, fake_training):
    plan = plan_sweep(tiny_spec, "0.01,0.1,1", tmp_path)
    records.write_json(plan.runs[0].run_dir / "run.json", {"status": "ok", "best_val_error": 0.2})
    records.write_json(plan.runs[1].run_dir / "run.json", {"status": "ok", "best_val_error": "0.1"})  # valid JSON, wrong type
    (plan.runs[2].run_dir / "run.json").mkdir(parents=True)  # a folder where run.json should be
    (plan.runs[2].run_dir / "run.json" / "notes.txt").write_text("mine")
    (plan.runs[1].run_dir / "history.csv").write_text("epoch,val_error\n1,0.1\n")

    with pytest.warns(UserWarning) as caught:
        plan = plan_sweep(tiny_spec, "0.01,0.1,1", tmp_path)
    messages = [str(w.message) for w in caught]
    assert messages == [
        f"{plan.runs[1].run_dir / 'run.json'}: best_val_error is '0.1', expected a number or null; "
        "this run will be trained again (the record is kept as run.json.corrupt)",
        f"{plan.runs[2].run_dir / 'run.json'}: is a folder, not a file; "
        "this run will be trained again (the record is kept as run.json.corrupt)",
    ]
    assert [(r.status, r.skip) for r in plan.runs] == [("ok", True), (CORRUPT, False), (CORRUPT, False)]

    run_sweep(plan)
    assert fake_training == [0.1, 1.0]
    assert read_json(plan.runs[1].run_dir / "run.json.corrupt") == {"status": "ok", "best_val_error": "0.1"}  # nothing lost
    assert (plan.runs[2].run_dir / "run.json.corrupt" / "notes.txt").read_text() == "mine"
    assert read_json(plan.runs[2].run_dir / "run.json")["status"] == "ok"


def test_dry_run_shows_corrupt_runs_and_warns_naming_the_file(tmp_path):
    plan_args = ["sweep-lr", "--values", "0.01,0.1", "--dry-run", "--out", str(tmp_path)]
    first = runner.invoke(app, plan_args)
    sweep_dir = Path(first.stdout.splitlines()[0].split(": ", 1)[1].rsplit(" (", 1)[0])
    (sweep_dir / "lr-0.1").mkdir(parents=True)
    (sweep_dir / "lr-0.1" / "run.json").write_text('{"status": "ok", "epochs_run": [3]}')
    result = runner.invoke(app, plan_args)
    assert result.exit_code == 0, result.output
    assert f"warning: {sweep_dir / 'lr-0.1' / 'run.json'}: epochs_run is [3], expected an integer or null" in result.stderr
    line = next(line for line in result.stdout.splitlines() if "lr 0.1 " in line)
    assert "train again (was corrupt)" in line
    assert (sweep_dir / "lr-0.1" / "run.json").read_text() == '{"status": "ok", "epochs_run": [3]}'  # a dry run touches nothing


# --- sweep names --------------------------------------------------------------------------------


def test_sweep_names_carry_epochs_and_seed(tiny_spec):
    name = sweep_name(tiny_spec, [0.01, 0.03, 0.05])
    assert name.startswith("convolutional_nn-lr-sweep-0.01..0.05-n3-e2-s0-")
    assert sweep_name(tiny_spec.with_overrides(epochs=20, seed=3), [0.01, 0.03, 0.05]).startswith(
        "convolutional_nn-lr-sweep-0.01..0.05-n3-e20-s3-"
    )


def test_a_sweep_started_under_the_old_name_still_resumes(tiny_spec, tmp_path):
    from cnnbench.sweep import _sweep_name

    legacy = tmp_path / _sweep_name(tiny_spec, [0.01, 0.1], legacy=True)
    records.write_json(legacy / "sweep.json", {"kind": "lr-sweep"})
    records.write_json(legacy / "lr-0.01" / "run.json", {"status": "ok"})
    plan = plan_sweep(tiny_spec, "0.01,0.1", tmp_path)
    assert plan.sweep_dir == legacy and [r.skip for r in plan.runs] == [True, False]


def test_pandas_is_what_the_loaders_return(results):
    assert isinstance(load_runs(results), pd.DataFrame)


# --- honest labels --------------------------------------------------------------------------------


def test_the_sweep_table_names_the_data_the_runs_used_not_the_spec(tmp_path, fake_training, monkeypatch):
    monkeypatch.setenv("CNNBENCH_OFFLINE", "0")  # restored after the test; --offline sets it to 1 for the workers
    result = runner.invoke(app, ["sweep-lr", "--values", "0.01,0.1", "--epochs", "2", "--out", str(tmp_path), "--offline"])
    assert result.exit_code == 0, result.output
    assert "data mnist-5k (full MNIST is not cached and downloads are off)" in result.stderr
    assert os.environ["CNNBENCH_OFFLINE"] == "1"
    title = result.stdout.splitlines()[0]
    assert title.startswith("convolutional_nn: mnist-5k, sgd, batch 64, 2 epochs, seed 0")
    assert "mnist," not in result.stdout
    (summary,) = tmp_path.glob("*/summary.csv")
    assert [row["dataset"] for row in csv.DictReader(summary.open())] == ["mnist-5k", "mnist-5k"]


def test_a_folder_where_sweep_json_should_be_is_kept_aside(tiny_spec, tmp_path, fake_training):
    plan = plan_sweep(tiny_spec, "0.01", tmp_path)
    (plan.sweep_dir / "sweep.json").mkdir(parents=True)
    (plan.sweep_dir / "sweep.json" / "mine.txt").write_text("mine")
    run_sweep(plan)
    assert read_json(plan.sweep_dir / "sweep.json")["kind"] == "lr-sweep"
    assert (plan.sweep_dir / "sweep.json.corrupt" / "mine.txt").read_text() == "mine"


def test_a_run_and_a_bench_record_the_same_provenance():
    """run.json's `environment` and bench.json's `machine`/`versions` come from one place (cnnbench.provenance):
    the same host, CPU and installed versions; a run names only its own backend's version beside TensorFlow's."""
    import platform

    from cnnbench.provenance import environment, machine, versions

    env, host, installed = environment(threads=3), machine(), versions()
    same_host, same_versions = ("cpu", "cpu_cores", "hostname", "platform", "python"), ("cnnbench", "keras", "tensorflow", "numpy")
    assert {k: env[k] for k in same_host} == {k: host[k] for k in same_host}
    assert env["python"] == platform.python_version() and env["threads"] == 3
    assert {k: env[k] for k in same_versions} == {k: installed[k] for k in same_versions}
    assert installed["keras"] and installed["numpy"]
    for backend in ("jax", "torch"):  # named by a run only when it trains on that backend
        assert env[backend] == (installed[backend] if env["backend"] == backend else None)


def test_one_layout_answers_which_folder_is_a_run_sweep_study_or_bench(tmp_path):
    """cnnbench.layout is asked by every reader: `ls`/`plot` discovery, run identity, the sinks, run ownership."""
    from cnnbench import layout
    from cnnbench.folders import run_is_live
    from cnnbench.results import find_results, run_identity
    from cnnbench.sinks import run_name

    def run(folder: Path) -> Path:
        folder.mkdir(parents=True)
        records.write_json(folder / "run.json", {"status": "ok", "data": {"name": "mnist-5k"}})
        return folder

    lone, swept = run(tmp_path / "lone"), run(tmp_path / "sw" / "lr-0.1")
    studied, benched = run(tmp_path / "st" / "point-a" / "seed-0"), run(tmp_path / "b" / "runs" / "cpu-tf-8-r1")
    records.write_json(tmp_path / "sw" / "sweep.json", {"runs": [{"run_dir": "lr-0.1"}, {"run_dir": "lr-1"}]})
    records.write_json(tmp_path / "st" / "sweep.json", {"kind": "study"})
    records.write_json(tmp_path / "b" / "bench.json", {"status": "complete"})

    assert find_results(tmp_path) == {"runs": [lone], "sweeps": [tmp_path / "st", tmp_path / "sw"], "benches": [tmp_path / "b"]}
    kinds = {p.name: (run_identity(p)["kind"], run_identity(p)["group"]) for p in (lone, swept, studied, benched)}
    assert kinds == {"lone": ("train", ""), "lr-0.1": ("sweep", "sw"), "seed-0": ("sweep", "st"), "cpu-tf-8-r1": ("bench", "b")}
    assert [layout.group_of(p) for p in (lone, studied)] == [("train", None), ("sweep", tmp_path / "st")]
    assert run_name(studied) == "st/point-a/seed-0" and run_name(benched) == "b/runs/cpu-tf-8-r1" and run_name(lone) == "lone"
    assert layout.is_study(tmp_path / "st") and not layout.is_study(tmp_path / "sw")
    assert layout.member_runs(tmp_path / "sw", "sweep", read_json(tmp_path / "sw" / "sweep.json")) == [swept, tmp_path / "sw" / "lr-1"]
    assert layout.member_runs(tmp_path / "b", "bench") == [benched]
    assert not any(run_is_live(p) for p in (lone, swept, studied, benched))
    from cnnbench.lock import folder_lock

    with folder_lock(tmp_path / "st", "sweep"):  # a study holds its folder: its runs two levels down are live
        assert run_is_live(studied) and not run_is_live(lone)
