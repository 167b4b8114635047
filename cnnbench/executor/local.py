"""Execution on this machine: inline (in this process) and a pool of spawned worker processes.

Both speak the task/event protocol (`protocol.py`); how their processes start, stop and die with
this one is `process.py`.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cnnbench.errors import (
    CnnbenchError,
    Terminated,
    error_payload,
    raise_if_stopped,
    raise_payload,
    request_stop,
    stop_exception,
    stop_requested,
)
from cnnbench.executor.process import (
    ALL_STOP_SIGNALS,
    INTERRUPT_GRACE_S,
    INTERRUPT_WAIT_S,
    ORPHAN_GRACE_S,
    START_TIMEOUT_S,
    bootstrap,
    handled_stop_signals,
    prepare_worker,
    quiet_retracing,
    release_previous_run,
    spawn_context,
    start_resource_tracker,
    stop_signals_blocked,
    unblock_stop_signals,
)
from cnnbench.executor.protocol import Event, Task, execute_task
from cnnbench.spec import Spec
from cnnbench.train import RunOptions


class InlineExecutor:
    """Tasks one after another in this process: Keras imported and the data loaded once for all runs."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options

    def run(self, tasks: Sequence[Task], on_event: Callable[[Event], None]) -> None:
        quiet_retracing()
        for done, task in enumerate(tasks):
            raise_if_stopped()  # a run boundary: a stop signal whose first raise was swallowed ends the runs here
            if done:
                release_previous_run()
            records = execute_task(task, self.options, lambda kind, lane, payload, key=task.key: on_event(Event(kind, key, lane, payload)))
            for lane, record in enumerate(records):
                on_event(Event("end", task.key, lane, record))

def _worker_main(tasks, events, stop, parent_pid: int, options: RunOptions, warm: Spec | None) -> None:
    """A pool worker: configure threads and device, import Keras and load the data once, then execute tasks.

    Messages to the parent are (kind, task key, lane, pid, payload). It starts with the stop signals blocked
    (`_Pool.spawn`), so one that arrives before its handlers are installed waits for them. During a task the first
    SIGINT, SIGTERM or SIGHUP interrupts the run (train_run records `interrupted`, naming the signal) and the worker
    exits; later ones are only noted, so they never cut the first one's recording short. Between tasks a SIGINT is
    noted and the next task is not started (the parent decides what an interrupt means, and stops too); SIGTERM
    (also what the kernel sends when the parent dies) exits at once. A stop noted but swallowed on the way (by a
    bare `except:` in Keras, say) still ends the run as `interrupted`, at its next epoch boundary or as the error it
    became (errors.raise_if_stopped).
    """
    busy = threading.Event()
    deadline: list[threading.Timer] = []

    def on_stop(signum, frame) -> None:
        if not busy.is_set():
            if signum == signal.SIGINT:
                request_stop(signum)  # the next task is not started
                return
            os._exit(128 + signum)
        first = request_stop(signum)  # a second signal must not cut the first one's recording short
        if signum != signal.SIGINT and not deadline:  # SIGTERM (the parent died, perhaps) or SIGHUP: a run that ignores
            deadline.append(threading.Timer(ORPHAN_GRACE_S, os._exit, (128 + signum,)))  # the interrupt is ended anyway
            deadline[0].start()
        if first:
            raise stop_exception(signum)  # the run's record names the signal

    for sig in handled_stop_signals():  # one the parent ignores (`nohup`) the worker inherited ignored, and ignores
        signal.signal(sig, on_stop)
    unblock_stop_signals()
    bootstrap(parent_pid)
    pid = os.getpid()
    warnings.showwarning = lambda message, *args, **kwargs: print(f"warning: {message}", file=sys.stderr)
    try:
        prepare_worker(options)
        from cnnbench.train import load_data_for

        if warm is not None and warm.data.dataset != "synthetic":  # synthetic data is shaped by the model; quick anyway
            load_data_for(warm)
    except Exception as exc:
        events.put(("fatal", None, 0, pid, error_payload(exc)))
        return
    events.put(("ready", None, 0, pid, None))
    executed = 0
    while (task := tasks.get()) is not None:
        events.put(("take", task.key, 0, pid, None))
        if executed:
            release_previous_run()
        try:
            busy.set()  # inside the try: a signal's raise from here on is this task's interrupt
            if stop.is_set():  # checked once busy, so a stop is never missed
                raise KeyboardInterrupt
            raise_if_stopped()  # a signal that arrived between tasks
            records = execute_task(task, options, lambda kind, lane, payload, key=task.key: events.put((kind, key, lane, pid, payload)))
        except KeyboardInterrupt:
            _interrupted(events, task.key, pid, parent_pid)
            return
        except Exception as exc:
            if stop_requested() is not None:  # the stop signal, turned into another error on the way: not a failure
                _interrupted(events, task.key, pid, parent_pid)
                return
            events.put(("fatal", task.key, 0, pid, error_payload(exc)))  # a bad spec or dataset: every other run would fail the same way
            return
        finally:
            busy.clear()
        executed += 1
        for lane, record in enumerate(records):
            events.put(("end", task.key, lane, pid, record))


