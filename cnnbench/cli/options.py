"""The options several commands share, declared once (typing.Annotated), and the one way a spec is built from them.

Options that always travel together are a group (`SpecOptions`, `RayOptions`, `SinkOptions`): a dataclass whose
fields are the options. A command decorated with `@grouped` takes the group as one parameter; Typer sees (and
`--help` lists) the group's options in its place, and the command gets the group built from them.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, get_type_hints

import typer

from cnnbench.completion import complete_spec as _complete_spec
from cnnbench.completion import offer as _offer
from cnnbench.engines import CHOICES as _ENGINES

_BACKENDS = ("tensorflow", "jax", "torch")
DATASET_NAMES = ("mnist", "mnist-5k", "synthetic")
_SPEC_HELP = "A spec file (.json/.yaml), a built-in spec name, - (read from stdin) or inline JSON"
SpecArg = Annotated[str, typer.Argument(help=f"{_SPEC_HELP}.", show_default=False, autocompletion=_complete_spec)]
DefaultSpecArg = Annotated[str, typer.Argument(help=f"{_SPEC_HELP}.", autocompletion=_complete_spec)]
DataOpt = Annotated[
    str | None,
    typer.Option(help="Dataset (mnist, mnist-5k, synthetic) or a path to mnist.npz.", autocompletion=_offer(*DATASET_NAMES)),
]
DeviceOpt = Annotated[str, typer.Option(help="cpu, gpu or auto.", autocompletion=_offer("cpu", "gpu", "auto"))]
BackendOpt = Annotated[
    str | None, typer.Option(help="Keras backend: tensorflow, jax or torch (default: KERAS_BACKEND).", autocompletion=_offer(*_BACKENDS))
]
OfflineOpt = Annotated[
    bool, typer.Option("--offline", help="Never download: full MNIST falls back to mnist-5k unless cached (CNNBENCH_OFFLINE=1).")
]
DEFAULT_SPEC = "convolutional_nn"
# Bounds of the options that size work; beyond them a value is a typo, and the system calls that take it overflow.
MAX_PARALLEL = 256  # trainings at once
MAX_REPEATS = 1000  # runs per bench combination
MAX_TIMEOUT_S = 30 * 24 * 3600.0  # 30 days per run
MAX_MEMORY_LIMIT_MB = 16 * 1024 * 1024  # 16 TiB per process


def _go_offline(offline: bool) -> None:
    """--offline: set CNNBENCH_OFFLINE=1 here, so that worker and bench child processes inherit it."""
    if offline:
        import os

        os.environ["CNNBENCH_OFFLINE"] = "1"


def _spec_from_options(spec: str, data: str | None, **overrides):
    """SPEC loaded, with the training and data options the user gave (None: the spec's own) applied and checked."""
    from cnnbench.spec import load_spec

    return load_spec(spec).with_overrides(**overrides, **_data_override(data))


def _data_override(data: str | None) -> dict:
    """`--data` takes a dataset name or a path to a local mnist.npz."""
    if data is None:
        return {}
    if data.endswith(".npz") or Path(data).is_file():
        return {"dataset": "mnist", "path": data}
    return {"dataset": data}


def _engine_option(engine: str | None) -> str | None:
    from cnnbench.errors import UsageError

    if engine is not None and engine not in _ENGINES:
        raise UsageError(f"--engine: unknown engine {engine[:40]!r}; use {', '.join(_ENGINES)}")
    return engine


EpochsOpt = Annotated[int | None, typer.Option(min=1, help="Override training.epochs.")]
BatchSizeOpt = Annotated[int | None, typer.Option(min=1, help="Override training.batch_size.")]
SeedOpt = Annotated[int | None, typer.Option(min=0, help="Override training.seed.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo finished runs instead of keeping them.")]
SharedThreadsOpt = Annotated[int | None, typer.Option(min=1, help="CPU threads per training (default: all cores, shared by --parallel).")]
ThreadsOpt = Annotated[int | None, typer.Option(min=1, help="CPU threads per training process (default: all cores; at most 4 per core).")]
TrainSamplesOpt = Annotated[int | None, typer.Option(min=1, help="Override data.train_samples (training split size).")]
ValSamplesOpt = Annotated[int | None, typer.Option(min=1, help="Override data.val_samples (validation split size).")]
TestSamplesOpt = Annotated[int | None, typer.Option(min=1, help="Override data.test_samples (test split size).")]


def _check_run_options(out_dir: Path | None, threads: int | None = None, backend: str | None = None) -> None:
    """What can be refused before any work: an unwritable --out, absurd --threads, a backend that is not installed."""
    from cnnbench import device as devices
    from cnnbench.results import check_out_dir

    if out_dir is not None:
        check_out_dir(out_dir)
    devices.check_threads(threads)
    devices.check_backend(backend)


RayOption = Annotated[bool, typer.Option("--ray", help="Run on a private local Ray instance (pip install 'cnnbench\\[ray]').")]
AddressOption = Annotated[
    str | None, typer.Option("--address", help="Run on this Ray cluster: HOST:PORT, auto or ray://... (default: $RAY_ADDRESS).")
]
CpusPerRunOption = Annotated[float | None, typer.Option("--cpus-per-run", max=1024, help="Ray: CPUs (threads) reserved per run.")]
GpusPerRunOption = Annotated[
    float | None, typer.Option("--gpus-per-run", max=64, help="Ray: GPUs per run; fractions share a GPU (0.25: 4 runs).")
]
TensorboardOption = Annotated[
    Path | None, typer.Option("--tensorboard", metavar="DIR", help="Also write each run to this TensorBoard log folder (docs/tracking.md).")
]
MlflowOption = Annotated[
    str | None,
    typer.Option("--mlflow", metavar="[URI]", help="Also write each run to MLflow at URI (alone: $MLFLOW_TRACKING_URI; docs/tracking.md)."),
]


# --- option groups -------------------------------------------------------------------------------------


class OptionGroup:
    """Base of the option groups: a frozen dataclass whose fields are Typer options (Annotated, with defaults)."""


def grouped(command):
    """Let a Typer command take option groups.

    Each parameter annotated with an OptionGroup class (keyword-only, after `*`) stands, for Typer, for the group's
    options in its place; the command receives the group built from their values. A parameter the command declares
    itself under a group field's name replaces that field's declaration (its own help) and is passed both to the
    command and into the group.
    """
    signature = inspect.signature(command, eval_str=True)
    own = set(signature.parameters)
    groups: dict[str, type] = {}
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        group = parameter.annotation
        if not (isinstance(group, type) and issubclass(group, OptionGroup)):
            parameters.append(parameter)
            continue
        groups[parameter.name] = group
        hints = get_type_hints(group, include_extras=True)
        parameters += [inspect.Parameter(f.name, parameter.kind, default=f.default, annotation=hints[f.name])
                       for f in fields(group) if f.name not in own]  # fmt: skip

    @functools.wraps(command)
    def wrapper(**values):
        for name, group in groups.items():
            values[name] = group(**{f.name: values[f.name] if f.name in own else values.pop(f.name) for f in fields(group)})
        return command(**values)

    wrapper.__signature__ = signature.replace(parameters=parameters)
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__  # Typer reads the signature above, not the command's
    return wrapper


@dataclass(frozen=True)
class SpecOptions(OptionGroup):
    """The options that override a spec's training and data, and --offline."""

    epochs: EpochsOpt = None
    batch_size: BatchSizeOpt = None
    data: DataOpt = None
    seed: SeedOpt = None
    train_samples: TrainSamplesOpt = None
    val_samples: ValSamplesOpt = None
    test_samples: TestSamplesOpt = None
    offline: OfflineOpt = False

    def go_offline(self) -> None:
        _go_offline(self.offline)

    def overrides(self) -> dict:
        """The spec fields given (None: the spec's own), by keyword of `Spec.with_overrides`."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "seed": self.seed, "train_samples": self.train_samples,
                "val_samples": self.val_samples, "test_samples": self.test_samples}  # fmt: skip

    def load(self, spec: str, **more):
        """SPEC loaded with these options (and `more` overrides, such as train's learning rate) applied and checked."""
        return _spec_from_options(spec, self.data, **self.overrides(), **more)


@dataclass(frozen=True)
class RayOptions(OptionGroup):
    """Where the runs execute: this machine, a private Ray instance (--ray) or a Ray cluster (--address, $RAY_ADDRESS)."""

    ray: RayOption = False
    address: AddressOption = None
    cpus_per_run: CpusPerRunOption = None
    gpus_per_run: GpusPerRunOption = None

    def config(self):
        """The RayConfig these options ask for (None: this machine); the one place the commands decide it."""
        from cnnbench.executor import ray_config

        return ray_config(self.ray, self.address, self.cpus_per_run, self.gpus_per_run)


@dataclass(frozen=True)
class SinkOptions(OptionGroup):
    """Where each run is also written: TensorBoard, MLflow."""

    tensorboard: TensorboardOption = None
    mlflow: MlflowOption = None

    def open(self, given: dict | None = None):
        """The sinks (`cnnbench.sinks.open_sinks`); `given` (a sweep file's keys) fills in what the options leave out."""
        from cnnbench.sinks import open_sinks

        given = given or {}
        tensorboard = self.tensorboard if self.tensorboard is not None else given.get("tensorboard")  # the options win over the file
        return open_sinks(tensorboard, self.mlflow if self.mlflow is not None else given.get("mlflow"))


def sweep_options(device: str, backend: str | None, parallel: int, threads: int | None, engine: str | None, fuse: int | None):
    """How the runs of `sweep-lr`, `sweep` and `sweep-lr --seeds` execute: the one place the commands build SweepOptions
    (= StudyOptions) from the values they parsed. The engine's name is checked when the runs start (`_engine_option`),
    so `--dry-run` shows the plan whatever it is, as it always did."""
    from cnnbench.sweep import SweepOptions

    return SweepOptions(device=device, backend=backend, parallel=parallel, threads=threads, engine=engine, fuse=fuse)
