"""How far does `--measure-epochs k` land from a full run? Full E-epoch benches against k-epoch estimates.

For each filter count this runs (through the library, like `cnnbench bench`) a full bench of E epochs
and a bench that trains k epochs and extrapolates to E, then prints the estimate's error in percent:
once for the separate k-epoch run (what a user gets) and once for the first k epochs of the full run
itself (the extrapolation alone, without run-to-run noise). Results go to <out>/extrapolation.csv.

    python benchmarks/extrapolation.py --filters 8,16,32 --epochs 20 --measure-epochs 2
    python benchmarks/extrapolation.py --filters 2 --epochs 3 --measure-epochs 2 --data synthetic --train-samples 256   # smoke test
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnbench.bench import BenchOptions, parse_list, run_bench, summarize_repeats
from cnnbench.provenance import machine
from cnnbench.results import load_history, write_csv
from cnnbench.spec import load_spec


def error_pct(estimate: float | None, actual: float | None) -> float | None:
    return None if estimate is None or not actual else 100 * (estimate - actual) / actual


def compare(args: argparse.Namespace) -> list[dict]:
    spec = load_spec(args.spec).with_overrides(
        epochs=args.epochs, dataset=args.data, train_samples=args.train_samples, batch_size=args.batch_size
    )
    grid = dict(devices=(args.device,), backends=(args.backend,), filters=args.filters, repeats=args.repeats, threads=args.threads)
    full = run_bench(spec, BenchOptions(**grid), args.out)
    measured = run_bench(spec, BenchOptions(**grid, measure_epochs=args.measure_epochs), args.out)
    estimates = {row["filters"]: row for row in measured.rows}
    rows = []
    for row in full.rows:
        if row["status"] != "ok":
            rows.append({"filters": row["filters"], "status": row["status"], "error": row.get("error")})
            continue
        # The same extrapolation applied to the full run's own first k epochs.
        histories = [load_history(full.path / run_dir) for run_dir in row["run_dirs"].split(";")]
        first_k = [(list(h["epoch_time_s"][: args.measure_epochs]), list(h["samples_per_s"][: args.measure_epochs])) for h in histories]
        same_run = summarize_repeats(args.epochs, first_k).get("total_s")
        separate = estimates.get(row["filters"], {}).get("total_s")
        rows.append({
            "filters": row["filters"], "params": row["params"], "status": "ok", "epochs": args.epochs,
            "measure_epochs": args.measure_epochs, "full_total_s": row["total_s"], "first_epoch_s": row["first_epoch_s"],
            "epoch_s_median": row["epoch_s_median"], "estimate_s": separate, "estimate_error_pct": error_pct(separate, row["total_s"]),
            "same_run_estimate_s": same_run, "same_run_error_pct": error_pct(same_run, row["total_s"]),
        })  # fmt: skip
    write_csv(Path(args.out) / "extrapolation.csv", rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="convolutional_nn")
    parser.add_argument("--filters", type=lambda text: parse_list(text, "--filters", int), default=(8, 16, 32))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--measure-epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--backend", default="tensorflow", choices=("tensorflow", "jax", "torch"))
    parser.add_argument("--data", default="mnist-5k")
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="results/extrapolation")
    args = parser.parse_args(argv)
    if not 1 <= args.measure_epochs < args.epochs:
        parser.error("--measure-epochs must be at least 1 and below --epochs")
    rows = compare(args)
    facts = machine()
    print(f"{facts['cpu']} ({facts['cpu_cores']} cores), {args.device}/{args.backend}, {args.data}, "
          f"{args.epochs} epochs estimated from {args.measure_epochs}, {args.repeats} repeat(s)")  # fmt: skip
    print(f"{'filters':>7} {'params':>10} {'full s':>9} {'estimate s':>11} {'error %':>8} {'same-run est. s':>16} {'error %':>8}")
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['filters']:>7} {r['status']}: {r['error']}")
            continue
        cells = [(r["filters"], "7"), (r["params"], "10,"), (r["full_total_s"], "9.2f"), (r["estimate_s"], "11.2f"),
                 (r["estimate_error_pct"], "+8.1f"), (r["same_run_estimate_s"], "16.2f"), (r["same_run_error_pct"], "+8.1f")]  # fmt: skip
        print(" ".join(_num(value, spec) for value, spec in cells))
    print(f"written: {Path(args.out) / 'extrapolation.csv'}")
    return 0


def _num(value: float | None, spec: str) -> str:
    width = int(spec.lstrip("+").split(".")[0].rstrip(","))
    return "-".rjust(width) if value is None else format(value, spec)


if __name__ == "__main__":
    sys.exit(main())
