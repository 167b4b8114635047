"""The catalog: every allowed layer exists in Keras with the arguments we type, is sized exactly before any weight
exists, and the published JSON Schema accepts and rejects exactly what cnnbench does."""

from __future__ import annotations

import copy
import inspect
import json
import time

import jsonschema
import pytest

from cnnbench.catalog import (
    ACTIVATIONS,
    BASE_ARGUMENTS,
    CONSTRAINTS,
    INITIALIZERS,
    LAYERS,
    OPTIMIZERS,
    REGULARIZERS,
    check_layer,
)
from cnnbench.errors import SpecError
from cnnbench.model import check_layers
from cnnbench.spec import Spec, builtin_specs, json_schema, load_spec, parse_spec

COURSE = json.loads(builtin_specs()["convolutional_nn"].read_text())


def _examples() -> dict[str, list[tuple[tuple, dict]]]:
    """(input_shape, arguments) per catalog layer, with the arguments that change its weight count."""
    ex: dict[str, list[tuple[tuple, dict]]] = {}
    for r in (1, 2, 3):
        shape = (6,) * r + (4,)
        grouped = {"filters": 6, "kernel_size": 2, "groups": 2, "use_bias": False}
        ex[f"Conv{r}D"] = [(shape, {"filters": 6, "kernel_size": 3}), (shape, grouped)]
        ex[f"Conv{r}DTranspose"] = [(shape, {"filters": 5, "kernel_size": 3, "strides": 2})]
        if r < 3:
            ex[f"SeparableConv{r}D"] = [(shape, {"filters": 5, "kernel_size": 3, "depth_multiplier": 2})]
            ex[f"DepthwiseConv{r}D"] = [(shape, {"kernel_size": 3, "depth_multiplier": 3}), (shape, {"kernel_size": 2, "use_bias": False})]
        for kind in ("Max", "Average"):
            ex[f"{kind}Pooling{r}D"] = [(shape, {"pool_size": 2})]
            ex[f"Global{kind}Pooling{r}D"] = [(shape, {"keepdims": True})]
        ex[f"SpatialDropout{r}D"] = [(shape, {"rate": 0.5})]
        ex[f"ZeroPadding{r}D"] = [(shape, {"padding": 1})]
        ex[f"Cropping{r}D"] = [(shape, {"cropping": [[1, 0]] * r if r > 1 else [1, 0]})]
        ex[f"UpSampling{r}D"] = [(shape, {"size": 2})]
    flat = (5, 3)
    ex.update({
        "Dense": [((7,), {"units": 4}), ((3, 7), {"units": 4, "use_bias": False})],
        "Flatten": [((4, 4, 2), {})],
        "Reshape": [((4, 4, 2), {"target_shape": [8, -1]})],
        "Permute": [((4, 4, 2), {"dims": [2, 1, 3]})],
        "Dropout": [(flat, {"rate": 0.25, "seed": 3})],
        "GaussianNoise": [(flat, {"stddev": 0.1})],
        "GaussianDropout": [(flat, {"rate": 0.1})],
        "AlphaDropout": [(flat, {"rate": 0.1})],
        "BatchNormalization": [((6, 6, 4), {}), ((6, 6, 4), {"axis": 1, "center": False})],
        "LayerNormalization": [((6, 6, 4), {}), ((6, 6, 4), {"axis": [1, 2], "scale": False})],
        "GroupNormalization": [((6, 6, 4), {"groups": 2}), ((6, 6, 4), {"groups": 4, "center": False})],
        "Activation": [(flat, {"activation": "gelu"})],
        "ReLU": [(flat, {"max_value": 6.0})],
        "LeakyReLU": [(flat, {"negative_slope": 0.1})],
        "ELU": [(flat, {"alpha": 0.5})],
        "Softmax": [(flat, {"axis": 1})],
        "PReLU": [((6, 6, 4), {}), ((6, 6, 4), {"shared_axes": [1, 2]})],
        "Rescaling": [(flat, {"scale": 1 / 255, "offset": 0.5})],
    })  # fmt: skip
    return ex


EXAMPLES = _examples()


def one_layer_spec(kind: str, shape: tuple, args: dict) -> Spec:
    return parse_spec({"input_shape": list(shape), "layers": [{"type": kind, **args}]}, "example.json")


