"""Does the driver of a sweep stay cheap per run as it grows? 25 runs against 1,000, then `ls`, `plot` and pandas.

The driver's own work per finished run (planning, the index, summary.csv or runs.csv and points.csv, events, the
verdict) is what is timed, so training is taken out of it. One real run trains first, in a child process
(synthetic data, 1 epoch, a tiny net); every run of the sweeps is then written by an instant stand-in for
`cnnbench.train.train_run` that leaves the files that run left (spec.json with the run's own spec, run.json,
history.csv). The executor is the real one (`--parallel 1`: inline); its `run` is timed, and so are the driver's
callbacks inside it:

    driver seconds per run = (wall of plan + run - (time inside the executor - time in the driver's callbacks)) / runs

so the stand-in's own seconds and what the executor does between runs are both outside the driver's figure, and
shown in their own columns. Both pipelines are timed: `sweep-lr` (plan_sweep + run_sweep, summary.csv) and
`sweep` (plan_study + run_study, runs.csv, points.csv, the verdict).

`--keras` imports Keras into the driver's process first, as a `--parallel 1` sweep does when it trains its first
run: the inline executor then frees the previous run between runs (`keras.backend.clear_session()`), whose
`gc.collect()` walks every object Keras and TensorFlow made (about 450,000): that is the "executor between runs"
column, not the driver's.

Then the reading commands, each in a fresh process (wall and CPU seconds, imports included): `cnnbench ls`,
`cnnbench plot --format png` of the study, pandas reading runs.csv and points.csv, and `load_runs` +
`load_histories` on two studies of the largest size: report_scale's (10 rates x 10 widths x 10 seeds, 20 epochs)
and the one-axis `sweep` study timed above.

    python benchmarks/study_scale.py --sizes 25,1000
    python benchmarks/study_scale.py --sizes 25 --keras --pipelines sweep
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tiny import tiny_net  # benchmarks/tiny.py

TINY_NET = tiny_net(epochs=1)
TEMPLATE = """
import json, sys
from cnnbench.spec import parse_spec
from cnnbench.train import RunOptions, train_run
train_run(parse_spec(json.loads(sys.argv[1]), "tiny.json"), sys.argv[2], RunOptions(device="cpu"))
"""


def template_run(folder: Path) -> tuple[dict, bytes]:
    """One real run of the tiny net, in a child process: its run.json and history.csv are what every stand-in writes."""
    run_dir = folder / "template"
    subprocess.run([sys.executable, "-c", TEMPLATE, json.dumps(TINY_NET), str(run_dir)], check=True, capture_output=True)
    return json.loads((run_dir / "run.json").read_text()), (run_dir / "history.csv").read_bytes()


class Clocks:
    """Seconds inside the stand-in, inside the executor's `run`, and inside the driver's callbacks from it; the same
    as this process's CPU seconds (`cpu_*`), which other processes on a shared machine do not inflate."""

    def __init__(self) -> None:
        self.inside = self.executor = self.callbacks = 0.0
        self.cpu_executor = self.cpu_callbacks = 0.0


def stand_in(record: dict, history: bytes, clocks: Clocks):
    from cnnbench.results import write_json

    def train_run(spec, run_dir, options, on_epoch=None, on_start=None):
        started = time.perf_counter()
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "spec.json", spec.to_dict())
        mine = {**record, "name": spec.name, "learning_rate": spec.training.learning_rate, "seed": spec.training.seed, "status": "ok"}
        clocks.inside += time.perf_counter() - started
        if on_start:
            on_start(mine)
        started = time.perf_counter()
        (run_dir / "history.csv").write_bytes(history)
        write_json(run_dir / "run.json", mine)
        clocks.inside += time.perf_counter() - started
        return mine

    return train_run


def timed_executors(clocks: Clocks) -> None:
    """Time every executor `run` the sweeps make, and the driver's callbacks inside it."""
    import cnnbench.sweep

    real = getattr(cnnbench.sweep.make_executor, "untimed", cnnbench.sweep.make_executor)

    def make_executor(*args, **kwargs):
        executor = real(*args, **kwargs)
        inner = executor.run

        def run(tasks, on_event):
            def callback(event):
                started, cpu = time.perf_counter(), time.process_time()
                try:
                    on_event(event)
                finally:
                    clocks.callbacks += time.perf_counter() - started
                    clocks.cpu_callbacks += time.process_time() - cpu

            started, cpu = time.perf_counter(), time.process_time()
            try:
                inner(tasks, callback)
            finally:
                clocks.executor += time.perf_counter() - started
                clocks.cpu_executor += time.process_time() - cpu

        executor.run = run
        return executor

    make_executor.untimed = real
    cnnbench.sweep.make_executor = make_executor


