"""Where a result came from: the installed versions and the machine, recorded once per run (run.json's
`environment`) and once per bench (bench.json's `machine` and `versions`). Reads no framework state but the backend name.

>>> sorted(machine())
['cpu', 'cpu_cores', 'gpus', 'hostname', 'platform', 'python']
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata
from typing import Any


def package_version(*names: str) -> str | None:
    """The installed version of the first of `names` that is installed (None if none is)."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def versions(backend: str | None = None) -> dict[str, str | None]:
    """cnnbench, Python's libraries and the frameworks: with `backend`, only that backend's (jax, torch) beside
    TensorFlow's and Keras'; without, every backend (a bench may use several)."""
    from cnnbench import __version__

    def backend_version(name: str) -> str | None:
        return package_version(name) if backend in (None, name) else None

    return {"cnnbench": __version__, "keras": package_version("keras"), "tensorflow": package_version("tensorflow", "tensorflow-cpu"),
            "jax": backend_version("jax"), "torch": backend_version("torch"), "numpy": package_version("numpy")}  # fmt: skip


def _host() -> dict[str, Any]:
    from cnnbench.device import cpu_cores, cpu_model

    return {"platform": platform.platform(), "hostname": socket.gethostname(), "cpu": cpu_model(), "cpu_cores": cpu_cores()}


def machine() -> dict[str, Any]:
    """The machine a bench ran on: CPU model and cores, GPU models (nvidia-smi), host and platform."""
    from cnnbench.device import nvidia_gpus

    host = _host()
    return {"cpu": host["cpu"], "cpu_cores": host["cpu_cores"], "gpus": nvidia_gpus(), "platform": host["platform"],
            "hostname": host["hostname"], "python": platform.python_version()}  # fmt: skip


def environment(threads: int | None = None) -> dict[str, Any]:
    """Versions and machine facts for a run record: the backend this process uses and its versions, the host, `threads`."""
    backend = sys.modules["keras"].backend.backend() if "keras" in sys.modules else os.environ.get("KERAS_BACKEND", "tensorflow")
    found = versions(backend)
    return {
        "cnnbench": found["cnnbench"],
        "python": platform.python_version(),
        **{name: found[name] for name in ("keras", "tensorflow", "jax", "torch", "numpy")},
        "backend": backend,
        **_host(),
        "threads": threads,
    }
