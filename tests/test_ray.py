"""Sweeps and benches on Ray (real Ray, no mocks): same results as locally, faults, Ctrl-C, --address, a killed node.

Marked `ray` and skipped where Ray is not installed (`pip install -e '.[dev,ray]'`). One private Ray
instance is shared by the in-process tests; the --address and node tests bring their own.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

ray = pytest.importorskip("ray")

from processes import descendants, finish, start_cli, stop, survivors, wait_for  # noqa: E402

from cnnbench.errors import Terminated  # noqa: E402
from cnnbench.executor import RayConfig  # noqa: E402
from cnnbench.results import read_json  # noqa: E402
from cnnbench.sweep import SweepOptions, plan_sweep, run_sweep  # noqa: E402
from tests.conftest import TINY_SPLIT  # noqa: E402

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parent.parent
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def local_ray():
    """One private Ray instance (2 CPUs, loopback) for the in-process tests of this module."""
    mp = pytest.MonkeyPatch()
    for name, value in RAY_ENV.items():
        mp.setenv(name, value if name != "PYTHONPATH" else os.pathsep.join(p for p in (value, os.environ.get("PYTHONPATH")) if p))
    before = set(os.environ)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()
    mp.undo()
    for name in set(os.environ) - before:  # what Ray itself put there (RAY_AUTH_MODE, ...) goes too
        os.environ.pop(name)


def ray_workers() -> list[psutil.Process]:
    """The live RayWorker actor processes of this test process's Ray instance."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and "RayWorker" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            pass  # exited meanwhile
    return found


def statuses(result) -> list[str]:
    return [row["status"] for row in result.rows]


def test_a_sweep_on_ray_matches_the_local_one_and_survives_killed_workers(local_ray, tiny_spec, tmp_path):
    """Rate 0.05 loses its worker once (re-queued, then ok); 0.2 loses it on both attempts (failed, the sweep goes on)."""
    # 25 epochs (about a second): a worker killed when epoch 1 is reported is still training, however late
    # the report arrives (progress is polled every 0.5 s); at 2 epochs the run could end first.
    spec = tiny_spec.with_overrides(epochs=25)
    local = run_sweep(plan_sweep(spec, "0.05,0.1", tmp_path / "local"), SweepOptions(threads=2))
    kills: list[str] = []
    events = []

    epochs: dict[str, list[int]] = {}

    def on_event(event) -> None:
        events.append((event.kind, event.run.label if event.run else event.message))
        if event.kind == "epoch":
            epochs.setdefault(event.run.label, []).append(event.row["epoch"])
        if event.kind == "epoch" and event.row["epoch"] == 1 and (event.run.label == "0.2" or (event.run.label == "0.05" and not kills)):
            (worker,) = ray_workers()  # the one worker, training this run
            kills.append(event.run.label)
            worker.kill()

    on_ray = run_sweep(plan_sweep(spec, "0.05,0.1,0.2", tmp_path / "ray"), SweepOptions(), on_event=on_event,
                       ray=RayConfig("local", "--ray", cpus_per_run=2, retries=1))
    assert kills == ["0.05", "0.2", "0.2"]
    assert statuses(on_ray) == ["ok", "ok", "failed"] and statuses(local) == ["ok", "ok"]
    assert on_ray.rows[2]["error"].startswith("its Ray worker or node died (") and on_ray.rows[2]["error"].endswith("(tried 2 times)")
    assert events.count(("start", "0.05")) == 2  # re-queued once after its worker died, then trained to the end
    assert epochs["0.1"] == list(range(1, 26)) and epochs["0.05"][-25:] == list(range(1, 26))  # every row once, in order
    assert events[0][0] == "info" and events[0][1].endswith("1 node, 2 CPUs, 0 GPUs")
    for a, b in zip(local.rows, on_ray.rows[:2], strict=True):  # same threads (2), same seed: the same numbers
        assert a["best_val_error"] == b["best_val_error"] and a["final_loss"] == pytest.approx(b["final_loss"], rel=1e-6)
    first = on_ray.plan.sweep_dir / on_ray.rows[0]["run_dir"]
    assert sorted(p.name for p in first.iterdir()) == ["history.csv", "model.keras", "run.json", "spec.json"]  # shipped back
    assert read_json(first / "run.json")["epochs_run"] == 25


