"""`cnnbench report`: one offline HTML page, checked as files and in a real browser (headless Chromium).

Results folders are written here in cnnbench's on-disk format (tests/test_plot.py's helpers) or taken from
the committed docs/ results. Browser tests skip without Chromium, but FAIL under CI=true.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_plot import make_bench, make_run, make_sweep
from typer.testing import CliRunner

from cnnbench.cli import app
from cnnbench.plot.figure import num
from cnnbench.report import write_report
from cnnbench.report.page import SECTIONS

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
COURSE = [DOCS / "study" / "sheet", DOCS / "study" / "fine", DOCS / "bench-h100-cnnbench-0.1.0"]  # two sweeps and a bench


def _summary(folder: Path) -> None:
    """summary.csv as `sweep-lr` writes it, from the run folders (make_sweep writes only rate and status)."""
    rows = list(csv.DictReader(open(folder / "summary.csv")))
    for row in rows:
        run = folder / f"lr-{float(row['learning_rate']):g}"
        if (run / "run.json").exists():
            record = json.loads((run / "run.json").read_text())
            history = list(csv.DictReader(open(run / "history.csv")))
            errors = [float(h["val_error"]) for h in history]
            row.update(final_val_error=errors[-1], best_val_error=min(errors), best_epoch=1 + errors.index(min(errors)),
                       epochs_run=len(errors), run_dir=run.name, device=record["device"], backend=record["backend"])  # fmt: skip
    columns = ["learning_rate", "status", "final_val_error", "best_val_error", "best_epoch", "epochs_run", "device", "backend", "run_dir"]
    with open(folder / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def results(tmp_path) -> Path:
    root = tmp_path / "results"
    make_sweep(root / "sweep-lr-x")
    _summary(root / "sweep-lr-x")
    make_bench(root / "bench-x")
    make_run(root / "convolutional_nn-1")
    return root


def _ids(html: str) -> list[str]:
    return re.findall(r'\bid="([^"]+)"', html)


# --- files, CLI, verdicts ----------------------------------------------------------------------


def test_cli_writes_one_page_and_json_states_the_verdicts(results):
    out = results.parent / "page" / "report.html"
    r = CliRunner().invoke(app, ["report", str(results), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    verdicts = json.loads(r.stdout)
    sweep = verdicts["sweeps"][0]
    assert sweep["best"]["learning_rate"] == 0.1 and sweep["at_edge"] is False  # 0.3 and 5 lie above it
    assert sweep["never_learned"] == [0.0001] and sweep["diverged"] == [5.0]
    assert [f["learning_rate"] for f in sweep["failed"]] == [0.3]
    assert sweep["not_finished"] == [{"learning_rate": 0.03, "status": "running"}]
    bench = verdicts["benches"][0]
    assert {(s["device"], s["backend"]) for s in bench["series"]} == {("cpu", "tensorflow"), ("cpu", "jax"), ("gpu", "jax")}
    assert bench["speedup"]["gpu"] == "gpu (NVIDIA H100 80GB HBM3)" and bench["speedup"]["pairs"] == 4
    assert [n["status"] for n in bench["not_measured"]] == ["oom"]
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("<svg") == 3 + 6 + 1
    for anchor, _ in SECTIONS:
        assert f'<section id="{anchor}">' in html
    assert len(_ids(html)) == len(set(_ids(html)))
    assert not re.findall(r'\b(?:src|href)="(?!#)(?:[a-z]+:)?//', html)  # no URL with a host: nothing to fetch
    assert not re.search(r"\bsrc=", html) and "@import" not in html and "url(http" not in html
    assert not list(out.parent.glob(".*.tmp"))  # written atomically
    assert not list(results.rglob("fits.csv")) and not list(results.rglob("*.svg"))  # the results are only read


def test_same_results_give_the_same_bytes_and_a_date_only_with_source_date_epoch(results, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    a = write_report([results], results.parent / "a.html").html
    b = write_report([results], results.parent / "a.html").html
    assert a == b and "SOURCE_DATE_EPOCH" not in a
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764547200")
    c = write_report([results], results.parent / "a.html").html
    assert "2025-12-01 00:00:00 UTC (SOURCE_DATE_EPOCH)" in c and c.replace(" on 2025-12-01 00:00:00 UTC (SOURCE_DATE_EPOCH)", "") == a


def test_nothing_to_report_exits_2_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(app, ["report", str(tmp_path / "empty")])
    assert r.exit_code == 2 and r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith(f"error: nothing to report under {tmp_path / 'empty'}: no run, sweep or bench")
    r = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert r.exit_code == 2 and r.stderr == f"error: {tmp_path / 'missing'}: no such folder\n"
    assert not (tmp_path / "empty" / "report.html").exists()


def test_a_broken_folder_is_skipped_with_a_warning_the_page_lists(results):
    broken = results / "sweep-broken"
    make_sweep(broken)
    (broken / "sweep.json").write_text("{not json")
    r = CliRunner().invoke(app, ["report", str(results)])
    assert r.exit_code == 0, r.output
    assert f"warning: skipped {broken / 'sweep.json'}" in r.stderr
    html = (results / "report.html").read_text()
    skipped = re.search(r'<table id="skipped">.*?</table>', html, re.S)[0]
    assert str(broken) in skipped and "1 folder(s) skipped" in html


def test_text_from_folders_and_specs_is_escaped(tmp_path):
    root = tmp_path / "results"
    make_run(root / "<script>alert(1)</script>", extra={"name": '<img src=x onerror="alert(2)">'})
    html = write_report([root], tmp_path / "r.html").html
    assert "<script>alert" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html


def test_no_script_drops_every_script(results):
    html = write_report([results], results.parent / "r.html", script=False).html
    assert "<script" not in html
    assert "<script>" in write_report([results], results.parent / "r.html").html


def test_report_never_imports_keras_or_tensorflow(results):
    code = (f"import sys; from cnnbench.report import write_report; write_report([{str(results)!r}]); "
            "bad = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]; assert not bad, bad")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_open_hands_the_page_to_the_browser(results, tmp_path):
    seen = tmp_path / "opened.txt"
    opener = tmp_path / "opener.py"
    opener.write_text(f"import sys; open({str(seen)!r}, 'w').write(sys.argv[1])")
    env = {**os.environ, "PYTHONPATH": str(REPO), "BROWSER": f"{sys.executable} {opener} %s"}
    subprocess.run([sys.executable, "-m", "cnnbench", "report", str(results), "--open"], check=True, env=env, capture_output=True)
    for _ in range(100):
        if seen.exists() and seen.read_text():
            break
        time.sleep(0.1)
    assert seen.read_text() == (results / "report.html").resolve().as_uri()


def _fits_verdicts(bench: Path, column: str = "epoch_s_median") -> dict[tuple[str, str], str]:
    rows = [r for r in csv.DictReader(open(bench / "fits.csv")) if r["x"] == "params" and r["y"] == column]
    return {(r["device"], r["backend"]): r["verdict"] or None for r in rows}


def _speedups(bench: Path) -> list[float]:
    ok = [r for r in csv.DictReader(open(bench / "bench.csv")) if r["status"] == "ok"]
    times = {(r["device"], r["backend"], r.get("engine", ""), float(r["filters"])): float(r["epoch_s_median"]) for r in ok}
    return sorted(t / times[("gpu", *k[1:])] for k, t in times.items() if k[0] == "cpu" and ("gpu", *k[1:]) in times)


def _best_rate(sweep: Path) -> float:
    rows = [r for r in csv.DictReader(open(sweep / "summary.csv")) if r["status"] == "ok" and r.get("learned", "") != "False"]
    best = min(rows, key=lambda r: (float(r["best_val_error"]), float(r["final_val_error"]), float(r["learning_rate"])))
    return float(best["learning_rate"])


def test_course_study_report_from_the_committed_results_is_small_and_states_their_numbers(tmp_path):
    result = write_report(COURSE, tmp_path / "course.html")
    assert result.size < 3e6, f"{result.size / 1e6:.2f} MB"
    v = result.verdicts
    for sweep, folder in zip(v["sweeps"], COURSE[:2], strict=True):
        assert sweep["best"]["learning_rate"] == _best_rate(folder)
    bench = v["benches"][0]
    assert {(s["device"], s["backend"]): s["verdict"] for s in bench["series"]} == _fits_verdicts(COURSE[2])
    ratios = _speedups(COURSE[2])
    assert math.isclose(bench["speedup"]["min"]["speedup"], ratios[0], rel_tol=1e-3)
    assert math.isclose(bench["speedup"]["max"]["speedup"], ratios[-1], rel_tol=1e-3)
    # what was run: the layer table's totals are what `bench` recorded for 16 filters; the command reproduces the grid
    model = json.loads((COURSE[2] / "bench.json").read_text())["models"]["16"]
    assert f"total parameters {model['params']:,} · forward FLOPs per sample {model['flops_per_sample']:,}" in result.html
    values = json.loads((COURSE[0] / "sweep.json").read_text())["values_text"]
    assert f"cnnbench sweep-lr spec.json --values {values}" in result.html


def test_a_data_fallback_is_named(tmp_path):
    root = tmp_path / "results"
    make_run(root / "run-1", extra={"data": {"name": "mnist-5k", "requested": "mnist", "train_samples": 4000, "val_samples": 1000}})
    html = write_report([root], tmp_path / "r.html").html
    assert "mnist-5k (4,000 train / 1,000 validation) — <span class=warn>a fallback: mnist was asked for</span>" in html


# --- in a real browser -------------------------------------------------------------------------


def _open(browser, path: Path, javascript: bool = True):
    """The page loaded with every request but the file itself aborted; returns (page, context, requests, errors)."""
    context = browser.new_context(java_script_enabled=javascript, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    requests, errors = [], []
    target = path.resolve().as_uri()

    def route(r):
        requests.append(r.request.url)
        r.continue_() if r.request.url == target else r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(target, wait_until="load")
    return page, context, requests, errors


_MARKERS = """fig => { const seen = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  let drawn = 0;  // a marker is a <use> of its symbol; a bar is a group of its own
  fig.querySelectorAll('g.cnb-points').forEach(g => { const uses = [...g.querySelectorAll('use')];
    drawn += uses.length ? uses.filter(seen).length : (seen(g) ? 1 : 0); });
  const rows = [...fig.querySelectorAll('details tbody tr')].filter(tr => tr.cells[3].textContent !== '').length;
  return [drawn, rows]; }"""


def test_page_in_chromium_offline_complete_markers_ids_and_toggle(browser, results):
    path = write_report([results], results.parent / "r.html").path
    page, context, requests, errors = _open(browser, path)
    assert requests == [path.resolve().as_uri()] and errors == []
    for anchor, title in SECTIONS:
        assert page.locator(f"section#{anchor} > h2").inner_text() == title
    figures = page.locator("figure.cnb-figure")
    assert figures.count() == 10
    for i in range(figures.count()):
        fig = figures.nth(i)
        box = fig.locator("svg").bounding_box()
        assert box["width"] > 300 and box["height"] > 150
        drawn, rows = fig.evaluate(_MARKERS)
        assert drawn == rows > 0, (fig.get_attribute("id"), drawn, rows)
    dupes = page.evaluate("() => { const c = {}; document.querySelectorAll('[id]').forEach(e => c[e.id] = (c[e.id] || 0) + 1);"
                          " return Object.keys(c).filter(k => c[k] > 1); }")  # fmt: skip
    dangling = page.evaluate("() => [...document.querySelectorAll('use')].map(u => u.getAttribute('xlink:href') || u.getAttribute('href'))"
                             ".filter(h => !document.getElementById(h.slice(1)))")  # fmt: skip
    assert dupes == [] and dangling == []

    # drawn points against the data: each rate's curve has one marker per epoch in its history.csv (+ ✕ where it diverged)
    curves = page.locator("figure#sweep-1-val-error-curves")
    for run_dir in sorted((results / "sweep-lr-x").glob("lr-*")):
        record = json.loads((run_dir / "run.json").read_text())
        epochs = sum(1 for _ in open(run_dir / "history.csv")) - 1
        title = f"learning rate {num(record['learning_rate'])}"
        n = curves.evaluate(f"""fig => {{ const keys = [...fig.querySelectorAll('g.cnb-key > title')];
            const key = keys.find(t => t.textContent.startsWith({json.dumps(title)} ));
            const s = key.parentElement.getAttribute('data-series');
            return fig.querySelectorAll(`g.cnb-points[data-series="${{s}}"] use`).length; }}""")
        assert n == epochs + (record["status"] == "diverged"), (title, n, epochs)

    # the legend toggles a series, and toggles it back
    key = curves.locator("g.cnb-key").first
    series = key.get_attribute("data-series")
    lines = curves.locator(f'g.cnb-series[data-series="{series}"]')
    assert lines.first.is_visible()
    key.click()
    assert all(not lines.nth(i).is_visible() for i in range(lines.count()))
    key.click()
    assert lines.first.is_visible()

    # verdict sentences state what the CSVs say
    verdict = page.locator("#verdict-sweep-1").inner_text()
    assert f"best learning rate {num(_best_rate(results / 'sweep-lr-x'))}," in verdict
    assert "never learned (no better than chance, 0.900): learning rate 0.0001" in verdict and "diverged: learning rate 5" in verdict
    context.close()


def test_committed_results_in_chromium_verdicts_match_their_csvs_and_pdf_prints(browser, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the page names the folders as given: docs/…
    bench = DOCS / "bench-h100-cnnbench-0.1.0"
    folders = [Path("docs/study/fine"), Path("docs/bench-cpu"), bench.relative_to(REPO)]
    path = write_report(folders, tmp_path / "r.html").path
    page, context, requests, errors = _open(browser, path)
    assert requests == [path.resolve().as_uri()] and errors == []
    assert f"best learning rate {num(_best_rate(DOCS / 'study' / 'fine'))}," in page.locator("#verdict-sweep-1").inner_text()
    for anchor, folder in (("bench-1", DOCS / "bench-cpu"), ("bench-2", bench)):
        items = page.locator(f"#verdict-{anchor} + ul > li")
        stated = {}
        for i in range(items.count()):
            text = items.nth(i).inner_text()
            if items.nth(i).locator("b.verdict").count():
                who = text.split(":", 1)[0].split(" · ")
                stated[(who[0].split(" (")[0], who[1])] = items.nth(i).locator("b.verdict").inner_text()
        assert stated == {k: v for k, v in _fits_verdicts(folder).items() if v is not None}
    ratios = _speedups(bench)
    assert f"{ratios[0]:.1f}× to {ratios[-1]:.1f}×" in page.locator("#verdict-bench-2 + ul").inner_text()
    pdf = page.pdf(format="A4", print_background=True)
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 5
    shot = os.environ.get("CNNBENCH_SCREENSHOT")  # docs/report.png is made this way
    if shot:
        page.set_viewport_size({"width": 1100, "height": 1400})
        page.screenshot(path=shot)
        figure = page.locator("figure#sweep-1-val-error-curves")
        figure.locator("g.cnb-key").nth(2).click()  # one rate hidden from its legend entry
        figure.locator("svg").screenshot(path=shot.replace(".png", "-figure.png"))
    context.close()


def test_without_javascript_the_page_is_complete(browser, results):
    path = write_report([results], results.parent / "r.html", script=False).path
    page, context, requests, errors = _open(browser, path, javascript=False)
    assert requests == [path.resolve().as_uri()] and errors == []
    for anchor, _ in SECTIONS:
        assert page.locator(f"section#{anchor}").is_visible()
    assert page.locator("figure.cnb-figure svg").count() == 10 and page.locator("[role=button]").count() == 0
    assert "best learning rate 0.1," in page.locator("#verdict-sweep-1").inner_text()
    figure = page.locator("figure#bench-1-runtime-loglog")
    assert figure.evaluate(_MARKERS)[0] == figure.evaluate(_MARKERS)[1] > 0
    context.close()


def test_a_100_run_sweep_keeps_the_page_small_and_quick(browser, tmp_path):
    root = tmp_path / "results"
    sweep = root / "sweep-lr-100"
    rates = [round(10 ** (-4 + 4 * i / 99), 8) for i in range(100)]
    for lr in rates:
        make_run(sweep / f"lr-{lr:g}", lr, epochs=20)
    (sweep / "sweep.json").write_text(json.dumps({"spec": {"name": "convolutional_nn"}, "values": rates}))
    with open(sweep / "summary.csv", "w") as f:
        f.write("learning_rate,status\n" + "".join(f"{lr},ok\n" for lr in rates))
    started = time.perf_counter()
    result = write_report([root], tmp_path / "big.html")
    built = time.perf_counter() - started
    assert result.size < 6e6, f"{result.size / 1e6:.2f} MB"
    started = time.perf_counter()
    page, context, requests, errors = _open(browser, result.path)
    loaded = time.perf_counter() - started
    assert errors == [] and page.locator("figure.cnb-figure").count() == 3
    print(f"100-run sweep: {result.size / 1e6:.2f} MB, built in {built:.1f} s, loaded in {loaded:.2f} s")
    assert loaded < 20 and built < 240
    context.close()


# --- sweeps of more than 30 runs: curves as one collection -------------------------------------------------


def _many_run_sweep(root: Path) -> tuple[Path, dict[float, list[Path]]]:
    """36 runs of 6 rates (6 seeds each, one diverged), 5 epochs: past MANY_RUNS, so each panel's curves are one
    multi-colour LineCollection."""
    sweep = root / "sweep-lr-many"
    by_rate: dict[float, list[Path]] = {}
    for i in range(36):
        lr = [1e-4, 1e-3, 0.01, 0.03, 0.1, 0.3][i % 6]
        diverged = i == 5
        run = make_run(sweep / f"lr-{lr:g}-seed-{i // 6}", lr, epochs=5, status="diverged" if diverged else "ok",
                       diverge_at=4 if diverged else None, extra={"seed": i // 6})  # fmt: skip
        by_rate.setdefault(lr, []).append(run)
    (sweep / "sweep.json").write_text(json.dumps({"spec": {"name": "convolutional_nn"}, "values": sorted(by_rate)}))
    return sweep, by_rate


def _figure_html(html: str, anchor: str) -> str:
    return re.search(rf'<figure class="cnb-figure" id="{anchor}">.*?</figure>', html, re.S)[0]


def test_curves_of_a_many_run_sweep_are_one_collection_yet_each_rate_toggles_and_lists_its_numbers(tmp_path):
    from cnnbench.plot.curves import MANY_RUNS

    sweep, by_rate = _many_run_sweep(tmp_path / "results")
    assert sum(map(len, by_rate.values())) > MANY_RUNS
    result = write_report([tmp_path / "results"], tmp_path / "many.html")
    for anchor, panels in (("sweep-1-val-error-curves", 1), ("sweep-1-loss-curves", 2)):
        fig = _figure_html(result.html, anchor)
        keys = dict(re.findall(r'data-series="(\d+)" class="cnb-key"[^>]*><title>learning rate ([^<]+)</title>', fig))
        assert sorted(keys.values(), key=lambda t: float(t.split()[0])) == [f"{num(lr)} ×6" for lr in sorted(by_rate)]
        rows = re.findall(r"<tr><td>([^<]*)</td><td>learning rate ([^<]+)</td><td class=n>([^<]*)</td><td class=n>([^<]*)</td></tr>",
                          fig.split("<details>")[1])  # fmt: skip
        assert f"plotted numbers ({36 * 5 * panels + panels} points)" in fig  # + the ✕ of the diverged run, per panel
        assert [r[1] for r in rows if " " not in r[2]] == [f"{num(0.3)} ×6"] * panels  # the ✕ joined its rate's series
        for series, label in keys.items():
            lr = float(label.split()[0])
            # every curve of the rate is drawn inside this series' groups (what the legend toggles)...
            groups = re.findall(rf'<g id="[^"]+" data-series="{series}" class="cnb-series">(.*?)</g>', fig, re.S)
            assert sum(g.count("<path") for g in groups) >= len(by_rate[lr]) * panels
            # ...and listed under it, each curve's epochs and values as its history.csv holds them
            mine = [r for r in rows if r[1] == label and " " in r[2]]
            assert len(mine) == len(by_rate[lr]) * panels
            wanted = sorted(" ".join(f"{float(h['val_error']):.6g}" for h in csv.DictReader(open(run / "history.csv")))
                            for run in by_rate[lr])  # fmt: skip
            if anchor == "sweep-1-val-error-curves":
                assert sorted(r[3] for r in mine) == wanted and {r[2] for r in mine} == {"1 2 3 4 5"}


def test_many_run_sweep_in_chromium_a_legend_click_hides_every_curve_of_its_rate(browser, tmp_path):
    _, by_rate = _many_run_sweep(tmp_path / "results")
    path = write_report([tmp_path / "results"], tmp_path / "many.html").path
    page, context, requests, errors = _open(browser, path)
    assert errors == []
    curves = page.locator("figure#sweep-1-val-error-curves")
    shown = """(fig, s) => [...fig.querySelectorAll(`g.cnb-series[data-series="${s}"] path`)]
        .filter(p => { const r = p.getBoundingClientRect(); return r.width > 0 || r.height > 0; }).length"""
    keys = curves.locator("g.cnb-key")
    series = sorted({keys.nth(i).get_attribute("data-series") for i in range(keys.count())})
    assert len(series) == len(by_rate)
    key = curves.locator(f'g.cnb-key[data-series="{series[2]}"]').last  # the label (the key's line has no height to click)
    before = {s: curves.evaluate(shown, s) for s in series}
    assert before[series[2]] >= len(by_rate[sorted(by_rate)[2]]) and all(before.values())
    key.click()
    after = {s: curves.evaluate(shown, s) for s in series}
    assert after[series[2]] == 0 and all(after[s] == before[s] for s in series if s != series[2])
    key.click()
    assert curves.evaluate(shown, series[2]) == before[series[2]]
    context.close()
