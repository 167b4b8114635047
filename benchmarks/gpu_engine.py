"""The fused engine against model.fit and a pure-JAX yardstick; a fused 8-rate sweep against separate runs.

Every measurement is a whole command in a fresh process (`python -m cnnbench ...`, start-up included),
on Keras' JAX backend. Results go to a JSON file and a Markdown table on stdout.

    python benchmarks/gpu_engine.py --preset gpu --out gpu_engine.json            # a CUDA machine (issue 10's targets)
    python benchmarks/gpu_engine.py --preset cpu-tiny --out /tmp/gpu_engine.json   # a quick check on any CPU
    python benchmarks/gpu_engine.py --preset cpu-equivalence --out equivalence.json  # fused vs fit val error, seeds

On a CUDA machine with JAX but no TensorFlow: `pip install "jax[cuda12]" keras typer pyyaml pandas matplotlib
mlxtend psutil` and run with KERAS_BACKEND=jax (Keras is pure Python; cnnbench imports TensorFlow only for it).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRESETS = {
    # issue 10's GPU targets: 50,000 samples, batch 64; an 8-rate sweep of 20 epochs at 16 filters
    "gpu": {"device": "gpu", "data": "synthetic", "train_samples": 50000, "epochs": 5, "filters": [16, 64, 256],
            "sweep_epochs": 20, "sweep_filters": 16, "rates": "0.01:0.16:0.02", "seeds": []},
    "cpu-tiny": {"device": "cpu", "data": "mnist-5k", "train_samples": 512, "epochs": 3, "filters": [4, 8],
                 "sweep_epochs": 2, "sweep_filters": 4, "rates": "0.02:0.08:0.02", "seeds": []},
    "cpu-equivalence": {"device": "cpu", "data": "mnist-5k", "train_samples": None, "epochs": 5, "filters": [],
                        "sweep_epochs": 0, "sweep_filters": 16, "rates": "", "seeds": [0, 1, 2]},
}  # fmt: skip

YARDSTICK = r"""
import json, sys, time
import numpy as np, jax, jax.numpy as jnp
filters, n, epochs, batch = (int(a) for a in sys.argv[1:5])
rng = np.random.default_rng(0)
x = jax.device_put(rng.random((n // batch * batch, 28, 28, 1), dtype="float32").reshape(-1, batch, 28, 28, 1))
y = jax.device_put(rng.integers(0, 10, n // batch * batch).reshape(-1, batch))
def init(key, f):
    k = jax.random.split(key, 4)
    he = lambda k, s, fan: jax.random.normal(k, s) * jnp.sqrt(2.0 / fan)
    return dict(c1=he(k[0], (3, 3, 1, f), 9), b1=jnp.zeros(f), c2=he(k[1], (3, 3, f, f), 9 * f), b2=jnp.zeros(f),
                d1=he(k[2], (49 * f, 128), 49 * f), e1=jnp.zeros(128), d2=he(k[3], (128, 10), 128), e2=jnp.zeros(10))
def forward(p, x):
    for c, b in (("c1", "b1"), ("c2", "b2")):
        x = jax.nn.relu(jax.lax.conv_general_dilated(x, p[c], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + p[b])
        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return jax.nn.relu(x.reshape(x.shape[0], -1) @ p["d1"] + p["e1"]) @ p["d2"] + p["e2"]
def loss(p, xb, yb):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(forward(p, xb)), yb[:, None], 1))
@jax.jit
def epoch(p):
    step = lambda p, b: (jax.tree.map(lambda a, d: a - 0.1 * d, p, jax.grad(loss)(p, *b)), None)
    return jax.lax.scan(step, p, (x, y))[0]
p, times = init(jax.random.key(0), filters), []
for _ in range(epochs):
    t = time.perf_counter(); p = jax.block_until_ready(epoch(p)); times.append(time.perf_counter() - t)
print(json.dumps({"epoch_times": times, "device": str(jax.devices()[0])}))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def _run(command: list[str], timeout: float = 3600) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return wall, done


def _spec_file(folder: Path, preset: dict, filters: int, epochs: int, seed: int = 0) -> Path:
    from cnnbench.spec import load_spec

    spec = load_spec("convolutional_nn").with_filters(filters)
    spec = spec.with_overrides(dataset=preset["data"], train_samples=preset["train_samples"], epochs=epochs, seed=seed)
    path = folder / f"net-f{filters}-e{epochs}-s{seed}.json"
    path.write_text(json.dumps(spec.to_dict()))
    return path


def _train(folder: Path, spec: Path, engine: str, device: str) -> dict:
    out = folder / f"runs-{spec.stem}-{engine}"
    wall, _ = _run([sys.executable, "-m", "cnnbench", "train", str(spec), "--backend", "jax", "--device", device, "--engine", engine,
                    "--out", str(out)])  # fmt: skip
    (run_dir,) = out.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    with open(run_dir / "history.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    steady = rows[1:] or rows
    return {
        "engine": record["engine"], "command_wall_s": wall, "first_epoch_s": record["timing"]["first_epoch_s"],
        "epoch_s_median": record["timing"]["epoch_s_median"],
        "train_s_median": statistics.median(float(r["train_time_s"]) for r in steady),
        "final_val_error": record["final_val_error"], "best_val_error": record["best_val_error"], "device_name": record["device_name"],
    }  # fmt: skip


def steady(folder: Path, preset: dict) -> list[dict]:
    rows = []
    for filters in preset["filters"]:
        spec = _spec_file(folder, preset, filters, preset["epochs"])
        row = {"filters": filters, **{engine: _train(folder, spec, engine, preset["device"]) for engine in ("fit", "fused")}}
        n = preset["train_samples"] or 4000
        wall, done = _run([sys.executable, "-c", YARDSTICK, str(filters), str(n), str(preset["epochs"]), "64"])
        times = json.loads(done.stdout.strip().splitlines()[-1])["epoch_times"]
        row["pure_jax"] = {"command_wall_s": wall, "first_epoch_s": times[0], "train_s_median": statistics.median(times[1:] or times)}
        row["fused_train_vs_pure_jax"] = row["fused"]["train_s_median"] / row["pure_jax"]["train_s_median"]
        row["fit_vs_fused_epoch"] = row["fit"]["epoch_s_median"] / row["fused"]["epoch_s_median"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


def sweep(folder: Path, preset: dict) -> dict:
    spec = _spec_file(folder, preset, preset["sweep_filters"], preset["sweep_epochs"])
    result = {"filters": preset["sweep_filters"], "epochs": preset["sweep_epochs"], "rates": preset["rates"]}
    for engine in ("fused", "fit"):
        command = [sys.executable, "-m", "cnnbench", "sweep-lr", str(spec), "--values", preset["rates"], "--backend", "jax",
                   "--device", preset["device"], "--engine", engine, "--out", str(folder / f"sweep-{engine}")]  # fmt: skip
        result[f"sweep_{engine}_wall_s"], _ = _run(command)
    result["single_fit"] = _train(folder, spec, "fit", preset["device"])
    result["fused_sweep_vs_single_fit"] = result["sweep_fused_wall_s"] / result["single_fit"]["command_wall_s"]
    result["fit_sweep_vs_fused_sweep"] = result["sweep_fit_wall_s"] / result["sweep_fused_wall_s"]
    return result


def equivalence(folder: Path, preset: dict) -> dict:
    rows = []
    for seed in preset["seeds"]:
        spec = _spec_file(folder, preset, preset["sweep_filters"], preset["epochs"], seed)
        rows.append({"seed": seed, **{engine: _train(folder, spec, engine, preset["device"]) for engine in ("fit", "fused")}})
        print(json.dumps(rows[-1]), file=sys.stderr)
    fit = [r["fit"]["final_val_error"] for r in rows]
    fused = [r["fused"]["final_val_error"] for r in rows]
    return {
        "runs": rows,
        "fit_final_val_error_mean": statistics.mean(fit), "fused_final_val_error_mean": statistics.mean(fused),
        "fit_vs_fit_spread_sd": statistics.stdev(fit) if len(fit) > 1 else None,
        "fused_vs_fused_spread_sd": statistics.stdev(fused) if len(fused) > 1 else None,
        "fused_minus_fit_per_seed": [b - a for a, b in zip(fit, fused, strict=True)],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-tiny")
    parser.add_argument("--filters", help="comma list, replaces the preset's")
    parser.add_argument("--seeds", help="comma list, replaces the preset's (equivalence)")
    parser.add_argument("--out", type=Path, default=Path("gpu_engine.json"))
    args = parser.parse_args()
    preset = dict(PRESETS[args.preset])
    if args.filters:
        preset["filters"] = [int(f) for f in args.filters.split(",")]
    if args.seeds:
        preset["seeds"] = [int(s) for s in args.seeds.split(",")]
    from cnnbench.provenance import environment

    result = {"preset": args.preset, "settings": preset, "environment": environment(), "started_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory(prefix="gpu-engine-") as tmp:
        folder = Path(tmp)
        if preset["filters"]:
            result["steady"] = steady(folder, preset)
        if preset["sweep_epochs"]:
            result["sweep"] = sweep(folder, preset)
        if preset["seeds"]:
            result["equivalence"] = equivalence(folder, preset)
    args.out.write_text(json.dumps(result, indent=2))
    for row in result.get("steady", []):
        print(f"| {row['filters']} | fit {row['fit']['epoch_s_median']:.3f} s | fused {row['fused']['epoch_s_median']:.3f} s "
              f"(train {row['fused']['train_s_median']:.3f}) | pure JAX train {row['pure_jax']['train_s_median']:.3f} s | "
              f"fused/pure {row['fused_train_vs_pure_jax']:.2f}x |")  # fmt: skip
    if "sweep" in result:
        s = result["sweep"]
        print(f"sweep: fused {s['sweep_fused_wall_s']:.1f} s, fit {s['sweep_fit_wall_s']:.1f} s, "
              f"one fit run {s['single_fit']['command_wall_s']:.1f} s; "
              f"fused sweep / one fit run = {s['fused_sweep_vs_single_fit']:.2f}x")  # fmt: skip
    if "equivalence" in result:
        e = result["equivalence"]
        print(f"equivalence: fit {e['fit_final_val_error_mean']:.4f} (sd {e['fit_vs_fit_spread_sd']}), "
              f"fused {e['fused_final_val_error_mean']:.4f} "
              f"(sd {e['fused_vs_fused_spread_sd']}), fused-fit per seed {e['fused_minus_fit_per_seed']}")  # fmt: skip
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
