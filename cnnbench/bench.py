"""Runtime benchmarks: one spec trained per device × Keras backend × filter count, each in a fresh process.

`run_bench` owns the bench folder (bench.json, bench.csv, runs/); each run is a task of the executor's
fresh policy (`cnnbench.executor.fresh`: a new process pinned to its device and backend).

>>> result = run_bench(load_spec("convolutional_nn"), BenchOptions(devices=("cpu",), filters=(8, 16)))
>>> result.csv_path                        # results/bench-convolutional_nn-<hash>/bench.csv
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import signal
import statistics
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cnnbench import device as devices
from cnnbench import engines, results
from cnnbench import record as run_record
from cnnbench.aggregates import Throttled
from cnnbench.data import file_digest
from cnnbench.errors import CnnbenchError, DataError, DeviceError, SpecError, UsageError, raise_if_stopped
from cnnbench.executor import Event, RayConfig, Task, make_executor
from cnnbench.executor.fresh import ChildExit, FreshProcessError, call_fresh, log_excerpt
from cnnbench.files import UnsafeFileError, read_text
from cnnbench.layout import BENCH_RUNS
from cnnbench.lock import folder_lock
from cnnbench.model import sizes_by_filters
from cnnbench.provenance import machine, versions
from cnnbench.results import FINISHED, now_iso, read_record, write_csv, write_json
from cnnbench.spec import Spec
from cnnbench.timing import extrapolate_total
from cnnbench.train import RunOptions, looks_like_oom

BENCH_DEVICES = ("cpu", "gpu")
STATUSES = ("ok", "oom", "failed", "unavailable")
COLUMNS = (
    "device", "device_name", "backend", "filters", "params", "flops_per_sample", "batch_size", "epochs",
    "measured_epochs", "first_epoch_s", "epoch_s_median", "epoch_s_min", "epoch_s_max", "total_s",
    "measured_total_s", "samples_per_s", "gflops_per_s", "peak_mem_mb", "peak_gpu_mem_mb", "estimated",
    "status", "error", "repeats", "setup_s", "dataset", "train_samples", "threads", "run_dirs", "engine",
)  # fmt: skip
TRAINING_FLOPS_FACTOR = 3  # forward + backward ≈ 3 × the forward pass
PINNING = devices.PINNING  # what pins a child; recorded in its child.json so isolation can be checked


# --- options and the grid --------------------------------------------------------------------


@dataclass(frozen=True)
class BenchOptions:
    """What to measure; how each run trains (epochs, batch, data, seed) is in the spec.

    devices: cpu and/or gpu (None: cpu, plus gpu when nvidia-smi lists one). backends: Keras
    backends (None: KERAS_BACKEND or tensorflow). measure_epochs: train k epochs and extrapolate
    to the spec's epochs. memory_limit_mb: address-space cap of each training process (RLIMIT_AS).
    timeout_s: a run still going after this many seconds is killed and recorded as failed.
    engines: training engines, one more dimension of the grid (auto resolves per run; see cnnbench/engines/).
    Where the runs execute (this machine or a Ray cluster) is `run_bench`'s `ray` parameter, not an option.
    """

    devices: tuple[str, ...] | None = None
    backends: tuple[str, ...] | None = None
    filters: tuple[int, ...] = (8, 16, 32, 64)
    repeats: int = 1
    measure_epochs: int | None = None
    threads: int | None = None
    memory_limit_mb: int | None = None
    timeout_s: float | None = None
    force: bool = False
    engines: tuple[str, ...] = ("auto",)

    def resolved(self) -> BenchOptions:
        """A copy with the default devices and backends filled in and every value checked."""
        chosen = self.devices or (("cpu", "gpu") if devices.nvidia_gpus() else ("cpu",))
        backends = self.backends or (os.environ.get("KERAS_BACKEND") or "tensorflow",)
        checks = (("`devices`", chosen, BENCH_DEVICES), ("`backends`", backends, devices.BACKENDS))
        for name, values, known in (*checks, ("`engines`", self.engines, engines.CHOICES)):
            unknown = [v for v in values if v not in known]
            if unknown:
                raise UsageError(f"{name}: unknown value(s) {', '.join(map(repr, unknown))}; use a comma list of {', '.join(known)}")
        if not self.filters or any(not isinstance(f, int) or f < 1 for f in self.filters):
            raise UsageError(f"`BenchOptions.filters`: must be positive integers, got {list(self.filters)}")
        counts = {"`repeats`": self.repeats, "`measure_epochs`": self.measure_epochs, "`threads`": self.threads,
                  "`memory_limit_mb`": self.memory_limit_mb}  # fmt: skip
        for name, value in counts.items():
            if value is not None and value < 1:
                raise UsageError(f"{name}: must be at least 1, got {value}")
        dedupe = lambda values: tuple(dict.fromkeys(values))
        return replace(self, devices=dedupe(chosen), backends=dedupe(backends), filters=dedupe(self.filters),
                       engines=dedupe(self.engines) or ("auto",))  # fmt: skip


def parse_list(text: str, option: str, convert: Callable[[str], Any] = str) -> tuple:
    """A comma list from the command line: `"8, 16,32"` → (8, 16, 32); UsageError naming the option."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UsageError(f"{option}: give a comma-separated list, got {text!r}")
    try:
        return tuple(convert(item.lower() if convert is str else item) for item in items)
    except ValueError:
        raise UsageError(f"{option}: cannot read {text!r} as a comma-separated list of numbers") from None


