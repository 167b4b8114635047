"""The spec's knobs worth sweeping: optimizer options, a learning-rate schedule, early stopping, label smoothing.

Checked like every spec field (one line naming the path), published in the schema, each with its effect on a real
run; the fused engine's side is in jax_fused_cases.py. A spec that sets none trains exactly as before.
"""

from __future__ import annotations

import csv
import inspect
import json
import math

import pytest
from typer.testing import CliRunner

from cnnbench.catalog import OPTIMIZER_OPTIONS
from cnnbench.cli import app
from cnnbench.spec import json_schema, load_spec
from cnnbench.train import make_optimizer, train_run

runner = CliRunner()


def _course(**training) -> dict:
    doc = load_spec("convolutional_nn").to_dict()
    doc["training"].update(training)
    return doc


@pytest.mark.parametrize(
    "training, path, message",
    [
        ({"momentum": 2}, "training.momentum", "must be a number in [0, 1), got 2"),
        ({"momentom": 0.9}, "training.momentom", "unknown key (did you mean 'momentum'?)"),
        ({"optimizer": "adam", "momentum": 0.9}, "training.momentum", "is an option of sgd, rmsprop, not of adam"),
        ({"beta_1": 0.9}, "training.beta_1", "is an option of adam, adamw, adamax, nadam, lion, not of sgd"),
        ({"nesterov": "yes"}, "training.nesterov", "must be true or false, got 'yes' (YAML 1.1 yes/no/on/off are plain strings"),
        ({"clipnorm": 1.0, "clipvalue": 0.5}, "training.clipvalue", "cannot be set together with clipnorm"),
        ({"weight_decay": -1}, "training.weight_decay", "must be a number of at least 0, got -1"),
        ({"label_smoothing": 1}, "training.label_smoothing", "must be a number in [0, 1), got 1"),
        ({"lr_schedule": "cosine"}, "training.lr_schedule", "must be a mapping like {type: cosine, warmup_epochs: 2}, got 'cosine'"),
        ({"lr_schedule": {"type": "cosin"}}, "training.lr_schedule.type",
         "must be one of constant, step, exponential, cosine, got 'cosin' (did you mean 'cosine'?)"),
        ({"lr_schedule": {"warmup_epochs": 2}}, "training.lr_schedule.type", "is required"),
        ({"lr_schedule": {"type": "step", "alpha": 0.1}}, "training.lr_schedule.alpha",
         "does not apply to a step schedule (it takes type, warmup_epochs, step_epochs, factor)"),
        ({"lr_schedule": {"type": "exponential", "factor": 0}}, "training.lr_schedule.factor", "must be a number in (0, 1], got 0"),
        ({"early_stopping": {}}, "training.early_stopping.patience", "is required"),
        ({"early_stopping": {"patiense": 2}}, "training.early_stopping.patiense", "unknown key (did you mean 'patience'?)"),
        ({"early_stopping": {"patience": 0}}, "training.early_stopping.patience", "must be a positive integer, got 0"),
    ],
)  # fmt: skip
def test_each_bad_knob_is_one_line_naming_its_path(training, path, message, write_spec):
    spec_file = write_spec(_course(**training))
    result = runner.invoke(app, ["build", str(spec_file)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: {spec_file}: {path}: {message}"), result.stderr


def test_the_schema_publishes_every_knob_and_accepts_a_spec_that_uses_them():
    import jsonschema

    schema = json_schema()
    training = schema["properties"]["training"]["properties"]
    for key in (*OPTIMIZER_OPTIONS, "lr_schedule", "early_stopping", "label_smoothing"):
        assert key in training and training[key]["description"]
    doc = _course(momentum=0.9, nesterov=True, lr_schedule={"type": "cosine", "warmup_epochs": 2, "alpha": 0.1},
                  early_stopping={"patience": 3, "min_delta": 0.001}, label_smoothing=0.1)  # fmt: skip
    jsonschema.validate(doc, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_course(lr_schedule={"type": "cosine", "bogus": 1}), schema)


def test_the_optimizer_table_matches_keras():
    import keras

    from cnnbench.catalog import OPTIMIZERS

    for key, (_, takers, _) in OPTIMIZER_OPTIONS.items():
        for name in OPTIMIZERS:
            takes = key in inspect.signature(type(keras.optimizers.get(name)).__init__).parameters
            assert takes == (name in takers), (key, name)


def test_a_spec_without_knobs_is_written_and_built_exactly_as_before(course_spec):
    import keras

    keys = {"optimizer", "learning_rate", "batch_size", "epochs", "seed", "steps_per_execution", "engine"}
    assert set(course_spec.to_dict()["training"]) == keys
    assert course_spec.training.knobs() == {}
    unnamed = lambda optimizer: {k: v for k, v in optimizer.get_config().items() if k != "name"}  # sgd_10, sgd_11, ...
    assert unnamed(make_optimizer(course_spec)) == unnamed(keras.optimizers.SGD(learning_rate=0.1))
    from cnnbench.losses import training_loss

    assert type(training_loss(None, False)) is keras.losses.SparseCategoricalCrossentropy


def test_optimizer_options_reach_keras(course_spec):
    doc = _course(momentum=0.9, nesterov=True, weight_decay=1e-4, clipnorm=1.0)
    from cnnbench.spec import parse_spec

    config = make_optimizer(parse_spec(doc, "net.json")).get_config()
    assert (config["momentum"], config["nesterov"], config["weight_decay"], config["clipnorm"]) == (0.9, True, 1e-4, 1.0)
    whole = make_optimizer(parse_spec(_course(momentum=0, clipnorm=1), "net.json")).get_config()  # integers, as `--set ...=0,0.9` gives
    assert (whole["momentum"], whole["clipnorm"]) == (0.0, 1.0)


def _history(run_dir) -> list[dict]:
    with open(run_dir / "history.csv", encoding="utf-8", newline="") as f:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(f)]


def _run(tiny_spec, tmp_path, name: str, **training) -> tuple[dict, list[dict]]:
    from cnnbench.spec import parse_spec

    doc = tiny_spec.to_dict()
    doc["training"].update(training)
    record = train_run(parse_spec(doc, f"{name}.json"), tmp_path / name)
    return record, _history(tmp_path / name)


def test_each_knob_changes_a_real_run(tiny_spec, tmp_path):
    _, plain = _run(tiny_spec, tmp_path, "plain", epochs=3)
    # momentum changes the trajectory from the first epoch on
    _, momentum = _run(tiny_spec, tmp_path, "momentum", epochs=3, momentum=0.9)
    assert abs(momentum[0]["loss"] - plain[0]["loss"]) > 1e-3
    # a schedule sets the rate the optimizer uses: warm-up, then the rate, then all but frozen
    schedule = {"type": "step", "step_epochs": 1, "factor": 1e-6, "warmup_epochs": 1}
    record, frozen = _run(tiny_spec, tmp_path, "frozen", epochs=4, lr_schedule=schedule)
    assert [r["learning_rate"] for r in frozen] == pytest.approx([0.05, 0.1, 1e-7, 1e-13])
    assert frozen[0]["loss"] != pytest.approx(plain[0]["loss"], abs=1e-3)  # epoch 1 trained at half the rate
    assert frozen[3]["val_loss"] == pytest.approx(frozen[2]["val_loss"], abs=1e-4)  # rate 1e-13: the weights no longer move
    assert record["training_options"] == {"lr_schedule": schedule}
    # label smoothing 0.3: the cross-entropy against targets (0.73, 0.03, ...) can never go below their entropy
    _, smooth = _run(tiny_spec, tmp_path, "smooth", epochs=3, label_smoothing=0.3)
    entropy = -(0.73 * math.log(0.73) + 9 * 0.03 * math.log(0.03))
    assert min(r["loss"] for r in smooth) > entropy - 1e-3
    assert abs(smooth[0]["loss"] - plain[0]["loss"]) > 1e-3


@pytest.mark.parametrize("from_logits", [False, True])
def test_label_smoothing_on_integer_labels_is_keras_own_smoothing(from_logits):
    import keras
    import numpy as np

    from cnnbench.losses import training_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(32, 10)).astype("float32") * 3
    outputs = logits if from_logits else keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    labels = rng.integers(0, 10, 32)
    ours = training_loss(0.3, from_logits)(labels, outputs)
    keras_own = keras.losses.CategoricalCrossentropy(label_smoothing=0.3, from_logits=from_logits)(np.eye(10)[labels], outputs)
    assert float(ours) == pytest.approx(float(keras_own), rel=1e-5)


def test_early_stopping_ends_an_ok_run_and_records_where_and_why(tiny_spec, tmp_path):
    record, rows = _run(tiny_spec, tmp_path, "early", epochs=6, early_stopping={"patience": 2, "min_delta": 0.5})
    assert (record["status"], record["epochs_run"], len(rows)) == ("ok", 3, 3)  # epoch 1 is the best; 2 and 3 miss it by 0.5
    assert record["stopped_early"] == {
        "epoch": 3, "best_epoch": 1,
        "reason": f"validation error did not improve by more than 0.5 for 2 epochs (best {rows[0]['val_error']:.4g} in epoch 1)",
    }  # fmt: skip
    assert json.loads((tmp_path / "early" / "run.json").read_text())["stopped_early"]["epoch"] == 3
    assert record["test_error"] is not None and (tmp_path / "early" / "model.keras").is_file()
    plain, _ = _run(tiny_spec, tmp_path, "plain", epochs=2)
    assert plain["stopped_early"] is None and plain["training_options"] == {}
