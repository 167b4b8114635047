"""The learning-rate sweep against its peer: KerasTuner `GridSearch` over the same rates and epochs.

Every contender is a whole command in a fresh process, timed by wall clock from start to exit
(TensorFlow import and data load included), on the same mnist-5k split and the same network:

    python benchmarks/sweep_vs_kerastuner.py --values 0.01:0.16:0.02 --epochs 8

Needs the `peer` extra (`pip install -e '.[peer]'`, KerasTuner).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KERASTUNER = r"""
import json, sys
import keras, keras_tuner as kt
from cnnbench.data import load_dataset

values, epochs, folder = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ds = load_dataset("mnist-5k", seed=0)

def build(hp):
    lr = hp.Choice("learning_rate", values)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model

tuner = kt.GridSearch(build, objective="val_accuracy", max_trials=len(values), directory=folder, project_name="lr", overwrite=True)
tuner.search(ds.x_train, ds.y_train, epochs=epochs, batch_size=64, validation_data=(ds.x_val, ds.y_val), verbose=0)
best = tuner.oracle.get_best_trials(1)[0]
print(json.dumps({"trials": len(tuner.oracle.trials), "best_lr": best.hyperparameters.get("learning_rate"),
                  "best_val_accuracy": best.score}))
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed:\n{out.stderr[-2000:]}")
    return wall, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", default="0.01:0.16:0.02")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    from cnnbench.data import embedded_mnist
    from cnnbench.device import cpu_cores, cpu_model
    from cnnbench.sweep import parse_values

    values = parse_values(args.values)
    embedded_mnist()  # warm the .npz cache once, so no contender pays the CSV parse
    cnnbench = [sys.executable, "-m", "cnnbench", "sweep-lr", "--values", args.values, "--epochs", str(args.epochs), "--data", "mnist-5k"]
    walls: dict[str, list[float]] = {"kerastuner GridSearch": [], "cnnbench sweep-lr": [], "cnnbench sweep-lr --parallel 2": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            walls["kerastuner GridSearch"].append(timed([sys.executable, "-c", KERASTUNER, json.dumps(values), str(args.epochs), tmp])[0])
            walls["cnnbench sweep-lr"].append(timed([*cnnbench, "--out", str(Path(tmp) / "seq")])[0])
            walls["cnnbench sweep-lr --parallel 2"].append(timed([*cnnbench, "--parallel", "2", "--out", str(Path(tmp) / "par")])[0])

    print(f"machine: {cpu_model()}, {cpu_cores()} cores; {len(values)} learning rates x {args.epochs} epochs, mnist-5k, course net")
    peer = min(walls["kerastuner GridSearch"])
    for name, times in walls.items():
        best = min(times)
        print(f"{name:32s} {best:7.1f} s wall (best of {len(times)})   {peer / best:5.2f}x the peer's speed")


if __name__ == "__main__":
    main()
