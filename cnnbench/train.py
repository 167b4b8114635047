"""The one door to training: `train_run(spec, run_dir, options)` trains one run and returns its record.

`train`, `sweep` and `bench` all call it; it needs nothing but a spec, options and a folder, so a
distributed executor can call it too. The record is also written to `run_dir/run.json`.
"""

from __future__ import annotations

import errno
import math
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench import device as devices
from cnnbench import engines
from cnnbench import record as run_record
from cnnbench.chance import chance_error, learned, learned_margin
from cnnbench.engines import Program
from cnnbench.errors import CnnbenchError, OutputError, SpecError, UsageError, brief, interrupt_reason, raise_if_stopped
from cnnbench.files import UnsafeFileError, check_target
from cnnbench.precision import metric_value
from cnnbench.provenance import environment
from cnnbench.results import FINISHED, atomic_write_text, inspect_record, now_iso, read_record, write_json
from cnnbench.schedule import rate_at
from cnnbench.spec import Spec
from cnnbench.timing import extrapolate_total, summarize_epochs


@dataclass(frozen=True)
class RunOptions:
    """How to run a spec (what it is trained on and for how long is in the spec itself).

    device: cpu, gpu or auto. backend: the Keras backend, set in the environment before Keras is
    imported (None: leave KERAS_BACKEND as it is). threads: CPU threads for the process.
    measure_epochs: train only this many epochs and estimate the time of the spec's epochs.
    resume: continue the run already in run_dir from its checkpoint (`train --resume`).
    engine: fit, fused or auto (None: the spec's training.engine); see cnnbench/engines/.
    """

    device: str = "auto"
    backend: str | None = None
    threads: int | None = None
    measure_epochs: int | None = None
    save_model: bool = True
    resume: bool = False
    engine: str | None = None  # fit, fused or auto; None: the spec's training.engine


# How TensorFlow, JAX, torch, the C++ runtime and the OS word a failed allocation (lower case).
_OOM_MARKERS = (
    "memoryerror", "out of memory", "oom when allocating", "std::bad_alloc", "resource_exhausted", "resourceexhausted",
    "cannot allocate memory", "failed to map segment", "failed to allocate", "pthread_create",
)  # fmt: skip


def looks_like_oom(text: str) -> bool:
    """True when an error message or log line reads as an out-of-memory failure."""
    lowered = text.lower()
    return any(marker in lowered for marker in _OOM_MARKERS)


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or looks_like_oom(f"{type(exc).__name__} {exc}")


def make_optimizer(spec: Spec):
    """The spec's Keras optimizer at its learning rate; SpecError for an unknown name."""
    import keras

    from cnnbench.catalog import check_optimizer

    name = spec.training.optimizer
    try:
        cls = type(keras.optimizers.get(name))
    except (ValueError, TypeError):  # a Spec made in code skips parse_spec's check of the catalog's optimizers
        raise SpecError(spec.source, "training.optimizer", check_optimizer(name) or f"unknown optimizer {name!r}") from None
    # `momentum: 0` is a number to the spec but not to Keras, which wants floats for these options (nesterov stays a bool).
    options = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in spec.training.optimizer_options().items()}
    return cls(learning_rate=spec.training.learning_rate, **options)


def load_data_for(spec: Spec, num_classes: int | None = None):
    """The dataset named in the spec (memoised per process); `num_classes` shapes synthetic data only (the model's outputs).

    A named dataset has the classes it has: its `num_classes` comes from the dataset, whatever is passed.
    """
    from cnnbench.data import dataset_classes, file_digest

    num_classes = dataset_classes(spec.data.dataset, num_classes)

    content = file_digest(spec.data.path) if spec.data.path else None  # a file changed in place is other data
    return _load_data(spec.data.dataset, spec.data.path, spec.training.seed, spec.data.train_samples,
                      spec.data.val_samples, spec.data.test_samples, tuple(spec.input_shape), num_classes, content)  # fmt: skip


