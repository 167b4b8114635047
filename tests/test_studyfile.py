"""`cnnbench study FILE`: validation before anything trains, plans, a tiny real study end to end, resume, report-only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import TINY_SPLIT


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cnnbench", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def _study(tmp_path, parts, **top) -> str:
    doc = {"spec": "convolutional_nn", "data": "mnist-5k", "defaults": {"epochs": 1, **TINY_SPLIT}, "parts": parts, **top}
    path = tmp_path / "study.json"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.mark.parametrize(
    ("parts", "top", "message"),
    [
        ([{"train": None, "epoch": 2}], {}, "study.json: parts[0].epoch: unknown key (did you mean 'epochs'?)"),
        (
            [{"sweep": {"set": ["training.learning_rate=0.1", "training.optimiser=sgd"]}}],
            {},
            "study.json: parts[0].sweep.set[1]: training.optimiser: unknown key 'optimiser' in training (did you mean 'optimizer'?)",
        ),
        ([{"sweep-lr": "0.1,-1"}], {}, "study.json: parts[0].sweep-lr.values: learning rates must be positive, got -1"),
        ([{"train": None, "epochs": 0}], {}, "study.json: parts[0].epochs: must be a positive integer, got 0"),
        ([{"bench": {"filters": [8, "x"]}}], {}, "study.json: parts[0].bench.filters: cannot read '8,x' as a comma-separated list"),
        (
            [{"sweep": {"set": ["training.learning_rate=0.1"], "rank": "avg"}}],
            {},
            "study.json: parts[0].sweep.rank: must be mean or median",
        ),
        ([{"train": None, "bench": None}], {}, "study.json: parts[0]: must have exactly one of train, sweep-lr, sweep, bench"),
        ([{"train": None}], {"tensorboard": 3}, "study.json: tensorboard: must be a folder"),
        ([{"train": None}], {"partz": 1}, "study.json: partz: unknown key (did you mean 'parts'?)"),
        ([{"train": None}], {"claims": "coarse"}, "study.json: claims: must be one of course, got 'coarse' (did you mean 'course'?)"),
    ],
)
def test_a_bad_study_file_is_one_line_naming_the_field_and_writes_nothing(tmp_path, parts, top, message):
    path = _study(tmp_path, parts, **top)
    result = cli("study", path, "--out", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path.rpartition('/')[0]}/{message}"), lines
    assert not (tmp_path / "out").exists()


def test_course_dry_run_lists_its_parts(tmp_path):
    result = cli("study", "course", "--dry-run", "--data", "mnist-5k", "--out", tmp_path / "course")
    assert result.returncode == 0, result.stderr
    assert "rates-sheet: sweep-lr, 4 runs: 4 to train, 0 kept" in result.stdout
    assert "rates-report: sweep-lr, 8 runs: 8 to train, 0 kept" in result.stdout
    assert "runtime: bench, " in result.stdout and "nothing trained (--dry-run)" in result.stdout
    assert not (tmp_path / "course").exists()


def test_a_tiny_study_runs_end_to_end_resumes_and_redraws_its_report(tmp_path):
    path = _study(tmp_path, [{"name": "single", "train": None}, {"name": "rates", "sweep-lr": [0.1, 0.001]}], claims="course")
    out = tmp_path / "out"
    first = cli("study", path, "--out", out)
    assert first.returncode == 0, first.stderr
    assert (out / "report.html").is_file() and f"report: {out / 'report.html'}" in first.stdout
    index = json.loads((out / "study.json").read_text())
    assert index["claims"] == "course" and [p["folder"] for p in index["parts"]] == ["single", "rates"]
    page = (out / "report.html").read_text()  # the course's questions, answered from this study's own sweep
    assert '<table id="course-table">' in page and 'data-id="speedup">not tested' in page and "0.001 → final validation error" in page
    runs = list((out / "single").glob("*/run.json"))
    assert len(runs) == 1 and json.loads(runs[0].read_text())["status"] == "ok"
    sweeps = list((out / "rates").glob("*/summary.csv"))
    assert len(sweeps) == 1 and len(sweeps[0].read_text().strip().splitlines()) == 3  # header + 2 rates

    plan = cli("study", path, "--out", out, "--dry-run")
    assert "single: train, 1 run: 0 to train, 1 kept" in plan.stdout and "rates: sweep-lr, 2 runs: 0 to train, 2 kept" in plan.stdout
    again = cli("study", path, "--out", out)
    assert again.returncode == 0, again.stderr
    assert "0 to train, 1 kept" in again.stderr and "0 to train, 2 kept" in again.stderr
    assert len(list((out / "single").glob("*/run.json"))) == 1

    (out / "report.html").unlink()
    redraw = cli("study", path, "--out", out, "--report-only")
    assert redraw.returncode == 0, redraw.stderr
    assert (out / "report.html").is_file()


def test_schema_study_prints_the_study_file_schema():
    result = cli("schema", "--study")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["title"] == "cnnbench study file" and schema["required"] == ["spec", "parts"]


def test_a_spec_file_is_found_beside_the_study_file_and_its_mistakes_name_that_file(tmp_path):
    (tmp_path / "nets").mkdir()
    net = (
        "name: net\ninput_shape: [28, 28, 1]\nlayers:\n  - {type: Conv2D, filters: 4, kernel_size: 3}\n  - {type: Flatten}\n"
        "  - {type: Dense, units: 10, activation: softmax}\n"
    )
    (tmp_path / "nets" / "net.yaml").write_text(net)
    path = tmp_path / "study.yaml"
    path.write_text("spec: nets/net.yaml\nparts:\n  - bench: {filters: [4, 8], devices: cpu}\n")
    result = cli("study", path, "--dry-run", "--out", tmp_path / "out", cwd="/")
    assert result.returncode == 0, result.stderr
    assert "1-bench: bench, 2 combinations: 2 to train, 0 kept" in result.stdout
    (tmp_path / "nets" / "net.yaml").write_text("name: net\ninput_shape: [28, 28, 1]\nlayers:\n  - {type: Conv2D, filterz: 4}\n")
    result = cli("study", path, "--dry-run", "--out", tmp_path / "out", cwd="/")
    assert result.returncode == 2 and result.stderr.startswith(f"error: {tmp_path / 'nets' / 'net.yaml'}: layers[0]"), result.stderr
