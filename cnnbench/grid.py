"""The axes of a study: `--set PATH=VALUES` paths into the spec, their values, and how axes combine into points.

Pure Python (no Keras): every path is resolved and every point validated as a spec file before anything trains.

>>> grid = make_grid(load_spec("convolutional_nn"), ["layers.*.filters=8,16", "training.learning_rate=0.01,0.1"], seeds="2")
>>> len(grid.points), len(grid.seeds)
(4, 2)
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from cnnbench.catalog import EARLY_STOPPING, LAYERS, LR_SCHEDULE, MAX_SEED, did_you_mean, is_int
from cnnbench.errors import SpecError, UsageError, brief
from cnnbench.spec import KNOBS, Spec, Training, parse_spec
from cnnbench.values import MAX_VALUES, clean, format_value, parse_values

METHODS = ("grid", "random", "sobol")
MAX_POINTS = 10_000  # a typo in a grid should fail at once, not plan a million runs
SAMPLE_DIGITS = 4  # sampled values are rounded to this many significant digits: readable labels, the same on every machine

Concrete = tuple[str | int, ...]  # one concrete path: ("layers", 0, "filters")


@dataclass(frozen=True)
class Axis:
    """One `--set PATH=VALUES`: the path as written, the concrete paths it expanded to, and its values.

    values: the grid values, in the order given; empty for a range axis (`lo..hi`) that a sampler fills.
    """

    path: str
    targets: tuple[Concrete, ...]
    values: tuple[Any, ...] = ()
    range: tuple[float, float] | None = None
    integer: bool = False  # the field holds integers: sampled values are rounded

    @property
    def expanded(self) -> list[str]:
        return [dotted(target) for target in self.targets]

    @property
    def numeric(self) -> bool:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)


@dataclass(frozen=True)
class Grid:
    """The points of a study: each a tuple of one value per axis (in axis order), and the seeds every point runs with."""

    spec: Spec
    axes: tuple[Axis, ...]
    points: tuple[tuple[Any, ...], ...]
    seeds: tuple[int, ...]  # offsets k: a run's seed is the spec's seed + k
    zips: tuple[tuple[str, ...], ...] = ()
    method: str = "grid"
    n: int | None = None
    sample_seed: int | None = None  # what seeded random/sobol sampling

    def axis(self, path: str) -> Axis:
        return next(axis for axis in self.axes if axis.path == path)

    def point_spec(self, point: Sequence[Any], seed_offset: int = 0) -> Spec:
        """The spec of one point and seed, validated as a spec file would be."""
        return build_spec(self.spec, self.axes, point, seed_offset)


# --- paths ---------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\.?(?:([A-Za-z_][A-Za-z0-9_-]*)|(\d+)|(\*)|\[(\d+|\*|type=[A-Za-z0-9_]+)\])")


def dotted(target: Concrete) -> str:
    """("layers", 0, "filters") -> layers.0.filters."""
    return ".".join(str(part) for part in target)


def parse_path(text: str) -> list[tuple[str, Any]]:
    """The segments of a path: ("key", name), ("index", i), ("all", None) or ("type", name)."""
    segments, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or (pos == 0 and text.startswith(".")) or (pos and match.group(0)[0] not in ".[" ):
            raise UsageError(f"`sets` {text}: cannot read the path at {text[pos:pos + 20]!r}; write e.g. layers.0.filters, "
                             "layers.*.filters or layers[type=Conv2D].filters")  # fmt: skip
        key, index, star, bracket = match.groups()
        if key is not None:
            segments.append(("key", key))
        elif index is not None:
            segments.append(("index", int(index)))
        elif star is not None or bracket == "*":
            segments.append(("all", None))
        elif bracket.startswith("type="):
            segments.append(("type", bracket[5:]))
        else:
            segments.append(("index", int(bracket)))
        pos = match.end()
    if not segments or segments[-1][0] != "key":
        raise UsageError(f"`sets` {text}: the path must end with a field name, e.g. layers.0.filters")
    return segments


def _layer_list(layers: list) -> str:
    return ", ".join(f"{i} {layer.get('type', '?')}" for i, layer in enumerate(layers))


def resolve_path(doc: dict[str, Any], text: str) -> tuple[Concrete, ...]:
    """The concrete paths `text` names in the spec document `doc` (its resolved dict); UsageError naming the axis.

    A wildcard or type filter keeps the elements that have the final key and skips the others; a path to
    one element may also name an argument its layer type knows but the spec leaves at its default.
    """
    segments = parse_path(text)
    where = f"`sets` {text}"
    found: list[tuple[Concrete, Any, bool]] = [((), doc, False)]  # (path so far, node, selected by a wildcard)
    for position, (kind, arg) in enumerate(segments):
        last = position == len(segments) - 1
        step: list[tuple[Concrete, Any, bool]] = []
        for path, node, wild in found:
            shown = dotted(path) or "the spec"
            if kind == "key":
                if node is None and path in _KNOB_MAPPINGS:  # a knob the spec leaves unset: its keys can still be set
                    node = {}
                if isinstance(node, list):
                    raise UsageError(f"{where}: {shown} is a list of {len(node)} items: select them with an index ({shown}.0), "
                                     f"* or [type=...] before {arg!r}")  # fmt: skip
                if not isinstance(node, dict):
                    raise UsageError(f"{where}: {shown} is {brief(node)}, not a mapping with keys")
                known = list(node)
                if isinstance(node.get("type"), str) and node["type"] in LAYERS:
                    known += [k for k in LAYERS[node["type"]].arguments if k not in node]
                unset = [k for k in _unset_keys(path) if k not in node]
                known += unset
                if arg in node or (last and arg in known) or arg in unset:
                    step.append(((*path, arg), node.get(arg), wild))
                elif not wild:
                    raise UsageError(f"{where}: unknown key {arg!r} in {shown}{did_you_mean(arg, known)}; known: {', '.join(known)}")
            else:
                if not isinstance(node, list):
                    raise UsageError(f"{where}: {shown} is {brief(node)}, not a list")
                if kind == "index":
                    if arg >= len(node):
                        listing = f"; layers: {_layer_list(node)}" if path == ("layers",) else ""
                        span = f"{len(node)} items (0 to {len(node) - 1})"
                        raise UsageError(f"{where}: index {arg} is out of range: {shown} has {span}{listing}")
                    step.append(((*path, arg), node[arg], wild))
                else:
                    for i, item in enumerate(node):
                        if kind == "all" or (isinstance(item, dict) and item.get("type") == arg):
                            step.append(((*path, i), item, True))
        if not step:
            if kind == "key":
                keys = sorted({k for _, node, _ in found if isinstance(node, dict) for k in node})
                raise UsageError(f"{where}: matches nothing: no selected element has the key {arg!r}{did_you_mean(arg, keys)}")
            listing = f"; layers: {_layer_list(found[0][1])}" if found and found[0][0] == ("layers",) else ""
            raise UsageError(f"{where}: matches nothing{listing}")
        found = step
    return tuple(path for path, _, _ in found)


def get_at(doc: Any, target: Concrete) -> Any:
    """The value at `target`; None where the spec leaves a key (or the mapping holding it) unset."""
    for part in target:
        if doc is None:
            return None
        doc = doc.get(part) if isinstance(doc, dict) else doc[part]
    return doc


def set_at(doc: Any, target: Concrete, value: Any) -> None:
    """Set the value at `target`, making the mapping of an unset knob (`training.lr_schedule`) on the way."""
    for part in target[:-1]:
        if isinstance(doc, dict) and doc.get(part) is None:
            doc[part] = {}
        doc = doc[part]
    doc[target[-1]] = value


# Keys a spec may leave out of its resolved document (the training knobs, the keys of the knobs that are mappings),
# which an axis can still set: `training.momentum`, `training.lr_schedule.type`, `training.early_stopping.patience`.
_KNOB_MAPPINGS = {("training", "lr_schedule"): LR_SCHEDULE, ("training", "early_stopping"): EARLY_STOPPING}


def _unset_keys(path: Concrete) -> dict[str, dict[str, Any]]:
    """The keys the mapping at `path` may hold though the spec leaves them out, each with its JSON Schema."""
    if path == ("training",):
        return {f.name: f.metadata["arg"].schema for f in fields(Training) if f.name in KNOBS}
    if path in _KNOB_MAPPINGS:
        return dict(_KNOB_MAPPINGS[path].schema.get("properties", {}))
    return {}


def _holds_integers(target: Concrete) -> bool:
    """True when the schema of an unset knob key asks for an integer (`early_stopping.patience`)."""
    schema = _unset_keys(target[:-1]).get(str(target[-1])) or {}
    kinds = [schema, *schema.get("anyOf", [])]
    return any(kind.get("type") == "integer" for kind in kinds)


# --- values --------------------------------------------------------------------------------------

_INT = re.compile(r"^[+-]?\d+$")


def _scalar(item: str) -> Any:
    lowered = item.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    if _INT.match(item):
        return int(item)
    try:
        number = float(item)
    except ValueError:
        return item  # a string for a categorical field (an optimizer, an activation)
    if not math.isfinite(number):
        raise UsageError(f"{item!r} is not a usable number")
    return clean(number)


def parse_axis_values(text: str, integer: bool = False) -> list[Any]:
    """VALUES of one axis: the `--values` grammar (numbers, a:b:s, a:b:*f), plus strings, true/false and null.

    Duplicates are dropped, the order given is kept; ranges of an integer field give integers.
    """
    if not text.strip():
        raise UsageError("no values given")
    values: list[Any] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise UsageError(f"empty item in {text!r} (two commas in a row, or a comma at an end?)")
        if ":" in item:
            try:
                numbers = parse_values(item)
            except UsageError as exc:
                raise UsageError(str(exc).removeprefix("`values`: ").replace("learning rates", "range bounds")) from None
            whole = all(n.is_integer() for n in numbers) and all(_INT.match(p.strip().lstrip("*")) for p in item.split(":"))
            values += [int(n) for n in numbers] if (integer or whole) and all(n.is_integer() for n in numbers) else numbers
        else:
            value = _scalar(item)
            values.append(int(value) if integer and isinstance(value, float) and value.is_integer() else value)
    unique = list({_key(v): v for v in values}.values())
    if len(unique) > MAX_VALUES:
        raise UsageError(f"{len(unique):,} values; at most {MAX_VALUES:,} are allowed")
    return unique


def _key(value: Any) -> tuple:
    return (type(value).__name__ if not isinstance(value, (int, float)) or isinstance(value, bool) else "number", value)


def _range(text: str) -> tuple[float, float] | None:
    if ".." not in text or ":" in text or "," in text:
        return None
    lo_text, _, hi_text = text.partition("..")
    try:
        lo, hi = float(lo_text), float(hi_text)
    except ValueError:
        raise UsageError(f"{text!r} is not a range lo..hi of two numbers") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise UsageError(f"{text!r} is not a range: lo must be a number below hi")
    return lo, hi


def split_axis(text: str) -> tuple[str, str | None]:
    """`PATH=VALUES` -> (PATH, VALUES) at the first `=` outside brackets (`layers[type=Conv2D].filters=8,16`)."""
    depth = 0
    for i, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "=" and depth == 0:
            return text[:i].strip(), text[i + 1 :]
    return text.strip(), None


def make_axis(spec_doc: dict[str, Any], text: str) -> Axis:
    """One `PATH=VALUES` resolved against the spec document; UsageError naming the axis."""
    path, values_text = split_axis(text)
    if values_text is None or not path:
        raise UsageError(f"`sets` {text}: write PATH=VALUES, e.g. `sets` training.learning_rate=0.01,0.1")
    targets = resolve_path(spec_doc, path)
    if any(target[-1] == "seed" and target[0] == "training" for target in targets):
        raise UsageError(f"`sets` {path}: the seed is not an axis; repeat every point over seeds with `seeds` N")
    current = [get_at(spec_doc, target) for target in targets]
    integer = any(is_int(v) for v in current) or any(v is None and _holds_integers(t) for v, t in zip(current, targets, strict=True))
    try:
        bounds = _range(values_text.strip())
        if bounds is not None:
            return Axis(path, targets, (), bounds, integer)
        values = parse_axis_values(values_text, integer)
    except UsageError as exc:
        raise UsageError(f"`sets` {path}={values_text}: {exc}") from None
    return Axis(path, targets, tuple(values), None, integer)


# --- building and checking the spec of a point -------------------------------------------------------


def build_spec(spec: Spec, axes: Sequence[Axis], point: Sequence[Any], seed_offset: int = 0) -> Spec:
    """The spec with every axis set to its value in `point` and the seed moved by `seed_offset`, validated by
    `cnnbench.spec.parse_spec` (SpecError naming the axis and the point when a field's own check refuses it)."""
    doc = spec.to_dict()
    for axis, value in zip(axes, point, strict=True):
        for target in axis.targets:
            set_at(doc, target, copy.deepcopy(value))
    seed = spec.training.seed + seed_offset
    doc["training"]["seed"] = seed
    try:
        return parse_spec(doc, spec.source, default_name=spec.name)
    except SpecError as exc:
        label = " ".join(f"{axis.path}={format_point_value(v)}" for axis, v in zip(axes, point, strict=True))
        raise SpecError(spec.source, f"`sets` {_axis_of(axes, exc.path)}", f"at the point {label}: {exc.path}: {exc.message}") from None


def _axis_of(axes: Sequence[Axis], field: str) -> str:
    """The axis whose concrete path is the field a spec check refused (`layers[2].filters`), else all of them."""
    normal = re.sub(r"\[(\d+)\]", r".\1", field)
    for axis in axes:
        if any(normal == dotted(t) or normal.startswith(dotted(t) + ".") for t in axis.targets):
            return axis.path
    return ", ".join(axis.path for axis in axes)


def format_point_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format_value(value)
    return "null" if value is None else str(value)


# --- combining axes --------------------------------------------------------------------------------


def parse_seeds(seeds: str | int | Sequence[int] | None) -> tuple[int, ...]:
    """`--seeds N` (offsets 0..N-1) or a list `0,3,7` of offsets; UsageError for anything else."""
    if seeds is None:
        return (0,)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        items = [seeds]
        single = True
    elif isinstance(seeds, str):
        items = [s.strip() for s in seeds.split(",")]
        single = len(items) == 1
        if not all(_INT.match(s) for s in items):
            raise UsageError(f"`seeds` {seeds}: write a count N (seeds 0..N-1) or a list of offsets such as 0,3,7")
        items = [int(s) for s in items]
    else:
        items, single = list(seeds), False
        if not all(is_int(s) for s in items):
            raise UsageError(f"`seeds` {brief(seeds)}: write a count N or a list of integer offsets")
    if single:
        if not 1 <= items[0] <= MAX_VALUES:
            raise UsageError(f"`seeds` {items[0]}: the number of seeds must be 1 to {MAX_VALUES:,}")
        return tuple(range(items[0]))
    if any(s < 0 or s > MAX_SEED for s in items) or len(set(items)) != len(items):
        raise UsageError(f"`seeds` {','.join(map(str, items))}: seed offsets must be distinct integers from 0")
    return tuple(items)


def _sample(axes: Sequence[Axis], method: str, n: int, seed: int) -> list[tuple[Any, ...]]:
    """`n` points in the ranges of `axes`: Sobol (scrambled, seeded) or uniform random, the same for the same seed."""
    import numpy as np

    if method == "sobol":
        if n & (n - 1):
            warnings.warn(f"`method` sobol: `n` {n} is not a power of two; Sobol points are balanced only for 2^m points", stacklevel=3)
        unit = _sobol(len(axes), n, seed)
    else:
        unit = np.random.default_rng(seed).random((n, len(axes)))
    points = []
    for row in unit:
        point = []
        for axis, u in zip(axes, row, strict=True):
            lo, hi = axis.range
            if lo > 0 and hi / lo > 10:  # a positive scale spanning more than a decade: log-uniform
                value = math.exp(math.log(lo) + float(u) * (math.log(hi) - math.log(lo)))
            else:
                value = lo + float(u) * (hi - lo)
            point.append(int(round(value)) if axis.integer else float(f"{value:.{SAMPLE_DIGITS}g}"))
        points.append(tuple(point))
    return points


def _sobol(dimensions: int, n: int, seed: int):
    try:
        from scipy.stats import qmc
    except ImportError:  # scipy is optional: a seeded uniform sample keeps the command working
        import numpy as np

        warnings.warn("`method` sobol needs scipy (pip install scipy); sampling uniformly at random instead", stacklevel=4)
        return np.random.default_rng(seed).random((n, dimensions))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the power-of-two warning is ours, worded for the option
        return qmc.Sobol(d=dimensions, scramble=True, seed=seed).random(n)


def make_grid(
    spec: Spec,
    sets: Sequence[str],
    zips: Sequence[str] = (),
    seeds: str | int | Sequence[int] | None = None,
    method: str = "grid",
    n: int | None = None,
) -> Grid:
    """Resolve `--set` axes against `spec`, combine them (cross, `--zip`, sampled ranges), and validate every point.

    Raises UsageError (a bad path, value, zip or seed list) or SpecError (a value a field refuses at some point).
    """
    if method not in METHODS:
        raise UsageError(f"`method` {method}: must be one of {', '.join(METHODS)}")
    if not sets:
        raise UsageError("no axis given: add `sets` PATH=VALUES (e.g. `sets` training.learning_rate=0.01,0.1)")
    doc = spec.to_dict()
    try:
        axes = [make_axis(doc, text) for text in sets]
    except UsageError as exc:  # a path or value of the spec: named like a field of the spec file
        where, _, message = str(exc).partition(": ")
        raise SpecError(spec.source, where, message) from None
    by_path = {axis.path: axis for axis in axes}
    if len(by_path) != len(axes):
        twice = next(a.path for i, a in enumerate(axes) if a.path in [b.path for b in axes[:i]])
        raise UsageError(f"`sets` {twice}: given twice; give each axis once, with all its values")
    owners: dict[Concrete, str] = {}
    for axis in axes:
        for target in axis.targets:
            if target in owners:
                raise UsageError(f"`sets` {axis.path}: sets {dotted(target)}, which `sets` {owners[target]} also sets")
            owners[target] = axis.path
    ranged = [axis for axis in axes if axis.range is not None]
    if method == "grid" and ranged:
        raise UsageError(f"`sets` {ranged[0].path}: a range lo..hi is sampled: add `method` random or sobol with `n` N")
    if method != "grid":
        if not ranged:
            raise UsageError(f"`method` {method}: no axis has a range to sample; write one as PATH=lo..hi")
        if n is None or n < 1:
            raise UsageError(f"`method` {method}: give the number of sampled points with `n` N")
        if n > MAX_POINTS:  # checked before sampling: n rows are drawn at once
            raise UsageError(f"`n` {n:,}: at most {MAX_POINTS:,} sampled points are allowed")
    groups = _zip_groups(axes, zips)
    blocks: list[tuple[list[int], list[tuple[Any, ...]]]] = []  # (axis indices, rows of values)
    for group in groups:
        members = [axes[i] for i in group]
        if members[0].range is None:
            blocks.append((group, list(zip(*(m.values for m in members), strict=True))))
    sample_seed = spec.training.seed if method != "grid" else None
    if ranged:
        indices = [axes.index(a) for a in ranged]
        blocks.append((indices, _sample(ranged, method, n, sample_seed)))
    count = math.prod(len(rows) for _, rows in blocks)
    if count > MAX_POINTS:
        raise UsageError(f"{count:,} points; at most {MAX_POINTS:,} are allowed (fewer values, or `zips`)")
    points = []
    for combo in itertools.product(*(rows for _, rows in blocks)):
        point: list[Any] = [None] * len(axes)
        for (indices, _), row in zip(blocks, combo, strict=True):
            for i, value in zip(indices, row, strict=True):
                point[i] = value
        points.append(tuple(point))
    if ranged:  # the sampled values become the axis' values, for tables and edges
        axes = [Axis(a.path, a.targets, tuple(dict.fromkeys(p[i] for p in points)), a.range, a.integer) if a.range else a
                for i, a in enumerate(axes)]  # fmt: skip
    offsets = parse_seeds(seeds)
    if any(spec.training.seed + k > MAX_SEED for k in offsets):
        raise UsageError(f"`seeds`: spec seed {spec.training.seed} + {max(offsets)} is above the largest seed {MAX_SEED}")
    unique = list(dict.fromkeys(points))
    for point in unique:
        build_spec(spec, axes, point)  # every point checked before anything runs
    zipped = tuple(tuple(axes[i].path for i in g) for g in groups if len(g) > 1)
    return Grid(spec, tuple(axes), tuple(unique), offsets, zipped, method, n if method != "grid" else None, sample_seed)


def _zip_groups(axes: Sequence[Axis], zips: Sequence[str]) -> list[list[int]]:
    """Axis indices grouped: each `--zip A,B` one group (equal lengths), every other axis alone."""
    paths = [axis.path for axis in axes]
    grouped: dict[int, int] = {}
    groups: list[list[int]] = []
    for text in zips:
        names = [name.strip() for name in text.split(",") if name.strip()]
        if len(names) < 2:
            raise UsageError(f"`zips` {text}: name two or more axes, e.g. `zips` training.batch_size,training.learning_rate")
        indices = []
        for name in names:
            if name not in paths:
                raise UsageError(f"`zips` {text}: {name!r} is not an axis{did_you_mean(name, paths)}; axes: {', '.join(paths)}")
            i = paths.index(name)
            if i in grouped or i in indices:
                raise UsageError(f"`zips` {text}: {name} is already zipped")
            if axes[i].range is not None:
                raise UsageError(f"`zips` {text}: {name} is a sampled range; only listed values can be zipped")
            indices.append(i)
        lengths = [len(axes[i].values) for i in indices]
        if len(set(lengths)) > 1:
            shown = ", ".join(f"{axes[i].path} has {len(axes[i].values)}" for i in indices)
            raise UsageError(f"`zips` {text}: zipped axes need the same number of values; {shown}")
        for i in indices:
            grouped[i] = len(groups)
        groups.append(indices)
    for i in range(len(axes)):
        if i not in grouped and axes[i].range is None:
            groups.append([i])
    return sorted(groups, key=lambda g: g[0])


# --- a sweep file -------------------------------------------------------------------------------------

SWEEP_KEYS = ("set", "zip", "seeds", "tune", "method", "n", "rank", "tensorboard", "mlflow")


def read_sweep_file(path: str | Path) -> dict[str, Any]:
    """A `--sweep FILE.yaml`: the same axes, zips, seeds and method as the options, as {key: option value}.

    `set` maps each PATH to VALUES (text in the --set grammar, or a list); `zip` is a list of lists of paths;
    `seeds` a count or a list; `tensorboard` a folder and `mlflow` a URI (or true), as the options take them.
    SpecError naming the file and the key for anything else.
    """
    from cnnbench.spec_text import parse_text, read_spec_file

    source = str(path)
    suffix = ".json" if str(path).lower().endswith(".json") else ".yaml"
    doc = parse_text(read_spec_file(Path(path), source), source, suffix)
    if not isinstance(doc, dict):
        raise SpecError(source, "", f"must be a mapping with keys {', '.join(SWEEP_KEYS)}, got {brief(doc)}")
    for key in doc:
        if key not in SWEEP_KEYS:
            raise SpecError(source, str(key)[:40], f"unknown key{did_you_mean(key, SWEEP_KEYS)}; known: {', '.join(SWEEP_KEYS)}")
    found: dict[str, Any] = {}
    sets = doc.get("set") or {}
    if not isinstance(sets, dict):
        raise SpecError(source, "set", f"must map each PATH to its values, got {brief(sets)}")
    found["set"] = []
    for key, values in sets.items():
        if isinstance(values, list):
            values = ",".join(format_point_value(v) for v in values)
        elif isinstance(values, (str, int, float, bool)):
            values = format_point_value(values)
        else:
            raise SpecError(source, f"set.{key}", f"must be a list or VALUES text, got {brief(values)}")
        found["set"].append(f"{key}={values}")
    zips = doc.get("zip") or []
    if not isinstance(zips, list) or not all(isinstance(z, (list, str)) for z in zips):
        raise SpecError(source, "zip", f"must be a list of lists of axis paths, got {brief(zips)}")
    found["zip"] = [z if isinstance(z, str) else ",".join(map(str, z)) for z in zips]
    if "seeds" in doc:
        seeds = doc["seeds"]
        found["seeds"] = ",".join(map(str, seeds)) if isinstance(seeds, list) else str(seeds)
    for key, kind in (("tune", str), ("method", str), ("n", int), ("rank", str)):
        if key in doc:
            if not isinstance(doc[key], kind) or isinstance(doc[key], bool):
                raise SpecError(source, key, f"must be {'an integer' if kind is int else 'a string'}, got {brief(doc[key])}")
            found[key] = doc[key]
    from cnnbench.sinks import file_targets  # tensorboard: DIR, mlflow: URI (or true), as the options name them

    found.update(file_targets(doc, source))
    return found


def merge_sets(from_file: Sequence[str], given: Sequence[str]) -> list[str]:
    """The file's `set` entries with those the command line gives for the same PATH replaced (the command line wins)."""
    paths = {split_axis(text)[0] for text in given}
    return [text for text in from_file if split_axis(text)[0] not in paths] + list(given)
