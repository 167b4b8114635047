"""From a spec to a Keras model: shapes, parameter counts before allocation, FLOPs, the output check.

FLOPs are forward FLOPs per sample, one multiply-add counted as 2 FLOPs, for the layers that
multiply (Dense, Conv*, DepthwiseConv*, SeparableConv*, Conv*Transpose); everything else counts 0.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

from cnnbench.catalog import LAYERS, check_layer
from cnnbench.device import import_keras
from cnnbench.errors import SpecError, UsageError, brief
from cnnbench.spec import Spec, default_layer_name

DEFAULT_MAX_PARAMS = 100_000_000


def max_params() -> int:
    """Largest model `check_layers` accepts (env `CNNBENCH_MAX_PARAMS` overrides the default 10^8)."""
    text = os.environ.get("CNNBENCH_MAX_PARAMS", "").strip()
    if not text:
        return DEFAULT_MAX_PARAMS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"CNNBENCH_MAX_PARAMS must be a positive integer such as 100000000, got {brief(text)}")
    return value


# --- counting --------------------------------------------------------------------------------

_RESHAPING = ("Flatten", "Reshape", "Permute")  # the only layers without weights that change the last (channel) axis


def _spec_kernel(layer: dict) -> int:
    size = layer.get("kernel_size", 1)
    rank = next((int(c) for c in layer["type"] if c.isdigit()), 1)
    return _prod(size) if isinstance(size, list) else int(size) ** rank


def params_lower_bound(spec: Spec) -> tuple[int, int]:
    """(a lower bound of the parameter count, the index of the layer where it was reached), from the spec alone.

    Needs no Keras: the channel count is followed through the layers while it is known (an unknown input
    width counts as 1), so a 10^9-unit Dense is refused in milliseconds, before TensorFlow is imported.
    """
    channels: int | None = int(spec.input_shape[-1])
    total, where = 0, 0
    for index, layer in enumerate(spec.layers):
        entry = LAYERS.get(layer.get("type"))
        sizing = entry.sizing if entry else "none"
        c_in = channels or 1
        with_bias = layer.get("use_bias", True)
        bias = lambda n, with_bias=with_bias: n if with_bias else 0  # noqa: E731
        if sizing == "dense":
            count, channels = c_in * layer["units"] + bias(layer["units"]), layer["units"]
        elif sizing == "conv":
            per_filter = _spec_kernel(layer) * max(1, c_in // (layer.get("groups") or 1))
            count, channels = per_filter * layer["filters"] + bias(layer["filters"]), layer["filters"]
        elif sizing == "transpose":
            count, channels = _spec_kernel(layer) * c_in * layer["filters"] + bias(layer["filters"]), layer["filters"]
        elif sizing == "separable":
            dm = layer.get("depth_multiplier", 1)
            count = _spec_kernel(layer) * c_in * dm + c_in * dm * layer["filters"] + bias(layer["filters"])
            channels = layer["filters"]
        elif sizing == "depthwise":
            dm = layer.get("depth_multiplier", 1)
            count = _spec_kernel(layer) * c_in * dm + bias(c_in * dm)
            channels = None if channels is None else channels * dm
        else:
            count = 0
            if layer.get("type") in _RESHAPING:
                channels = None
        if count:
            total, where = total + count, index
            if total > max_params():  # the first layer that crosses the limit is the one to name
                break
    return total, where


def check_size(spec: Spec) -> None:
    """SpecError for a model certainly above the parameter limit: the size check that needs neither Keras nor data."""
    bound, index = params_lower_bound(spec)
    if bound > max_params():
        message = f"the model would have at least {bound:,} parameters, above the limit of {max_params():,}"
        raise SpecError(spec.source, f"layers[{index}]", message)


def _prod(values) -> int:
    return math.prod(int(v) for v in values)


def _kernel(layer) -> tuple[int, ...]:
    return tuple(getattr(layer, "kernel_size", ()) or ())


def _axis(where: tuple[str, int], axis: int, shape: tuple) -> int:
    source, index = where
    rank = len(shape)
    position = axis + rank if axis < 0 else axis
    if not 1 <= position < rank:
        message = f"axis {axis} is not a feature axis of the input shape {format_shape(shape)} (axis 0 is the batch)"
        raise SpecError(source, f"layers[{index}].axis", message)
    return position


def estimate_params(layer, in_shape: tuple, where: tuple[str, int] = ("<spec>", 0)) -> int:
    """Weights a layer will allocate, worked out from its arguments and input shape before any weight exists.

    Every layer type in the catalog has a sizing rule (`LayerType.sizing`); a type without one cannot be sized,
    so it is refused here rather than let through uncounted. `where` is (spec source, layer index) for messages.
    """
    kind = type(layer).__name__
    entry = LAYERS.get(kind)
    if entry is None:
        raise SpecError(where[0], f"layers[{where[1]}].type", f"{kind} cannot be sized, so it is not allowed")
    c_in = in_shape[-1] or 0
    bias = lambda n: n if getattr(layer, "use_bias", False) else 0  # noqa: E731
    sizing = entry.sizing
    if sizing == "none":
        return 0
    if sizing == "dense":
        return c_in * layer.units + bias(layer.units)
    if sizing == "separable":
        dm = layer.depth_multiplier
        return _prod(_kernel(layer)) * c_in * dm + c_in * dm * layer.filters + bias(layer.filters)
    if sizing == "depthwise":
        return _prod(_kernel(layer)) * c_in * layer.depth_multiplier + bias(c_in * layer.depth_multiplier)
    if sizing == "transpose":
        return _prod(_kernel(layer)) * c_in * layer.filters + bias(layer.filters)
    if sizing == "conv":
        groups = getattr(layer, "groups", 1) or 1
        if c_in % groups:
            message = f"groups {groups} must divide the {c_in} input channels of shape {format_shape(in_shape)}"
            raise SpecError(where[0], f"layers[{where[1]}].groups", message)
        return _prod(_kernel(layer)) * (c_in // groups) * layer.filters + bias(layer.filters)
    if sizing == "batchnorm":
        channels = in_shape[_axis(where, layer.axis, in_shape)]
        return channels * (2 + bool(layer.center) + bool(layer.scale))  # moving mean and variance, beta, gamma
    if sizing == "layernorm":
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        size = _prod(in_shape[_axis(where, a, in_shape)] for a in axes)
        return size * (bool(layer.center) + bool(layer.scale))
    if sizing == "groupnorm":
        channels = in_shape[_axis(where, layer.axis, in_shape)]
        if channels % layer.groups:
            message = f"groups {layer.groups} must divide the {channels} channels of shape {format_shape(in_shape)}"
            raise SpecError(where[0], f"layers[{where[1]}].groups", message)
        return channels * (bool(layer.center) + bool(layer.scale))
    if sizing == "prelu":
        alpha = list(in_shape[1:])
        for shared in layer.shared_axes or ():
            if not 1 <= shared <= len(alpha):
                message = f"axis {shared} is not an axis of the input shape {format_shape(in_shape)} (1 is the first after the batch)"
                raise SpecError(where[0], f"layers[{where[1]}].shared_axes", message)
            alpha[shared - 1] = 1
        return _prod(alpha)
    raise SpecError(where[0], f"layers[{where[1]}].type", f"{kind} has no sizing rule, so it is not allowed")


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


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _instantiate(spec: Spec, index: int):
    """The Keras layer object of `spec.layers[index]` (no weights yet), after the catalog's checks."""
    import keras

    layer_spec = spec.layers[index]
    where = f"layers[{index}]"
    if problem := check_layer(layer_spec):  # again here: a Spec can be made without parse_spec
        arg, message = problem
        raise SpecError(spec.source, f"{where}.{arg}" if arg else where, message)
    kind = layer_spec["type"]
    kwargs = {k: v for k, v in layer_spec.items() if k != "type"}
    for arg, value in kwargs.items():
        if isinstance(value, list) and arg not in ("target_shape", "dims", "shared_axes", "axis"):
            kwargs[arg] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    kwargs.setdefault("name", default_layer_name(index, kind))
    try:
        return getattr(keras.layers, kind)(**kwargs)
    except (ValueError, TypeError, KeyError) as exc:
        raise SpecError(spec.source, where, f"Keras rejects this {kind}: {_first_line(exc)}") from None


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
        params += estimate_params(layer, shape, (spec.source, index))
        if params > max_params():
            raise SpecError(
                spec.source, f"layers[{index}]", f"the model would have at least {params:,} parameters, above the limit of {max_params():,}"
            )
        try:
            out = tuple(layer.compute_output_shape(shape))
        except Exception as exc:  # Keras raises many types here; all mean "cannot follow"
            message = f"{kind} cannot follow {source} with shape {format_shape(shape)}: {_first_line(exc)}"
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


