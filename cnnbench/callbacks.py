"""Keras callbacks of a run: epoch timing, divergence detection, the per-epoch history file, checkpoints.

Only epoch- and test-level hooks are used: batch-level hooks would force a device sync per step.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras

from cnnbench.chance import chance_error
from cnnbench.errors import raise_if_stopped
from cnnbench.precision import metric_value
from cnnbench.results import HISTORY_COLUMNS, atomic_write_bytes, write_csv


def divergence_threshold(num_classes: int, epsilon: float | None = None) -> float:
    """The epoch training loss above which a run has diverged, the same on every backend and engine.

    Halfway between the loss of an untrained classifier, ln(classes), and that of a saturated one
    wrong as often as chance, (1 - 1/classes) * -ln(epsilon): Keras clips predicted probabilities
    at epsilon (keras.config.epsilon(), 1e-7) on JAX and torch, so a blown-up network's loss stops
    near 14.5 for 10 classes there while TensorFlow shows 1e8. 8.4 for 10 classes, 4.4 for 2.
    """
    classes = max(num_classes, 2)
    ceiling = -math.log(keras.config.epsilon() if epsilon is None else epsilon)
    return 0.5 * (math.log(classes) + chance_error(classes) * ceiling)  # a saturated model is wrong as often as chance


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
    """Stops training when the epoch's training loss is NaN/inf or above `divergence_threshold`.

    Used by both engines (`fit` and the fused engine drive the same epoch-end hook), so a run is
    `diverged` by one rule on TensorFlow, JAX and torch.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.classes = max(num_classes, 2)
        self.threshold = divergence_threshold(num_classes)
        self.saturated = 2 * self.threshold - math.log(self.classes)  # (1 - 1/classes) * -ln(epsilon)
        self.reason: str | None = None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if not math.isfinite(loss):
            self.reason = f"training loss became {loss} in epoch {epoch + 1}"
        elif loss > self.threshold:
            self.reason = (f"training loss {loss:.4g} in epoch {epoch + 1} exceeds {self.threshold:.3g}, halfway between an "
                           f"untrained model's ln({self.classes}) = {math.log(self.classes):.3g} and a saturated, always-wrong "
                           f"model's {self.saturated:.3g}")  # fmt: skip
        if self.reason:
            self.model.stop_training = True


class ScheduledRate(keras.callbacks.Callback):
    """Sets the optimizer's learning rate at each epoch's start (the `fit` engine's side of `training.lr_schedule`)."""

    def __init__(self, rate_at: Callable[[int], float]) -> None:
        super().__init__()
        self.rate_at = rate_at

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate_at(epoch))


class EarlyStop(keras.callbacks.Callback):
    """Stops a run whose validation error has not dropped by more than `min_delta` for `patience` epochs.

    `stopped` then says where and why (run.json's `stopped_early`); the run ends `ok`. A resumed run replays
    its kept epochs first, so it stops where an uninterrupted run would.
    """

    def __init__(self, patience: int, min_delta: float = 0.0, rows: list[dict] = ()) -> None:
        super().__init__()
        self.patience, self.min_delta = patience, min_delta
        self.best, self.best_epoch, self.wait = math.inf, 0, 0
        self.stopped: dict | None = None
        for row in rows:
            self._see(int(row["epoch"]), row.get("val_error"))

    def _see(self, epoch: int, error: float | None) -> bool:
        if error is None or not math.isfinite(error):
            self.wait += 1
        elif error < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = error, epoch, 0
        else:
            self.wait += 1
        return self.wait >= self.patience

    def on_epoch_end(self, epoch, logs=None):
        accuracy = (logs or {}).get("val_accuracy")
        if self._see(epoch + 1, None if accuracy is None else 1.0 - float(accuracy)):
            by = f" by more than {self.min_delta:g}" if self.min_delta else ""
            self.stopped = {
                "epoch": epoch + 1, "best_epoch": self.best_epoch,
                "reason": f"validation error did not improve{by} for {self.patience} epoch{'s' if self.patience > 1 else ''} "
                          f"(best {self.best:.4g} in epoch {self.best_epoch})",
            }  # fmt: skip
            self.model.stop_training = True


class HistoryWriter(keras.callbacks.Callback):
    """Appends one row per epoch to history.csv (rewritten atomically); `EpochNotifier` passes the row on."""

    def __init__(self, path: Path, timer: EpochTimer, learning_rate: float | Callable[[int], float], rows: list[dict] = (),
                 extra: dict | None = None):  # fmt: skip
        super().__init__()
        self.path, self.timer = path, timer
        self.rate_at = learning_rate if callable(learning_rate) else (lambda epoch: learning_rate)  # a schedule's rate per epoch
        self.rows: list[dict] = list(rows)  # a resumed run starts with the epochs it kept
        self.extra = dict(extra or {})  # constant columns of every row (the fused engine's fused_k)

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: metric_value(v) for k, v in (logs or {}).items()}  # float32 metrics without their float32 noise
        row = {"epoch": epoch + 1, **logs, **self.timer.epochs[-1], "learning_rate": self.rate_at(epoch), **self.extra}
        if "val_accuracy" in logs:
            row["val_error"] = metric_value(1.0 - logs["val_accuracy"])
        self.rows.append(row)
        extra = [k for k in row if k not in HISTORY_COLUMNS]
        write_csv(self.path, self.rows, [*HISTORY_COLUMNS, *extra])


