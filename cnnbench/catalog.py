"""The catalog of what a spec may use: layer types with typed arguments, activations, initializers, optimizers.

An allowlist in plain Python (no Keras import): `spec.py` validates against it, `model.py` sizes and builds from it,
and `cnnbench schema` is generated from it, so the three can never disagree.

>>> LAYERS["Conv2D"].required
('filters', 'kernel_size')
>>> LAYERS["Dropout"].arguments["rate"].check(1.5)
'must be a number in [0, 1), got 1.5'
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cnnbench.errors import brief

MAX_INT = 2**31 - 1  # every integer a spec holds fits a C int: no overflow deep inside a backend
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"

# Names resolved by Keras without any file or code: the lists are checked against Keras by tests/test_catalog.py.
ACTIVATIONS = (
    "celu", "elu", "exponential", "gelu", "hard_shrink", "hard_sigmoid", "hard_silu", "hard_swish", "hard_tanh", "leaky_relu",
    "linear", "log_sigmoid", "log_softmax", "mish", "relu", "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softmax",
    "softplus", "softsign", "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus", "swish", "tanh", "tanh_shrink",
)  # fmt: skip
INITIALIZERS = (
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal", "orthogonal",
    "random_normal", "random_uniform", "truncated_normal", "variance_scaling", "zeros", "ones",
)  # fmt: skip
REGULARIZERS = ("l1", "l2")
CONSTRAINTS = ("max_norm", "min_max_norm", "non_neg", "unit_norm")
FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "ftrl", "lion", "adafactor")
WRAPPER_OPTIMIZERS = ("LossScaleOptimizer", "MultiOptimizer", "OptimizerMap", "Optimizer")

# Layer types people reach for that are refused, with the reason (anything else unknown is refused too).
REFUSED_LAYERS = {
    "Lambda": "runs arbitrary Python code, which specs may not do",
    "TFSMLayer": "loads an external SavedModel, which specs may not do",
    "JaxLayer": "wraps arbitrary Python code",
    "FlaxLayer": "wraps arbitrary Python code",
    "TorchModuleWrapper": "wraps arbitrary Python code",
    "InputLayer": "is implied: use the top-level input_shape instead",
    "Layer": "is the abstract base class",
    "StringLookup": "reads vocabulary files, and no spec may cause a file read",
    "IntegerLookup": "reads vocabulary files, and no spec may cause a file read",
    "TextVectorization": "reads vocabulary files, and no spec may cause a file read",
    "Wrapper": "needs a layer object, which a spec cannot express",
    "Bidirectional": "needs a layer object, which a spec cannot express",
    "TimeDistributed": "needs a layer object, which a spec cannot express",
    "RNN": "needs a cell object, which a spec cannot express",
    "StackedRNNCells": "needs cell objects, which a spec cannot express",
}
_RECURRENT = ("LSTM", "GRU", "SimpleRNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "EinsumDense", "Embedding", "MultiHeadAttention")
REFUSED_LAYERS.update({name: "is not in cnnbench's catalog of CNN layers (see docs/spec.md)" for name in _RECURRENT})


# --- argument types: one object gives both the check cnnbench runs and the JSON Schema it publishes ------------


@dataclass(frozen=True)
class Arg:
    """One argument type: `check(value)` returns an error message or None; `schema` is the same rule as JSON Schema."""

    check: Callable[[Any], str | None]
    schema: dict[str, Any]
    help: str = ""


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def did_you_mean(word: Any, choices) -> str:
    """` (did you mean 'relu'?)` when `word` is close to one of `choices`, else ''."""
    if not isinstance(word, str) or len(word) > 100:
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        lowered = {str(c).lower(): c for c in choices}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def integer(minimum: int = 1, maximum: int = MAX_INT) -> Arg:
    def check(value: Any) -> str | None:
        if is_int(value) and minimum <= value <= maximum:
            return None
        if minimum == 1 and maximum == MAX_INT:
            return f"must be a positive integer, got {brief(value)}"
        if minimum == 0 and maximum == MAX_INT:
            return f"must be a non-negative integer, got {brief(value)}"
        return f"must be an integer from {minimum:,} to {maximum:,}, got {brief(value)}"

    return Arg(check, {"type": "integer", "minimum": minimum, "maximum": maximum})


def number(minimum: float | None = None, maximum: float | None = None, exclusive_min: bool = False, exclusive_max: bool = False) -> Arg:
    low = "" if minimum is None else ("(" if exclusive_min else "[") + f"{minimum:g}"
    high = "" if maximum is None else f"{maximum:g}" + (")" if exclusive_max else "]")

    def check(value: Any) -> str | None:
        ok = is_number(value)
        ok = ok and (minimum is None or (value > minimum if exclusive_min else value >= minimum))
        ok = ok and (maximum is None or (value < maximum if exclusive_max else value <= maximum))
        if ok:
            return None
        if minimum is None and maximum is None:
            return f"must be a finite number, got {brief(value)}"
        if maximum is None:
            return f"must be a number {'above' if exclusive_min else 'of at least'} {minimum:g}, got {brief(value)}"
        return f"must be a number in {low}, {high}, got {brief(value)}"

    schema: dict[str, Any] = {"type": "number"}
    if minimum is not None:
        schema["exclusiveMinimum" if exclusive_min else "minimum"] = minimum
    if maximum is not None:
        schema["exclusiveMaximum" if exclusive_max else "maximum"] = maximum
    return Arg(check, schema)


def enum(*choices: str, what: str = "") -> Arg:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and value in choices:
            return None
        if what:
            hint = did_you_mean(value, choices)
            return f"unknown {what} {brief(value)}{hint or '; known: ' + ', '.join(choices)}"
        return f"must be one of {', '.join(choices)}, got {brief(value)}{did_you_mean(value, choices)}"

    return Arg(check, {"enum": list(choices)})


_YAML11_BOOLS = {"yes", "no", "on", "off", "y", "n"}


def boolean() -> Arg:
    def check(value: Any) -> str | None:
        if isinstance(value, bool):
            return None
        hint = " (YAML 1.1 yes/no/on/off are plain strings in a spec)" if isinstance(value, str) and value.lower() in _YAML11_BOOLS else ""
        return f"must be true or false, got {brief(value)}{hint}"

    return Arg(check, {"type": "boolean"})


def int_or_tuple(rank: int, minimum: int = 1) -> Arg:
    """An integer, or a list of `rank` integers (one per spatial axis), each at least `minimum`."""
    item = integer(minimum)
    kind = "positive integer" if minimum == 1 else f"integer of at least {minimum}"

    def check(value: Any) -> str | None:
        if item.check(value) is None:
            return None
        if isinstance(value, list) and len(value) == rank and all(item.check(v) is None for v in value):
            return None
        return f"must be a {kind} or a list of {rank}, got {brief(value)}"

    items = {"type": "array", "items": item.schema, "minItems": rank, "maxItems": rank}
    return Arg(check, {"anyOf": [item.schema, items]})


def padding_amounts(rank: int) -> Arg:
    """ZeroPadding/Cropping amounts: an int, a list of `rank` ints, or a list of `rank` [before, after] pairs."""
    item = integer(0)

    def pair(v: Any) -> bool:
        return isinstance(v, list) and len(v) == 2 and all(item.check(x) is None for x in v)

    def check(value: Any) -> str | None:
        if item.check(value) is None:
            return None
        if isinstance(value, list) and rank == 1 and pair(value):
            return None
        if isinstance(value, list) and rank > 1 and len(value) == rank and (
            all(item.check(v) is None for v in value) or all(pair(v) for v in value)
        ):
            return None
        shape = "[before, after]" if rank == 1 else f"a list of {rank} of them, or of {rank} [before, after] pairs"
        return f"must be a non-negative integer, {shape}, got {brief(value)}"

    pair_schema = {"type": "array", "items": item.schema, "minItems": 2, "maxItems": 2}
    if rank == 1:
        return Arg(check, {"anyOf": [item.schema, pair_schema]})
    lists = [{"type": "array", "items": s, "minItems": rank, "maxItems": rank} for s in (item.schema, pair_schema)]
    return Arg(check, {"anyOf": [item.schema, *lists]})


def int_list(minimum: int, allow_minus_one: bool = False, max_items: int = 4) -> Arg:
    """A non-empty list of integers (Reshape target_shape, Permute dims); -1 allowed once where asked."""
    item = integer(minimum)

    def check(value: Any) -> str | None:
        ok = isinstance(value, list) and 1 <= len(value) <= max_items
        ok = ok and all(item.check(v) is None or (allow_minus_one and v == -1 and not isinstance(v, bool)) for v in value)
        ok = ok and (not allow_minus_one or value.count(-1) <= 1)
        if ok:
            return None
        extra = " (one of them may be -1)" if allow_minus_one else ""
        return f"must be a list of 1 to {max_items} integers of at least {minimum}{extra}, got {brief(value)}"

    items = {"anyOf": [item.schema, {"const": -1}]} if allow_minus_one else item.schema
    return Arg(check, {"type": "array", "items": items, "minItems": 1, "maxItems": max_items})


def axis() -> Arg:
    def check(value: Any) -> str | None:
        if is_int(value) and -8 <= value <= 8:
            return None
        return f"must be an axis number (-1 is the last axis), got {brief(value)}"

    return Arg(check, {"type": "integer", "minimum": -8, "maximum": 8})


def axes() -> Arg:
    """One axis or a list of axes (LayerNormalization)."""
    one = axis()

    def check(value: Any) -> str | None:
        if one.check(value) is None or (isinstance(value, list) and 1 <= len(value) <= 8 and all(one.check(v) is None for v in value)):
            return None
        return f"must be an axis number or a list of them, got {brief(value)}"

    return Arg(check, {"anyOf": [one.schema, {"type": "array", "items": one.schema, "minItems": 1, "maxItems": 8}]})


def nullable(arg: Arg) -> Arg:
    return Arg(lambda value: None if value is None else arg.check(value), {"anyOf": [{"type": "null"}, arg.schema]})


def layer_name() -> Arg:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and re.fullmatch(NAME_PATTERN, value):
            return None
        return f"must be 1 to 100 letters, digits, '_', '-' or '.', got {brief(value)}"

    return Arg(check, {"type": "string", "pattern": NAME_PATTERN})


ACTIVATION = nullable(enum(*ACTIVATIONS, what="activation"))
INITIALIZER = enum(*INITIALIZERS, what="initializer")
REGULARIZER = nullable(enum(*REGULARIZERS, what="regularizer"))
CONSTRAINT = nullable(enum(*CONSTRAINTS, what="constraint"))
DATA_FORMAT = enum("channels_last")  # cnnbench's data is channels-last: input_shape [28, 28, 1]
MAX_SEED = 2**32 - 1  # NumPy, TensorFlow and JAX all take a 32-bit seed
SEED = nullable(integer(0, MAX_SEED))
BASE_ARGUMENTS = {"name": layer_name(), "dtype": enum(*FLOAT_DTYPES, what="dtype"), "trainable": boolean()}


# --- layer types ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerType:
    """A layer a spec may use: its typed arguments, the required ones, and how its weights are counted.

    `sizing` names the rule `cnnbench.model.estimate_params` applies before any weight exists; `none` means the
    layer has no weights at all.
    """

    name: str
    arguments: dict[str, Arg]
    required: tuple[str, ...] = ()
    sizing: str = "none"
    group: str = ""
    all_arguments: dict[str, Arg] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "all_arguments", {**self.arguments, **BASE_ARGUMENTS})


def _regularized(*weights: str) -> dict[str, Arg]:
    out: dict[str, Arg] = {}
    for weight in weights:
        out[f"{weight}_initializer"] = INITIALIZER
        out[f"{weight}_regularizer"] = REGULARIZER
        out[f"{weight}_constraint"] = CONSTRAINT
    return out


def _conv(rank: int, kind: str) -> LayerType:
    names = {"conv": f"Conv{rank}D", "transpose": f"Conv{rank}DTranspose", "separable": f"SeparableConv{rank}D",
             "depthwise": f"DepthwiseConv{rank}D"}  # fmt: skip
    paddings = ("valid", "same", "causal") if rank == 1 and kind == "conv" else ("valid", "same")
    args: dict[str, Arg] = {} if kind == "depthwise" else {"filters": integer(1)}
    args.update(kernel_size=int_or_tuple(rank), strides=int_or_tuple(rank), padding=enum(*paddings), data_format=DATA_FORMAT,
                dilation_rate=int_or_tuple(rank), activation=ACTIVATION, use_bias=boolean())  # fmt: skip
    if kind == "conv":
        args["groups"] = integer(1)
    if kind == "transpose":
        args["output_padding"] = nullable(int_or_tuple(rank, minimum=0))
    if kind in ("separable", "depthwise"):
        args["depth_multiplier"] = integer(1)
    weights = {"conv": ("kernel",), "transpose": ("kernel",), "separable": ("depthwise", "pointwise"), "depthwise": ("depthwise",)}
    args.update(_regularized(*weights[kind], "bias"))
    args["activity_regularizer"] = REGULARIZER
    required = ("kernel_size",) if kind == "depthwise" else ("filters", "kernel_size")
    return LayerType(names[kind], args, required, sizing=kind, group="convolution")


def _pooling(rank: int, kind: str) -> list[LayerType]:
    local = {"pool_size": int_or_tuple(rank), "strides": nullable(int_or_tuple(rank)), "padding": enum("valid", "same"),
             "data_format": DATA_FORMAT}  # fmt: skip
    required = ("pool_size",) if kind == "Average" else ()
    glob = {"data_format": DATA_FORMAT, "keepdims": boolean()}
    return [
        LayerType(f"{kind}Pooling{rank}D", local, required, group="pooling"),
        LayerType(f"Global{kind}Pooling{rank}D", glob, group="pooling"),
    ]


def _catalog() -> dict[str, LayerType]:
    rate = number(0, 1, exclusive_max=True)
    layers: list[LayerType] = []
    for rank in (1, 2, 3):
        kinds = ("conv", "transpose", "separable", "depthwise") if rank < 3 else ("conv", "transpose")  # Keras has no 3D separable
        layers += [_conv(rank, kind) for kind in kinds]
    dense = {"units": integer(1), "activation": ACTIVATION, "use_bias": boolean(), **_regularized("kernel", "bias"),
             "activity_regularizer": REGULARIZER}  # fmt: skip
    layers.append(LayerType("Dense", dense, ("units",), sizing="dense", group="core"))
    for rank in (1, 2, 3):
        layers += [*_pooling(rank, "Max"), *_pooling(rank, "Average")]
    layers += [
        LayerType("Flatten", {"data_format": DATA_FORMAT}, group="shape"),
        LayerType("Reshape", {"target_shape": int_list(1, allow_minus_one=True)}, ("target_shape",), group="shape"),
        LayerType("Permute", {"dims": int_list(1)}, ("dims",), group="shape"),
        LayerType("Dropout", {"rate": rate, "seed": SEED}, ("rate",), group="regularization"),
        LayerType("SpatialDropout1D", {"rate": rate, "seed": SEED}, ("rate",), group="regularization"),
        LayerType("SpatialDropout2D", {"rate": rate, "data_format": DATA_FORMAT, "seed": SEED}, ("rate",), group="regularization"),
        LayerType("SpatialDropout3D", {"rate": rate, "data_format": DATA_FORMAT, "seed": SEED}, ("rate",), group="regularization"),
        LayerType("GaussianNoise", {"stddev": number(0), "seed": SEED}, ("stddev",), group="regularization"),
        LayerType("GaussianDropout", {"rate": rate, "seed": SEED}, ("rate",), group="regularization"),
        LayerType("AlphaDropout", {"rate": rate, "seed": SEED}, ("rate",), group="regularization"),
    ]
    norm = {"epsilon": number(0, exclusive_min=True), "center": boolean(), "scale": boolean(), **_regularized("beta", "gamma")}
    layers += [
        LayerType("BatchNormalization", {"axis": axis(), "momentum": number(0, 1), **norm, "moving_mean_initializer": INITIALIZER,
                  "moving_variance_initializer": INITIALIZER}, sizing="batchnorm", group="normalization"),  # fmt: skip
        LayerType("LayerNormalization", {"axis": axes(), **norm}, sizing="layernorm", group="normalization"),
        LayerType("GroupNormalization", {"groups": integer(1), "axis": axis(), **norm}, sizing="groupnorm", group="normalization"),
    ]
    layers += [
        LayerType("Activation", {"activation": enum(*ACTIVATIONS, what="activation")}, ("activation",), group="activation"),
        LayerType("ReLU", {"max_value": nullable(number(0)), "negative_slope": number(0), "threshold": number()}, group="activation"),
        LayerType("LeakyReLU", {"negative_slope": number(0)}, group="activation"),
        LayerType("ELU", {"alpha": number()}, group="activation"),
        LayerType("Softmax", {"axis": axis()}, group="activation"),
        LayerType("PReLU", {**_regularized("alpha"), "shared_axes": nullable(int_list(1))}, sizing="prelu", group="activation"),
    ]
    for rank in (1, 2, 3):
        fmt = {} if rank == 1 else {"data_format": DATA_FORMAT}
        up = {"size": int_or_tuple(rank), **fmt}
        if rank == 2:
            up["interpolation"] = enum("nearest", "bilinear", "bicubic", "lanczos3", "lanczos5", "area")
        layers += [
            LayerType(f"ZeroPadding{rank}D", {"padding": padding_amounts(rank), **fmt}, group="resizing"),
            LayerType(f"Cropping{rank}D", {"cropping": padding_amounts(rank), **fmt}, group="resizing"),
            LayerType(f"UpSampling{rank}D", up, group="resizing"),
        ]
    layers.append(LayerType("Rescaling", {"scale": number(), "offset": number()}, ("scale",), group="resizing"))
    return {layer.name: layer for layer in layers}


LAYERS: dict[str, LayerType] = _catalog()


def check_layer(layer: dict[str, Any]) -> tuple[str, str] | None:
    """The first problem of one layer mapping against the catalog, as (field, message), or None.

    `field` is "type", an argument name, or "" for the layer as a whole.
    """
    kind = layer.get("type")
    if not isinstance(kind, str) or not kind:
        return "type", f"must be a layer type name such as Conv2D, got {brief(kind)}"
    if kind in REFUSED_LAYERS:
        return "type", f"{kind} is not allowed: it {REFUSED_LAYERS[kind]}"
    if kind not in LAYERS:
        return "type", f"unknown layer type {brief(kind)}{did_you_mean(kind, LAYERS)}; the allowed types are listed in docs/spec.md"
    entry = LAYERS[kind]
    for arg, value in layer.items():
        if arg == "type":
            continue
        if arg not in entry.all_arguments:
            extra = " (set the top-level input_shape instead)" if arg in ("input_shape", "input_dim", "batch_input_shape") else ""
            return arg, f"unknown argument for {kind}{did_you_mean(arg, entry.all_arguments)}{extra}"
        if isinstance(value, dict):
            return arg, "must be a number, string, boolean, null or a list of them; nested objects (custom objects) are not allowed"
        if message := entry.all_arguments[arg].check(value):
            return arg, message
    missing = [arg for arg in entry.required if arg not in layer]
    if missing:
        return missing[0], f"is required for {kind}"
    return None


def check_optimizer(name: Any) -> str | None:
    if name in OPTIMIZERS:
        return None
    if isinstance(name, str) and name in WRAPPER_OPTIMIZERS:
        return f"{name} wraps another optimizer, which a spec cannot express; use one of {', '.join(OPTIMIZERS)}"
    return f"unknown optimizer {brief(name)}{did_you_mean(name, OPTIMIZERS)}; known: {', '.join(OPTIMIZERS)}"


# Each optimizer option a spec may set (as a `training` key), and the Keras optimizers that take it; None
# (the default) leaves Keras' own default. tests/test_knobs.py checks the table against Keras' signatures.
_ALL = OPTIMIZERS
OPTIMIZER_OPTIONS: dict[str, tuple[Arg, tuple[str, ...], str]] = {
    "momentum": (number(0, 1, exclusive_max=True), ("sgd", "rmsprop"), "Momentum (SGD, RMSprop), in [0, 1)."),
    "nesterov": (boolean(), ("sgd",), "Nesterov momentum (SGD)."),
    "weight_decay": (number(0), _ALL, "Decoupled weight decay, at least 0."),
    "beta_1": (number(0, 1, exclusive_max=True), ("adam", "adamw", "adamax", "nadam", "lion"), "First-moment decay, in [0, 1)."),
    "beta_2": (number(0, 1, exclusive_max=True), ("adam", "adamw", "adamax", "nadam", "lion"), "Second-moment decay, in [0, 1)."),
    "epsilon": (number(0, exclusive_min=True), ("adam", "adamw", "adamax", "nadam", "rmsprop", "adagrad", "adadelta"),
                "Numerical-stability constant, above 0."),
    "clipnorm": (number(0, exclusive_min=True), _ALL, "Clip each gradient to this norm (one of clipnorm, clipvalue, global_clipnorm)."),
    "clipvalue": (number(0, exclusive_min=True), _ALL, "Clip each gradient element to ± this value."),
    "global_clipnorm": (number(0, exclusive_min=True), _ALL, "Clip all gradients together to this global norm."),
}  # fmt: skip
CLIP_OPTIONS = ("clipnorm", "clipvalue", "global_clipnorm")  # Keras takes at most one


def optimizer_option_problem(optimizer: str, options: dict[str, Any]) -> tuple[str, str] | None:
    """(key, message) for an option set that the optimizer does not take, or two clip options at once; else None."""
    for key, value in options.items():
        if value is None or key not in OPTIMIZER_OPTIONS:
            continue
        takers = OPTIMIZER_OPTIONS[key][1]
        if optimizer not in takers:
            return key, f"is an option of {', '.join(takers)}, not of {optimizer}"
    clips = [key for key in CLIP_OPTIONS if options.get(key) is not None]
    if len(clips) > 1:
        return clips[1], f"cannot be set together with {clips[0]}: Keras clips gradients one way at a time"
    return None


def mapping(fields: dict[str, Arg], required: tuple[str, ...] = (), what: str = "") -> Arg:
    """An object of typed keys: its check returns (key, message) so the error names the field inside it."""

    def check(value: Any) -> str | tuple[str, str] | None:
        if not isinstance(value, dict):
            return f"must be a mapping{' ' + what if what else ''}, got {brief(value)}"
        for key, item in value.items():
            if not isinstance(key, str) or key not in fields:
                return str(key)[:40], f"unknown key{did_you_mean(key, fields)}; known: {', '.join(fields)}"
            if message := fields[key].check(item):
                return key, message
        for key in required:
            if key not in value:
                return key, "is required"
        return None

    properties = {k: {**arg.schema, **({"description": arg.help} if arg.help else {})} for k, arg in fields.items()}
    schema = {"type": "object", "additionalProperties": False, "required": list(required), "properties": properties}
    return Arg(check, schema)


LR_SCHEDULES = ("constant", "step", "exponential", "cosine")
_SCHEDULE_KEYS = {"constant": (), "step": ("step_epochs", "factor"), "exponential": ("factor",), "cosine": ("alpha",)}


def _lr_schedule() -> Arg:
    fields = {
        "type": Arg(enum(*LR_SCHEDULES).check, enum(*LR_SCHEDULES).schema, "constant, step, exponential or cosine (per epoch)."),
        "warmup_epochs": Arg(integer(0).check, integer(0).schema, "Epochs of linear warm-up from rate/(w+1) up to the rate (default 0)."),
        "step_epochs": Arg(integer(1).check, integer(1).schema, "step: multiply the rate by `factor` every this many epochs (default 10)."),
        "factor": Arg(number(0, 1, exclusive_min=True).check, number(0, 1, exclusive_min=True).schema,
                      "step: the factor per step (default 0.1); exponential: per epoch (default 0.9). In (0, 1]."),
        "alpha": Arg(number(0, 1).check, number(0, 1).schema, "cosine: the final rate as a fraction of the rate (default 0), in [0, 1]."),
    }  # fmt: skip
    inner = mapping(fields, required=("type",), what="like {type: cosine, warmup_epochs: 2}")

    def check(value: Any) -> str | tuple[str, str] | None:
        if problem := inner.check(value):
            return problem
        allowed = ("type", "warmup_epochs", *_SCHEDULE_KEYS[value["type"]])
        wrong = next((key for key in value if key not in allowed), None)
        if wrong:
            return wrong, f"does not apply to a {value['type']} schedule (it takes {', '.join(allowed)})"
        return None

    return Arg(check, inner.schema)


def _early_stopping() -> Arg:
    fields = {
        "patience": Arg(integer(1).check, integer(1).schema, "Stop after this many epochs without improvement of the validation error."),
        "min_delta": Arg(number(0, 1).check, number(0, 1).schema, "The least drop of the validation error that counts (default 0)."),
    }  # fmt: skip
    return mapping(fields, required=("patience",), what="like {patience: 3, min_delta: 0.001}")


LR_SCHEDULE = _lr_schedule()
EARLY_STOPPING = _early_stopping()


SHARED_ARGS = {"activation": ACTIVATION, "initializer": INITIALIZER, "regularizer": REGULARIZER, "constraint": CONSTRAINT,
               "data_format": DATA_FORMAT, "seed": SEED}  # fmt: skip


def layer_schema(entry: LayerType) -> dict[str, Any]:
    """The JSON Schema `then` branch of one layer type: typed arguments, required ones, nothing else.

    Arguments of the shared types refer to `#/$defs/<name>` (`SHARED_ARGS`), which `cnnbench.spec.json_schema` defines.
    """
    shared = {id(arg): name for name, arg in SHARED_ARGS.items()}
    props: dict[str, Any] = {"type": {"const": entry.name}}
    for arg, spec in entry.all_arguments.items():
        props[arg] = {"$ref": f"#/$defs/{shared[id(spec)]}"} if id(spec) in shared else dict(spec.schema)
    return {"properties": props, "required": ["type", *entry.required], "additionalProperties": False}