def _load_data(*key):
    # Start-up is paid once per process: a sweep's runs share one split of one dataset (data.cached_dataset).
    from cnnbench.data import cached_dataset, load_dataset

    name, path, seed, n_train, n_val, n_test, shape, classes, _content = key
    return cached_dataset(key, lambda: load_dataset(
        name, seed=seed, path=path, train_samples=n_train, val_samples=n_val, test_samples=n_test,
        sample_shape=shape, num_classes=classes,
    ))  # fmt: skip


def _check_fit(spec: Spec, model, data) -> None:
    # The output's shape and class count need no data: `build_model` checks them (cnnbench.model.check_output).
    if tuple(spec.input_shape) != data.sample_shape:
        raise SpecError(
            spec.source, "input_shape", f"is {list(spec.input_shape)} but {data.name} samples have shape {list(data.sample_shape)}"
        )


def prepare(spec: Spec, options: RunOptions = RunOptions(), startup: dict | None = None):
    """Validate and build everything a run needs, before any file is written: (model, data, summary).

    `startup`, if given, gets `startup_s`: the time spent importing Keras and loading the data here
    (about 0 when this process had done both already, as in a sweep's later runs).
    """
    from cnnbench.model import build_model, check_size, summarize
    from cnnbench.model import num_classes as model_classes

    check_size(spec)  # what needs no Keras is refused before Keras is imported
    devices.configure(options.device, options.backend, options.threads)
    t0 = time.perf_counter()
    keras = devices.import_keras()
    startup_s = time.perf_counter() - t0

    devices.after_import(options.threads)
    model = build_model(spec)
    summary = summarize(spec, model)
    last_activation = getattr(model.layers[-1], "activation", None)
    from_logits = getattr(last_activation, "__name__", "") != "softmax"
    optimizer = make_optimizer(spec)
    t0 = time.perf_counter()
    data = load_data_for(spec, model_classes(spec, tuple(model.output_shape)))
    startup_s += time.perf_counter() - t0
    if startup is not None:
        startup["startup_s"] = startup_s
    _check_fit(spec, model, data)
    compile_kwargs = {}
    if keras.backend.backend() != "torch":  # torch does not support steps_per_execution
        compile_kwargs["steps_per_execution"] = steps_per_execution(spec, len(data.x_train))
    from cnnbench.losses import training_loss

    model.compile(
        optimizer=optimizer,
        loss=training_loss(spec.training.label_smoothing, from_logits),
        metrics=["accuracy"],
        **compile_kwargs,
    )
    return model, data, summary


def steps_per_execution(spec: Spec, train_samples: int) -> int:
    """The spec's steps_per_execution, at most one epoch's steps (beyond that Keras trains nothing at all)."""
    steps = max(1, math.ceil(train_samples / spec.training.batch_size))
    return max(1, min(spec.training.steps_per_execution, steps))


# --- resuming --------------------------------------------------------------------------------


def load_run(run_dir: str | Path) -> tuple[Spec, dict[str, Any]]:
    """The spec and record of an existing run folder (for `train --resume`); UsageError if it is not one."""
    from cnnbench.spec import load_spec

    run_dir = Path(run_dir)
    shown = str(run_dir) if len(str(run_dir)) <= 120 else str(run_dir)[:120] + "…"
    if not run_dir.is_dir():
        raise UsageError(f"`resume` {shown}: not a folder")
    record, problem = inspect_record(run_dir / "run.json")
    if problem:
        raise UsageError(f"`resume` {shown}: its run.json cannot be trusted ({problem})")
    if record is None:
        raise UsageError(f"`resume` {shown}: no run.json (not a run folder)")
    try:
        check_target(run_dir / "spec.json")  # read below by name: a link or a pipe planted there is refused first
    except UnsafeFileError as exc:
        raise UsageError(f"`resume` {shown}: its spec.json {exc.what}, not a file cnnbench wrote") from None
    if not (run_dir / "spec.json").is_file():
        raise UsageError(f"`resume` {shown}: no spec.json (not a run folder)")
    spec = load_spec(str(run_dir / "spec.json"))
    t = spec.training
    planned = {"name": spec.name, "learning_rate": t.learning_rate, "batch_size": t.batch_size, "optimizer": t.optimizer,
               "epochs": t.epochs, "seed": t.seed}  # fmt: skip
    differ = [f"{key} {brief(record[key])} vs {brief(value)}" for key, value in planned.items() if key in record and record[key] != value]
    if differ:
        raise UsageError(f"`resume` {shown}: its spec.json is not the spec this run was started with (run.json vs spec.json: "
                         f"{'; '.join(differ)}); start a new run instead")  # fmt: skip
    return spec, record


