"""Where Ray runs are sent: the RayConfig the options ask for, checked before Ray is imported."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cnnbench.errors import UsageError

RAY_POLL_S = 0.5  # how often the driver collects progress (per-epoch rows) from busy actors
RAY_CONNECT_TIMEOUT_S = 5.0



@dataclass(frozen=True)
class RayConfig:
    """Execute on Ray: `address` "local" starts a private instance; else HOST:PORT, auto or ray://…

    source: what chose Ray (--ray, --address, RAY_ADDRESS), for the message saying which cluster is
    used. cpus_per_run: CPUs Ray reserves per run (its threads); gpus_per_run: GPUs (fractions
    share one). retries: how often a run whose worker or node died is re-queued.
    """

    address: str = "local"
    source: str = "`use_ray`"
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
        raise UsageError("`use_ray` starts a private Ray instance and `address` joins a cluster: give one of them")
    for name, value in (("`cpus_per_run`", cpus_per_run), ("`gpus_per_run`", gpus_per_run)):
        if value is not None and not value > 0:
            raise UsageError(f"{name}: must be above 0, got {value:g}")
    env = os.environ.get("RAY_ADDRESS")
    if use_ray:
        config = RayConfig("local", "`use_ray`")
    elif address:
        config = RayConfig(address.strip(), "`address`")
    elif env:
        config = RayConfig(env.strip(), "RAY_ADDRESS")
    else:
        if cpus_per_run is not None or gpus_per_run is not None:
            raise UsageError("`cpus_per_run` and `gpus_per_run` apply to Ray: add `use_ray` or `address` (locally, use `threads`)")
        return None
    if config.address != "local":
        check_reachable(config.address)  # before a sweep or bench folder is made, and before Ray is imported
    return RayConfig(config.address, config.source, cpus_per_run, gpus_per_run)


def import_ray(private: bool = False):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray reports usage by default; only if the user said so
    if private:  # read when Ray is imported: a private instance then binds 127.0.0.1 only (measured in design/scale-out.md)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise UsageError("Ray is not installed: pip install 'cnnbench[ray]'") from None
    return ray


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + an empty SETTINGS frame


def check_reachable(address: str) -> None:
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
        with socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT_S) as connection:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return  # TLS first: the plain HTTP/2 preface would not be answered
            connection.sendall(_HTTP2_PREFACE)
            answer = connection.recv(9)
    except TimeoutError:
        raise UsageError(f"{address[:100]} is not a Ray cluster: nothing answered there within {RAY_CONNECT_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise UsageError(f"cannot reach a Ray cluster at {address[:100]}: {exc.strerror or exc}") from None
    except (UnicodeError, ValueError) as exc:  # a host name IDNA cannot encode (a label over 63 characters, an empty one)
        raise UsageError(f"cannot reach a Ray cluster at {address[:100]}: the host name is not valid ({exc})") from None
    if len(answer) < 9 or answer[3] != 0x04:
        message = "the server there does not speak gRPC (is the port Ray's GCS port, 6379 by default?)"
        raise UsageError(f"{address[:100]} is not a Ray cluster: {message}")
