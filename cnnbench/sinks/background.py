"""A sink run in a process of its own, beside a command that trains: its import, its store and its writes
overlap the training instead of adding to it.

MLflow costs a command seconds before the first run (`import mlflow`, opening a SQLite store) and a few
tenths of a second per run (SQLite commits, artifact copies): in the driver that time adds to the sweep's.
Here a spawned child (a fresh interpreter: no Keras, no TensorFlow) opens the sink and writes each finished
run folder the driver hands it, over a pipe, in order. The driver waits only at the end, for the runs still
queued. The child is the driver's own: under Ray, the driver's machine still has one writer of the store.

What the driver can check without MLflow (a refused file store, a missing folder, a server that does not
answer) it checks before anything trains (`cnnbench.sinks.mlflow.check_uri`); anything else the child meets
(a store MLflow refuses to open, a write that fails) reaches the driver as an exception at its next call,
which `Sinks` turns into one warning: the results are unaffected and `cnnbench export` fills the gap.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from cnnbench.sinks import RunFolder, create_sink, read_run

WAIT_PER_RUN_S = 120.0  # at close: the longest wait for one queued run (an HTTP store retries once, 30 s per request)


def _serve(name: str, target: Any, option: str, conn) -> None:
    """The child: open the sink, then write each run folder named on the pipe; reply to each; `None` closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C stops the training; the runs already queued are still written
    try:
        sink = create_sink(name, target, option)
    except Exception as exc:
        conn.send(("error", " ".join(str(exc).split()) or type(exc).__name__))
        return
    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the driver is gone: nothing more to write
            break
        if request is None:
            break
        try:
            run = read_run(request)
            conn.send(("outcome", sink.on_run_end(run) if run is not None else "not finished"))
        except Exception as exc:
            conn.send(("error", " ".join(str(exc).split())[:300] or type(exc).__name__))
            return
    try:
        sink.close()
        conn.send(("closed", None))
    except Exception as exc:
        conn.send(("error", " ".join(str(exc).split())[:300] or type(exc).__name__))


class BackgroundSink:
    """The sink `name` (see `cnnbench.sinks.REGISTRY`) writing in a child process; `outcomes` counts its answers."""

    def __init__(self, name: str, target: Any, option: str) -> None:
        import multiprocessing

        self.name = name
        context = multiprocessing.get_context("spawn")  # fork would copy a driver that may hold TensorFlow's threads
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(name, target, option, child), name=f"cnnbench-{name}-sink", daemon=True)
        self.process.start()
        child.close()
        self.queued = 0
        self.outcomes: dict[str, int] = {}
        self.error: str | None = None

    def _note(self, kind: str, value: Any) -> None:
        if kind == "error":
            self.error = self.error or value
        elif kind == "outcome":
            self.queued -= 1
            self.outcomes[value] = self.outcomes.get(value, 0) + 1

    def _reply(self, timeout: float) -> tuple[str, Any] | None:
        """The child's next reply, if one comes within `timeout` seconds (0: one already there)."""
        if not self.conn.poll(timeout):
            return None
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            return "error", "its writer process ended"

    def _raise(self) -> None:
        """Read the replies there are; raise the child's error (it has stopped), so `Sinks` warns once."""
        while self.error is None and (reply := self._reply(0)) is not None:
            self._note(*reply)
        if self.error is not None:
            self._stop()
            raise RuntimeError(self.error)

    def on_run_start(self, run_dir: Path, record: dict[str, Any]) -> None:
        self._raise()

    def on_epoch(self, run_dir: Path, row: dict[str, Any]) -> None:
        pass

    def on_run_end(self, run: RunFolder) -> None:
        self._raise()
        self.conn.send(str(run.run_dir))
        self.queued += 1

    def close(self) -> None:
        """Wait for the runs still queued and the child's own close (MLflow: the parent runs); raise its error."""
        if self.conn.closed:
            return
        try:
            self.conn.send(None)
        except OSError:
            pass
        while self.error is None:
            wait = WAIT_PER_RUN_S * max(1, self.queued)
            reply = self._reply(wait)
            if reply is None:
                self.error = f"its writer process did not answer within {wait:.0f} s"
            elif reply[0] == "closed":
                break
            else:
                self._note(*reply)
        self._stop()
        if self.error is not None:
            raise RuntimeError(self.error)

    def _stop(self) -> None:
        self.conn.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=10)