def driver_seconds(pipeline: str, size: int, out: Path, record: dict, history: bytes) -> dict[str, float]:
    import cnnbench.train
    from cnnbench.grid import make_grid
    from cnnbench.spec import parse_spec
    from cnnbench.study import plan_study, run_study
    from cnnbench.sweep import plan_sweep, run_sweep

    clocks = Clocks()
    cnnbench.train.train_run = stand_in(record, history, clocks)
    timed_executors(clocks)
    rates = [(i + 1) / 10000 for i in range(size)]
    spec = parse_spec(TINY_NET, "tiny.json")
    started, cpu = time.perf_counter(), time.process_time()
    if pipeline == "sweep":
        rows = run_study(plan_study(make_grid(spec, [f"training.learning_rate={','.join(f'{r:g}' for r in rates)}"]), out)).runs
    else:
        rows = run_sweep(plan_sweep(spec, rates, out)).rows
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert len(rows) == size and all(row["status"] == "ok" for row in rows)
    driver = wall - (clocks.executor - clocks.callbacks)
    between = clocks.executor - clocks.callbacks - clocks.inside
    driver_cpu = cpu - (clocks.cpu_executor - clocks.cpu_callbacks)
    return {"pipeline": pipeline, "runs": size, "wall_s": wall, "inside_s": clocks.inside, "between_s": between, "driver_s": driver,
            "driver_per_run_s": driver / size, "driver_cpu_per_run_s": driver_cpu / size}  # fmt: skip


def timed(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, its children included) of a command in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:4])} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def reading(root: Path, study: Path, figures: Path) -> dict[str, tuple[float, float]]:
    """`ls` of the results folder, `plot` of the study, pandas reading its tables and (load_runs) its runs' records."""
    cli = [sys.executable, "-m", "cnnbench"]
    runs_csv, points_csv = str(study / "runs.csv"), str(study / "points.csv")
    tables = f"import pandas as pd; r = pd.read_csv({runs_csv!r}); p = pd.read_csv({points_csv!r}); print(len(r))"
    loaders = f"import cnnbench as c; r = c.load_runs({str(root)!r}); h = c.load_histories({str(root)!r}); print(len(r), len(h))"
    return {"cnnbench ls": timed([*cli, "ls", str(root)]),
            "cnnbench plot --format png": timed([*cli, "plot", str(study), "--format", "png", "--out", str(figures)]),
            "pandas: runs.csv + points.csv": timed([sys.executable, "-c", tables]),
            "load_runs + load_histories": timed([sys.executable, "-c", loaders])}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="25,1000", help="runs per sweep, comma-separated; the last `sweep` study is listed and plotted")
    parser.add_argument("--pipelines", default="sweep-lr,sweep", help="sweep-lr, sweep or both")
    parser.add_argument("--keras", action="store_true", help="import Keras into the driver first, as a --parallel 1 sweep does")
    parser.add_argument("--no-read", action="store_true", help="skip ls, plot and pandas")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    pipelines = args.pipelines.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="study-scale-"))
    try:
        record, history = template_run(tmp)
        if args.keras:
            from cnnbench import device

            device.configure("cpu", None, None)
            device.import_keras()
        for p in pipelines:  # imports and first-call costs out of the way: not a cost per run
            driver_seconds(p, 3, tmp / f"warm-{p}", record, history)
        found = [driver_seconds(p, size, tmp / f"{p}-n{size}", record, history) for size in sizes for p in pipelines]
        read = {}
        if not args.no_read:
            sys.path.insert(0, str(Path(__file__).parent))
            from report_scale import make_study  # a finished 10 rates x 10 widths x 10 seeds study, 20 epochs a run

            grid = make_study(tmp / "grid", sizes[-1])
            read[f"{sizes[-1]:,} runs: 10 rates x 10 widths x 10 seeds, 20 epochs (report_scale)"] = reading(tmp / "grid", grid, tmp / "f1")
            if "sweep" in pipelines:
                root = tmp / f"sweep-n{sizes[-1]}"
                one_axis = f"{sizes[-1]:,} runs: one axis of {sizes[-1]:,} rates, 1 epoch (above)"
                read[one_axis] = reading(root, next(root.iterdir()), tmp / "f2")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
          f"load average {load:.1f}, Keras in the driver: {'yes' if args.keras else 'no'}")  # fmt: skip
    print("| pipeline | runs | wall (s) | inside the stand-in (s) | executor between runs (s) | driver (s) | driver per run (ms) "
          "| driver CPU per run (ms) |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in found:
        print(f"| {row['pipeline']} | {row['runs']:,} | {row['wall_s']:.2f} | {row['inside_s']:.2f} | {row['between_s']:.2f} | "
              f"{row['driver_s']:.2f} | {row['driver_per_run_s'] * 1000:.2f} | {row['driver_cpu_per_run_s'] * 1000:.2f} |")  # fmt: skip
    for pipeline in pipelines:
        mine = [row for row in found if row["pipeline"] == pipeline]
        if len(mine) > 1:
            ratio = mine[-1]["driver_per_run_s"] / mine[0]["driver_per_run_s"]
            cpu_ratio = mine[-1]["driver_cpu_per_run_s"] / mine[0]["driver_cpu_per_run_s"]
            print(f"{pipeline}: driver per run, {mine[-1]['runs']:,} / {mine[0]['runs']:,} runs: {ratio:.2f}x (CPU: {cpu_ratio:.2f}x)")
    for study, times in read.items():
        print(f"\nreading the study of {study}, each in a fresh process:")
        print("| command | wall (s) | CPU (s) |")
        print("| --- | ---: | ---: |")
        for name, (wall, cpu) in times.items():
            print(f"| {name} | {wall:.2f} | {cpu:.2f} |")

if __name__ == "__main__":
    main()
