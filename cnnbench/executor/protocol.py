"""The task/event protocol every executor speaks, and the name → executor registry.

Sweeps and benches plan and record; they hand `Task`s to an executor and get `Event`s back:

>>> tasks = [Task(0, ((spec, Path("results/s/lr-0.1")),))]            # a task names its run(s)
>>> make_executor(2, RunOptions(threads=1)).run(tasks, on_event=print)   # Event("start", 0, 0, {...}), ...
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.errors import CnnbenchError
from cnnbench.spec import Spec
from cnnbench.train import RunOptions


@dataclass(frozen=True)
class Task:
    """Runs that execute together, in one process: one (spec, run_dir) for `train_run`, K for a fused group.

    key: the caller's id for the task (events carry it). run_dir is a path on the driver; an executor
    without a shared filesystem trains elsewhere and writes the files there itself. `function` names
    the function in cnnbench.train that executes the task.
    """

    key: int
    runs: tuple[tuple[Spec, Path], ...]
    function: str = "train_run"  # or a group function: fn(specs, run_dirs, options, on_epoch(lane, row), on_start(lane, record))
    options: RunOptions | None = None  # how this task trains, when not as the executor's options say (a bench's device, backend)
    memory_limit_mb: int | None = None  # the fresh policy: an address-space cap for the task's process


@dataclass(frozen=True)
class Event:
    """Progress of one run (lane) of a task: "start" (the initial record), "epoch" (a history row),
    "end" (the final record) or "died" (payload: why its process or node died; nothing final was recorded).

    The fresh policy also says "launch" (lane 0: the task's process is about to start) and, on Ctrl-C or a
    stop signal, "interrupted" (payload: the reason) for each run in flight before it re-raises.
    """

    kind: str
    key: int
    lane: int
    payload: Any = None


def execute_task(task: Task, options: RunOptions, emit: Callable[[str, int, Any], None]) -> list[dict[str, Any]]:
    """Run a task in this process: the one place where an executor calls into training."""
    from cnnbench import train

    if task.function == "train_run":
        ((spec, run_dir),) = task.runs
        record = train.train_run(
            spec, run_dir, options, on_epoch=lambda row: emit("epoch", 0, row), on_start=lambda record: emit("start", 0, record)
        )
        return [record]
    group = getattr(train, task.function)
    specs, run_dirs = [s for s, _ in task.runs], [d for _, d in task.runs]
    return list(group(specs, run_dirs, options, on_epoch=lambda lane, row: emit("epoch", lane, row),
                      on_start=lambda lane, record: emit("start", lane, record)))  # fmt: skip


# --- the registry: a name → the executor class (imported when asked for: Ray's only with Ray) ---------

EXECUTORS: dict[str, str] = {
    "inline": "cnnbench.executor.local:InlineExecutor",  # one task after another in this process
    "pool": "cnnbench.executor.local:LocalExecutor",  # N spawned workers, each executing many tasks
    "fresh": "cnnbench.executor.fresh:FreshExecutor",  # one fresh, pinned process per task, one at a time
    "ray": "cnnbench.executor.ray_executor:RayExecutor",  # a pool of Ray actors
    "ray-fresh": "cnnbench.executor.ray_fresh:RayFreshExecutor",  # one fresh, pinned process per task, one per node
}
POLICIES = ("reuse", "fresh")  # reuse: a worker process executes many tasks; fresh: each task gets a new one


def executor_class(name: str) -> type:
    """The executor registered as `name`."""
    if name not in EXECUTORS:
        raise CnnbenchError(f"unknown executor {name!r}: one of {', '.join(EXECUTORS)}")
    module, _, attr = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def make_executor(parallel: int, options: RunOptions, warm: Spec | None = None, tasks: int = 2, ray: Any = None,
                  policy: str = "reuse", timeout_s: float | None = None, fatal: tuple[type, ...] = (CnnbenchError,)):  # fmt: skip
    """The executor for `parallel` runs at once: Ray when `ray` (a RayConfig) is given, else local.

    policy "reuse": one remaining task gains nothing from a worker process but its start-up cost, so it
    runs inline. policy "fresh": every task in a new process pinned to its device and backend, killed
    after `timeout_s`; a child's error that is an instance of `fatal` stops the rest and is raised (other
    errors are that task's "died" event). Locally one task at a time; on Ray one per node.
    How many threads (and on Ray CPUs) each run gets is decided in `resources`.
    """
    if policy not in POLICIES:
        raise CnnbenchError(f"unknown executor policy {policy!r}: one of {', '.join(POLICIES)}")
    if policy == "fresh":
        if ray is not None:
            return executor_class("ray-fresh")(ray, options, timeout_s, fatal)
        return executor_class("fresh")(options, timeout_s, fatal)
    if ray is not None:
        return executor_class("ray")(ray, parallel, options, warm)
    from cnnbench.executor.resources import local_options

    options = local_options(options, parallel)
    if parallel > 1 and tasks > 1:
        return executor_class("pool")(parallel, options, warm)
    return executor_class("inline")(options)
