"""The run record, `run.json`: its fields, its statuses, and the only code that writes it.

A run's record is written when it starts (`running`), when it ends (its final status), copied as it
arrived from a worker on another machine, or marked when the run ended outside training (`interrupted`,
`failed`, `oom` at start). Records go in and out as plain dicts; every write is atomic.

>>> mark_ended("results/lr-sweep/lr-0.1", "interrupted", "interrupted (Ctrl-C)", only=("running",))
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cnnbench.errors import brief
from cnnbench.files import UnsafeFileError, read_json, write_json

RUN_FILE = "run.json"
STATUSES = ("ok", "diverged", "failed", "interrupted", "oom", "running")
FINISHED = ("ok", "diverged", "oom")  # statuses a resumed sweep or bench keeps; others are redone

OPTIONAL_NUMBER = (int, float, type(None))
OPTIONAL_INT = (int, type(None))
OPTIONAL_STR = (str, type(None))
OPTIONAL_DICT = (dict, type(None))
# The keys of run.json that cnnbench reads, and the types it accepts (a missing key is fine; a
# record that has one with another type is `corrupt`). Booleans are not numbers here.
FIELDS: dict[str, tuple[type, ...]] = {
    "status": (str,), "name": OPTIONAL_STR, "error": OPTIONAL_STR, "learning_rate": OPTIONAL_NUMBER,
    "batch_size": OPTIONAL_INT, "optimizer": OPTIONAL_STR, "epochs": OPTIONAL_INT, "epochs_measured": OPTIONAL_INT,
    "epochs_run": OPTIONAL_INT, "seed": OPTIONAL_INT, "params": OPTIONAL_INT, "filters": OPTIONAL_INT,
    "flops_per_sample": OPTIONAL_INT, "best_epoch": OPTIONAL_INT, "best_val_error": OPTIONAL_NUMBER,
    "final_val_error": OPTIONAL_NUMBER, "final_loss": OPTIONAL_NUMBER, "test_error": OPTIONAL_NUMBER,
    "total_time_s": OPTIONAL_NUMBER, "peak_host_mem_mb": OPTIONAL_NUMBER, "peak_gpu_mem_mb": OPTIONAL_NUMBER,
    "data": OPTIONAL_DICT, "timing": OPTIONAL_DICT, "environment": OPTIONAL_DICT, "device": OPTIONAL_STR,
    "device_name": OPTIONAL_STR, "backend": OPTIONAL_STR, "started_at": OPTIONAL_STR, "ended_at": OPTIONAL_STR,
    "learned": (bool, type(None)), "engine": OPTIONAL_STR, "fused_k": OPTIONAL_INT, "chance_error": OPTIONAL_NUMBER,
    "learned_margin": OPTIONAL_NUMBER, "resumed": (list, type(None)), "trainable_params": OPTIONAL_INT,
}  # fmt: skip
DATA_FIELDS: dict[str, tuple[type, ...]] = {
    "name": OPTIONAL_STR, "requested": OPTIONAL_STR, "source": OPTIONAL_STR, "train_samples": OPTIONAL_INT,
    "val_samples": OPTIONAL_INT, "test_samples": OPTIONAL_INT, "num_classes": OPTIONAL_INT, "warnings": (list, type(None)),
}  # fmt: skip


def now_iso() -> str:
    """The time as records say it (`started_at`, `ended_at`): local, with its UTC offset, to the second."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


# --- what a trustworthy record looks like ---------------------------------------------------------


def _type_names(types: tuple[type, ...]) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", dict: "an object", list: "a list",
             type(None): "null"}  # fmt: skip
    return " or ".join(dict.fromkeys(names[t] for t in types if not (t is int and float in types)))


def type_problem(record: dict, fields: dict[str, tuple[type, ...]], prefix: str = "") -> str | None:
    """The first key of `record` whose value has a type `fields` does not allow, said in words (None when all fit)."""
    for key, types in fields.items():
        if key not in record:
            continue
        value = record[key]
        wrong = isinstance(value, bool) and bool not in types or not isinstance(value, types)
        if wrong:
            return f"{prefix}{key} is {brief(value)}, expected {_type_names(types)}"
    return None


def problem(record: dict) -> str | None:
    """Why a parsed run.json cannot be trusted (None when it can): no status, an unknown one, a key of the wrong type."""
    if "status" not in record:
        return "has no status"
    if found := type_problem(record, FIELDS):
        return found
    if record["status"] not in STATUSES:
        return f"status {brief(record['status'])} is not one of {', '.join(STATUSES)}"
    if found := type_problem(record.get("data") or {}, DATA_FIELDS, "data."):
        return found
    timing = record.get("timing") or {}
    wrong = next((k for k, v in timing.items() if isinstance(v, bool) or not isinstance(v, OPTIONAL_NUMBER)), None)
    if wrong is not None:
        return f"timing.{wrong} is {brief(timing[wrong])}, expected a number or null"
    for i, entry in enumerate(record.get("resumed") or []):
        if not isinstance(entry, dict) or type_problem(entry, {"at": OPTIONAL_STR, "from_epoch": (int,)}) or "from_epoch" not in entry:
            return f"resumed[{i}] is {brief(entry)}, expected {{'at': a time, 'from_epoch': an integer}}"
    return None


