"""The one door to training: `train_run(spec, run_dir, options)` trains one run and returns its record.

`train`, `sweep` and `bench` all call it; it needs nothing but a spec, options and a folder, so a
distributed executor can call it too. The record is also written to `run_dir/run.json`.
"""

from __future__ import annotations

import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench import device as devices
from cnnbench.errors import SpecError, UsageError
from cnnbench.results import atomic_write_text, environment, now_iso, write_json
from cnnbench.spec import Spec
from cnnbench.timing import extrapolate_total, summarize_epochs


@dataclass(frozen=True)
class RunOptions:
    """How to run a spec (what it is trained on and for how long is in the spec itself).

    device: cpu, gpu or auto. backend: the Keras backend, set in the environment before Keras is
    imported (None: leave KERAS_BACKEND as it is). threads: CPU threads for the process.
    measure_epochs: train only this many epochs and estimate the time of the spec's epochs.
    engine: fit, fused or auto (None: the spec's training.engine); see cnnbench/fused.py.
    """

    device: str = "auto"
    backend: str | None = None
    threads: int | None = None
    measure_epochs: int | None = None
    save_model: bool = True
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

    from cnnbench.spec import _did_you_mean

    name = spec.training.optimizer
    try:
        cls = type(keras.optimizers.get(name))
    except (ValueError, TypeError):
        known = ["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "ftrl", "lion", "lamb"]
        raise SpecError(spec.source, "training.optimizer", f"unknown optimizer {name!r}{_did_you_mean(name, known)}") from None
    return cls(learning_rate=spec.training.learning_rate)


def load_data_for(spec: Spec, num_classes: int):
    """The dataset named in the spec, shaped for its model (memoised per process)."""
    return _load_data(spec.data.dataset, spec.data.path, spec.training.seed, spec.data.train_samples,
                      spec.data.val_samples, spec.data.test_samples, tuple(spec.input_shape), num_classes)  # fmt: skip


_DATA_CACHE: dict[tuple, Any] = {}


def _load_data(*key):
    # Start-up is paid once per worker: a sweep's runs share one split of one dataset.
    from cnnbench.data import load_dataset

    if key not in _DATA_CACHE:
        name, path, seed, n_train, n_val, n_test, shape, classes = key
        _DATA_CACHE[key] = load_dataset(
            name, seed=seed, path=path, train_samples=n_train, val_samples=n_val, test_samples=n_test,
            sample_shape=shape, num_classes=classes,
        )  # fmt: skip
    return _DATA_CACHE[key]


def _check_fit(spec: Spec, model, data) -> None:
    if tuple(spec.input_shape) != data.sample_shape:
        raise SpecError(
            spec.source, "input_shape", f"is {list(spec.input_shape)} but {data.name} samples have shape {list(data.sample_shape)}"
        )
    out = tuple(model.output_shape)
    if len(out) != 2 or out[-1] != data.num_classes:
        last = len(spec.layers) - 1
        raise SpecError(
            spec.source, f"layers[{last}]",
            f"the model must end in {data.num_classes} outputs (one per class of {data.name}), but it outputs shape {out}",
        )  # fmt: skip


def prepare(spec: Spec, options: RunOptions = RunOptions()):
    """Validate and build everything a run needs, before any file is written: (model, data, summary)."""
    from cnnbench.model import build_model, summarize

    devices.configure(options.device, options.backend, options.threads)
    keras = devices.import_keras()

    devices.after_import(options.threads)
    model = build_model(spec)
    summary = summarize(spec, model)
    last_activation = getattr(model.layers[-1], "activation", None)
    from_logits = getattr(last_activation, "__name__", "") != "softmax"
    optimizer = make_optimizer(spec)
    data = load_data_for(spec, int(model.output_shape[-1]) if spec.data.dataset == "synthetic" else 10)
    _check_fit(spec, model, data)
    compile_kwargs = {}
    if keras.backend.backend() != "torch":  # torch does not support steps_per_execution
        compile_kwargs["steps_per_execution"] = spec.training.steps_per_execution
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=["accuracy"],
        **compile_kwargs,
    )
    return model, data, summary


