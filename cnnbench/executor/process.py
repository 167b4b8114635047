"""Process hygiene for every process an executor starts: stop signals, dying with the parent, bootstrap, process groups.

SIGTERM and SIGHUP take the Ctrl-C path (runs in flight are recorded `interrupted`); a child never
outlives its parent; a fresh child gets its own session so a terminal's Ctrl-C reaches only its parent.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cnnbench import device as devices
from cnnbench.errors import clear_stop, request_stop, stop_exception, stop_requested
from cnnbench.train import RunOptions

START_TIMEOUT_S = 600.0  # a worker that is not ready by then (import + data) is considered stuck
INTERRUPT_GRACE_S = 1.0  # a terminal's Ctrl-C reaches the workers too; give them this long before forwarding it
INTERRUPT_WAIT_S = 30.0  # how long interrupted workers get to write their records
ORPHAN_GRACE_S = 5.0  # a worker whose parent died gets this long to record `interrupted`, then exits anyway
PR_SET_PDEATHSIG = 1  # linux/prctl.h


# --- SIGTERM and SIGHUP take the Ctrl-C path -----------------------------------------------

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # `kill` and a closed terminal or SSH session
ALL_STOP_SIGNALS = (signal.SIGINT, *STOP_SIGNALS)  # and a terminal's Ctrl-C


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block (main thread only), SIGTERM and SIGHUP raise Terminated, a KeyboardInterrupt; SIGINT
    (Ctrl-C) raises KeyboardInterrupt, as Python's own handler does, each time. A signal the process was started
    ignoring stays ignored (`handled_stop_signals`).

    Every one is also noted (errors.request_stop): a raise that Python swallowed (inside a finaliser), or that
    third-party code caught and turned into another error, is raised again at the next epoch or run boundary,
    and a run that then fails is recorded `interrupted`. A later SIGTERM or SIGHUP never kills the process
    before the runs in flight are recorded.
    """

    def handler(signum, frame) -> None:
        if request_stop(signum) or signum == signal.SIGINT:  # later SIGTERMs: the first is already on its way
            raise stop_exception(signum)

    clear_stop()
    previous = {sig: signal.signal(sig, handler) for sig in handled_stop_signals()}
    try:
        yield
    finally:
        for sig, action in previous.items():
            signal.signal(sig, action)
        clear_stop()  # the stop belonged to this block: a later command (in the same process) starts afresh


def handled_stop_signals() -> tuple[int, ...]:
    """The stop signals this process handles: all but those it was started ignoring (SIGHUP under `nohup`, SIGINT in a
    shell script's background job), which stay ignored, as Python leaves an ignored SIGINT and as `nohup` means."""
    return tuple(sig for sig in ALL_STOP_SIGNALS if signal.getsignal(sig) != signal.SIG_IGN)


def as_raised(exc: BaseException) -> BaseException:
    """Ray's `get` and `wait` turn whatever a signal handler raised into a plain KeyboardInterrupt:
    the Terminated that SIGTERM or SIGHUP raised is given back, so records name the signal and the exit code is 128 + it."""
    return stop_exception(stop_requested()) if type(exc) is KeyboardInterrupt and stop_requested() else exc


@contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP blocked in this thread within the block: a process started in it starts with them
    blocked (a signal mask survives fork and exec), and a signal that reaches it before it has installed its handlers
    waits, pending, until it unblocks them (`unblock_stop_signals`): it is neither lost nor a traceback. One that
    reaches this process meanwhile is delivered when the block ends. (CPython starts its resource tracker so too.)"""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, ALL_STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def unblock_stop_signals() -> None:
    """In a process started within `stop_signals_blocked`, once its handlers are installed: signals that arrived
    while it started are handled now."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, ALL_STOP_SIGNALS)


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


def bootstrap(parent_pid: int, log: str | None = None, memory_limit_mb: int | None = None, own_session: bool = False) -> None:
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


def spawn_context():
    import multiprocessing

    # spawn, not fork: a fresh interpreter whose Keras is configured (threads, device) before it is imported.
    return multiprocessing.get_context("spawn")


# --- one fresh process, to its end (the fresh policy and call_fresh use it) -------------------------

def _fresh_main(parent_pid: int, log: str | None, memory_limit_mb: int | None, target: Callable[..., int], args: tuple) -> None:
    bootstrap(parent_pid, log, memory_limit_mb, own_session=True)
    sys.exit(target(*args))


def run_fresh(
    target: Callable[..., int], args: tuple, log: str | Path | None = None, memory_limit_mb: int | None = None,
    timeout_s: float | None = None,
) -> tuple[int, bool]:  # fmt: skip
    """Run `target(*args)` in a new process to its end: (exit code, timed out); its output goes to `log`.

    The process dies with this one, gets its own session (so Ctrl-C reaches only this process, which
    then interrupts it and waits for it to record that), and is killed after `timeout_s`.
    """
    process = spawn_context().Process(target=_fresh_main, args=(os.getpid(), str(log) if log else None, memory_limit_mb, target, args))
    process.start()
    try:
        process.join(timeout_s)
        if process.exitcode is None:
            signal_group(process.pid, signal.SIGKILL)
            process.join()
            return process.exitcode, True
        return process.exitcode, False
    except BaseException:  # Ctrl-C: let train_run record `interrupted`, then make sure the child is gone
        signal_group(process.pid, signal.SIGINT)
        process.join(10)
        if process.exitcode is None:
            signal_group(process.pid, signal.SIGKILL)
            process.join()
        raise


def signal_group(pid: int, sig: int) -> None:
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

def prepare_worker(options: RunOptions) -> None:
    """What every worker (local or a Ray actor) does once before its runs: threads and device set, Keras imported."""
    devices.configure(options.device, options.backend, options.threads)
    devices.import_keras()
    quiet_retracing()

def start_resource_tracker() -> None:
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

