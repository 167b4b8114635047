"""How fast are the reading commands on a large study? `cnnbench ls`, `plot`, `report` and the pandas loaders
(`load_runs`, `load_histories`) on a synthetic `cnnbench sweep` study of N runs (default 1,000: 10 rates × 10
widths × 10 seeds, 20 epochs each), written in the study's on-disk format without training.

The folder is planned by `plan_study` (real identities and folder names); each run gets run.json and history.csv as
`train` writes them; runs.csv, points.csv and sweep.json come from the study's own writers. Each command runs in a
fresh process, `--repeats` times; the wall time includes Python's start and the imports a user waits for.

    python benchmarks/report_scale.py --runs 1000 --repeats 3
    python benchmarks/report_scale.py --profile report      # cProfile of one `report` (cnnbench's own functions)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HISTORY = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_error", "epoch_time_s", "samples_per_s", "learning_rate"]

COMMANDS = {
    "ls": ["-m", "cnnbench", "ls", "{root}"],
    "plot": ["-m", "cnnbench", "plot", "{root}", "--out", "{tmp}/plots", "--format", "svg"],
    "report": ["-m", "cnnbench", "report", "{root}", "--out", "{tmp}/report.html"],
    "pandas": ["-c", "import cnnbench as c, sys; r = c.load_runs(sys.argv[1]); h = c.load_histories(sys.argv[1]); "
               "print(len(r), len(h))", "{root}"],
}  # fmt: skip


def make_study(root: Path, runs: int, epochs: int = 20) -> Path:
    """A finished study of about `runs` runs below `root` (rates × widths × seeds), returned as its folder."""
    from cnnbench.grid import make_grid
    from cnnbench.spec import load_spec
    from cnnbench.study import StudyOptions, _Tables, _write_index, plan_study

    side = max(1, round(runs ** (1 / 3)))
    seeds = max(1, runs // (side * side))
    rates = ",".join(f"{10 ** (-3 + 2.5 * i / max(side - 1, 1)):.6g}" for i in range(side))
    widths = ",".join(str(4 * (i + 1)) for i in range(side))
    spec = load_spec("convolutional_nn").with_overrides(epochs=epochs, dataset="mnist-5k")
    grid = make_grid(spec, [f"training.learning_rate={rates}", f"layers[0].filters={widths}"], seeds=seeds)
    plan = plan_study(grid, root)
    plan.study_dir.mkdir(parents=True, exist_ok=True)
    for n, run in enumerate(plan.runs):
        lr = run.spec.training.learning_rate
        run.run_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for e in range(1, epochs + 1):
            error = 0.03 + 0.87 * math.exp(-min(lr, 0.5) * 30 * e) + 0.002 * ((n * 7 + e) % 5)
            loss = 0.1 + 2.2 * math.exp(-min(lr, 0.5) * 30 * e)
            rows.append({"epoch": e, "loss": loss, "accuracy": 1 - error * 0.9, "val_loss": loss * 1.1, "val_accuracy": 1 - error,
                         "val_error": error, "epoch_time_s": 0.3, "samples_per_s": 13000, "learning_rate": lr})  # fmt: skip
        with open(run.run_dir / "history.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY, lineterminator="\n")  # as train writes it
            writer.writeheader()
            writer.writerows(rows)
        errors = [r["val_error"] for r in rows]
        record = {"name": spec.name, "status": "ok", "learning_rate": lr, "seed": run.seed, "batch_size": 64, "optimizer": "sgd",
                  "epochs": epochs, "epochs_run": epochs, "best_val_error": min(errors), "final_val_error": errors[-1],
                  "best_epoch": 1 + errors.index(min(errors)), "learned": True, "total_time_s": 0.3 * epochs,
                  "timing": {"epoch_s_median": 0.3}, "device": "cpu", "device_name": "synthetic", "backend": "tensorflow",
                  "data": {"name": "mnist-5k", "train_samples": 4000, "val_samples": 500}}  # fmt: skip
        (run.run_dir / "run.json").write_text(json.dumps(record))
        (run.run_dir / "spec.json").write_text(json.dumps(run.spec.to_dict()))
    options = StudyOptions()
    _write_index(plan, options)
    _Tables(plan).write(final=True)
    return plan.study_dir


def _time(name: str, root: Path, tmp: Path) -> float:
    args = [a.format(root=root, tmp=tmp) for a in COMMANDS[name]]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    took = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{name} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--profile", choices=sorted(COMMANDS), help="profile one command in this process instead of timing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnnbench-scale-") as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        folder = make_study(tmp / "results", args.runs)
        count = sum(1 for _ in folder.rglob("run.json"))
        print(f"study: {count} runs in {folder.name}, written in {time.perf_counter() - started:.1f} s")
        if args.profile:
            import cProfile
            import pstats

            from typer.main import get_command

            from cnnbench.cli import app

            argv = [a.format(root=tmp / "results", tmp=tmp) for a in COMMANDS[args.profile][2:]]
            profiler = cProfile.Profile()
            profiler.enable()
            try:
                get_command(app).main(argv, standalone_mode=False)
            finally:
                profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats("cnnbench", 45)
            return
        print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
        print("| command | " + " | ".join(f"run {i + 1}" for i in range(args.repeats)) + " | median |")
        print("| --- |" + " ---: |" * (args.repeats + 1))
        for name in args.commands.split(","):
            times = [_time(name, tmp / "results", tmp) for _ in range(args.repeats)]
            print(f"| {name} | " + " | ".join(f"{t:.2f} s" for t in times) + f" | {statistics.median(times):.2f} s |")


if __name__ == "__main__":
    main()
