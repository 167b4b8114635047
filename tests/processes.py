"""Real cnnbench processes for tests: start a CLI in its own session, wait for it to get going, signal it,
and make sure nothing of it is left (no mocks: the faults under test are faults of processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest


def start_cli(*args: str, env: dict[str, str] | None = None, ignored: tuple[int, ...] = ()) -> subprocess.Popen:
    """`python -m cnnbench ARGS` in a session of its own (a terminal's Ctrl-C is `os.killpg(pid, SIGINT)`).

    It gets Ctrl-C and SIGHUP as a terminal's foreground command does, however the tests were started: an ignored
    signal is inherited (a shell's background job ignores SIGINT, `nohup` SIGHUP), a handler is not. `ignored`: the
    signals it is started ignoring, as under `nohup`."""
    ignored = [sig for sig in (signal.SIGINT, signal.SIGHUP) if signal.getsignal(sig) == signal.SIG_IGN and sig not in ignored]
    for sig in ignored:
        signal.signal(sig, signal.SIG_DFL if sig == signal.SIGHUP else signal.default_int_handler)
    try:
        return subprocess.Popen([sys.executable, "-m", "cnnbench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, env=env)  # fmt: skip
    finally:
        for sig in ignored:
            signal.signal(sig, signal.SIG_IGN)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 240.0) -> None:
    """Until `condition()`; fails the test if the command ends first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"the command ended early ({process.returncode}): {process.stderr.read()[-2000:]}")
        time.sleep(0.2)
    pytest.fail("timed out waiting for the command to get going")


def training(out: Path, pattern: str, count: int = 1, since: float = 0.0) -> Callable[[], bool]:
    """True once `count` run folders under `out` have a history row (written after `since`): they are training."""

    def check() -> bool:
        started = [p for p in out.glob(pattern) if p.is_file() and p.stat().st_mtime > since and len(p.read_text().splitlines()) >= 2]
        return len(started) >= count

    return check


def descendants(process: subprocess.Popen) -> list[int]:
    return [p.pid for p in psutil.Process(process.pid).children(recursive=True)]


def stop(process: subprocess.Popen, sig: int, group: bool = False, timeout: float = 90) -> tuple[str, str]:
    """Send `sig` (to the whole process group with `group`, as a terminal does) and wait: (stdout, stderr)."""
    if group:
        os.killpg(process.pid, sig)
    else:
        process.send_signal(sig)
    return process.communicate(timeout=timeout)


def survivors(pids: list[int], within_s: float) -> list[str]:
    """Processes among `pids` still alive after `within_s` seconds (zombies count as gone)."""
    deadline = time.monotonic() + within_s
    while True:
        alive = []
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{pid} {' '.join(proc.cmdline())[:120]}")
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def finish(process: subprocess.Popen) -> None:
    """Whatever happened, the command's whole session is gone after this."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