def test_a_study_files_sweep_part_runs_on_ray_as_the_sweep_command_does(local_ray, tmp_path):
    """`cnnbench study --ray` hands a sweep part to Ray through `run_part(ray=...)`: the runs end ok, and the part's
    events say where they executed, as `sweep-lr --ray` prints it."""
    from cnnbench.studyfile import load_study, plan_part, run_part
    from cnnbench.train import RunOptions

    doc = {"spec": "convolutional_nn", "data": "synthetic", "defaults": {"epochs": 1, **TINY_SPLIT},
           "parts": [{"sweep-lr": "0.05,0.1"}]}  # fmt: skip
    (tmp_path / "study.json").write_text(json.dumps(doc))
    (part,) = load_study(tmp_path / "study.json").parts
    plan = plan_part(part, tmp_path / "out", RunOptions(device="cpu"))
    events = []
    result = run_part(plan, RunOptions(device="cpu"), on_event=events.append, ray=RayConfig("local", "--ray", cpus_per_run=2))
    assert statuses(result) == ["ok", "ok"]
    assert events[0].kind == "info" and events[0].message.endswith("1 node, 2 CPUs, 0 GPUs")
    assert [read_json(result.plan.sweep_dir / row["run_dir"] / "run.json")["status"] for row in result.rows] == ["ok", "ok"]


def test_sighup_on_ray_records_interrupted_by_sighup_keeps_finished_runs(local_ray, tiny_spec, tmp_path):
    """A closed terminal's SIGHUP in the driver (its handler raises Terminated(SIGHUP) wherever the driver loop
    is): the worker's run records that signal, not SIGTERM. Ctrl-C's record: the CLI test below."""
    def on_event(event) -> None:
        if event.kind == "epoch" and event.run.label == "0.1" and event.row["epoch"] == 2:
            raise Terminated(signal.SIGHUP)  # what the driver's SIGHUP handler raises

    plan = plan_sweep(tiny_spec.with_overrides(epochs=12), "0.05,0.1,0.2", tmp_path)
    with pytest.raises(Terminated):
        run_sweep(plan, SweepOptions(), on_event=on_event, ray=RayConfig(cpus_per_run=2))
    with open(plan.sweep_dir / "summary.csv", newline="") as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["ok", "interrupted", "pending"]
    record = read_json(plan.sweep_dir / "lr-0.1" / "run.json")
    assert record["status"] == "interrupted" and record["epochs_run"] >= 2  # the worker's own record, shipped back
    assert record["error"] == "interrupted by SIGHUP"
    assert (plan.sweep_dir / "lr-0.1" / "history.csv").is_file()


def test_on_ray_the_driver_writes_each_run_to_both_sinks_once_its_files_land(local_ray, tiny_spec, tmp_path, mlflow_db):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cnnbench.sinks import open_sinks

    uri = f"sqlite:///{mlflow_db}"
    plan = plan_sweep(tiny_spec, "0.05,0.1", tmp_path / "results")
    with open_sinks(tensorboard=tmp_path / "tb", mlflow=uri) as sinks:  # the sinks live in this process, Ray's driver
        result = run_sweep(plan, SweepOptions(), on_event=sinks.watching(), ray=RayConfig("local", "--ray", cpus_per_run=2))
    counts = sinks.counts
    assert statuses(result) == ["ok", "ok"]
    assert counts == {"tensorboard": {"written": 2}, "mlflow": {"written": 2}}  # each run written here, once
    client = MlflowClient(uri)
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("cnnbench").experiment_id])}
    for row in result.rows:
        run_dir = plan.sweep_dir / row["run_dir"]
        with open(run_dir / "history.csv") as f:  # as shipped back and landed by the driver
            errors = [(int(r["epoch"]), float(r["val_error"])) for r in csv.DictReader(f)]
        name = f"{plan.sweep_dir.name}/{run_dir.name}"
        acc = EventAccumulator(str(tmp_path / "tb" / name / "validation"))
        acc.Reload()
        assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in acc.Scalars("epoch_error")] == errors
        steps = client.get_metric_history(runs[name].info.run_id, "val_error")
        assert [(m.step, m.value) for m in steps] == [(s, pytest.approx(v)) for s, v in errors]
        assert runs[name].data.tags["run_dir"] == str(run_dir.absolute())  # the driver's folder, not a worker's


