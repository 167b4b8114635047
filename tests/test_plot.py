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

import numpy as np
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


def make_run(
    folder: Path, lr: float = 0.1, epochs: int = 5, status: str = "ok", diverge_at: int | None = None, extra: dict | None = None
) -> Path:
    """A run folder as `train` writes it: run.json (updated with `extra`) and a history.csv with plausible curves."""
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
        "final_val_error": rows[-1]["val_error"], "best_val_error": min(r["val_error"] for r in rows), **(extra or {}),
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
    for stem in ("runtime_vs_params_cpu", "runtime_vs_params_gpu", "runtime_loglog", "runtime_vs_flops", "speedup", "throughput"):
        _non_empty(paths, bench, stem)
    _non_empty(paths, run, "curves")
    assert len(paths) == 2 * 10 + 1 and bench / "fits.csv" in paths
    assert {r["engine"] for r in csv.DictReader(open(bench / "fits.csv"))} == {""}  # a bench.csv without `engine` still plots
    assert "<svg" in (sweep / "val_error_curves.svg").read_text()
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_prints_the_paths_and_honours_format_log_scale_and_out(results, tmp_path):
    out = tmp_path / "figures"
    result = CliRunner().invoke(app, ["plot", str(results), "--format", "pdf", "--log-scale", "--out", str(out)])
    assert result.exit_code == 0, result.output
    printed = [Path(line) for line in result.stdout.splitlines()]
    figures = [p for p in printed if p.suffix == ".pdf"]
    assert len(figures) == 10 and all(p.is_file() for p in printed)
    assert [p.name for p in printed if p.suffix != ".pdf"] == ["fits.csv"]
    assert out / "sweep-lr-x" / "error_vs_lr.pdf" in printed
    assert not list(results.rglob("*.pdf")) and not list(results.rglob("fits.csv"))  # nothing written next to the results


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_speedup_is_skipped_with_a_single_device_and_the_rest_drawn(tmp_path, device):
    bench = make_bench(tmp_path / "bench")
    rows = [r for r in csv.DictReader(open(bench / "bench.csv")) if r["device"] == device]
    _write_csv(bench / "bench.csv", BENCH, rows)
    paths = plot_results(bench, formats=["png"])
    expected = {f"runtime_vs_params_{device}.png", "runtime_loglog.png", "runtime_vs_flops.png", "throughput.png", "fits.csv"}
    assert {p.name for p in paths} == expected


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


# --- a bad folder is skipped with a warning, the rest is drawn (issue 8 §5) --------------------


def _break_bench(folder: Path, how: str) -> str:
    make_bench(folder)
    path = folder / "bench.csv"
    text = path.read_text()
    if how == "binary":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00garbage\xff\xfe")
        return "not text"
    if how == "not-csv":
        path.write_text('a,b\n1,2,3,4,5\n"unclosed\n')
        return "not a CSV table"
    if how == "no-columns":
        path.write_text("foo,bar\n1,2\n")
        return "no 'status', 'device', 'backend', 'params' column"
    if how == "nan-inf":  # every ok row's times broken: nothing left to draw
        rows = list(csv.DictReader(text.splitlines()))
        for i, row in enumerate(rows):
            if row["status"] == "ok":
                row.update(epoch_s_median=["nan", "inf", "-inf", "abc"][i % 4], total_s=["inf", "nan", "0", "xyz"][i % 4])
        _write_csv(path, BENCH, rows)
        return "ok row(s) not drawn"
    raise AssertionError(how)


def _break_run(folder: Path, how: str) -> str:
    make_run(folder)
    if how == "run-json-garbage":
        (folder / "run.json").write_text('{"status": "ok", "learning_rate": 0.1,')
        return "run.json: not valid JSON"
    if how == "run-json-types":
        (folder / "run.json").write_text(json.dumps({"status": "ok", "learning_rate": "fast" * 100, "data": "mnist"}))
        return "run.json: learning_rate is 'fastfastfast"
    if how == "run-json-list":
        (folder / "run.json").write_text("[1, 2]")
        return "run.json: holds list, not a JSON object"
    if how == "run-json-nested":
        (folder / "run.json").write_text("[" * 100_000 + "]" * 100_000)
        return "run.json: not valid JSON"
    if how == "run-json-nan":
        (folder / "run.json").write_text('{"status": "ok", "learning_rate": NaN}')
        return "run.json: learning_rate must be a positive number, got nan"
    if how == "history-garbage":
        (folder / "history.csv").write_bytes(b"\x00\x01\x02 not a table")
        return "history.csv: not a CSV table (it holds NUL bytes)"
    if how == "history-no-epoch":
        (folder / "history.csv").write_text("loss,accuracy\n0.3,0.9\n")
        return "history.csv: no 'epoch' column"
    if how == "history-text":
        text = (folder / "history.csv").read_text().splitlines()
        cells = text[2].split(",")
        cells[1] = "oops"
        (folder / "history.csv").write_text("\n".join([*text[:2], ",".join(cells), *text[3:]]) + "\n")
        return "history.csv: column 'loss', row 2: 'oops' is not a number"
    raise AssertionError(how)


