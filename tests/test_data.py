"""Datasets: the embedded real digits, stratified shuffled splits, full-MNIST loading and fallback."""

from __future__ import annotations

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
