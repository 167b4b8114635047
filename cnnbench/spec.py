"""The spec format: reading JSON/YAML spec files, validating their structure, built-in specs by name.

Layer-level checks that need Keras (layer types, arguments, shapes, size) live in `cnnbench.model`.

>>> spec = load_spec("convolutional_nn")          # a built-in name, or a path to .json/.yaml
>>> spec.training.learning_rate, spec.layers[0]["filters"]
(0.1, 16)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cnnbench.errors import SpecError

DATASETS = ("mnist", "mnist-5k", "synthetic")
ENGINES = ("auto", "fit", "fused")
SPEC_SUFFIXES = (".json", ".yaml", ".yml")


# --- field checks: each returns an error message, or None when the value is fine -------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: Any) -> str | None:
    if _is_int(value) and value > 0:
        return None
    return f"must be a positive integer, got {value!r}"


def non_negative_int(value: Any) -> str | None:
    if _is_int(value) and value >= 0:
        return None
    return f"must be a non-negative integer, got {value!r}"


def positive_number(value: Any) -> str | None:
    if (_is_int(value) or isinstance(value, float)) and math.isfinite(value) and value > 0:
        return None
    return f"must be a positive number, got {value!r}"


def non_empty_string(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return None
    return f"must be a non-empty string, got {value!r}"


def one_of(*choices: str):
    def check(value: Any) -> str | None:
        if value in choices:
            return None
        hint = _did_you_mean(value, choices) if isinstance(value, str) else ""
        return f"must be one of {', '.join(choices)}, got {value!r}{hint}"

    return check


def optional(check):
    return lambda value: None if value is None else check(value)


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _meta(default: Any, check, help: str) -> Any:
    return field(default=default, metadata={"check": check, "help": help})


# --- the spec --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Training:
    """How a spec is trained; every key is optional."""

    optimizer: str = _meta("sgd", non_empty_string, "Any Keras optimizer name (sgd, adam, rmsprop, ...).")
    learning_rate: float = _meta(0.1, positive_number, "Optimizer learning rate.")
    batch_size: int = _meta(64, positive_int, "Samples per gradient step.")
    epochs: int = _meta(20, positive_int, "Passes over the training split.")
    seed: int = _meta(0, non_negative_int, "Seeds weights, data split and shuffling.")
    steps_per_execution: int = _meta(
        64,
        positive_int,
        "Training steps fused into one call of the compiled function (Keras `steps_per_execution`); "
        "results are identical, per-step overhead shrinks. Ignored on the torch backend.",
    )
    engine: str = _meta(
        "auto",
        one_of(*ENGINES),
        "Training engine: fit (Keras model.fit), fused (one compiled program per epoch, JAX backend only) or auto "
        "(fused for JAX on a GPU, fit everywhere else).",
    )


@dataclass(frozen=True)
class Data:
    """Which data a spec trains on; every key is optional."""

    dataset: str = _meta("mnist", one_of(*DATASETS), "mnist (70k), mnist-5k (embedded, offline) or synthetic.")
    path: str | None = _meta(None, optional(non_empty_string), "A local mnist.npz (x_train, y_train, x_test, y_test).")
    train_samples: int | None = _meta(None, optional(positive_int), "Training split size (default per dataset).")
    val_samples: int | None = _meta(None, optional(positive_int), "Validation split size (default per dataset).")
    test_samples: int | None = _meta(None, optional(positive_int), "Test split size (default per dataset).")


def _check_input_shape(value: Any) -> str | None:
    if isinstance(value, list) and 1 <= len(value) <= 4 and all(_is_int(v) and v > 0 for v in value):
        return None
    return f"must be a list of 1 to 4 positive integers, e.g. [28, 28, 1], got {value!r}"


TOP_LEVEL = {
    "name": "A short name for the network; defaults to the file name.",
    "description": "Free text.",
    "input_shape": "Shape of one sample without the batch axis, e.g. [28, 28, 1].",
    "layers": "Keras layers in order: {type: <class in keras.layers>, <constructor argument>: value, ...}.",
    "training": "Optimizer and schedule; see the training keys.",
    "data": "Dataset and split sizes; see the data keys.",
}
REQUIRED = ("input_shape", "layers")


@dataclass(frozen=True)
class Spec:
    """A structurally valid spec; `cnnbench.model.check_layers` validates its layers against Keras."""

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
            "training": dataclasses.asdict(self.training),
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
                    raise SpecError(source, _OPTION_NAMES.get(key, f"--{key.replace('_', '-')}"), message)
        return dataclasses.replace(
            self,
            training=dataclasses.replace(self.training, **training),
            data=dataclasses.replace(self.data, **data),
        )

    def with_filters(self, filters: int) -> Spec:
        """A copy with every layer that has a `filters` argument set to `filters` (for `bench`)."""
        layers = tuple({**layer, "filters": filters} if "filters" in layer else dict(layer) for layer in self.layers)
        return dataclasses.replace(self, layers=layers)


_OPTION_NAMES = {"dataset": "--data", "path": "--data"}  # the command-line option that sets each key


def _names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _field_check(cls, name: str):
    return next(f.metadata["check"] for f in dataclasses.fields(cls) if f.name == name)


def _parse_section(cls, value: Any, source: str, section: str):
    if value is None:
        return cls()
    if not isinstance(value, dict):
        raise SpecError(source, section, f"must be a mapping of keys to values, got {value!r}")
    known = [f.name for f in dataclasses.fields(cls)]
    for key, item in value.items():
        if key not in known:
            raise SpecError(source, f"{section}.{key}", f"unknown key{_did_you_mean(str(key), known)}; known: {', '.join(known)}")
        message = _field_check(cls, key)(item)
        if message:
            raise SpecError(source, f"{section}.{key}", message)
    return cls(**value)


def parse_spec(doc: Any, source: str = "<spec>", default_name: str = "spec") -> Spec:
    """Validate the structure of a parsed spec document and fill in defaults."""
    if not isinstance(doc, dict):
        raise SpecError(source, "", f"the spec must be a mapping with keys {', '.join(REQUIRED)}, got {type(doc).__name__}")
    for key in doc:
        if key not in TOP_LEVEL:
            raise SpecError(source, str(key), f"unknown top-level key{_did_you_mean(str(key), TOP_LEVEL)}; known: {', '.join(TOP_LEVEL)}")
    for key in REQUIRED:
        if key not in doc:
            raise SpecError(source, key, "is required")
    if message := _check_input_shape(doc["input_shape"]):
        raise SpecError(source, "input_shape", message)
    name = doc.get("name", default_name)
    if message := non_empty_string(name):
        raise SpecError(source, "name", message)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SpecError(source, "name", f"may only contain letters, digits, '_', '-' and '.', got {name!r}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise SpecError(source, "description", f"must be a string, got {description!r}")
    layers = doc["layers"]
    if not isinstance(layers, list):
        raise SpecError(source, "layers", f"must be a list of layers, got {layers!r}")
    if not layers:
        raise SpecError(source, "layers", "has no layers; a model needs at least one")
    for index, layer in enumerate(layers):
        where = f"layers[{index}]"
        if not isinstance(layer, dict):
            raise SpecError(source, where, f"must be a mapping like {{type: Conv2D, filters: 16}}, got {layer!r}")
        if "type" not in layer:
            raise SpecError(source, f"{where}.type", "is required (a class name in keras.layers, e.g. Conv2D)")
        if not isinstance(layer["type"], str) or not layer["type"]:
            raise SpecError(source, f"{where}.type", f"must be a layer class name, got {layer['type']!r}")
    return Spec(
        name=name,
        input_shape=tuple(doc["input_shape"]),
        layers=tuple(dict(layer) for layer in layers),
        training=_parse_section(Training, doc.get("training"), source, "training"),
        data=_parse_section(Data, doc.get("data"), source, "data"),
        description=description,
        source=source,
    )


# --- reading files ---------------------------------------------------------------------------


def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that also reads `1e-4` as a float (YAML 1.1 insists on `1.0e-4`)."""

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
        list("-+0123456789."),
    )
    return Loader