BROKEN_BENCHES = ("binary", "not-csv", "no-columns", "nan-inf")
BROKEN_RUNS = ("run-json-garbage", "run-json-types", "run-json-list", "run-json-nested", "run-json-nan", "history-garbage",
               "history-no-epoch", "history-text")  # fmt: skip


def _plot_tree(root: Path):
    """`cnnbench plot root` (PNG only): (files written relative to root, warning lines); never a traceback, exit 0."""
    result = CliRunner().invoke(app, ["plot", str(root), "--format", "png"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert all(len(line) < 400 for line in result.stderr.splitlines())  # a user's value is never printed whole
    return {str(Path(p).relative_to(root)) for p in result.stdout.split()}, [line for line in result.stderr.splitlines() if line]


def test_each_kind_of_broken_bench_csv_is_skipped_with_a_warning_and_the_rest_drawn(tmp_path):
    reasons = {how: _break_bench(tmp_path / f"bench-{how}", how) for how in BROKEN_BENCHES}
    make_run(tmp_path / "good-run")
    (make_bench(tmp_path / "bench-json-torn", gpu=False) / "bench.json").write_text('{"spec": {"name": ')
    written, warnings = _plot_tree(tmp_path)
    assert {p for p in written if not p.startswith("bench-json-torn/")} == {"good-run/curves.png"}
    assert "bench-json-torn/runtime_loglog.png" in written  # a torn bench.json only costs the caption its details
    torn = tmp_path / "bench-json-torn" / "bench.json"
    assert f"warning: {torn}: not valid JSON (torn or edited); the captions go without it" in warnings
    for how, reason in reasons.items():
        path = str(tmp_path / f"bench-{how}" / "bench.csv")
        assert [w for w in warnings if path in w and reason in w and w.startswith("warning: ")], (how, warnings)


def test_each_kind_of_broken_run_is_skipped_alone_in_a_tree_and_in_a_sweep(tmp_path):
    reasons = {how: _break_run(tmp_path / f"run-{how}", how) for how in BROKEN_RUNS}
    sweep = tmp_path / "sweep"
    make_run(sweep / "lr-0.1", 0.1, 3)
    for how in BROKEN_RUNS:
        _break_run(sweep / f"lr-{how}", how)
    (sweep / "sweep.json").write_text("{}")
    make_run(tmp_path / "good-run")
    written, warnings = _plot_tree(tmp_path)
    assert written == {"good-run/curves.png", "sweep/val_error_curves.png", "sweep/loss_curves.png", "sweep/error_vs_lr.png"}
    for how, reason in reasons.items():
        for folder in (tmp_path / f"run-{how}", sweep / f"lr-{how}"):
            assert [w for w in warnings if w.startswith("warning: skipped ") and str(folder) in w and reason in w], (how, warnings)


def test_a_cut_off_history_and_inf_errors_draw_what_is_whole(tmp_path):
    run = make_run(tmp_path / "run", epochs=5)
    text = (run / "history.csv").read_text()
    (run / "history.csv").write_text(text[: len(text) - 9])  # the last row is cut in the middle of a number
    with pytest.warns(UserWarning, match="last line is incomplete") as caught:
        paths = plot_results(tmp_path, formats=["png"])
    assert paths == [run / "curves.png"] and str(run / "history.csv") in str(caught[0].message)
    from cnnbench.plot.load import read_run

    with pytest.warns(UserWarning, match="last line is incomplete"):
        assert list(read_run(run).epochs) == [1, 2, 3, 4]
    lines = (run / "history.csv").read_text().splitlines()
    cells = lines[1].split(",")
    cells[HISTORY.index("val_error")] = "inf"
    (run / "history.csv").write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    with pytest.warns(UserWarning, match="not drawn: 1 val_error value"):
        assert np.isnan(read_run(run).val_error[0])


def test_only_broken_folders_is_one_error_line(tmp_path):
    _break_run(tmp_path / "r", "run-json-garbage")
    result = CliRunner().invoke(app, ["plot", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    expected = f"error: nothing to plot under {tmp_path}: found 1 run, but 1 could not be read (see the warnings)"
    assert result.stderr.splitlines()[-1] == expected


# --- runtime: growth verdicts, one-epoch benches, engines ---------------------------------------

P = [52_258, 104_250, 211_690, 440_394, 953_098, 2_199_690]
LAWS = {
    "tensorflow": ("linear", lambda p: 0.15 + 8e-7 * p),
    "jax": ("power", lambda p: 2e-6 * p**1.3),
    "torch": ("exponential", lambda p: 0.2 * math.exp(1.5e-6 * p)),
}


def _law_bench(folder: Path, epochs: int = 20, engine: bool = False) -> Path:
    """A CPU bench whose backends follow one exact law each (see LAWS); with `engine`, jax twice (fit, fused)."""
    rows = []
    for backend, (_, law) in LAWS.items():
        for f, p in zip([8, 16, 32, 64, 128, 256], P, strict=True):
            t = law(p)
            for eng in ["fit", "fused"] if engine and backend == "jax" else ["fit"]:
                t_eng = t / 3 if eng == "fused" else t
                row = {"device": "cpu", "device_name": "AMD EPYC", "backend": backend, "filters": f, "params": p,
                       "flops_per_sample": 12 * p, "batch_size": 64, "epochs": epochs, "estimated": False, "status": "ok",
                       "samples_per_s": 4000 / t_eng, "first_epoch_s": t_eng + 0.3, "train_samples": 4000, "engine": eng}  # fmt: skip
                if epochs > 1:
                    row.update(epoch_s_median=t_eng, epoch_s_min=0.98 * t_eng, epoch_s_max=1.04 * t_eng, total_s=0.3 + epochs * t_eng)
                else:
                    row.update(total_s=t_eng + 0.3)
                rows.append(row)
    columns = BENCH + ["train_samples"] + (["engine"] if engine else [])
    _write_csv(folder / "bench.csv", columns, rows)
    return folder


def test_growth_verdicts_on_exact_laws():
    from cnnbench.plot import compare_growth, local_slopes

    for expected, law in LAWS.values():
        growth = compare_growth(P, [law(p) for p in P])
        assert growth.verdict == expected, (expected, growth.fits)
        best = growth.fits[expected]
        assert best.r2 == pytest.approx(1.0) and best.miss < 1e-9 and best.max_rel_residual < 1e-9  # R² 1, no residual
        assert growth.margin > 0.01
    slopes = local_slopes(P, [2e-6 * p**1.3 for p in P])
    assert slopes == pytest.approx([1.3] * 5)
    rising = local_slopes(P, [0.2 * math.exp(1.5e-6 * p) for p in P])
    assert all(b > a for a, b in zip(rising, rising[1:], strict=False))  # an exponential's local exponent keeps rising
    assert compare_growth([1, 2], [1, 2]).verdict == ""  # two points fit anything
    # every candidate is fitted on the loss it is judged on: the line no longer predicts t ≤ 0 for the small models
    bent = compare_growth(P, [0.17, 0.27, 0.35, 0.89, 2.36, 10.14])  # docs/bench-cpu, TensorFlow's steady epochs
    assert all(math.isfinite(f.miss) for f in bent.fits.values())
    assert bent.verdict == "inconclusive" and bent.within == ["linear", "power", "exponential"]


def test_a_series_that_does_not_grow_is_called_flat_not_fitted():
    """The H100's `fit` epochs (cnnbench 0.1.0): overhead-bound, no trend from 52k to 2.2M parameters."""
    from cnnbench.plot import compare_growth

    gpu = compare_growth(P, [0.6245, 0.7114, 0.8610, 0.7216, 0.7877, 0.6591])
    assert gpu.verdict == "flat" and abs(gpu.fits["power"].q) < 0.05
    assert gpu.summary() == "flat: no growth beyond the noise (±11 %)"
    assert compare_growth(P, [1.0] * 6).verdict == "flat"
    assert compare_growth(P, [0.17, 0.27, 0.35, 0.89, 2.36, 10.14]).verdict != "flat"  # a 60x rise is growth


def test_fits_csv_states_the_verdict_of_every_series(tmp_path):
    paths = plot_results(_law_bench(tmp_path / "bench"), formats=["png"])
    fits = list(csv.DictReader(open(tmp_path / "bench" / "fits.csv")))
    assert tmp_path / "bench" / "fits.csv" in paths
    by_params = {r["backend"]: r for r in fits if r["x"] == "params" and r["y"] == "epoch_s_median"}
    assert {b: r["verdict"] for b, r in by_params.items()} == {b: law[0] for b, law in LAWS.items()}
    assert float(by_params["jax"]["power_k"]) == pytest.approx(1.3)
    assert [float(v) for v in by_params["jax"]["local_slopes"].split(";")] == pytest.approx([1.3] * 5, abs=1e-3)
    assert {r["x"] for r in fits} == {"params", "flops"}  # runtime vs FLOPs is fitted too
    assert (tmp_path / "bench" / "runtime_vs_flops.png").stat().st_size > 1000


def test_a_bench_of_one_epoch_plots_its_total_times(tmp_path):
    bench = _law_bench(tmp_path / "bench", epochs=1)
    result = CliRunner().invoke(app, ["plot", str(bench), "--format", "png"])
    assert result.exit_code == 0, result.output
    names = {Path(p).name for p in result.stdout.split()}
    assert names == {"runtime_vs_params_cpu.png", "runtime_loglog.png", "runtime_vs_flops.png", "throughput.png", "fits.csv"}
    fits = list(csv.DictReader(open(bench / "fits.csv")))
    assert {r["y"] for r in fits} == {"total_s"}


def test_engine_column_makes_its_own_series(tmp_path):
    plot_results(_law_bench(tmp_path / "new", engine=True), formats=["png"])
    fits = list(csv.DictReader(open(tmp_path / "new" / "fits.csv")))
    jax = {r["engine"]: r for r in fits if r["backend"] == "jax" and r["x"] == "params" and r["y"] == "epoch_s_median"}
    assert set(jax) == {"fit", "fused"} and all(r["verdict"] == "power" for r in jax.values())


def test_speedup_with_one_gpu_and_a_one_epoch_bench(tmp_path):
    bench = make_bench(tmp_path / "bench")
    rows = list(csv.DictReader(open(bench / "bench.csv")))
    for row in rows:
        row.update(epochs=1, epoch_s_median="", epoch_s_min="", epoch_s_max="", total_s=row["first_epoch_s"])
    _write_csv(bench / "bench.csv", BENCH, rows)
    names = {p.name for p in plot_results(bench, formats=["png"])}
    assert {"speedup.png", "throughput.png", "runtime_vs_params_gpu.png"} <= names


# --- learning curves ---------------------------------------------------------------------------


def _legend(fig) -> list[str]:
    texts = [t.get_text() for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes)] if legend for t in legend.get_texts()]
    return texts


def test_ten_rates_get_ten_colours_that_can_be_told_apart():
    from matplotlib.colors import rgb_to_hsv

    from cnnbench.plot.curves import lr_colors

    colors = np.array([c[:3] for c in lr_colors(10)])
    distances = [np.linalg.norm(colors[i] - colors[j]) for i in range(10) for j in range(i)]
    assert min(distances) > 0.12
    assert len({round(h, 2) for h in rgb_to_hsv(colors)[:, 0]}) == 10  # ten different hues, not shades of one


def test_sweep_figures_mark_runs_that_did_not_learn_and_draw_chance(tmp_path):
    from cnnbench.plot.curves import _error_vs_lr_figure, _loss_figure, _val_error_figure, load_sweep, lr_colors

    sweep = tmp_path / "sweep"
    planned = {"seed": 7, "epochs": 20}
    make_run(sweep / "lr-0.05", 0.05, 6, extra={"learned": False, **planned})  # the key the train helper writes
    make_run(sweep / "lr-0.0001", 1e-4, 6, extra=planned)  # no key: best error 0.88, within chance's margin → did not learn
    make_run(sweep / "lr-0.1", 0.1, 6, extra=planned)
    make_run(sweep / "lr-5", 5.0, 6, "diverged", 2, extra=planned)
    (sweep / "sweep.json").write_text("{}")
    runs, _ = load_sweep(sweep)
    fig = _val_error_figure(runs, lr_colors(len(runs)), "t", ["c"], False)
    labels = _legend(fig)
    assert "0.0001 (did not learn)" in labels and "0.05 (did not learn)" in labels and "0.1" in labels and "5 (diverged)" in labels
    assert "chance: 0.9 (1 − 1/10)" in labels
    assert fig.axes[0].get_ylim()[0] == 0 and fig.axes[0].get_ylim()[1] >= 0.9  # a flat run at chance is not zoomed into
    loss = _loss_figure(runs, lr_colors(len(runs)), "t", ["c"], False)
    assert [ax.get_title() for ax in loss.axes] == ["Training loss", "Validation loss"]
    assert "chance: 0.9 (1 − 1/10)" in _legend(_error_vs_lr_figure(runs, "n", ["c"]))
    paths = plot_results(sweep, formats=["svg"])
    assert len(paths) == 3


def test_a_record_without_learned_is_judged_by_the_rule_train_records(tmp_path):
    """One rule: `plot` judges an older run.json without `learned` as `train` would have recorded it (cnnbench.chance),
    with the margin its validation size gives: 0.86 learned on 10,000 validation digits, not on 128."""
    from cnnbench.chance import learned
    from cnnbench.plot.load import read_run

    verdicts = {}
    for val_samples in (10_000, 128):
        run_dir = tmp_path / f"val-{val_samples}"
        make_run(run_dir, 0.1, 2, extra={"data": {"name": "mnist", "val_samples": val_samples}})
        _write_csv(run_dir / "history.csv", HISTORY, [{"epoch": 1, "val_error": 0.86}])
        verdicts[val_samples] = read_run(run_dir).learned
        assert verdicts[val_samples] is learned(0.86, 10, val_samples)
    assert verdicts == {10_000: True, 128: False}
    make_run(tmp_path / "unsized", 0.1, 2, extra={"data": {"name": "mnist"}})  # how many validation digits is not known
    assert read_run(tmp_path / "unsized").learned is None


def test_chance_follows_the_number_of_classes_and_titles_carry_epochs_and_seed(tmp_path):
    from cnnbench.plot.curves import _val_error_figure, epochs_and_seed, load_sweep, lr_colors

    make_run(
        tmp_path / "s" / "lr-0.1", 0.1, 3, extra={"seed": 42, "epochs": 20, "data": {"name": "two", "num_classes": 2, "val_samples": 100}}
    )
    (tmp_path / "s" / "sweep.json").write_text("{}")
    runs, _ = load_sweep(tmp_path / "s")
    assert "chance: 0.5 (1 − 1/2)" in _legend(_val_error_figure(runs, lr_colors(1), "t", ["c"], False))
    assert epochs_and_seed(runs) == "20 epochs, seed 42"


def test_wilson_interval_from_the_validation_size():
    from cnnbench.plot import wilson_interval

    lo, hi = wilson_interval(0.1, 500)  # by hand: centre 0.10305, half-width 0.02637
    assert (lo, hi) == pytest.approx((0.07668, 0.12942), abs=1e-5)
    wide = hi - lo
    lo, hi = wilson_interval(0.0, 500)
    assert lo == 0 and hi == pytest.approx(0.00762, abs=1e-5)  # never below 0, and a perfect score still has an upper bound
    lo, hi = wilson_interval(0.1, 5000)
    assert hi - lo == pytest.approx(wide / math.sqrt(10), rel=0.01)  # ten times the images: √10 times narrower


def test_a_full_disk_is_one_line_exit_2_and_leaves_no_temporary_file(results, small_disk):
    (small_disk / "filler").write_bytes(b"\0" * (4 * 2**20 - 200_000))  # about 200 kB left: a few figures fit, not all
    result = CliRunner().invoke(app, ["plot", str(results), "--out", str(small_disk / "figures")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write {small_disk / 'figures'}/") and "No space left" in lines[0]
    assert not [p for p in small_disk.rglob("*") if p.name.endswith(".tmp")]  # every figure is whole or absent
    written = list(small_disk.rglob("*.png"))
    assert written and all(path.read_bytes()[-8:] == b"IEND\xaeB`\x82" for path in written)


def test_error_vs_lr_zooms_to_the_rates_that_learned_and_log_scale_reaches_it(tmp_path):
    """Which rate is best: the y axis spans the learned runs' errors and their bars, chance is noted (not forced in),
    the grid follows each axis' scale, and `plot --log-scale` puts this figure's y axis on a log scale too."""
    from cnnbench.plot.curves import _error_vs_lr_figure, load_sweep

    sweep = tmp_path / "sweep"
    for lr in (0.01, 0.03, 0.1):  # best errors 0.27, 0.05, 0.05: far below chance (0.9)
        make_run(sweep / f"lr-{lr:g}", lr, 6)
    make_run(sweep / "lr-5", 5.0, 6, "diverged", 2)
    (sweep / "sweep.json").write_text("{}")
    runs, _ = load_sweep(sweep)
    for log_scale in (False, True):
        ax = _error_vs_lr_figure(runs, "n", ["c"], log_scale).axes[0]
        bottom, top = ax.get_ylim()
        learned = [r.best_val_error for r in runs if r.status == "ok"] + [r.val_error[-1] for r in runs if r.status == "ok"]
        assert bottom <= min(learned) and max(learned) <= top < 0.6  # the data fill the axis; chance (0.9) lies above it
        notes = [t.get_text() for t in ax.texts]
        assert "chance 0.9 (above)" in notes and "diverged ↑ 0.9" in notes
        assert ax.get_yscale() == ("log" if log_scale else "linear") and ax.get_xscale() == "log"
        assert all(line.get_visible() for line in ax.yaxis.get_gridlines())
        if log_scale:  # a log-spaced grid: every 1…9 × 10^k inside the range, the minor lines drawn too
            grid = sorted(t for t in [*ax.get_yticks(), *ax.yaxis.get_minorticklocs()] if bottom <= t <= top)
            assert len(grid) >= 5 and {round(t / 10 ** math.floor(math.log10(t) + 1e-9), 6) for t in grid} <= set(range(1, 10))
            assert all(tick.gridline.get_visible() for tick in ax.yaxis.get_minor_ticks())
        else:  # a linear grid: evenly spaced
            ticks = [t for t in ax.get_yticks() if bottom <= t <= top]
            assert len(ticks) >= 3 and np.allclose(np.diff(ticks), np.diff(ticks)[0]), ticks
        x_grid = [x for x in ax.xaxis.get_minorticklocs() if ax.get_xlim()[0] <= x <= ax.get_xlim()[1]]
        assert x_grid and all(round(x / 10 ** math.floor(math.log10(x) + 1e-9), 6) in (1, 2, 5) for x in x_grid)  # 1-2-5 per decade
        assert all(tick.gridline.get_visible() for tick in ax.xaxis.get_minor_ticks())
        assert not any(line.get_visible() for line in ax.xaxis.get_gridlines())  # no grid at the irregular rate ticks
    result = CliRunner().invoke(app, ["plot", str(sweep), "--format", "svg", "--log-scale", "--out", str(tmp_path / "log")])
    assert result.exit_code == 0, result.output
    svg = (tmp_path / "log" / "error_vs_lr.svg").read_text()
    assert "<!-- validation error (fraction misclassified), log scale -->" in svg


def test_history_as_train_writes_it_reads_the_same_as_through_pandas(tmp_path):
    """The direct reader of plain-number history.csv files (the 1,000-run speed-up) gives pandas' frame, warnings
    included; a file it does not take (quoted cells) still reads through pandas."""
    import warnings

    from cnnbench.plot import load

    text = ("epoch,loss,val_error,epoch_time_s,learning_rate\n3,0.5,0.2,0.3,0.1\n1,inf,1.5,,0.1\n2,nan,0.4,-1,0.1\n"
            "2,0.7,0.3,0.3,0.1\n,0.9,0.9,0.3,0.1\n")  # fmt: skip
    (tmp_path / "history.csv").write_text(text)
    with warnings.catch_warnings(record=True) as fast_warnings:
        warnings.simplefilter("always")
        fast = load.read_history(tmp_path / "history.csv")
    assert load._plain_numbers(tmp_path / "history.csv") is not None
    frame = load.read_table(tmp_path / "history.csv")
    with warnings.catch_warnings(record=True) as slow_warnings:
        warnings.simplefilter("always")
        slow = load._checked_history({c: load.numeric(frame, c, tmp_path) for c in frame}, tmp_path / "history.csv")
    assert fast.equals(slow) and list(fast["epoch"]) == [1, 2, 3] and list(fast["loss"].isna()) == [False, False, False]
    assert fast["val_error"].isna().tolist() == [True, False, False] and fast["val_error"].tolist()[1:] == [0.3, 0.2]  # 1.5: out of range
    assert fast["loss"].tolist() == [float("inf"), 0.7, 0.5]  # the last row of a repeated epoch; a row without an epoch dropped
    assert [str(w.message) for w in fast_warnings] == [str(w.message) for w in slow_warnings] != []
    (tmp_path / "history.csv").write_text(text.replace("0.5", '"0.5"'))
    assert load._plain_numbers(tmp_path / "history.csv") is None
    with pytest.warns(Warning, match="1 val_error value"):
        assert load.read_history(tmp_path / "history.csv").equals(fast)