def read(run_dir: str | Path) -> dict[str, Any] | None:
    """The record in `run_dir`, or None when there is none or it cannot be trusted (results.inspect_record says why)."""
    try:
        record = read_json(Path(run_dir) / RUN_FILE)
    except (OSError, ValueError, RecursionError, UnsafeFileError):
        return None
    return record if isinstance(record, dict) and problem(record) is None else None


# --- writing: the start, the end, a copy, a mark --------------------------------------------------


def start_record(
    spec: Any, run: dict[str, Any], model: dict[str, Any], data: dict[str, Any], steps_per_execution: int, resumed: list | None = None
) -> dict[str, Any]:
    """The record of a run that starts training (`running`): what it trains (the spec), on what, where and how.

    `run` holds what every lane of one program shares (epochs_measured, device, device_requested, device_name,
    backend, engine, fused_k, environment, chance_error, learned_margin, started_at); `model` the summary
    (params, trainable_params, flops_per_sample); `data` the dataset as described, with its `warnings`;
    `resumed` the run's earlier starts and this one, for a resumed run.
    """
    t = spec.training
    record = {
        "name": spec.name, "status": "running", "error": None, "learning_rate": t.learning_rate, "batch_size": t.batch_size,
        "optimizer": t.optimizer, "epochs": t.epochs, "epochs_measured": run["epochs_measured"], "seed": t.seed,
        "params": model["params"], "trainable_params": model["trainable_params"], "flops_per_sample": model["flops_per_sample"],
        "data": {**{k: v for k, v in data.items() if k != "warnings"}, "requested": spec.data.dataset, "warnings": data.get("warnings")},
        **{key: run[key] for key in ("device", "device_requested", "device_name", "backend", "engine", "fused_k", "environment")},
        "steps_per_execution": steps_per_execution, "chance_error": run["chance_error"],
        "learned_margin": run["learned_margin"],
        "training_options": t.knobs(),  # optimizer options, schedule, early stopping, label smoothing: those set
        "started_at": run["started_at"],
    }  # fmt: skip
    if resumed is not None:
        record["resumed"] = resumed
    return record


def write_start(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Write the record of a run that starts (status `running`); OSError when the folder cannot take it."""
    if record.get("status") != "running":
        raise ValueError(f"a start record says running, not {record.get('status')!r}")
    write_json(Path(run_dir) / RUN_FILE, record)


def write_final(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Write the record of a run that ended in training (a final status, `ended_at`); OSError when it cannot be written."""
    if record.get("status") not in STATUSES or record.get("status") == "running":
        raise ValueError(f"a final record has a final status, not {record.get('status')!r}")
    write_json(Path(run_dir) / RUN_FILE, record)


def copy(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Write a record as it arrived from elsewhere (a Ray worker's start or end; a run rebuilt from a table)."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(run_dir) / RUN_FILE, record)


def mark_ended(
    run_dir: str | Path, status: str, error: str, only: Collection[str | None] | None = None, base: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Mark a run that ended outside training (its worker or child died, Ctrl-C while saving): the record it now has.

    `status` and `error` say how it ended; what the record already says (device, data, epochs run) is kept.
    `only`: the statuses a record may have to be marked (None: a run that has no record yet; leave out for
    any); another record is left as it is and None returned. `base`: the fields of a record made from nothing.
    """
    current = read(run_dir)
    if only is not None and (current or {}).get("status") not in only:
        return None
    record = {**(base or {}), **(current or {}), "status": status, "error": error, "ended_at": now_iso()}
    copy(run_dir, record)
    return record


def oom_at_start(
    spec: Any, run_dir: str | Path, error: str, device_requested: str, started_at: str, peak_host_mem_mb: float | None
) -> dict[str, Any]:
    """Record a run whose model or data could not even be allocated as `oom`, so that a sweep or bench goes on."""
    t = spec.training
    record = {
        "name": spec.name, "status": "oom", "error": error, "learning_rate": t.learning_rate, "batch_size": t.batch_size,
        "optimizer": t.optimizer, "epochs": t.epochs, "seed": t.seed, "device_requested": device_requested, "epochs_run": 0,
        "learned": None, "final_val_error": None, "best_val_error": None, "best_epoch": None, "timing": {}, "total_time_s": None,
        "peak_host_mem_mb": peak_host_mem_mb, "started_at": started_at, "ended_at": now_iso(),
    }  # fmt: skip
    write_final(run_dir, record)
    return record
