"""`cnnbench report` on a general sweep (`cnnbench sweep` study): the best point with its seed interval as points.csv
holds it, edges, bad points, the `--tune` view, and `plot`'s study figures with a dot per seed, checked in Chromium.

The study is written by the real study pipeline (`run_study`: sweep.json, runs.csv, points.csv, `<point>/seed-<s>/`)
with training replaced by an instant fake that writes run.json and history.csv as `train` does, so every number is
known in advance.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from test_plot import make_run
from typer.testing import CliRunner

from cnnbench.cli import app
from cnnbench.grid import make_grid
from cnnbench.plot.figure import num
from cnnbench.report import write_report
from cnnbench.results import read_json, write_json
from cnnbench.spec import load_spec
from cnnbench.study import plan_study, run_study

# best validation error per (filters, learning rate, seed); None: the seed diverged
ERRORS = {
    (4, 0.01, 0): 0.90, (4, 0.01, 1): 0.89,  # never learned (at chance)
    (8, 0.01, 0): 0.50, (8, 0.01, 1): 0.56,
    (4, 0.1, 0): 0.20, (4, 0.1, 1): 0.26,
    (8, 0.1, 0): 0.10, (8, 0.1, 1): 0.13,  # the best point: inside the rate axis, at the edge of filters
    (4, 1.0, 0): 0.30, (4, 1.0, 1): None,  # one seed diverged
    (8, 1.0, 0): 0.15, (8, 1.0, 1): 0.19,
}  # fmt: skip
FILTERS = "layers.*.filters"
RATE = "training.learning_rate"


def _fake_train_run(spec, run_dir, options, on_epoch=None, on_start=None):
    """Three epochs ending at the error of ERRORS, written as `train` writes a run folder."""
    key = (spec.layers[0]["filters"], spec.training.learning_rate, spec.training.seed)
    error = ERRORS[key]
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "spec.json", spec.to_dict())
    diverged = error is None
    make_run(run_dir, key[1], epochs=3, status="diverged" if diverged else "ok", diverge_at=2 if diverged else None,
             extra={"seed": key[2], "epochs": 3, "device": "cpu", "backend": "tensorflow", "engine": "fit"})  # fmt: skip
    lines = (run_dir / "history.csv").read_text().splitlines()
    if not diverged:  # the last epoch is the best: `error`; the earlier ones higher
        header, rows = lines[0].split(","), [dict(zip(lines[0].split(","), line.split(","), strict=True)) for line in lines[1:]]
        for i, row in enumerate(rows):
            row["val_error"] = str(min(0.95, error + 0.1 * (len(rows) - 1 - i)))
        with open(run_dir / "history.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    record = read_json(run_dir / "run.json")
    errors = [float(r["val_error"]) for r in csv.DictReader(open(run_dir / "history.csv"))]
    record.update(best_val_error=min(errors), final_val_error=errors[-1], best_epoch=1 + errors.index(min(errors)), epochs_run=len(errors),
                  total_time_s=0.9, timing={"epoch_s_median": 0.3}, learned=not diverged and min(errors) < 0.85)  # fmt: skip
    write_json(run_dir / "run.json", record)
    return record


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A 2-axis study (filters 4, 8 × rates 0.01, 0.1, 1) with 2 seeds and the rate tuned: its folder."""
    root = tmp_path_factory.mktemp("study")
    spec = load_spec("convolutional_nn").with_overrides(epochs=3, dataset="mnist-5k")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("cnnbench.train.train_run", _fake_train_run)
        plan = plan_study(make_grid(spec, [f"{FILTERS}=4,8", f"{RATE}=0.01,0.1,1"], seeds="2"), root / "results", tune=RATE)
        run_study(plan)
    return plan.study_dir


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _e(text: str) -> str:
    return f"{float(text):.4f}"


def _clip(text: str) -> str:
    return f"{min(1.0, max(0.0, float(text))):.4f}"