def test_every_catalog_layer_has_an_example():
    assert set(EXAMPLES) == set(LAYERS)


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_catalog_matches_keras(kind):
    import keras

    params = inspect.signature(getattr(keras.layers, kind).__init__).parameters.values()
    keras_args = {p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    required = {p.name for p in params if p.name in keras_args and p.default is p.empty}
    entry = LAYERS[kind]
    assert set(entry.arguments) <= keras_args
    assert set(entry.required) == required


@pytest.mark.parametrize(("kind", "shape", "args"), [(k, s, a) for k, cases in sorted(EXAMPLES.items()) for s, a in cases])
def test_estimate_equals_the_weights_keras_allocates(kind, shape, args):
    import keras

    spec = one_layer_spec(kind, shape, args)
    layers, _, estimated = check_layers(spec)
    model = keras.Sequential([keras.Input(shape=shape), *layers])
    assert estimated == model.count_params()


def test_names_in_the_catalog_resolve_in_keras():
    import keras

    for name in ACTIVATIONS:
        keras.activations.get(name)
    for name in INITIALIZERS:
        keras.initializers.get(name)
    for name in REGULARIZERS:
        keras.regularizers.get(name)
    for name in CONSTRAINTS:
        keras.constraints.get(name)
    for name in OPTIMIZERS:
        keras.optimizers.get(name)


def test_base_arguments_apply_to_every_layer():
    assert set(BASE_ARGUMENTS) == {"name", "dtype", "trainable"}
    assert check_layer({"type": "Dense", "units": 3, "dtype": "float64", "name": "out", "trainable": False}) is None


# --- what a spec may not do: one line each ----------------------------------------------------------------------


def course(**layer_changes) -> dict:
    doc = copy.deepcopy(COURSE)
    doc["data"] = {"dataset": "mnist-5k"}
    return doc


def refused(doc, tmp_path, name="net.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    from typer.testing import CliRunner

    from cnnbench.cli import app

    started = time.perf_counter()
    result = CliRunner().invoke(app, ["build", str(path)])
    assert time.perf_counter() - started < 5, "a refused spec must fail fast"
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0].removeprefix(f"error: {path}: ")


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        ({"type": "LSTM", "units": 6000},
         "layers[5].type: LSTM is not allowed: it is not in cnnbench's catalog of CNN layers (see docs/spec.md)"),
        ({"type": "EinsumDense", "equation": "ab,bc->ac", "output_shape": 10**6},
         "layers[5].type: EinsumDense is not allowed: it is not in cnnbench's catalog of CNN layers (see docs/spec.md)"),
        ({"type": "StringLookup", "vocabulary": "/etc/passwd"},
         "layers[5].type: StringLookup is not allowed: it reads vocabulary files, and no spec may cause a file read"),
        ({"type": "TextVectorization", "vocabulary": "/dev/zero"},
         "layers[5].type: TextVectorization is not allowed: it reads vocabulary files, and no spec may cause a file read"),
        ({"type": "Dense", "units": 10, "dtype": "string"},
         "layers[5].dtype: unknown dtype 'string'; known: float32, float64, float16, bfloat16, mixed_float16, mixed_bfloat16"),
        ({"type": "Dense", "units": 10, "kernel_initializer": "/tmp/weights.h5"},
         "layers[5].kernel_initializer: unknown initializer '/tmp/weights.h5'; known: " + ", ".join(INITIALIZERS)),
        ({"type": "Dropout", "rate": 1.5}, "layers[5].rate: must be a number in [0, 1), got 1.5"),
        ({"type": "Conv2D", "kernel_size": 3}, "layers[5].filters: is required for Conv2D"),
        ({"type": "Dense", "units": 10, "lora_rank": 4}, "layers[5].lora_rank: unknown argument for Dense"),
    ],
)  # fmt: skip
def test_layers_outside_the_catalog_are_refused(tmp_path, layer, expected):
    doc = course()
    doc["layers"][5] = layer
    assert refused(doc, tmp_path) == expected


def test_parameter_limit_cannot_be_bypassed(tmp_path):
    doc = course()
    doc["input_shape"] = [10_000, 10_000, 2]  # PReLU: one weight per input value, 2e8 of them
    doc["layers"] = [{"type": "PReLU"}, {"type": "GlobalAveragePooling2D"}, {"type": "Dense", "units": 10}]
    assert refused(doc, tmp_path) == "layers[0]: the model would have at least 200,000,000 parameters, above the limit of 100,000,000"
    doc = course()
    doc["layers"][5]["units"] = 10**9
    # refused by the spec-only bound, before Keras is imported
    assert refused(doc, tmp_path).startswith("layers[5]: the model would have at least 2,000,002,480 parameters")


