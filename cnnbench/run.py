"""One training run as `cnnbench train` runs it, beside `run_sweep` and `run_bench`: a new run folder made and held,
or an interrupted run continued from its checkpoint under its folder's lock.

>>> plan = plan_run(load_spec("convolutional_nn").with_overrides(epochs=2, dataset="mnist-5k"), "results")
>>> result = run_train(plan)                         # results/convolutional_nn-<timestamp>/
>>> run_train(plan_resume(result.run_dir)).trained   # finished: nothing to resume
False
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cnnbench.spec import Spec
from cnnbench.train import RunOptions


@dataclass(frozen=True)
class RunPlan:
    """What `run_train` will do: train `spec` into a new folder below `out`, or continue the run in `run_dir`
    (`previous`: its record as it stood). `options.resume` says which."""

    spec: Spec
    options: RunOptions
    out: Path | None = None
    run_dir: Path | None = None
    previous: dict[str, Any] | None = None

    @property
    def resume(self) -> bool:
        return self.run_dir is not None

    @property
    def finished(self) -> bool:
        """A resumed run that already ended (ok, diverged, ...): there is nothing to continue."""
        from cnnbench.results import FINISHED

        return self.previous is not None and self.previous.get("status") in FINISHED


@dataclass(frozen=True)
class RunResult:
    """The run folder and its record; `trained` is False for a finished run that was left as it was."""

    run_dir: Path
    record: dict[str, Any]
    trained: bool = True


def _check_options(options: RunOptions) -> None:
    from cnnbench import device as devices

    devices.check_threads(options.threads)
    devices.check_backend(options.backend)


def plan_run(spec: Spec, out: str | Path = "results", options: RunOptions | None = None) -> RunPlan:
    """A new run of `spec`, in a folder `out/<name>-<timestamp>` made when it starts. Refused before any work: an
    `out` that cannot be written (OutputError), absurd `options.threads` or a backend not installed (UsageError),
    a data file that is missing or not a file (DataError)."""
    from cnnbench.data import check_data_file
    from cnnbench.results import check_out_dir

    options = options or RunOptions()
    check_out_dir(out)
    _check_options(options)
    if spec.data.path:  # a missing data file is said at once, before a folder is made or Keras imported
        check_data_file(spec.data.path)
    return RunPlan(spec, replace(options, resume=False), out=Path(out))


def plan_resume(run_dir: str | Path, options: RunOptions | None = None) -> RunPlan:
    """Continue the run in `run_dir` from its last finished epoch, as it was specified (its spec.json); it keeps the
    backend and engine it ran on unless `options` names others. A finished run plans nothing (`plan.finished`).

    UsageError: not a run folder, a spec.json or checkpoint that is not this run's, or a run whose sweep or bench
    folder (one or two levels up) a process holds: that run is theirs.
    """
    from cnnbench.errors import UsageError
    from cnnbench.lock import held_by
    from cnnbench.train import load_run

    options, run_dir = options or RunOptions(), Path(run_dir)
    spec, previous = load_run(run_dir)
    plan = RunPlan(spec, replace(options, resume=True), run_dir=run_dir, previous=previous)
    if plan.finished:
        return plan
    options = replace(plan.options, backend=options.backend or previous.get("backend"), engine=options.engine or previous.get("engine"))
    _check_options(options)
    for folder in list(run_dir.resolve().parents)[:2]:
        if owner := held_by(folder):
            raise UsageError(f"{run_dir} belongs to {folder}, which is in use by {owner}; wait for it to end or stop it")
    return replace(plan, options=options)


def run_train(
    plan: RunPlan,
    on_epoch: Callable[[dict], None] | None = None,
    on_start: Callable[[dict], None] | None = None,
    on_folder: Callable[[Path], None] | None = None,
) -> RunResult:
    """Train as planned, one process per run folder: the folder is held (lock.folder_lock) before anything is
    written or deleted in it; a new one is made atomically (another run in the same second gets `-2`) and removed
    again when nothing was recorded in it. A run folder another process holds: UsageError naming it.

    `on_folder` gets the run folder once it is held; `on_start` and `on_epoch` are `train_run`'s. Errors and
    Ctrl-C as `train_run` raises them; a finished run (`plan.finished`) is returned untouched.
    """
    from cnnbench.folders import new_run_folder
    from cnnbench.lock import folder_lock
    from cnnbench.train import train_run

    if plan.finished:
        return RunResult(plan.run_dir, dict(plan.previous), trained=False)
    held = folder_lock(plan.run_dir, "run") if plan.resume else new_run_folder(plan.out, plan.spec.name)
    with held as run_dir:
        if on_folder:
            on_folder(run_dir)
        record = train_run(plan.spec, run_dir, plan.options, on_epoch=on_epoch, on_start=on_start)
    return RunResult(run_dir, record)