def test_json_states_the_library_verdict_and_the_best_point_with_its_seed_interval(study):
    out = study.parent.parent / "page.html"
    r = CliRunner().invoke(app, ["report", str(study.parent), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    facts = json.loads(r.stdout)
    assert facts["sweeps"] == [] and len(facts["studies"]) == 1  # a study is not read as a learning-rate sweep
    assert "course" not in facts  # no study file with `claims: course` made this folder
    v = facts["studies"][0]
    assert v["verdict"] == read_json(study / "sweep.json")["verdict"]  # the very object `cnnbench sweep` stored
    points = {p["point"]: p for p in _csv(study / "points.csv")}
    best = points["filters-8_learning_rate-0.1"]
    assert v["best"]["point"] == best["point"] and v["best"]["values"] == {FILTERS: 8, RATE: 0.1}
    assert v["best"]["mean"] == float(best["best_val_error_mean"]) == pytest.approx(0.115)
    assert v["best"]["interval_95"] == [float(best["best_val_error_ci95_low"]), float(best["best_val_error_ci95_high"])]
    assert (v["best"]["n"], v["best"]["n_ok"]) == (2, 2)
    assert v["at_edge"] == [FILTERS]  # 0.1 lies inside 0.01 … 1
    assert v["never_learned"] == ["filters-4_learning_rate-0.01"]
    assert v["diverged"] == [{"point": "filters-4_learning_rate-1", "seeds": 1, "of": 2}]
    assert v["failed"] == [] and v["not_finished"] == []
    assert [(t["values"][FILTERS], t["best"]["values"][RATE], t["at_edge"]) for t in v["tuned"]] == [(4, 0.1, False), (8, 0.1, False)]


_MARKERS = """fig => { const seen = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  let drawn = 0;
  fig.querySelectorAll('g.cnb-points').forEach(g => { drawn += [...g.querySelectorAll('use')].filter(seen).length; });
  return drawn; }"""


def test_page_in_chromium_states_points_csv_and_draws_a_dot_per_seed(browser, study):
    from test_report import _open

    path = write_report([study.parent], study.parent.parent / "study.html").path
    page, context, requests, errors = _open(browser, path)
    assert requests == [path.resolve().as_uri()] and errors == []
    points = {p["point"]: p for p in _csv(study / "points.csv")}
    runs = _csv(study / "runs.csv")

    # the verdict sentence: every number as points.csv holds it (4 decimals; the interval clipped to [0, 1])
    best = points["filters-8_learning_rate-0.1"]
    verdict = page.locator("#verdict-study-1")
    text = verdict.inner_text()
    assert verdict.locator("b.study-best").inner_text() == best["point"]
    assert verdict.locator("b.study-mean").inner_text() == _e(best["best_val_error_mean"])
    low, high = _clip(best["best_val_error_ci95_low"]), _clip(best["best_val_error_ci95_high"])
    assert verdict.locator("b.study-ci").inner_text() == f"{low}–{high}"
    assert f"std {_e(best['best_val_error_std'])}, median {_e(best['best_val_error_median'])}" in text
    assert f"{best['n_ok']} of {best['n']} seeds ok" in text
    assert f"It sits at the edge of {FILTERS} (4 … 8)" in text
    assert "never learned (every ok seed no better than chance): filters-4_learning_rate-0.01" in text
    assert "diverged: filters-4_learning_rate-1 (1 of 2 seeds diverged)" in text
    for filters in (4, 8):  # the --tune view: the best rate per width, as points.csv ranks them
        mine = [p for p in points.values() if p[FILTERS] == str(filters) and p["learned"] == "True"]
        top = min(mine, key=lambda p: float(p["best_val_error_mean"]))
        assert f"{FILTERS} = {filters}: best {RATE} {num(float(top[RATE]))}, {_e(top['best_val_error_mean'])}" in text

    # error vs each axis: a marker per point mean and a dot per seed (✕ at 1 for a diverged one), as the data say
    figure = page.locator("figure#study-1-error-vs-axes")
    table = figure.evaluate("fig => [...fig.querySelectorAll('details tbody tr')].map(tr => [...tr.cells].map(c => c.textContent))")
    assert figure.evaluate(_MARKERS) == len(table)
    for axis, short in ((FILTERS, "filters"), (RATE, "learning_rate")):
        drawn = Counter((float(x), round(float(y), 6)) for panel, _, x, y in table if panel == f"error vs {axis}")
        wanted = Counter((float(p[axis]), round(float(p["best_val_error_mean"]), 6)) for p in points.values())
        wanted += Counter((float(r[axis]), 1.0 if r["status"] == "diverged" else round(float(r["best_val_error"]), 6)) for r in runs)
        assert drawn == wanted, (short, drawn, wanted)
    assert sum(1 for row in table if row[0] == f"error vs {RATE}") == len(points) + len(runs)

    # a legend entry hides its line, band and seed dots together
    key = figure.locator("g.cnb-key").first
    series = key.get_attribute("data-series")
    dots = figure.locator(f'g.cnb-points[data-series="{series}"]')
    assert dots.count() >= 2 and dots.first.is_visible()
    key.click()
    assert all(not dots.nth(i).is_visible() for i in range(dots.count()))
    key.click()
    assert dots.first.is_visible()

    # the --tune view and the heat map are there; the points table lists every point of points.csv
    isolation = page.locator("figure#study-1-isolation")
    assert isolation.count() == 1 and isolation.evaluate(_MARKERS) == 2  # one best per width
    assert page.locator("figure#study-1-heatmap").count() == 1
    rows = page.locator("#tab-study-1-points tbody tr")
    assert rows.count() == len(points)
    assert sorted(rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())) == sorted(points)
    context.close()


# --- the course study: its questions answered from its own numbers, next to the original report's claims ---------------


def _course(root: Path, gpu: bool) -> Path:
    """A course study folder as `cnnbench study course` leaves it: study.json, the sheet's rates over 20 epochs, a bench."""
    from test_plot import _write_csv, make_bench
    from test_report import _summary

    sweep = root / "rates-sheet" / "convolutional_nn-sweep-lr"
    rates = (0.1, 0.01, 0.001, 0.0001)
    for lr in rates:
        make_run(sweep / f"lr-{lr:g}", lr, 20, extra={"epochs": 20})
    _write_csv(sweep / "summary.csv", ["learning_rate", "status"], [{"learning_rate": lr, "status": "ok"} for lr in rates])
    (sweep / "sweep.json").write_text(json.dumps({"spec": {"name": "convolutional_nn"}, "values": list(rates)}))
    _summary(sweep)
    make_bench(root / "runtime" / "bench-course", gpu=gpu)
    (root / "study.json").write_text(json.dumps({"kind": "study-file", "name": "course", "source": "course", "claims": "course"}))
    return root


def test_the_course_report_answers_its_questions_from_its_numbers_next_to_the_original_claims(tmp_path):
    import math

    from cnnbench.report.course import ORIGINAL_ERRORS, SLOW

    root = _course(tmp_path / "course", gpu=True)
    result = write_report([root], tmp_path / "course.html")
    answers = {a["id"]: a for a in result.verdicts["course"]["answers"]}
    summary = {float(r["learning_rate"]): r for r in _csv(root / "rates-sheet" / "convolutional_nn-sweep-lr" / "summary.csv")}
    best = min(summary, key=lambda lr: (float(summary[lr]["best_val_error"]), lr))

    # stagnation below 0.01: each rate's final error from summary.csv, judged by the stated rule, compared with the original
    stagnation = answers["stagnation"]
    levels = []
    for lr in (0.001, 0.0001):
        final = float(summary[lr]["final_val_error"])
        assert f"{lr:g} → final validation error {final:.3f}" in stagnation["answer"]
        level = "stagnates" if final > 0.45 else "learns slowly" if final >= SLOW * float(summary[best]["best_val_error"]) else "learns"
        theirs = "stagnates" if ORIGINAL_ERRORS[lr] > 0.45 else "learns slowly" if ORIGINAL_ERRORS[lr] >= SLOW * 0.014 else "learns"
        assert f"{lr:g} {level}" in stagnation["detail"] and (level == theirs) == (f"{lr:g} {level} in both" in stagnation["detail"])
        levels.append(level == theirs)
    assert stagnation["agreement"] == ("agrees" if all(levels) else "differs" if not any(levels) else "partly agrees")
    updates = 20 * math.ceil(4000 / 64)  # make_run's records: 20 epochs of 4,000 digits, batch 64
    assert f"in the same {updates:,} updates" in stagnation["why"] and f"{11730 / updates:.1f}× as many" in stagnation["why"]

    # the best rate: summary.csv's, and the original's 0.1 among the sheet's rates
    assert answers["best-rate"]["best_rate"] == best
    assert answers["best-rate"]["agreement"] == ("agrees" if best == 0.1 else "differs")

    # growth laws as the bench's verdicts (fits.csv) state them, and the speed-up from bench.csv against "at least 20×"
    series = result.verdicts["benches"][0]["series"]
    for device in ("cpu", "gpu"):
        stated = {(s["series"].split(" · ")[1], s["verdict"]) for s in answers[f"growth-{device}"]["series"]}
        assert stated == {(s["backend"], s["verdict"]) for s in series if s["device"] == device} and stated
        verdicts = [v for _, v in stated if v in ("linear", "power", "exponential", "flat")]
        expected = "not settled" if not verdicts else "agrees" if all(v == "linear" for v in verdicts) else None
        assert answers[f"growth-{device}"]["agreement"] == expected or expected is None and answers[f"growth-{device}"]["agreement"] in (
            "differs", "partly agrees")  # fmt: skip
    bench = _csv(root / "runtime" / "bench-course" / "bench.csv")
    times = {(r["device"], r["backend"], r["filters"]): float(r["epoch_s_median"]) for r in bench if r["status"] == "ok"}
    ratios = {k[2]: t / times[("gpu", *k[1:])] for k, t in times.items() if k[0] == "cpu" and ("gpu", *k[1:]) in times}
    speedup = answers["speedup"]
    low, high = min(ratios.values()), max(ratios.values())
    assert speedup["min"] == pytest.approx(low, rel=1e-3) and speedup["max"] == pytest.approx(high, rel=1e-3)
    assert speedup["agreement"] == ("agrees" if low >= 20 else "differs" if high < 20 else "partly agrees")
    if low < 20 <= high:
        assert f"only at {', '.join(sorted((f for f, r in ratios.items() if r >= 20), key=int))} filters" in speedup["answer"]

    # the page states them in its verdicts, with the original's claims and their sources
    table = re.search(r'<table id="course-table">.*?</table>', result.html, re.S)[0]
    assert table.count("<tr>") == 1 + len(answers) and "The GPU is at least 20× faster than a CPU." in table
    for a in answers.values():
        assert f'data-id="{a["id"]}">{a["agreement"]}' in table

    # without a GPU the GPU claims are not tested
    cpu = write_report([_course(tmp_path / "cpu-only", gpu=False)], tmp_path / "cpu.html").verdicts["course"]["answers"]
    assert {a["id"]: a["agreement"] for a in cpu}["speedup"] == "not tested"
    assert {a["id"]: a["agreement"] for a in cpu}["growth-gpu"] == "not tested"
