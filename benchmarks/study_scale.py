"""Does a study's driver stay cheap per run as the study grows? 25 runs against 1,000, then `ls`, `plot` and pandas.

The driver's own work per finished run (planning, the index, runs.csv and points.csv, events, the verdict) is what
is timed, so training is taken out of it: one real run trains first (synthetic data, 1 epoch, a tiny net) and every
run of the studies is then written by an instant stand-in for `cnnbench.train.train_run` that leaves the files that
run left (spec.json with the run's own spec, run.json, history.csv). The seconds inside the stand-in are subtracted:

    driver seconds per run = (wall of plan_study + run_study - seconds inside train_run) / runs

Then, on the 1,000-run study, each in a fresh process: `cnnbench ls`, `cnnbench plot --format png` of the study
folder, and loading runs.csv and points.csv with pandas (import included).

    python benchmarks/study_scale.py --sizes 25,1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tiny import tiny_net  # benchmarks/tiny.py

TINY_NET = tiny_net(epochs=1)


def template_run(folder: Path) -> tuple[dict, bytes]:
    """One real run of the tiny net: its run.json and history.csv are what every stand-in run writes."""
    from cnnbench.spec import parse_spec
    from cnnbench.train import RunOptions, train_run

    spec = parse_spec(TINY_NET, "tiny.json")
    run_dir = folder / "template"
    train_run(spec, run_dir, RunOptions(device="cpu"))
    return json.loads((run_dir / "run.json").read_text()), (run_dir / "history.csv").read_bytes()


def stand_in(record: dict, history: bytes, inside: list[float]):
    from cnnbench.results import write_json

    def train_run(spec, run_dir, options, on_epoch=None, on_start=None):
        started = time.perf_counter()
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "spec.json", spec.to_dict())
        mine = {**record, "name": spec.name, "learning_rate": spec.training.learning_rate, "seed": spec.training.seed, "status": "ok"}
        if on_start:
            on_start(mine)
        (run_dir / "history.csv").write_bytes(history)
        write_json(run_dir / "run.json", mine)
        inside.append(time.perf_counter() - started)
        return mine

    return train_run


def driver_seconds(size: int, out: Path, record: dict, history: bytes) -> dict[str, float]:
    import cnnbench.train
    from cnnbench.grid import make_grid
    from cnnbench.spec import parse_spec
    from cnnbench.study import plan_study, run_study

    inside: list[float] = []
    cnnbench.train.train_run = stand_in(record, history, inside)
    rates = ",".join(f"{(i + 1) / 10000:g}" for i in range(size))
    spec = parse_spec(TINY_NET, "tiny.json")
    started = time.perf_counter()
    result = run_study(plan_study(make_grid(spec, [f"training.learning_rate={rates}"]), out))
    wall = time.perf_counter() - started
    assert len(result.runs) == size and all(row["status"] == "ok" for row in result.runs)
    return {"runs": size, "wall_s": wall, "inside_s": sum(inside), "driver_per_run_s": (wall - sum(inside)) / size}


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:4])} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="25,1000", help="runs per study, comma-separated; the last one is listed and plotted")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="study-scale-"))
    try:
        record, history = template_run(tmp)
        found = [driver_seconds(size, tmp / f"n{size}", record, history) for size in sizes]
        study = next((tmp / f"n{sizes[-1]}").iterdir())
        cli = [sys.executable, "-m", "cnnbench"]
        ls_s = timed([*cli, "ls", str(tmp / f"n{sizes[-1]}")])
        plot_s = timed([*cli, "plot", str(study), "--format", "png", "--out", str(tmp / "figures")])
        runs_csv, points_csv = str(study / "runs.csv"), str(study / "points.csv")
        read = f"import pandas as pd; r = pd.read_csv({runs_csv!r}); p = pd.read_csv({points_csv!r}); print(len(r))"
        pandas_s = timed([sys.executable, "-c", read])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} cores, load average {load:.1f}")
    print("| runs | wall of the study (s) | inside the stand-in (s) | driver per run (ms) |")
    print("| ---: | ---: | ---: | ---: |")
    for row in found:
        print(f"| {row['runs']:,} | {row['wall_s']:.2f} | {row['inside_s']:.2f} | {row['driver_per_run_s'] * 1000:.2f} |")
    ratio = found[-1]["driver_per_run_s"] / found[0]["driver_per_run_s"]
    print(f"driver per run, {found[-1]['runs']:,} / {found[0]['runs']:,} runs: {ratio:.2f}x")
    print(f"on {sizes[-1]:,} runs: ls {ls_s:.1f} s, plot --format png {plot_s:.1f} s, pandas read {pandas_s:.1f} s")


if __name__ == "__main__":
    main()