@dataclass(frozen=True)
class Combination:
    """One row of bench.csv."""

    device: str
    backend: str
    filters: int
    engine: str = "auto"  # as asked; the row's `engine` column says what the runs used

    def run_name(self, repeat: int) -> str:
        engine = "" if self.engine == "auto" else f"-{self.engine}"  # auto keeps the names of benches made before engines
        return f"{self.device}-{self.backend}-f{self.filters}{engine}-r{repeat}"


def combinations(options: BenchOptions) -> list[Combination]:
    names = options.engines or ("auto",)
    return [Combination(d, b, f, e) for d in options.devices for b in options.backends for e in names for f in options.filters]


def combination_reason(combo: Combination, reasons: dict[tuple[str, str], str | None]) -> str | None:
    """Why `combo` cannot be measured here (None when it can): its device/backend, or fused off JAX."""
    if reasons[(combo.device, combo.backend)]:
        return reasons[(combo.device, combo.backend)]
    why = engines.unavailable(combo.engine, combo.backend)
    return f"{why}, not {combo.backend}" if why else None


def bench_dir(out: str | Path, spec: Spec, options: BenchOptions) -> Path:
    """The bench folder: the same spec and options give the same folder, so a re-run resumes it."""
    options = options.resolved()
    key = {**asdict(options), "spec": spec.to_dict()}
    if spec.data.path:  # a data file is known by its content: changed in place, it is new data
        key["spec"]["data"]["sha256"] = file_digest(spec.data.path)
    for volatile in ("force", "timeout_s"):  # they change how a bench runs, not what it measures (nor does `ray`)
        key.pop(volatile)
    if tuple(key["engines"]) == ("auto",):
        key.pop("engines")  # benches made before the engine dimension keep their folder
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return Path(out) / f"bench-{spec.name}-{digest}"


# --- device and backend discovery, without importing a framework in this process ------------


