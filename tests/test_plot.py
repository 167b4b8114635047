"""`cnnbench plot`: figures for runs, sweeps and benches, discovery, errors, curve fits, no Keras import.

Sweep and bench folders are written here directly (small, plausible numbers), so these tests need no
training; one test plots a real `train` run.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnbench.cli import app
from cnnbench.errors import UsageError
from cnnbench.plot import fit_linear, fit_power, parse_formats, plot_results
from cnnbench.results import find_results

HISTORY = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_error", "epoch_time_s", "samples_per_s", "learning_rate"]
BENCH = [
    "device", "device_name", "backend", "filters", "params", "flops_per_sample", "batch_size", "epochs", "first_epoch_s",
    "epoch_s_median", "epoch_s_min", "epoch_s_max", "total_s", "samples_per_s", "gflops_per_s", "peak_mem_mb", "estimated",
    "status", "error",
]  # fmt: skip


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def make_run(folder: Path, lr: float = 0.1, epochs: int = 5, status: str = "ok", diverge_at: int | None = None) -> Path:
    """A run folder as `train` writes it: run.json and a history.csv with plausible curves."""
    rows = []
    for e in range(1, epochs + 1):
        error = 0.05 + 0.85 * math.exp(-lr * 40 * e)
        loss = 0.15 + 2.2 * math.exp(-lr * 40 * e)
        if diverge_at and e >= diverge_at:
            loss, error = 8.5e7, 0.9
        rows.append({
            "epoch": e, "loss": loss, "accuracy": 1 - error * 0.9, "val_loss": loss * 1.1, "val_accuracy": 1 - error,
            "val_error": error, "epoch_time_s": 0.55 if e == 1 else 0.26 + 0.01 * (e % 2), "samples_per_s": 15000, "learning_rate": lr,
        })  # fmt: skip
    _write_csv(folder / "history.csv", HISTORY, rows)
    record = {
        "name": "convolutional_nn", "status": status, "learning_rate": lr, "batch_size": 64, "optimizer": "sgd", "epochs": epochs,
        "data": {"name": "mnist-5k", "train_samples": 4000, "val_samples": 1000},
        "device": "cpu", "device_name": "AMD EPYC", "backend": "tensorflow",
        "final_val_error": rows[-1]["val_error"], "best_val_error": min(r["val_error"] for r in rows),
    }  # fmt: skip
    (folder / "run.json").write_text(json.dumps(record))
    return folder


def make_sweep(folder: Path) -> Path:
    """The course's rates, one diverged, one still running and one that failed before its first epoch."""
    summary = []
    for lr, status, epochs, diverge in [(1e-4, "ok", 6, None), (1e-3, "ok", 6, None), (0.01, "ok", 6, None), (0.1, "ok", 6, None),
                                        (0.03, "running", 3, None), (5.0, "diverged", 2, 2)]:  # fmt: skip
        make_run(folder / f"lr-{lr:g}", lr, epochs, status, diverge)
        summary.append({"learning_rate": lr, "status": status})
    summary.append({"learning_rate": 0.3, "status": "failed"})
    (folder / "sweep.json").write_text(json.dumps({"spec": {"name": "convolutional_nn"}, "values": [r["learning_rate"] for r in summary]}))
    _write_csv(folder / "summary.csv", ["learning_rate", "status"], summary)
    return folder


def params(filters: int) -> int:
    return 9 * filters**2 + 6283 * filters + 1418  # the course network, `same` padding


def make_bench(folder: Path, gpu: bool = True) -> Path:
    """CPU (tensorflow, estimated from 2 epochs; jax) and GPU (jax, 256 filters out of memory) rows."""
    rows = []
    combos = [("cpu", "AMD EPYC", "tensorflow", [8, 16, 32, 64], True), ("cpu", "AMD EPYC", "jax", [8, 16, 32, 64], False)]
    if gpu:
        combos.append(("gpu", "NVIDIA H100 80GB HBM3", "jax", [8, 16, 32, 64, 128, 256], False))
    for device, name, backend, filters, estimated in combos:
        for f in filters:
            p = params(f)
            epoch = {"tensorflow": 0.15 + 8e-7 * p, "jax": 0.3 + 1.1e-6 * p}[backend] if device == "cpu" else 0.02 + 1.5e-8 * p
            row = {"device": device, "device_name": name, "backend": backend, "filters": f, "params": p, "flops_per_sample": 12 * p,
                   "batch_size": 64, "epochs": 20, "estimated": estimated, "status": "ok"}  # fmt: skip
            if device == "gpu" and f == 256:
                row.update(status="oom", error="RESOURCE_EXHAUSTED: out of memory")
            else:
                row.update(first_epoch_s=2 * epoch + 0.3, epoch_s_median=epoch, epoch_s_min=0.97 * epoch, epoch_s_max=1.05 * epoch,
                           total_s=2 * epoch + 0.3 + 19 * epoch, samples_per_s=4000 / epoch, gflops_per_s=3 * 12 * p * 4000 / epoch / 1e9,
                           peak_mem_mb=800)  # fmt: skip
            rows.append(row)
    _write_csv(folder / "bench.csv", BENCH, rows)
    bench_json = {"spec": {"name": "convolutional_nn"}, "options": {"data": "mnist-5k", "epochs": 20}, "machine": {"cpu": "AMD EPYC"}}
    (folder / "bench.json").write_text(json.dumps(bench_json))
    return folder