class EpochNotifier(keras.callbacks.Callback):
    """Hands each finished epoch's history row to `on_epoch` (progress lines, a sweep's events).

    It comes last among a run's callbacks: by the time a caller hears of an epoch (and perhaps
    raises KeyboardInterrupt from its handler) the row is on disk and the checkpoint is taken, so
    `train --resume` can continue from that epoch. Taken, not yet on disk: its write may still be in
    flight (Checkpoint), and the run waits for it before it ends.
    """

    def __init__(self, history: HistoryWriter, on_epoch: Callable[[dict], None]) -> None:
        super().__init__()
        self.history, self.on_epoch = history, on_epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.history.rows:
            self.on_epoch(dict(self.history.rows[-1]))


class StopAtEpochEnd(keras.callbacks.Callback):
    """An epoch boundary: a stop signal (Ctrl-C, SIGTERM, SIGHUP) whose first raise was swallowed (in a finaliser, or by
    a bare `except:` in Keras) stops the run here.

    It comes after every other callback of the run: the epoch's row and checkpoint are taken by then.
    """

    def on_epoch_begin(self, epoch, logs=None):
        raise_if_stopped()

    def on_epoch_end(self, epoch, logs=None):
        raise_if_stopped()


CHECKPOINT = "checkpoint.npz"


@dataclass
class CheckpointState:
    """What a checkpoint holds: the last finished epoch (1-based), the model's weights, the optimizer's variables."""

    epoch: int
    weights: list
    optimizer: list
    identity: str | None = None  # train.checkpoint_identity of the run that took it (None: taken before 0.2)


class Checkpoint(keras.callbacks.Callback):
    """Saves the weights and the optimizer's variables at each epoch end, atomically, for `train --resume`.

    An .npz of arrays, not a .keras file (19-45 ms per save for the course net). The arrays are
    serialised in memory at the epoch's end (≈ 2 ms); writing, fsync and rename (≈ 1-15 ms, the
    disk's part) happen on a thread while the next epoch trains. A write error (a full disk) is
    raised at the next epoch end, or when training ends: inside `fit`, so the run is `failed`.
    """

    def __init__(self, path: Path, identity: str | None = None) -> None:
        super().__init__()
        self.path, self.identity = path, identity
        self.seconds = 0.0  # time the training loop spent on checkpoints, for the run record
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None

    def on_epoch_end(self, epoch, logs=None):
        t0 = time.perf_counter()
        self.wait()
        payload = checkpoint_bytes(self.model, epoch + 1, self.identity)
        self._writer = threading.Thread(target=self._write, args=(payload,), name="cnnbench-checkpoint")
        self._writer.start()  # not a daemon: an exiting process finishes (or cleans up) the write first
        self.seconds += time.perf_counter() - t0

    def on_train_end(self, logs=None):
        self.wait()

    def _write(self, payload: bytes) -> None:
        try:
            atomic_write_bytes(self.path, lambda f: f.write(payload))
        except BaseException as exc:  # handed to the training thread by wait()
            self._error = exc

    def wait(self, raise_error: bool = True) -> None:
        """Let the last write finish; raise its error once (unless the run has already ended otherwise)."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        error, self._error = self._error, None
        if error is not None and raise_error:
            raise error


def checkpoint_bytes(model, epoch: int, identity: str | None = None) -> bytes:
    """The .npz of a checkpoint: `epoch`, the run's `identity`, the weights (w0000...) and the optimizer's variables (o0000...)."""
    import io

    import numpy as np

    arrays = {"epoch": np.asarray(epoch)}
    if identity is not None:
        arrays["identity"] = np.asarray(identity)
    arrays.update({f"w{i:04d}": w for i, w in enumerate(model.get_weights())})
    arrays.update({f"o{i:04d}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def read_checkpoint(path: Path) -> CheckpointState | None:
    """The checkpoint at `path`, or None when there is none; ValueError when it is unreadable."""
    import numpy as np

    from cnnbench.files import UnsafeFileError, open_regular

    try:
        handle = os.fdopen(open_regular(path), "rb")  # a link, a FIFO or /dev/zero is refused, never read
    except FileNotFoundError:
        return None
    except UnsafeFileError as exc:
        raise ValueError(f"{path}: {exc.what}") from None
    try:
        with handle, np.load(handle, allow_pickle=False) as f:
            names = sorted(f.files)
            identity = str(f["identity"]) if "identity" in names else None
            return CheckpointState(
                int(f["epoch"]), [f[n] for n in names if n.startswith("w")], [f[n] for n in names if n.startswith("o")], identity
            )
    except Exception as exc:  # torn or foreign: BadZipFile, EOFError, KeyError, ValueError ...
        raise ValueError(f"{path}: unreadable checkpoint ({type(exc).__name__})") from None


def restore_checkpoint(model, state: CheckpointState) -> None:
    """Load weights and optimizer variables into a compiled model; ValueError when they do not fit it."""
    model.set_weights(state.weights)
    optimizer = model.optimizer
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    variables = optimizer.variables
    if len(variables) != len(state.optimizer) or any(tuple(v.shape) != a.shape for v, a in zip(variables, state.optimizer, strict=True)):
        raise ValueError("the checkpoint's optimizer state does not fit this model's optimizer")
    for variable, value in zip(variables, state.optimizer, strict=True):
        variable.assign(value)