def availability(options: BenchOptions) -> dict[tuple[str, str], str | None]:
    """(device, backend) → None when it can be measured here, else the reason it cannot.

    GPUs are listed by nvidia-smi; where it lists one, a child process asks each backend whether it
    sees it (TensorFlow without CUDA libraries does not), so this process never imports a framework.
    """
    options = options.resolved()
    gpus = devices.nvidia_gpus() if "gpu" in options.devices else []
    found: dict[tuple[str, str], str | None] = {}
    for backend in options.backends:
        installed = devices.backend_installed(backend)
        for device in options.devices:
            if not installed:
                reason = f"the Keras backend {backend} is not installed (pip install {backend})"
            elif device == "cpu":
                reason = None
            elif not gpus:
                reason = "no GPU found (nvidia-smi is missing or lists none)"
            elif not probe_gpus(backend):
                hint = " (pip install 'tensorflow[and-cuda]')" if backend == "tensorflow" else ""
                reason = f"nvidia-smi lists {gpus[0]}, but Keras' {backend} backend sees no GPU{hint}"
            else:
                reason = None
            found[(device, backend)] = reason
    return found


def probe_gpus(backend: str) -> list[str]:
    """The GPUs `backend` sees when a fresh process is pinned to one GPU (empty if none or it fails)."""
    try:
        return list(call_fresh(devices.seen_gpus, options=RunOptions(device="gpu", backend=backend), timeout_s=300) or [])
    except CnnbenchError:
        return []


# --- the parent: planning, launching children, rows ------------------------------------------


@dataclass(frozen=True)
class BenchEvent:
    """Progress for a caller: `info` (where runs execute), `begin` (total runs known), then per run `start`, `done` or `skipped`."""

    kind: str
    index: int = 0
    total: int = 0
    combination: Combination | None = None
    repeat: int = 0
    status: str | None = None
    message: str = ""
    run_dir: Path | None = None  # the run folder, for `done` and `skipped` (tracking sinks write it)


@dataclass
class BenchResult:
    path: Path
    rows: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    @property
    def csv_path(self) -> Path:
        return self.path / "bench.csv"

    @property
    def problems(self) -> list[dict[str, Any]]:
        """The rows whose runs did not measure: out of memory or failed (their `error` says why)."""
        return [row for row in self.rows if row["status"] in ("oom", "failed")]

    @property
    def failed(self) -> bool:
        """True when a run failed (an `oom` row is a measurement of its own: the combination does not fit)."""
        return any(row["status"] == "failed" for row in self.rows)


