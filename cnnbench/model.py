"""From a spec to a Keras model: layer validation against Keras, shapes, parameter and FLOP counts.

FLOPs are forward FLOPs per sample, one multiply-add counted as 2 FLOPs, for the layers that
multiply (Dense, Conv*, DepthwiseConv*, SeparableConv*, Conv*Transpose); everything else counts 0.
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

from cnnbench.device import import_keras
from cnnbench.errors import SpecError
from cnnbench.spec import Spec, _did_you_mean, one_of, positive_int

# Layers that would run code from the spec, need Python objects as arguments, or duplicate `input_shape`.
REFUSED_LAYERS = {
    "Lambda": "runs arbitrary Python code, which specs may not do",
    "TFSMLayer": "loads an external SavedModel, which specs may not do",
    "JaxLayer": "wraps arbitrary Python code",
    "FlaxLayer": "wraps arbitrary Python code",
    "TorchModuleWrapper": "wraps arbitrary Python code",
    "InputLayer": "is implied: use the top-level input_shape instead",
    "Layer": "is the abstract base class",
    "Wrapper": "needs a layer object, which a spec cannot express",
    "Bidirectional": "needs a layer object, which a spec cannot express",
    "TimeDistributed": "needs a layer object, which a spec cannot express",
    "RNN": "needs a cell object, which a spec cannot express",
    "StackedRNNCells": "needs cell objects, which a spec cannot express",
}
BASE_LAYER_ARGUMENTS = ("name", "dtype", "trainable")
DEFAULT_MAX_PARAMS = 100_000_000


def max_params() -> int:
    """Largest model `check_layers` accepts (env `CNNBENCH_MAX_PARAMS` overrides the default 10^8)."""
    return int(os.environ.get("CNNBENCH_MAX_PARAMS", DEFAULT_MAX_PARAMS))


@cache
def layer_catalog() -> dict[str, tuple[str, ...]]:
    """Every usable class in `keras.layers`, mapped to the constructor arguments a spec may set."""
    keras = import_keras()

    catalog = {}
    for name in dir(keras.layers):
        cls = getattr(keras.layers, name)
        if not (inspect.isclass(cls) and issubclass(cls, keras.layers.Layer)) or name in REFUSED_LAYERS:
            continue
        params = inspect.signature(cls.__init__).parameters.values()
        own = [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        catalog[name] = tuple(dict.fromkeys([*own, *BASE_LAYER_ARGUMENTS]))
    return catalog


# --- argument checks for the arguments most specs use ----------------------------------------


def _int_or_ints(value: Any) -> str | None:
    ints = value if isinstance(value, list) else [value]
    if ints and all(positive_int(v) is None for v in ints):
        return None
    return f"must be a positive integer or a list of them, got {value!r}"


def _fraction(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1:
        return None
    return f"must be a number in [0, 1), got {value!r}"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _activation(value: Any) -> str | None:
    import keras

    if value is None:
        return None
    if not isinstance(value, str):
        return f"must be the name of a Keras activation, got {value!r}"
    try:
        keras.activations.get(value)
    except (ValueError, TypeError):
        known = [
            n for n in dir(keras.activations) if not n.startswith("_") and n.islower() and n not in ("get", "serialize", "deserialize")
        ]
        return f"unknown activation {value!r}{_did_you_mean(value, known)}"
    return None


ARGUMENT_CHECKS = {
    "filters": positive_int,
    "units": positive_int,
    "depth_multiplier": positive_int,
    "groups": positive_int,
    "kernel_size": _int_or_ints,
    "strides": _int_or_ints,
    "pool_size": _int_or_ints,
    "dilation_rate": _int_or_ints,
    "size": _int_or_ints,
    "rate": _fraction,
    "padding": one_of("valid", "same", "causal"),
    "activation": _activation,
    "use_bias": _boolean,
}


def _plain_value(value: Any) -> bool:
    if isinstance(value, list):
        return all(_plain_value(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


# --- counting --------------------------------------------------------------------------------


def _prod(values) -> int:
    return math.prod(int(v) for v in values)


def _kernel(layer) -> tuple[int, ...]:
    return tuple(getattr(layer, "kernel_size", ()) or ())


def estimate_params(layer, in_shape: tuple) -> int:
    """Weights a layer will allocate, worked out before allocating them (0 for unknown kinds)."""
    kind = type(layer).__name__
    c_in = in_shape[-1] or 0
    bias = lambda n: n if getattr(layer, "use_bias", False) else 0  # noqa: E731
    if kind == "Dense":
        return c_in * layer.units + bias(layer.units)
    if kind == "Embedding":
        return layer.input_dim * layer.output_dim
    if kind.startswith("SeparableConv"):
        dm = layer.depth_multiplier
        return _prod(_kernel(layer)) * c_in * dm + c_in * dm * layer.filters + bias(layer.filters)
    if kind.startswith("DepthwiseConv"):
        return _prod(_kernel(layer)) * c_in * layer.depth_multiplier + bias(c_in * layer.depth_multiplier)
    if kind.startswith("Conv") and hasattr(layer, "filters"):
        groups = getattr(layer, "groups", 1) or 1
        return _prod(_kernel(layer)) * (c_in // groups) * layer.filters + bias(layer.filters)
    return 0


def forward_flops(layer, in_shape: tuple, out_shape: tuple) -> int:
    """Forward FLOPs per sample (2 per multiply-add) for the layers that multiply; 0 otherwise."""
    kind = type(layer).__name__
    c_in = in_shape[-1]
    if kind == "Dense":
        return 2 * c_in * layer.units * _prod(out_shape[1:-1])
    if kind.startswith("SeparableConv"):
        dm = layer.depth_multiplier
        spatial = _prod(out_shape[1:-1])
        return 2 * spatial * c_in * dm * (_prod(_kernel(layer)) + layer.filters)
    if kind.startswith("DepthwiseConv"):
        return 2 * _prod(out_shape[1:-1]) * _prod(_kernel(layer)) * c_in * layer.depth_multiplier
    if kind.startswith("Conv") and kind.endswith("Transpose"):
        return 2 * _prod(in_shape[1:-1]) * _prod(_kernel(layer)) * c_in * layer.filters
    if kind.startswith("Conv") and hasattr(layer, "filters"):
        groups = getattr(layer, "groups", 1) or 1
        return 2 * _prod(out_shape[1:-1]) * _prod(_kernel(layer)) * (c_in // groups) * layer.filters
    return 0


# --- validation and building -----------------------------------------------------------------


@dataclass(frozen=True)
class LayerInfo:
    index: int
    type: str
    output_shape: tuple
    params: int
    flops: int


@dataclass(frozen=True)
class ModelSummary:
    """What `cnnbench build` shows: per-layer rows and totals."""

    name: str
    input_shape: tuple
    layers: tuple[LayerInfo, ...]
    total_params: int
    trainable_params: int
    flops_per_sample: int

    @property
    def output_shape(self) -> tuple:
        return self.layers[-1].output_shape

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        out["output_shape"] = list(self.output_shape)
        for row in out["layers"]:
            row["output_shape"] = list(row["output_shape"])
        return out


def _instantiate(spec: Spec, index: int):
    import keras

    layer_spec = spec.layers[index]
    where = f"layers[{index}]"
    kind = layer_spec["type"]
    if kind in REFUSED_LAYERS:
        raise SpecError(spec.source, f"{where}.type", f"{kind} is not allowed: it {REFUSED_LAYERS[kind]}")
    catalog = layer_catalog()
    if kind not in catalog:
        hint = _did_you_mean(kind, catalog)
        raise SpecError(spec.source, f"{where}.type", f"unknown layer type {kind!r}{hint}; any class in keras.layers works")
    allowed = catalog[kind]
    kwargs = {k: v for k, v in layer_spec.items() if k != "type"}
    for arg, value in kwargs.items():
        if arg not in allowed:
            hint = _did_you_mean(arg, allowed)
            extra = " (set the top-level input_shape instead)" if arg in ("input_shape", "input_dim", "batch_input_shape") else ""
            raise SpecError(spec.source, f"{where}.{arg}", f"unknown argument for {kind}{hint}{extra}")
        if not _plain_value(value):
            raise SpecError(
                spec.source,
                f"{where}.{arg}",
                "must be a number, string, boolean, null or a list of them; nested objects (custom objects) are not allowed",
            )
        if arg in ARGUMENT_CHECKS and (message := ARGUMENT_CHECKS[arg](value)):
            raise SpecError(spec.source, f"{where}.{arg}", message)
    kwargs.setdefault("name", f"{index:02d}_{kind.lower()}")
    try:
        return getattr(keras.layers, kind)(**kwargs)
    except (ValueError, TypeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(spec.source, where, f"Keras rejects this {kind}: {first}") from None


def _rank_problem(layer, shape: tuple) -> str | None:
    spec = layer.input_spec
    spec = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    if spec is None:
        return None
    rank = len(shape)
    if getattr(spec, "ndim", None) is not None and rank != spec.ndim:
        return f"needs inputs with {spec.ndim} dimensions (batch included)"
    if getattr(spec, "min_ndim", None) is not None and rank < spec.min_ndim:
        return f"needs inputs with at least {spec.min_ndim} dimensions (batch included)"
    if getattr(spec, "max_ndim", None) is not None and rank > spec.max_ndim:
        return f"needs inputs with at most {spec.max_ndim} dimensions (batch included)"
    return None


def check_layers(spec: Spec) -> tuple[list, list[tuple], int]:
    """Validate every layer against Keras and the shapes flowing through the model.

    Returns the layer objects (not yet built: no weights allocated), the output shape of each and
    the estimated parameter count. Raises SpecError naming the layer and argument at fault.
    """
    shape = (None, *spec.input_shape)
    layers, shapes, params = [], [], 0
    for index in range(len(spec.layers)):
        layer = _instantiate(spec, index)
        kind = spec.layers[index]["type"]
        source = "input_shape" if index == 0 else f"layers[{index - 1}] ({spec.layers[index - 1]['type']})"
        if problem := _rank_problem(layer, shape):
            path = "input_shape" if index == 0 else f"layers[{index}]"
            raise SpecError(spec.source, path, f"{kind} {problem}, but {source} gives shape {format_shape(shape)}")
        params += estimate_params(layer, shape)
        if params > max_params():
            raise SpecError(
                spec.source, f"layers[{index}]", f"the model would have at least {params:,} parameters, above the limit of {max_params():,}"
            )
        try:
            out = tuple(layer.compute_output_shape(shape))
        except Exception as exc:  # Keras raises many types here; all mean "cannot follow"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            message = f"{kind} cannot follow {source} with shape {format_shape(shape)}: {first}"
            raise SpecError(spec.source, f"layers[{index}]", message) from None
        if any(d is not None and d <= 0 for d in out[1:]):
            message = f"{kind} turns shape {format_shape(shape)} into {format_shape(out)}: the input is too small"
            raise SpecError(spec.source, f"layers[{index}]", message)
        layers.append(layer)
        shapes.append(out)
        shape = out
    return layers, shapes, params


def format_shape(shape: tuple) -> str:
    """(None, 28, 28, 16) as Keras prints it."""
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def build_model(spec: Spec):
    """Validate the spec and build the Keras model (weights seeded with `spec.training.seed`)."""
    keras = import_keras()

    keras.utils.set_random_seed(spec.training.seed)
    layers, _, _ = check_layers(spec)
    return keras.Sequential([keras.Input(shape=spec.input_shape), *layers], name=spec.name)


def summarize(spec: Spec, model=None) -> ModelSummary:
    """Layer table, exact parameter count (from Keras) and forward FLOPs per sample."""
    model = model if model is not None else build_model(spec)
    shape = (None, *spec.input_shape)
    rows, flops = [], 0
    for index, layer in enumerate(model.layers):
        out = tuple(layer.output.shape)
        layer_flops = forward_flops(layer, shape, out)
        rows.append(LayerInfo(index, spec.layers[index]["type"], out, int(layer.count_params()), layer_flops))
        flops += layer_flops
        shape = out
    trainable = sum(int(math.prod(w.shape)) for w in model.trainable_weights)
    return ModelSummary(spec.name, tuple(spec.input_shape), tuple(rows), int(model.count_params()), trainable, flops)