def stop_signal(exit_code: int | None) -> int | None:
    """The stop signal (SIGINT, SIGTERM, SIGHUP) a worker's exit code says ended it: killed by it (-N), or exited
    128 + N after it (a worker whose parent is gone, or whose run ignored the interrupt); else None."""
    for sig in ALL_STOP_SIGNALS:
        if exit_code in (-sig, 128 + sig):
            return sig
    return None


def _interrupted(events, key: int, pid: int, parent_pid: int) -> None:
    if os.getppid() != parent_pid:
        os._exit(128 + signal.SIGTERM)  # nobody reads the queue any more: flushing it could block forever
    events.put(("interrupted", key, 0, pid, None))


@dataclass
class _Pool:
    """The worker processes of a LocalExecutor and the queues that connect them to this process."""

    size: int
    options: RunOptions
    warm: Spec | None
    processes: dict[int, Any] = field(default_factory=dict)
    ready: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.context = spawn_context()
        start_resource_tracker()
        self.tasks, self.events, self.stop = self.context.Queue(), self.context.Queue(), self.context.Event()
        self.started = time.monotonic()
        for _ in range(self.size):
            self.spawn()

    def spawn(self) -> None:
        args = (self.tasks, self.events, self.stop, os.getpid(), self.options, self.warm)
        process = self.context.Process(target=_worker_main, args=args, daemon=True)
        with stop_signals_blocked():  # until the worker has its handlers: a Ctrl-C meanwhile is neither lost nor a traceback
            process.start()
        self.processes[process.pid] = process

    def dead(self) -> list[tuple[int, int]]:
        """(pid, exit code) of workers that exited since the last call; they are forgotten."""
        gone = [(pid, p.exitcode) for pid, p in self.processes.items() if p.exitcode is not None]
        for pid, _ in gone:
            self.processes.pop(pid)
        return gone

    def interrupt(self, sig: int = signal.SIGINT) -> None:
        """Stop: no task starts any more, tasks in progress are interrupted (by `sig`: SIGINT is a
        Ctrl-C, SIGTERM a termination, as their records say) and write their records.

        Every worker still alive gets `sig`, not only those known to be busy: one may have taken a task whose
        "take" this process has not read (an idle one notes a SIGINT, or exits on SIGTERM)."""
        self.stop.set()
        for _ in self.processes:
            self.tasks.put(None)
        self._wait(INTERRUPT_GRACE_S)
        for pid, process in self.processes.items():
            if process.exitcode is None:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        self._wait(INTERRUPT_WAIT_S)

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(p.exitcode is None for p in self.processes.values()):
            try:
                self.events.get(timeout=0.1)  # drained, or a worker could block flushing its last messages
            except queue.Empty:
                pass

    def close(self) -> None:
        """Let idle workers exit, and end any that do not."""
        for _ in self.processes:
            self.tasks.put(None)
        self._wait(10.0)
        for process in self.processes.values():
            if process.exitcode is None:
                process.kill()
            process.join(5.0)
        self.tasks.cancel_join_thread()  # sentinels nobody reads must not keep this process alive
        self.tasks.close()
        self.events.close()