def _non_empty(paths: list[Path], folder: Path, stem: str, formats=("png", "svg")) -> None:
    for fmt in formats:
        path = folder / f"{stem}.{fmt}"
        assert path in paths, f"{path} not written"
        assert path.stat().st_size > 1000


@pytest.fixture
def results(tmp_path) -> Path:
    root = tmp_path / "results"
    make_sweep(root / "sweep-lr-x")
    make_bench(root / "bench-x")
    make_run(root / "convolutional_nn-1")
    return root


def test_discovery_keeps_runs_inside_sweeps_and_benches_to_them(results):
    make_run(results / "bench-x" / "cpu-tensorflow-8")
    found = find_results(results)
    assert found == {"runs": [results / "convolutional_nn-1"], "sweeps": [results / "sweep-lr-x"], "benches": [results / "bench-x"]}


def test_plot_writes_png_and_svg_for_a_sweep_a_bench_and_a_run(results):
    paths = plot_results(results)
    sweep, bench, run = results / "sweep-lr-x", results / "bench-x", results / "convolutional_nn-1"
    for stem in ("val_error_curves", "loss_curves", "error_vs_lr"):
        _non_empty(paths, sweep, stem)
    for stem in ("runtime_vs_params_cpu", "runtime_vs_params_gpu", "runtime_loglog", "speedup", "throughput"):
        _non_empty(paths, bench, stem)
    _non_empty(paths, run, "curves")
    assert len(paths) == 2 * 9
    assert "<svg" in (sweep / "val_error_curves.svg").read_text()
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_prints_the_paths_and_honours_format_log_scale_and_out(results, tmp_path):
    out = tmp_path / "figures"
    result = CliRunner().invoke(app, ["plot", str(results), "--format", "pdf", "--log-scale", "--out", str(out)])
    assert result.exit_code == 0, result.output
    printed = [Path(line) for line in result.stdout.splitlines()]
    assert len(printed) == 9 and all(p.suffix == ".pdf" and p.is_file() for p in printed)
    assert out / "sweep-lr-x" / "error_vs_lr.pdf" in printed
    assert not list(results.rglob("*.pdf"))  # nothing written next to the results


def test_speedup_is_skipped_without_both_devices(tmp_path):
    paths = plot_results(make_bench(tmp_path / "bench", gpu=False), formats=["png"])
    assert {p.name for p in paths} == {"runtime_vs_params_cpu.png", "runtime_loglog.png", "throughput.png"}


@pytest.mark.parametrize("setup", ["empty", "bench-without-ok-rows", "run-without-epochs"])
def test_nothing_to_plot_is_one_line_and_exit_2(tmp_path, setup):
    folder = tmp_path / "results"
    folder.mkdir()
    if setup == "bench-without-ok-rows":
        _write_csv(folder / "b" / "bench.csv", BENCH, [{"device": "gpu", "backend": "jax", "filters": 8, "status": "unavailable"}])
    elif setup == "run-without-epochs":
        (folder / "r").mkdir()
        (folder / "r" / "run.json").write_text(json.dumps({"status": "failed"}))
    result = CliRunner().invoke(app, ["plot", str(folder)])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output
    expected = "no runs, sweeps or benches found under" if setup == "empty" else "nothing to plot under"
    assert lines[0].startswith(f"error: {expected}") and str(folder) in lines[0]


def test_missing_folder_and_bad_format_are_usage_errors(tmp_path):
    result = CliRunner().invoke(app, ["plot", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such folder" in result.stderr
    with pytest.raises(UsageError, match="unknown figure format 'jpg'"):
        parse_formats("png,jpg")
    assert parse_formats(" PNG, svg,png ") == ("png", "svg")


def test_fits_recover_a_known_line_and_power_law():
    x = [52_258, 104_250, 211_690, 440_394, 953_098]
    a, b, r2 = fit_linear(x, [0.15 + 8e-7 * p for p in x])
    assert a == pytest.approx(0.15) and b == pytest.approx(8e-7) and r2 == pytest.approx(1.0)
    c, k, r2 = fit_power(x, [3e-5 * p**0.85 for p in x])
    assert c == pytest.approx(3e-5) and k == pytest.approx(0.85) and r2 == pytest.approx(1.0)
    _, _, r2_line = fit_linear(x, [3e-9 * p**1.8 for p in x])
    assert r2_line < 0.99  # a curve is not a line
    with pytest.raises(ValueError):
        fit_power([1, 2], [0, 1])


def test_plots_a_real_train_run(tiny_spec, tmp_path):
    from cnnbench.train import train_run

    run_dir = tmp_path / "run"
    train_run(tiny_spec, run_dir)
    paths = plot_results(tmp_path, formats=["png"])
    assert paths == [run_dir / "curves.png"] and paths[0].stat().st_size > 1000


def test_plot_never_imports_keras_or_tensorflow(results):
    code = (
        "import sys, cnnbench.plot as p; "
        f"p.plot_results({str(results)!r}, formats=['png']); "
        "heavy = ('keras', 'tensorflow', 'jax', 'torch', 'cnnbench.train', 'cnnbench.callbacks', 'cnnbench.model'); "
        "bad = [m for m in heavy if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
