"""Numbers as machines read them (run.json, CSV files, --json): each at the precision it has.

Keras reports metrics as float32; widened to a Python float, 0.926 reads 0.9259999990463257. A float
that is exactly a float32 is written as the shortest decimal that reads back as the same float32
(0.926); NaN and infinities, which JSON lacks, become null. Other floats (timings) are kept as they are.
"""

from __future__ import annotations

import math
import struct
from typing import Any

_F32 = struct.Struct("f")


def plain_number(value: float) -> float | None:
    """`value` without float32 noise; None for NaN or an infinity.

    >>> plain_number(0.9259999990463257), plain_number(8.412711144999776), plain_number(float("nan"))
    (0.926, 8.412711144999776, None)
    """
    if not math.isfinite(value):
        return None
    if value.is_integer():  # a count or a whole number of seconds: exact as it is
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


def plain(data: Any) -> Any:
    """`data` (dicts, lists, tuples of JSON values) with every float passed through `plain_number`."""
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
