"""The report page: one HTML string, verdicts first, every number next to the figure and table behind it,
everything escaped, nothing loaded from anywhere (plain string templates, no template engine needed).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from html import escape as e
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cnnbench.plot.figure import device_label, num
from cnnbench.report.assets import CSS, SCRIPT
from cnnbench.report.collect import Bench, Collection, Sweep
from cnnbench.report.figures import Figure
from cnnbench.report.setup import bench_run, lone_run, sweep_run
from cnnbench.report.studies import study_run, study_section, study_sentences
from cnnbench.report.tables import Raw, cell, fixed, link, rates, table
from cnnbench.report.verdicts import summary_rows

SECTIONS = (
    ("verdicts", "Verdicts"),
    ("what-was-run", "What was run"),
    ("sweeps", "Learning-rate and other sweeps"),
    ("runtime", "Runtime study"),
    ("gpu-vs-cpu", "GPU vs CPU"),
    ("single-runs", "Single runs"),
    ("all-runs", "All runs"),
    ("provenance", "Provenance"),
    ("how-to-read", "How to read these figures"),
)


@dataclass
class PageInput:
    found: Collection
    verdicts: dict[str, Any]
    anchors: dict[int, str]
    figures: dict[int, list[Figure]]  # id(sweep, bench or run) → its figures
    files: list[tuple[str, int, str]]  # (path, bytes, sha256) of every input read
    out: Path
    title: str
    command: str
    script: bool = True
    generated: str | None = None  # only with SOURCE_DATE_EPOCH
    extra_warnings: list[str] = field(default_factory=list)


def figure_html(fig: Figure) -> str:
    points = len(fig.rows) if fig.points is None else fig.points
    numbers = table(fig.columns, fig.rows, numeric=(2, 3)) if fig.rows else "<p class=note>no marked points</p>"
    return (
        f'<figure class="cnb-figure" id="{fig.anchor}">{fig.svg}<figcaption><b>{e(fig.title)}.</b> {e(fig.caption)}'
        f"</figcaption><details><summary>plotted numbers ({points} points)</summary>{numbers}</details></figure>"
    )


def _fig_link(figs: list[Figure], stem: str, text: str) -> str:
    fig = next((f for f in figs if f.stem == stem), None)
    return link(fig.anchor, text) if fig else ""


# --- verdicts ----------------------------------------------------------------------------------


def _sweep_sentences(v: dict[str, Any], figs: list[Figure]) -> list[str]:
    where = f"<b>{e(str(v['name']))}</b> (<code>{e(v['folder'])}</code>, {len(v['grid'])} rates)"
    behind = " ".join(x for x in (_fig_link(figs, "error_vs_lr", "figure"), link(f"tab-{v['anchor']}-summary", "table")) if x)
    best = v["best"]
    if best:
        interval = best["interval_95"]
        ci = f" (95 % interval {fixed(interval[0])}–{fixed(interval[1])} on {best['val_samples']:,} validation samples)" if interval else ""
        epoch = f" at epoch {best['best_epoch']}" if best["best_epoch"] else ""
        out = [
            f"{where}: best learning rate <b class=best-lr>{num(best['learning_rate'])}</b>, lowest validation error "
            f"<b>{fixed(best['best_val_error'])}</b>{ci}{epoch}, final {fixed(best['final_val_error'])}."
        ]
        grid = f"{num(v['grid'][0])} … {num(v['grid'][-1])}"
        if v["at_edge"]:
            out.append(
                f"<span class=warn>{num(best['learning_rate'])} is at the edge of the grid ({grid})</span>: the optimum may lie "
                "outside it; extend the grid past it."
            )
        elif len(v["grid"]) > 1:
            out.append(f"It lies inside the grid ({grid}), so the grid brackets the optimum.")
    else:
        out = [f"{where}: <span class=warn>no run finished ok and learned</span>, so there is no best learning rate."]
    bad = []
    if v["never_learned"]:
        bad.append(f"never learned (no better than chance, {fixed(v['chance'])}): learning rate {rates(v['never_learned'])}")
    if v["diverged"]:
        bad.append(f"diverged: learning rate {rates(v['diverged'])}")
    if v["failed"]:
        bad.append(
            "failed: "
            + ", ".join(
                f"learning rate {num(f['learning_rate'])} ({e(str(f['status']))}"
                + (f": {e(str(f['error'])[:120])}" if f["error"] else "")
                + ")"
                for f in v["failed"]
            )
        )
    if v["not_finished"]:
        bad.append("not finished: " + ", ".join(f"{num(f['learning_rate'])} ({e(str(f['status']))})" for f in v["not_finished"]))
    out.append(("Runs that " + "; ".join(bad) + ".") if bad else "Every run finished ok and learned: none diverged or failed.")
    if v["rebuilt_from_curves"]:
        out.append("<span class=note>The run folders are not there: curves come from the sweep's curves.csv.</span>")
    return [*out, f"({behind})"] if behind else out


def _miss(value: Any) -> str:
    return f"{value * 100:.0f} %" if isinstance(value, float) and math.isfinite(value) else "–"


def _bench_sentences(v: dict[str, Any], figs: list[Figure]) -> list[str]:
    time = "steady epoch time" if v["time"] == "epoch_s_median" else "total training time"
    behind = " ".join(x for x in (_fig_link(figs, "runtime_loglog", "figure"), link(f"tab-{v['anchor']}-fits", "table")) if x)
    out = []
    for s in v["series"]:
        who = " · ".join(x for x in (device_label(s["device"], s["device_name"]), s["backend"], s["engine"]) if x)
        numbers = [
            f"power-law exponent k = {fixed(s['power_k'], '.2f')}" if s["power_k"] is not None else "",
            f"typical miss {_miss(s['miss'])}" if s["miss"] is not None else "",
            f"margin {fixed(s['margin'], '.2f')}" if s["margin"] is not None else "",
            f"{s['points']} points" if s["points"] else "",
        ]
        if not s["verdict"]:
            points = s["points"] or 0
            out.append(f"{e(who)}: no growth verdict ({points} point{'' if points == 1 else 's'}; a fit needs at least 3).")
            continue
        verdict = f"<b class=verdict>{e(str(s['verdict']))}</b>"
        if s["verdict"] in ("linear", "power", "exponential"):
            said = f"the {time} grows {verdict} with the parameter count"
        elif s["verdict"] == "flat":
            said = f"the {time} stays {verdict} as the parameter count grows"
        else:
            said = f"how the {time} grows with the parameter count is {verdict}"
        out.append(f"{e(who)}: {said} ({', '.join(n for n in numbers if n)}). {behind}")
    if not v["series"]:
        out.append(f"<code>{e(v['folder'])}</code>: no growth verdict (fewer than three measured points per series).")
    sp = v["speedup"]
    if sp:
        lo, hi = sp["min"], sp["max"]
        where = _fig_link(figs, "speedup", "figure")
        out.append(
            f"GPU/CPU speed-up of the {time}, {e(sp['gpu'])} over {e(sp['cpu'])}: <b class=speedup>{lo['speedup']:.1f}× to "
            f"{hi['speedup']:.1f}×</b> ({lo['filters']} filters, {e(lo['backend'])} … {hi['filters']} filters, {e(hi['backend'])}; "
            f"{sp['pairs']} pairs measured ok on both). {where} {link('tab-' + v['anchor'] + '-speedup', 'table')}"
        )
    if v["not_measured"]:
        out.append(f"{len(v['not_measured'])} row(s) not measured; see {link('tab-' + v['anchor'] + '-not-measured', 'why')}.")
    return out


def verdicts_html(p: PageInput) -> str:
    items = []
    for v, s in zip(p.verdicts["sweeps"], p.found.sweeps, strict=True):
        items.append(f'<p id="verdict-{v["anchor"]}">' + " ".join(_sweep_sentences(v, p.figures[id(s)])) + "</p>")
    for v, st in zip(p.verdicts["studies"], p.found.studies, strict=True):
        items.append(f'<p id="verdict-{v["anchor"]}">' + " ".join(study_sentences(v, p.figures[id(st)])) + "</p>")
    for v, b in zip(p.verdicts["benches"], p.found.benches, strict=True):
        first, *rest = _bench_sentences(v, p.figures[id(b)])
        heading = f"Bench <code>{e(v['folder'])}</code>:"
        items.append(f'<p id="verdict-{v["anchor"]}">{heading}</p><ul>' + "".join(f"<li>{x}</li>" for x in [first, *rest]) + "</ul>")
    for v in p.verdicts["runs"]:
        learned = {True: "learned", False: "did not learn", None: ""}[v["learned"]]
        items.append(
            f"Run <b>{e(str(v['name']))}</b> (<code>{e(v['folder'])}</code>): {e(v['status'])}, best validation error "
            f"{fixed(v['best_val_error'])}{', ' + learned if learned else ''}. {link(v['anchor'], 'figure')}"
        )
    if p.found.skipped:
        items.append(f"<span class=warn>{len(p.found.skipped)} folder(s) skipped</span>: see {link('skipped', 'provenance')}.")
    course = ""
    if p.verdicts.get("course"):
        from cnnbench.report.course import course_html

        course = course_html(p.verdicts["course"])
    return "<ul class=verdicts>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>" + course


# --- sections ----------------------------------------------------------------------------------


def _sweep_section(s: Sweep, v: dict[str, Any], figs: list[Figure]) -> str:
    summary = summary_rows(s)
    columns = [
        c
        for c in (
            "learning_rate",
            "status",
            "learned",
            "final_val_error",
            "best_val_error",
            "best_epoch",
            "epochs_run",
            "total_time_s",
            "test_error",
            "device",
            "backend",
            "engine",
            "error",
        )
        if any(c in r for r in summary)
    ]
    rows = [[cell(r.get(c)) for c in columns] for r in summary]
    missing = f"<p class=note>No epoch recorded for: {e(', '.join(f'{num(lr)} ({st})' for lr, st in s.missing))}.</p>" if s.missing else ""
    return (
        f'<h3 id="{v["anchor"]}">{e(str(v["name"]))} — <code>{e(str(s.folder))}</code></h3>'
        + "".join(figure_html(f) for f in figs)
        + f"<p>Summary ({len(rows)} rates): summary.csv, with a cell it lacks taken from the run's own folder.</p>"
        + table(columns, rows, f"tab-{v['anchor']}-summary")
        + missing
    )


def _bench_section(b: Bench, v: dict[str, Any], figs: list[Figure]) -> str:
    fits_cols = [
        "x",
        "y",
        "device",
        "device_name",
        "backend",
        "engine",
        "points",
        "verdict",
        "verdict_margin",
        "linear_r2",
        "linear_miss",
        "power_k",
        "power_r2",
        "power_miss",
        "exponential_b",
        "exponential_r2",
        "exponential_miss",
        "local_slopes",
    ]
    fits_cols = [c for c in fits_cols if any(c in r for r in b.fits)]
    fits = table(fits_cols, [[cell(r.get(c)) for c in fits_cols] for r in b.fits], f"tab-{v['anchor']}-fits")
    bad = v["not_measured"]
    why = (
        table(
            ["device", "backend", "engine", "filters", "status", "error"],
            [[x["device"], x["backend"], x["engine"], x["filters"], x["status"], (x["error"] or "")[:200]] for x in bad],
            f"tab-{v['anchor']}-not-measured",
        )
        if bad
        else "<p class=note>Every row was measured.</p>"
    )
    shown = [f for f in figs if f.stem != "speedup"]
    return (
        f'<h3 id="{v["anchor"]}">Bench <code>{e(str(b.folder))}</code></h3>'
        + "".join(figure_html(f) for f in shown)
        + f"<p>fits.csv (from {e(v['fits_from'])}): the verdict per series is the model with the smallest typical miss.</p>{fits}"
        + f"<p>Rows not measured and why:</p>{why}"
    )


def _speedup_section(b: Bench, v: dict[str, Any], figs: list[Figure]) -> str:
    from cnnbench.plot.runtime import Metric, _speedups

    fig = [f for f in figs if f.stem == "speedup"]
    if not fig:
        return ""
    t = _speedups(b.ok, Metric(b.ok)).sort_values(["backend", "engine", "filters"])
    rows = [
        [
            r["backend"],
            r["engine"],
            f"{r['filters']:g}",
            f"{r['t_cpu']:.4g}",
            f"{r['t_gpu']:.4g}",
            f"{r['speedup']:.2f}",
            f"{r['speedup_lo']:.2f}–{r['speedup_hi']:.2f}",
        ]
        for r in t.to_dict("records")
    ]
    cols = ["backend", "engine", "filters", f"CPU {v['time']}", f"GPU {v['time']}", "speed-up ×", "range ×"]
    speedups = table(cols, rows, "tab-" + v["anchor"] + "-speedup", numeric=(2, 3, 4, 5))
    return f"<h3>Bench <code>{e(str(b.folder))}</code></h3>{figure_html(fig[0])}{speedups}"


def _all_runs(p: PageInput) -> str:
    base = p.out.resolve().parent
    rows = []
    for r in p.found.listing:
        target = Path(r["path"]).resolve()
        href = quote(os.path.relpath(target, base).replace(os.sep, "/")) + "/"
        anchor = p.anchors.get(str(Path(r["path"])))
        name = Raw(f'<a href="{e(href)}">{e(str(r["path"]))}</a>' + (f" ({link(anchor, 'on this page')})" if anchor else ""))
        rows.append(
            [
                r["kind"],
                name,
                r["dataset"] or "–",
                "–" if r["epochs"] is None else r["epochs"],
                r["status"],
                fixed(r["best_val_error"], ".4f"),
                r["runs"],
                r["not_learned"],
                (r["started_at"] or "–")[:16].replace("T", " "),
            ]
        )
    cols = ["kind", "folder", "dataset", "epochs", "status", "best val error", "runs", "never learned", "started"]
    listing = table(cols, rows, "all-runs-table", numeric=(3, 5, 6, 7))
    return f"<p>As <code>cnnbench ls</code> lists them; each folder links to itself.</p>{listing}"


def _provenance(p: PageInput) -> str:
    from cnnbench import __version__

    files = table(["file", "bytes", "sha256"], [[path, f"{size:,}", digest] for path, size, digest in p.files], "input-files", numeric=(1,))
    skipped = (
        table(["folder", "why"], [[str(s.folder), s.reason] for s in p.found.skipped], "skipped")
        if p.found.skipped
        else '<p id="skipped">No folder was skipped.</p>'
    )
    warns = "".join(f"<li>{e(w)}</li>" for w in [*p.found.warnings, *p.extra_warnings])
    when = f" on {e(p.generated)} (SOURCE_DATE_EPOCH)" if p.generated else ""
    return (
        f"<p>Written by cnnbench {e(__version__)}{when} with <code>{e(p.command)}</code>; it reads only the files below and "
        f"loads nothing from the network.</p><details open><summary>{len(p.files)} input files</summary>{files}</details>"
        f"<h3>Skipped folders</h3>{skipped}<h3>Warnings</h3>" + (f"<ul id=warnings>{warns}</ul>" if warns else "<p id=warnings>None.</p>")
    )


HOW_TO_READ = """<ul>
<li><b>Chance line</b> (dashed grey): the error of guessing, 1 − 1/classes. A curve that stays on it never learned.</li>
<li><b>Error bars on error vs learning rate</b>: 95 % Wilson interval from the validation set's size; two rates whose bars overlap are
not told apart by this data.</li>
<li><b>Line styles</b>: dashed with ✕ = diverged (stopped there), dash-dot = did not learn, dotted = not finished.</li>
<li><b>Runtime</b>: on log-log axes a power law t ∝ P<sup>k</sup> is a straight line of slope k (the numbers between points are local
slopes); on semi-log axes an exponential is a straight line. The verdict is the fit with the smallest typical (relative) miss; the
margin says how far ahead it is. A CNN's time is a fixed per-step cost plus a cost per FLOP, so a line with an intercept often wins.</li>
<li><b>Hollow markers</b>: estimated rows (total time extrapolated from the measured epochs).</li>
<li><b>Hover</b> a curve for its series; <b>click</b> a legend entry to hide or show it (needs scripts; the page is complete without).</li>
<li>More in cnnbench's <code>docs/plots.md</code> and <code>docs/report.md</code>.</li></ul>"""