def run_bench(
    spec: Spec,
    options: BenchOptions = BenchOptions(),
    out: str | Path = "results",
    on_event: Callable[[BenchEvent], None] | None = None,
    ray: RayConfig | None = None,
) -> BenchResult:
    """Measure every combination, one training process at a time, and write bench.json and bench.csv.

    Absent devices and backends become `unavailable` rows with a warning; DeviceError when nothing
    asked for is present. Finished runs are kept unless `options.force`. A run that crashes or runs
    out of memory is recorded and the bench goes on. Ctrl-C stops the running child, writes what is
    finished and re-raises KeyboardInterrupt. `ray` (a RayConfig, see `cnnbench.executor.ray_config`) runs
    them on a Ray cluster, one at a time per node; None: on this machine.
    """
    options = options.resolved()
    if not any("filters" in layer for layer in spec.layers):
        raise SpecError(spec.source, "layers", "no layer has a `filters` argument, so `BenchOptions.filters` would change nothing")
    emit = on_event or (lambda event: None)
    path = bench_dir(out, spec, options)
    reasons = availability(options)
    if all(reasons.values()):
        raise DeviceError("nothing to measure: " + "; ".join(sorted({f"{d}/{b}: {r}" for (d, b), r in reasons.items()})))
    notes: list[str] = []
    for reason in dict.fromkeys(r for r in reasons.values() if r):
        pairs = ", ".join(f"{d}/{b}" for (d, b), r in reasons.items() if r == reason)
        _warn(notes, f"{pairs} rows are unavailable: {reason}")
    if options.measure_epochs == 1:
        _warn(notes, "`measure_epochs` 1 has no steady-state epoch: the estimate repeats the first (compiling) epoch")

    previous, problem = results.inspect_record(path / "bench.json")
    previous = previous or {}
    models = previous.get("models") if not options.force else None
    if not models or any(str(f) not in models for f in options.filters):  # spec errors surface here, before any folder
        models = model_sizes(spec, options.filters, next(b for (_, b), r in reasons.items() if r is None))
    executor = make_executor(1, RunOptions(save_model=False), ray=ray, policy="fresh", timeout_s=options.timeout_s,
                             fatal=(SpecError, DataError))  # the spec or data is at fault: every row would fail alike  # fmt: skip
    executor.on_info = lambda message: emit(BenchEvent("info", message=message))
    with folder_lock(path, "bench"), executor:
        problem = results.inspect_record(path / "bench.json")[1]  # read again under the lock: another bench may have ended meanwhile
        if problem:  # set aside only once this process holds the folder
            _warn(notes, f"{path / 'bench.json'}: {problem}; writing a new one (the old one is kept as bench.json.corrupt)")
            results.set_aside(path / "bench.json")
        record = {
            "spec": spec.to_dict(),
            "options": {**asdict(options), "ray": asdict(ray) if ray else None},  # where it ran, as bench.json always said
            "machine": machine(),
            "versions": versions(),
            "started_at": now_iso(),
            "status": "running",
            "warnings": notes,
            "models": models,
        }
        write_json(path / "bench.json", record)

        grid = combinations(options)
        why_not = {c: combination_reason(c, reasons) for c in grid}
        todo = [(r, c) for r in range(1, options.repeats + 1) for c in grid if not why_not[c]]
        if not todo:
            raise DeviceError("nothing to measure: " + "; ".join(sorted({why or "" for why in why_not.values()})))
        for reason in dict.fromkeys(why_not.values()):
            if reason and reason not in reasons.values():
                _warn(notes, f"{', '.join(sorted({f'{c.backend}/{c.engine}' for c in grid if why_not[c] == reason}))} "
                             f"rows are unavailable: {reason}")  # fmt: skip
        emit(BenchEvent("begin", total=len(todo), message=str(path)))
        status = "aborted"
        table = Throttled(lambda: _write_rows(path, spec, options, reasons, record["models"]))  # at most once a second, and at the end
        runs: dict[int, tuple[int, Combination, Path]] = {}  # task key (the run's index) -> (repeat, combination, folder)

        def on_event(event: Event) -> None:
            repeat, combo, run_dir = runs[event.key]
            if event.kind == "launch":
                _write_job(spec, combo, run_dir, options)
                emit(BenchEvent("start", event.key, len(todo), combo, repeat))
            elif event.kind == "interrupted":
                _record_death(run_dir, combo, "interrupted", event.payload)
            elif event.kind in ("end", "died"):
                outcome = _outcome(combo, run_dir, options, event.payload)
                if outcome is None:
                    return  # the executor raises the child's error next
                for note in ((read_record(run_dir / "run.json") or {}).get("data") or {}).get("warnings") or []:
                    if note not in notes:  # e.g. full MNIST missing: every run falls back alike, say it once
                        _warn(notes, note)
                emit(BenchEvent("done", event.key, len(todo), combo, repeat, outcome, run_dir=run_dir))
                table.changed()
            else:
                table.tick()

        try:
            # Repeats are the outer loop: slow drift (heat, other load) then spreads over every row.
            tasks = []
            for index, (repeat, combo) in enumerate(todo, start=1):
                run_dir = path / BENCH_RUNS / combo.run_name(repeat)
                run_state, run_problem = results.record_status(run_dir)
                if not options.force and run_state in FINISHED:
                    emit(BenchEvent("skipped", index, len(todo), combo, repeat, run_state, run_dir=run_dir))
                    continue
                if run_problem:  # measured again, but said so; the record is set aside, not deleted
                    kept = "the record is kept as run.json.corrupt"
                    _warn(notes, f"{run_dir / 'run.json'}: {run_problem}; measuring this run again ({kept})")
                    results.set_aside(run_dir / "run.json")
                runs[index] = (repeat, combo, run_dir)
                tasks.append(_task(index, spec, combo, run_dir, options))
            executor.run(tasks, on_event)
            raise_if_stopped()  # a stop signal whose first raise was swallowed: the bench is not complete
            status = "complete"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            rows = table.flush()
            write_json(path / "bench.json", {**record, "status": status, "ended_at": now_iso(), "warnings": notes,
                                             "executed": executor.describe()})  # fmt: skip
        return BenchResult(path, rows, notes)


