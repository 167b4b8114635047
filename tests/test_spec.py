"""Spec validation: every class of bad spec gets one clear line naming file and field, exit code 2."""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from cnnbench.cli import app
from cnnbench.errors import SpecError
from cnnbench.spec import Training, builtin_specs, json_schema, load_spec

COURSE = json.loads(builtin_specs()["convolutional_nn"].read_text())


def course(**changes):
    doc = copy.deepcopy(COURSE)
    doc.update(changes)
    return doc


def build_error(path) -> str:
    """Run `cnnbench build PATH`, assert the failure shape, return the one error line."""
    result = CliRunner().invoke(app, ["build", str(path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    assert lines[0].startswith(f"error: {path}: ")
    return lines[0].removeprefix(f"error: {path}: ")


def test_course_spec_json_and_yaml_twins_agree():
    json_spec, yaml_spec = load_spec("cnnbench/specs/convolutional_nn.json"), load_spec("specs/convolutional_nn.yaml")
    assert json_spec.to_dict() == yaml_spec.to_dict()
    assert json_spec.training == Training(optimizer="sgd", learning_rate=0.1, batch_size=64, epochs=20, seed=0)


def test_builtin_spec_by_name(course_spec):
    assert course_spec.name == "convolutional_nn"
    assert [layer["type"] for layer in course_spec.layers] == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense",
    ]  # fmt: skip


def test_defaults_fill_optional_sections(write_spec):
    path = write_spec({"input_shape": [28, 28, 1], "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10}]}, "mini.yaml")
    spec = load_spec(path)
    assert spec.name == "mini"
    assert spec.training == Training()
    assert spec.data.dataset == "mnist"


def test_yaml_reads_exponent_floats(write_spec):
    path = write_spec("input_shape: [4]\nlayers: [{type: Dense, units: 10}]\ntraining: {learning_rate: 1e-4}\n", "e.yaml")
    assert load_spec(path).training.learning_rate == 1e-4


def test_the_issue_example_message(write_spec):
    doc = course()
    doc["layers"][2]["filters"] = -3
    path = write_spec(doc, "my_net.yaml")
    assert build_error(path) == "layers[2].filters: must be a positive integer, got -3"


def test_json_syntax_error_names_the_line(write_spec):
    path = write_spec('{\n  "input_shape": [28, 28, 1],\n  "layers": [\n}\n', "broken.json")
    assert build_error(path) == "line 4: invalid JSON: Expecting value"


def test_yaml_syntax_error_names_the_line(write_spec):
    path = write_spec("input_shape: [28, 28, 1]\nlayers:\n  - {type: Conv2D, filters: 16\n", "broken.yaml")
    assert build_error(path).startswith("line 4: invalid YAML:")


def test_unknown_top_level_key_suggests(write_spec):
    doc = course()
    doc["layer"] = doc.pop("layers")
    assert build_error(write_spec(doc)).startswith("layer: unknown top-level key (did you mean 'layers'?)")


def test_unknown_layer_type_suggests_closest_name(write_spec):
    doc = course()
    doc["layers"][0]["type"] = "Conv2d"
    message = build_error(write_spec(doc))
    assert message.startswith("layers[0].type: unknown layer type 'Conv2d' (did you mean 'Conv2D'?)")


def test_misspelled_layer_argument_suggests(write_spec):
    doc = course()
    doc["layers"][2]["filter"] = doc["layers"][2].pop("filters")
    assert build_error(write_spec(doc)) == "layers[2].filter: unknown argument for Conv2D (did you mean 'filters'?)"


@pytest.mark.parametrize(
    ("index", "key", "value", "expected"),
    [
        (0, "kernel_size", "3x3", "layers[0].kernel_size: must be a positive integer or a list of 2, got '3x3'"),
        (0, "padding", "full", "layers[0].padding: must be one of valid, same, got 'full'"),
        (0, "activation", "rellu", "layers[0].activation: unknown activation 'rellu' (did you mean 'relu'?)"),
        (5, "units", 0, "layers[5].units: must be a positive integer, got 0"),
        (5, "units", 12.5, "layers[5].units: must be a positive integer, got 12.5"),
    ],
)
def test_wrong_argument_type_or_range(write_spec, index, key, value, expected):
    doc = course()
    doc["layers"][index][key] = value
    assert build_error(write_spec(doc)) == expected


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("training", "learning_rate", -0.1, "training.learning_rate: must be a positive number, got -0.1"),
        ("training", "epochs", "ten", "training.epochs: must be a positive integer, got 'ten'"),
        ("training", "optimiser", "sgd", "training.optimiser: unknown key (did you mean 'optimizer'?)"),
        ("training", "optimizer", "sgdd", "training.optimizer: unknown optimizer 'sgdd' (did you mean 'sgd'?)"),
        ("data", "dataset", "mnist5k", "data.dataset: must be one of mnist, mnist-5k, synthetic, got 'mnist5k' (did you mean 'mnist-5k'?)"),
    ],
)
def test_training_and_data_keys(write_spec, section, key, value, expected):
    doc = course()
    doc[section] = {key: value}
    assert build_error(write_spec(doc)).startswith(expected)


def test_layer_that_cannot_follow_the_previous_one(write_spec):
    doc = course()
    doc["layers"].insert(5, {"type": "Conv2D", "filters": 8, "kernel_size": 3})
    assert build_error(write_spec(doc)) == (
        "layers[5]: Conv2D needs inputs with at least 4 dimensions (batch included), but layers[4] (Flatten) gives shape (None, 784)"
    )


def test_input_shape_of_the_wrong_rank(write_spec):
    assert build_error(write_spec(course(input_shape=[784]))) == (
        "input_shape: Conv2D needs inputs with at least 4 dimensions (batch included), but input_shape gives shape (None, 784)"
    )


def test_shapes_that_shrink_to_nothing(write_spec):
    doc = course(input_shape=[4, 4, 1])
    doc["layers"][0]["padding"] = "valid"
    doc["layers"][2]["padding"] = "valid"
    assert build_error(write_spec(doc)).startswith("layers[2]: ")


def test_no_layers(write_spec):
    assert build_error(write_spec(course(layers=[]))) == "layers: has no layers; a model needs at least one"


def test_absurd_model_size_is_refused_before_allocating(write_spec):
    doc = course()
    doc["layers"][5]["units"] = 10**9  # 784 x 1e9 weights: 3 TB if allocated
    # Refused from the spec alone, before Keras is imported: a lower bound (Flatten's width unknown, counted as 1).
    assert build_error(write_spec(doc)) == (
        "layers[5]: the model would have at least 2,000,002,480 parameters, above the limit of 100,000,000"
    )


def test_missing_and_empty_files(tmp_path, write_spec):
    assert build_error(tmp_path / "nope.json") == "no such file"
    assert build_error(write_spec("", "empty.yaml")) == "the file is empty"
    assert build_error(write_spec("   \n", "blank.json")) == "the file is empty"


def test_unknown_builtin_name():
    result = CliRunner().invoke(app, ["build", "convolutional"])
    assert result.exit_code == 2
    assert "error: convolutional: no such file, and not a built-in spec (did you mean 'convolutional_nn'?)" in result.stderr


def test_lambda_and_custom_objects_are_refused(write_spec):
    doc = course()
    doc["layers"].insert(0, {"type": "Lambda", "function": "lambda x: x"})
    assert build_error(write_spec(doc)) == "layers[0].type: Lambda is not allowed: it runs arbitrary Python code, which specs may not do"
    doc = course()
    doc["layers"][0]["kernel_initializer"] = {"class_name": "MyInit", "module": "os", "config": {}}
    assert build_error(write_spec(doc)) == (
        "layers[0].kernel_initializer: must be a number, string, boolean, null or a list of them; "
        "nested objects (custom objects) are not allowed"
    )


def test_yaml_cannot_run_code(write_spec, tmp_path):
    marker = tmp_path / "pwned"
    path = write_spec(f"!!python/object/apply:os.system ['touch {marker}']\n", "evil.yaml")
    assert build_error(path).startswith("line 1: invalid YAML:")
    assert not marker.exists()


def test_overrides_are_validated(course_spec):
    with pytest.raises(SpecError, match=r"^option: `epochs`: must be a positive integer, got 0$"):
        course_spec.with_overrides(epochs=0)
    assert course_spec.with_overrides(learning_rate=0.01, dataset="synthetic").training.learning_rate == 0.01


def test_with_filters_changes_every_conv(course_spec):
    assert [layer.get("filters") for layer in course_spec.with_filters(64).layers] == [64, None, 64, None, None, None, None]


def test_schema_describes_the_format():
    schema = json_schema()
    assert schema["required"] == ["input_shape", "layers"]
    assert schema["properties"]["training"]["properties"]["learning_rate"]["default"] == 0.1
    layer = schema["properties"]["layers"]["items"]
    rules = {rule["if"]["properties"]["type"]["const"]: rule["then"] for rule in layer["allOf"]}
    assert rules["Conv2D"]["required"] == ["type", "filters", "kernel_size"]
    assert rules["Conv2D"]["properties"]["filters"] == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
    assert "Lambda" not in rules and "Lambda" not in layer["properties"]["type"]["enum"]