def render_page(p: PageInput) -> str:
    f = p.found
    v = p.verdicts
    run_parts = [sweep_run(s, v_["anchor"]) for s, v_ in zip(f.sweeps, v["sweeps"], strict=True)]
    run_parts += [study_run(s, v_["anchor"]) for s, v_ in zip(f.studies, v["studies"], strict=True)]
    run_parts += [bench_run(b, v_["anchor"]) for b, v_ in zip(f.benches, v["benches"], strict=True)]
    run_parts += [lone_run(r, p.anchors[id(r)]) for r in f.runs]
    sweeps = "".join(_sweep_section(s, v_, p.figures[id(s)]) for s, v_ in zip(f.sweeps, v["sweeps"], strict=True))
    sweeps += "".join(study_section(s, v_, p.figures[id(s)], figure_html) for s, v_ in zip(f.studies, v["studies"], strict=True))
    sweeps = sweeps or "<p>No sweep.</p>"
    benches = "".join(_bench_section(b, v_, p.figures[id(b)]) for b, v_ in zip(f.benches, v["benches"], strict=True)) or "<p>No bench.</p>"
    speed = "".join(_speedup_section(b, v_, p.figures[id(b)]) for b, v_ in zip(f.benches, v["benches"], strict=True))
    speed = speed or "<p>No bench measured the same rows on a GPU and a CPU.</p>"
    runs = (
        "".join(
            f'<h3 id="{p.anchors[id(r)]}">Run <code>{e(str(r.folder))}</code></h3>' + "".join(figure_html(x) for x in p.figures[id(r)])
            for r in f.runs
        )
        or "<p>No single run outside the sweeps and benches.</p>"
    )
    body = {
        "verdicts": verdicts_html(p),
        "what-was-run": "".join(run_parts),
        "sweeps": sweeps,
        "runtime": benches,
        "gpu-vs-cpu": speed,
        "single-runs": runs,
        "all-runs": _all_runs(p),
        "provenance": _provenance(p),
        "how-to-read": HOW_TO_READ,
    }
    toc = "".join(f'<li><a href="#{a}">{e(t)}</a></li>' for a, t in SECTIONS)
    sections = "".join(f'<section id="{a}"><h2>{e(t)}</h2>{body[a]}</section>' for a, t in SECTIONS)
    script = f"<script>{SCRIPT}</script>" if p.script else ""
    roots = ", ".join(str(r) for r in f.roots)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="cnnbench"><title>{e(p.title)}</title><style>{CSS}</style></head>\n<body>'
        f"<header><h1>{e(p.title)}</h1><p class=meta>cnnbench report of <code>{e(roots)}</code>: {len(f.sweeps)} sweep(s), "
        f"{len(f.studies)} general sweep(s), "
        f"{len(f.benches)} bench(es), {len(f.runs)} single run(s).</p></header>"
        f'<nav class=toc aria-label="contents"><b>Contents</b><ol>{toc}</ol></nav>\n{sections}\n{script}</body></html>\n'
    )
