"""Datasets: the embedded real digits, stratified shuffled splits, full-MNIST loading and fallback."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnnbench.data import load_dataset, stratified_split
from cnnbench.errors import DataError


def test_mnist_5k_is_real_scaled_and_split_4000_500_500():
    ds = load_dataset("mnist-5k", seed=0)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (4000, 500, 500)
    assert ds.x_train.shape[1:] == (28, 28, 1) and ds.x_train.dtype == np.float32
    assert 0.0 == ds.x_train.min() and ds.x_train.max() == 1.0
    # Real digits: ink is sparse (about a fifth of pixels), unlike uniform noise (mean 0.5).
    assert 0.05 < ds.x_train.mean() < 0.25


def test_splits_are_stratified_although_the_source_is_sorted_by_class():
    ds = load_dataset("mnist-5k", seed=0)
    for y in (ds.y_train, ds.y_val, ds.y_test):
        counts = np.bincount(y, minlength=10)
        assert counts.min() >= 0.08 * len(y) and counts.max() <= 0.12 * len(y)
        assert len(set(y[:20])) > 3  # shuffled: not one class after another


def test_splits_are_disjoint_and_seeded():
    y = np.repeat(np.arange(10), 50)
    a = stratified_split(y, (300, 100, 100), seed=3)
    b = stratified_split(y, (300, 100, 100), seed=3)
    c = stratified_split(y, (300, 100, 100), seed=4)
    assert all((x == z).all() for x, z in zip(a, b, strict=True))
    assert not (a[0] == c[0]).all()
    assert len(np.unique(np.concatenate(a))) == 500
    assert [np.bincount(y[idx]).tolist() for idx in a] == [[30] * 10, [10] * 10, [10] * 10]


def test_split_larger_than_the_data_is_an_error():
    with pytest.raises(DataError, match="asked for 4000 \\+ 900 \\+ 500 samples, but it has 5000"):
        load_dataset("mnist-5k", val_samples=900)


def test_full_mnist_from_a_local_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=rng.integers(0, 256, (600, 28, 28), dtype=np.uint8), y_train=np.repeat(np.arange(10), 60),
             x_test=rng.integers(0, 256, (100, 28, 28), dtype=np.uint8), y_test=np.repeat(np.arange(10), 10))  # fmt: skip
    ds = load_dataset("mnist", path=str(path), train_samples=500, val_samples=100, test_samples=100)
    assert (ds.name, ds.source) == ("mnist", str(path))
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (500, 100, 100)
    assert ds.x_train.max() <= 1.0


def test_missing_local_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset("mnist", path=str(tmp_path / "missing.npz"))


def test_mnist_falls_back_to_the_embedded_digits_when_unavailable(monkeypatch):
    import keras

    def offline():
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.warns(UserWarning, match="falling back to the embedded mnist-5k digits"):
        ds = load_dataset("mnist", seed=0)
    assert ds.name == "mnist-5k"
    assert "network is unreachable" in ds.warnings[0]


def test_synthetic_takes_the_spec_shape():
    ds = load_dataset("synthetic", sample_shape=(8, 8, 3), num_classes=4, train_samples=64, val_samples=16, test_samples=16)
    assert ds.x_train.shape == (64, 8, 8, 3) and set(np.unique(ds.y_train)) <= {0, 1, 2, 3}


# --- a bad --data file: one DataError naming the file, what is wrong and where ------------------


def _mnist_arrays(n_train: int = 60, n_test: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), "y_train": np.arange(n_train) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), "y_test": np.arange(n_test) % 10,
    }  # fmt: skip


def _with(**changes) -> dict[str, np.ndarray]:
    arrays = _mnist_arrays()
    for key, change in changes.items():
        arrays[key] = change(arrays[key].copy()) if callable(change) else change
    return {k: v for k, v in arrays.items() if v is not None}


def _nan_at_7(x):
    x = x.astype("float32")
    x[7, 3, 4] = np.nan
    return x


def _set(index, value, dtype=None):
    def change(a):
        a = a.astype(dtype) if dtype else a
        a[index] = value
        return a

    return change


BAD_ARRAYS = {
    "nan pixel": (_with(x_train=_nan_at_7), "x_train[7] has NaN or infinite pixels (1 such sample)"),
    "inf pixel": (_with(x_test=_set((3, 0, 0), np.inf, "float64")), "x_test[3] has NaN or infinite pixels"),
    "negative pixel": (_with(x_train=_set((5, 1, 1), -2.0, "float32")), "x_train[5] has pixels outside 0…255 (the array spans -2…"),
    "pixel above 255": (_with(x_train=_set((2, 1, 1), 300, "int32")), "x_train[2] has pixels outside 0…255"),
    "label 10": (_with(y_train=_set(4, 10)), "y_train[4] is 10, outside the labels 0…9 (1 such label)"),
    "negative label": (_with(y_test=_set(0, -1)), "y_test[0] is -1, outside the labels 0…9"),
    "fractional label": (_with(y_train=_set(6, 2.5, "float64")), "y_train[6] is 2.5, not an integer class label"),
    "fewer labels": (_with(y_train=lambda y: y[:50]), "x_train has 60 samples but y_train has 50 labels"),
    "wrong sample shape": (_with(x_train=np.zeros((60, 32, 32), np.uint8)), "x_train has shape (60, 32, 32); expected (N, 28, 28)"),
    "one-hot labels": (_with(y_test=np.eye(10)[np.arange(20) % 10]), "y_test has shape (20, 10); expected one integer label per sample"),
    "string pixels": (_with(x_train=np.array(["a"] * 60)), "x_train holds str32 values, not numbers"),
    "scalar labels": (_with(y_train=np.array(3)), "y_train is a single number (3), not an array of samples"),
    "missing array": (_with(y_test=None), "no y_test array (found: x_train, y_train, x_test)"),
}


@pytest.mark.parametrize("case", list(BAD_ARRAYS))
def test_bad_arrays_in_a_data_file_are_one_data_error(case, tmp_path):
    arrays, expected = BAD_ARRAYS[case]
    path = tmp_path / "digits.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", path=str(path), train_samples=40, val_samples=10, test_samples=10)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_labels_stored_as_whole_floats_or_a_column_are_accepted(tmp_path):
    path = tmp_path / "digits.npz"
    np.savez(path, **_with(y_train=lambda y: y.astype("float32"), y_test=lambda y: y.reshape(-1, 1)))
    ds = load_dataset("mnist", path=str(path), train_samples=40, val_samples=10, test_samples=10)
    assert ds.y_train.dtype == np.int64 and ds.y_test.shape == (10,)
    assert ds.x_train.max() <= 1.0


def test_one_scale_for_every_split(tmp_path):
    # Pixels 0…255 are scaled alike in every split, even when one split happens to hold only values ≤ 1.
    arrays = _mnist_arrays()
    arrays["x_test"] = np.ones_like(arrays["x_test"])
    path = tmp_path / "digits.npz"
    np.savez(path, **arrays)
    ds = load_dataset("mnist", path=str(path), train_samples=40, val_samples=10, test_samples=10)
    assert ds.x_test.max() == pytest.approx(1 / 255)


def test_damaged_or_pickled_files_are_one_data_error_that_never_suggests_pickles(tmp_path):
    good = tmp_path / "good.npz"
    np.savez_compressed(good, **_mnist_arrays())
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x80\x04not a zip at all" * 10)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **_with(x_train=np.array([{"a": 1}] * 60, dtype=object)))
    expected = {
        truncated: "not a readable .npz (truncated or damaged: BadZipFile",
        garbage: "not a .npz archive",
        pickled: "x_train holds Python objects, not numbers",
    }
    for path, message in expected.items():
        with pytest.raises(DataError) as info:
            load_dataset("mnist", path=str(path))
        assert str(info.value).startswith(f"{path}: ") and message in str(info.value)
        assert "pickle" not in str(info.value)[len(str(path)) :].lower()


def test_a_bad_data_file_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    from typer.testing import CliRunner

    from cnnbench.cli import app

    path = tmp_path / "digits.npz"
    np.savez(path, **BAD_ARRAYS["nan pixel"][0])
    result = CliRunner().invoke(app, ["train", "convolutional_nn", "--data", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: {path}: x_train[7] has NaN or infinite pixels (1 such sample)"]
    assert not (tmp_path / "out").exists()


# --- full MNIST unavailable: honest, quiet, remembered, offline ----------------------------------


@pytest.fixture
def counting_proxy(monkeypatch, tmp_path):
    """An HTTPS proxy on localhost that refuses every download and counts the attempts; empty caches."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    attempts = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            attempts.append(1)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    proxy = f"http://127.0.0.1:{server.getsockname()[1]}"
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, proxy)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "")
    monkeypatch.setattr("urllib.request._opener", None)  # urllib keeps the proxies it saw first in this global
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("CNNBENCH_OFFLINE", "0")
    yield attempts
    server.close()


