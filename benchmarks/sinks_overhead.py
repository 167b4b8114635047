"""What do the tracking sinks cost a sweep? The same `cnnbench sweep-lr` with --tensorboard and --mlflow off and on.

Each variant is a fresh Python process running the sweep (as `sweep-lr` does: `open_sinks` around `run_sweep`)
into a fresh results folder: off, on (the sinks' writer thread, as the commands run them) and, with
`--sync`, on with every sink call in the driver as before the writer thread (`open_sinks(background=False)`)
alternate, `--repeats` times, and the medians are compared, so all see the same machine load; `cpu_s` is
the CPU time of each sweep's processes (user + system), which load blurs less.
The MLflow database is created once beforehand (a new database's schema
migrations are a one-off cost, measured separately). Each sweep also reports the seconds the driver spent
opening the sinks (`open_s`) and in their hooks, waiting at the end included (`hooks_s`), and the writer
thread's own seconds in the sinks (`writer_s`: MLflow's import, every write), which a loaded machine's
noise blurs less.

    python benchmarks/sinks_overhead.py --rates 0.02,0.05,0.1 --epochs 2 --repeats 3 --data mnist-5k
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tiny import tiny_net  # benchmarks/tiny.py

DRIVER = r"""
import json, sys, time
from cnnbench.sinks import open_sinks
from cnnbench.spec import load_spec
from cnnbench.sweep import SweepOptions, plan_sweep, run_sweep

spec, rates, out, tb, uri, mode = sys.argv[1:7]
start = time.perf_counter()
with open_sinks(tensorboard=tb or None, mlflow=uri or None, background=mode != "sync") as sinks:
    opened = time.perf_counter() - start
    run_sweep(plan_sweep(load_spec(spec), rates, out), SweepOptions(device="cpu"), on_event=sinks.watching())
print(json.dumps({"wall_s": time.perf_counter() - start, "open_s": opened, "hooks_s": sinks.seconds,
                  "writer_s": sinks.writer_seconds if mode != "sync" else sinks.seconds}))
"""


def sweep(spec: Path, rates: str, out: Path, tb: str = "", uri: str = "", mode: str = "") -> dict[str, float]:
    args = [sys.executable, "-c", DRIVER, str(spec), rates, str(out), tb, uri, mode]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(args, check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the driver and the processes it waited for (MLflow's writer)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.02,0.05,0.1,0.2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default="mnist-5k", help="mnist-5k (4,000 training digits), mnist or synthetic")
    parser.add_argument("--sync", action="store_true", help="also the sinks with no writer thread (every call in the driver)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = root / "tiny.json"
        spec.write_text(json.dumps(tiny_net(args.epochs, {"dataset": args.data})))
        uri = f"sqlite:///{root / 'mlruns.db'}"
        start = time.perf_counter()
        make = f"from cnnbench.sinks import open_sinks; open_sinks(mlflow={uri!r}, background=False).close()"
        subprocess.run([sys.executable, "-c", make], check=True)
        new_db = time.perf_counter() - start
        runs: dict[str, list[dict]] = {"off": [], "on": [], **({"sync": []} if args.sync else {})}
        for repeat in range(args.repeats):
            runs["off"].append(sweep(spec, args.rates, root / f"off-{repeat}"))
            runs["on"].append(sweep(spec, args.rates, root / f"on-{repeat}", str(root / f"tb-{repeat}"), uri))
            if args.sync:
                runs["sync"].append(sweep(spec, args.rates, root / f"sync-{repeat}", str(root / f"tbs-{repeat}"), uri, "sync"))
    median = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
    print(json.dumps({"runs": len(args.rates.split(",")), "epochs": args.epochs, "repeats": args.repeats, "data": args.data,
                      "median": median, "samples": runs,
                      "ratio_wall_median": round(median["on"]["wall_s"] / median["off"]["wall_s"], 3),
                      **({"ratio_wall_median_sync": round(median["sync"]["wall_s"] / median["off"]["wall_s"], 3)} if args.sync else {}),
                      "ratio_cpu_median": round(median["on"]["cpu_s"] / median["off"]["cpu_s"], 3),
                      "sink_s_median": round(median["on"]["open_s"] + median["on"]["hooks_s"], 2),
                      "ratio_sink_work": round(1 + (median["on"]["open_s"] + median["on"]["hooks_s"]) / median["off"]["wall_s"], 3),
                      "new_mlflow_database_s": round(new_db, 2)}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
