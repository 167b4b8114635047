"""Tracking sinks (--tensorboard, --mlflow) and `cnnbench export`, read back with TensorBoard's and MLflow's own readers."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnbench.cli import app
from tests.conftest import sink_net

pytest.importorskip("tensorboardX")
pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

runner = CliRunner()
TINY_NET = sink_net()
RATES = ("--values", "0.05,0.1")


def history(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "history.csv") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def accumulator(path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path))
    acc.Reload()
    return acc


def scalars(path: Path, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in accumulator(path).Scalars(tag)]


def session_start(path: Path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = accumulator(path).PluginTagToContent("hparams")["_hparams_/session_start_info"]
    return plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info


def client(db: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{db}")


def mlflow_runs(db: Path) -> list:
    c = client(db)
    return list(c.search_runs([c.get_experiment_by_name("cnnbench").experiment_id]))


@pytest.fixture(scope="module")
def swept(tmp_path_factory, _mlflow_template):
    """A 2-rate sweep of a tiny net, trained with both sinks on: (results folder, TensorBoard folder, MLflow db)."""
    root = tmp_path_factory.mktemp("swept")
    spec = root / "tiny.json"
    spec.write_text(json.dumps(TINY_NET))
    db = root / "mlruns.db"
    shutil.copy(_mlflow_template, db)
    result = runner.invoke(app, ["sweep-lr", str(spec), *RATES, "--out", str(root / "results"), "--device", "cpu",
                                 "--tensorboard", str(root / "tb"), "--mlflow", f"sqlite:///{db}"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning: tensorboard" not in result.stderr and "warning: mlflow" not in result.stderr
    return root / "results", root / "tb", db


def sweep_runs(results: Path) -> list[Path]:
    (sweep_dir,) = results.iterdir()
    return sorted(p for p in sweep_dir.iterdir() if (p / "run.json").is_file())


def test_tensorboard_holds_keras_layout_with_history_values_and_hparams(swept):
    results, tb, _ = swept
    runs = sweep_runs(results)
    assert len(runs) == 2
    for run_dir in runs:
        folder = tb / run_dir.parent.name / run_dir.name  # the run's name: its folder relative to the results root
        rows = history(run_dir)
        assert [step for step, _ in scalars(folder / "train", "epoch_loss")] == [1, 2]
        for part, tag, column in (("train", "epoch_loss", "loss"), ("train", "epoch_accuracy", "accuracy"),
                                  ("validation", "epoch_loss", "val_loss"), ("validation", "epoch_accuracy", "val_accuracy"),
                                  ("validation", "epoch_error", "val_error"), ("train", "epoch_time_s", "epoch_time_s"),
                                  ("train", "samples_per_s", "samples_per_s"), ("train", "learning_rate", "learning_rate")):  # fmt: skip
            assert scalars(folder / part, tag) == [(int(r["epoch"]), pytest.approx(r[column], rel=1e-6)) for r in rows], (part, tag)
        record = json.loads((run_dir / "run.json").read_text())
        assert scalars(folder, "best_val_error") == [(2, pytest.approx(record["best_val_error"], rel=1e-6))]
        start = session_start(folder)
        assert start.hparams["learning_rate"].number_value == pytest.approx(record["learning_rate"])
        assert start.hparams["filters"].number_value == 2
        assert start.hparams["status"].string_value == "ok"
        assert {"batch_size", "optimizer", "epochs", "seed", "dataset", "device", "backend", "engine"} <= set(start.hparams)


def test_mlflow_has_one_parent_per_sweep_and_a_child_per_run_with_params_metrics_and_tags(swept):
    results, _, db = swept
    runs = mlflow_runs(db)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 3 and len(children) == 2
    assert parent.data.tags["cnnbench.kind"] == "sweep" and parent.info.status == "FINISHED"
    assert {"sweep.json", "summary.csv"} <= {a.path for a in client(db).list_artifacts(parent.info.run_id)}
    for run_dir in sweep_runs(results):
        name = f"{run_dir.parent.name}/{run_dir.name}"
        (child,) = [r for r in children if r.info.run_name == name]
        record = json.loads((run_dir / "run.json").read_text())
        assert float(child.data.params["training.learning_rate"]) == record["learning_rate"]
        assert child.data.params["layers.0.filters"] == "2"
        assert child.data.tags["status"] == "ok" and child.data.tags["dataset"] == "synthetic"
        assert {"learned", "device", "engine"} <= set(child.data.tags)
        steps = client(db).get_metric_history(child.info.run_id, "val_error")
        assert [(m.step, m.value) for m in steps] == [(int(r["epoch"]), pytest.approx(r["val_error"])) for r in history(run_dir)]
        assert {a.path for a in client(db).list_artifacts(child.info.run_id)} == {"run.json", "spec.json", "history.csv"}


def test_export_writes_what_the_live_sink_wrote_and_twice_adds_nothing(swept, tmp_path):
    results, tb, db = swept
    out = tmp_path / "tb"
    first = runner.invoke(app, ["export", "tensorboard", str(results), "--to", str(out)])
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == "tensorboard: 2 runs: 2 written"
    files = sorted(p.relative_to(out) for p in out.rglob("events.out.tfevents.*"))
    assert len(files) == 6  # per run: the session, train, validation
    for run_dir in sweep_runs(results):  # the same writer as the live sink: the same scalars
        rel = Path(run_dir.parent.name) / run_dir.name
        assert scalars(out / rel / "validation", "epoch_error") == scalars(tb / rel / "validation", "epoch_error")
    again = runner.invoke(app, ["export", "tensorboard", str(results / ".."), "--to", str(out)])
    assert again.stdout.strip() == "tensorboard: 2 runs: 2 unchanged"
    assert sorted(p.relative_to(out) for p in out.rglob("events.out.tfevents.*")) == files
    live = runner.invoke(app, ["export", "mlflow", str(results), "--uri", f"sqlite:///{db}"])
    assert live.exit_code == 0, live.output
    assert live.stdout.strip() == "mlflow: 2 runs: 2 unchanged"
    assert len(mlflow_runs(db)) == 3


def test_a_changed_run_is_updated_not_duplicated(swept, tmp_path):
    results, _, db = swept
    copy, db_copy, out = tmp_path / "results", tmp_path / "m.db", tmp_path / "tb"
    shutil.copytree(results, copy)
    shutil.copy(db, db_copy)
    assert runner.invoke(app, ["export", "tensorboard", str(copy), "--to", str(out)]).exit_code == 0
    run_dir = sweep_runs(copy)[0]
    rows = history(run_dir)
    with open(run_dir / "history.csv", "a") as f:  # as a resumed run that trained one epoch more
        f.write(",".join(str(rows[-1][k] if k != "epoch" else 3) for k in rows[-1]) + "\n")
    name = f"{run_dir.parent.name}/{run_dir.name}"
    tb = runner.invoke(app, ["export", "tensorboard", str(copy), "--to", str(out)])
    assert tb.stdout.strip() == "tensorboard: 2 runs: 1 updated, 1 unchanged"
    assert [step for step, _ in scalars(out / name / "train", "epoch_loss")] == [1, 2, 3]
    assert len(list((out / name).rglob("events.out.tfevents.*"))) == 3
    ml = runner.invoke(app, ["export", "mlflow", str(copy), "--uri", f"sqlite:///{db_copy}"])
    assert ml.stdout.strip() == "mlflow: 2 runs: 1 updated, 1 unchanged"
    (child,) = [r for r in mlflow_runs(db_copy) if r.info.run_name == name]
    assert [m.step for m in client(db_copy).get_metric_history(child.info.run_id, "loss")] == [1, 2, 3]
    assert len(mlflow_runs(db_copy)) == 3


def test_a_failing_sink_is_a_warning_and_the_run_stays_ok(tmp_path):
    from cnnbench.spec import load_spec
    from cnnbench.sweep import sweep_name

    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(sink_net(epochs=1)))
    tb = tmp_path / "tb"
    tb.mkdir()
    (tb / sweep_name(load_spec(str(spec)), [0.1])).write_text("a file where the sweep's TensorBoard folder goes")
    result = runner.invoke(app, ["sweep-lr", str(spec), "--values", "0.1", "--out", str(tmp_path / "results"), "--device", "cpu",
                                 "--tensorboard", str(tb)])  # fmt: skip
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: tensorboard:")]
    assert len(warnings) == 1 and "fill the gap later with `cnnbench export tensorboard`" in warnings[0]
    (run_dir,) = sweep_runs(tmp_path / "results")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "ok"


def test_a_refused_mlflow_uri_is_one_line_exit_2_before_anything_trains(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_ALLOW_FILE_STORE"}
    result = subprocess.run([sys.executable, "-m", "cnnbench", "sweep-lr", "--values", "0.1", "--out", str(tmp_path / "results"),
                             "--mlflow", str(tmp_path / "mlruns")], capture_output=True, text=True, env=env)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --mlflow {tmp_path / 'mlruns'}: MLflow refuses a plain file store: use a database, e.g. --mlflow "
        "sqlite:///mlruns.db, or set MLFLOW_ALLOW_FILE_STORE=true"
    )
    assert not (tmp_path / "results").exists()
    env["MLFLOW_TRACKING_URI"] = str(tmp_path / "from-env")  # a bare --mlflow (here before another option) takes it
    bare = subprocess.run([sys.executable, "-m", "cnnbench", "sweep-lr", "--values", "0.1", "--mlflow", "--out", str(tmp_path / "results")],
                          capture_output=True, text=True, env=env)  # fmt: skip
    assert bare.returncode == 2
    assert bare.stderr.strip().splitlines()[-1].startswith(f"error: --mlflow {tmp_path / 'from-env'}: MLflow refuses a plain file store")
    assert not (tmp_path / "results").exists()


def test_a_missing_extra_names_the_install_command(tmp_path):
    code = ("import sys; sys.modules['tensorboardX'] = None\n"  # the standard way to make a module unimportable
            "from cnnbench.cli import main\n"
            "sys.argv = ['cnnbench', 'export', 'tensorboard', sys.argv[1], '--to', sys.argv[2]]; main()")  # fmt: skip
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text('{"status": "ok"}')
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(tmp_path / "tb")], capture_output=True, text=True)
    assert result.returncode == 2
    expected = "error: --to: the tensorboard extra is not installed (no tensorboardX): pip install 'cnnbench[tensorboard]'"
    assert result.stderr.strip() == expected


def test_writing_tensorboard_under_jax_never_imports_tensorflow(swept, tmp_path):
    results, _, _ = swept
    code = ("import sys\nfrom cnnbench.sinks import open_sinks\n"
            "with open_sinks(tensorboard=sys.argv[2]) as sinks:\n"
            "    [sinks.run_ended(p) for p in __import__('cnnbench.results').results.find_runs(sys.argv[1])]\n"
            "assert sinks.counts['tensorboard'] == {'written': 2}, sinks.counts\n"
            "print(sorted({'tensorflow', 'keras', 'torch'} & set(sys.modules)))")  # fmt: skip
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", code, str(results), str(tmp_path / "tb")], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, route: str, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/data/plugin/hparams/{route}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@contextmanager
def tensorboard_server(logdir: Path):
    """A real `tensorboard --logdir` on loopback, once its HParams plugin has read the sessions: (port, experiment)."""
    port = free_port()
    binary = Path(sys.executable).with_name("tensorboard")
    server = subprocess.Popen([str(binary), "--logdir", str(logdir), "--port", str(port), "--host", "127.0.0.1", "--load_fast", "false"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline, experiment = time.monotonic() + 90, {}
        while time.monotonic() < deadline:
            try:
                experiment = _post(port, "experiment", {"experimentName": ""})
                if len(experiment.get("hparamInfos", [])) > 5:
                    break
            except OSError:
                pass
            assert server.poll() is None, "tensorboard exited"
            time.sleep(1)
        yield port, experiment
    finally:
        server.kill()
        server.wait(timeout=30)


def test_a_real_tensorboard_server_lists_the_exported_sweep_in_its_hparams_view(swept, tmp_path):
    results, _, _ = swept
    out = tmp_path / "tb"
    assert runner.invoke(app, ["export", "tensorboard", str(results), "--to", str(out)]).exit_code == 0
    with tensorboard_server(out) as (port, experiment):
        names = {info["name"] for info in experiment.get("hparamInfos", [])}
        assert {"learning_rate", "filters", "batch_size", "epochs", "seed", "dataset", "status"} <= names, experiment
        metrics = {(m["name"].get("group", ""), m["name"]["tag"]) for m in experiment["metricInfos"]}
        assert {("", "best_val_error"), ("validation", "epoch_error"), ("train", "epoch_loss")} <= metrics
        statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
        groups = _post(port, "session_groups", {"experimentName": "", "allowedStatuses": statuses, "colParams": [], "startIndex": 0,
                                                "sliceSize": 100})  # fmt: skip
        sessions = {s["name"] for g in groups["sessionGroups"] for s in g["sessions"]}
        assert sessions == {f"{p.parent.name}/{p.name}" for p in sweep_runs(results)}


def test_tensorboard_s_hparams_table_in_a_real_browser_shows_every_run_and_loads_nothing_from_outside(swept, browser):
    """Headless Chromium (Debian's, driven by Playwright) on TensorBoard's HParams tab. CNNBENCH_SCREENSHOT_HPARAMS=FILE
    saves what it shows (docs/tracking-hparams.png was made the same way, from a 5-rate mnist-5k sweep)."""
    results, tb, _ = swept
    names = [f"{p.parent.name}/{p.name}" for p in sweep_runs(results)]
    with tensorboard_server(tb) as (port, _):
        page = browser.new_page(viewport={"width": 1900, "height": 560})
        try:
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(f"http://127.0.0.1:{port}/") else outside.append(r.url))
            page.goto(f"http://127.0.0.1:{port}/#hparams")
            for name in names:  # the table's Trial ID column: each run by its folder name
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            page.get_by_text("best_val_error", exact=True).first.wait_for(timeout=10_000)  # a metric column
            if shot := os.environ.get("CNNBENCH_SCREENSHOT_HPARAMS"):
                page.screenshot(path=shot)
            assert outside == []
        finally:
            page.close()


def test_live_curves_show_each_epoch_then_give_way_to_the_finished_run(swept, tmp_path):
    from cnnbench.sinks import open_sinks

    results, _, _ = swept
    run_dir = sweep_runs(results)[1]
    folder = tmp_path / "tb" / run_dir.parent.name / run_dir.name
    rows = history(run_dir)
    with open_sinks(tensorboard=tmp_path / "tb") as sinks:
        sinks.run_started(run_dir, {"status": "running"})
        sinks.epoch(run_dir, rows[0])
        sinks.flush()  # the writer thread has written what it was handed
        assert scalars(folder / "validation", "epoch_error") == [(1, pytest.approx(rows[0]["val_error"]))]  # while training
        sinks.epoch(run_dir, rows[1])
        sinks.run_ended(run_dir)
    assert sinks.counts["tensorboard"] == {"written": 1}
    assert scalars(folder / "validation", "epoch_error") == [(int(r["epoch"]), pytest.approx(r["val_error"])) for r in rows]
    assert len(list(folder.rglob("events.out.tfevents.*"))) == 3  # the live files were replaced, not kept beside


def test_train_writes_its_run_to_both_sinks_without_a_parent(tmp_path, mlflow_db):
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(sink_net(epochs=1)))
    db = mlflow_db
    result = runner.invoke(app, ["train", str(spec), "--out", str(tmp_path / "results"), "--device", "cpu",
                                 "--tensorboard", str(tmp_path / "tb"), "--mlflow", f"sqlite:///{db}"])  # fmt: skip
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "results").iterdir()
    folder = tmp_path / "tb" / run_dir.name
    assert scalars(folder / "train", "epoch_loss") == [(1, pytest.approx(history(run_dir)[0]["loss"]))]
    assert len(list(folder.rglob("events.out.tfevents.*"))) == 3
    (run,) = mlflow_runs(db)
    assert run.info.run_name == run_dir.name and "mlflow.parentRunId" not in run.data.tags and run.data.tags["status"] == "ok"


def test_help_imports_no_sink_library():
    code = ("import sys\nfrom cnnbench.cli import app\nfrom typer.testing import CliRunner\n"
            "for args in (['--help'], ['export', '--help'], ['sweep-lr', '--help'], ['train', '--help']):\n"
            "    assert CliRunner().invoke(app, args).exit_code == 0\n"
            "print(sorted({'mlflow', 'tensorboardX', 'tensorboard', 'sqlalchemy'} & set(sys.modules)))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_study_writes_each_run_to_both_sinks_from_the_keys_of_its_sweep_file(tmp_path, mlflow_db):
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(sink_net(epochs=1)))
    db = mlflow_db
    sweep_file = tmp_path / "study.json"
    sweep_file.write_text(json.dumps({"set": {"layers.0.kernel_size": [3, 5]}, "tensorboard": str(tmp_path / "tb"),
                                      "mlflow": f"sqlite:///{db}"}))  # fmt: skip
    result = runner.invoke(app, ["sweep", str(spec), "--sweep", str(sweep_file), "--out", str(tmp_path / "results"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "warning: tensorboard" not in result.stderr and "warning: mlflow" not in result.stderr
    (study_dir,) = (tmp_path / "results").iterdir()
    run_dirs = sorted(p.parent for p in study_dir.rglob("run.json"))
    assert len(run_dirs) == 2
    c = client(db)
    runs = mlflow_runs(db)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.data.tags["cnnbench.kind"] == "sweep" and parent.info.run_name == study_dir.name
    assert {"sweep.json", "points.csv", "runs.csv"} <= {a.path for a in c.list_artifacts(parent.info.run_id)}
    for run_dir in run_dirs:
        name = run_dir.relative_to(study_dir.parent).as_posix()  # <study>/<point>/seed-0, as `ls` names it
        kernel = json.loads((run_dir / "spec.json").read_text())["layers"][0]["kernel_size"]
        start = session_start(tmp_path / "tb" / name)
        assert start.hparams["layers.0.kernel_size"].number_value == kernel  # the swept path, beside the fixed hparams
        assert start.hparams["status"].string_value == "ok"
        rows = history(run_dir)
        assert scalars(tmp_path / "tb" / name / "validation", "epoch_error") == [(1, pytest.approx(rows[0]["val_error"], rel=1e-6))]
        (child,) = [r for r in runs if r.info.run_name == name]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.params["layers.0.kernel_size"] == str(kernel)
        steps = c.get_metric_history(child.info.run_id, "val_error")
        assert [(m.step, m.value) for m in steps] == [(1, pytest.approx(rows[0]["val_error"]))]


@pytest.mark.parametrize("text, key, message", [
    ('{"mlflow": 3}', "mlflow", "must be a tracking URI such as sqlite:///mlruns.db, or true, got 3"),
    ('{"tensorboard": ["tb"]}', "tensorboard", "must be a folder (the TensorBoard log folder), got ['tb']"),
])  # fmt: skip
def test_a_bad_sink_key_in_a_sweep_file_is_one_line_naming_file_and_key(tmp_path, text, key, message):
    sweep_file = tmp_path / "study.json"
    sweep_file.write_text(text)
    result = runner.invoke(app, ["sweep", "--sweep", str(sweep_file), "--set", "training.learning_rate=0.1", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: {sweep_file}: {key}: {message}"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", [["train"], ["sweep-lr", "--values", "0.1"], ["sweep", "--set", "training.learning_rate=0.1"],
                                     ["bench", "--filters", "2", "--devices", "cpu"]])  # fmt: skip
def test_a_refused_mlflow_uri_stops_every_command_before_anything_trains(tmp_path, monkeypatch, command):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(TINY_NET))
    store = tmp_path / "mlruns"
    result = runner.invoke(app, [command[0], str(spec), *command[1:], "--out", str(tmp_path / "results"), "--device"
                                 if command[0] != "bench" else "--repeats", "cpu" if command[0] != "bench" else "1",
                                 "--tensorboard", str(tmp_path / "tb"), "--mlflow", str(store)])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: --mlflow {store}: MLflow refuses a plain file store: use a database, e.g. --mlflow sqlite:///mlruns.db, "
        "or set MLFLOW_ALLOW_FILE_STORE=true"
    ]
    assert not (tmp_path / "results").exists()


def test_an_mlflow_database_that_is_no_database_is_refused_before_anything_trains(tmp_path):
    db = tmp_path / "m.db"
    db.write_text("not a database")
    result = runner.invoke(app, ["sweep-lr", "--values", "0.1", "--out", str(tmp_path / "results"), "--mlflow", f"sqlite:///{db}"])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --mlflow sqlite:///{db}: ") and "file is not a database" in line
    assert not (tmp_path / "results").exists()


def test_an_mlflow_database_in_a_missing_folder_is_refused_before_anything_trains(tmp_path):
    uri = f"sqlite:///{tmp_path / 'nowhere' / 'm.db'}"
    result = runner.invoke(app, ["sweep-lr", "--values", "0.1", "--out", str(tmp_path / "results"), "--mlflow", uri])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --mlflow {uri}: no such folder for the database: {tmp_path / 'nowhere'}"
    assert not (tmp_path / "results").exists()


def test_an_mlflow_run_cut_off_while_written_is_written_again_by_export(swept, tmp_path):
    results, _, db = swept
    db_copy = tmp_path / "m.db"
    shutil.copy(db, db_copy)
    victim = next(r for r in mlflow_runs(db_copy) if "mlflow.parentRunId" in r.data.tags)
    client(db_copy).delete_tag(victim.info.run_id, "cnnbench.digest")  # the tag written last: as if the writer died before it
    again = runner.invoke(app, ["export", "mlflow", str(results), "--uri", f"sqlite:///{db_copy}"])
    assert again.stdout.strip() == "mlflow: 2 runs: 1 updated, 1 unchanged"
    (rewritten,) = [r for r in mlflow_runs(db_copy) if r.info.run_name == victim.info.run_name]
    assert rewritten.data.tags["cnnbench.digest"] and rewritten.info.run_id != victim.info.run_id


def test_a_study_file_s_train_part_writes_its_run_to_both_sinks_and_again_when_kept(tmp_path, mlflow_db):
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(sink_net(epochs=2)))
    study = tmp_path / "study.json"
    study.write_text(json.dumps({"spec": "tiny.json", "parts": [{"name": "single", "train": None}],
                                 "tensorboard": str(tmp_path / "tb"), "mlflow": f"sqlite:///{mlflow_db}"}))  # fmt: skip
    result = runner.invoke(app, ["study", str(study), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "warning: tensorboard" not in result.stderr and "warning: mlflow" not in result.stderr
    (run_dir,) = (tmp_path / "out" / "single").iterdir()
    rows = history(run_dir)
    folder = tmp_path / "tb" / run_dir.name  # a lone run: named by its folder, as `train --tensorboard` names it
    assert scalars(folder / "train", "epoch_loss") == [(int(r["epoch"]), pytest.approx(r["loss"], rel=1e-6)) for r in rows]
    assert scalars(folder / "validation", "epoch_error") == [(int(r["epoch"]), pytest.approx(r["val_error"], rel=1e-6)) for r in rows]
    assert session_start(folder).hparams["status"].string_value == "ok"
    (run,) = mlflow_runs(mlflow_db)
    assert run.info.run_name == run_dir.name and run.data.tags["status"] == "ok"
    steps = client(mlflow_db).get_metric_history(run.info.run_id, "val_error")
    assert [(m.step, m.value) for m in steps] == [(int(r["epoch"]), pytest.approx(r["val_error"])) for r in rows]
    again = runner.invoke(app, ["study", str(study), "--out", str(tmp_path / "out"), "--device", "cpu"])  # kept: not duplicated
    assert again.exit_code == 0, again.output
    assert len(mlflow_runs(mlflow_db)) == 1 and len(list(folder.rglob("events.out.tfevents.*"))) == 3
