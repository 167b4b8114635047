"""Study files: one YAML/JSON file naming a spec, its data and defaults, and the parts to run in order
(`train`, `sweep-lr`, `sweep`, `bench`), each through the pipeline its command uses (docs/study-files.md).

>>> study = load_study("course")                  # the built-in study, or a path to a study file
>>> [part.folder for part in study.parts]
['rates-sheet', 'rates-report', 'runtime']
>>> plan = plan_part(study.parts[0], "results/course")  # read-only: what is kept, what trains
>>> plan.train, plan.keep
(4, 0)
>>> run_part(plan, RunOptions())                          # doctest: +SKIP (run_sweep; then write_study_report)

Everything is checked when the file is loaded, before anything trains, with each part checked as its command
checks it (`spec.with_overrides`, `values.parse_values`, `grid.make_grid`, `BenchOptions.resolved`): a
SpecError names the file and the field path (`study.yaml: parts[2].sweep.set[0]: ...`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cnnbench.catalog import did_you_mean
from cnnbench.errors import CnnbenchError, SpecError, UsageError, brief
from cnnbench.spec import Data, Spec, Training

STUDY_KEYS = ("name", "spec", "data", "defaults", "parts", "tensorboard", "mlflow", "claims")
CLAIMS = ("course",)  # `claims: course`: the report answers the lab's questions next to the original report's claims
KINDS = ("train", "sweep-lr", "sweep", "bench")
SWEEP_LR_KEYS = ("values", "seeds")
SWEEP_KEYS = ("set", "zip", "seeds", "tune", "method", "n", "rank")
BENCH_KEYS = ("filters", "devices", "backends", "engines", "repeats", "measure_epochs", "timeout", "memory_limit_mb")
OVERRIDE_KEYS = tuple(sorted({f.name for f in dataclasses.fields(Training)} | {f.name for f in dataclasses.fields(Data)}))
PART_KEYS = ("name", *KINDS, "data", *OVERRIDE_KEYS)
STUDY_INDEX = "study.json"  # written into the study's folder: the report finds the study's parts and claims there


@dataclass(frozen=True)
class Part:
    """One part of a study: `kind`, the spec it runs (defaults and its own overrides applied), the folder below
    the study's out folder, and its command's options as checked values."""

    index: int
    kind: str
    folder: str
    spec: Spec
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    name: str
    source: str
    parts: tuple[Part, ...]
    sinks: dict[str, str] = field(default_factory=dict)  # tensorboard/mlflow as the options take them
    claims: str | None = None  # whose claims the report compares the study's numbers with (CLAIMS)


def builtin_studies() -> dict[str, Any]:
    """Built-in study names mapped to their files (cnnbench/studies/*.yaml)."""
    return {e.name.rpartition(".")[0]: e for e in resources.files("cnnbench.studies").iterdir() if e.name.endswith((".yaml", ".json"))}


def _read(ref: str | Path) -> tuple[Any, str, Path | None, str]:
    """The study document, its source name, the folder its relative paths start from, and its default name."""
    from cnnbench.spec_text import parse_text, read_spec_file

    source, builtins = str(ref), builtin_studies()
    if isinstance(ref, str) and ref in builtins:
        return parse_text(builtins[ref].read_text(encoding="utf-8"), source, ".yaml"), source, None, source
    path = Path(ref)
    if not path.is_file():
        raise SpecError(
            source, "", f"no such study file, and not a built-in study{did_you_mean(source, builtins)}; built-in: {', '.join(builtins)}"
        )
    suffix = ".json" if path.suffix.lower() == ".json" else ".yaml"
    return parse_text(read_spec_file(path, source), source, suffix), source, path.parent, path.stem or "study"


def _plain(exc: Exception) -> str:
    """A library message without the parameter it names first (`values`: ...): the field path says where."""
    return re.sub(r"^`[A-Za-z_.]+`:? ?", "", str(exc))


def _mapping(value: Any, source: str, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(source, where, f"must be a mapping with keys {', '.join(keys)}, got {brief(value)}")
    for key in value:
        if key not in keys:
            path = f"{where}.{str(key)[:40]}" if where else str(key)[:40]
            raise SpecError(source, path, f"unknown key{did_you_mean(key, keys)}; known: {', '.join(keys)}")
    return value


def _kind(value: Any, kinds: tuple[type, ...], what: str, source: str, where: str) -> Any:
    if value is None or isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise SpecError(source, where, f"must be {what}, got {brief(value)}")
    return value


def _comma(value: Any, source: str, where: str) -> str:
    """A list or a comma text, as the command's option takes it."""
    if isinstance(value, list) and value and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        return ",".join(map(str, value))
    _kind(value, (str, int, float), "a list or a comma-separated text", source, where)
    return str(value)


def _data_override(data: Any, source: str, where: str, base: Path | None) -> dict[str, Any]:
    """`data`: a dataset name, or a path to mnist.npz (relative to the study file)."""
    text = _kind(data, (str,), "a dataset name (mnist, mnist-5k, synthetic) or a path to mnist.npz", source, where)
    if text.endswith(".npz"):
        return {"dataset": "mnist", "path": str(base / text if base is not None else Path(text))}
    return {"dataset": text}


def _overrides(spec: Spec, values: dict[str, Any], source: str, where: str, base: Path | None) -> Spec:
    """`spec` with training/data fields replaced, checked as `Spec.with_overrides` checks the options; errors name `where.key`."""
    given = {k: v for k, v in values.items() if k in OVERRIDE_KEYS}
    if "data" in values:
        given.update(_data_override(values["data"], source, f"{where}.data" if where else "data", base))
    try:
        return spec.with_overrides(source, **given)
    except SpecError as exc:
        key = exc.path.replace("`", "")
        raise SpecError(source, f"{where}.{key}" if where else key, exc.message) from None


def _load_spec(ref: Any, source: str, base: Path | None) -> Spec:
    from cnnbench.spec import builtin_specs, load_spec

    ref = _kind(ref, (str,), "a built-in spec name or a spec file relative to the study file", source, "spec")
    if ref in builtin_specs() or base is None or Path(ref).is_absolute():
        return load_spec(ref)
    return load_spec(str(base / ref))


def load_study(ref: str | Path, data: str | None = None) -> Study:
    """Read and check a study file (or a built-in study by name): every part as its command would check it,
    nothing written. `data` replaces the study's data in every part (`study course --data mnist-5k`)."""
    doc, source, base, default_name = _read(ref)
    _mapping(doc, source, "", STUDY_KEYS)
    name = _kind(doc.get("name", default_name), (str,), "a name (the results sub-folder)", source, "name")
    if not name.strip() or "/" in name or name.startswith("."):
        raise SpecError(source, "name", f"must be a plain folder name, got {brief(name)}")
    if "spec" not in doc:
        raise SpecError(source, "spec", "missing: name a built-in spec or a spec file")
    spec = _load_spec(doc["spec"], source, base)
    defaults = _mapping(doc.get("defaults") or {}, source, "defaults", (*OVERRIDE_KEYS, "data"))
    spec = _overrides(spec, defaults, source, "defaults", base)
    if data is not None or "data" in doc:
        spec = _overrides(spec, {"data": data if data is not None else doc["data"]}, source, "data" if data is None else "", base)
    parts = doc.get("parts")
    if not isinstance(parts, list) or not parts:
        raise SpecError(source, "parts", f"must be a non-empty list of parts ({', '.join(KINDS)}), got {brief(parts)}")
    loaded, folders = [], set()
    for index, item in enumerate(parts):
        part = _part(index, item, spec, source, base)
        if part.folder in folders:
            raise SpecError(
                source, f"parts[{index}].name", f"{part.folder!r} is already the folder of another part; give each its own name"
            )
        folders.add(part.folder)
        loaded.append(part)
    claims = doc.get("claims")
    if claims is not None and claims not in CLAIMS:
        raise SpecError(source, "claims", f"must be one of {', '.join(CLAIMS)}, got {brief(claims)}{did_you_mean(str(claims), CLAIMS)}")
    from cnnbench.sinks import file_targets

    return Study(name, source, tuple(loaded), file_targets(doc, source), claims)


def _part(index: int, item: Any, spec: Spec, source: str, base: Path | None) -> Part:
    where = f"parts[{index}]"
    item = _mapping(item, source, where, PART_KEYS)
    kinds = [k for k in KINDS if k in item]
    if len(kinds) != 1:
        raise SpecError(source, where, f"must have exactly one of {', '.join(KINDS)}, got {', '.join(kinds) or 'none'}")
    kind = kinds[0]
    folder = item.get("name", f"{index + 1}-{kind}")
    folder = _kind(folder, (str,), "a plain folder name", source, f"{where}.name")
    if not folder.strip() or "/" in folder or folder.startswith("."):
        raise SpecError(source, f"{where}.name", f"must be a plain folder name, got {brief(folder)}")
    spec = _overrides(spec, item, source, where, base)
    check = {"train": _train, "sweep-lr": _sweep_lr, "sweep": _sweep, "bench": _bench}[kind]
    options = check(item[kind], spec, source, f"{where}.{kind}")
    return Part(index, kind, folder, spec, options)


def _train(value: Any, spec: Spec, source: str, where: str) -> dict[str, Any]:
    if value not in (None, True, {}):
        raise SpecError(source, where, f"takes no options (put overrides such as epochs beside it), got {brief(value)}")
    return {}


def _sweep_lr(value: Any, spec: Spec, source: str, where: str) -> dict[str, Any]:
    from cnnbench.values import parse_values

    value = value if isinstance(value, dict) else {"values": value}
    _mapping(value, source, where, SWEEP_LR_KEYS)
    text = _comma(value.get("values"), source, f"{where}.values")
    try:
        parse_values(text)
    except UsageError as exc:
        raise SpecError(source, f"{where}.values", _plain(exc)) from None
    if "seeds" in value and _seeds(value["seeds"], source, f"{where}.seeds") != (0,):  # several seeds: a study, as sweep-lr runs them
        options = _sweep({"set": [f"training.learning_rate={text}"], "seeds": value["seeds"]}, spec, source, where)
        return {**options, "values": text}
    return {"values": text}


def _seeds(value: Any, source: str, where: str) -> tuple[int, ...]:
    from cnnbench.grid import parse_seeds

    try:
        return parse_seeds(_comma(value, source, where))
    except UsageError as exc:
        raise SpecError(source, where, _plain(exc)) from None


def _sweep(value: Any, spec: Spec, source: str, where: str) -> dict[str, Any]:
    from cnnbench.grid import format_point_value, make_axis, make_grid

    value = _mapping(value, source, where, SWEEP_KEYS)
    sets = value.get("set")
    if isinstance(sets, dict):  # the sweep file's form: PATH: VALUES
        sets = [f"{k}={','.join(map(format_point_value, v)) if isinstance(v, list) else format_point_value(v)}" for k, v in sets.items()]
    if not isinstance(sets, list) or not sets:
        raise SpecError(source, f"{where}.set", f"must be a non-empty list of PATH=VALUES, got {brief(sets)}")
    doc = spec.to_dict()
    for i, text in enumerate(sets):
        _kind(text, (str,), "PATH=VALUES text", source, f"{where}.set[{i}]")
        try:
            make_axis(doc, text)
        except (UsageError, SpecError) as exc:
            raise SpecError(source, f"{where}.set[{i}]", _plain(exc)) from None
    zips = value.get("zip") or []
    if not isinstance(zips, list):
        raise SpecError(source, f"{where}.zip", f"must be a list of A,B axis pairs, got {brief(zips)}")
    zips = [_comma(z, source, f"{where}.zip[{i}]") for i, z in enumerate(zips)]
    seeds = value.get("seeds")
    if seeds is not None:
        _seeds(seeds, source, f"{where}.seeds")
        seeds = _comma(seeds, source, f"{where}.seeds")
    for key, kinds, what in (("tune", (str,), "an axis path"), ("method", (str,), "grid, random or sobol"), ("n", (int,), "an integer"),
                             ("rank", (str,), "mean or median")):  # fmt: skip
        if key in value:
            _kind(value[key], kinds, what, source, f"{where}.{key}")
    if value.get("rank", "mean") not in ("mean", "median"):
        raise SpecError(
            source, f"{where}.rank", f"must be mean or median, got {brief(value['rank'])}{did_you_mean(value['rank'], ('mean', 'median'))}"
        )
    options = {"sets": list(sets), "zips": zips, "seeds": seeds, "method": value.get("method", "grid"), "n": value.get("n"),
               "tune": value.get("tune"), "rank": value.get("rank", "mean")}  # fmt: skip
    try:
        grid = make_grid(spec, options["sets"], zips, seeds, options["method"], options["n"])
    except (UsageError, SpecError) as exc:
        raise SpecError(source, where, _plain(exc)) from None
    if options["tune"] is not None and options["tune"] not in [a.path for a in grid.axes]:
        paths = [a.path for a in grid.axes]
        raise SpecError(
            source,
            f"{where}.tune",
            f"{brief(options['tune'])} is not an axis{did_you_mean(options['tune'], paths)}; axes: {', '.join(paths)}",
        )
    return options


def _bench(value: Any, spec: Spec, source: str, where: str) -> dict[str, Any]:
    from cnnbench.bench import BenchOptions, parse_list

    value = _mapping(value if value not in (None, True) else {}, source, where, BENCH_KEYS)
    lists = {}
    for key, convert in (("filters", int), ("devices", str), ("backends", str), ("engines", str)):
        if key in value:
            try:
                lists[key] = parse_list(_comma(value[key], source, f"{where}.{key}"), f"`{key}`", convert)
            except UsageError as exc:
                raise SpecError(source, f"{where}.{key}", str(exc).partition(": ")[2] or str(exc)) from None
    counts = {}
    for key, kinds in (("repeats", (int,)), ("measure_epochs", (int,)), ("memory_limit_mb", (int,)), ("timeout", (int, float))):
        if key in value:
            counts[key] = _kind(value[key], kinds, "a positive number", source, f"{where}.{key}")
    options = BenchOptions(devices=lists.get("devices"), backends=lists.get("backends"), filters=lists.get("filters", (8, 16, 32, 64)),
                           engines=lists.get("engines", ("auto",)), repeats=counts.get("repeats", 1),
                           measure_epochs=counts.get("measure_epochs"), memory_limit_mb=counts.get("memory_limit_mb"),
                           timeout_s=counts.get("timeout"))  # fmt: skip
    try:
        options.resolved()
    except UsageError as exc:
        raise SpecError(source, where, str(exc).replace("BenchOptions.", "")) from None
    if not any("filters" in layer for layer in spec.layers):
        raise SpecError(source, where, "no layer of the spec has a `filters` argument, so a bench would change nothing")
    return {"bench": options}


# --- plans and runs: the commands' own pipelines ----------------------------------------------------------


@dataclass(frozen=True)
class PartPlan:
    """What a part will do: `train` and `keep` count runs (a bench: combinations); `plan` is its pipeline's own plan."""

    part: Part
    folder: Path
    train: int
    keep: int
    plan: Any = None


def _train_plan(part: Part, folder: Path, run_options) -> PartPlan:
    """A `train` part: its finished run is kept; an interrupted one continues from its checkpoint (run.plan_resume)."""
    from cnnbench.results import FINISHED, read_record
    from cnnbench.run import plan_resume, plan_run

    runs = sorted(p.parent for p in folder.glob("*/run.json")) if folder.is_dir() else []
    records = [(run, read_record(run / "run.json") or {}) for run in runs]
    if any(record.get("status") in FINISHED for _, record in records):
        return PartPlan(part, folder, 0, 1)
    for run, _ in records:
        try:
            return PartPlan(part, folder, 1, 0, plan_resume(run, run_options))
        except CnnbenchError:
            continue  # no checkpoint to continue from: a new run
    return PartPlan(part, folder, 1, 0, plan_run(part.spec, folder, run_options))


def plan_part(part: Part, out: str | Path, run_options=None, force: bool = False) -> PartPlan:
    """The part's plan, read from disk as its command plans it (nothing written)."""
    folder = Path(out) / part.folder
    if part.kind == "train":
        return _train_plan(part, folder, run_options)
    if part.kind == "sweep-lr" and "sets" not in part.options:
        from cnnbench.sweep import plan_sweep

        plan = plan_sweep(part.spec, part.options["values"], folder, force=force)
        return PartPlan(part, folder, len(plan.to_train), len(plan.runs) - len(plan.to_train), plan)
    if part.kind in ("sweep", "sweep-lr"):
        from cnnbench.grid import make_grid
        from cnnbench.study import plan_study

        o = part.options
        grid = make_grid(part.spec, o["sets"], o["zips"], o["seeds"], o["method"], o["n"])
        plan = plan_study(grid, folder, force=force, tune=o["tune"], rank=o["rank"])
        return PartPlan(part, folder, len(plan.to_train), len(plan.runs) - len(plan.to_train), plan)
    from cnnbench.bench import combinations

    options = dataclasses.replace(part.options["bench"], force=force).resolved()
    total = len(combinations(options)) * options.repeats
    return PartPlan(part, folder, total, 0, options)


def run_part(plan: PartPlan, run_options, parallel: int = 1, on_event: Callable[[Any], None] | None = None, sinks=None,
             ray=None) -> Any:  # fmt: skip
    """Run a planned part through its command's pipeline: `run_train`, `run_sweep`, `run_study` or `run_bench`;
    returns that pipeline's result (None for a kept `train` part). Locks, resume and interrupts are theirs.

    `sinks` (cnnbench.sinks.Sinks) hears a `train` part's run as `cnnbench train` tells them (started, each epoch,
    ended; a kept run when it is kept); sweeps and benches reach them through `on_event` (`Sinks.watching`).
    `ray` (a RayConfig, `cnnbench.executor.ray_config`) runs a sweep's or bench's runs on Ray; a `train` part trains here."""
    part, folder = plan.part, plan.folder
    folder.mkdir(parents=True, exist_ok=True)
    if part.kind == "train":
        return _run_train_part(plan, on_event, sinks)
    sweep_options = _sweep_options(run_options, parallel)
    if part.kind == "bench":
        from cnnbench.bench import run_bench

        options = dataclasses.replace(plan.plan, threads=run_options.threads if run_options else None)
        return run_bench(part.spec, options, folder, on_event=on_event, ray=ray)
    from cnnbench.sweep import SweepPlan, run_sweep

    if isinstance(plan.plan, SweepPlan):
        return run_sweep(plan.plan, sweep_options, on_event=on_event, ray=ray)
    from cnnbench.study import run_study

    return run_study(plan.plan, sweep_options, on_event=on_event, ray=ray)


def _run_train_part(plan: PartPlan, on_epoch: Callable[[Any], None] | None, sinks) -> Any:
    from cnnbench.results import FINISHED, read_record
    from cnnbench.run import run_train

    if plan.plan is None:  # kept: its finished run still reaches the sinks, as a sweep's kept runs do
        if sinks:
            for run_json in sorted(plan.folder.glob("*/run.json")):
                if (read_record(run_json) or {}).get("status") in FINISHED:
                    sinks.run_ended(run_json.parent)
        return None
    held: dict[str, Path] = {}

    def started(record: dict[str, Any]) -> None:
        if sinks:
            sinks.run_started(held["run_dir"], record)

    def epoch(row: dict[str, Any]) -> None:
        if on_epoch is not None:
            on_epoch(row)
        if sinks:
            sinks.epoch(held["run_dir"], row)

    result = run_train(plan.plan, on_epoch=epoch, on_start=started, on_folder=lambda folder: held.update(run_dir=folder))
    if sinks:
        sinks.run_ended(result.run_dir)
    return result


def _sweep_options(run_options, parallel: int):
    from cnnbench.sweep import SweepOptions

    if run_options is None:
        return SweepOptions(parallel=parallel)
    return SweepOptions(device=run_options.device, backend=run_options.backend, parallel=parallel, threads=run_options.threads,
                        engine=run_options.engine)  # fmt: skip


def record_study(out: str | Path, study: Study) -> Path:
    """OUT/study.json: which study file made the folder, its parts and the claims its report compares with."""
    from cnnbench import __version__
    from cnnbench.results import write_json

    path = Path(out) / STUDY_INDEX
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [{"folder": part.folder, "kind": part.kind} for part in study.parts]
    write_json(path, {"kind": "study-file", "name": study.name, "source": study.source, "claims": study.claims, "parts": parts,
                      "cnnbench": __version__})  # fmt: skip
    return path


def write_study_report(out: str | Path, command: str = ""):
    """The report page over the study's folder, as `cnnbench report OUT` writes it (OUT/report.html)."""
    from cnnbench.report import write_report

    return write_report([Path(out)], Path(out) / "report.html", command=command)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a study file (`cnnbench schema --study`)."""
    overrides = {key: {} for key in OVERRIDE_KEYS}
    comma = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": ["string", "number"]}}]}
    part_kinds = {
        "train": {"anyOf": [{"type": "null"}, {"type": "boolean"}, {"type": "object", "maxProperties": 0}]},
        "sweep-lr": {"anyOf": [comma, {"type": "object", "additionalProperties": False, "properties": {"values": comma, "seeds": comma}}]},
        "sweep": {"type": "object", "additionalProperties": False, "required": ["set"], "properties": {
            "set": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "object"}]}, "zip": {"type": "array"},
            "seeds": comma, "tune": {"type": "string"}, "method": {"enum": ["grid", "random", "sobol"]},
            "n": {"type": "integer", "minimum": 1}, "rank": {"enum": ["mean", "median"]}}},
        "bench": {"anyOf": [{"type": "null"}, {"type": "object", "additionalProperties": False, "properties": {
            "filters": comma, "devices": comma, "backends": comma, "engines": comma, "repeats": {"type": "integer", "minimum": 1},
            "measure_epochs": {"type": "integer", "minimum": 1}, "memory_limit_mb": {"type": "integer", "minimum": 1},
            "timeout": {"type": "number", "minimum": 1}}}]},
    }  # fmt: skip
    part = {"type": "object", "additionalProperties": False, "minProperties": 1,
            "properties": {"name": {"type": "string"}, **part_kinds, **overrides, "data": {"type": "string"}},
            "oneOf": [{"required": [kind]} for kind in KINDS]}  # fmt: skip
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "cnnbench study file",
        "type": "object",
        "additionalProperties": False,
        "required": ["spec", "parts"],
        "properties": {
            "name": {"type": "string"}, "spec": {"type": "string"}, "data": {"type": "string"},
            "defaults": {"type": "object", "additionalProperties": False, "properties": {**overrides, "data": {"type": "string"}}},
            "parts": {"type": "array", "minItems": 1, "items": part},
            "tensorboard": {"type": "string"}, "mlflow": {"type": ["string", "boolean"]}, "claims": {"enum": list(CLAIMS)},
        },
    }  # fmt: skip
