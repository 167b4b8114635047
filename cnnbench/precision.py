"""Numbers as machines read them (run.json, CSV files, --json): each at the precision it has.

Keras reports metrics as float32; widened to a Python float, 0.926 reads 0.9259999990463257. Where
metrics enter a run (`metric_value`: each history row, the test metrics) they become the shortest
decimal of their float32 (0.926), so the record in memory and on disk agree; timings and other
float64 values keep their digits. NaN and infinities, which JSON lacks, are written as null (`plain`).
"""

from __future__ import annotations

import math
import struct
from typing import Any

_F32 = struct.Struct("f")


def metric_value(value: float) -> float:
    """A Keras metric (a float32 widened to a Python float) as the shortest decimal of that float32;
    NaN and infinities are kept (divergence is read from them).

    >>> metric_value(0.9259999990463257), metric_value(8.412711144999776), 1.0 - metric_value(0.07400000095367432)
    (0.926, 8.412711144999776, 0.926)
    """
    value = float(value)
    if not math.isfinite(value) or value.is_integer():
        return value
    try:
        as32 = _F32.unpack(_F32.pack(value))[0]
    except OverflowError:  # beyond float32's range: not a float32
        return value
    if as32 != value:
        return value
    for digits in range(1, 10):  # 9 significant digits always identify a float32
        short = float(f"{value:.{digits}g}")
        if _F32.unpack(_F32.pack(short))[0] == as32:
            return short
    return value


def plain_number(value: float) -> float | None:
    """`value`, or None for NaN and infinities (JSON has neither).

    >>> plain_number(0.5), plain_number(float("nan"))
    (0.5, None)
    """
    return value if math.isfinite(value) else None


def plain(data: Any) -> Any:
    """`data` (dicts, lists, tuples of JSON values) with NaN and infinities as None."""
    if isinstance(data, float):
        return plain_number(data)
    if type(data).__module__ == "numpy" and getattr(data, "shape", None) == ():  # numpy scalars (float32 is no Python float)
        return plain(data.item())
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [plain(v) for v in data]
    return data


def dumps(data: Any, indent: int | None = 2) -> str:
    """JSON text of `data` with plain numbers and null for NaN: always valid JSON."""
    import json

    return json.dumps(plain(data), indent=indent, allow_nan=False)
