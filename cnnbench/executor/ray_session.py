"""A connection to Ray for one sweep or bench, and the workarounds for Ray internals it needs.

Each workaround is measured (docs/scale-out.md) and falls back to Ray's own behaviour when the
internals it relies on are not there (another Ray version).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from cnnbench import device as devices
from cnnbench.errors import UsageError
from cnnbench.executor.process import STOP_SIGNALS
from cnnbench.executor.ray_config import RayConfig, check_reachable, import_ray


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
        self.ray = ray = import_ray(private=config.address == "local")
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
            check_reachable(config.address)
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

