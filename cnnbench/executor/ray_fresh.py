"""The fresh policy on Ray: each task in a new pinned process on a node of its own, its files shipped back.

The child is the same as locally (`fresh.launch_fresh`), started on a node Ray picks (which pins its
GPU). Timed runs never share a node: each reserves every CPU of a node unless `cpus_per_run` says
otherwise, and each is sent to a node no other task of this executor is using (`slots` at once, one
per node).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cnnbench.errors import CnnbenchError, Terminated, raise_if_stopped, stop_class
from cnnbench.executor.fresh import clear_stale, launch_fresh, task_ended, task_interrupted
from cnnbench.executor.process import as_raised
from cnnbench.executor.protocol import Event, Task
from cnnbench.executor.ray_config import RayConfig
from cnnbench.executor.ray_executor import collect_files, write_shipped
from cnnbench.executor.ray_session import RaySession
from cnnbench.executor.resources import fresh_cpus
from cnnbench.train import RunOptions


def _fresh_on_node(task: Task, options: RunOptions, timeout_s: float | None) -> tuple[int, bool, list[dict[str, bytes]]]:
    """A Ray task: `task` in a fresh, pinned child on this node, in a temporary folder; (exit code, timed out, files per run)."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="cnnbench-ray-"))
    try:
        local = Task(task.key, tuple((spec, tmp / f"run-{lane}") for lane, (spec, _) in enumerate(task.runs)), task.function,
                     task.options, task.memory_limit_mb)  # fmt: skip
        code, timed_out = launch_fresh(local, options, timeout_s)
        return code, timed_out, [collect_files(run_dir) if run_dir.is_dir() else {} for _, run_dir in local.runs]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RayFreshExecutor:
    """One fresh, pinned process per task on Ray, one task per node at a time.

    Opened (`with`) it connects to Ray and says where (`on_info`); `run` may be called then. A task's
    error that every task would hit (`fatal`), Ctrl-C or SIGTERM stops the rest: tasks in flight are
    cancelled (their children interrupted, recording it) and say "interrupted", tasks not started stay
    so; then the first cause is raised.
    """

    def __init__(self, config: RayConfig, options: RunOptions, timeout_s: float | None = None,
                 fatal: tuple[type, ...] = (CnnbenchError,)) -> None:  # fmt: skip
        self.config, self.options, self.timeout_s, self.fatal = config, options, timeout_s, fatal
        self.on_info: Callable[[str], None] = lambda message: None
        self.session: RaySession | None = None
        self.slots = 1
        self.at_once = 0  # the most tasks that were in flight together
        self._changed = threading.Condition()
        self._busy: set[str] = set()
        self._in_flight: set[Any] = set()
        self._stopped: type[KeyboardInterrupt] | None = None

    def __enter__(self) -> RayFreshExecutor:
        self.session = RaySession(self.config)
        self.slots = max(1, len(self.session.nodes))
        self.on_info(self.session.description)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def describe(self) -> dict[str, Any]:
        where = self.session.description if self.session is not None else f"Ray ({self.config.address})"
        return {"where": where, "nodes": self.slots, "runs_at_once": self.at_once}

    def run(self, tasks: Sequence[Task], on_event: Callable[[Event], None]) -> None:
        if self.session is None:
            with self:
                return self.run(tasks, on_event)
        reporting = threading.Lock()  # tasks on several nodes report from several threads

        def emit(event: Event) -> None:
            with reporting:
                on_event(event)

        if self.slots > 1 and len(tasks) > 1:
            self._on_nodes(tasks, emit)
        else:
            for task in tasks:
                raise_if_stopped()  # a run boundary: a SIGTERM or SIGHUP whose first raise was swallowed stops here
                self._one(task, emit)

    def _on_nodes(self, tasks: Sequence[Task], emit: Callable[[Event], None]) -> None:
        from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

        pool = ThreadPoolExecutor(self.slots, thread_name_prefix="cnnbench-fresh")
        futures = [pool.submit(self._one, task, emit) for task in tasks]
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
                for future in done:
                    if future.exception() is not None:
                        raise future.exception()
        except BaseException as exc:
            stop = as_raised(exc)
            self.stop(stop.signum if isinstance(stop, Terminated) else None)
            for future in futures:
                future.cancel()  # not started yet: never starts
            wait(futures)  # the tasks in flight record `interrupted`
            raise
        finally:
            pool.shutdown(wait=True)

    def _resources(self, options: RunOptions) -> tuple[float, float]:
        return fresh_cpus(self.config, options.threads, self.session.node_cpus), self.config.gpus_for(options.device)

    def _take_node(self, cpus: float, gpus: float) -> str | None:
        """A node no task of this executor is using that has the resources, waiting for one; None: none has them (Ray says so)."""
        with self._changed:
            while True:
                if self._stopped is not None:
                    raise self._stopped
                fits = [node for node, (c, g) in self.session.nodes.items() if c >= cpus and g >= gpus]
                free = [node for node in fits if node not in self._busy]
                if free or not fits:
                    node = free[0] if free else None
                    if node is not None:
                        self._busy.add(node)
                    return node
                self._changed.wait(0.5)

    def _one(self, task: Task, emit: Callable[[Event], None]) -> None:
        options = task.options or self.options
        clear_stale(task)  # the driver's folders: what comes back replaces a previous attempt's records
        try:
            code, timed_out, files = self._launch(task, options, emit)
        except KeyboardInterrupt as exc:
            task_interrupted(task, exc, emit)
            raise
        for (_, run_dir), shipped in zip(task.runs, files, strict=True):
            write_shipped(Path(run_dir), shipped)
        task_ended(task, code, timed_out, emit, self.fatal)

    def _launch(self, task: Task, options: RunOptions, emit: Callable[[Event], None]) -> tuple[int, bool, list[dict[str, bytes]]]:
        ray = self.session.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        cpus, gpus = self._resources(options)
        node = self._take_node(cpus, gpus)
        try:
            emit(Event("launch", task.key, 0))
            # soft: should that node die, Ray places the retry elsewhere (the reserved CPUs still keep runs apart)
            strategy = NodeAffinitySchedulingStrategy(node, soft=True) if node else "DEFAULT"
            remote = ray.remote(_fresh_on_node).options(num_cpus=cpus, num_gpus=gpus, max_retries=self.config.retries,
                                                        scheduling_strategy=strategy)  # fmt: skip
            ref = remote.remote(task, options, self.timeout_s)
            with self._changed:
                self._in_flight.add(ref)
                self.at_once = max(self.at_once, len(self._in_flight))
                stopped = self._stopped
            if stopped is not None:  # stopped while this one was being sent
                ray.cancel(ref)
            try:
                return ray.get(ref)
            except KeyboardInterrupt as exc:  # Ctrl-C in the main thread (one task at a time)
                ray.cancel(ref)  # KeyboardInterrupt in the task: it interrupts its child, which records that
                raise as_raised(exc) from None
            except ray.exceptions.TaskCancelledError:
                raise (self._stopped or KeyboardInterrupt)() from None
            except ray.exceptions.RayError as exc:
                raise CnnbenchError(f"a Ray bench task failed: {str(exc).strip().splitlines()[-1][:300]}") from None
            finally:
                with self._changed:
                    self._in_flight.discard(ref)
        finally:
            with self._changed:
                self._busy.discard(node)
                self._changed.notify_all()

    def stop(self, signum: int | None = None) -> None:
        """Interrupt every task in flight (each child records `interrupted`); no task starts after this."""
        with self._changed:
            self._stopped = stop_class(signum)
            refs = list(self._in_flight)
            self._changed.notify_all()
        for ref in refs:
            try:
                self.session.ray.cancel(ref)
            except Exception:  # noqa: BLE001 - it ended meanwhile
                pass