def test_wrapper_optimizer_is_one_line(tmp_path):
    doc = course()
    doc["training"] = {"optimizer": "LossScaleOptimizer"}
    assert refused(doc, tmp_path) == (
        "training.optimizer: LossScaleOptimizer wraps another optimizer, which a spec cannot express; use one of " + ", ".join(OPTIMIZERS)
    )


def test_duplicate_layer_names(tmp_path):
    doc = course()
    doc["layers"][0]["name"] = "block"
    doc["layers"][2]["name"] = "block"
    assert refused(doc, tmp_path) == "layers[2].name: duplicate layer name 'block' (also layers[0])"
    doc = course()
    doc["layers"][3]["name"] = "00_conv2d"  # the name layers[0] gets by default
    assert refused(doc, tmp_path) == "layers[3].name: duplicate layer name '00_conv2d' (also layers[0])"


def test_non_string_keys_in_a_layer(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("input_shape: [4]\nlayers:\n  - {type: Dense, units: 10, 7: 3}\n")
    with pytest.raises(SpecError, match=r"^.*net.yaml: line 3: keys must be strings, got 7$"):
        load_spec(path)
    with pytest.raises(SpecError, match=r"^x: layers\[0\]: keys must be strings, got 7$"):
        parse_spec({"input_shape": [4], "layers": [{"type": "Dense", "units": 10, 7: 3}]}, "x")


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        ({"type": "Dense", "units": 9},
         "layers[6]: the model must end in 10 outputs (one per class of mnist-5k), but it outputs shape (None, 9)"),
        (None, "layers[5]: the model must output one score per class, shape (None, classes), but it outputs shape (None, 7, 7, 10); "
               "add a Flatten or a global pooling layer before the last Dense"),
    ],
)  # fmt: skip
def test_build_checks_the_output_like_train_does(tmp_path, last, expected):
    doc = course()
    if last is None:
        del doc["layers"][4]  # no Flatten: Dense works on the last axis and keeps the image axes
    else:
        doc["layers"][-1] = last
    assert refused(doc, tmp_path) == expected


def test_synthetic_data_takes_the_class_count_from_the_model(tmp_path):
    doc = course()
    doc["data"] = {"dataset": "synthetic"}
    doc["layers"][-1]["units"] = 3
    spec = parse_spec(doc, "s.json")
    from cnnbench.model import check_output

    check_output(spec)  # 3 classes: fine
    doc["layers"][-1]["units"] = 1
    assert refused(doc, tmp_path) == "layers[6]: a classifier needs at least 2 outputs (classes), but it outputs shape (None, 1)"


