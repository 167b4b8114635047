"""Runs on Ray: RayWorker actors (a pool worker on a node) driven by RayExecutor, the driver writing every file."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cnnbench.errors import CnnbenchError, Terminated, UsageError, error_payload, raise_payload, stop_class
from cnnbench.executor.process import INTERRUPT_WAIT_S, START_TIMEOUT_S, as_raised, prepare_worker, release_previous_run
from cnnbench.executor.protocol import Event, Task, execute_task
from cnnbench.executor.ray_config import RAY_POLL_S, RayConfig
from cnnbench.executor.ray_session import RaySession
from cnnbench.executor.resources import pool_cpus, threads_for
from cnnbench.results import atomic_write_bytes
from cnnbench.spec import Spec
from cnnbench.train import RunOptions


def collect_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_shipped(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write a run's files that came back from another machine: each atomically, run.json last, stale ones removed."""
    import json

    from cnnbench import record as run_record

    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("history.csv", "model.keras", "error.txt"):
        if stale not in files:
            (run_dir / stale).unlink(missing_ok=True)
    for name in files:
        target = run_dir / name
        if target.resolve().parent != run_dir.resolve() or name == run_record.RUN_FILE:
            continue  # only the run's own flat files; the record comes last
        atomic_write_bytes(target, lambda f, data=files[name]: f.write(data))
    if run_record.RUN_FILE in files:
        run_record.copy(run_dir, json.loads(files[run_record.RUN_FILE]))


class RayWorker:
    """A Ray actor: today's local worker on a node (configure, import Keras and take the data once, then tasks).

    It trains into node-local temporary folders and returns each run's files; progress waits in a
    list that the driver polls. `stop()` (another thread: the actor is threaded) interrupts the run
    in progress the way Ctrl-C does, so train_run records `interrupted`.
    """

    def __init__(self, options: RunOptions, dataset_key: tuple | None, dataset: Any) -> None:
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")  # as bootstrap does for a local worker
        prepare_worker(options)
        if dataset_key is not None:
            from cnnbench.data import remember_dataset

            remember_dataset(dataset_key, dataset)  # the driver's arrays: no node loads (or falls back to) its own
        self.options = options
        self.events: list[tuple] = []
        self.lock = threading.Lock()
        self.thread: int | None = None
        self.executed = 0

    def info(self) -> dict[str, Any]:
        import socket

        from cnnbench import __version__
        from cnnbench.provenance import package_version

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
            error = error_payload(exc)
        finally:
            self.thread = None
            self.executed += 1
        try:
            results = []
            for _, run_dir in local.runs:
                files = collect_files(run_dir) if run_dir.is_dir() else {}
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
        cpus = pool_cpus(self.config, self.options.threads, parallel, session.cpus, session.node_cpus)
        if cpus > session.node_cpus:
            raise UsageError(f"`cpus_per_run` {cpus:g} is more than any node of the cluster has ({session.node_cpus:g} CPUs)")
        if parallel <= 1:  # on Ray, --parallel 1 (the default) means as many runs at once as the cluster fits
            parallel = max(1, int(session.cpus // cpus))
            if gpus:
                parallel = min(parallel, max(1, int(session.gpus // gpus)))
        from dataclasses import replace

        return max(1, min(parallel, tasks)), cpus, gpus, replace(self.options, threads=threads_for(self.options.threads, cpus))

    def _dataset(self) -> tuple[tuple | None, Any]:
        """The driver's dataset, resolved once, for the object store (synthetic data is made on the node)."""
        spec = self.warm
        if spec is None or spec.data.dataset == "synthetic":
            return None, None
        from cnnbench.data import dataset_key
        from cnnbench.train import load_data_for

        data = load_data_for(spec)
        return dataset_key(data), data

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
            infos = ray.get([actor.info.remote() for actor in pool], timeout=START_TIMEOUT_S)
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
                    from cnnbench import record as run_record

                    run_record.copy(run_dir, payload)
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
                    if time.monotonic() - since > START_TIMEOUT_S:
                        raise CnnbenchError(f"no Ray worker could start within {START_TIMEOUT_S:.0f} s (the cluster lacks the resources?)")
                    if not starting:
                        replace_actor()
                    time.sleep(RAY_POLL_S)
                    continue
                ready, _ = ray.wait(list(busy), num_returns=1, timeout=RAY_POLL_S)  # a finished run is handled at once
                # Progress of the runs still going: one poll per busy worker, all sent at once, not one round trip each.
                # A poll not answered yet stays pending (its rows are taken from the worker already) and is read later,
                # before anything newer from that worker: no progress row is lost or relayed out of order.
                for ref in busy:
                    if ref not in ready and ref not in polls:
                        polls[ref] = busy[ref][0].poll.remote()
                asked = {poll: ref for ref, poll in polls.items() if ref not in ready}
                answered, _ = ray.wait(list(asked), num_returns=len(asked), timeout=RAY_POLL_S) if asked else ([], [])
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
                    if isinstance(error, dict):
                        raise_payload(error, "a Ray worker")
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
            deadline = time.monotonic() + INTERRUPT_WAIT_S
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

def _death_reason(exc: BaseException) -> str:
    """Ray's own words for a lost actor (worker process killed, node gone), cut to one line."""
    text = " ".join(str(exc).split())
    for marker in ("Worker exit detail: ", "The actor died because ", "The actor is dead because "):
        if marker in text:
            text = text[text.index(marker) + len(marker):]
            break
    return f"its Ray worker or node died ({text.split('. ')[0][:160]})"

