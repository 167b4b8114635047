"""General sweeps in the report (`cnnbench sweep` studies, `sweep-lr --seeds N`): the verdict the library states
(`cnnbench.verdict.make_verdict` over points.csv: best point by the mean over ok seeds, or the median with bad seeds
counted worst, its 95 % Student-t interval, the axes it sits at the edge of, points that never learned, the `--tune`
view), its sentences, the section with `plot`'s own study figures and the points table, and what was run.
"""

from __future__ import annotations

import math
from html import escape as e
from types import SimpleNamespace
from typing import Any

from cnnbench.plot.figure import num
from cnnbench.report.collect import Study
from cnnbench.report.figures import Figure
from cnnbench.report.tables import cell, link, table

FAILED = ("failed", "interrupted", "oom")
FINISHED = ("ok", "diverged", *FAILED)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and ±inf (points.csv's median rank of a point with no good seed) as None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else 0


def _point_summary(row: dict[str, Any] | None, axes: list[str]) -> dict[str, Any] | None:
    """A points.csv row as the verdict states it: the point, its values, seeds and best-error statistics."""
    if row is None:
        return None
    low, high = row.get("best_val_error_ci95_low"), row.get("best_val_error_ci95_high")
    return _clean({
        "point": row.get("point"),
        "values": {a: row.get(a) for a in axes},
        "n": _int(row.get("n")),
        "n_ok": _int(row.get("n_ok")),
        "mean": row.get("best_val_error_mean"),
        "std": row.get("best_val_error_std"),
        "median": row.get("best_val_error_median"),
        "interval_95": [low, high] if isinstance(low, float) and isinstance(high, float) else None,
        "final_mean": row.get("final_val_error_mean"),
        "flagged": bool(row.get("flagged")),
    })  # fmt: skip


def study_verdict(study: Study, anchor: str) -> dict[str, Any]:
    """The study's verdict: `verdict` is the library's own object (as sweep.json stores it, over points.csv as it is
    now); `best`, `tuned` and the lists of bad points and runs are what the page states from it."""
    from cnnbench.verdict import RANKS, make_verdict

    index = study.index
    axes = list(study.axes)
    rank = index.get("rank") if index.get("rank") in RANKS else "mean"
    tune = index.get("tune") if index.get("tune") in study.axes else None
    spec = index.get("spec") if isinstance(index.get("spec"), dict) else None
    verdict = make_verdict(study.points, study.axes, spec, rank, tune)
    seeds = [s for s in index.get("seeds") or [] if isinstance(s, int) and not isinstance(s, bool)]
    others = [a for a in axes if a != tune]
    return {
        "anchor": anchor,
        "kind": "study",
        "folder": str(study.folder),
        "name": index.get("name") or study.folder.name,
        "axes": [{"path": path, "values": _clean(values)} for path, values in study.axes.items()],
        "seeds": seeds,
        "points": len(study.points),
        "runs": len(study.runs),
        "rank": rank,
        "tune": tune,
        "best": _point_summary(verdict.best, axes),
        "at_edge": list(verdict.at_edge),
        "never_learned": list(verdict.never_learned),
        "some_seeds_never_learned": [
            {"point": p["point"], "seeds": _int(p.get("n_never_learned")), "of": _int(p.get("n"))}
            for p in study.points
            if _int(p.get("n_never_learned")) and p["point"] not in verdict.never_learned
        ],
        "diverged": [{"point": p["point"], "seeds": _int(p.get("n_diverged")), "of": _int(p.get("n"))} for p in study.points
                     if _int(p.get("n_diverged"))],  # fmt: skip
        "failed": [{"point": r.get("point"), "seed": _int(r.get("seed")), "status": r.get("status"),
                    "error": r.get("error") if isinstance(r.get("error"), str) else None}
                   for r in study.runs if r.get("status") in FAILED],  # fmt: skip
        "not_finished": [{"point": r.get("point"), "seed": _int(r.get("seed")), "status": r.get("status")} for r in study.runs
                         if r.get("status") not in FINISHED],  # fmt: skip
        "tuned": [
            {"values": _clean({a: t.get(a) for a in others}), "best": _point_summary(t.get("best"), axes),
             "at_edge": bool(t.get("at_edge"))}
            for t in verdict.tuned
        ],
        "note": verdict.note,
        "verdict": _clean(verdict.to_dict()),
    }


# --- sentences ---------------------------------------------------------------------------------


def error(value: Any) -> str:
    """An error as the page and `cnnbench sweep` print it (4 decimals)."""
    return f"{value:.4f}" if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else "–"


def interval(best: dict[str, Any]) -> str:
    """The 95 % interval as `cnnbench sweep` prints it: clipped to [0, 1], the range an error can take."""
    if not best["interval_95"]:
        return ""
    low, high = best["interval_95"]
    return f"{error(max(0.0, low))}–{error(min(1.0, high))}"


def _values(best: dict[str, Any]) -> str:
    return ", ".join(f"{e(path)} = {e(num(value))}" for path, value in best["values"].items())


def _best_sentence(v: dict[str, Any], best: dict[str, Any]) -> str:
    ranked = "mean best validation error over its ok seeds"
    if v["rank"] == "median":
        ranked = "median best validation error (bad seeds counted worst)"
    seeds = f"{best['n_ok']} of {best['n']} seed{'' if best['n'] == 1 else 's'} ok"
    if best["interval_95"]:
        ci = (f", 95 % interval <b class=study-ci>{interval(best)}</b> (Student t over the ok seeds; std {error(best['std'])}, "
              f"median {error(best['median'])})")  # fmt: skip
    else:
        ci = " (one ok seed: no interval; repeat with more seeds)"
    flagged = " <span class=warn>A seed of this point diverged or never learned (flagged).</span>" if best["flagged"] else ""
    return (f"best point <b class=study-best>{e(str(best['point']))}</b> ({_values(best)}): {ranked} <b class=study-mean>"
            f"{error(best['mean'])}</b>{ci}, {seeds}; mean final error {error(best['final_mean'])}.{flagged}")  # fmt: skip


def _axis_range(v: dict[str, Any], path: str) -> str:
    values = next((a["values"] for a in v["axes"] if a["path"] == path), [])
    numbers = [x for x in values if isinstance(x, (int, float)) and not isinstance(x, bool)]
    return f"{num(min(numbers))} … {num(max(numbers))}" if numbers else ""


def _points(items: list[dict[str, Any]], what: str) -> str:
    return ", ".join(f"{e(str(x['point']))} ({x['seeds']} of {x['of']} seeds{what})" for x in items)


def study_sentences(v: dict[str, Any], figs: list[Figure]) -> list[str]:
    """The study's verdict in sentences, each number as points.csv holds it."""
    axes = "; ".join(f"{e(a['path'])} ({len(a['values'])} value{'' if len(a['values']) == 1 else 's'})" for a in v["axes"])
    seeds = len(v["seeds"]) or "?"
    where = f"<b>{e(str(v['name']))}</b> (<code>{e(v['folder'])}</code>, {axes}; {v['points']} points × {seeds} seeds, {v['runs']} runs)"
    figure = next((f for f in figs if f.stem == "error_vs_axes"), None)
    behind = " ".join(x for x in (link(figure.anchor, "figure") if figure else "", link(f"tab-{v['anchor']}-points", "table")) if x)
    best = v["best"]
    if best is None:
        out = [f"{where}: <span class=warn>no point learned</span>, so there is no best point."]
    else:
        out = [f"{where}: {_best_sentence(v, best)}"]
        if v["at_edge"]:
            edges = " and ".join(f"{e(p)} ({_axis_range(v, p)})" for p in v["at_edge"])
            out.append(f"<span class=warn>It sits at the edge of {edges}</span>: the optimum may lie outside; extend "
                       f"{'that axis' if len(v['at_edge']) == 1 else 'those axes'} past it.")  # fmt: skip
        elif any(_axis_range(v, a["path"]) and len(a["values"]) > 1 for a in v["axes"]):
            out.append("It lies inside every numeric axis, so the grid brackets the optimum.")
    if v["tune"] and v["tuned"]:
        tuned = []
        for t in v["tuned"]:
            label = ", ".join(f"{e(k)} = {e(num(x))}" for k, x in t["values"].items()) or "every point"
            if t["best"] is None:
                tuned.append(f"{label}: none learned")
                continue
            edge = " <span class=warn>(at the edge of the tuned axis)</span>" if t["at_edge"] else ""
            ci = f" [{interval(t['best'])}]" if t["best"]["interval_95"] else ""
            tuned.append(f"{label}: best {e(v['tune'])} {e(num(t['best']['values'].get(v['tune'])))}, "
                         f"{error(t['best']['mean'])}{ci}{edge}")  # fmt: skip
        iso = next((f for f in figs if f.stem == "isolation"), None)
        out.append(f"With {e(v['tune'])} tuned for each value of the other axes: " + "; ".join(tuned) + "."
                   + (f" {link(iso.anchor, 'figure')}" if iso else ""))  # fmt: skip
    if v["note"]:
        out.append(f"<span class=note>Note: {e(v['note'])}.</span>")
    bad = []
    if v["never_learned"]:
        bad.append(f"never learned (every ok seed no better than chance): {e(', '.join(map(str, v['never_learned'])))}")
    if v["some_seeds_never_learned"]:
        bad.append(f"learned with only some seeds: {_points(v['some_seeds_never_learned'], ' never learned')}")
    if v["diverged"]:
        bad.append(f"diverged: {_points(v['diverged'], ' diverged')}")
    if v["failed"]:
        bad.append("failed: " + ", ".join(f"{e(str(f['point']))} seed {f['seed']} ({e(str(f['status']))}"
                                         + (f": {e(f['error'][:120])}" if f["error"] else "") + ")" for f in v["failed"]))  # fmt: skip
    if v["not_finished"]:
        bad.append("not finished: " + ", ".join(f"{e(str(f['point']))} seed {f['seed']} ({e(str(f['status']))})"
                                               for f in v["not_finished"]))  # fmt: skip
    out.append(("Points that " + "; ".join(bad) + ".") if bad else "Every run finished ok and learned: none diverged or failed.")
    return [*out, f"({behind})"] if behind else out


# --- the section and what was run --------------------------------------------------------------

POINT_COLUMNS = (("n", "seeds"), ("n_ok", "ok"), ("n_diverged", "diverged"), ("n_never_learned", "never learned"),
                 ("best_val_error_mean", "mean best val error"), ("best_val_error_ci95_low", "95 % low"),
                 ("best_val_error_ci95_high", "95 % high"), ("best_val_error_std", "std"), ("best_val_error_median", "median"),
                 ("final_val_error_mean", "mean final val error"), ("epoch_s_median_mean", "mean steady epoch s"))  # fmt: skip


def study_section(s: Study, v: dict[str, Any], figs: list[Figure], figure_html) -> str:
    axes = list(s.axes)
    best = (v["best"] or {}).get("point")
    columns = ["point", *axes, *(title for _, title in POINT_COLUMNS), ""]
    rows = []
    for p in s.points:
        mark = "best" if p.get("point") == best else ""
        if p.get("point") in v["never_learned"]:
            mark = "never learned"
        elif p.get("flagged"):
            mark = f"{mark} (flagged)".strip()
        rows.append([cell(p.get("point")), *(num(p.get(a)) for a in axes), *(cell(p.get(c)) for c, _ in POINT_COLUMNS), mark])
    numeric = tuple(range(1 + len(axes), 1 + len(axes) + len(POINT_COLUMNS)))
    points = table(columns, rows, f"tab-{v['anchor']}-points", numeric=numeric)
    run_cols = ["point", "seed", "status", "best_val_error", "final_val_error", "best_epoch", "epochs_run", "learned",
                "epoch_s_median", "engine", "device", "backend", "dataset", "error"]  # fmt: skip
    run_cols = [c for c in run_cols if any(c in r for r in s.runs)]
    runs = table(run_cols, [[cell(r.get(c)) for c in run_cols] for r in s.runs], f"tab-{v['anchor']}-runs")
    return (
        f'<h3 id="{v["anchor"]}">{e(str(v["name"]))} — <code>{e(str(s.folder))}</code></h3>'
        + "".join(figure_html(f) for f in figs)
        + f"<p>Points ({len(rows)}): points.csv, the statistics of each point over its ok seeds (the 95 % interval is "
        "Student's t on the mean; unclipped here).</p>"
        + points
        + f"<details><summary>runs.csv ({len(s.runs)} runs)</summary>{runs}</details>"
    )


def study_run(s: Study, anchor: str) -> str:
    from cnnbench.plot.figure import join
    from cnnbench.report.setup import _command, _facts, _runs_facts, _spec_html, _training, study_command
    from cnnbench.results import read_record

    spec = s.index.get("spec") if isinstance(s.index.get("spec"), dict) else {}
    t = _training(spec)
    records = []
    for r in s.runs:
        run_dir = r.get("run_dir")
        if isinstance(run_dir, str) and ".." not in run_dir.split("/") and not run_dir.startswith("/"):
            record = read_record(s.folder / run_dir / "run.json")
            if record:
                records.append(SimpleNamespace(record=record, data=record.get("data") if isinstance(record.get("data"), dict) else {}))
    params = join(r.record.get("params") for r in records if r.record.get("params"))
    axes = "; ".join(f"{path} = {', '.join(num(x) for x in values)}" for path, values in s.axes.items())
    facts = [
        ("axes", e(axes)),
        ("points × seeds", e(f"{len(s.points)} × {len(s.index.get('seeds') or [])} ({', '.join(map(str, s.index.get('seeds') or []))})")),
        ("sampling", e(str(s.index.get("method") or "grid"))),
        ("ranked by", e(str(s.index.get("rank") or "mean"))),
        ("tuned axis", e(str(s.index.get("tune") or "–"))),
        ("optimizer", e(str(t.get("optimizer", "?")))),
        ("batch", e(str(t.get("batch_size", "?")))),
        ("epochs", e(str(t.get("epochs", "?")))),
        *_runs_facts(records),
        ("cnnbench that ran it", e(str(s.index.get("cnnbench", "")))),
    ]
    note = "<p class=note>The spec as the study stored it; each run replaces the swept paths and the seed.</p>"
    return (
        f'<h3 id="{anchor}-run">Study {e(s.folder.name)}</h3>{note}'
        f"{_spec_html(spec, int(params) if params.isdigit() else None, None)}{_facts(facts)}{_command(study_command(s), spec)}"
    )
