"""What does Ray cost on one machine? `sweep-lr` on a private Ray instance (`--ray`) against the local pool.

Each variant sweeps the same rates in its own fresh process, alternating, `--repeats` times:

    python benchmarks/ray_overhead.py --rates 8 --epochs 8 --repeats 3

Reported per variant: wall time (start-up included: Ray's init and actors, or the pool's workers),
start-up (until the first run starts training), and per-run scheduling overhead: the time a worker
slot spends per run beyond what train_run itself measured ((wall after start-up × slots − Σ run
time) / runs). Also the size of a run folder, i.e. what each run ships back to the driver on Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
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
options = SweepOptions(parallel=slots, threads=1) if variant == "local" else SweepOptions(parallel=slots, ray=RayConfig(cpus_per_run=1))
result = run_sweep(plan_sweep(spec, values, out), options,
                   on_event=lambda e: starts.append(time.perf_counter()) if e.kind == "start" else None)
wall = time.perf_counter() - t0
run_s = sum(row["total_time_s"] for row in result.rows)
first = min(starts) - t0
size = sum(p.stat().st_size for p in (result.plan.sweep_dir / result.rows[0]["run_dir"]).iterdir())
print(json.dumps({"wall_s": wall, "startup_s": first, "run_s": run_s, "statuses": [r["status"] for r in result.rows],
                  "overhead_per_run_s": ((wall - first) * slots - run_s) / rates, "run_folder_bytes": size}))
"""


def run(variant: str, rates: int, epochs: int, slots: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run([sys.executable, "-c", CHILD, variant, out, str(rates), str(epochs), str(slots)],
                              capture_output=True, text=True, env=env, check=False)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--slots", type=int, default=2, help="runs at once: --parallel of the pool, Ray actors of 1 CPU")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"local": [], "ray": []}
    for repeat in range(args.repeats):
        for variant in ("local", "ray") if repeat % 2 == 0 else ("ray", "local"):
            outcome = run(variant, args.rates, args.epochs, args.slots)
            results[variant].append(outcome)
            print(f"{variant:5} wall {outcome['wall_s']:6.1f} s  start-up {outcome['startup_s']:5.1f} s  "
                  f"overhead/run {outcome['overhead_per_run_s']:5.2f} s  {set(outcome['statuses'])}", flush=True)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    for variant, rows in results.items():
        walls = [r["wall_s"] for r in rows]
        print(f"{variant:5} wall median {statistics.median(walls):.1f} s [{min(walls):.1f}-{max(walls):.1f}], "
              f"start-up median {statistics.median(r['startup_s'] for r in rows):.1f} s, "
              f"overhead per run median {statistics.median(r['overhead_per_run_s'] for r in rows):.2f} s")
    ratio = statistics.median(r["wall_s"] for r in results["ray"]) / statistics.median(r["wall_s"] for r in results["local"])
    print(f"ray / local wall time: {ratio:.2f}x; a run folder (what Ray ships back): {results['ray'][0]['run_folder_bytes'] / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
