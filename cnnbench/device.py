"""Devices and Keras backends: pinning a process to the CPU or one GPU, threads, and discovery.

`configure()` must run before Keras is imported, because backends read their settings at import.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from functools import cache

from cnnbench.errors import DeviceError

DEVICES = ("cpu", "gpu", "auto")
BACKENDS = ("tensorflow", "jax", "torch")
_BACKEND_MODULE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


# What to install for a backend, and for that backend on an NVIDIA GPU.
INSTALL_HINT = {"tensorflow": "pip install tensorflow", "jax": "pip install jax", "torch": "pip install torch"}
GPU_INSTALL_HINT = {
    "tensorflow": "pip install 'tensorflow[and-cuda]', or JAX with CUDA: pip install 'jax[cuda12]' and `backend` jax",
    "jax": "pip install 'jax[cuda12]'",
    "torch": "a CUDA build of torch (https://pytorch.org/get-started/locally/)",
}
THREADS_PER_CORE_MAX = 4  # beyond this, threads only fight over cores (5000 threads on 2 cores: minutes per epoch)


def keras_imported() -> bool:
    return "keras" in sys.modules


def configure(device: str = "auto", backend: str | None = None, threads: int | None = None) -> None:
    """Set the environment so that the next Keras import uses `backend`, `device` and `threads`.

    A CPU process hides every GPU; a GPU process sees one (the first, unless CUDA_VISIBLE_DEVICES
    already narrows it). Raises DeviceError when Keras was imported with other settings.
    """
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}; use cpu, gpu or auto")
    if backend is not None and backend not in BACKENDS:
        raise DeviceError(f"unknown Keras backend {backend!r}; use {', '.join(BACKENDS)}")
    check_threads(threads)
    if keras_imported():
        current = sys.modules["keras"].backend.backend()
        if backend and backend != current:
            raise DeviceError(f"Keras is already running on {current}; start a new process for {backend}")
        return
    check_backend(backend)
    env = os.environ
    if backend:
        env["KERAS_BACKEND"] = backend
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = "-1"
        env["JAX_PLATFORMS"] = "cpu"
    elif device == "gpu":
        visible = env.get("CUDA_VISIBLE_DEVICES", "")
        env["CUDA_VISIBLE_DEVICES"] = visible.split(",")[0] if visible and visible != "-1" else "0"
        env.pop("JAX_PLATFORMS", None)
    quiet_logs()
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX: allocate as needed, so peak memory means something
    if threads:
        for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(threads)
        env["TF_NUM_INTEROP_THREADS"] = "1" if threads == 1 else str(min(threads, 2))
        if threads == 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()


def quiet_logs() -> None:
    """Silence TensorFlow's C++ start-up chatter (info lines, the CUDA probe on CPU machines)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


_IMPORT_NOISE = re.compile(
    r"^(WARNING: All log messages before absl|[IW]\d{4} |To enable the following instructions|"
    r"E\d{4} .*(cuInit|cuda_|cuda drivers))"
)


def import_keras():
    """Import Keras (and its backend) once, dropping the backend's C++ start-up chatter.

    TensorFlow writes info lines to file descriptor 2 before its logging is set up, ignoring
    TF_CPP_MIN_LOG_LEVEL; they are captured here and every other line is passed on to stderr.
    On the JAX and torch backends Keras imports TensorFlow too, when it is installed, the first
    time a model is seeded (`keras.utils.set_random_seed` seeds TensorFlow as well): it is imported
    here, under the same capture, instead of printing its chatter in the middle of a run.
    """
    if keras_imported():
        return sys.modules["keras"]
    check_backend()  # KERAS_BACKEND=garbage: one line, not Keras' traceback
    quiet_logs()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras

            if keras.backend.backend() != "tensorflow" and backend_installed("tensorflow"):
                import tensorflow  # noqa: F401  (imported by Keras at the first seed anyway)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if line.strip() and not _IMPORT_NOISE.match(line):
                    print(line, file=sys.stderr)
    return keras