def test_max_params_from_the_environment_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNBENCH_MAX_PARAMS", "abc")
    path = tmp_path / "net.json"
    path.write_text(json.dumps(course()))
    from typer.testing import CliRunner

    from cnnbench.cli import app

    result = CliRunner().invoke(app, ["build", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: CNNBENCH_MAX_PARAMS must be a positive integer such as 100000000, got 'abc'"
    monkeypatch.setenv("CNNBENCH_MAX_PARAMS", "1000")
    assert refused(course(), tmp_path).endswith("above the limit of 1,000")


# --- the schema says what cnnbench enforces -----------------------------------------------------------------------


def _set(path: str, value):
    def change(doc):
        *parents, last = path.split(".")
        target = doc
        for key in parents:
            target = target[int(key)] if key.isdigit() else target.setdefault(key, {})
        if value is _DELETE:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = value
        return doc

    return change


_DELETE = object()

SCHEMA_CASES = [
    ("the course spec", lambda d: d, True),
    ("batch_size 0", _set("training.batch_size", 0), False),
    ("negative learning rate", _set("training.learning_rate", -0.1), False),
    ("negative epochs", _set("training.epochs", -2), False),
    ("seed 2^32", _set("training.seed", 2**32), False),
    ("seed 2^32 - 1", _set("training.seed", 2**32 - 1), True),
    ("steps_per_execution 10^6", _set("training.steps_per_execution", 10**6), False),
    ("optimizer adam", _set("training.optimizer", "adam"), True),
    ("wrapper optimizer", _set("training.optimizer", "LossScaleOptimizer"), False),
    ("filters -3", _set("layers.2.filters", -3), False),
    ("filters 3.5", _set("layers.2.filters", 3.5), False),  # 3.0: JSON Schema calls it an integer, cnnbench does not
    ("padding samee", _set("layers.0.padding", "samee"), False),
    ("padding causal on Conv2D", _set("layers.0.padding", "causal"), False),
    ("activation reluu", _set("layers.0.activation", "reluu"), False),
    ("activation gelu", _set("layers.0.activation", "gelu"), True),
    ("kernel_size [3, 5]", _set("layers.0.kernel_size", [3, 5]), True),
    ("kernel_size [3, 3, 3] on Conv2D", _set("layers.0.kernel_size", [3, 3, 3]), False),
    ("Dropout rate 1.5", _set("layers.4", {"type": "Dropout", "rate": 1.5}), False),
    ("Dropout rate 0.5", _set("layers.4", {"type": "Dropout", "rate": 0.5}), None),  # valid args, but then no Flatten
    ("Conv2D without filters", _set("layers.2", {"type": "Conv2D", "kernel_size": 3}), False),
    ("unknown argument", _set("layers.2.filter", 16), False),
    ("unknown layer type", _set("layers.1.type", "MaxPool2D"), False),
    ("Lambda", _set("layers.1", {"type": "Lambda", "function": "print"}), False),
    ("dtype string", _set("layers.5.dtype", "string"), False),
    ("dtype float64", _set("layers.5.dtype", "float64"), True),
    ("use_bias yes", _set("layers.5.use_bias", "yes"), False),
    ("kernel_initializer he_normal", _set("layers.0.kernel_initializer", "he_normal"), True),
    ("kernel_regularizer l2", _set("layers.0.kernel_regularizer", "l2"), True),
    ("nested object", _set("layers.0.kernel_initializer", {"class_name": "X"}), False),
    ("unknown top-level key", _set("layer", []), False),
    ("no layers", _set("layers", []), False),
    ("input_shape 0", _set("input_shape", [28, 0, 1]), False),
    ("dataset mnist5k", _set("data.dataset", "mnist5k"), False),
    ("data.train_samples 0", _set("data.train_samples", 0), False),
    ("BatchNormalization momentum 2", _set("layers.1", {"type": "BatchNormalization", "momentum": 2}), False),
    ("BatchNormalization", _set("layers.1", {"type": "BatchNormalization"}), True),
    ("name with a slash", _set("name", "a/b"), False),
    ("missing input_shape", _set("input_shape", _DELETE), False),
    ("training: null", _set("training", None), True),
    ("training.engine fused", _set("training.engine", "fused"), True),
    ("data.path blank", _set("data.path", "  "), False),
]


@pytest.fixture(scope="module")
def validator():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize(("label", "change", "valid"), SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES])
def test_schema_and_cnnbench_agree(validator, label, change, valid):
    from cnnbench.model import build_model

    doc = change(copy.deepcopy(COURSE))
    schema_ok = validator.is_valid(doc)
    try:
        build_model(parse_spec(doc, "case.json"))
        cnnbench_ok = True
    except SpecError:
        cnnbench_ok = False
    if valid is None:  # the arguments are fine, the shapes are not: beyond a schema
        assert schema_ok and not cnnbench_ok
    else:
        assert schema_ok == cnnbench_ok == valid


def test_schema_errors_name_the_field(validator):
    doc = copy.deepcopy(COURSE)
    doc["layers"][2]["padding"] = "samee"
    (error,) = validator.iter_errors(doc)
    assert list(error.absolute_path) == ["layers", 2, "padding"]
    doc = copy.deepcopy(COURSE)
    doc["layers"][2]["filter"] = 16
    (error,) = validator.iter_errors(doc)
    assert list(error.absolute_path) == ["layers", 2] and "'filter' was unexpected" in error.message


@pytest.mark.parametrize(("kind", "shape", "args"), [(k, s, a) for k, cases in sorted(EXAMPLES.items()) for s, a in cases[:1]])
def test_schema_accepts_every_catalog_example(validator, kind, shape, args):
    doc = {"input_shape": list(shape), "layers": [{"type": kind, **args}]}
    assert validator.is_valid(doc), [e.message for e in validator.iter_errors(doc)]


def test_docs_list_every_catalog_layer():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "spec.md").read_text()
    text = re.sub(r"(\w+)1D/2D/3D", lambda m: " ".join(f"{m[1]}{r}D" for r in (1, 2, 3)), text)
    documented = set(re.findall(r"\w+", text))
    assert set(LAYERS) <= documented, sorted(set(LAYERS) - documented)
