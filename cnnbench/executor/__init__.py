"""Where runs execute: in this process, on a pool of local worker processes, in one fresh process, or on Ray.

Sweeps and benches plan and record; they hand `Task`s to an executor (`make_executor`) and get
`Event`s back. The package, by concept:

- `protocol`: `Task`, `Event`, `execute_task` (the one call into training), the name → executor registry;
- `resources`: how many threads (and on Ray CPUs) a run gets, decided once for every executor;
- `process`: stop signals, dying with the parent, the bootstrap of every child, process groups;
- `local`: inline, the worker pool; `fresh`: one fresh, pinned process per task (and `call_fresh` for one function);
- `ray_config`, `ray_session`, `ray_executor` (a pool of actors), `ray_fresh` (the fresh policy, one per node): Ray,
  imported only when Ray is used.
"""

from __future__ import annotations

import importlib

from cnnbench.executor.process import as_raised, run_fresh, sigterm_as_interrupt
from cnnbench.executor.protocol import EXECUTORS, Event, Task, execute_task, make_executor
from cnnbench.executor.ray_config import RayConfig, ray_config

_LAZY = {  # what pulls Ray, or the local processes, in only when used
    "InlineExecutor": "local",
    "LocalExecutor": "local",
    "RaySession": "ray_session",
    "RayExecutor": "ray_executor",
    "RayWorker": "ray_executor",
    "write_shipped": "ray_executor",
    "RayFreshExecutor": "ray_fresh",
    "FreshExecutor": "fresh",
    "ChildExit": "fresh",
    "call_fresh": "fresh",
}

__all__ = ["EXECUTORS", "Event", "RayConfig", "Task", "as_raised", "execute_task", "make_executor", "ray_config", "run_fresh",
           "sigterm_as_interrupt", *_LAZY]  # fmt: skip


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"cnnbench.executor.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'cnnbench.executor' has no attribute {name!r}")
