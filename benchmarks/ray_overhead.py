"""What does Ray cost on one machine? `sweep-lr` on a private Ray instance (`--ray`) against the local pool.

Each variant sweeps the same rates in its own fresh process, alternating, `--repeats` times:

    python benchmarks/ray_overhead.py --rates 8 --epochs 8 --repeats 5            # the library
    python benchmarks/ray_overhead.py --rates 8 --epochs 8 --repeats 5 --via cli  # the command line

`--via library` calls `run_sweep` and reports per variant: wall time (start-up included: Ray's init
and actors, or the pool's workers), start-up (until the driver heard of the first run's start; on Ray
progress is polled every 0.5 s, so up to that much late), and per-run scheduling overhead: the time a
worker slot spends per run beyond what train_run itself measured ((wall after start-up × slots − Σ
run time) / runs). `--via cli` times the commands a user types, from process start to exit:

    cnnbench sweep-lr convolutional_nn --data mnist-5k --values … --epochs 8 --parallel 2 --threads 1
    cnnbench sweep-lr convolutional_nn --data mnist-5k --values … --epochs 8 --parallel 2 --ray

Also the size of a run folder, i.e. what each run ships back to the driver on Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from cnnbench.executor import RayConfig
from cnnbench.spec import load_spec
from cnnbench.sweep import SweepOptions, plan_sweep, run_sweep

variant, out, rates, epochs, slots = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
spec = load_spec("convolutional_nn").with_overrides(epochs=epochs, dataset="mnist-5k")
values = ",".join(f"{0.01 * (i + 1):g}" for i in range(rates))
starts = []
options = SweepOptions(parallel=slots, threads=1) if variant == "local" else SweepOptions(parallel=slots)
result = run_sweep(plan_sweep(spec, values, out), options, ray=None if variant == "local" else RayConfig(cpus_per_run=1),
                   on_event=lambda e: starts.append(time.perf_counter()) if e.kind == "start" else None)
wall = time.perf_counter() - t0
run_s = sum(row["total_time_s"] for row in result.rows)
first = min(starts) - t0
size = sum(p.stat().st_size for p in (result.plan.sweep_dir / result.rows[0]["run_dir"]).iterdir())
print(json.dumps({"wall_s": wall, "startup_s": first, "run_s": run_s, "statuses": [r["status"] for r in result.rows],
                  "overhead_per_run_s": ((wall - first) * slots - run_s) / rates, "run_folder_bytes": size}))
"""


def run(variant: str, rates: int, epochs: int, slots: int, via: str = "library") -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory() as out:
        if via == "cli":
            return run_cli(variant, out, rates, epochs, slots, env)
        done = subprocess.run([sys.executable, "-c", CHILD, variant, out, str(rates), str(epochs), str(slots)],
                              capture_output=True, text=True, env=env, check=False)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_cli(variant: str, out: str, rates: int, epochs: int, slots: int, env: dict) -> dict:
    values = ",".join(f"{0.01 * (i + 1):g}" for i in range(rates))
    where = ["--threads", "1"] if variant == "local" else ["--ray"]
    command = [sys.executable, "-m", "cnnbench", "sweep-lr", "convolutional_nn", "--data", "mnist-5k", "--values", values,
               "--epochs", str(epochs), "--parallel", str(slots), *where, "--out", out]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    records = [json.loads(p.read_text()) for p in sorted(Path(out).glob("*/lr-*/run.json"))]
    run_s = sum(r["total_time_s"] for r in records)
    size = sum(p.stat().st_size for p in next(Path(out).glob("*/lr-*")).iterdir())
    return {"wall_s": wall, "startup_s": float("nan"), "run_s": run_s, "statuses": [r["status"] for r in records],
            "overhead_per_run_s": (wall * slots - run_s) / rates, "run_folder_bytes": size}


def ray_version() -> str:
    from importlib.metadata import version

    return version("ray")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--slots", type=int, default=2, help="runs at once: --parallel of the pool, Ray actors of 1 CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--via", choices=("library", "cli"), default="library",
                        help="run_sweep in a fresh process, or the cnnbench command itself (overhead then includes start-up)")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"local": [], "ray": []}
    for repeat in range(args.repeats):
        for variant in ("local", "ray") if repeat % 2 == 0 else ("ray", "local"):
            outcome = run(variant, args.rates, args.epochs, args.slots, args.via)
            results[variant].append(outcome)
            print(f"{variant:5} wall {outcome['wall_s']:6.1f} s  start-up {outcome['startup_s']:5.1f} s  "
                  f"overhead/run {outcome['overhead_per_run_s']:5.2f} s  {set(outcome['statuses'])}", flush=True)
    from cnnbench.device import cpu_model

    print(f"\nvia {args.via}; machine: {cpu_model()}, {os.cpu_count()} CPUs, Ray {ray_version()}, "
          f"load {os.getloadavg()[0]:.1f}")
    for variant, rows in results.items():
        walls = [r["wall_s"] for r in rows]
        print(f"{variant:5} wall median {statistics.median(walls):.1f} s [{min(walls):.1f}-{max(walls):.1f}], "
              f"start-up median {statistics.median(r['startup_s'] for r in rows):.1f} s, "
              f"overhead per run median {statistics.median(r['overhead_per_run_s'] for r in rows):.2f} s")
    ratio = statistics.median(r["wall_s"] for r in results["ray"]) / statistics.median(r["wall_s"] for r in results["local"])
    print(f"ray / local wall time: {ratio:.2f}x; a run folder (what Ray ships back): {results['ray'][0]['run_folder_bytes'] / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
