"""A run stopped by the user's Ctrl-C (or SIGTERM, SIGHUP) is recorded `interrupted`, never `failed`, whatever it was
doing when the signal came: a pool worker still starting, idle between runs, or third-party code that caught the
interrupt (Keras has bare `except:` clauses in model building, step tracing and saving) and went on or raised
another error instead. Real signals, delivered at a precise point, to real processes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time

import pytest
from processes import finish, start_cli, stop, wait_for

from cnnbench.executor import Event, LocalExecutor, Task, sigterm_as_interrupt
from cnnbench.executor.local import _Pool
from cnnbench.train import RunOptions, train_run


@pytest.fixture(autouse=True)
def _as_in_a_terminal():
    """Ctrl-C handled here as in a terminal's foreground command, however pytest was started (a shell's background job
    starts with SIGINT ignored, and cnnbench, like Python, leaves a signal it was started ignoring ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _record(run_dir):
    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.exists() else None


def _ctrl_c_caught_by_third_party_code(then):
    """An on_epoch that gets a real Ctrl-C inside a bare `except:`, as Keras code does, and then does `then()`."""

    def on_epoch(row: dict) -> None:
        if row["epoch"] != 1:
            return
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)  # the handler runs here (the sleep is interrupted)
        except:  # noqa: E722 - what third-party code does
            then()

    return on_epoch


def test_a_ctrl_c_that_third_party_code_turns_into_another_error_is_recorded_interrupted_not_failed(tiny_spec, tmp_path):
    def other_error():
        raise ValueError("y_true and y_pred have different structures")

    with sigterm_as_interrupt(), pytest.raises(KeyboardInterrupt):
        train_run(tiny_spec.with_overrides(epochs=3), tmp_path / "run", on_epoch=_ctrl_c_caught_by_third_party_code(other_error))
    record = _record(tmp_path / "run")
    assert (record["status"], record["error"], record["epochs_run"]) == ("interrupted", "interrupted by the user (Ctrl-C)", 1)
    assert not (tmp_path / "run" / "error.txt").exists()


def test_a_ctrl_c_that_third_party_code_swallows_still_stops_the_run_at_the_epoch_end(tiny_spec, tmp_path):
    with sigterm_as_interrupt(), pytest.raises(KeyboardInterrupt):
        train_run(tiny_spec.with_overrides(epochs=3), tmp_path / "run", on_epoch=_ctrl_c_caught_by_third_party_code(lambda: None))
    record = _record(tmp_path / "run")
    assert (record["status"], record["error"], record["epochs_run"]) == ("interrupted", "interrupted by the user (Ctrl-C)", 1)


def test_a_ctrl_c_that_reaches_a_pool_worker_while_it_starts_stops_its_first_run(tiny_spec, tmp_path, monkeypatch, capfd):
    """The signal lands the moment the worker process exists: before it could have installed a handler."""
    spawn = _Pool.spawn

    def spawn_and_interrupt(pool: _Pool) -> None:
        spawn(pool)
        os.kill(list(pool.processes)[-1], signal.SIGINT)  # the process just started

    monkeypatch.setattr(_Pool, "spawn", spawn_and_interrupt)
    spec = tiny_spec.with_overrides(epochs=1)
    events: list[Event] = []
    with pytest.raises(KeyboardInterrupt):
        LocalExecutor(1, RunOptions(threads=1), spec).run([Task(0, ((spec, tmp_path / "lr-0.1"),))], events.append)
    assert [e.kind for e in events] == []  # not a run started, none failed or died
    assert (_record(tmp_path / "lr-0.1") or {}).get("status") in (None, "interrupted")
    assert "Traceback" not in capfd.readouterr().err


def test_a_ctrl_c_that_reaches_an_idle_pool_worker_stops_it_before_its_next_run(tiny_spec, tmp_path, capfd):
    """One worker, two runs: the signal lands after the first run ended, while the worker waits for the second."""
    spec = tiny_spec.with_overrides(epochs=1)
    tasks = [Task(key, ((spec.with_overrides(learning_rate=lr), tmp_path / f"lr-{lr}"),)) for key, lr in enumerate((0.01, 0.1))]
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if event.kind == "end":  # the second task is handed out only after this returns: the worker is idle now
            (worker,) = multiprocessing.active_children()
            os.kill(worker.pid, signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        LocalExecutor(1, RunOptions(threads=1), spec).run(tasks, on_event)
    assert [(e.key, e.kind) for e in events if e.kind != "epoch"] == [(0, "start"), (0, "end")]
    assert _record(tmp_path / "lr-0.01")["status"] == "ok"
    assert (_record(tmp_path / "lr-0.1") or {}).get("status") in (None, "interrupted")
    assert "Traceback" not in capfd.readouterr().err


def test_a_parallel_sweep_started_under_nohup_is_not_stopped_by_a_closed_terminal(tiny_spec, write_spec, tmp_path):
    """`nohup` starts a command with SIGHUP ignored: the sweep and its workers keep ignoring it; Ctrl-C still stops it."""
    spec_file = write_spec(tiny_spec.with_overrides(epochs=300).to_dict(), "long.json")
    out = tmp_path / "results"
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as `nohup` does; a child inherits an ignored signal
    try:
        args = ["sweep-lr", str(spec_file), "--values", "0.01,0.02", "--parallel", "2", "--out", str(out)]
        process = start_cli(*args, ignored=(signal.SIGHUP,))
    finally:
        signal.signal(signal.SIGHUP, previous)
    try:
        def rows() -> list[int]:
            return sorted(len(p.read_text().splitlines()) for p in out.glob("*/lr-*/history.csv"))

        wait_for(lambda: len(rows()) == 2 and min(rows()) >= 2, process)  # both workers train
        os.killpg(process.pid, signal.SIGHUP)  # the terminal closes
        seen = rows()
        wait_for(lambda: len(rows()) == 2 and all(now > then for now, then in zip(rows(), seen, strict=True)), process)  # both go on
        stdout, stderr = stop(process, signal.SIGINT, group=True, timeout=120)
    finally:
        finish(process)
    assert process.returncode == 130, stderr
    statuses = {json.loads(p.read_text())["status"] for p in out.glob("*/lr-*/run.json")}
    assert statuses == {"interrupted"} and "SIGHUP" not in stderr + "".join(p.read_text() for p in out.glob("*/lr-*/run.json"))
