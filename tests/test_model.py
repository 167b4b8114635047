"""Model building: exact parameter counts and FLOPs of the course network, worked out by hand."""

from __future__ import annotations

import pytest

from cnnbench.model import build_model, summarize


def course_params(filters: int, padding: str = "same") -> int:
    """By hand: conv1 9·1·f + f, conv2 9·f·f + f, dense 128·(side²·f) + 128, softmax 10·128 + 10."""
    side = 7 if padding == "same" else 5  # 28 →(pool) 14 →(pool) 7; valid: 26 → 13 → 11 → 5
    conv1 = 9 * 1 * filters + filters
    conv2 = 9 * filters * filters + filters
    dense = side * side * filters * 128 + 128
    return conv1 + conv2 + dense + 10 * 128 + 10


def test_course_network_has_104250_parameters(course_spec):
    summary = summarize(course_spec)
    assert summary.total_params == 104_250 == course_params(16)
    assert [row.params for row in summary.layers] == [160, 0, 2_320, 0, 0, 100_480, 1_290]
    assert summary.output_shape == (None, 10)


def test_course_network_flops_by_hand(course_spec):
    # Multiply-adds per sample, each counted as 2 FLOPs.
    conv1 = 28 * 28 * 16 * (3 * 3 * 1)  # 112,896
    conv2 = 14 * 14 * 16 * (3 * 3 * 16)  # 451,584
    dense1 = 784 * 128  # 100,352
    dense2 = 128 * 10  # 1,280
    summary = summarize(course_spec)
    assert [row.flops for row in summary.layers] == [2 * conv1, 0, 2 * conv2, 0, 0, 2 * dense1, 2 * dense2]
    assert summary.flops_per_sample == 2 * (conv1 + conv2 + dense1 + dense2) == 1_332_224


@pytest.mark.parametrize("filters", [8, 32, 64, 256])
def test_params_follow_the_field_notes_formula(course_spec, filters):
    # FIELD_NOTES: P(f) = 9f² + 6283f + 1418 with same padding.
    assert summarize(course_spec.with_filters(filters)).total_params == 9 * filters**2 + 6283 * filters + 1418 == course_params(filters)


def test_valid_padding_formula(course_spec):
    layers = tuple({**layer, "padding": "valid"} if layer["type"] == "Conv2D" else layer for layer in course_spec.layers)
    spec = type(course_spec)(**{**course_spec.__dict__, "layers": layers})
    assert summarize(spec).total_params == 9 * 16**2 + 3211 * 16 + 1418 == course_params(16, "valid")


def test_same_seed_same_weights(course_spec):
    a, b = build_model(course_spec), build_model(course_spec)
    c = build_model(course_spec.with_overrides(seed=1))
    assert (a.layers[0].get_weights()[0] == b.layers[0].get_weights()[0]).all()
    assert not (a.layers[0].get_weights()[0] == c.layers[0].get_weights()[0]).all()