def test_a_bench_through_ray_runs_each_combination_in_a_fresh_pinned_child(local_ray, tmp_path, monkeypatch):
    from cnnbench import device as devices
    from cnnbench.bench import BenchOptions, run_bench
    from cnnbench.spec import load_spec

    monkeypatch.setattr(devices, "nvidia_gpus", lambda: [])
    spec = load_spec("convolutional_nn").with_overrides(epochs=2, dataset="synthetic", train_samples=256)
    events = []
    options = BenchOptions(devices=("cpu",), backends=("tensorflow",), filters=(4,))
    result = run_bench(spec, options, tmp_path, on_event=events.append, ray=RayConfig(cpus_per_run=1))
    assert [row["status"] for row in result.rows] == ["ok"]
    assert "Ray" in events[0].message
    run_dir = result.path / "runs" / "cpu-tensorflow-f4-r1"
    child = read_json(run_dir / "child.json")
    assert child["pinning"]["CUDA_VISIBLE_DEVICES"] == "-1" and child["pinning"]["KERAS_BACKEND"] == "tensorflow"
    assert child["pid"] not in {p.pid for p in psutil.Process().children(recursive=True)}  # it was fresh, and it is gone
    assert (run_dir / "history.csv").is_file()
    assert read_json(result.path / "bench.json")["executed"]["runs_at_once"] == 1  # one node: one timed run at a time
    assert read_json(result.path / "bench.json")["options"]["ray"]["cpus_per_run"] == 1  # `ray=` is recorded as the option was


# --- processes of their own: a CLI on a private instance, a head node, a two-node cluster -------------


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_a_ray_sweep_and_its_private_instance(how, tiny_spec, write_spec, tmp_path):
    """Ctrl-C in a terminal (SIGINT to the process group): exit 130. SIGTERM to cnnbench alone (a
    scheduler's `kill`): exit 143, not Ray's own handlers (which abort with a stack dump, exit 134)."""
    spec_file = write_spec(tiny_spec.with_overrides(epochs=300).to_dict(), "long.json")
    out = tmp_path / "results"
    env = {**os.environ, **RAY_ENV}
    process = start_cli("sweep-lr", str(spec_file), "--values", "0.05,0.1", "--ray", "--cpus-per-run", "2", "--out", str(out), env=env)
    try:
        # On Ray the run's files come back when it ends; its `running` record is written when it starts.
        wait_for(lambda: any(len(p.read_text().splitlines()) >= 3 for p in out.glob("*/lr-*/run.json") if p.is_file()), process, 180)
        family = descendants(process)
        assert any("raylet" in psutil.Process(pid).name() for pid in family)
        _, stderr = stop(process, signal.SIGINT, group=True) if how == "ctrl-c" else stop(process, signal.SIGTERM)
    finally:
        finish(process)
    assert process.returncode == (130 if how == "ctrl-c" else 143), stderr
    assert "executing on a private local Ray instance (from --ray)" in stderr and "Traceback" not in stderr
    assert "SIGTERM received" not in stderr and "Token authentication" not in stderr  # no Ray chatter
    (sweep_dir,) = out.iterdir()
    record = read_json(sweep_dir / "lr-0.05" / "run.json")
    assert record["status"] == "interrupted"
    assert record["error"] == ("interrupted by the user (Ctrl-C)" if how == "ctrl-c" else "interrupted by SIGTERM")
    assert survivors(family, within_s=3) == []


PRIVATE_INSTANCE = r"""
import json, sys
import psutil
from cnnbench.executor import RayConfig, RaySession

session = RaySession(RayConfig())
node = session.ray._private.worker._global_node
started = [info.process.pid for infos in node.all_processes.values() for info in infos]
family = [p.pid for pid in started for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]]
print(json.dumps({"description": session.description, "pids": family, "wait": session.registration_wait,
                  "types": sorted(node.all_processes)}), flush=True)
session.close()
print(json.dumps({"alive": [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]}))
"""


def test_a_private_instance_starts_without_ray_s_one_second_sleeps_and_ends_every_process():
    env = {**os.environ, **RAY_ENV}
    done = subprocess.run([sys.executable, "-c", PRIVATE_INSTANCE], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    opened, closed = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    assert opened["description"].startswith("executing on a private local Ray instance (from `use_ray`): 1 node")
    assert {"gcs_server", "raylet", "monitor"} <= set(opened["types"]) and len(opened["pids"]) >= 5
    # The start waited for the raylet in short steps, not through Ray's call that sleeps 1 s per "not
    # yet": if a Ray release moves what this relies on, this says so (the start then falls back to Ray's).
    assert opened["wait"] == "prompt"
    # The monitor is killed ahead of Ray's shutdown (it would otherwise hang a second on the stopped GCS);
    # whatever the raylet was still ending may take a moment, nothing may stay.
    gone, alive = psutil.wait_procs([psutil.Process(p) for p in closed["alive"] if psutil.pid_exists(p)], timeout=5)
    assert [p.pid for p in alive] == []
    assert "Traceback" not in done.stderr and "monitor" not in done.stderr.lower()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head_node(tmp_path):
    """`ray start --head` on 127.0.0.1 in its own session; ended by its process group and pids, never `ray stop`."""
    if ray.is_initialized():
        ray.shutdown()  # `ray start --head` will not start beside a running instance of this machine's Ray
    port = free_port()
    ray_cli = Path(sys.executable).parent / "ray"
    # Not the token-auth settings a Ray instance of this process left in its environment: a head of its own.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}, **RAY_ENV, "HOME": str(tmp_path)}
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--port", str(port), "--node-ip-address", "127.0.0.1",
                             "--num-cpus", "2", "--include-dashboard", "false"], stdout=open(tmp_path / "head.log", "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True, env=env)  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up: {(tmp_path / 'head.log').read_text()[-1500:]}")
            time.sleep(0.3)
    time.sleep(2)  # the GCS port opens before the raylet registers
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        family = [head, *psutil.Process(head.pid).children(recursive=True)] if head.poll() is None else []
        pids = [p.pid for p in family]
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=5)
        for proc in alive:
            proc.kill()
        head.wait(10)


