"""The fresh policy: one new process per task, pinned to its device and backend before Keras is imported.

A timed run shares its process with nothing: no framework imported before it, no earlier run's
memory. The child gets its own session (a terminal's Ctrl-C reaches only the parent, which then
interrupts it and waits for its record), dies with the parent, may get an address-space cap, and is
killed after `timeout_s`. Its output goes to `child.log` and how it was pinned (and any error it
raised before training) to `child.json`, both in the task's run folder.

>>> with make_executor(1, RunOptions(device="cpu"), policy="fresh") as executor:
...     executor.run([Task(0, ((spec, Path("runs/a")),))], on_event=print)   # Event("launch", 0, 0), Event("end", 0, 0, {...})

`call_fresh` runs one function the same way and returns its value (or raises its error, type kept).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench import device as devices
from cnnbench.errors import CnnbenchError, error_from_payload, error_payload, interrupt_reason, raise_if_stopped
from cnnbench.executor.process import run_fresh
from cnnbench.executor.protocol import Event, Task, execute_task
from cnnbench.files import UnsafeFileError, read_bytes
from cnnbench.results import FINISHED, read_record, write_json
from cnnbench.train import RunOptions

USER_ERROR_EXIT = 3  # a child's exit code for a CnnbenchError it could not record in run.json
CHILD_FILES = ("child.json", "child.log")  # in the task's (first) run folder
STALE = ("run.json", "history.csv", "error.txt", "child.json")  # a previous attempt's records: a fresh run starts clean


@dataclass(frozen=True)
class ChildExit:
    """Payload of a "died" event from the fresh policy: how a child ended that left no final record.

    error: what it raised before training started, rebuilt with its type (its message is the record's error).
    """

    code: int
    timed_out: bool = False
    error: BaseException | None = None

    def __str__(self) -> str:
        if self.error is not None:
            return str(self.error)
        return "timed out and was killed" if self.timed_out else f"the fresh process ended with exit code {self.code}"


class FreshProcessError(CnnbenchError):
    """A function run by `call_fresh` ended its process without a result (a crash, a kill, a timeout)."""


# --- the child ------------------------------------------------------------------------------------


def _pinned(options: RunOptions) -> dict[str, Any]:
    devices.configure(options.device, options.backend, options.threads)
    return {"pid": os.getpid(), "pinning": devices.pinning(), "started": time.time()}


def _task_main(task: Task, options: RunOptions) -> int:
    run_dir = Path(task.runs[0][1])
    result = {"task": "run", **_pinned(options)}  # as child.json always said
    write_json(run_dir / "child.json", result)  # written first, so a child that dies still shows how it was pinned
    code = 0
    try:
        execute_task(task, options, lambda kind, lane, payload: None)  # its progress is in each run's history.csv
    except CnnbenchError as exc:  # raised before training started: train_run records what happens after
        result["error"] = error_payload(exc)
        code = USER_ERROR_EXIT
    result["ended"] = time.time()
    write_json(run_dir / "child.json", result)
    return code


def clear_stale(task: Task) -> None:
    """Make the task's run folders and remove a previous attempt's records from them: a fresh run starts clean."""
    for _, folder in task.runs:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in STALE:
            (Path(folder) / stale).unlink(missing_ok=True)


def launch_fresh(task: Task, options: RunOptions, timeout_s: float | None = None) -> tuple[int, bool]:
    """Execute `task` in a fresh, pinned process to its end: (exit code, timed out). Files land in its run folder."""
    run_dir = Path(task.runs[0][1])
    clear_stale(task)
    return run_fresh(_task_main, (task, options), run_dir / "child.log", task.memory_limit_mb, timeout_s)


def _call_main(result_path: str, options: RunOptions, function: Callable[..., Any], args: tuple) -> int:
    result = _pinned(options)
    try:
        result["value"] = function(*args)
    except CnnbenchError as exc:
        result["error"] = error_payload(exc)
    write_json(result_path, result)
    return 0


def call_fresh(function: Callable[..., Any], *args: Any, options: RunOptions, timeout_s: float | None = None) -> Any:
    """`function(*args)` (importable, its value JSON) in a fresh process pinned as `options` says.

    Its CnnbenchError is raised here with its type and fields; a process that ends without a result
    raises FreshProcessError naming its exit code and the line of its log that explains it.
    """
    with tempfile.TemporaryDirectory(prefix="cnnbench-") as tmp:
        result_path, log = Path(tmp) / "result.json", Path(tmp) / "child.log"
        code, timed_out = run_fresh(_call_main, (str(result_path), options, function, args), log, None, timeout_s)
        result = read_record(result_path) or {}
        if "error" in result:
            raise error_from_payload(result["error"], "a fresh process")
        if "value" not in result:
            how = f"timed out after {timeout_s:g} s" if timed_out else f"exit {code}"
            raise FreshProcessError(f"{how}: {log_excerpt(log)}")
        return result["value"]


def log_excerpt(log_path: Path, limit: int = 400) -> str:
    """The line of a child's log that explains its end: a memory error if any, else the last line."""
    from cnnbench.train import looks_like_oom

    try:
        lines = [line.strip() for line in read_bytes(log_path, 2**20, tail=True).decode(errors="replace").splitlines()]
    except (OSError, UnsafeFileError):
        return ""
    lines = [line for line in lines if line and not line.startswith(("@", "***", "File ", "Traceback"))]
    memory = [line for line in lines if looks_like_oom(line)]
    return (memory or lines or [""])[-1][:limit]


# --- the parent -----------------------------------------------------------------------------------


def task_ended(task: Task, code: int, timed_out: bool, on_event: Callable[[Event], None], fatal: tuple[type, ...]) -> None:
    """The events of a fresh task that ended: "end" with each run's final record, else "died" with a ChildExit.

    An error the child raised that every task would hit (an instance of `fatal`) is raised here after.
    """
    child = read_record(Path(task.runs[0][1]) / "child.json") or {}
    error = error_from_payload(child["error"], "a fresh process") if isinstance(child.get("error"), dict) else None
    for lane, (_, run_dir) in enumerate(task.runs):
        record = read_record(Path(run_dir) / "run.json")
        if error is None and record and record.get("status") in (*FINISHED, "failed"):  # the run's own final record
            on_event(Event("end", task.key, lane, record))
        else:
            on_event(Event("died", task.key, lane, ChildExit(code, timed_out, error)))
    if error is not None and isinstance(error, fatal):
        raise error


def task_interrupted(task: Task, exc: BaseException, on_event: Callable[[Event], None]) -> None:
    for lane in range(len(task.runs)):
        on_event(Event("interrupted", task.key, lane, interrupt_reason(exc)))


class FreshExecutor:
    """One fresh, pinned process per task on this machine, one task at a time (timed runs never overlap).

    Events: "launch" as a task's process is about to start, then per run "end" (its final record) or
    "died" (a ChildExit); on Ctrl-C or a stop signal, "interrupted" for the task in flight (its child
    was interrupted and recorded it, if it could), then KeyboardInterrupt is raised again.
    """

    def __init__(self, options: RunOptions, timeout_s: float | None = None, fatal: tuple[type, ...] = (CnnbenchError,)) -> None:
        self.options, self.timeout_s, self.fatal = options, timeout_s, fatal
        self.on_info: Callable[[str], None] = lambda message: None

    def __enter__(self) -> FreshExecutor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"where": "this machine, one fresh process per run", "runs_at_once": 1}

    def run(self, tasks: Sequence[Task], on_event: Callable[[Event], None]) -> None:
        for task in tasks:
            raise_if_stopped()  # a run boundary: a SIGTERM or SIGHUP whose first raise was swallowed stops here
            on_event(Event("launch", task.key, 0))
            try:
                code, timed_out = launch_fresh(task, task.options or self.options, self.timeout_s)
            except KeyboardInterrupt as exc:
                task_interrupted(task, exc, on_event)
                raise
            task_ended(task, code, timed_out, on_event, self.fatal)

