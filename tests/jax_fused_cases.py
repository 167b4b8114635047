"""The fused engine on JAX's CPU backend; run by tests/test_fused.py in a subprocess with KERAS_BACKEND=jax.

Not collected by a plain `pytest` (the test process imports Keras with TensorFlow); run it alone with
`KERAS_BACKEND=jax JAX_PLATFORMS=cpu python -m pytest tests/jax_fused_cases.py`.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from cnnbench.spec import load_spec, parse_spec
from cnnbench.train import RunOptions, prepare, train_group, train_run

pytestmark = pytest.mark.skipif(os.environ.get("KERAS_BACKEND") != "jax", reason="needs a process whose Keras runs on JAX")

JAX_CPU = RunOptions(device="cpu", backend="jax", engine="fused")
# 300 and 80 are not multiples of the batch (64): the last training and validation batches are partial.
SPLIT = {"train_samples": 300, "val_samples": 80, "test_samples": 128}
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


@pytest.fixture(scope="module")
def spec():
    return load_spec("convolutional_nn").with_filters(8).with_overrides(epochs=2, dataset="mnist-5k", **SPLIT)


@pytest.fixture(scope="module")
def bn_dropout_spec(spec):
    doc = spec.to_dict()
    doc["name"] = "bn_dropout"
    layers = doc["layers"]
    doc["layers"] = [layers[0], {"type": "BatchNormalization"}, *layers[1:5], {"type": "Dropout", "rate": 0.3}, *layers[5:]]
    return parse_spec(doc, "bn_dropout.json")


def history(run_dir) -> list[dict]:
    with open(run_dir / "history.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _fit_and_fused_in_the_same_order(spec):
    """Histories of model.fit and of the fused engine over the same (unshuffled) batch order, from the same weights."""
    import keras

    from cnnbench.callbacks import EpochTimer
    from cnnbench.fused import FusedTrainer

    model, data, _ = prepare(spec, JAX_CPU)
    fit = model.fit(data.x_train, data.y_train, batch_size=64, epochs=2, validation_data=(data.x_val, data.y_val), shuffle=False, verbose=0)
    keras.backend.clear_session()
    model, data, _ = prepare(spec, JAX_CPU)  # build_model re-seeds: the same initial weights
    rows: list[dict] = []

    class Rows(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            rows.append(dict(logs))

    timer = EpochTimer(len(data.x_train))
    trainer = FusedTrainer(model, data, 64, spec.training.seed, shuffle=False)
    trainer.fit(2, timer, [keras.callbacks.CallbackList([Rows()], model=model)], on_lane_end=lambda k: None, stopped=lambda k: False)
    return fit.history, rows, model, data


@pytest.mark.parametrize("which", ["plain", "bn_dropout"])
def test_fused_matches_fit_with_the_same_batch_order_partial_batches_included(which, spec, bn_dropout_spec):
    chosen = spec if which == "plain" else bn_dropout_spec
    fit, fused, model, data = _fit_and_fused_in_the_same_order(chosen)
    assert len(fused) == 2
    for epoch in range(2):
        for key in HISTORY_KEYS:
            assert fused[epoch][key] == pytest.approx(fit[key][epoch], abs=2e-4), (which, epoch, key)
    # the weights written back are the trained ones: evaluating the model gives the last validation loss
    val_loss, _ = model.evaluate(data.x_val, data.y_val, batch_size=64, verbose=0)
    assert val_loss == pytest.approx(fused[-1]["val_loss"], abs=1e-5)


def test_the_keras_state_layout_is_the_one_the_engine_relies_on(spec):
    """Fails loudly when a Keras release moves the trainer state this engine drives (see cnnbench/fused.py)."""
    import keras

    from cnnbench.fused import SUPPORTED_KERAS, build_state, check_keras_version, lr_slot, state_layout_problem

    check_keras_version(keras.__version__)  # outside the pinned range: re-verify and move SUPPORTED_KERAS and pyproject together
    assert SUPPORTED_KERAS[0] <= tuple(int(p) for p in keras.__version__.split(".")[:2]) < SUPPORTED_KERAS[1]
    model, data, _ = prepare(spec, JAX_CPU)
    build_state(model, data, 64)
    assert state_layout_problem(model) is None
    assert [v.name for v in model.optimizer.variables][:2] == ["iteration", "learning_rate"] and lr_slot(model) == 1
    assert [v.name for v in model.metrics_variables] == ["total", "count", "total", "count"]  # loss tracker, then accuracy
    assert len(model.non_trainable_variables) == 0 and len(model.trainable_variables) == 8


def test_a_fused_run_writes_the_usual_records_and_a_model_that_reloads_and_evaluates_the_same(spec, tmp_path):
    import keras

    record = train_run(spec, tmp_path / "run", JAX_CPU)
    assert record["status"] == "ok" and record["engine"] == "fused" and record["fused_k"] == 1 and record["epochs_run"] == 2
    rows = history(tmp_path / "run")
    assert [int(r["epoch"]) for r in rows] == [1, 2] and {r["fused_k"] for r in rows} == {"1"}
    assert float(rows[0]["val_time_s"]) > 0 and float(rows[0]["train_time_s"]) > 0
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    from cnnbench.train import load_data_for

    data = load_data_for(spec, 10)
    val_loss, val_accuracy = model.evaluate(data.x_val, data.y_val, batch_size=64, verbose=0)
    assert val_loss == pytest.approx(float(rows[-1]["val_loss"]), abs=1e-5)
    assert 1 - val_accuracy == pytest.approx(record["final_val_error"], abs=1e-6)
    test_loss, _ = model.evaluate(data.x_test, data.y_test, batch_size=256, verbose=0)
    assert test_loss == pytest.approx(record["test_loss"], abs=1e-5)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.1)


def test_a_lane_does_not_depend_on_its_neighbours_and_a_diverging_lane_stops_alone(spec, tmp_path):
    import keras

    ended: list[tuple[int, str]] = []
    rates = [0.05, 1e30, 0.2]  # 1e30 turns the weights into inf/NaN in the first epoch
    records = train_group(
        [spec.with_overrides(learning_rate=r) for r in rates], [tmp_path / f"lane{i}" for i in range(3)], JAX_CPU,
        on_end=lambda lane, record: ended.append((lane, record["status"])),
    )  # fmt: skip
    assert [r["status"] for r in records] == ["ok", "diverged", "ok"]
    assert ended[0] == (1, "diverged")  # recorded at once, before the others finished
    assert records[1]["epochs_run"] == 1 and "training loss" in records[1]["error"]
    assert not (tmp_path / "lane1" / "model.keras").exists()
    assert all(r["fused_k"] == 3 and r["engine"] == "fused" for r in records)
    assert [len(history(tmp_path / f"lane{i}")) for i in range(3)] == [2, 1, 2]
    keras.backend.clear_session()
    alone = train_run(spec.with_overrides(learning_rate=0.2), tmp_path / "alone", JAX_CPU)
    for grouped, single in zip(history(tmp_path / "lane2"), history(tmp_path / "alone"), strict=True):
        for key in HISTORY_KEYS:
            assert float(grouped[key]) == pytest.approx(float(single[key]), abs=1e-3), key
    lane_model = keras.saving.load_model(tmp_path / "lane2" / "model.keras")
    assert float(lane_model.optimizer.learning_rate) == pytest.approx(0.2)  # lane 2's own rate was saved with it
    assert records[2]["test_error"] == pytest.approx(alone["test_error"], abs=0.02)


def test_an_interrupted_fused_sweep_resumes(spec, tmp_path):
    from cnnbench.sweep import SweepOptions, plan_sweep, run_sweep

    options = SweepOptions(device="cpu", backend="jax", engine="fused")
    plan = plan_sweep(spec, [0.05, 0.1, 0.2], tmp_path)

    def ctrl_c(event):
        if event.kind == "epoch" and event.row["epoch"] == 1 and event.run.learning_rate == 0.1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, SweepOptions(device="cpu", backend="jax", engine="fused", fuse=2), on_event=ctrl_c)
    from cnnbench.results import read_record

    statuses = [(read_record(run.run_dir / "run.json") or {}).get("status") for run in plan.runs]
    assert statuses == ["interrupted", "interrupted", None]  # the first group of two; the third never started
    assert len(history(plan.runs[0].run_dir)) == 1
    events: list = []
    os.environ["CNNBENCH_FUSE_MEMORY_MB"] = "40"  # room for two lanes of this net (8.2 MB each, half the memory planned)
    try:  # the two interrupted runs continue from their checkpoints first, then the third
        result = run_sweep(plan_sweep(spec, [0.05, 0.1, 0.2], tmp_path), options, on_event=events.append)
    finally:
        del os.environ["CNNBENCH_FUSE_MEMORY_MB"]
    assert [row["status"] for row in result.rows] == ["ok", "ok", "ok"]
    # each interrupted run continues alone from its own checkpoint (train --resume); the third trains alone too
    assert [row["fused_k"] for row in result.rows] == [1, 1, 1] and {row["engine"] for row in result.rows} == {"fused"}
    assert sorted(r["from_epoch"] for run in plan.runs[:2] for r in read_record(run.run_dir / "run.json").get("resumed", [])) == [1, 1]
    assert sorted(e.run.learning_rate for e in events if e.kind == "end") == [0.05, 0.1, 0.2]
    assert all(len(history(run.run_dir)) == 2 for run in plan.runs)


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    from cnnbench.fused import epoch_order

    a, b = epoch_order(0, 3, 100), epoch_order(0, 3, 100)
    assert np.array_equal(a, b) and sorted(a) == list(range(100))
    assert not np.array_equal(a, epoch_order(0, 4, 100)) and not np.array_equal(a, epoch_order(1, 3, 100))


def test_an_interrupted_fused_run_resumes_from_its_checkpoint(spec, tmp_path):
    import keras

    from cnnbench.results import read_record

    def ctrl_c(row):
        if row["epoch"] == 2:  # raised as epoch 2 is reported: its row and checkpoint are already taken
            raise KeyboardInterrupt

    three = spec.with_overrides(epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train_run(three, tmp_path / "run", JAX_CPU, on_epoch=ctrl_c)
    assert read_record(tmp_path / "run" / "run.json")["status"] == "interrupted"
    assert (tmp_path / "run" / "checkpoint.npz").is_file() and len(history(tmp_path / "run")) == 2
    keras.backend.clear_session()
    resumed = train_run(three, tmp_path / "run", RunOptions(device="cpu", backend="jax", engine="fused", resume=True))
    assert resumed["status"] == "ok" and resumed["epochs_run"] == 3 and resumed["resumed"][-1]["from_epoch"] == 2
    assert [int(r["epoch"]) for r in history(tmp_path / "run")] == [1, 2, 3]
    assert not (tmp_path / "run" / "checkpoint.npz").exists()  # finished: nothing left to resume


def test_sweep_lr_engine_fused_on_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from cnnbench.cli import app

    args = ["sweep-lr", "--values", "0.05,0.1", "--engine", "fused", "--backend", "jax", "--device", "cpu", "--data", "mnist-5k",
            "--train-samples", "300", "--val-samples", "80", "--test-samples", "128", "--epochs", "1", "--out", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "fused engine: 2 learning rates train together as one program" in result.stderr
    assert "fused x2" in result.stdout
    (summary,) = tmp_path.glob("*/summary.csv")
    with open(summary, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["status"], r["engine"], r["fused_k"]) for r in rows] == [("ok", "fused", "2")] * 2


# --- the spec's knobs (optimizer options, schedule, early stopping, label smoothing) alike on both engines -----


@pytest.fixture(scope="module")
def knobs_spec(spec):
    doc = spec.to_dict()
    doc["training"].update(epochs=3, momentum=0.9, nesterov=True, clipnorm=1.0, label_smoothing=0.1,
                           lr_schedule={"type": "step", "step_epochs": 1, "factor": 0.5, "warmup_epochs": 1})  # fmt: skip
    return parse_spec(doc, "knobs.json")


def test_knobs_train_the_same_on_fit_and_fused_with_the_same_batch_order(knobs_spec):
    import keras

    from cnnbench.callbacks import EpochTimer, ScheduledRate
    from cnnbench.fused import FusedTrainer
    from cnnbench.schedule import multiplier, rate_at

    t = knobs_spec.training
    rate = lambda epoch: rate_at(t.learning_rate, t.lr_schedule, epoch, 3)
    model, data, _ = prepare(knobs_spec, JAX_CPU)
    fit = model.fit(data.x_train, data.y_train, batch_size=64, epochs=3, validation_data=(data.x_val, data.y_val), shuffle=False,
                    verbose=0, callbacks=[ScheduledRate(rate)])  # fmt: skip
    keras.backend.clear_session()
    model, data, _ = prepare(knobs_spec, JAX_CPU)
    rows: list[dict] = []

    class Rows(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            rows.append({**logs, "lr": float(self.model.optimizer.learning_rate)})

    trainer = FusedTrainer(model, data, 64, t.seed, shuffle=False, lr_multiplier=lambda e: multiplier(t.lr_schedule, e, 3))
    trainer.fit(3, EpochTimer(len(data.x_train)), [keras.callbacks.CallbackList([Rows()], model=model)],
                on_lane_end=lambda k: None, stopped=lambda k: False)  # fmt: skip
    assert [r["lr"] for r in rows] == pytest.approx([0.05, 0.1, 0.05])  # warm-up, the rate, a halving
    for epoch in range(3):
        for key in HISTORY_KEYS:
            assert rows[epoch][key] == pytest.approx(fit.history[key][epoch], abs=5e-4), (epoch, key)


def test_fused_lanes_record_the_schedule_and_stop_early_each_on_its_own(knobs_spec, tmp_path):
    doc = knobs_spec.to_dict()
    doc["training"]["early_stopping"] = {"patience": 1, "min_delta": 0.5}  # no epoch improves by 0.5: both stop after epoch 2
    stopping = parse_spec(doc, "knobs.json")
    records = train_group([stopping.with_overrides(learning_rate=r) for r in (0.02, 0.08)], [tmp_path / "a", tmp_path / "b"], JAX_CPU)
    for record, lane, lr in zip(records, ("a", "b"), (0.02, 0.08), strict=True):
        assert (record["status"], record["epochs_run"], record["fused_k"]) == ("ok", 2, 2)
        assert record["stopped_early"]["epoch"] == 2 and record["stopped_early"]["reason"].startswith(
            "validation error did not improve by more than 0.5 for 1 epoch (best ")
        assert record["training_options"]["lr_schedule"]["type"] == "step" and record["training_options"]["momentum"] == 0.9
        assert [float(r["learning_rate"]) for r in history(tmp_path / lane)] == pytest.approx([lr / 2, lr])
