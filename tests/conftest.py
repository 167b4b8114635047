"""Shared fixtures: tiny real data, a fast course-network spec, an isolated cache and Keras home."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cnnbench.spec import load_spec

TINY_SPLIT = {"train_samples": 512, "val_samples": 128, "test_samples": 128}


def sink_net(**training) -> dict:
    """The sinks' tests' spec: a 2-filter net on 128/64/64 synthetic images, 2 epochs; `training` overrides its fields."""
    return {
        "name": "tiny",
        "input_shape": [28, 28, 1],
        "layers": [
            {"type": "Conv2D", "filters": 2, "kernel_size": 3, "activation": "relu"},
            {"type": "MaxPooling2D", "pool_size": 4},
            {"type": "Flatten"},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ],
        "training": {"optimizer": "sgd", "learning_rate": 0.1, "batch_size": 32, "epochs": 2, "seed": 0, **training},
        "data": {"dataset": "synthetic", "train_samples": 128, "val_samples": 64, "test_samples": 64},
    }


@pytest.fixture(autouse=True, scope="session")
def _isolated_homes(tmp_path_factory):
    """Keep tests off the user's caches: a private cnnbench cache and an empty Keras home."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CNNBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras_home")))
    mp.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    yield
    mp.undo()


@pytest.fixture
def course_spec():
    """The built-in course network (104,250 parameters), unchanged."""
    return load_spec("convolutional_nn")


@pytest.fixture
def tiny_spec(course_spec):
    """The course network on 512/128/128 real mnist-5k digits for 2 epochs: trains in about a second."""
    return course_spec.with_overrides(epochs=2, dataset="mnist-5k", **TINY_SPLIT)


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec document (dict → JSON/YAML, or raw text) to a file and return its path."""

    def write(doc, name: str = "net.json") -> Path:
        path = tmp_path / name
        if isinstance(doc, str):
            path.write_text(doc)
        elif name.endswith(".json"):
            path.write_text(json.dumps(doc))
        else:
            import yaml

            path.write_text(yaml.safe_dump(doc))
        return path

    return write


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MB file system (tmpfs, root only) to fill up; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("this machine does not allow mounting a tmpfs")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory):
    """An empty MLflow SQLite store with MLflow's schema in place: its migrations take 5-20 s on a busy machine, once."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlruns.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def mlflow_db(_mlflow_template, tmp_path):
    """A fresh MLflow SQLite store for one test (a copy of the migrated template): its path; the URI is sqlite:///<path>."""
    import shutil

    db = tmp_path / "mlruns.db"
    shutil.copy(_mlflow_template, db)
    return db


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium (Debian's, driven by Playwright) for the session: a second sync_playwright() in the
    same thread while one runs is refused, so every browser test shares this one."""
    exe = os.environ.get("CNNBENCH_BROWSER") or shutil.which("chromium") or shutil.which("chromium-headless-shell")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if exe is None or sync_playwright is None:
        missing = "chromium (apt-get install chromium)" if exe is None else "playwright (pip install -e '.[dev]')"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI needs a browser for the report tests: {missing} is missing")
        pytest.skip(f"{missing} is missing")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe)  # Playwright adds --no-sandbox, which root needs
        yield b
        b.close()
