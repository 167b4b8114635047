"""The one door to training: `train_run(spec, run_dir, options)` trains one run and returns its record.

`train`, `sweep` and `bench` all call it; it needs nothing but a spec, options and a folder, so a
distributed executor can call it too. The record is also written to `run_dir/run.json`.
"""

from __future__ import annotations

import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench import device as devices
from cnnbench.errors import SpecError
from cnnbench.results import atomic_write_text, environment, now_iso, write_json
from cnnbench.spec import Spec
from cnnbench.timing import extrapolate_total, summarize_epochs


@dataclass(frozen=True)
class RunOptions:
    """How to run a spec (what it is trained on and for how long is in the spec itself).

    device: cpu, gpu or auto. backend: the Keras backend, set in the environment before Keras is
    imported (None: leave KERAS_BACKEND as it is). threads: CPU threads for the process.
    measure_epochs: train only this many epochs and estimate the time of the spec's epochs.
    """

    device: str = "auto"
    backend: str | None = None
    threads: int | None = None
    measure_epochs: int | None = None
    save_model: bool = True


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
    # The output's shape and class count need no data: `build_model` checks them (cnnbench.model.check_output).
    if tuple(spec.input_shape) != data.sample_shape:
        raise SpecError(
            spec.source, "input_shape", f"is {list(spec.input_shape)} but {data.name} samples have shape {list(data.sample_shape)}"
        )


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


def train_run(
    spec: Spec,
    run_dir: str | Path,
    options: RunOptions = RunOptions(),
    on_epoch: Callable[[dict], None] | None = None,
    on_start: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Train `spec` once, writing spec.json, run.json, history.csv and model.keras into `run_dir`.

    Bad specs or data raise (SpecError, DataError, DeviceError) before anything is written. A run
    that diverges, runs out of memory or crashes is recorded with that status and returned; Ctrl-C
    records `interrupted` and re-raises KeyboardInterrupt. `on_start` gets the initial record once
    every check has passed; `on_epoch` gets each history row.
    """
    started_wall = time.perf_counter()
    started_at = now_iso()
    model, data, summary = prepare(spec, options)
    setup_s = time.perf_counter() - started_wall
    import keras

    from cnnbench.callbacks import DivergenceGuard, EpochTimer, HistoryWriter

    device_kind, device_name = devices.resolve(options.device)  # DeviceError before anything is written
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("history.csv", "model.keras", "error.txt"):
        (run_dir / stale).unlink(missing_ok=True)
    epochs = spec.training.epochs
    fit_epochs = min(options.measure_epochs, epochs) if options.measure_epochs else epochs
    record: dict[str, Any] = {
        "name": spec.name,
        "status": "running",
        "error": None,
        "learning_rate": spec.training.learning_rate,
        "batch_size": spec.training.batch_size,
        "optimizer": spec.training.optimizer,
        "epochs": epochs,
        "epochs_measured": fit_epochs,
        "seed": spec.training.seed,
        "params": summary.total_params,
        "trainable_params": summary.trainable_params,
        "flops_per_sample": summary.flops_per_sample,
        "data": {**data.describe(), "requested": spec.data.dataset, "warnings": data.warnings},
        "device": device_kind,
        "device_requested": options.device,
        "device_name": device_name,
        "backend": keras.backend.backend(),
        "environment": environment(options.threads),
        "started_at": started_at,
    }
    write_json(run_dir / "spec.json", spec.to_dict())
    write_json(run_dir / "run.json", record)
    if on_start:
        on_start(dict(record))

    timer = EpochTimer(len(data.x_train))
    guard = DivergenceGuard(data.num_classes)
    history = HistoryWriter(run_dir / "history.csv", timer, spec.training.learning_rate, on_epoch)
    interrupted = False
    try:
        model.fit(
            data.x_train, data.y_train,
            batch_size=spec.training.batch_size, epochs=fit_epochs,
            validation_data=(data.x_val, data.y_val),
            callbacks=[timer, history, guard], verbose=0, shuffle=True,
        )  # fmt: skip
        status = "diverged" if guard.reason else "ok"
        record["error"] = guard.reason
    except KeyboardInterrupt:
        status, interrupted = "interrupted", True
        record["error"] = "interrupted by the user (Ctrl-C)"
    except Exception as exc:  # the run is recorded, not lost: the caller decides what a failure means
        status = "oom" if is_oom(exc) else "failed"
        record["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}".strip()
        atomic_write_text(run_dir / "error.txt", traceback.format_exc())

    rows = history.rows
    record.update(_metrics(rows))
    timing = summarize_epochs([r["epoch_time_s"] for r in rows])
    if rows:
        timing["samples_per_s_median"] = statistics.median(r["samples_per_s"] for r in rows[1:] or rows)
    if options.measure_epochs and rows:
        timing["estimated_train_s"] = extrapolate_total(timing["first_epoch_s"], timing["epoch_s_median"], epochs)
    timing["setup_s"] = setup_s
    if status == "ok" and not interrupted:
        t0 = time.perf_counter()
        test_loss, test_accuracy = model.evaluate(data.x_test, data.y_test, batch_size=max(spec.training.batch_size, 256), verbose=0)
        record.update(test_loss=float(test_loss), test_error=1.0 - float(test_accuracy))
        timing["test_s"] = time.perf_counter() - t0
        if options.save_model:
            _save_model(model, run_dir / "model.keras")
    record["timing"] = timing
    record["epochs_run"] = len(rows)
    record["total_time_s"] = time.perf_counter() - started_wall
    record["peak_host_mem_mb"] = devices.peak_host_memory_mb()
    record["peak_gpu_mem_mb"] = devices.peak_gpu_memory_mb() if device_kind == "gpu" else None
    record["status"] = status
    record["ended_at"] = now_iso()
    write_json(run_dir / "run.json", record)
    if interrupted:
        raise KeyboardInterrupt
    return record


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