def num_classes(spec: Spec, output_shape: tuple) -> int:
    """Classes the spec's data has (`data.dataset_classes`): MNIST's ten; for synthetic data, whatever the model outputs."""
    from cnnbench.data import dataset_classes  # NumPy, only once a model is checked

    return dataset_classes(spec.data.dataset, None if output_shape[-1] is None else int(output_shape[-1]))


def check_output(spec: Spec, shapes: list[tuple] | None = None) -> None:
    """The model must output one score per class: shape (None, classes), classes matching the dataset.

    Needs no data, so `build` runs it as well as `train`. `shapes` are check_layers' output shapes.
    """
    if shapes is None:
        _, shapes, _ = check_layers(spec)
    out, where = tuple(shapes[-1]), f"layers[{len(spec.layers) - 1}]"
    if len(out) != 2:
        message = (f"the model must output one score per class, shape (None, classes), but it outputs shape {format_shape(out)}; "
                   "add a Flatten or a global pooling layer before the last Dense")  # fmt: skip
        raise SpecError(spec.source, where, message)
    classes = num_classes(spec, out)
    if spec.data.dataset == "synthetic" and classes < 2:
        raise SpecError(spec.source, where, f"a classifier needs at least 2 outputs (classes), but it outputs shape {format_shape(out)}")
    if out[-1] != classes:
        dataset = spec.data.dataset
        message = f"the model must end in {classes} outputs (one per class of {dataset}), but it outputs shape {format_shape(out)}"
        raise SpecError(spec.source, where, message)


def build_model(spec: Spec):
    """Validate the spec (layers, shapes, size, output) and build the Keras model, weights seeded with `spec.training.seed`."""
    check_size(spec)  # before Keras is imported: a model far too large is refused in milliseconds
    keras = import_keras()

    keras.utils.set_random_seed(spec.training.seed)
    layers, shapes, _ = check_layers(spec)
    check_output(spec, shapes)
    try:
        return keras.Sequential([keras.Input(shape=spec.input_shape), *layers], name=spec.name)
    except (ValueError, TypeError) as exc:  # a net under the checks above: still one line, never a traceback
        raise SpecError(spec.source, "layers", f"Keras rejects the model: {_first_line(exc)}") from None


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


def sizes_by_filters(spec: Spec, filters: list[int]) -> dict[str, dict[str, int]]:
    """Parameters and forward FLOPs per sample of `spec` with each filter count (Keras imported): {"8": {...}}."""
    sizes = {}
    for count in filters:
        summary = summarize(spec.with_filters(count))
        sizes[str(count)] = {"params": summary.total_params, "flops_per_sample": summary.flops_per_sample}
    return sizes