def test_a_failed_download_is_remembered_and_its_chatter_stays_off_stdout(counting_proxy, capfd):
    from cnnbench.data import download_marker

    with pytest.warns(UserWarning) as caught:
        ds = load_dataset("mnist", train_samples=400, val_samples=100, test_samples=100)
    assert ds.name == "mnist-5k" and len(counting_proxy) >= 1
    message = str(caught[0].message)
    assert "download failed" in message and "falling back to the embedded mnist-5k digits" in message
    assert re.search(r"not retrying the download until \d\d:\d\d; use `dataset` mnist-5k or `offline`$", message)
    out, err = capfd.readouterr()
    assert "Downloading" not in out and "Downloading data from" in err
    assert download_marker().is_file()

    tried = len(counting_proxy)
    with pytest.warns(UserWarning, match=r"the download failed at \d\d:\d\d: .*not retrying the download until"):
        assert load_dataset("mnist", train_samples=400, val_samples=100, test_samples=100).name == "mnist-5k"
    assert len(counting_proxy) == tried  # no second attempt
    assert "Downloading" not in capfd.readouterr().out


def test_the_retry_window_can_be_shortened(counting_proxy, monkeypatch):
    with pytest.warns(UserWarning):
        load_dataset("mnist", train_samples=400, val_samples=100, test_samples=100)
    tried = len(counting_proxy)
    monkeypatch.setenv("CNNBENCH_DOWNLOAD_RETRY_S", "0")
    with pytest.warns(UserWarning, match="download failed"):
        load_dataset("mnist", train_samples=400, val_samples=100, test_samples=100)
    assert len(counting_proxy) > tried


