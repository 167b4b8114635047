"""Keras callbacks of a run: epoch timing, divergence detection, and the per-epoch history file.

Only epoch- and test-level hooks are used: batch-level hooks would force a device sync per step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import keras

from cnnbench.results import HISTORY_COLUMNS, write_csv

DIVERGENCE_FACTOR = 10.0


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock time of each epoch, split into training and validation, and training samples/s."""

    def __init__(self, train_samples: int) -> None:
        super().__init__()
        self.train_samples = train_samples
        self.epochs: list[dict[str, float]] = []
        self._epoch_start = self._test_start = 0.0
        self._val_s = 0.0
        self._in_fit = False

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._val_s = 0.0
        self._epoch_start = time.perf_counter()

    def on_test_begin(self, logs=None):
        self._test_start = time.perf_counter()

    def on_test_end(self, logs=None):
        if self._in_fit:
            self._val_s += time.perf_counter() - self._test_start

    def on_epoch_end(self, epoch, logs=None):
        total = time.perf_counter() - self._epoch_start
        train = max(total - self._val_s, 1e-12)
        self.epochs.append(
            {"epoch_time_s": total, "train_time_s": train, "val_time_s": self._val_s, "samples_per_s": self.train_samples / train}
        )


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training when the epoch's training loss is NaN/inf or explodes.

    "Explodes" means above DIVERGENCE_FACTOR x ln(classes), ten times the loss of an untrained
    classifier: Keras clips cross-entropy, so SGD at a huge rate shows 1e8, not NaN.
    """

    def __init__(self, num_classes: int, factor: float = DIVERGENCE_FACTOR) -> None:
        super().__init__()
        self.threshold = factor * math.log(max(num_classes, 2))
        self.reason: str | None = None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if not math.isfinite(loss):
            self.reason = f"training loss became {loss} in epoch {epoch + 1}"
        elif loss > self.threshold:
            self.reason = f"training loss {loss:.4g} in epoch {epoch + 1} exceeds {self.threshold:.3g} (10 x an untrained model's)"
        if self.reason:
            self.model.stop_training = True


class HistoryWriter(keras.callbacks.Callback):
    """Appends one row per epoch to history.csv (rewritten atomically) and tells `on_epoch`."""

    def __init__(
        self, path: Path, timer: EpochTimer, learning_rate: float, on_epoch: Callable[[dict], None] | None = None, extra: dict | None = None
    ):
        super().__init__()
        self.path, self.timer, self.learning_rate, self.on_epoch = path, timer, learning_rate, on_epoch
        self.extra = dict(extra or {})  # constant columns of every row (the fused engine's fused_k)
        self.rows: list[dict] = []

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        row = {"epoch": epoch + 1, **logs, **self.timer.epochs[-1], "learning_rate": self.learning_rate, **self.extra}
        if "val_accuracy" in logs:
            row["val_error"] = 1.0 - logs["val_accuracy"]
        self.rows.append(row)
        extra = [k for k in row if k not in HISTORY_COLUMNS]
        write_csv(self.path, self.rows, [*HISTORY_COLUMNS, *extra])
        if self.on_epoch:
            self.on_epoch(dict(row))
