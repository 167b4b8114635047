"""The spec format: its fields and defaults, validating a document's structure, built-in specs by name, the JSON Schema.

What a spec may use (layer types, arguments, optimizers) is `cnnbench.catalog`; shapes and sizes are `cnnbench.model`;
reading the text of a file or stdin safely (bounded, UTF-8, JSON/YAML loaders) is `cnnbench.spec_text`.

>>> spec = load_spec("convolutional_nn")          # a built-in name, or a path to .json/.yaml
>>> spec.training.learning_rate, spec.layers[0]["filters"]
(0.1, 16)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cnnbench import engines
from cnnbench.catalog import (
    EARLY_STOPPING,
    LAYERS,
    LR_SCHEDULE,
    MAX_INT,
    MAX_SEED,
    OPTIMIZER_OPTIONS,
    OPTIMIZERS,
    SHARED_ARGS,
    Arg,
    check_layer,
    check_optimizer,
    did_you_mean,
    enum,
    integer,
    is_number,
    layer_name,
    layer_schema,
    nullable,
    number,
    optimizer_option_problem,
)
from cnnbench.errors import SpecError, brief, cap
from cnnbench.spec_text import parse_text, read_spec_file, read_spec_stream

DATASETS = ("mnist", "mnist-5k", "synthetic")
SPEC_SUFFIXES = (".json", ".yaml", ".yml")


# --- field checks: each is a catalog `Arg`, the check cnnbench runs and the JSON Schema it publishes -------------


def positive_number() -> Arg:
    def check(value: Any) -> str | None:
        return None if is_number(value) and value > 0 else f"must be a positive number, got {brief(value)}"

    return Arg(check, {"type": "number", "exclusiveMinimum": 0})


def text(max_chars: int, non_empty: bool = True) -> Arg:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and (value.strip() or not non_empty) and len(value) <= max_chars:
            return None
        return f"must be a {'non-empty ' if non_empty else ''}string of at most {max_chars:,} characters, got {brief(value)}"

    return Arg(check, {"type": "string", "maxLength": max_chars, **({"pattern": r"\S"} if non_empty else {})})




def _meta(default: Any, arg: Arg, help: str) -> Any:
    return field(default=default, metadata={"arg": arg, "help": help})


KNOBS = (*OPTIMIZER_OPTIONS, "lr_schedule", "early_stopping", "label_smoothing")
MAX_LAYERS = 1_000  # each layer is a Keras object built in Python: 50,000 of them would take minutes
MAX_STEPS_PER_EXECUTION = 10_000  # beyond this one call outlasts any epoch of any dataset cnnbench reads

# --- the spec --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Training:
    """How a spec is trained; every key is optional."""

    optimizer: str = _meta("sgd", Arg(check_optimizer, {"enum": list(OPTIMIZERS)}), "A Keras optimizer: " + ", ".join(OPTIMIZERS) + ".")
    learning_rate: float = _meta(0.1, positive_number(), "Optimizer learning rate.")
    batch_size: int = _meta(64, integer(1), "Samples per gradient step.")
    epochs: int = _meta(20, integer(1), "Passes over the training split.")
    seed: int = _meta(0, integer(0, MAX_SEED), "Seeds weights, data split and shuffling (0 to 2^32 - 1).")
    steps_per_execution: int = _meta(
        64,
        integer(1, MAX_STEPS_PER_EXECUTION),
        "Training steps fused into one call of the compiled function (Keras `steps_per_execution`); "
        "results are identical, per-step overhead shrinks. At most 10,000. Ignored on the torch backend.",
    )
    engine: str = _meta(
        "auto",
        enum(*engines.CHOICES),
        "Training engine: fit (Keras model.fit), fused (one compiled program per epoch, JAX backend only) or auto "
        "(fused for JAX on a GPU, fit everywhere else).",
    )
    # The knobs below default to None: "not set", Keras' own default. A spec that sets none of them is written,
    # hashed and trained exactly as before they existed (to_dict leaves them out).
    momentum: float | None = _meta(None, nullable(OPTIMIZER_OPTIONS["momentum"][0]), OPTIMIZER_OPTIONS["momentum"][2])
    nesterov: bool | None = _meta(None, nullable(OPTIMIZER_OPTIONS["nesterov"][0]), OPTIMIZER_OPTIONS["nesterov"][2])
    weight_decay: float | None = _meta(None, nullable(OPTIMIZER_OPTIONS["weight_decay"][0]), OPTIMIZER_OPTIONS["weight_decay"][2])
    beta_1: float | None = _meta(None, nullable(OPTIMIZER_OPTIONS["beta_1"][0]), OPTIMIZER_OPTIONS["beta_1"][2])
    beta_2: float | None = _meta(None, nullable(OPTIMIZER_OPTIONS["beta_2"][0]), OPTIMIZER_OPTIONS["beta_2"][2])
    epsilon: float | None = _meta(None, nullable(OPTIMIZER_OPTIONS["epsilon"][0]), OPTIMIZER_OPTIONS["epsilon"][2])
    clipnorm: float | None = _meta(None, nullable(OPTIMIZER_OPTIONS["clipnorm"][0]), OPTIMIZER_OPTIONS["clipnorm"][2])
    clipvalue: float | None = _meta(None, nullable(OPTIMIZER_OPTIONS["clipvalue"][0]), OPTIMIZER_OPTIONS["clipvalue"][2])
    global_clipnorm: float | None = _meta(None, nullable(OPTIMIZER_OPTIONS["global_clipnorm"][0]), OPTIMIZER_OPTIONS["global_clipnorm"][2])
    lr_schedule: dict | None = _meta(
        None, nullable(LR_SCHEDULE), "Learning-rate schedule per epoch: {type: step|exponential|cosine|constant, warmup_epochs, ...}."
    )
    early_stopping: dict | None = _meta(
        None, nullable(EARLY_STOPPING), "Stop when the validation error stops improving: {patience, min_delta}. The run stays ok."
    )
    label_smoothing: float | None = _meta(
        None, nullable(number(0, 1, exclusive_max=True)), "Label smoothing of the cross-entropy, in [0, 1)."
    )

    def knobs(self) -> dict[str, Any]:
        """The knobs this spec sets (optimizer options, schedule, early stopping, label smoothing): what run.json records."""
        return {key: getattr(self, key) for key in KNOBS if getattr(self, key) is not None}

    def optimizer_options(self) -> dict[str, Any]:
        """The optimizer's own options this spec sets, as Keras names them."""
        return {key: getattr(self, key) for key in OPTIMIZER_OPTIONS if getattr(self, key) is not None}