def test_address_joins_a_running_head_node_and_an_unreachable_one_is_one_line(head_node, tiny_spec, write_spec, tmp_path):
    address, env = head_node
    spec_file = write_spec(tiny_spec.to_dict(), "tiny.json")
    args = [sys.executable, "-m", "cnnbench", "sweep-lr", str(spec_file), "--values", "0.05,0.1", "--out", str(tmp_path / "r")]
    cli = subprocess.run([*args, "--address", address], capture_output=True, text=True, env=env, timeout=240)
    assert cli.returncode == 0, cli.stderr
    assert f"executing on the Ray cluster at {address} (from --address): 1 node, 2 CPUs, 0 GPUs" in cli.stderr
    (sweep_dir,) = (tmp_path / "r").iterdir()
    assert [read_json(sweep_dir / f"lr-{v}" / "run.json")["status"] for v in ("0.05", "0.1")] == ["ok", "ok"]

    started = time.monotonic()
    closed = f"127.0.0.1:{free_port()}"
    cli = subprocess.run([*args, "--force"], capture_output=True, text=True, env={**env, "RAY_ADDRESS": closed}, timeout=60)
    assert cli.returncode == 2 and time.monotonic() - started < 15
    assert cli.stderr.strip().splitlines()[-1] == f"error: cannot reach a Ray cluster at {closed}: Connection refused"
    assert "Traceback" not in cli.stderr


def test_on_two_nodes_a_bench_times_one_run_per_node_and_a_killed_node_requeues_its_run(tiny_spec, tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    from cnnbench import device as devices
    from cnnbench.bench import BenchOptions, run_bench

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("PYTHONPATH", RAY_ENV["PYTHONPATH"])
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)  # it refuses multi-node clusters
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})  # two raylets on this machine
    worker_node = cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)

        # A bench: each run reserves a whole node (1 CPU here), so the two runs go to the two nodes at once.
        monkeypatch.setattr(devices, "nvidia_gpus", lambda: [])
        bench_spec = tiny_spec.with_overrides(epochs=2)
        events = []
        options = BenchOptions(devices=("cpu",), backends=("tensorflow",), filters=(4, 8))
        bench = run_bench(bench_spec, options, tmp_path / "bench", on_event=events.append, ray=RayConfig(cluster.address, "--address"))
        assert [row["status"] for row in bench.rows] == ["ok", "ok"]
        assert [e.kind for e in events if e.kind in ("start", "done")] == ["start", "start", "done", "done"]
        executed = read_json(bench.path / "bench.json")["executed"]
        assert executed["nodes"] == 2 and executed["runs_at_once"] == 2
        children = [read_json(p) for p in sorted(bench.path.glob("runs/*/child.json"))]
        assert max(c["started"] for c in children) < min(c["ended"] for c in children)  # the two children overlapped

        removed = threading.Event()

        def on_event(event) -> None:
            if event.kind == "epoch" and not removed.is_set():
                removed.set()
                cluster.remove_node(worker_node)  # one of the two runs was on it (one CPU per node, one run per CPU)

        spec = tiny_spec.with_overrides(epochs=6)
        plan = plan_sweep(spec, "0.05,0.1", tmp_path)
        result = run_sweep(plan, SweepOptions(parallel=2), on_event=on_event, ray=RayConfig(cpus_per_run=1))
        assert removed.is_set() and statuses(result) == ["ok", "ok"]
    finally:
        ray.shutdown()
        cluster.shutdown()
