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
from cnnbench.errors import CnnbenchError, Terminated, UsageError, clear_stop, raise_if_stopped, request_stop, stop_class, stop_requested
from cnnbench.results import atomic_write_bytes
from cnnbench.spec import Spec
from cnnbench.train import RunOptions

_START_TIMEOUT_S = 600.0  # a worker that is not ready by then (import + data) is considered stuck
_INTERRUPT_GRACE_S = 1.0  # a terminal's Ctrl-C reaches the workers too; give them this long before forwarding it
_INTERRUPT_WAIT_S = 30.0  # how long interrupted workers get to write their records
_ORPHAN_GRACE_S = 5.0  # a worker whose parent died gets this long to record `interrupted`, then exits anyway
PR_SET_PDEATHSIG = 1  # linux/prctl.h


# --- SIGTERM and SIGHUP take the Ctrl-C path -----------------------------------------------

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # `kill` and a closed terminal or SSH session


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block (main thread only), SIGTERM and SIGHUP raise Terminated, a KeyboardInterrupt.

    The handler stays installed and the signal is also noted (errors.request_stop): a raise that Python
    swallowed (inside a finaliser) is raised again at the next epoch or run boundary, and a later signal
    never kills the process before the runs in flight are recorded.
    """

    def handler(signum, frame) -> None:
        if request_stop(signum):  # later ones: the first is already on its way
            raise Terminated(signum)

    clear_stop()
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, action in previous.items():
            signal.signal(sig, action)


def as_raised(exc: BaseException) -> BaseException:
    """Ray's `get` and `wait` turn whatever a signal handler raised into a plain KeyboardInterrupt:
    the Terminated that SIGTERM or SIGHUP raised is given back, so records name the signal and the exit code is 128 + it."""
    return Terminated(stop_requested()) if type(exc) is KeyboardInterrupt and stop_requested() else exc


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

    def gpus_for(self, device: str) -> float:
        """GPUs Ray reserves for a run on `device`: --gpus-per-run, else a whole GPU for a GPU run, none otherwise."""
        return self.gpus_per_run if self.gpus_per_run is not None else (1.0 if device == "gpu" else 0.0)


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
    if config.address != "local":
        _check_reachable(config.address)  # before a sweep or bench folder is made, and before Ray is imported
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
        from cnnbench.files import open_for_writing

        fd = open_for_writing(log)  # a link planted as child.log is refused, never followed
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


def _prepare_worker(options: RunOptions) -> None:
    """What every worker (local or a Ray actor) does once before its runs: threads and device set, Keras imported."""
    devices.configure(options.device, options.backend, options.threads)
    devices.import_keras()
    quiet_retracing()


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
        if request_stop(signum):  # a second signal must not cut the first one's recording short
            threading.Timer(_ORPHAN_GRACE_S, os._exit, (128 + signum,)).start()  # a run that ignores the interrupt
            raise Terminated(signum)  # the run's record names the signal

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_term)
    warnings.showwarning = lambda message, *args, **kwargs: print(f"warning: {message}", file=sys.stderr)
    try:
        _prepare_worker(options)
        from cnnbench.train import load_data_for

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


def _start_resource_tracker() -> None:
    """multiprocessing's resource tracker ignores SIGINT and SIGTERM but not SIGHUP: a closed terminal killed it
    with the sweep, and each queue's clean-up then printed a traceback. It is started here with SIGHUP blocked
    (a blocked signal stays blocked across exec, and the tracker never unblocks it); this process gets a SIGHUP
    that arrived meanwhile as soon as it is unblocked again."""
    if not hasattr(signal, "pthread_sigmask"):
        return
    from multiprocessing import resource_tracker

    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


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
        _start_resource_tracker()
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

    def interrupt(self, busy: Sequence[int], sig: int = signal.SIGINT) -> None:
        """Stop: no task starts any more, tasks in progress are interrupted (by `sig`: SIGINT is a
        Ctrl-C, SIGTERM a termination, as their records say) and write their records."""
        self.stop.set()
        for _ in self.processes:
            self.tasks.put(None)
        self._wait(_INTERRUPT_GRACE_S)
        for pid in busy:
            if pid in self.processes and self.processes[pid].exitcode is None:
                try:
                    os.kill(pid, sig)
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
                elif kind == "interrupted":  # a Ctrl-C (or a closed terminal's SIGHUP) that reached a worker alone still stops everything
                    taken.pop(key, None)
                    raise_if_stopped()
                    raise KeyboardInterrupt
        except BaseException as exc:  # Ctrl-C, SIGTERM, SIGHUP, or an error every run would hit: stop the others cleanly
            pool.interrupt(list(taken.values()), exc.signum if isinstance(exc, Terminated) else signal.SIGINT)
            raise
        finally:
            pool.close()


# --- Ray ---------------------------------------------------------------------------------------

_RAY_POLL_S = 0.5  # how often the driver collects progress (per-epoch rows) from busy actors
_RAY_CONNECT_TIMEOUT_S = 5.0


def _import_ray(private: bool = False):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray reports usage by default; only if the user said so
    if private:  # read when Ray is imported: a private instance then binds 127.0.0.1 only (measured in design/scale-out.md)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise UsageError("Ray is not installed: pip install 'cnnbench[ray]'") from None
    return ray


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + an empty SETTINGS frame


def _check_reachable(address: str) -> None:
    """An unreachable HOST:PORT, or one where something other than Ray listens, is one line within seconds;
    not a Ray traceback after a long retry loop, nor `ray.init` waiting minutes on a port that never answers
    (it ignores SIGTERM meanwhile). Ray's GCS speaks gRPC: HTTP/2, whose server opens with a SETTINGS frame."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or address.startswith("ray://"):
        return  # auto, or a Ray Client address: Ray itself says what is wrong
    if not 0 < int(port) < 65536:
        raise UsageError(f"cannot reach a Ray cluster at {address[:100]}: port {int(port)} is not a TCP port (1 to 65535)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=_RAY_CONNECT_TIMEOUT_S) as connection:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return  # TLS first: the plain HTTP/2 preface would not be answered
            connection.sendall(_HTTP2_PREFACE)
            answer = connection.recv(9)
    except TimeoutError:
        raise UsageError(f"{address[:100]} is not a Ray cluster: nothing answered there within {_RAY_CONNECT_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise UsageError(f"cannot reach a Ray cluster at {address[:100]}: {exc.strerror or exc}") from None
    except (UnicodeError, ValueError) as exc:  # a host name IDNA cannot encode (a label over 63 characters, an empty one)
        raise UsageError(f"cannot reach a Ray cluster at {address[:100]}: the host name is not valid ({exc})") from None
    if len(answer) < 9 or answer[3] != 0x04:
        message = "the server there does not speak gRPC (is the port Ray's GCS port, 6379 by default?)"
        raise UsageError(f"{address[:100]} is not a Ray cluster: {message}")


@contextmanager
def _keeping_sigterm() -> Iterator[None]:
    """`ray.init` puts its own SIGTERM handling in place (a Python handler that exits, and a C++ one
    that prints a stack and aborts: exit 134); cnnbench's (SIGTERM is a Ctrl-C: runs recorded
    `interrupted`, exit 143) is put back once Ray is up."""
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if main else {}
    try:
        yield
    finally:
        for sig, action in previous.items():
            if action is not None:
                signal.signal(sig, action)


@contextmanager
def _without_token_notice() -> Iterator[None]:
    """A new local instance uses token authentication (Ray's default, kept); Ray's line saying so on
    every run is dropped. (Setting RAY_AUTH_MODE instead only works before Ray is imported.)"""
    import logging

    def notice(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")

    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    log.addFilter(notice)
    try:
        yield
    finally:
        log.removeFilter(notice)


@contextmanager
def _prompt_registration(ray) -> Iterator[dict[str, str]]:
    """Within the block, a new local instance waits for its raylet to register in 20 ms steps.

    `ray.init` asks the GCS for the new raylet 0.1 s after starting it, through a call that sleeps a
    whole second whenever the answer is "not yet" (Ray 2.60, global_state_accessor.cc); the raylet
    takes about 0.5 s, so every private instance lost 1-2 s there (measured: init 2.0-3.0 s, 1.5 s
    with this). Here the GCS is asked first with a call that does not sleep, until the node is
    there; Ray's own call then answers at once. Anything unexpected (another Ray) falls back to
    Ray's own wait: `how["wait"]` says which ("prompt" or "ray's own").
    """
    how = {"wait": "ray's own"}
    try:
        services = ray._private.services
        original = services.get_node
        from ray._raylet import GcsClient, NodeID
    except (AttributeError, ImportError):
        yield how
        return

    def get_node(gcs_address: str, node_id: str):
        try:
            client, target = GcsClient(address=gcs_address), NodeID.from_hex(node_id)
            deadline = time.monotonic() + 30
            while target not in client.get_all_node_info(timeout=5) and time.monotonic() < deadline:
                time.sleep(0.02)
            how["wait"] = "prompt"
        except Exception:  # noqa: BLE001 - Ray's own wait below still decides
            how["wait"] = "ray's own"
        return original(gcs_address, node_id)

    services.get_node = get_node
    try:
        yield how
    finally:
        services.get_node = original


class RaySession:
    """A connection to Ray for one sweep or bench: a private local instance, or a cluster it joins.

    Closing shuts down what it started (the private instance, with every process of it) and only
    disconnects from a cluster; never `ray stop`.
    """

    def __init__(self, config: RayConfig) -> None:
        self.config = config
        self.ray = ray = _import_ray(private=config.address == "local")
        self.owned = False
        self.reaper = None
        self.registration_wait: str | None = None  # a private instance: how its start waited for the raylet
        if ray.is_initialized():  # a caller (a test, a notebook) connected already: use that, leave it running
            self.connected_here = False
        elif config.address == "local":
            from cnnbench.reaper import Reaper

            self.reaper = Reaper()  # a driver killed with -9 leaves no Ray agent behind
            with _keeping_sigterm(), _without_token_notice(), _prompt_registration(ray) as how:
                ray.init(address="local", num_cpus=devices.cpu_cores(), include_dashboard=False, log_to_driver=False,
                         _node_ip_address="127.0.0.1", configure_logging=False)  # fmt: skip
            self.owned = self.connected_here = True
            self.registration_wait = how["wait"]
        else:
            _check_reachable(config.address)
            try:
                with _keeping_sigterm():
                    ray.init(address=config.address, log_to_driver=False, configure_logging=False)
            except Exception as exc:  # ConnectionError, AuthenticationError, ...: one line
                message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                raise UsageError(f"cannot connect to the Ray cluster at {config.address}: {message}") from None
            self.connected_here = True
        resources = ray.cluster_resources()
        self.cpus, self.gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        # node id -> (CPUs, GPUs) of every node alive now
        self.nodes = {n["NodeID"]: (float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
                      for n in ray.nodes() if n.get("Alive")}  # fmt: skip
        self.node_cpus = min((cpus for cpus, _ in self.nodes.values()), default=self.cpus)
        where = "a private local Ray instance" if config.address == "local" else f"the Ray cluster at {config.address}"
        self.description = (f"executing on {where} (from {config.source}): {len(self.nodes)} node{'s' if len(self.nodes) != 1 else ''}, "
                            f"{self.cpus:g} CPUs, {self.gpus:g} GPUs")  # fmt: skip

    def close(self) -> None:
        if self.connected_here:
            if self.owned:
                _end_autoscaler_monitor(self.ray)
            self.ray.shutdown()  # the private instance ends; a cluster is only left
        if self.reaper is not None:
            self.reaper.done()


def _end_autoscaler_monitor(ray) -> None:
    """End a private instance's autoscaler monitor before `ray.shutdown()`.

    Shutdown stops the GCS before the monitor, whose SIGTERM handler then blocks reporting its own
    end to the stopped GCS until Ray kills it a second later: 1.0 of shutdown's 1.3 s (measured, Ray
    2.60, docs/scale-out.md). A private instance has nothing left to autoscale, so it is killed first;
    shutdown then ends the rest as before. Without that process handle (another Ray), nothing changes.
    """
    try:
        monitors = [info.process for info in ray._private.worker._global_node.all_processes.get("monitor", [])]
    except AttributeError:
        return
    for process in monitors:
        process.kill()
        process.wait(timeout=5)


def _collect_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_shipped(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write a run's files that came back from another machine: each atomically, run.json last, stale ones removed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("history.csv", "model.keras", "error.txt"):
        if stale not in files:
            (run_dir / stale).unlink(missing_ok=True)
    for name in sorted(files, key=lambda n: n == "run.json"):
        target = run_dir / name
        if target.resolve().parent != run_dir.resolve():
            continue  # only the run's own flat files
        atomic_write_bytes(target, lambda f, data=files[name]: f.write(data))


class RayWorker:
    """A Ray actor: today's local worker on a node (configure, import Keras and take the data once, then tasks).

    It trains into node-local temporary folders and returns each run's files; progress waits in a
    list that the driver polls. `stop()` (another thread: the actor is threaded) interrupts the run
    in progress the way Ctrl-C does, so train_run records `interrupted`.
    """

    def __init__(self, options: RunOptions, dataset_key: tuple | None, dataset: Any) -> None:
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # as _bootstrap does for a local worker
        _prepare_worker(options)
        if dataset_key is not None:
            from cnnbench import train

            train._DATA_CACHE[dataset_key] = dataset  # the driver's arrays: no node loads (or falls back to) its own
        self.options = options
        self.events: list[tuple] = []
        self.lock = threading.Lock()
        self.thread: int | None = None
        self.executed = 0

    def info(self) -> dict[str, Any]:
        import socket

        from cnnbench import __version__
        from cnnbench.results import package_version

        return {"pid": os.getpid(), "hostname": socket.gethostname(), "cnnbench": __version__, "keras": package_version("keras")}

    def poll(self) -> list[tuple]:
        with self.lock:
            events, self.events = self.events, []
        return events

    def stop(self, signum: int | None = None) -> None:
        import ctypes

        if self.thread is not None:
            interrupt = stop_class(signum)  # what the run's record will say: Ctrl-C (None) or the driver's signal
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread), ctypes.py_object(interrupt))

    def train(self, task: Task) -> tuple[list[tuple[dict | None, dict[str, bytes]]], list[tuple], str | None]:
        """([(record, files)] per lane, progress not yet polled, error): records of interrupted runs included."""
        import shutil
        import tempfile

        def emit(kind: str, lane: int, payload: Any) -> None:
            with self.lock:
                self.events.append((kind, lane, payload))

        if self.executed:
            release_previous_run()
        tmp = Path(tempfile.mkdtemp(prefix="cnnbench-ray-"))
        local = Task(task.key, tuple((spec, tmp / f"run-{lane}") for lane, (spec, _) in enumerate(task.runs)), task.function)
        error = None
        self.thread = threading.get_ident()
        try:
            execute_task(local, self.options, emit)
        except KeyboardInterrupt:
            error = "interrupted"
        except Exception as exc:  # a bad spec or dataset: the driver stops the sweep
            error = describe_error(exc)
        finally:
            self.thread = None
            self.executed += 1
        try:
            results = []
            for _, run_dir in local.runs:
                files = _collect_files(run_dir) if run_dir.is_dir() else {}
                record = None
                if "run.json" in files:
                    import json

                    record = json.loads(files["run.json"])
                results.append((record, files))
            return results, self.poll(), error
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _in_background(function: Callable[[], Any]) -> Callable[[], Any]:
    """Start `function` on a daemon thread (it never holds up an exit); the returned call waits for its
    result, or raises what it raised."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="cnnbench-background", daemon=True)
    thread.start()

    def result() -> Any:
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return result


class RayExecutor:
    """Runs on Ray: a pool of RayWorker actors (one per run at a time), the driver alone writing the results tree.

    A worker or node that dies has its task re-queued `retries` times, then "died"; Ctrl-C stops the
    runs in flight, writes their `interrupted` records and re-raises KeyboardInterrupt.
    """

    def __init__(self, config: RayConfig, parallel: int, options: RunOptions, warm: Spec | None = None) -> None:
        self.config, self.parallel, self.options, self.warm = config, parallel, options, warm
        self.on_info: Callable[[str], None] = lambda message: None

    def _resources(self, session: RaySession, tasks: int) -> tuple[int, float, float, RunOptions]:
        """(actors, CPUs and GPUs per actor, the actors' run options)."""
        gpus = self.config.gpus_for(self.options.device)
        if gpus and not session.gpus:
            from cnnbench.errors import DeviceError

            raise DeviceError(f"the Ray cluster has no GPU ({session.description.split(': ', 1)[-1]}); GPU runs would wait forever")
        parallel = self.parallel
        if self.config.cpus_per_run is not None:
            cpus = self.config.cpus_per_run
        elif self.options.threads:
            cpus = float(self.options.threads)
        else:  # default: the cluster's CPUs shared out among the runs at once, at least 1 each
            cpus = max(1.0, float(int(session.cpus // max(parallel, 1)))) if parallel > 1 else max(1.0, float(int(session.node_cpus)))
        if cpus > session.node_cpus:
            raise UsageError(f"--cpus-per-run {cpus:g} is more than any node of the cluster has ({session.node_cpus:g} CPUs)")
        if parallel <= 1:  # on Ray, --parallel 1 (the default) means as many runs at once as the cluster fits
            parallel = max(1, int(session.cpus // cpus))
            if gpus:
                parallel = min(parallel, max(1, int(session.gpus // gpus)))
        threads = self.options.threads or max(1, int(cpus))
        from dataclasses import replace

        return max(1, min(parallel, tasks)), cpus, gpus, replace(self.options, threads=threads)

    def _dataset(self) -> tuple[tuple | None, Any]:
        """The driver's dataset, resolved once, for the object store (synthetic data is made on the node)."""
        spec = self.warm
        if spec is None or spec.data.dataset == "synthetic":
            return None, None
        from cnnbench import train

        data = train.load_data_for(spec, 10)
        return next(k for k, v in train._DATA_CACHE.items() if v is data), data

    def run(self, tasks: Sequence[Task], on_event: Callable[[Event], None]) -> None:
        loading = _in_background(self._dataset)  # while Ray starts (a download, if any, too)
        session = RaySession(self.config)
        try:
            key, data = loading()
        except BaseException:
            session.close()
            raise
        ray = session.ray
        actors: list[Any] = []
        try:
            self.on_info(session.description)
            size, cpus, gpus, options = self._resources(session, len(tasks))
            data = ray.put(data) if key is not None else None
            worker = ray.remote(RayWorker).options(num_cpus=cpus, num_gpus=gpus, max_concurrency=2)
            self.on_info(f"{size} Ray worker{'s' if size != 1 else ''}, {cpus:g} CPUs and {gpus:g} GPUs each")

            def start_actor():
                actor = worker.remote(options, key, data)
                actors.append(actor)
                return actor

            pool = [start_actor() for _ in range(size)]
            self._check_versions(ray, pool)
            self._loop(ray, pool, start_actor, tasks, on_event)
        finally:
            for actor in actors:
                try:
                    ray.kill(actor)
                except Exception:  # already gone with its node
                    pass
            session.close()

    def _check_versions(self, ray, pool: list) -> None:
        from cnnbench import __version__

        try:
            infos = ray.get([actor.info.remote() for actor in pool], timeout=_START_TIMEOUT_S)
        except Exception as exc:  # the constructor failed (a device or backend missing on a node)
            cause = getattr(exc, "cause", None) or exc
            raise CnnbenchError(f"a Ray worker could not start: {str(cause).strip().splitlines()[-1][:300]}") from None
        for info in infos:
            if info["cnnbench"] != __version__:
                node = f"node {info['hostname']} runs cnnbench {info['cnnbench']}"
                raise UsageError(f"{node}, this driver {__version__}: install the same version on every node")

    def _loop(self, ray, pool: list, start_actor, tasks: Sequence[Task], on_event: Callable[[Event], None]) -> None:
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        waiting = deque(tasks)
        attempts: dict[int, int] = {}
        busy: dict[Any, tuple[Any, Task]] = {}  # train ref -> (actor, task)
        free = list(pool)
        starting: dict[Any, Any] = {}  # info ref -> a replacement actor; it takes tasks only once it is up
        polls: dict[Any, Any] = {}  # train ref -> its worker's progress poll in flight (one at a time)
        since = time.monotonic()

        def replace_actor() -> None:
            actor = start_actor()
            starting[actor.info.remote()] = actor

        def relay(task: Task, events: list[tuple]) -> None:
            for kind, lane, payload in events:
                spec, run_dir = task.runs[lane]
                if kind == "start":  # the driver's copy says `running`, as a local run's would
                    from cnnbench.results import write_json

                    Path(run_dir).mkdir(parents=True, exist_ok=True)
                    write_json(Path(run_dir) / "run.json", payload)
                on_event(Event(kind, task.key, lane, payload))

        def collect_poll(ref, timeout: float | None = None) -> None:
            poll = polls.pop(ref)
            try:
                relay(busy[ref][1], ray.get(poll, timeout=timeout))
            except (RayActorError, GetTimeoutError):
                pass  # the worker died (the train ref says so) or cannot answer: its run.json still has every row

        def land(task: Task, results: list) -> None:
            for lane, (record, files) in enumerate(results):
                if files:
                    write_shipped(Path(task.runs[lane][1]), files)
                on_event(Event("end", task.key, lane, record))

        try:
            while waiting or busy:
                while waiting and free:
                    actor, task = free.pop(), waiting.popleft()
                    busy[actor.train.remote(task)] = (actor, task)
                    since = time.monotonic()
                if starting:
                    up, _ = ray.wait(list(starting), num_returns=len(starting), timeout=0)
                    for ref in up:
                        actor = starting.pop(ref)
                        try:
                            ray.get(ref)
                            free.append(actor)
                        except ray.exceptions.RayError:
                            pass  # it could not start (its node went away): busy or starting actors carry on
                if not busy:
                    if time.monotonic() - since > _START_TIMEOUT_S:
                        raise CnnbenchError(f"no Ray worker could start within {_START_TIMEOUT_S:.0f} s (the cluster lacks the resources?)")
                    if not starting:
                        replace_actor()
                    time.sleep(_RAY_POLL_S)
                    continue
                ready, _ = ray.wait(list(busy), num_returns=1, timeout=_RAY_POLL_S)  # a finished run is handled at once
                # Progress of the runs still going: one poll per busy worker, all sent at once, not one round trip each.
                # A poll not answered yet stays pending (its rows are taken from the worker already) and is read later,
                # before anything newer from that worker: no progress row is lost or relayed out of order.
                for ref in busy:
                    if ref not in ready and ref not in polls:
                        polls[ref] = busy[ref][0].poll.remote()
                asked = {poll: ref for ref, poll in polls.items() if ref not in ready}
                answered, _ = ray.wait(list(asked), num_returns=len(asked), timeout=_RAY_POLL_S) if asked else ([], [])
                for poll in answered:
                    collect_poll(asked[poll])
                for ref in ready:
                    if ref in polls:  # the rows it took come before the run's last ones
                        collect_poll(ref, timeout=10)
                    actor, task = busy.pop(ref)
                    try:
                        results, events, error = ray.get(ref)
                    except RayTaskError as exc:
                        raise CnnbenchError(f"a Ray worker failed: {str(exc).strip().splitlines()[-1][:300]}") from None
                    except RayActorError as exc:  # the worker process or its node died
                        reason = _death_reason(exc)
                        attempts[task.key] = attempts.get(task.key, 0) + 1
                        if attempts[task.key] <= self.config.retries:
                            waiting.appendleft(task)
                        else:
                            for lane in range(len(task.runs)):
                                on_event(Event("died", task.key, lane, f"{reason} (tried {attempts[task.key]} times)"))
                        if waiting and not free:  # a worker that is up takes the run, or a new one when it is up
                            replace_actor()
                        continue
                    relay(task, events)
                    land(task, results)
                    if isinstance(error, tuple):
                        raise_fatal(error, "a Ray worker")
                    if error == "interrupted":
                        raise KeyboardInterrupt
                    free.append(actor)
        except BaseException as exc:  # Ctrl-C, SIGTERM or an error every run would hit: stop the runs in flight, keep their records
            stop = as_raised(exc)
            for actor, _ in busy.values():
                try:
                    actor.stop.remote(stop.signum if isinstance(stop, Terminated) else None)
                except Exception:
                    pass
            deadline = time.monotonic() + _INTERRUPT_WAIT_S
            for ref, (_, task) in busy.items():
                try:
                    if ref in polls:
                        collect_poll(ref, timeout=max(0.1, deadline - time.monotonic()))
                    results, events, _ = ray.get(ref, timeout=max(0.1, deadline - time.monotonic()))
                    relay(task, events)
                    land(task, results)
                except BaseException:  # the driver marks what did not come back `interrupted`
                    pass
            if stop is not exc:
                raise stop from None
            raise


def _fresh_on_node(launch: Callable[..., tuple[int, bool]], job: dict, memory_limit_mb: int | None, timeout_s: float | None):
    """A Ray task: `launch` (bench's fresh, pinned child) on this node, in a temporary folder; returns its files."""
    import shutil
    import tempfile

    from cnnbench.results import write_json

    tmp = Path(tempfile.mkdtemp(prefix="cnnbench-ray-"))
    try:
        write_json(tmp / "job.json", {**job, "run_dir": str(tmp / "run")})
        code, timed_out = launch(tmp / "job.json", tmp / "child.json", tmp / "child.log", memory_limit_mb, timeout_s)
        files = _collect_files(tmp / "run") if (tmp / "run").is_dir() else {}
        extras = {name: (tmp / name).read_bytes() for name in ("child.json", "child.log") if (tmp / name).is_file()}
        return code, timed_out, files, extras
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RayLauncher:
    """Fresh processes on Ray: the child is the same pinned child as locally, started on a node Ray picks (which
    pins its GPU), and the files come back to the driver's run folder.

    Timed runs never share a node: each run reserves every CPU of a node unless `--cpus-per-run` says
    otherwise, and each is sent to a node no other run of this bench is using (`slots` runs at once,
    one per node). `launch` may be called from several threads; `stop` cancels every run in flight.
    """

    def __init__(self, config: RayConfig) -> None:
        self.config = config
        self.session = RaySession(config)
        self.slots = max(1, len(self.session.nodes))
        self.at_once = 0  # the most runs that were in flight together
        self._changed = threading.Condition()
        self._busy: set[str] = set()
        self._in_flight: set[Any] = set()
        self._stopped: type[KeyboardInterrupt] | None = None

    def _resources(self, job: dict) -> tuple[float, float]:
        # Every CPU of a node unless told otherwise: nothing else runs beside a timed run.
        return self.config.cpus_per_run or float(job.get("threads") or self.session.node_cpus), self.config.gpus_for(job["device"])

    def _take_node(self, cpus: float, gpus: float) -> str | None:
        """A node no run of this bench is using that has the resources, waiting for one; None: none has them (Ray says so)."""
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

    def launch(self, launch: Callable[..., tuple[int, bool]], job: dict, run_dir: Path, memory_limit_mb: int | None,
               timeout_s: float | None) -> tuple[int, bool]:  # fmt: skip
        ray = self.session.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        cpus, gpus = self._resources(job)
        node = self._take_node(cpus, gpus)
        try:
            # soft: should that node die, Ray places the retry elsewhere (the reserved CPUs still keep runs apart)
            strategy = NodeAffinitySchedulingStrategy(node, soft=True) if node else "DEFAULT"
            remote = ray.remote(_fresh_on_node).options(num_cpus=cpus, num_gpus=gpus, max_retries=self.config.retries,
                                                        scheduling_strategy=strategy)  # fmt: skip
            ref = remote.remote(launch, job, memory_limit_mb, timeout_s)
            with self._changed:
                self._in_flight.add(ref)
                self.at_once = max(self.at_once, len(self._in_flight))
                stopped = self._stopped
            if stopped is not None:  # stopped while this one was being sent
                ray.cancel(ref)
            try:
                code, timed_out, files, extras = ray.get(ref)
            except KeyboardInterrupt as exc:  # Ctrl-C in the main thread (one run at a time)
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
        write_shipped(run_dir, {**files, **extras})
        return code, timed_out

    def stop(self, signum: int | None = None) -> None:
        """Interrupt every run in flight (each records `interrupted` by `signum`, or by Ctrl-C); no run starts after this."""
        with self._changed:
            self._stopped = stop_class(signum)
            refs = list(self._in_flight)
            self._changed.notify_all()
        for ref in refs:
            try:
                self.session.ray.cancel(ref)
            except Exception:  # noqa: BLE001 - it ended meanwhile
                pass

    def close(self) -> None:
        self.session.close()


@contextmanager
def ray_launcher(config: RayConfig | None) -> Iterator[RayLauncher | None]:
    """A RayLauncher for the block when `config` asks for Ray (its session closed after), else None."""
    if config is None:
        yield None
        return
    launcher = RayLauncher(config)
    try:
        yield launcher
    finally:
        launcher.close()


def _death_reason(exc: BaseException) -> str:
    """Ray's own words for a lost actor (worker process killed, node gone), cut to one line."""
    text = " ".join(str(exc).split())
    for marker in ("Worker exit detail: ", "The actor died because ", "The actor is dead because "):
        if marker in text:
            text = text[text.index(marker) + len(marker):]
            break
    return f"its Ray worker or node died ({text.split('. ')[0][:160]})"


def make_executor(parallel: int, options: RunOptions, warm: Spec | None = None, tasks: int = 2, ray: Any = None):
    """The executor for `parallel` runs at once: Ray when `ray` (a RayConfig) is given, else local.

    One remaining task gains nothing from a worker process but its start-up cost.
    """
    if ray is not None:
        return RayExecutor(ray, parallel, options, warm)
    if parallel > 1 and tasks > 1:
        return LocalExecutor(parallel, options, warm)
    return InlineExecutor(options)