def engine_for(spec: Spec, options: RunOptions = RunOptions()) -> str:
    """The engine (fit or fused) `spec` trains with under `options` in this process; imports Keras.

    Raises UsageError for fused on a backend other than JAX, DeviceError for an unusable device.
    """
    from cnnbench.fused import resolve_engine

    devices.configure(options.device, options.backend, options.threads)
    keras = devices.import_keras()
    device_kind, _ = devices.resolve(options.device)
    return resolve_engine(options.engine or spec.training.engine, keras.backend.backend(), device_kind)


def train_run(
    spec: Spec,
    run_dir: str | Path,
    options: RunOptions = RunOptions(),
    on_epoch: Callable[[dict], None] | None = None,
    on_start: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Train `spec` once, writing spec.json, run.json, history.csv and model.keras into `run_dir`.

    Bad specs or data raise (SpecError, DataError, DeviceError, UsageError) before anything is written. A run
    that diverges, runs out of memory or crashes is recorded with that status and returned; Ctrl-C
    records `interrupted` and re-raises KeyboardInterrupt. `on_start` gets the initial record once
    every check has passed; `on_epoch` gets each history row. The one-lane case of `train_group`.
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
    record as soon as its run ends (a diverged lane before the others). Ctrl-C records `interrupted` for
    the runs in progress and re-raises KeyboardInterrupt.
    """
    if len(specs) != len(run_dirs) or not specs:
        raise UsageError(f"train_group needs one run folder per spec, got {len(specs)} specs and {len(run_dirs)} folders")
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
    """One run inside a training program: its folder, record and epoch- and test-level callbacks."""

    def __init__(self, run_dir: Path, record: dict[str, Any], history, guard) -> None:
        self.run_dir, self.record, self.history, self.guard = run_dir, record, history, guard
        self.done = False


def _train_lanes(specs, run_dirs, options, on_epoch, on_start, on_end) -> list[dict[str, Any]]:
    """Train the first run of `specs`, or as many as fit in one fused program; returns their records."""
    started_wall = time.perf_counter()
    started_at = now_iso()
    spec = specs[0]
    model, data, summary = prepare(spec, options)
    import keras

    from cnnbench.callbacks import DivergenceGuard, EpochTimer, HistoryWriter
    from cnnbench.fused import lane_cap, resolve_engine, unfusable_reason

    device_kind, device_name = devices.resolve(options.device)  # DeviceError before anything is written
    engine = resolve_engine(options.engine or spec.training.engine, keras.backend.backend(), device_kind)
    take = 1
    if engine == "fused" and len(specs) > 1:
        reason = unfusable_reason(specs)
        if reason:
            warnings.warn(f"not fusing: {reason}; training the runs one after another", stacklevel=2)
        else:
            take = min(len(specs), lane_cap(model, spec.training.batch_size, summary))
            if take < len(specs):
                warnings.warn(f"fusing {take} of {len(specs)} runs at once (device memory estimate); the rest follow", stacklevel=2)
    specs, run_dirs = list(specs[:take]), run_dirs[:take]
    epochs = spec.training.epochs
    fit_epochs = min(options.measure_epochs, epochs) if options.measure_epochs else epochs
    timer = EpochTimer(len(data.x_train))
    lanes: list[_Lane] = []
    for k, (lane_spec, run_dir) in enumerate(zip(specs, run_dirs, strict=True)):
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("history.csv", "model.keras", "error.txt"):
            (run_dir / stale).unlink(missing_ok=True)
        record: dict[str, Any] = {
            "name": lane_spec.name,
            "status": "running",
            "error": None,
            "learning_rate": lane_spec.training.learning_rate,
            "batch_size": lane_spec.training.batch_size,
            "optimizer": lane_spec.training.optimizer,
            "epochs": epochs,
            "epochs_measured": fit_epochs,
            "seed": lane_spec.training.seed,
            "params": summary.total_params,
            "trainable_params": summary.trainable_params,
            "flops_per_sample": summary.flops_per_sample,
            "data": {**data.describe(), "requested": lane_spec.data.dataset, "warnings": data.warnings},
            "device": device_kind,
            "device_requested": options.device,
            "device_name": device_name,
            "backend": keras.backend.backend(),
            "engine": engine,
            "fused_k": take,
            "environment": environment(options.threads),
            "started_at": started_at,
        }
        write_json(run_dir / "spec.json", lane_spec.to_dict())
        write_json(run_dir / "run.json", record)
        if on_start:
            on_start(k, dict(record))
        lane_epoch = (lambda row, k=k: on_epoch(k, row)) if on_epoch else None
        extra = {"fused_k": take} if engine == "fused" else None
        history = HistoryWriter(run_dir / "history.csv", timer, lane_spec.training.learning_rate, lane_epoch, extra)
        lanes.append(_Lane(run_dir, record, history, DivergenceGuard(data.num_classes)))
    setup_s = time.perf_counter() - started_wall

    def finish(k: int, status: str | None = None, error: str | None = None) -> None:
        lane = lanes[k]
        record, rows = lane.record, lane.history.rows
        if status is None:
            status, error = ("diverged", lane.guard.reason) if lane.guard.reason else ("ok", None)
        record["error"] = error
        record.update(_metrics(rows))
        timing = summarize_epochs([r["epoch_time_s"] for r in rows])
        if rows:
            timing["samples_per_s_median"] = statistics.median(r["samples_per_s"] for r in rows[1:] or rows)
        if options.measure_epochs and rows:
            timing["estimated_train_s"] = extrapolate_total(timing["first_epoch_s"], timing["epoch_s_median"], epochs)
        timing["setup_s"] = setup_s
        if status == "ok":
            t0 = time.perf_counter()
            test_loss, test_accuracy = model.evaluate(data.x_test, data.y_test, batch_size=max(spec.training.batch_size, 256), verbose=0)
            record.update(test_loss=float(test_loss), test_error=1.0 - float(test_accuracy))
            timing["test_s"] = time.perf_counter() - t0
            if options.save_model:
                _save_model(model, lane.run_dir / "model.keras")
        record["timing"] = timing
        record["epochs_run"] = len(rows)
        record["total_time_s"] = time.perf_counter() - started_wall
        record["peak_host_mem_mb"] = devices.peak_host_memory_mb()
        record["peak_gpu_mem_mb"] = devices.peak_gpu_memory_mb() if device_kind == "gpu" else None
        record["status"] = status
        record["ended_at"] = now_iso()
        write_json(lane.run_dir / "run.json", record)
        lane.done = True
        if on_end:
            on_end(k, dict(record))

    try:
        if engine == "fit":
            lane = lanes[0]
            model.fit(
                data.x_train, data.y_train,
                batch_size=spec.training.batch_size, epochs=fit_epochs,
                validation_data=(data.x_val, data.y_val),
                callbacks=[timer, lane.history, lane.guard], verbose=0, shuffle=True,
            )  # fmt: skip
            finish(0)
        else:
            from cnnbench.fused import FusedTrainer

            t0 = time.perf_counter()
            rates = [s.training.learning_rate for s in specs]
            trainer = FusedTrainer(model, data, spec.training.batch_size, spec.training.seed, rates)
            setup_s += time.perf_counter() - t0
            callback_lists = [keras.callbacks.CallbackList([lane.history, lane.guard], model=model) for lane in lanes]
            trainer.fit(fit_epochs, timer, callback_lists, on_lane_end=finish, stopped=lambda k: lanes[k].guard.reason is not None)
    except KeyboardInterrupt:
        for k, lane in enumerate(lanes):
            if not lane.done:
                finish(k, "interrupted", "interrupted by the user (Ctrl-C)")
        raise
    except Exception as exc:  # the runs are recorded, not lost: the caller decides what a failure means
        status = "oom" if is_oom(exc) else "failed"
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}".strip()
        for k, lane in enumerate(lanes):
            if not lane.done:
                atomic_write_text(lane.run_dir / "error.txt", traceback.format_exc())
                finish(k, status, error)
    return [lane.record for lane in lanes]


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
    tmp = path.with_name(f".{path.stem}.tmp.keras")  # Keras insists on the .keras suffix
    model.save(tmp)
    tmp.replace(path)
