"""Does cnnbench add cost to training? A bare `model.fit` script against `cnnbench.train_run`.

Each variant trains the same model on the same data split in its own fresh process, alternating,
`--repeats` times; steady-state epoch times (epochs 2..E, validation included) are compared.

    python benchmarks/overhead.py --epochs 10 --repeats 3

Variants: `bare` (plain Keras, steps_per_execution=1), `cnnbench-spe1` (cnnbench with the same
setting: the overhead question), `cnnbench` (cnnbench's defaults, steps_per_execution=64). The
cnnbench epochs include the per-epoch checkpoint (`timing.checkpoint_s`), saved outside the epoch timer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BARE = r"""
import json, sys, time
import numpy as np
import keras

data_path, epochs = sys.argv[1], int(sys.argv[2])
d = np.load(data_path)
keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input(shape=(28, 28, 1)),
    keras.layers.Conv2D(16, 3, strides=1, padding="same", activation="relu"),
    keras.layers.MaxPooling2D(2),
    keras.layers.Conv2D(16, 3, strides=1, padding="same", activation="relu"),
    keras.layers.MaxPooling2D(2),
    keras.layers.Flatten(),
    keras.layers.Dense(128, activation="relu"),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])

class Timer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []
    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.t0)

timer = Timer()
h = model.fit(d["x_train"], d["y_train"], batch_size=64, epochs=epochs, validation_data=(d["x_val"], d["y_val"]),
              callbacks=[timer], verbose=0, shuffle=True)
print(json.dumps({"epoch_times": timer.times, "final_val_loss": h.history["val_loss"][-1],
                  "final_val_accuracy": h.history["val_accuracy"][-1]}))
"""

CNNBENCH = r"""
import json, sys
from cnnbench.spec import load_spec
from cnnbench.train import RunOptions, train_run
from cnnbench.results import load_history

out, epochs, spe = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
spec = load_spec("convolutional_nn").with_overrides(epochs=epochs, dataset="mnist-5k", steps_per_execution=spe)
record = train_run(spec, out, RunOptions(save_model=False))
h = load_history(out)
# The per-epoch checkpoint (for `train --resume`) is saved after the epoch timer stops: add its cost back.
checkpoint_s = record["timing"]["checkpoint_s"] / len(h)
print(json.dumps({"epoch_times": [t + checkpoint_s for t in h["epoch_time_s"]], "final_val_loss": record["final_val_loss"],
                  "final_val_accuracy": 1 - record["final_val_error"]}))
"""


def run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from cnnbench.data import load_dataset
    from cnnbench.device import cpu_cores, cpu_model

    ds = load_dataset("mnist-5k", seed=0)  # the split cnnbench itself trains on
    with tempfile.TemporaryDirectory() as tmp:
        data_path = str(Path(tmp) / "data.npz")
        import numpy as np

        np.savez(data_path, x_train=ds.x_train, y_train=ds.y_train, x_val=ds.x_val, y_val=ds.y_val)
        results: dict[str, list[dict]] = {"bare": [], "cnnbench-spe1": [], "cnnbench": []}
        for r in range(args.repeats):
            results["bare"].append(run(BARE, data_path, str(args.epochs)))
            results["cnnbench-spe1"].append(run(CNNBENCH, str(Path(tmp) / f"spe1-{r}"), str(args.epochs), "1"))
            results["cnnbench"].append(run(CNNBENCH, str(Path(tmp) / f"spe64-{r}"), str(args.epochs), "64"))
            print(f"repeat {r + 1}/{args.repeats} done", file=sys.stderr)

    print(f"machine: {cpu_model()}, {cpu_cores()} cores; course net, mnist-5k 4000 train / 500 val, batch 64, {args.epochs} epochs")
    base = None
    print(f"{'variant':15s} {'steady epoch median':>20s} {'min':>7s} {'max':>7s} {'ratio':>7s} {'val loss (last)':>16s} {'val acc':>8s}")
    for name, runs in results.items():
        steady = [t for one in runs for t in one["epoch_times"][1:]]
        median = statistics.median(steady)
        base = base or median
        last = runs[-1]
        print(f"{name:15s} {median:17.4f} s {min(steady):7.4f} {max(steady):7.4f} {median / base:7.3f} "
              f"{last['final_val_loss']:16.6f} {last['final_val_accuracy']:8.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
