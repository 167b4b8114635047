"""The engine registry: names, `auto`, one availability rule, and a new engine as one class plus its registration."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cnnbench import engines
from cnnbench.bench import Combination, combination_reason
from cnnbench.cli import app
from cnnbench.engines import Engine, Program
from cnnbench.errors import SpecError, UsageError
from cnnbench.results import load_history, read_record
from cnnbench.spec import parse_spec
from cnnbench.train import RunOptions, train_run

runner = CliRunner()


def test_the_registry_names_fit_and_fused_and_auto_is_a_choice():
    assert engines.NAMES == ("fit", "fused") and engines.CHOICES == ("auto", "fit", "fused")
    assert [engines.get(name).name for name in engines.NAMES] == ["fit", "fused"]
    assert engines.get("fused").lanes_together and not engines.get("fit").lanes_together


def test_auto_is_fused_only_for_jax_on_a_gpu():
    assert engines.resolve("auto", "jax", "gpu") == "fused"
    assert [engines.resolve("auto", b, d) for b, d in (("jax", "cpu"), ("tensorflow", "gpu"), ("torch", "gpu"))] == ["fit"] * 3
    assert engines.resolve("fused", "jax", "cpu") == "fused" and engines.resolve("fit", "jax", "gpu") == "fit"


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_fused_off_jax_is_refused_naming_the_backend_and_the_way_out(backend):
    with pytest.raises(UsageError) as caught:
        engines.resolve("fused", backend, "gpu")
    assert str(caught.value) == f"engine fused needs the JAX backend, but this run uses {backend}; use `backend` jax or `engine` fit"


def test_an_unknown_engine_is_refused_listing_the_known_ones():
    for call in (lambda: engines.resolve("turbo", "jax", "cpu"), lambda: engines.get("turbo")):
        with pytest.raises(UsageError) as caught:
            call()
        assert str(caught.value) == "unknown engine 'turbo'; use fit, fused or auto"
    result = runner.invoke(app, ["train", "convolutional_nn", "--engine", "turbo"])
    assert result.exit_code == 2 and result.stderr.strip() == "error: --engine: unknown engine 'turbo'; use auto, fit, fused"


def test_a_spec_accepts_the_registry_choices(tiny_spec):
    doc = tiny_spec.to_dict()
    for name in engines.CHOICES:
        assert parse_spec({**doc, "training": {**doc["training"], "engine": name}}).training.engine == name
    with pytest.raises(SpecError, match="must be one of auto, fit, fused, got 'turbo'"):
        parse_spec({**doc, "training": {**doc["training"], "engine": "turbo"}})


def test_availability_is_one_rule_said_the_same_everywhere():
    assert engines.unavailable("fused", "tensorflow") == "engine fused needs the JAX backend"
    assert engines.unavailable("fused", "jax") is None and engines.unavailable("fit", "torch") is None
    assert engines.unavailable("auto", "torch") is None  # auto always finds an engine
    reasons = {("cpu", "tensorflow"): None, ("cpu", "jax"): None}
    assert combination_reason(Combination("cpu", "tensorflow", 8, "fused"), reasons) == "engine fused needs the JAX backend, not tensorflow"
    assert combination_reason(Combination("cpu", "jax", 8, "fused"), reasons) is None


class EpochByEpoch(Engine):
    """A third engine, as a contributor would add one: model.fit called once per epoch, TensorFlow only."""

    name = "epochwise"
    backends = ("tensorflow",)

    def train(self, program: Program) -> None:
        lane, data = program.lanes[0], program.data
        for epoch in range(program.first_epoch, program.fit_epochs):
            program.model.fit(data.x_train, data.y_train, batch_size=program.spec.training.batch_size, epochs=epoch + 1,
                              initial_epoch=epoch, validation_data=(data.x_val, data.y_val),
                              callbacks=[program.timer, *lane.callbacks], verbose=0)  # fmt: skip
        program.finish(0)


@pytest.fixture
def third_engine(monkeypatch):
    monkeypatch.setitem(engines.ENGINES, EpochByEpoch.name, EpochByEpoch())  # its registration
    return EpochByEpoch.name


def test_a_registered_engine_is_resolved_and_checked_like_the_others(third_engine):
    assert engines.resolve(third_engine, "tensorflow", "cpu") == third_engine
    assert engines.resolve("auto", "tensorflow", "cpu") == "fit"  # it does not ask for auto
    with pytest.raises(UsageError, match="^engine epochwise needs the TensorFlow backend, but this run uses jax; use `backend` tensorflow"):
        engines.resolve(third_engine, "jax", "cpu")


def test_train_runs_a_registered_engine_and_records_it(third_engine, tiny_spec, tmp_path):
    record = train_run(tiny_spec, tmp_path / "run", RunOptions(device="cpu", backend="tensorflow", engine=third_engine, save_model=False))
    on_disk = read_record(tmp_path / "run" / "run.json")
    assert record["status"] == on_disk["status"] == "ok" and on_disk["engine"] == third_engine and on_disk["epochs_run"] == 2
    assert list(load_history(tmp_path / "run")["epoch"]) == [1, 2] and "fused_k" not in load_history(tmp_path / "run")
