"""Where runs execute: in this process, on a pool of local worker processes, in one fresh process, or on Ray.

Sweeps and benches plan and record; they hand `Task`s to an executor and get `Event`s back.

>>> tasks = [Task(0, ((spec, Path("results/s/lr-0.1")),))]            # a task names its run(s)
>>> LocalExecutor(2, RunOptions(threads=1)).run(tasks, on_event=print)   # Event("start", 0, 0, {...}), ...
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench import device as devices
from cnnbench.errors import CnnbenchError, UsageError
from cnnbench.spec import Spec
from cnnbench.train import RunOptions

_START_TIMEOUT_S = 600.0  # a worker that is not ready by then (import + data) is considered stuck
_INTERRUPT_GRACE_S = 1.0  # a terminal's Ctrl-C reaches the workers too; give them this long before forwarding it
_INTERRUPT_WAIT_S = 30.0  # how long interrupted workers get to write their records
_ORPHAN_GRACE_S = 5.0  # a worker whose parent died gets this long to record `interrupted`, then exits anyway
PR_SET_PDEATHSIG = 1  # linux/prctl.h


# --- SIGTERM takes the Ctrl-C path ----------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (runs in flight recorded `interrupted`); a second SIGTERM kills at once."""

    signal = signal.SIGTERM


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block (main thread only), SIGTERM raises Terminated, a KeyboardInterrupt."""

    def handler(signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupt_reason(exc: BaseException) -> str:
    return "interrupted by SIGTERM" if isinstance(exc, Terminated) else "interrupted by the user (Ctrl-C)"


# --- where: Ray configuration -----------------------------------------------------------------


@dataclass(frozen=True)
class RayConfig:
    """Execute on Ray: `address` "local" starts a private instance; else HOST:PORT, auto or ray://…

    source: what chose Ray (--ray, --address, RAY_ADDRESS), for the message saying which cluster is
    used. cpus_per_run: CPUs Ray reserves per run (its threads); gpus_per_run: GPUs (fractions
    share one). retries: how often a run whose worker or node died is re-queued.
    """

    address: str = "local"
    source: str = "--ray"
    cpus_per_run: float | None = None
    gpus_per_run: float | None = None
    retries: int = 1


def ray_config(use_ray: bool = False, address: str | None = None, cpus_per_run: float | None = None,
               gpus_per_run: float | None = None) -> RayConfig | None:  # fmt: skip
    """The RayConfig the options ask for (--ray, --address, or RAY_ADDRESS in the environment), or None: local."""
    if use_ray and address:
        raise UsageError("--ray starts a private Ray instance and --address joins a cluster: give one of them")
    for name, value in (("--cpus-per-run", cpus_per_run), ("--gpus-per-run", gpus_per_run)):
        if value is not None and not value > 0:
            raise UsageError(f"{name}: must be above 0, got {value:g}")
    env = os.environ.get("RAY_ADDRESS")
    if use_ray:
        config = RayConfig("local", "--ray")
    elif address:
        config = RayConfig(address.strip(), "--address")
    elif env:
        config = RayConfig(env.strip(), "RAY_ADDRESS")
    else:
        if cpus_per_run is not None or gpus_per_run is not None:
            raise UsageError("--cpus-per-run and --gpus-per-run apply to Ray: add --ray or --address (locally, use --threads)")
        return None
    return RayConfig(config.address, config.source, cpus_per_run, gpus_per_run)


# --- the task/event protocol ------------------------------------------------------------------


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


@dataclass(frozen=True)
class Event:
    """Progress of one run (lane) of a task: "start" (the initial record), "epoch" (a history row),
    "end" (the final record) or "died" (payload: why its process or node died; nothing was recorded)."""

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


def describe_error(exc: BaseException) -> tuple[bool, str]:
    """(is a user error, message) of an exception raised in a worker; a bug keeps its traceback."""
    if isinstance(exc, CnnbenchError):
        return True, str(exc)
    return False, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()


def raise_fatal(payload: tuple[bool, str], where: str = "a worker") -> None:
    user_error, message = payload
    raise CnnbenchError(message) if user_error else RuntimeError(f"{where} failed:\n{message}")


# --- a child never outlives its parent --------------------------------------------------------


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """Have the kernel send `sig` to this process when its parent dies, however it dies (kill -9 included).

    Linux' PR_SET_PDEATHSIG; the parent-pid check closes the race of a parent that died before the
    call. Elsewhere a watchdog thread polls the parent pid instead.
    """
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:
        os._exit(128 + sig)
    if not armed:

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os.kill(os.getpid(), sig)

        threading.Thread(target=watch, name="cnnbench-parent-watch", daemon=True).start()


def _bootstrap(parent_pid: int, log: str | None = None, memory_limit_mb: int | None = None, own_session: bool = False) -> None:
    """First steps of every process an executor starts, before anything heavy is imported."""
    if own_session:
        os.setsid()  # a terminal's Ctrl-C reaches the parent only, which stops the child itself
    die_with_parent(parent_pid)
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    if memory_limit_mb:
        import resource

        size = memory_limit_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (size, size))
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # processes share a GPU: none may take it all


def _context():
    import multiprocessing

    # spawn, not fork: a fresh interpreter whose Keras is configured (threads, device) before it is imported.
    return multiprocessing.get_context("spawn")


# --- one fresh process per job (bench) ---------------------------------------------------------


def _fresh_main(parent_pid: int, log: str | None, memory_limit_mb: int | None, target: Callable[..., int], args: tuple) -> None:
    _bootstrap(parent_pid, log, memory_limit_mb, own_session=True)
    sys.exit(target(*args))


def run_fresh(
    target: Callable[..., int], args: tuple, log: str | Path | None = None, memory_limit_mb: int | None = None,
    timeout_s: float | None = None,
) -> tuple[int, bool]:  # fmt: skip
    """Run `target(*args)` in a new process to its end: (exit code, timed out); its output goes to `log`.

    The process dies with this one, gets its own session (so Ctrl-C reaches only this process, which
    then interrupts it and waits for it to record that), and is killed after `timeout_s`.
    """
    process = _context().Process(target=_fresh_main, args=(os.getpid(), str(log) if log else None, memory_limit_mb, target, args))
    process.start()
    try:
        process.join(timeout_s)
        if process.exitcode is None:
            _signal_group(process.pid, signal.SIGKILL)
            process.join()
            return process.exitcode, True
        return process.exitcode, False
    except BaseException:  # Ctrl-C: let train_run record `interrupted`, then make sure the child is gone
        _signal_group(process.pid, signal.SIGINT)
        process.join(10)
        if process.exitcode is None:
            _signal_group(process.pid, signal.SIGKILL)
            process.join()
        raise


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the child's whole session: its own helpers die with it
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)  # not yet its own session leader
        except ProcessLookupError:
            pass


def _not_retracing(record) -> bool:
    return "triggered tf.function retracing" not in record.getMessage()


def quiet_retracing() -> None:
    """Each run builds a new model, so TensorFlow's "triggered tf.function retracing" warning is expected noise."""
    import logging

    logger = logging.getLogger("tensorflow")
    if _not_retracing not in logger.filters:
        logger.addFilter(_not_retracing)