def _warn(notes: list[str], message: str) -> None:
    notes.append(message)
    warnings.warn(message, stacklevel=3)


def model_sizes(spec: Spec, filters: Iterable[int], backend: str) -> dict[str, dict[str, int]]:
    """Parameters and forward FLOPs per sample for each filter count, worked out in a CPU child.

    A child, because building a model here would import Keras into this process (and on a GPU
    machine TensorFlow would take the GPU's memory away from the runs). Spec errors surface here,
    before any run starts.
    """
    try:
        return call_fresh(sizes_by_filters, spec, list(filters), options=RunOptions(device="cpu", backend=backend), timeout_s=600)
    except FreshProcessError as exc:
        raise CnnbenchError(f"could not build the models in a child process ({exc})") from None


def _task(index: int, spec: Spec, combo: Combination, run_dir: Path, options: BenchOptions) -> Task:
    """The executor's task measuring one run of `combo`: its own device, backend, engine, threads and memory cap."""
    engine = None if combo.engine == "auto" else combo.engine  # auto: the spec's engine
    run_options = RunOptions(device=combo.device, backend=combo.backend, threads=options.threads, measure_epochs=options.measure_epochs,
                             save_model=False, engine=engine)  # fmt: skip
    return Task(index, ((spec.with_filters(combo.filters), run_dir),), options=run_options,
                memory_limit_mb=child_memory_limit_mb(combo, options))  # fmt: skip