@dataclass(frozen=True)
class Data:
    """Which data a spec trains on; every key is optional."""

    dataset: str = _meta("mnist", enum(*DATASETS), "mnist (70k), mnist-5k (embedded, offline) or synthetic.")
    path: str | None = _meta(None, nullable(text(4096)), "A local mnist.npz (x_train, y_train, x_test, y_test).")
    train_samples: int | None = _meta(None, nullable(integer(1)), "Training split size (default per dataset).")
    val_samples: int | None = _meta(None, nullable(integer(1)), "Validation split size (default per dataset).")
    test_samples: int | None = _meta(None, nullable(integer(1)), "Test split size (default per dataset).")


def _check_input_shape(value: Any) -> str | None:
    if isinstance(value, list) and 1 <= len(value) <= 4 and all(integer(1).check(v) is None for v in value):
        return None
    return f"must be a list of 1 to 4 positive integers, e.g. [28, 28, 1], got {brief(value)}"


TOP_LEVEL = {
    "name": "A short name for the network; defaults to the file name.",
    "description": "Free text.",
    "input_shape": "Shape of one sample without the batch axis, e.g. [28, 28, 1].",
    "layers": "Layers in order: {type: <a type from the catalog>, <argument>: value, ...}.",
    "training": "Optimizer and schedule; see the training keys.",
    "data": "Dataset and split sizes; see the data keys.",
}
REQUIRED = ("input_shape", "layers")


