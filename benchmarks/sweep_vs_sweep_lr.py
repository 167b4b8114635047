"""Does a one-axis `cnnbench sweep` cost more than `cnnbench sweep-lr` for the same runs?

Both commands train the same learning rates of the same spec (the same runs: one process, one run after the
other); each variant is a fresh `cnnbench` process writing a fresh results folder, alternating (which goes first
alternates too), `--repeats` times. Reported per variant: the wall time of the whole command (median), the
seconds its runs trained (the sum of `total_time_s` over the run.json files), and the rest: start-up, data,
planning, tables, verdict: what the study pipeline adds or saves.

    python benchmarks/sweep_vs_sweep_lr.py --values 0.05,0.1 --epochs 1 --data mnist-5k --repeats 3
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
import time
from pathlib import Path


def command(variant: str, values: str, epochs: int, data: str, out: Path) -> list[str]:
    common = ["--epochs", str(epochs), "--data", data, "--out", str(out)]
    if variant == "sweep-lr":
        return [sys.executable, "-m", "cnnbench", "sweep-lr", "--values", values, *common]
    return [sys.executable, "-m", "cnnbench", "sweep", "--set", f"training.learning_rate={values}", *common]


def trained_seconds(out: Path) -> tuple[float, int]:
    """The seconds the runs trained (their run.json's total_time_s) and how many runs there were."""
    records = [json.loads(path.read_text()) for path in out.rglob("run.json")]
    return sum(record.get("total_time_s") or 0.0 for record in records), len(records)


def measure(variant: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results"
        started = time.perf_counter()
        done = subprocess.run(command(variant, args.values, args.epochs, args.data, out), capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"{variant} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        trained, runs = trained_seconds(out)
    return {"wall_s": wall, "trained_s": trained, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", default="0.05,0.1", help="learning rates, the --values grammar")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--data", default="mnist-5k")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    variants = ("sweep-lr", "sweep")
    found: dict[str, list[dict[str, float]]] = {variant: [] for variant in variants}
    for repeat in range(args.repeats):
        for variant in variants if repeat % 2 == 0 else variants[::-1]:
            found[variant].append(measure(variant, args))
            print(f"{variant:>8}  repeat {repeat + 1}: {found[variant][-1]}", file=sys.stderr)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load:.1f}; "
          f"{args.values} x {args.epochs} epoch(s) on {args.data}, {args.repeats} repeats")  # fmt: skip
    print("| variant | runs | wall, median (s) | trained, median (s) | the rest, median (s) | walls (s) |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    medians = {}
    for variant in variants:
        rows = found[variant]
        wall = statistics.median(r["wall_s"] for r in rows)
        trained = statistics.median(r["trained_s"] for r in rows)
        rest = statistics.median(r["wall_s"] - r["trained_s"] for r in rows)
        medians[variant] = wall
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in rows)
        print(f"| `cnnbench {variant}` | {rows[0]['runs']} | {wall:.1f} | {trained:.1f} | {rest:.1f} | {walls} |")
    print(f"sweep / sweep-lr (median wall): {medians['sweep'] / medians['sweep-lr']:.3f}")


if __name__ == "__main__":
    main()