def _write_job(spec: Spec, combo: Combination, run_dir: Path, options: BenchOptions) -> None:
    """job.json: what the run's fresh process was asked to do, beside what it did (child.json, run.json)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    job = {
        "task": "run", "device": combo.device, "backend": combo.backend, "threads": options.threads,
        "spec": spec.with_filters(combo.filters).to_dict(), "source": spec.source, "run_dir": str(run_dir),
        "measure_epochs": options.measure_epochs, "engine": combo.engine,
    }  # fmt: skip
    write_json(run_dir / "job.json", job)


def _outcome(combo: Combination, run_dir: Path, options: BenchOptions, ended: dict | ChildExit) -> str | None:
    """The final status of a run whose process ended (its record, or how it died), recording it when the child could not.

    None: the child raised an error every row would hit; the executor raises it next.
    """
    limit = child_memory_limit_mb(combo, options)
    if isinstance(ended, ChildExit) and ended.error is not None:  # raised before training started
        _record_death(run_dir, combo, "failed", str(ended.error))
        return None if isinstance(ended.error, (SpecError, DataError)) else "failed"
    if not isinstance(ended, ChildExit):
        status = ended["status"]
        if status == "oom" and limit:  # train_run recorded it; say which cap made the allocation fail
            _record_death(run_dir, combo, "oom", f"{ended.get('error') or 'out of memory'} (under a {limit} MB memory limit)")
        if status != "failed":
            return status
        # train_run caught the exception and judged it no OOM; under a cap, a failed allocation may
        # surface as another error (a thread that cannot start), which the markers recognise.
        error = ended.get("error") or ""
        if limit and looks_like_oom(f"{error}\n{log_excerpt(run_dir / 'child.log')}"):
            _record_death(run_dir, combo, "oom", error)
            return "oom"
        return "failed"
    status, error = classify_exit(ended.code, log_excerpt(run_dir / "child.log"), limit, ended.timed_out, options.timeout_s)
    _record_death(run_dir, combo, status, error)
    return status


def child_memory_limit_mb(combo: Combination, options: BenchOptions) -> int | None:
    """The address-space cap of the process measuring `combo` (the same for all; tests narrow it)."""
    return options.memory_limit_mb


def classify_exit(
    code: int, log: str, memory_limit_mb: int | None, timed_out: bool = False, timeout_s: float | None = None
) -> tuple[str, str]:
    """Status and error text of a child that ended without recording a final status.

    Out of memory: the log names a failed allocation, the kernel's OOM killer sent SIGKILL, or the
    child died of a signal under an address-space cap (TensorFlow aborts when it cannot start a thread).

    >>> classify_exit(1, "MemoryError", None)
    ('oom', 'exited with code 1: MemoryError')
    """
    if timed_out:
        return "failed", f"timed out after {timeout_s:g} s and was killed"
    how = f"killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
    capped = f" under a {memory_limit_mb} MB memory limit" if memory_limit_mb else ""
    detail = f"{how}{capped}" + (f": {log}" if log else "")
    if looks_like_oom(log) or code == -signal.SIGKILL or (code < 0 and memory_limit_mb):
        return "oom", detail
    return "failed", detail


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _record_death(run_dir: Path, combo: Combination, status: str, error: str) -> None:
    """Give run.json the final status of a run whose child could not record it.

    Any run.json there is this child's (stale ones are removed before a launch): what it says
    about the device and data is kept.
    """
    unfinished = [None, *(s for s in run_record.STATUSES if s not in FINISHED)]  # a finished run stays as it is when interrupted
    base = {"device": combo.device, "backend": combo.backend, "filters": combo.filters, "engine": combo.engine}
    run_record.mark_ended(run_dir, status, error, unfinished if status == "interrupted" else None, base)


# --- rows ------------------------------------------------------------------------------------


def _history_times(run_dir: Path) -> tuple[list[float], list[float]]:
    """Epoch times and training samples/s of one run, in epoch order."""
    try:
        rows = list(csv.DictReader(io.StringIO(read_text(run_dir / "history.csv"), newline="")))
        times, rates = [float(r["epoch_time_s"]) for r in rows], [float(r["samples_per_s"]) for r in rows]
    except (OSError, ValueError, KeyError, TypeError, UnsafeFileError):  # missing, a folder, or not a history cnnbench wrote
        return [], []
    finite = [(t, r) for t, r in zip(times, rates, strict=True) if math.isfinite(t) and math.isfinite(r)]
    return [t for t, _ in finite], [r for _, r in finite]


def summarize_repeats(epochs: int, repeats: Sequence[tuple[list[float], list[float]]]) -> dict[str, Any]:
    """Timing figures of one row from the (epoch times, samples/s) of each repeat that trained.

    The first epoch (tracing, compilation) is kept apart; median/min/max are over the steady epochs
    of all repeats. When fewer than `epochs` epochs were trained, total_s is the estimate
    first + (epochs − 1) × steady median and `estimated` is True; measured_total_s is always measured.

    >>> summarize_repeats(10, [([1.0, 0.5, 0.5], [100.0, 200.0, 200.0])])["total_s"]
    5.5
    """
    repeats = [(times, rates) for times, rates in repeats if times]
    if not repeats:
        return {}
    steady = [t for times, _ in repeats for t in times[1:]]
    steady_rates = [r for _, rates in repeats for r in rates[1:]] or [r for _, rates in repeats for r in rates]
    first = statistics.median(times[0] for times, _ in repeats)
    median = statistics.median(steady) if steady else None
    measured_epochs = min(len(times) for times, _ in repeats)
    measured_total = statistics.median(sum(times) for times, _ in repeats)
    estimated = measured_epochs < epochs
    return {
        "measured_epochs": measured_epochs,
        "first_epoch_s": first,
        "epoch_s_median": median,
        "epoch_s_min": min(steady) if steady else None,
        "epoch_s_max": max(steady) if steady else None,
        "total_s": extrapolate_total(first, median, epochs) if estimated else measured_total,
        "measured_total_s": measured_total,
        "samples_per_s": statistics.median(steady_rates),
        "estimated": estimated,
        "repeats": len(repeats),
    }


def bench_row(
    combo: Combination,
    run_dirs: Sequence[Path],
    spec: Spec,
    model: dict[str, int] | None,
    unavailable: str | None = None,
    threads: int | None = None,
) -> dict[str, Any] | None:
    """The bench.csv row of one combination from its run folders (None while none has a record)."""
    model = model or {}
    row: dict[str, Any] = {
        "device": combo.device, "backend": combo.backend, "filters": combo.filters,
        "params": model.get("params"), "flops_per_sample": model.get("flops_per_sample"),
        "batch_size": spec.training.batch_size, "epochs": spec.training.epochs, "estimated": False, "threads": threads,
        "engine": combo.engine,
    }  # fmt: skip
    if unavailable:
        gpus = devices.nvidia_gpus() if combo.device == "gpu" else [devices.cpu_model()]
        return {**row, "device_name": gpus[0] if gpus else "", "status": "unavailable", "error": unavailable, "repeats": 0}
    records = [(d, read_record(d / "run.json")) for d in run_dirs]
    records = [(d, r) for d, r in records if r and r.get("status") not in (None, "running", "interrupted")]  # not results yet
    if not records:
        return None
    timed = [_history_times(d) for d, r in records if r["status"] in ("ok", "diverged")]
    row.update(summarize_repeats(spec.training.epochs, timed))
    statuses = [r["status"] for _, r in records]
    row["status"] = "oom" if "oom" in statuses else "failed" if any(s not in ("ok", "diverged") for s in statuses) else "ok"
    errors = [
        f"{d.name}: {'diverged (timing kept): ' if r['status'] == 'diverged' else ''}{r['error']}" for d, r in records if r.get("error")
    ]
    row["error"] = " | ".join(errors) or None
    if row.get("samples_per_s") and row["flops_per_sample"]:
        row["gflops_per_s"] = TRAINING_FLOPS_FACTOR * row["flops_per_sample"] * row["samples_per_s"] / 1e9
    first = next((r for _, r in records if r.get("device_name")), records[0][1])
    used = sorted({r["engine"] for _, r in records if r.get("engine")})
    if used:
        row["engine"] = "/".join(used)  # what auto resolved to
    data = first.get("data") or {}
    peaks = [r.get("peak_host_mem_mb") for _, r in records]
    gpu_peaks = [p for _, r in records if (p := r.get("peak_gpu_mem_mb")) is not None]
    setups = [s for _, r in records if (s := (r.get("timing") or {}).get("setup_s")) is not None]
    row.update(
        device_name=first.get("device_name") or "",
        peak_mem_mb=max((p for p in peaks if p is not None), default=None),
        peak_gpu_mem_mb=max(gpu_peaks, default=None),
        setup_s=statistics.median(setups) if setups else None,
        dataset=data.get("name"),
        train_samples=data.get("train_samples"),
        run_dirs=";".join(str(Path(BENCH_RUNS) / d.name) for d, _ in records),
    )  # fmt: skip
    return row


def _write_rows(path: Path, spec: Spec, options: BenchOptions, reasons: dict, models: dict) -> list[dict[str, Any]]:
    rows = []
    for combo in combinations(options):
        run_dirs = [path / BENCH_RUNS / combo.run_name(r) for r in range(1, options.repeats + 1)]
        row = bench_row(combo, run_dirs, spec, models.get(str(combo.filters)), combination_reason(combo, reasons), options.threads)
        if row is not None:
            rows.append(row)
    write_csv(path / "bench.csv", rows, COLUMNS)
    return rows