def _history_rows(path: Path, epochs: int) -> list[dict[str, Any]]:
    """The first `epochs` rows of a history.csv as numbers (what a resumed run keeps)."""
    import csv
    import io

    from cnnbench.files import read_text

    try:
        text = read_text(path)  # bounded: a FIFO or a huge file planted as history.csv is refused
    except FileNotFoundError:
        return []
    except (OSError, ValueError, UnsafeFileError) as exc:
        raise UsageError(f"`resume`: {_shown(path)}: {getattr(exc, 'what', None) or 'not a history cnnbench wrote'}") from None
    rows = []
    for line, raw in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
        try:  # every cell is a number cnnbench wrote; anything else is not its history
            row = {k: float(v) for k, v in raw.items() if k and v not in (None, "")}
            row["epoch"] = int(row["epoch"])
        except (KeyError, TypeError, ValueError, OverflowError):
            raise UsageError(f"`resume`: {_shown(path)}: line {line}: not a history row cnnbench wrote") from None
        rows.append(row)
    return [row for row in rows if row["epoch"] <= epochs][:epochs]


def checkpoint_identity(spec: Spec, data: dict[str, Any]) -> str:
    """What a checkpoint belongs to: a digest of the spec (its description aside) and of the data the run trained on.

    `--resume` refuses a checkpoint whose identity is another (copied from another run, or the spec or data changed).
    """
    import hashlib
    import json

    doc = spec.to_dict()
    doc.pop("description", None)
    seen = {key: data.get(key) for key in ("name", "train_samples", "val_samples", "test_samples", "num_classes")}
    return hashlib.sha1(json.dumps({"spec": doc, "data": seen}, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _resume_point(run_dir: Path, model, identity: str) -> tuple[int, list[dict[str, Any]]]:
    """Restore the checkpoint into `model`: (epochs already finished, their history rows).

    UsageError for a checkpoint that belongs to another spec or data than `identity` says.
    """
    from cnnbench.callbacks import CHECKPOINT, read_checkpoint, restore_checkpoint

    try:
        state = read_checkpoint(run_dir / CHECKPOINT)
        if state is None:
            return 0, []
        if state.identity is not None and state.identity != identity:
            raise UsageError(f"`resume` {_shown(run_dir)}: {CHECKPOINT} belongs to another spec or data than this run's "
                             f"(checkpoint {state.identity}, this run {identity}); delete {CHECKPOINT} to start the run again")  # fmt: skip
        restore_checkpoint(model, state)
    except ValueError as exc:
        raise UsageError(f"`resume`: {exc}; delete {CHECKPOINT} to start the run again") from None
    rows = _history_rows(run_dir / "history.csv", state.epoch)
    if len(rows) != state.epoch:
        raise UsageError(f"`resume`: history.csv has {len(rows)} epochs but the checkpoint {state.epoch}")
    return state.epoch, rows


# --- the run ---------------------------------------------------------------------------------


def train_run(
    spec: Spec,
    run_dir: str | Path,
    options: RunOptions = RunOptions(),
    on_epoch: Callable[[dict], None] | None = None,
    on_start: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Train `spec` once, writing spec.json, run.json, history.csv and model.keras into `run_dir`.

    Bad specs or data raise (SpecError, DataError, DeviceError, UsageError) before anything is written; a
    results folder that cannot be written raises OutputError. A run that diverges, runs out of
    memory (synthetic data too large included) or crashes — a full disk while saving included — is
    recorded with that status and returned; Ctrl-C records `interrupted` and re-raises
    KeyboardInterrupt. `on_start` gets the initial record once every check has passed; `on_epoch`
    gets each history row. With `options.resume` the run in `run_dir` continues from its checkpoint.
    The one-run case of `train_group`.
    """
    return train_group(
        [spec], [run_dir], options,
        on_epoch=(lambda lane, row: on_epoch(row)) if on_epoch else None,
        on_start=(lambda lane, record: on_start(record)) if on_start else None,
    )[0]  # fmt: skip


def train_group(
    specs: Sequence[Spec],
    run_dirs: Sequence[str | Path],
    options: RunOptions = RunOptions(),
    on_epoch: Callable[[int, dict], None] | None = None,
    on_start: Callable[[int, dict], None] | None = None,
    on_end: Callable[[int, dict], None] | None = None,
) -> list[dict[str, Any]]:
    """Train several runs (specs that differ only in learning rate), each into its own run folder; their records.

    With the fused engine they are lanes of one compiled program (as many at once as the device memory
    estimate allows; the rest in further programs); otherwise, or when the specs cannot be fused (said with
    a warning), one after another. Callbacks get the index of the run in `specs`; `on_end` gets each final
    record as soon as its run ends (a diverged lane before the others). Errors and Ctrl-C as in `train_run`,
    for every run in progress.
    """
    if len(specs) != len(run_dirs) or not specs:
        raise UsageError(f"train_group needs one run folder per spec, got {len(specs)} specs and {len(run_dirs)} folders")
    from cnnbench.data import check_data_file

    for data_path in dict.fromkeys(s.data.path for s in specs if s.data.path):  # a missing data file, too, before Keras
        check_data_file(data_path)
    requested = options.engine or specs[0].training.engine
    if requested != "auto":  # an engine this backend cannot run is refused before Keras is imported or data loaded
        engines.resolve(requested, devices.requested_backend(options.backend), "cpu")
    records: list[dict[str, Any]] = []
    while len(records) < len(specs):
        offset = len(records)
        if offset and devices.keras_imported():
            sys.modules["keras"].backend.clear_session()  # free the previous program's model; every run re-seeds itself
        records += _train_lanes(
            specs[offset:], [Path(d) for d in run_dirs[offset:]], options,
            (lambda lane, row, o=offset: on_epoch(o + lane, row)) if on_epoch else None,
            (lambda lane, record, o=offset: on_start(o + lane, record)) if on_start else None,
            (lambda lane, record, o=offset: on_end(o + lane, record)) if on_end else None,
        )  # fmt: skip
    return records


class _Lane:
    """One run inside a training program: its folder, record and epoch-level callbacks."""

    def __init__(self, run_dir: Path, record: dict[str, Any], history, guard, checkpoint, notifier, kept_rows: list[dict],
                 early=None) -> None:  # fmt: skip
        from cnnbench.callbacks import StopAtEpochEnd

        self.run_dir, self.record, self.history, self.guard, self.checkpoint = run_dir, record, history, guard, checkpoint
        self.kept_rows, self.early = kept_rows, early
        self.done = False
        # History first (the row on disk), the checkpoint after it (a crash between the two leaves a
        # history one epoch ahead, which --resume trims), the caller's notification, then the stop-signal check.
        self.callbacks = [history, guard, *([early] if early else []), checkpoint, *([notifier] if notifier else []), StopAtEpochEnd()]


def _train_lanes(specs, run_dirs, options, on_epoch, on_start, on_end) -> list[dict[str, Any]]:
    """Train the first run of `specs`, or as many as share one fused program; returns their records."""
    started_wall = time.perf_counter()
    started_at = now_iso()
    spec, run_dir = specs[0], run_dirs[0]
    startup: dict[str, float] = {}
    try:
        model, data, summary = prepare(spec, options, startup)
    except CnnbenchError:
        raise
    except Exception as exc:  # too large to allocate (synthetic data of a huge input_shape): a result, not a crash
        raise_if_stopped()  # a stop signal that Keras caught (a bare `except:` while it builds) and turned into this error
        if not is_oom(exc):
            raise
        record = _record_oom_at_start(spec, run_dir, options, exc, started_at)
        if on_end:
            on_end(0, dict(record))
        return [record]
    setup_s = time.perf_counter() - started_wall  # everything before training, startup_s included (bench's setup_s)
    import keras

    from cnnbench.callbacks import (
        CHECKPOINT,
        Checkpoint,
        DivergenceGuard,
        EarlyStop,
        EpochNotifier,
        EpochTimer,
        HistoryWriter,
    )

    device_kind, device_name = devices.resolve(options.device)  # DeviceError before anything is written
    engine = engines.get(engines.resolve(options.engine or spec.training.engine, keras.backend.backend(), device_kind))
    engine.check(model, data, spec)  # refused in one line before anything is written, like every other bad input
    take = engine.lane_count(specs, model, summary, options.resume)
    specs, run_dirs = list(specs[:take]), run_dirs[:take]
    previous = read_record(run_dir / "run.json") if options.resume else None
    was = ((previous or {}).get("data") or {}).get("sha256")
    if was and was != data.sha256:  # the same path, other digits: resuming would train one run on two datasets
        raise UsageError(f"`resume` {_shown(run_dir)}: its data file {spec.data.path or data.source} changed since the run started "
                         f"(sha256 {was[:12]}… then, {(data.sha256 or 'unreadable')[:12]}… now); train a new run on the new data")
    identity = checkpoint_identity(spec, data.describe())
    first_epoch, kept_rows = _resume_point(run_dir, model, identity) if options.resume else (0, [])
    epochs = spec.training.epochs
    fit_epochs = min(options.measure_epochs, epochs) if options.measure_epochs else epochs
    timer = EpochTimer(len(data.x_train))  # one timer: lanes share each epoch's program and its time
    lanes: list[_Lane] = []
    # The same for every lane (they differ only in the learning rate): worked out once.
    described, env = data.describe(), environment(options.threads)
    chance, margin = chance_error(data.num_classes), learned_margin(data.num_classes, len(data.x_val))
    run = {
        "epochs_measured": fit_epochs, "device": device_kind, "device_requested": options.device, "device_name": device_name,
        "backend": keras.backend.backend(), "engine": engine.name, "fused_k": take, "environment": env, "chance_error": chance,
        "learned_margin": margin, "started_at": (previous or {}).get("started_at") or started_at,
    }  # fmt: skip
    model_doc = {"params": summary.total_params, "trainable_params": summary.trainable_params, "flops_per_sample": summary.flops_per_sample}
    resumed = [*(previous or {}).get("resumed", []), {"at": started_at, "from_epoch": first_epoch}] if options.resume else None
    for k, (lane_spec, lane_dir) in enumerate(zip(specs, run_dirs, strict=True)):
        record = run_record.start_record(lane_spec, run, model_doc, {**described, "warnings": data.warnings},
                                         steps_per_execution(lane_spec, len(data.x_train)), resumed)  # fmt: skip
        try:
            lane_dir.mkdir(parents=True, exist_ok=True)
            if not options.resume:
                for stale in ("history.csv", "model.keras", "error.txt", CHECKPOINT):
                    (lane_dir / stale).unlink(missing_ok=True)
            write_json(lane_dir / "spec.json", lane_spec.to_dict())
            run_record.write_start(lane_dir, record)
        except OSError as exc:
            raise OutputError(f"cannot write the run folder {_shown(lane_dir)}: {_os_reason(exc)}") from None
        if on_start:
            on_start(k, dict(record))
        lane_epoch = (lambda row, k=k: on_epoch(k, row)) if on_epoch else None
        extra = {"fused_k": take} if engine.lanes_together else None
        rate = lambda epoch, lr=lane_spec.training.learning_rate: rate_at(lr, spec.training.lr_schedule, epoch, epochs)
        history = HistoryWriter(lane_dir / "history.csv", timer, rate, rows=kept_rows, extra=extra)
        notifier = EpochNotifier(history, lane_epoch) if lane_epoch else None
        checkpoint = Checkpoint(lane_dir / CHECKPOINT, checkpoint_identity(lane_spec, described))
        stopping = spec.training.early_stopping
        early = EarlyStop(stopping["patience"], stopping.get("min_delta", 0.0), kept_rows) if stopping else None
        lanes.append(_Lane(lane_dir, record, history, DivergenceGuard(data.num_classes), checkpoint, notifier, kept_rows, early))

    def finish(k: int, status: str | None = None, error: str | None = None) -> None:
        """Record lane k's end; for an ok run the model holds its weights: test evaluation and model.keras first."""
        lane = lanes[k]
        lane.checkpoint.wait(raise_error=False)  # a run that ended otherwise (failed, Ctrl-C) leaves no write in flight
        record, timing = lane.record, {}
        if status is None:
            status, error = ("diverged", lane.guard.reason) if lane.guard.reason else ("ok", None)
            if status == "ok":
                try:  # the test evaluation and the model file can fail too (a full disk): inside the run's handling
                    t0 = time.perf_counter()
                    test_loss, test_accuracy = model.evaluate(
                        data.x_test, data.y_test, batch_size=max(spec.training.batch_size, 256), verbose=0
                    )
                    record.update(test_loss=metric_value(test_loss), test_error=metric_value(1.0 - metric_value(test_accuracy)))
                    timing["test_s"] = time.perf_counter() - t0
                    if options.save_model:
                        _save_model(model, lane.run_dir / "model.keras")
                except Exception as exc:
                    raise_if_stopped()  # a stop signal turned into this error on the way: the run is interrupted, not failed
                    status, error = ("oom" if is_oom(exc) else "failed"), _error_line(exc)
                    _write_traceback(lane.run_dir)
        record["error"] = error
        record["stopped_early"] = lane.early.stopped if lane.early else None  # where and why, when early stopping ended it
        rows = lane.history.rows
        record.update(_metrics(rows))
        record["learned"] = learned(record["best_val_error"], data.num_classes, len(data.x_val))
        timing = {**summarize_epochs([r["epoch_time_s"] for r in rows]), **timing}
        if rows:
            timing["samples_per_s_median"] = statistics.median(r["samples_per_s"] for r in rows[1:] or rows)
        if options.measure_epochs and rows:
            timing["estimated_train_s"] = extrapolate_total(timing["first_epoch_s"], timing["epoch_s_median"], epochs)
        timing["setup_s"] = program.setup_s
        timing["startup_s"] = startup.get("startup_s", 0.0)
        timing["checkpoint_s"] = lane.checkpoint.seconds
        if status in FINISHED:  # nothing left to resume: the checkpoint only costs disk space now
            (lane.run_dir / CHECKPOINT).unlink(missing_ok=True)
        record["timing"] = timing
        record["epochs_run"] = len(rows)
        # Process start-up (Keras import, data load) is timing.startup_s: a sweep's first run is comparable to the others.
        total = time.perf_counter() - started_wall - timing["startup_s"]
        record["total_time_s"] = total + sum(r["epoch_time_s"] for r in lane.kept_rows)  # a resumed run counts its earlier epochs
        record["peak_host_mem_mb"] = devices.peak_host_memory_mb()
        record["peak_gpu_mem_mb"] = devices.peak_gpu_memory_mb() if device_kind == "gpu" else None
        record["status"] = status
        record["ended_at"] = now_iso()
        lane.done = True
        _write_final(lane.run_dir, record)
        if on_end:
            on_end(k, dict(record))

    program = Program(model, data, spec, specs, lanes, timer, first_epoch, fit_epochs, finish, setup_s)
    try:
        try:
            engine.train(program)
        except Exception:
            raise_if_stopped()  # a stop signal that Keras or TensorFlow caught and turned into another error is the stop
            raise
    except KeyboardInterrupt as exc:
        for k, lane in enumerate(lanes):
            if not lane.done:
                finish(k, "interrupted", interrupt_reason(exc))
        raise
    except OutputError:  # a record that cannot be written: nothing left to record it in
        raise
    except Exception as exc:  # the runs are recorded, not lost: the caller decides what a failure means
        status, error = ("oom" if is_oom(exc) else "failed"), _error_line(exc)
        for k, lane in enumerate(lanes):
            if not lane.done:
                _write_traceback(lane.run_dir)
                finish(k, status, error)
    return [lane.record for lane in lanes]


def _write_traceback(run_dir: Path) -> None:
    try:
        atomic_write_text(run_dir / "error.txt", traceback.format_exc())
    except OSError:
        pass  # a full disk: the record says what happened, if it can be written at all


def _write_final(run_dir: Path, record: dict[str, Any]) -> None:
    try:
        run_record.write_final(run_dir, record)
    except OSError as exc:
        raise _end_not_recorded(run_dir, record["status"], exc) from None


def _end_not_recorded(run_dir: Path, status: str, exc: OSError) -> OutputError:
    return OutputError(f"cannot record the run's end ({status}) in {_shown(run_dir)}: {_os_reason(exc)}; its run.json still says running")


def _record_oom_at_start(spec: Spec, run_dir: Path, options: RunOptions, exc: BaseException, started_at: str) -> dict[str, Any]:
    """A run whose model or data could not even be allocated: recorded `oom` so that a sweep or bench goes on."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "spec.json", spec.to_dict())
    except OSError as exc2:
        raise OutputError(f"cannot write the run folder {_shown(run_dir)}: {_os_reason(exc2)}") from None
    try:
        return run_record.oom_at_start(spec, run_dir, _error_line(exc), options.device, started_at, devices.peak_host_memory_mb())
    except OSError as exc2:
        raise _end_not_recorded(run_dir, "oom", exc2) from None


def _shown(path: Path, limit: int = 120) -> str:
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit]}…"


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _error_line(exc: BaseException, limit: int = 300) -> str:
    """One line for run.json's `error`: the exception's type and first line, a full disk said plainly."""
    text = str(exc).strip()
    if getattr(exc, "errno", None) == errno.ENOSPC or "no space left on device" in text.lower():
        where = getattr(exc, "filename", None)
        return f"no space left on device{f' while writing {Path(where).name}' if where else ''}"
    line = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".strip().rstrip(":")
    return line if len(line) <= limit else line[:limit] + "…"


def _metrics(rows: list[dict]) -> dict[str, Any]:
    if not rows:
        return {"final_loss": None, "final_val_error": None, "best_val_error": None, "best_epoch": None}
    last = rows[-1]
    val = [(r.get("val_error", float("nan")), r["epoch"]) for r in rows]
    finite = [(v, e) for v, e in val if v == v]
    best_error, best_epoch = min(finite) if finite else (None, None)
    return {
        "final_loss": last.get("loss"),
        "final_accuracy": last.get("accuracy"),
        "final_val_loss": last.get("val_loss"),
        "final_val_error": last.get("val_error"),
        "best_val_error": best_error,
        "best_epoch": best_epoch,
    }


def _save_model(model, path: Path) -> None:
    import tempfile

    check_target(path)
    # A fresh name (O_EXCL): a link planted under a fixed temp name would make Keras write through it.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.keras", dir=path.parent)  # Keras insists on .keras
    os.close(fd)
    tmp = Path(name)
    try:
        model.save(tmp)
        os.chmod(tmp, 0o644)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a torn file must not be left behind (a full disk, Ctrl-C)
        raise
