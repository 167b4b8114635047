"""The layer table `cnnbench build` prints (output shape, parameters, forward FLOPs), worked out from a
recorded spec without Keras for the layers the course networks use; other layers show '?'.

>>> rows = layer_table({"input_shape": [28, 28, 1], "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10}]})
>>> [(r["type"], r["output_shape"], r["params"], r["flops"]) for r in rows]
[('Flatten', '(None, 784)', 0, 0), ('Dense', '(None, 10)', 7850, 15680)]
"""

from __future__ import annotations

import math
from typing import Any

_SKIP_KEYS = ("type", "name")


def _pair(value: Any, default: int) -> tuple[int, int]:
    if value is None:
        return default, default
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


def _spatial(size: int, kernel: int, stride: int, padding: str) -> int:
    return math.ceil(size / stride) if padding == "same" else (size - kernel) // stride + 1


def _step(layer: dict[str, Any], shape: tuple) -> tuple[tuple, int, int] | None:
    """(output shape without batch, parameters, forward FLOPs) of one layer, None when unknown here."""
    kind = layer.get("type")
    if kind in ("Dropout", "Activation", "ReLU", "Softmax", "GaussianNoise"):
        return shape, 0, 0
    if kind == "Flatten":
        return (math.prod(shape),), 0, 0
    if kind == "Dense" and len(shape) == 1:
        units = int(layer.get("units", 0))
        bias = units if layer.get("use_bias", True) else 0
        return (units,), shape[0] * units + bias, 2 * shape[0] * units
    if kind == "Conv2D" and len(shape) == 3:
        kh, kw = _pair(layer.get("kernel_size"), 3)
        sh, sw = _pair(layer.get("strides"), 1)
        padding = str(layer.get("padding", "valid")).lower()
        filters = int(layer.get("filters", 0))
        out = (_spatial(shape[0], kh, sh, padding), _spatial(shape[1], kw, sw, padding), filters)
        bias = filters if layer.get("use_bias", True) else 0
        return out, kh * kw * shape[2] * filters + bias, 2 * kh * kw * shape[2] * filters * out[0] * out[1]
    if kind in ("MaxPooling2D", "AveragePooling2D") and len(shape) == 3:
        ph, pw = _pair(layer.get("pool_size"), 2)
        sh, sw = _pair(layer.get("strides"), 0)
        sh, sw = sh or ph, sw or pw
        padding = str(layer.get("padding", "valid")).lower()
        return (_spatial(shape[0], ph, sh, padding), _spatial(shape[1], pw, sw, padding), shape[2]), 0, 0
    if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D") and len(shape) == 3:
        return (shape[2],), 0, 0
    if kind == "BatchNormalization":
        return shape, 4 * shape[-1], 0
    return None


def layer_table(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per layer: index, type, arguments, output shape, parameters and FLOPs (None after an unknown layer)."""
    shape: tuple | None = tuple(int(d) for d in spec.get("input_shape") or []) or None
    rows = []
    for index, layer in enumerate(spec.get("layers") or []):
        if not isinstance(layer, dict):
            continue
        step = _step(layer, shape) if shape is not None else None
        shape = step[0] if step else None
        args = ", ".join(f"{k}={v}" for k, v in layer.items() if k not in _SKIP_KEYS)
        rows.append(
            {
                "index": index,
                "type": str(layer.get("type")),
                "arguments": args,
                "output_shape": "(" + ", ".join(["None", *map(str, shape)]) + ")" if shape else "?",
                "params": step[1] if step else None,
                "flops": step[2] if step else None,
            }
        )
    return rows