@dataclass(frozen=True)
class Spec:
    """A valid spec (keys, types, layer arguments); `cnnbench.model.check_layers` checks its shapes and size."""

    name: str
    input_shape: tuple[int, ...]
    layers: tuple[dict[str, Any], ...]
    training: Training = Training()
    data: Data = Data()
    description: str = ""
    source: str = "<spec>"

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec, defaults filled in: what `spec.json` of a run holds."""
        return {
            "name": self.name,
            "description": self.description,
            "input_shape": list(self.input_shape),
            "layers": [dict(layer) for layer in self.layers],
            "training": {k: v for k, v in dataclasses.asdict(self.training).items() if not (k in KNOBS and v is None)},
            "data": dataclasses.asdict(self.data),
        }

    def with_overrides(self, source: str = "option", **values: Any) -> Spec:
        """A copy with training/data keys replaced (None means keep); values are validated.

        >>> load_spec("convolutional_nn").with_overrides(epochs=3).training.epochs
        3
        """
        training = {k: v for k, v in values.items() if v is not None and k in _names(Training)}
        data = {k: v for k, v in values.items() if v is not None and k in _names(Data)}
        unknown = set(values) - _names(Training) - _names(Data)
        if unknown:
            raise TypeError(f"unknown override(s): {sorted(unknown)}")
        for cls, new in ((Training, training), (Data, data)):
            for key, value in new.items():
                message = _field_check(cls, key)(value)
                if message:
                    where = f"`{key}`"  # the keyword a Python caller gave (the CLI shows the option that sets it)
                    if isinstance(message, tuple):
                        where, message = f"{where}.{message[0]}", message[1]
                    raise SpecError(source, where, message)
        new_training = dataclasses.replace(self.training, **training)
        _check_training(new_training, source, None)
        return dataclasses.replace(self, training=new_training, data=dataclasses.replace(self.data, **data))

    def with_filters(self, filters: int) -> Spec:
        """A copy with every layer that has a `filters` argument set to `filters` (for `bench`)."""
        layers = tuple({**layer, "filters": filters} if "filters" in layer else dict(layer) for layer in self.layers)
        return dataclasses.replace(self, layers=layers)


def _names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _field_check(cls, name: str):
    return next(f.metadata["arg"].check for f in dataclasses.fields(cls) if f.name == name)


def _parse_section(cls, value: Any, source: str, section: str):
    if value is None:
        return cls()
    if not isinstance(value, dict):
        raise SpecError(source, section, f"must be a mapping of keys to values, got {brief(value)}")
    known = [f.name for f in dataclasses.fields(cls)]
    for key, item in value.items():
        if not isinstance(key, str):
            raise SpecError(source, section, f"keys must be strings, got {brief(key)}")
        if key not in known:
            raise SpecError(source, f"{section}.{cap(key, 40)}", f"unknown key{did_you_mean(key, known)}; known: {', '.join(known)}")
        message = _field_check(cls, key)(item)
        if isinstance(message, tuple):  # a mapping's key at fault: the path names it
            raise SpecError(source, f"{section}.{key}.{message[0]}", message[1])
        if message:
            raise SpecError(source, f"{section}.{key}", message)
    parsed = cls(**value)
    if cls is Training:
        _check_training(parsed, source, f"{section}.")
    return parsed


def _check_training(training: Training, source: str, prefix: str | None) -> None:
    """What no single key can tell: an option the optimizer does not take, two ways of clipping at once.

    `prefix` is the section a spec file names (`training.`); None names the override keyword instead (`clipnorm`).
    """
    if problem := optimizer_option_problem(training.optimizer, training.optimizer_options()):
        key, message = problem
        raise SpecError(source, f"{prefix}{key}" if prefix is not None else f"`{key}`", message)


def parse_spec(doc: Any, source: str = "<spec>", default_name: str = "spec") -> Spec:
    """Validate a parsed spec document against the catalog and fill in defaults.

    Every check that needs neither Keras nor data happens here: keys, types, ranges, layer types and their
    arguments. Shapes and sizes are checked by `cnnbench.model.check_layers`.
    """
    if not isinstance(doc, dict):
        raise SpecError(source, "", f"the spec must be a mapping with keys {', '.join(REQUIRED)}, got {type(doc).__name__}")
    for key in doc:
        if not isinstance(key, str):
            raise SpecError(source, "", f"keys must be strings, got {brief(key)}")
        if key not in TOP_LEVEL:
            raise SpecError(source, cap(key, 40), f"unknown top-level key{did_you_mean(key, TOP_LEVEL)}; known: {', '.join(TOP_LEVEL)}")
    for key in REQUIRED:
        if key not in doc:
            raise SpecError(source, key, "is required")
    if message := _check_input_shape(doc["input_shape"]):
        raise SpecError(source, "input_shape", message)
    name = doc.get("name", default_name)
    if message := SPEC_NAME.check(name):
        raise SpecError(source, "name", message)
    if name.startswith("."):
        message = f"must not start with '.', got {brief(name)}: its run folders would be hidden, and ls and plot skip them"
        raise SpecError(source, "name", message)
    description = doc.get("description", "")
    if message := DESCRIPTION.check(description):
        raise SpecError(source, "description", message)
    layers = doc["layers"]
    if not isinstance(layers, list):
        raise SpecError(source, "layers", f"must be a list of layers, got {brief(layers)}")
    if not layers:
        raise SpecError(source, "layers", "has no layers; a model needs at least one")
    if len(layers) > MAX_LAYERS:
        raise SpecError(source, "layers", f"has {len(layers):,} layers; at most {MAX_LAYERS:,} are allowed")
    names: dict[str, int] = {}
    for index, layer in enumerate(layers):
        where = f"layers[{index}]"
        if not isinstance(layer, dict):
            raise SpecError(source, where, f"must be a mapping like {{type: Conv2D, filters: 16}}, got {brief(layer)}")
        if bad := next((k for k in layer if not isinstance(k, str)), None):
            raise SpecError(source, where, f"keys must be strings, got {brief(bad)}")
        if "type" not in layer:
            raise SpecError(source, f"{where}.type", "is required (a layer type such as Conv2D; docs/spec.md lists them)")
        if problem := check_layer(layer):
            arg, message = problem
            raise SpecError(source, f"{where}.{cap(arg, 40)}" if arg else where, message)
        layer_name = layer.get("name") or default_layer_name(index, layer["type"])
        if layer_name in names:
            raise SpecError(source, f"{where}.name", f"duplicate layer name {brief(layer_name)} (also layers[{names[layer_name]}])")
        names[layer_name] = index
    return Spec(
        name=name,
        input_shape=tuple(doc["input_shape"]),
        layers=tuple(dict(layer) for layer in layers),
        training=_parse_section(Training, doc.get("training"), source, "training"),
        data=_parse_section(Data, doc.get("data"), source, "data"),
        description=description,
        source=source,
    )


def default_layer_name(index: int, kind: str) -> str:
    """The Keras name of a layer the spec does not name: `02_conv2d` (the index keeps names unique)."""
    return f"{index:02d}_{kind.lower()}"


SPEC_NAME = layer_name()  # the same rule as a layer's name: it becomes a folder name
DESCRIPTION = text(10_000, non_empty=False)


def builtin_specs() -> dict[str, Any]:
    """Built-in spec names mapped to their files (shipped from the repository's `specs/`)."""
    found: dict[str, Any] = {}
    for entry in sorted(resources.files("cnnbench.specs").iterdir(), key=lambda e: e.name):
        stem, dot, suffix = entry.name.rpartition(".")
        if dot and f".{suffix}" in SPEC_SUFFIXES:
            found.setdefault(stem, entry)  # .json sorts before .yaml: the JSON file is the canonical one
    return found


def load_spec(ref: str | Path) -> Spec:
    """Load a spec: a built-in name, a .json/.yaml path, `-` (read from stdin) or a JSON document given inline
    (text starting with `{`). Everything that needs no Keras is validated.

    A built-in name means the built-in spec even when a file or folder of that name is in the current
    folder: write `./convolutional_nn` or `convolutional_nn.json` to mean the file.
    """
    source = str(ref)
    if isinstance(ref, str) and ref.strip() == "-":
        return _parse_given(read_spec_stream(STDIN_SOURCE), STDIN_SOURCE, "stdin")
    if isinstance(ref, str) and ref.lstrip().startswith("{"):
        return _parse_given(ref, INLINE_SOURCE, "inline")
    builtins = builtin_specs()
    if isinstance(ref, str) and source in builtins:  # a bare name: no folder part, no suffix
        entry = builtins[source]
        suffix = ".json" if entry.name.endswith(".json") else ".yaml"
        return parse_spec(parse_text(entry.read_text(encoding="utf-8"), source, suffix), source, default_name=source)
    path = Path(ref)
    try:
        exists = path.suffix.lower() in SPEC_SUFFIXES or path.exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte: no such file
        exists = False
    if exists:
        suffix = ".json" if path.suffix.lower() == ".json" else ".yaml"
        default_name = path.stem.lstrip(".") or "spec"  # `.net.json` would name hidden run folders
        return parse_spec(parse_text(read_spec_file(path, source), source, suffix), source, default_name=default_name)
    hint = did_you_mean(source, builtins)
    raise SpecError(source, "", f"no such file, and not a built-in spec{hint}; built-in: {', '.join(builtins)}")


STDIN_SOURCE = "<stdin>"
INLINE_SOURCE = "<inline spec>"


def _parse_given(text: str, source: str, default_name: str) -> Spec:
    """A spec given as text (inline or on stdin): JSON when it starts with `{`, else YAML."""
    suffix = ".json" if text.lstrip().startswith("{") else ".yaml"
    return parse_spec(parse_text(text, source, suffix), source, default_name=default_name)


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the spec format, generated from the same catalog cnnbench checks against.

    Each layer is checked by an `if type == X then <X's arguments>` rule, so a validator names the field at fault.
    """

    def section(cls) -> dict[str, Any]:
        props = {
            f.name: {**f.metadata["arg"].schema, "description": f.metadata["help"], "default": f.default} for f in dataclasses.fields(cls)
        }
        return {"type": ["object", "null"], "additionalProperties": False, "properties": props, "description": cls.__doc__}

    rules = [{"if": {"properties": {"type": {"const": n}}, "required": ["type"]}, "then": layer_schema(e)} for n, e in LAYERS.items()]
    layer = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": list(LAYERS), "description": "A layer type from cnnbench's catalog (docs/spec.md)."}},
        "allOf": rules,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "cnnbench spec",
        "$defs": {name: arg.schema for name, arg in SHARED_ARGS.items()},
        "type": "object",
        "additionalProperties": False,
        "required": list(REQUIRED),
        "properties": {
            "name": {**SPEC_NAME.schema, "description": TOP_LEVEL["name"]},
            "description": {**DESCRIPTION.schema, "description": TOP_LEVEL["description"]},
            "input_shape": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": MAX_INT},
                "minItems": 1,
                "maxItems": 4,
                "description": TOP_LEVEL["input_shape"],
            },
            "layers": {"type": "array", "minItems": 1, "maxItems": MAX_LAYERS, "items": layer, "description": TOP_LEVEL["layers"]},
            "training": section(Training),
            "data": section(Data),
        },
    }
