"""The `--values` grammar of sweeps: comma lists of numbers and ranges, parsed into clean floats.

Pure Python (decimal arithmetic), so `--dry-run` and error messages never wait for Keras.

>>> parse_values("0.01,0.02:0.16:0.04")
[0.01, 0.02, 0.06, 0.1, 0.14]
>>> parse_values("1e-4:1e-1:*10")
[0.0001, 0.001, 0.01, 0.1]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import ROUND_FLOOR, Decimal, InvalidOperation, localcontext

from cnnbench.errors import UsageError

MAX_VALUES = 1000  # a typo such as 1e-9:1:1e-9 should fail at once, not try to plan a billion runs
SIGNIFICANT_DIGITS = 12  # enough for any learning rate a person types; hides binary noise (0.07000000000000001)
_GEOMETRIC_TOLERANCE = Decimal("1e-9")  # 1e-3:1:*3.16227766 should still reach 1


def clean(value: float) -> float:
    """`value` rounded to 12 significant digits: the float a person meant.

    >>> clean(0.01 + 6 * 0.01)
    0.07
    """
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def format_value(value: float) -> str:
    """The shortest text that reads back as the same clean value: 0.07, 0.0001, 1e-05, 500.

    >>> format_value(0.07), format_value(1e-5), format_value(500.0)
    ('0.07', '1e-05', '500')
    """
    return f"{clean(value):.{SIGNIFICANT_DIGITS}g}"


def _error(message: str) -> UsageError:
    return UsageError(f"`values`: {message}")


def _where(text: str, item: str) -> str:
    return f" in {item!r}" if text.strip() != item else ""


def _number(text: str, item: str) -> Decimal:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise _error(f"{text.strip()!r}{_where(text, item)} is not a number") from None
    if not number.is_finite() or math.isinf(float(number)) or (number != 0 and float(number) == 0):
        raise _error(f"{text.strip()!r}{_where(text, item)} is not a usable number (NaN, infinite, or beyond the range of a float)")
    return number


def _positive(number: Decimal, text: str, item: str) -> Decimal:
    if number <= 0:
        raise _error(f"learning rates must be positive, got {text.strip()}{_where(text, item)}")
    return number


def _too_many(count: float, item: str) -> UsageError:
    many = "too many" if math.isinf(count) else f"{int(count):,}"
    return _error(f"{item!r} gives {many} values; at most {MAX_VALUES:,} are allowed")


def _arithmetic(start: Decimal, stop: Decimal, step: Decimal, item: str) -> list[Decimal]:
    if step <= 0:
        raise _error(f"the step of {item!r} must be positive, got {step}")
    steps = int(((stop - start) / step).to_integral_value(rounding=ROUND_FLOOR))
    if steps + 1 > MAX_VALUES:
        raise _too_many(steps + 1, item)
    return [start + i * step for i in range(steps + 1)]  # exact decimals: stop is kept when it lies on the grid


def _geometric(start: Decimal, stop: Decimal, factor: Decimal, item: str) -> list[Decimal]:
    if factor <= 1:
        raise _error(f"the factor of {item!r} must be above 1, got *{factor}")
    per_step = math.log(factor)  # 0.0 for a factor within float precision of 1
    count = math.log(stop / start) / per_step + 1 if per_step > 0 else math.inf
    if count > MAX_VALUES:
        raise _too_many(count, item)
    limit = stop * (1 + _GEOMETRIC_TOLERANCE)
    values, value = [], start
    while value <= limit:
        values.append(value)
        value *= factor
    return values


def _range(item: str) -> list[Decimal]:
    parts = item.split(":")
    if len(parts) != 3:
        raise _error(f"{item!r} is not a range; write start:stop:step (e.g. 0.01:0.16:0.02) or start:stop:*factor (e.g. 1e-4:1e-1:*10)")
    start = _positive(_number(parts[0], item), parts[0], item)
    stop = _positive(_number(parts[1], item), parts[1], item)
    if start > stop:
        raise _error(f"{item!r} is an empty range: start {start} is above stop {stop}")
    step_text = parts[2].strip()
    if step_text.startswith("*"):
        return _geometric(start, stop, _number(step_text[1:], item), item)
    return _arithmetic(start, stop, _number(step_text, item), item)


def parse_values(text: str) -> list[float]:
    """Learning rates from `--values` text, ascending, duplicates dropped; UsageError says what is wrong.

    Items are separated by commas; each is a number, `start:stop:step` (stop included when it lies on
    the grid) or `start:stop:*factor` (geometric).
    """
    if not text or not text.strip():
        raise _error("no values given; e.g. `values` 0.01,0.1 or `values` 0.01:0.16:0.02")
    numbers: list[Decimal] = []
    with localcontext() as context:
        context.prec = 50  # ranges stay exact decimals well past the 12 digits that are kept
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                raise _error(f"empty item in {text!r} (two commas in a row, or a comma at an end?)")
            numbers.extend(_range(item) if ":" in item else [_positive(_number(item, item), item, item)])
    return check_values(float(n) for n in numbers)


def check_values(values: Iterable[float]) -> list[float]:
    """Clean, de-duplicated, ascending learning rates; UsageError for an empty list or a bad value."""
    cleaned = set()
    for value in values:
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise _error(f"learning rates must be positive finite numbers, got {value!r}")
        cleaned.add(clean(float(value)))
    if not cleaned:
        raise _error("no values given")
    if len(cleaned) > MAX_VALUES:
        raise _error(f"{len(cleaned):,} values; at most {MAX_VALUES:,} are allowed")
    return sorted(cleaned)
