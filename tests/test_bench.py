"""`cnnbench bench`: rows and columns of bench.csv, sizes per filter count, OOM, absent devices, resume.

Real training processes are few (each pays ~3 s of TensorFlow import); bookkeeping is tested with a
fake child that writes the files a real one would.
"""

from __future__ import annotations

import csv
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnbench import bench
from cnnbench import device as devices
from cnnbench.bench import BenchOptions, Combination, classify_exit, run_bench, summarize_repeats
from cnnbench.cli import app
from cnnbench.errors import SpecError, UsageError
from cnnbench.executor import fresh
from cnnbench.results import read_json, write_csv, write_json
from cnnbench.spec import Spec
from cnnbench.train import RunOptions

runner = CliRunner()
TINY = ["--data", "synthetic", "--train-samples", "256"]


def params(f: int) -> int:
    """The course network's parameter count with `same` padding (FIELD_NOTES)."""
    return 9 * f * f + 6283 * f + 1418


def flops(f: int) -> int:
    """Its forward FLOPs per sample: conv 28², conv 14² (f×f), dense 7·7·f→128, dense 128→10; 2 per multiply-add."""
    return 2 * (28 * 28 * 9 * f + 14 * 14 * 9 * f * f + 7 * 7 * f * 128 + 128 * 10)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def no_gpu(monkeypatch):
    """This machine as a CPU-only one, whatever it really has."""
    monkeypatch.setattr(devices, "nvidia_gpus", lambda: [])


# --- real training processes ------------------------------------------------------------------


