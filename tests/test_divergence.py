"""Divergence is one rule on every backend and engine: SGD at lr 500 is `diverged` on TensorFlow, JAX (`fit` and
`fused`) and torch, though Keras' JAX and torch cross-entropy clips the loss near 16 where TensorFlow's reaches 1e8."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from cnnbench.callbacks import divergence_threshold

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--epochs", "2", "--data", "mnist-5k", "--train-samples", "256", "--val-samples", "64", "--test-samples", "64", "--device", "cpu"]


def test_the_threshold_lies_between_chance_and_the_clipped_ceiling():
    ceiling = -math.log(1e-7)  # Keras' epsilon: the largest per-sample loss on JAX and torch, 16.1
    for classes in (2, 10, 100, 1000):
        threshold = divergence_threshold(classes, 1e-7)
        saturated = (1 - 1 / classes) * ceiling  # every sample wrong but the chance share, each at the clip
        assert math.log(classes) < threshold < saturated
        assert threshold == pytest.approx((math.log(classes) + saturated) / 2)
    assert divergence_threshold(10, 1e-7) == pytest.approx(8.4, abs=0.01)  # below the 14.5 JAX showed at lr 500
    assert divergence_threshold(10) == divergence_threshold(10, 1e-7)  # Keras' own epsilon by default


@pytest.mark.parametrize(
    "backend,engine",
    [("tensorflow", "fit"), ("jax", "fit"), ("jax", "fused"), ("torch", "fit")],
)
def test_lr_500_is_diverged_on_every_backend_and_engine(backend, engine, tmp_path):
    if find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "KERAS_BACKEND": backend}
    command = [sys.executable, "-m", "cnnbench", "train", "convolutional_nn", "--backend", backend, "--engine", engine,
               "--learning-rate", "500", *TINY, "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    record = json.loads((run_dir / "run.json").read_text())
    assert (record["backend"], record["engine"], record["status"], record["epochs_run"]) == (backend, engine, "diverged", 1)
    assert record["error"].startswith("training loss ") and " in epoch 1 exceeds 8.4, halfway between" in record["error"]
    assert f"diverged: {record['error']}" in done.stderr
    assert not (run_dir / "model.keras").exists()