def release_previous_run() -> None:
    """Free the previous run's model and traced functions; every run re-seeds itself in build_model."""
    if devices.keras_imported():
        sys.modules["keras"].backend.clear_session()


# --- executors ---------------------------------------------------------------------------------


class InlineExecutor:
    """Tasks one after another in this process: Keras imported and the data loaded once for all runs."""

    description = "this process"

    def __init__(self, options: RunOptions) -> None:
        self.options = options

    def run(self, tasks: Sequence[Task], on_event: Callable[[Event], None]) -> None:
        quiet_retracing()
        for done, task in enumerate(tasks):
            if done:
                release_previous_run()
            records = execute_task(task, self.options, lambda kind, lane, payload, key=task.key: on_event(Event(kind, key, lane, payload)))
            for lane, record in enumerate(records):
                on_event(Event("end", task.key, lane, record))

    def close(self) -> None:
        pass


def _worker_main(tasks, events, stop, parent_pid: int, options: RunOptions, warm: Spec | None) -> None:
    """A pool worker: configure threads and device, import Keras and load the data once, then execute tasks.

    Messages to the parent are (kind, task key, lane, pid, payload). SIGINT is ignored between
    tasks, so the parent decides what an interrupt means; during a task it interrupts the run
    (train_run records `interrupted`) and the worker exits. SIGTERM (also what the kernel sends when
    the parent dies) does the same, and exits at once between tasks.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _bootstrap(parent_pid)
    pid = os.getpid()
    busy = threading.Event()

    def on_term(signum, frame) -> None:
        if not busy.is_set():
            os._exit(128 + signum)
        threading.Timer(_ORPHAN_GRACE_S, os._exit, (128 + signum,)).start()  # a run that ignores the interrupt
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    warnings.showwarning = lambda message, *args, **kwargs: print(f"warning: {message}", file=sys.stderr)
    try:
        devices.configure(options.device, options.backend, options.threads)
        devices.import_keras()
        from cnnbench.train import load_data_for

        quiet_retracing()
        if warm is not None and warm.data.dataset != "synthetic":  # synthetic data is shaped by the model; quick anyway
            load_data_for(warm, 10)
    except Exception as exc:
        events.put(("fatal", None, 0, pid, describe_error(exc)))
        return
    events.put(("ready", None, 0, pid, None))
    executed = 0
    while (task := tasks.get()) is not None:
        events.put(("take", task.key, 0, pid, None))
        if executed:
            release_previous_run()
        busy.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            if stop.is_set():  # checked after the handler is set, so a stop is never missed
                raise KeyboardInterrupt
            records = execute_task(task, options, lambda kind, lane, payload, key=task.key: events.put((kind, key, lane, pid, payload)))
        except KeyboardInterrupt:
            if os.getppid() != parent_pid:
                os._exit(128 + signal.SIGTERM)  # nobody reads the queue any more: flushing it could block forever
            events.put(("interrupted", task.key, 0, pid, None))
            return
        except Exception as exc:  # a bad spec or dataset: every other run would fail the same way
            events.put(("fatal", task.key, 0, pid, describe_error(exc)))
            return
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            busy.clear()
        executed += 1
        for lane, record in enumerate(records):
            events.put(("end", task.key, lane, pid, record))


@dataclass
class _Pool:
    """The worker processes of a LocalExecutor and the queues that connect them to this process."""

    size: int
    options: RunOptions
    warm: Spec | None
    processes: dict[int, Any] = field(default_factory=dict)
    ready: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.context = _context()
        self.tasks, self.events, self.stop = self.context.Queue(), self.context.Queue(), self.context.Event()
        self.started = time.monotonic()
        for _ in range(self.size):
            self.spawn()

    def spawn(self) -> None:
        args = (self.tasks, self.events, self.stop, os.getpid(), self.options, self.warm)
        process = self.context.Process(target=_worker_main, args=args, daemon=True)
        process.start()
        self.processes[process.pid] = process

    def dead(self) -> list[tuple[int, int]]:
        """(pid, exit code) of workers that exited since the last call; they are forgotten."""
        gone = [(pid, p.exitcode) for pid, p in self.processes.items() if p.exitcode is not None]
        for pid, _ in gone:
            self.processes.pop(pid)
        return gone

    def interrupt(self, busy: Sequence[int]) -> None:
        """Stop: no task starts any more, tasks in progress are interrupted and write their records."""
        self.stop.set()
        for _ in self.processes:
            self.tasks.put(None)
        self._wait(_INTERRUPT_GRACE_S)
        for pid in busy:
            if pid in self.processes and self.processes[pid].exitcode is None:
                try:
                    os.kill(pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        self._wait(_INTERRUPT_WAIT_S)

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
        self.description = f"{size} local worker process{'es' if size != 1 else ''}"

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
                try:
                    message = pool.events.get(timeout=0.5)
                except queue.Empty:
                    message = None
                if message is None:
                    for pid, code in pool.dead():
                        if pid not in pool.ready:
                            raise CnnbenchError(f"a worker process exited while starting (exit code {code}); try --parallel 1 to see why")
                        for key in [k for k, p in taken.items() if p == pid]:
                            killed = ", killed: perhaps out of memory" if code == -signal.SIGKILL else ""
                            for lane in range(ended.get(key, 0), len(by_key[key].runs)):
                                on_event(Event("died", key, lane, f"the worker process died (exit code {code}{killed})"))
                            finish(key)
                        if done < len(tasks):
                            pool.spawn()
                    if not pool.ready and time.monotonic() - pool.started > _START_TIMEOUT_S:
                        raise CnnbenchError(f"no worker process became ready within {_START_TIMEOUT_S:.0f} s")
                    continue
                kind, key, lane, pid, payload = message
                if kind == "ready":
                    pool.ready.add(pid)
                elif kind == "fatal":
                    raise_fatal(payload, "a worker process")
                elif kind == "take":
                    taken[key] = pid
                elif kind in ("start", "epoch"):
                    on_event(Event(kind, key, lane, payload))
                elif kind == "end":
                    ended[key] = ended.get(key, 0) + 1
                    on_event(Event("end", key, lane, payload))
                    if ended[key] == len(by_key[key].runs):
                        finish(key)
                elif kind == "interrupted":  # a Ctrl-C that reached a worker alone still stops everything
                    taken.pop(key, None)
                    raise KeyboardInterrupt
        except BaseException:  # Ctrl-C, SIGTERM, or an error every run would hit: stop the others cleanly
            pool.interrupt(list(taken.values()))
            raise
        finally:
            pool.close()

    def close(self) -> None:
        pass


def make_executor(parallel: int, options: RunOptions, warm: Spec | None = None, tasks: int = 2, ray: Any = None):
    """The executor for `parallel` runs at once: Ray when `ray` (a RayConfig) is given, else local.

    One remaining task gains nothing from a worker process but its start-up cost.
    """
    if ray is not None:
        from cnnbench.ray_executor import RayExecutor

        return RayExecutor(ray, parallel, options, warm)
    if parallel > 1 and tasks > 1:
        return LocalExecutor(parallel, options, warm)
    return InlineExecutor(options)