def test_bench_measures_cpu_records_oom_and_unavailable_gpu_then_resumes(tmp_path, monkeypatch, no_gpu):
    # The 4-filter run gets an address space too small to load TensorFlow: a simulated out-of-memory.
    monkeypatch.setattr(bench, "child_memory_limit_mb", lambda combo, options: 300 if combo.filters == 4 else None)
    args = ["bench", "--devices", "cpu,gpu", "--filters", "2,4", "--epochs", "3", "--measure-epochs", "2", *TINY, "--out", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "warning: gpu/tensorflow rows are unavailable: no GPU found" in result.output
    (folder,) = tmp_path.glob("bench-convolutional_nn-*")
    rows = read_rows(folder / "bench.csv")
    assert list(rows[0]) == list(bench.COLUMNS)
    by_key = {(r["device"], r["filters"]): r for r in rows}
    assert sorted(by_key) == [("cpu", "2"), ("cpu", "4"), ("gpu", "2"), ("gpu", "4")]
    for (_, f), row in by_key.items():
        assert row["status"] in bench.STATUSES
        assert (int(row["params"]), int(row["flops_per_sample"])) == (params(int(f)), flops(int(f)))
        assert (row["backend"], row["batch_size"], row["epochs"]) == ("tensorflow", "64", "3")

    ok = by_key[("cpu", "2")]
    assert ok["status"] == "ok" and ok["estimated"] == "True" and ok["measured_epochs"] == "2"
    first, median = float(ok["first_epoch_s"]), float(ok["epoch_s_median"])
    assert 0 < median <= float(ok["epoch_s_max"]) and first > 0
    assert float(ok["total_s"]) == pytest.approx(first + 2 * median)  # 3 epochs: 1 first + 2 steady
    assert float(ok["measured_total_s"]) == pytest.approx(first + median)
    assert float(ok["gflops_per_s"]) == pytest.approx(3 * flops(2) * float(ok["samples_per_s"]) / 1e9)
    assert float(ok["peak_mem_mb"]) > 100 and ok["dataset"] == "synthetic" and ok["train_samples"] == "256"
    assert ok["device_name"] == devices.cpu_model()

    oom = by_key[("cpu", "4")]
    assert oom["status"] == "oom" and "300 MB memory limit" in oom["error"] and oom["epoch_s_median"] == ""
    assert "cpu tensorflow 4 filters: oom" in result.output
    for f in ("2", "4"):
        assert by_key[("gpu", f)]["status"] == "unavailable" and "no GPU" in by_key[("gpu", f)]["error"]

    # Isolation: the CPU run saw no GPU and was pinned to the backend before Keras was imported.
    pinning = read_json(folder / "runs" / "cpu-tensorflow-f2-r1" / "child.json")["pinning"]
    assert pinning["CUDA_VISIBLE_DEVICES"] == "-1" and pinning["KERAS_BACKEND"] == "tensorflow"
    record = read_json(folder / "bench.json")
    assert record["status"] == "complete" and record["options"]["filters"] == [2, 4]
    assert record["options"]["ray"] is None  # where it ran: recorded as before, though Ray is no longer a BenchOptions field
    assert record["machine"]["cpu"] == devices.cpu_model() and record["machine"]["gpus"] == []
    assert record["versions"]["keras"] and record["spec"]["name"] == "convolutional_nn"

    # The same command again resumes: finished runs (ok and oom alike) are kept, no process starts.
    def no_child(*args, **kwargs):
        raise AssertionError("a finished run was started again")

    monkeypatch.setattr(fresh, "launch_fresh", no_child)
    monkeypatch.setattr(bench, "call_fresh", no_child)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert read_rows(folder / "bench.csv") == rows


def test_gpu_child_is_pinned_to_one_gpu_and_sees_none_here(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pinning = fresh.call_fresh(devices.pinning, options=RunOptions(device="gpu", backend="tensorflow"), timeout_s=120)
    assert pinning["CUDA_VISIBLE_DEVICES"] == "0" and pinning["JAX_PLATFORMS"] is None and pinning["KERAS_BACKEND"] == "tensorflow"
    if not devices.nvidia_gpus():
        assert bench.probe_gpus("tensorflow") == []


def test_discovery_imports_no_framework():
    code = (
        "import sys\nfrom cnnbench.bench import BenchOptions, availability\n"
        "found = availability(BenchOptions(devices=('cpu',), backends=('tensorflow', 'jax', 'torch')))\n"
        "assert found[('cpu', 'tensorflow')] is None, found\n"
        "heavy = {'tensorflow', 'keras', 'jax', 'torch'} & set(sys.modules)\nassert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_params_and_flops_per_filter_count_match_the_course_formula(course_spec):
    from cnnbench.model import summarize

    for f in (8, 16, 32, 64, 128, 256):
        summary = summarize(course_spec.with_filters(f))
        assert (summary.total_params, summary.flops_per_sample) == (params(f), flops(f))
    assert [params(f) for f in (8, 16, 32, 64, 128, 256)] == [52_258, 104_250, 211_690, 440_394, 953_098, 2_199_690]


# --- absent devices and backends, bad options -------------------------------------------------


def test_gpu_rows_need_a_gpu_that_the_backend_sees(monkeypatch):
    options = BenchOptions(devices=("cpu", "gpu"), backends=("tensorflow",))
    monkeypatch.setattr(devices, "nvidia_gpus", lambda: ["NVIDIA H100"])
    monkeypatch.setattr(bench, "probe_gpus", lambda backend: [])
    reason = bench.availability(options)[("gpu", "tensorflow")]
    assert "nvidia-smi lists NVIDIA H100, but Keras' tensorflow backend sees no GPU" in reason and "and-cuda" in reason
    monkeypatch.setattr(bench, "probe_gpus", lambda backend: ["NVIDIA H100"])
    assert bench.availability(options) == {("cpu", "tensorflow"): None, ("gpu", "tensorflow"): None}
    assert BenchOptions().resolved().devices == ("cpu", "gpu")  # by default, every device present


@pytest.mark.parametrize(
    "args, message",
    [
        (["--devices", "gpu"], "nothing to measure: gpu/tensorflow: no GPU found"),
        (["--backends", "jax"], "nothing to measure: cpu/jax: the Keras backend jax is not installed"),
        (["--devices", "cpu,tpu"], "--devices: unknown value(s) 'tpu'"),
        (["--backends", "pytorch"], "--backends: unknown value(s) 'pytorch'"),
        (["--filters", "8,x"], "--filters: cannot read '8,x'"),
        (["--filters", "0"], "--filters: must be positive integers"),
    ],
)
def test_absent_devices_and_bad_options_exit_2(args, message, tmp_path, monkeypatch, no_gpu):
    monkeypatch.setattr(devices, "backend_installed", lambda backend: backend == "tensorflow")
    result = runner.invoke(app, ["bench", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert f"error: {message}" in result.output
    assert not list(tmp_path.iterdir())  # nothing written


def test_absent_backend_rows_are_unavailable_next_to_measured_ones(tmp_path, monkeypatch, fake_children, no_gpu):
    monkeypatch.setattr(devices, "backend_installed", lambda backend: backend == "tensorflow")
    with pytest.warns(UserWarning, match="cpu/jax rows are unavailable: the Keras backend jax is not installed"):
        result = run_bench(fake_children.spec, BenchOptions(devices=("cpu",), backends=("tensorflow", "jax"), filters=(8,)), tmp_path)
    assert [(r["backend"], r["status"]) for r in result.rows] == [("tensorflow", "ok"), ("jax", "unavailable")]
    assert result.rows[1]["params"] == params(8)


def test_spec_without_filters_is_refused(tmp_path, no_gpu):
    dense = Spec(name="dense", input_shape=(4,), layers=({"type": "Dense", "units": 10},))
    with pytest.raises(SpecError, match="no layer has a `filters` argument"):
        run_bench(dense, BenchOptions(devices=("cpu",)), tmp_path)


def test_comma_lists():
    assert bench.parse_list(" 8, 16,32 ", "--filters", int) == (8, 16, 32)
    assert bench.parse_list("CPU,gpu", "--devices") == ("cpu", "gpu")
    with pytest.raises(UsageError, match="--filters: give a comma-separated list"):
        bench.parse_list(" , ", "--filters", int)
    assert BenchOptions(devices=("cpu", "cpu"), backends=("tensorflow",), filters=(8, 8, 4)).resolved().filters == (8, 4)


# --- bookkeeping with a fake child ------------------------------------------------------------


class FakeChildren:
    """Stands in for the fresh processes (`launch_fresh`, `call_fresh`): writes what a child would (run.json +
    history.csv), or gives the models' sizes."""

    def __init__(self, spec):
        self.spec = spec
        self.launched: list[str] = []
        self.epoch_times = [1.0, 0.5, 0.6, 0.4]
        self.status = "ok"

    def call(self, function, spec, filters, options, timeout_s=None):
        self.launched.append("models")
        return {str(f): {"params": params(f), "flops_per_sample": flops(f)} for f in filters}

    def __call__(self, task, options, timeout_s=None):
        ((spec, run_dir),) = task.runs
        self.launched.append(run_dir.name)
        fresh.clear_stale(task)
        epochs = spec.training.epochs
        times = self.epoch_times[: min(task.options.measure_epochs or epochs, epochs)]
        rows = [{"epoch": i + 1, "epoch_time_s": t, "samples_per_s": 1000 / t} for i, t in enumerate(times)]
        write_csv(run_dir / "history.csv", rows)
        write_json(run_dir / "run.json", {
            "status": self.status, "error": None if self.status == "ok" else "boom", "device_name": "Fake CPU",
            "peak_host_mem_mb": 500.0, "timing": {"setup_s": 3.0}, "data": {"name": "synthetic", "train_samples": 1000},
        })  # fmt: skip
        return 0, False


@pytest.fixture
def fake_children(monkeypatch, course_spec):
    fake = FakeChildren(course_spec.with_overrides(epochs=4, dataset="synthetic"))
    monkeypatch.setattr(fresh, "launch_fresh", fake)
    monkeypatch.setattr(bench, "call_fresh", fake.call)
    return fake


def test_repeats_pool_steady_epochs_and_extrapolate(tmp_path, fake_children, no_gpu):
    spec = fake_children.spec.with_overrides(epochs=20)
    options = BenchOptions(devices=("cpu",), backends=("tensorflow",), filters=(8, 16), repeats=2, measure_epochs=3)
    events = []
    result = run_bench(spec, options, tmp_path, on_event=events.append)
    # Repeats are the outer loop; one models child first.
    assert fake_children.launched == [
        "models",
        "cpu-tensorflow-f8-r1",
        "cpu-tensorflow-f16-r1",
        "cpu-tensorflow-f8-r2",
        "cpu-tensorflow-f16-r2",
    ]
    assert [e.kind for e in events] == ["begin", "start", "done", "start", "done", "start", "done", "start", "done"]
    row = result.rows[0]
    assert row["measured_epochs"] == 3 and row["repeats"] == 2 and row["estimated"] is True
    assert (row["first_epoch_s"], row["epoch_s_median"], row["epoch_s_min"], row["epoch_s_max"]) == (1.0, 0.55, 0.5, 0.6)
    assert row["total_s"] == pytest.approx(1.0 + 19 * 0.55) and row["measured_total_s"] == pytest.approx(2.1)
    assert row["samples_per_s"] == pytest.approx(statistics.median([1000 / 0.5, 1000 / 0.6]))
    assert row["gflops_per_s"] == pytest.approx(3 * flops(8) * row["samples_per_s"] / 1e9)
    assert row["run_dirs"] == "runs/cpu-tensorflow-f8-r1;runs/cpu-tensorflow-f8-r2"
    assert read_rows(result.csv_path)[0]["estimated"] == "True"


def test_summarize_repeats_without_estimate_and_with_one_epoch():
    full = summarize_repeats(3, [([2.0, 1.0, 1.0], [10.0, 20.0, 20.0]), ([2.2, 1.2, 0.8], [9.0, 18.0, 22.0])])
    assert full["estimated"] is False and full["total_s"] == full["measured_total_s"] == pytest.approx(4.1)
    assert (full["first_epoch_s"], full["epoch_s_median"]) == (pytest.approx(2.1), 1.0)
    one = summarize_repeats(10, [([2.0], [10.0])])  # no steady epoch: the first stands in for it
    assert one["epoch_s_median"] is None and one["total_s"] == 20.0 and one["samples_per_s"] == 10.0
    assert summarize_repeats(10, [([], [])]) == {}


def test_resume_redoes_only_unfinished_runs_and_force_redoes_all(tmp_path, fake_children, no_gpu):
    options = BenchOptions(devices=("cpu",), backends=("tensorflow",), filters=(8, 16))
    first = run_bench(fake_children.spec, options, tmp_path)
    failed = first.path / "runs" / "cpu-tensorflow-f16-r1" / "run.json"
    write_json(failed, {**read_json(failed), "status": "failed", "error": "crashed"})
    fake_children.launched.clear()
    second = run_bench(fake_children.spec, options, tmp_path)
    assert second.path == first.path and fake_children.launched == ["cpu-tensorflow-f16-r1"]  # models kept in bench.json
    fake_children.launched.clear()
    run_bench(fake_children.spec, BenchOptions(**{**options.__dict__, "force": True}), tmp_path)
    assert fake_children.launched == ["models", "cpu-tensorflow-f8-r1", "cpu-tensorflow-f16-r1"]
    # Other settings measure something else: another folder.
    assert bench.bench_dir(tmp_path, fake_children.spec.with_overrides(batch_size=32), options) != first.path


def test_a_failed_run_is_recorded_and_the_bench_goes_on(tmp_path, fake_children, no_gpu):
    fake_children.status = "failed"
    result = run_bench(fake_children.spec, BenchOptions(devices=("cpu",), backends=("tensorflow",), filters=(8, 16)), tmp_path)
    assert [r["status"] for r in result.rows] == ["failed", "failed"]
    assert result.rows[0]["error"] == "cpu-tensorflow-f8-r1: boom" and result.rows[0].get("epoch_s_median") is None


def test_ctrl_c_stops_the_bench_and_keeps_what_is_finished(tmp_path, fake_children, monkeypatch, no_gpu):
    real = fake_children.__call__

    def interrupt_second(task, *args, **kwargs):
        if "f16" in str(task.runs[0][1]):
            raise KeyboardInterrupt
        return real(task, *args, **kwargs)

    monkeypatch.setattr(fresh, "launch_fresh", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        run_bench(fake_children.spec, BenchOptions(devices=("cpu",), backends=("tensorflow",), filters=(8, 16)), tmp_path)
    (folder,) = tmp_path.iterdir()
    assert read_json(folder / "bench.json")["status"] == "interrupted"
    assert read_json(folder / "runs" / "cpu-tensorflow-f16-r1" / "run.json")["status"] == "interrupted"
    assert [r["filters"] for r in read_rows(folder / "bench.csv")] == ["8"]  # an interrupted run is no result


def test_spec_errors_in_the_models_child_stop_the_bench(tmp_path, monkeypatch, course_spec, no_gpu):
    def child(function, spec, filters, options, timeout_s=None):
        raise SpecError("net.yaml", "layers[0]", "bad")  # as the fresh process's error arrives: its type kept

    monkeypatch.setattr(bench, "call_fresh", child)
    with pytest.raises(SpecError, match=r"net.yaml: layers\[0\]: bad"):
        run_bench(course_spec, BenchOptions(devices=("cpu",), backends=("tensorflow",), filters=(8,)), tmp_path)
    assert not list(tmp_path.iterdir())  # no bench folder for a spec that cannot be built


@pytest.mark.parametrize(
    "code, log, limit, status",
    [
        (1, "MemoryError", None, "oom"),
        (-signal.SIGKILL, "", None, "oom"),  # the kernel's OOM killer
        (-signal.SIGABRT, "Check failed: pthread_create() failed", 2000, "oom"),
        (-signal.SIGSEGV, "", 2000, "oom"),
        (-signal.SIGSEGV, "", None, "failed"),
        (1, "ValueError: nope", None, "failed"),
    ],
)
def test_how_a_dead_child_is_classified(code, log, limit, status):
    assert classify_exit(code, log, limit)[0] == status
    assert classify_exit(-signal.SIGKILL, "", None, timed_out=True, timeout_s=60) == ("failed", "timed out after 60 s and was killed")


def test_unavailable_rows_name_the_device(course_spec, monkeypatch):
    monkeypatch.setattr(devices, "nvidia_gpus", lambda: ["NVIDIA H100"])
    row = bench.bench_row(Combination("gpu", "jax", 8), [], course_spec, {"params": 1, "flops_per_sample": 2}, "jax missing")
    assert (row["device_name"], row["status"], row["error"], row["params"]) == ("NVIDIA H100", "unavailable", "jax missing", 1)


def test_a_corrupt_record_on_resume_is_named_kept_aside_and_measured_again(tmp_path, fake_children, no_gpu):
    options = BenchOptions(devices=("cpu",), backends=("tensorflow",), filters=(8, 16))
    first = run_bench(fake_children.spec, options, tmp_path)
    typed = first.path / "runs" / "cpu-tensorflow-f8-r1" / "run.json"
    write_json(typed, {**read_json(typed), "timing": "fast"})  # valid JSON, wrong type
    folder = first.path / "runs" / "cpu-tensorflow-f16-r1" / "run.json"
    folder.unlink()
    folder.mkdir()  # a folder where run.json should be
    (first.path / "runs" / "cpu-tensorflow-f16-r1" / "history.csv").write_text("epoch,epoch_time_s\n1,garbage\n")
    fake_children.launched.clear()
    with pytest.warns(UserWarning) as caught:
        second = run_bench(fake_children.spec, options, tmp_path)
    assert fake_children.launched == ["cpu-tensorflow-f8-r1", "cpu-tensorflow-f16-r1"]
    notes = [str(w.message) for w in caught if "run.json" in str(w.message)]
    assert notes == [
        f"{typed}: timing is 'fast', expected an object or null; measuring this run again (the record is kept as run.json.corrupt)",
        f"{folder}: is a folder, not a file; measuring this run again (the record is kept as run.json.corrupt)",
    ]
    assert read_json(typed.with_name("run.json.corrupt"))["timing"] == "fast" and folder.with_name("run.json.corrupt").is_dir()
    assert [r["status"] for r in second.rows] == ["ok", "ok"]


def test_a_garbage_history_gives_no_timing_instead_of_a_traceback(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,epoch_time_s,samples_per_s\n1,fast,1\n")
    assert bench._history_times(tmp_path) == ([], [])
    (tmp_path / "history.csv").write_text("epoch,epoch_time_s,samples_per_s\n1,1.0,100\n2,nan,100\n3,0.5,200\n")
    assert bench._history_times(tmp_path) == ([1.0, 0.5], [100.0, 200.0])


def test_a_bench_json_of_the_wrong_shape_is_named_and_kept_aside(tmp_path, fake_children, no_gpu):
    options = BenchOptions(devices=("cpu",), backends=("tensorflow",), filters=(8,))
    first = run_bench(fake_children.spec, options, tmp_path)
    write_json(first.path / "bench.json", {"models": ["8"], "status": "complete"})
    with pytest.warns(UserWarning, match=r"bench.json: models is \['8'\], expected an object or null; writing a new one"):
        run_bench(fake_children.spec, options, tmp_path)
    assert read_json(first.path / "bench.json.corrupt")["models"] == ["8"]
    assert read_json(first.path / "bench.json")["models"]["8"]["params"] == params(8)


def test_a_bench_writes_each_run_to_the_sinks_under_one_parent(tmp_path, fake_children, no_gpu, mlflow_db):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from cnnbench.sinks import open_sinks

    options = BenchOptions(devices=("cpu",), backends=("tensorflow",), filters=(8, 16))
    uri = f"sqlite:///{mlflow_db}"
    with open_sinks(tensorboard=tmp_path / "tb", mlflow=uri) as sinks:
        result = run_bench(fake_children.spec, options, tmp_path / "results", on_event=sinks.watching())
    expected = [f"{result.path.name}/runs/cpu-tensorflow-f{f}-r1" for f in (16, 8)]
    written = sorted(p.parent.relative_to(tmp_path / "tb").as_posix() for p in (tmp_path / "tb").rglob(".cnnbench-export.json"))
    assert written == expected
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("cnnbench").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("cnnbench.kind") == "bench"]
    children = sorted(r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    assert children == expected
    assert {"bench.json", "bench.csv"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
