"""A `--data FILE` is known by its content: changed in place, it is new data (new sweep and bench folders,
a refused resume), and every run records the sha256 of the file it read."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnbench.bench import BenchOptions, bench_dir
from cnnbench.cli import app
from cnnbench.sweep import plan_sweep
from cnnbench.train import train_run

runner = CliRunner()


def _digits(path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    np.savez(path, x_train=rng.integers(0, 256, (300, 28, 28), dtype=np.uint8), y_train=np.arange(300) % 10,
             x_test=rng.integers(0, 256, (100, 28, 28), dtype=np.uint8), y_test=np.arange(100) % 10)  # fmt: skip


@pytest.fixture
def on_file(course_spec, tmp_path):
    path = tmp_path / "digits.npz"
    _digits(path, 0)
    spec = course_spec.with_overrides(epochs=3, dataset="mnist", path=str(path), train_samples=200, val_samples=100, test_samples=100)
    return spec, path


def test_a_data_file_changed_in_place_is_another_sweep_and_bench_and_the_same_content_the_same(on_file, tmp_path):
    spec, path = on_file
    first_sweep = plan_sweep(spec, "0.01,0.1", out=tmp_path).sweep_dir
    first_bench = bench_dir(tmp_path, spec, BenchOptions(devices=("cpu",), filters=(8,)))
    _digits(path, 1)  # other digits, the same path
    assert plan_sweep(spec, "0.01,0.1", out=tmp_path).sweep_dir != first_sweep
    assert bench_dir(tmp_path, spec, BenchOptions(devices=("cpu",), filters=(8,))) != first_bench
    _digits(path, 0)  # the first digits again, written anew: the same data
    assert plan_sweep(spec, "0.01,0.1", out=tmp_path).sweep_dir == first_sweep
    assert bench_dir(tmp_path, spec, BenchOptions(devices=("cpu",), filters=(8,))) == first_bench


def test_a_run_records_its_data_digest_and_resume_refuses_a_changed_file(on_file, tmp_path):
    spec, path = on_file
    run_dir = tmp_path / "run"

    def stop(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(spec, run_dir, on_epoch=stop)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["data"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    _digits(path, 1)
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith(f"error: --resume {run_dir}: its data file {path} changed since the run started (sha256 ")
    assert result.stderr.rstrip().endswith("now); train a new run on the new data") and len(result.stderr.splitlines()) == 1
    assert json.loads((run_dir / "run.json").read_text()) == record  # nothing written
    _digits(path, 0)  # put back: the run resumes
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "run.json").read_text())["status"] == "ok"