class LocalExecutor:
    """N spawned worker processes on this machine, each executing many tasks (start-up paid once per worker).

    A worker that dies (killed, out of memory, a crash in native code) gives a "died" event for its
    task and is replaced; Ctrl-C interrupts the tasks in progress and re-raises KeyboardInterrupt;
    an error every task would hit (a bad spec or dataset) stops the others and is raised.
    """

    def __init__(self, size: int, options: RunOptions, warm: Spec | None = None) -> None:
        self.size, self.options, self.warm = size, options, warm

    def run(self, tasks: Sequence[Task], on_event: Callable[[Event], None]) -> None:
        size = max(1, min(self.size, len(tasks)))
        pool = _Pool(size, self.options, self.warm)
        by_key = {task.key: task for task in tasks}
        waiting = deque(tasks)
        taken: dict[int, int] = {}  # task key -> pid of the worker executing it
        ended: dict[int, int] = {}  # task key -> lanes ended
        queued = done = 0

        def feed() -> None:
            nonlocal queued
            # One task per idle worker, never a backlog: a stop then never finds tasks already queued.
            while waiting and queued < size:
                pool.tasks.put(waiting.popleft())
                queued += 1

        def finish(key: int) -> None:
            nonlocal queued, done
            taken.pop(key, None)
            done += 1
            queued -= 1
            feed()

        try:
            feed()
            while done < len(tasks):
                raise_if_stopped()
                try:
                    message = pool.events.get(timeout=0.5)
                except queue.Empty:
                    message = None
                if message is None:
                    for pid, code in pool.dead():
                        stopped = stop_signal(code)
                        if stopped and any(p == pid for p in taken.values()):
                            raise stop_exception(stopped)  # killed by a stop signal (or gave up after one): interrupted, not failed
                        if pid not in pool.ready:
                            raise CnnbenchError(f"a worker process exited while starting (exit code {code}); try `parallel` 1 to see why")
                        for key in [k for k, p in taken.items() if p == pid]:
                            killed = ", killed: perhaps out of memory" if code == -signal.SIGKILL else ""
                            for lane in range(ended.get(key, 0), len(by_key[key].runs)):
                                on_event(Event("died", key, lane, f"the worker process died (exit code {code}{killed})"))
                            finish(key)
                        if done < len(tasks):
                            pool.spawn()
                    if not pool.ready and time.monotonic() - pool.started > START_TIMEOUT_S:
                        raise CnnbenchError(f"no worker process became ready within {START_TIMEOUT_S:.0f} s")
                    continue
                kind, key, lane, pid, payload = message
                if kind == "ready":
                    pool.ready.add(pid)
                elif kind == "fatal":
                    raise_payload(payload, "a worker process")
                elif kind == "take":
                    taken[key] = pid
                elif kind in ("start", "epoch"):
                    on_event(Event(kind, key, lane, payload))
                elif kind == "end":
                    ended[key] = ended.get(key, 0) + 1
                    on_event(Event("end", key, lane, payload))
                    if ended[key] == len(by_key[key].runs):
                        finish(key)
                elif kind == "interrupted":  # a Ctrl-C (or a closed terminal's SIGHUP) that reached a worker alone still stops everything
                    taken.pop(key, None)
                    raise_if_stopped()
                    raise KeyboardInterrupt
        except BaseException as exc:  # Ctrl-C, SIGTERM, SIGHUP, or an error every run would hit: stop the others cleanly
            pool.interrupt(exc.signum if isinstance(exc, Terminated) else signal.SIGINT)
            raise
        finally:
            pool.close()