def test_offline_makes_no_network_attempt(counting_proxy, monkeypatch):
    monkeypatch.setenv("CNNBENCH_OFFLINE", "1")
    with pytest.warns(UserWarning, match=r"downloads are off \(CNNBENCH_OFFLINE=1 / `offline`\); falling back"):
        assert load_dataset("mnist", train_samples=400, val_samples=100, test_samples=100).name == "mnist-5k"
    assert counting_proxy == []


def test_train_on_unavailable_mnist_says_so_on_stderr_only_and_offline_tries_nothing(counting_proxy, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from cnnbench.cli import app
    from cnnbench.data import download_marker
    from cnnbench.results import load_runs

    monkeypatch.setattr("cnnbench.data._DATASETS", {})  # each command loads its data afresh, as a new process would
    runner = CliRunner()
    args = ["train", "convolutional_nn", "--data", "mnist", "--epochs", "1", "--out", str(tmp_path / "out")]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert len(counting_proxy) >= 1
    assert "Downloading" not in first.stdout and "not retrying the download until" in first.stderr
    assert "mnist-5k" in first.stdout  # the summary names the data actually used

    download_marker().unlink()
    tried = len(counting_proxy)
    monkeypatch.setattr("cnnbench.data._DATASETS", {})
    second = runner.invoke(app, [*args, "--offline"])
    assert second.exit_code == 0, second.output
    assert len(counting_proxy) == tried and "downloads are off" in second.stderr
    assert sorted(load_runs(tmp_path / "out")["data.name"]) == ["mnist-5k", "mnist-5k"]