def _reject_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def parse_text(text: str, source: str, suffix: str) -> Any:
    """Parse JSON or YAML text; syntax errors become a SpecError with the line number."""
    if not text.strip():
        raise SpecError(source, "", "the file is empty")
    if suffix == ".json":
        try:
            return json.loads(text, object_pairs_hook=_reject_duplicates)
        except json.JSONDecodeError as exc:
            raise SpecError(source, f"line {exc.lineno}", f"invalid JSON: {exc.msg}") from None
        except ValueError as exc:
            raise SpecError(source, "", f"invalid JSON: {exc}") from None
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise SpecError(source, f"line {line}", f"invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise SpecError(source, "", f"invalid YAML: {exc}") from None


def builtin_specs() -> dict[str, Any]:
    """Built-in spec names mapped to their files (shipped from the repository's `specs/`)."""
    found: dict[str, Any] = {}
    for entry in sorted(resources.files("cnnbench.specs").iterdir(), key=lambda e: e.name):
        stem, dot, suffix = entry.name.rpartition(".")
        if dot and f".{suffix}" in SPEC_SUFFIXES:
            found.setdefault(stem, entry)  # .json sorts before .yaml: the JSON file is the canonical one
    return found


def load_spec(ref: str | Path) -> Spec:
    """Load a spec from a .json/.yaml path or a built-in name; structure is validated."""
    path = Path(ref)
    source = str(ref)
    if path.suffix.lower() in SPEC_SUFFIXES or path.exists():
        if path.is_dir():
            raise SpecError(source, "", "is a folder, not a spec file")
        if not path.exists():
            raise SpecError(source, "", "no such file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(source, "", f"cannot read the file: {exc}") from None
        suffix = ".json" if path.suffix.lower() == ".json" else ".yaml"
        return parse_spec(parse_text(text, source, suffix), source, default_name=path.stem)
    builtins = builtin_specs()
    if source in builtins:
        entry = builtins[source]
        suffix = ".json" if entry.name.endswith(".json") else ".yaml"
        return parse_spec(parse_text(entry.read_text(encoding="utf-8"), source, suffix), source, default_name=source)
    hint = _did_you_mean(source, builtins)
    raise SpecError(source, "", f"no such file, and not a built-in spec{hint}; built-in: {', '.join(builtins)}")


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the spec format, layer types and arguments taken from Keras."""
    from cnnbench.model import layer_catalog

    def section(cls) -> dict[str, Any]:
        props = {}
        for f in dataclasses.fields(cls):
            kind = {"str": "string", "float": "number", "int": "integer"}
            base = str(f.type).split(" ")[0]
            prop: dict[str, Any] = {"description": f.metadata["help"], "default": f.default}
            prop["type"] = [kind.get(base, "string"), "null"] if "None" in str(f.type) else kind.get(base, "string")
            if f.name == "dataset":
                prop["enum"] = list(DATASETS)
            props[f.name] = prop
        return {"type": "object", "additionalProperties": False, "properties": props, "description": cls.__doc__}

    layer_variants = []
    for name, arguments in layer_catalog().items():
        props: dict[str, Any] = {"type": {"const": name}}
        props.update({arg: {} for arg in arguments})
        layer_variants.append({"type": "object", "properties": props, "required": ["type"], "additionalProperties": False})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "cnnbench spec",
        "type": "object",
        "additionalProperties": False,
        "required": list(REQUIRED),
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$", "description": TOP_LEVEL["name"]},
            "description": {"type": "string", "description": TOP_LEVEL["description"]},
            "input_shape": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1},
                "minItems": 1,
                "maxItems": 4,
                "description": TOP_LEVEL["input_shape"],
            },
            "layers": {"type": "array", "minItems": 1, "items": {"oneOf": layer_variants}, "description": TOP_LEVEL["layers"]},
            "training": section(Training),
            "data": section(Data),
        },
    }
