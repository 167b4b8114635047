"""Fresh processes on Ray, one per node: the bench's pinned child started on a node Ray picks, its files shipped back."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnnbench.errors import CnnbenchError, Terminated
from cnnbench.executor.process import as_raised
from cnnbench.executor.ray_config import RayConfig
from cnnbench.executor.ray_executor import collect_files, write_shipped
from cnnbench.executor.ray_session import RaySession


def _fresh_on_node(launch: Callable[..., tuple[int, bool]], job: dict, memory_limit_mb: int | None, timeout_s: float | None):
    """A Ray task: `launch` (bench's fresh, pinned child) on this node, in a temporary folder; returns its files."""
    import shutil
    import tempfile

    from cnnbench.results import write_json

    tmp = Path(tempfile.mkdtemp(prefix="cnnbench-ray-"))
    try:
        write_json(tmp / "job.json", {**job, "run_dir": str(tmp / "run")})
        code, timed_out = launch(tmp / "job.json", tmp / "child.json", tmp / "child.log", memory_limit_mb, timeout_s)
        files = collect_files(tmp / "run") if (tmp / "run").is_dir() else {}
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

    def stop(self, terminated: bool = False) -> None:
        """Interrupt every run in flight (each child records `interrupted`); no run starts after this."""
        with self._changed:
            self._stopped = Terminated if terminated else KeyboardInterrupt
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