def after_import(threads: int | None = None) -> None:
    """Settings that can only be made once the backend is imported (torch threads)."""
    import keras

    if threads and keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(threads)


def backend_installed(backend: str) -> bool:
    from importlib.util import find_spec

    return find_spec(_BACKEND_MODULE[backend]) is not None


def requested_backend(backend: str | None = None) -> str:
    """The Keras backend a process will use: `backend`, else $KERAS_BACKEND, else Keras' default."""
    return backend or os.environ.get("KERAS_BACKEND") or "tensorflow"


def check_backend(backend: str | None = None) -> str:
    """The backend to be used, or DeviceError with the install hint when its package is missing."""
    name = requested_backend(backend)
    if name not in BACKENDS:
        shown = name if len(name) <= 40 else name[:40] + "…"
        raise DeviceError(f"unknown Keras backend {shown!r} (from KERAS_BACKEND); use {', '.join(BACKENDS)}")
    if not backend_installed(name):
        raise DeviceError(f"the Keras backend {name} is not installed ({INSTALL_HINT[name]}), or choose another with `backend`")
    return name


def max_threads() -> int:
    return THREADS_PER_CORE_MAX * cpu_cores()


def check_threads(threads: int | None) -> None:
    """DeviceError for a thread count beyond THREADS_PER_CORE_MAX per core (or below 1)."""
    if threads is None:
        return
    if threads < 1 or threads > max_threads():
        raise DeviceError(
            f"`threads` {threads}: use 1 to {max_threads()} ({THREADS_PER_CORE_MAX} per core on this machine's {cpu_cores()} cores)"
        )


@cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@cache
def nvidia_gpus() -> list[str]:
    """GPU names from `nvidia-smi -L` (no framework import); empty when there is none."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


# Environment variables that pin a process (`configure` sets them); a fresh child records them so isolation can be checked.
PINNING = ("KERAS_BACKEND", "CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS", "TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS")


def pinning() -> dict[str, str | None]:
    """The pinning variables of this process as they are now."""
    return {name: os.environ.get(name) for name in PINNING}


def seen_gpus() -> list[str]:
    """The GPUs the configured Keras backend sees from this process (Keras imported if it was not)."""
    import_keras()
    return visible_gpus()


def visible_gpus() -> list[str]:
    """GPUs the imported Keras backend can use in this process."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            names = nvidia_gpus()
            return [names[i] if i < len(names) else g.name for i, g in enumerate(gpus)]
        if backend == "jax":
            import jax

            return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
        if backend == "torch":
            import torch

            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a broken CUDA install means: no usable GPU
        return []
    return []


def resolve(device: str) -> tuple[str, str]:
    """After import: the device actually used ('cpu' or 'gpu') and its model name."""
    import keras

    gpus = visible_gpus()
    if device == "gpu" and not gpus:
        backend = keras.backend.backend()
        listed = nvidia_gpus()
        found = f"nvidia-smi lists {listed[0]}; install CUDA support" if listed else "nvidia-smi lists none; for an NVIDIA GPU"
        hint = f"{found}: {GPU_INSTALL_HINT[backend]}"
        raise DeviceError(f"`device` gpu: no GPU is visible to Keras' {backend} backend ({hint})")
    if device == "cpu" and gpus:
        # configure() could not hide the GPUs because Keras was imported first: refuse to mislabel the run.
        raise DeviceError("`device` cpu: Keras was imported before cnnbench could hide the GPUs; start a new process")
    if gpus:
        return "gpu", gpus[0]
    return "cpu", cpu_model()


def peak_gpu_memory_mb() -> float | None:
    """Peak GPU memory of this process as the backend reports it, if it does."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        elif backend == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            if gpus and (stats := gpus[0].memory_stats()):
                return stats.get("peak_bytes_in_use", 0) / 2**20
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.max_memory_allocated() / 2**20
    except Exception:
        return None
    return None


def peak_host_memory_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is in KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
