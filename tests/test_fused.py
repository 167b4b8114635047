"""The training engines: choosing fit or fused, refusing fused off JAX, and the fused engine itself on JAX's CPU backend.

The fused cases need a process whose Keras runs on JAX: they live in jax_fused_cases.py, run here in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnbench.bench import BenchOptions, Combination, combination_reason, combinations
from cnnbench.cli import app
from cnnbench.errors import UsageError
from cnnbench.fused import unfusable_reason
from cnnbench.results import read_json
from cnnbench.train import RunOptions, train_group

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(find_spec("jax") is None, reason="jax is not installed (pip install -e '.[dev]')")
def test_fused_engine_cases_on_jax_cpu(tmp_path):
    # One compilation cache for the cases: a program compiled once (the same net, lanes and shapes) is not compiled again.
    cache = tmp_path / "jax-cache"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT), "JAX_COMPILATION_CACHE_DIR": str(cache),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    command = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "jax_fused_cases.py"), "-q", "-x", "-p", "no:cacheprovider"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]


def test_only_runs_that_differ_in_the_learning_rate_alone_can_be_fused(tiny_spec):
    rates = [tiny_spec.with_overrides(learning_rate=r) for r in (0.01, 0.1)]
    assert unfusable_reason(rates) is None
    assert unfusable_reason([*rates, tiny_spec.with_overrides(batch_size=32)]) == "the runs differ in more than the learning rate"


@pytest.mark.parametrize("command", [["train", "convolutional_nn"], ["sweep-lr", "--values", "0.1,0.2"]])
def test_engine_fused_on_tensorflow_is_one_error_line_exit_2_and_writes_nothing(command, tmp_path):
    result = runner.invoke(app, [*command, "--engine", "fused", "--backend", "tensorflow", "--device", "cpu", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        "error: engine fused needs the JAX backend, but this run uses tensorflow; use --backend jax or --engine fit"
    )
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_engine_is_one_error_line(tmp_path):
    result = runner.invoke(app, ["train", "convolutional_nn", "--engine", "turbo", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --engine: unknown engine 'turbo'; use auto, fit, fused"


def test_a_fit_group_trains_its_runs_one_after_another_with_engine_fit_recorded(tiny_spec, tmp_path):
    specs = [tiny_spec.with_overrides(learning_rate=r, epochs=1) for r in (0.05, 0.1)]
    ended: list[int] = []
    records = train_group(specs, [tmp_path / "a", tmp_path / "b"], RunOptions(engine="fit", save_model=False),
                          on_end=lambda lane, record: ended.append(lane))  # fmt: skip
    assert ended == [0, 1] and [r["status"] for r in records] == ["ok", "ok"]
    assert [read_json(tmp_path / d / "run.json")["learning_rate"] for d in "ab"] == [0.05, 0.1]
    assert all(read_json(tmp_path / d / "run.json")["engine"] == "fit" and records[0]["fused_k"] == 1 for d in "ab")
    assert "fused_k" not in (tmp_path / "a" / "history.csv").read_text().splitlines()[0]  # fit's history is as before


def test_bench_engines_are_a_dimension_with_their_own_run_names():
    options = BenchOptions(devices=("cpu",), backends=("tensorflow", "jax"), filters=(8,), engines=("fit", "fused")).resolved()
    grid = combinations(options)
    names = ["cpu-tensorflow-f8-fit-r1", "cpu-tensorflow-f8-fused-r1", "cpu-jax-f8-fit-r1", "cpu-jax-f8-fused-r1"]
    assert [c.run_name(1) for c in grid] == names
    reasons = {("cpu", "tensorflow"): None, ("cpu", "jax"): None}
    assert [combination_reason(c, reasons) for c in grid] == [None, "engine fused needs the JAX backend, not tensorflow", None, None]
    assert Combination("cpu", "jax", 8).run_name(2) == "cpu-jax-f8-r2"  # the default engine keeps earlier benches' names
    with pytest.raises(UsageError, match="`engines`: unknown value"):
        BenchOptions(devices=("cpu",), engines=("turbo",)).resolved()



def test_lanes_per_program_are_capped_by_half_the_free_memory_over_a_lane_estimate(tiny_spec, monkeypatch):
    from cnnbench.fused import lane_bytes, lane_cap
    from cnnbench.train import prepare

    model, _, summary = prepare(tiny_spec)
    model.optimizer.build(model.trainable_variables)
    per_lane = lane_bytes(model, 64, summary)
    assert per_lane > 4 * 3 * 104_250  # at least the parameters, their gradients and a copy
    monkeypatch.setenv("CNNBENCH_FUSE_MEMORY_MB", str(10.5 * per_lane / 2**20))
    assert lane_cap(model, 64, summary) == 5
    monkeypatch.setenv("CNNBENCH_FUSE_MEMORY_MB", "1")
    assert lane_cap(model, 64, summary) == 1  # never less than one lane
