"""The `--values` grammar: the documented examples, clean printing, errors, and properties (hypothesis)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnbench.errors import UsageError
from cnnbench.values import MAX_VALUES, check_values, clean, format_value, parse_values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.01:0.16:0.02", [0.01, 0.03, 0.05, 0.07, 0.09, 0.11, 0.13, 0.15]),
        ("0.02:0.16:0.02", [0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14, 0.16]),  # stop on the grid: included
        ("0.01,0.02:0.16:0.02", [0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14, 0.16]),
        ("1e-4:1e-1:*10", [0.0001, 0.001, 0.01, 0.1]),
        ("0.1, 0.01 ,0.001,0.0001", [0.0001, 0.001, 0.01, 0.1]),  # sorted, spaces allowed
        ("0.1,0.1,0.05:0.1:0.05", [0.05, 0.1]),  # duplicates dropped
        ("0.3:0.3:0.1", [0.3]),
        ("0.001:1:*3.16227766016838", [0.001, 0.00316227766017, 0.01, 0.0316227766017, 0.1, 0.316227766017, 1.0]),  # sqrt(10)
        ("500", [500.0]),
    ],
)
def test_documented_examples(text, expected):
    assert parse_values(text) == expected


def test_values_print_cleanly():
    values = parse_values("0.01:0.16:0.02")
    assert [format_value(v) for v in values] == ["0.01", "0.03", "0.05", "0.07", "0.09", "0.11", "0.13", "0.15"]
    assert [repr(v) for v in values] == [format_value(v) for v in values]  # the floats themselves are clean
    assert format_value(0.01 + 6 * 0.01) == "0.07" and clean(0.07000000000000001) == 0.07
    assert [format_value(v) for v in parse_values("1e-5,1e-4,500")] == ["1e-05", "0.0001", "500"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no values given"),
        ("  ", "no values given"),
        ("abc", "'abc' is not a number"),
        ("0.1,,0.2", "empty item"),
        ("0.1,", "empty item"),
        ("0.01:0.1", "is not a range; write start:stop:step"),
        ("0.01:0.1:0.01:2", "is not a range"),
        ("0.1:0.01:0.01", "'0.1:0.01:0.01' is an empty range: start 0.1 is above stop 0.01"),
        ("0.01:0.1:0", "the step of '0.01:0.1:0' must be positive, got 0"),
        ("0.01:0.1:-0.01", "must be positive, got -0.01"),
        ("1e-4:1:*1", "the factor of '1e-4:1:*1' must be above 1"),
        ("1e-4:1:*0.5", "must be above 1"),
        ("1e-4:1:*", "'' in '1e-4:1:*' is not a number"),
        ("0", "learning rates must be positive, got 0"),
        ("-0.1", "learning rates must be positive, got -0.1"),
        ("0:0.1:0.01", "learning rates must be positive, got 0 in '0:0.1:0.01'"),
        ("nan", "not a usable number"),
        ("inf", "not a usable number"),
        ("1e999", "not a usable number"),
        ("1e-9:1:1e-9", "gives 1,000,000,000 values; at most 1,000"),
        ("1e-3:1:*1.00000000000000000001", "gives too many values"),
    ],
)
def test_bad_values_say_what_is_wrong(text, message):
    with pytest.raises(UsageError, match="^`values`: ") as caught:
        parse_values(text)
    assert message in str(caught.value)


def test_check_values_for_library_callers():
    assert check_values([0.1, 0.01, 0.1, 0.07000000000000001]) == [0.01, 0.07, 0.1]
    for bad in ([], [0.0], [-1.0], [float("nan")], [float("inf")], ["0.1"]):
        with pytest.raises(UsageError):
            check_values(bad)


# --- properties --------------------------------------------------------------------------------

decimals = st.integers(1, 99_999).map(lambda n: Decimal(n) / 10_000)  # 0.0001 ... 9.9999, as a person types them


@given(start=decimals, step=decimals, steps=st.integers(0, 60), beyond=st.integers(0, 99))
def test_arithmetic_ranges_are_exact_decimal_grids(start, step, steps, beyond):
    stop = start + steps * step + step * beyond / 100  # on the grid when beyond == 0, else between two points
    values = parse_values(f"{start}:{stop}:{step}")
    exact = [start + i * step for i in range(steps + 1)]
    assert values == [float(d) for d in exact]
    assert [Decimal(format_value(v)) for v in values] == exact  # printed as typed: 0.07, never 0.07000000000000001


@given(start=decimals, factor=st.integers(2, 10), steps=st.integers(0, 8))
def test_geometric_ranges_multiply_by_the_factor(start, factor, steps):
    stop = start * factor**steps
    values = parse_values(f"{start}:{stop}:*{factor}")
    assert values == [clean(float(start * factor**i)) for i in range(steps + 1)]


@given(st.lists(st.floats(min_value=1e-9, max_value=1e4, allow_nan=False), min_size=1, max_size=20))
def test_comma_lists_round_trip_sorted_without_duplicates(floats):
    text = ",".join(format_value(x) for x in floats + floats[:3])
    assert parse_values(text) == sorted({clean(x) for x in floats})


@given(st.floats(min_value=1e-300, max_value=1e300))
def test_every_positive_float_reads_back_from_its_printed_form(x):
    assert parse_values(format_value(x)) == [clean(x)]


@given(st.text(alphabet="0123456789.:,*-+e ", max_size=24))
def test_any_text_gives_clean_rates_or_a_usage_error(text):
    try:
        values = parse_values(text)
    except UsageError as exc:
        assert str(exc).startswith("`values`: ")
        return
    assert values == sorted(set(values)) and 1 <= len(values) <= MAX_VALUES
    assert all(v > 0 and v == clean(v) for v in values)
