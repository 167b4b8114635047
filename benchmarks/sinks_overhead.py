"""What do the tracking sinks cost a sweep? The same `cnnbench sweep-lr` with --tensorboard and --mlflow off and on.

Each variant is a fresh `cnnbench` process writing a fresh results folder, alternating, `--repeats` times;
the MLflow database is created once beforehand (a new database's schema migrations are a one-off cost,
measured separately). Also times `cnnbench export` of the finished sweep to both sinks: the sinks' own work.

    python benchmarks/sinks_overhead.py --rates 0.02,0.05,0.1,0.2 --epochs 3 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY_NET = {
    "name": "tiny",
    "input_shape": [28, 28, 1],
    "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
    "training": {"optimizer": "sgd", "learning_rate": 0.1, "batch_size": 64, "epochs": 3, "seed": 0},
    "data": {"dataset": "synthetic", "train_samples": 1024, "val_samples": 256, "test_samples": 256},
}


def cnnbench(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnnbench", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.02,0.05,0.1,0.2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = root / "tiny.json"
        spec.write_text(json.dumps({**TINY_NET, "training": {**TINY_NET["training"], "epochs": args.epochs}}))
        db = f"sqlite:///{root / 'mlruns.db'}"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"from cnnbench.sinks import open_sinks; open_sinks(mlflow={db!r}).close()"], check=True)
        first_db = time.perf_counter() - start
        times: dict[str, list[float]] = {"off": [], "on": []}
        for repeat in range(args.repeats):
            for variant in ("off", "on"):
                out = root / f"{variant}-{repeat}"
                sinks = ["--tensorboard", str(out / "tb"), "--mlflow", db] if variant == "on" else []
                times[variant].append(cnnbench("sweep-lr", str(spec), "--values", args.rates, "--out", str(out / "results"),
                                               "--device", "cpu", *sinks))  # fmt: skip
        export_tb = cnnbench("export", "tensorboard", str(root / "off-0" / "results"), "--to", str(root / "export-tb"))
        export_ml = cnnbench("export", "mlflow", str(root / "off-0" / "results"), "--uri", db)
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    runs = len(args.rates.split(","))
    print(json.dumps({"runs": runs, "epochs": args.epochs, "sweep_s_off": times["off"], "sweep_s_on": times["on"],
                      "ratio_median": round(on / off, 3), "new_mlflow_database_s": round(first_db, 2),
                      "export_tensorboard_s": round(export_tb, 2), "export_mlflow_s": round(export_ml, 2)}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
