"""The course study's questions answered from the study's own numbers, next to what the original lab report claimed.

A study file with `claims: course` (the built-in `course` has it) gets this part of the report. Only the original
report's claims are fixed text (with where cnnbench's sources quote them); every answer and every "agrees" or
"differs" is worked out from the verdicts of the study's sweeps and benches.
"""

from __future__ import annotations

import math
from typing import Any

from cnnbench.plot.figure import num
from cnnbench.report.collect import Collection

SHEET_RATES = (0.1, 0.01, 0.001, 0.0001)
# The original report (full MNIST, 50,000 training digits, batch 64, 15 epochs): validation error per sheet rate.
ORIGINAL_ERRORS = {0.1: 0.014, 0.01: 0.023, 0.001: 0.060, 0.0001: 0.58}
ORIGINAL_TRAIN, ORIGINAL_BATCH, ORIGINAL_EPOCHS = 50_000, 64, 15
ORIGINAL_UPDATES = ORIGINAL_EPOCHS * math.ceil(ORIGINAL_TRAIN / ORIGINAL_BATCH)  # 11,730
SPEEDUP_CLAIM = 20.0
SOURCES = {
    "errors": "the original lab report's results on full MNIST, as quoted in docs/learning-rate.md (\"A report of this course "
    "found …\") and the project's field notes (\"Published student results …\")",
    "gpu": "the original lab report, as quoted in docs/bench.md (\"What the course report's two GPU claims meet here\") and the "
    "project's field notes (\"one report claims 'at least 20×'\")",
}
SLOW = 3.0  # a rate "learns slowly" when its error is at least this many times the best rate's


def _f(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _rates(found: Collection) -> dict[float, dict[str, Any]]:
    """Every rate measured by the study's learning-rate sweeps (the first sweep that has it): errors, learned, the updates."""
    from cnnbench.report.verdicts import _learned, summary_rows

    rates: dict[float, dict[str, Any]] = {}
    for sweep in found.sweeps:
        for row in summary_rows(sweep):
            lr = row["learning_rate"]
            if row.get("status") not in ("ok", "diverged") or any(math.isclose(lr, r, rel_tol=1e-9) for r in rates):
                continue
            run = sweep.run_at(lr)
            record = run.record if run is not None else {}
            data = run.data if run is not None else {}
            train, batch = data.get("train_samples"), record.get("batch_size")
            epochs = row.get("epochs_run") or record.get("epochs_run") or record.get("epochs")
            steps = math.ceil(train / batch) if isinstance(train, int) and isinstance(batch, int) and batch > 0 else None
            rates[lr] = {
                "final": _f(row.get("final_val_error")),
                "best": _f(row.get("best_val_error")),
                "learned": _learned(sweep, row) is not False and row.get("status") == "ok",
                "status": row.get("status"),
                "chance": run.chance if run is not None else 0.9,
                "train": train,
                "batch": batch,
                "epochs": int(epochs) if _f(epochs) else None,
                "updates": int(epochs) * steps if steps and _f(epochs) else None,
                "steps": steps,
                "sweep": str(sweep.folder),
            }
    return rates


def _level(error: float | None, learned: bool, best: float, chance: float) -> str:
    """stagnates (never learned, or still above half the chance error), slow (at least SLOW× the best error), learns."""
    if error is None or not learned or error > chance / 2:
        return "stagnates"
    return "learns slowly" if error >= SLOW * best else "learns"


def _agreement(pairs: list[bool]) -> str:
    if not pairs:
        return "not tested"
    return "agrees" if all(pairs) else "differs" if not any(pairs) else "partly agrees"


def _stagnation(rates: dict[float, dict[str, Any]]) -> dict[str, Any]:
    question = "Do the rates below 0.01 stagnate within the epochs given, and why?"
    claim = (f"On full MNIST ({ORIGINAL_TRAIN:,} training digits, batch {ORIGINAL_BATCH}, {ORIGINAL_EPOCHS} epochs = "
             f"{ORIGINAL_UPDATES:,} updates): validation error 0.060 at 0.001 (learns, slowly) and 0.58 at 0.0001 "
             "(stagnates).")  # fmt: skip
    below = {lr: r for lr, r in sorted(rates.items(), reverse=True) if lr < 0.01}
    learned = [r["best"] for r in rates.values() if r["learned"] and r["best"] is not None]
    if not below or not learned:
        return {"id": "stagnation", "question": question, "answer": "No rate below 0.01 (or no rate that learned) was measured.",
                "why": "", "claim": claim, "source": SOURCES["errors"], "agreement": "not tested", "rates": []}  # fmt: skip
    best_error = min(learned)
    best_rate = min((lr for lr, r in rates.items() if r["best"] == best_error and r["learned"]))
    original_best = min(ORIGINAL_ERRORS.values())
    parts, pairs, table = [], [], []
    for lr, r in below.items():
        level = _level(r["final"], r["learned"], best_error, r["chance"])
        times = ""
        if r["final"] is not None and level != "stagnates":
            times = f", {r['final'] / best_error:.1f}× the best rate's {best_error:.3f}"
        at = f"chance is {r['chance']:.3f}" if level == "stagnates" else ""
        final = "–" if r["final"] is None else f"{r['final']:.3f}"
        parts.append(f"{num(lr)} → final validation error {final} ({level}{times}{'; ' + at if at else ''})")
        row = {"learning_rate": lr, "final_val_error": r["final"], "level": level, "epochs": r["epochs"], "updates": r["updates"]}
        if lr in ORIGINAL_ERRORS:
            theirs = _level(ORIGINAL_ERRORS[lr], True, original_best, 0.9)
            row.update(original_error=ORIGINAL_ERRORS[lr], original_level=theirs)
            pairs.append(theirs == level)
        table.append(row)
    epochs = {r["epochs"] for r in below.values()}
    answer = f"After {'/'.join(str(e) for e in sorted(x for x in epochs if x)) or '?'} epochs: " + "; ".join(parts) + "."
    ref = below[min(below)]
    why = ""
    if ref["updates"]:
        why = (f"An SGD update moves the weights in proportion to the rate, so in the same {ref['updates']:,} updates "
               f"({ref['epochs']} epochs × {ref['steps']} updates: {ref['train']:,} training digits, batch {ref['batch']}) "
               f"{num(min(below))} covers 1/{best_rate / min(below):,.0f} of the distance of the best rate, {num(best_rate)}. "
               f"The original's {ORIGINAL_EPOCHS} epochs of full MNIST were {ORIGINAL_UPDATES:,} updates, "
               f"{ORIGINAL_UPDATES / ref['updates']:.1f}× as many: an epoch is a pass over the data, not a fixed amount of "
               "learning.")  # fmt: skip
    agreement = _agreement(pairs)
    same = [f"{num(t['learning_rate'])} {t['level']} in both" for t in table if t.get("original_level") == t["level"]]
    other = [f"{num(t['learning_rate'])} {t['level']} here, {t['original_level']} in the original ({t['original_error']:.3f})"
             for t in table if "original_level" in t and t["original_level"] != t["level"]]  # fmt: skip
    detail = "; ".join([*same, *other])
    return {"id": "stagnation", "question": question, "answer": answer, "why": why, "claim": claim, "source": SOURCES["errors"],
            "agreement": agreement, "detail": detail, "rates": table,
            "rule": f"stagnates: never learned, or still above half the chance error; learns slowly: at least {SLOW:g}× the best "
                    "rate's error"}  # fmt: skip


def _best_rate(found: Collection, facts: dict[str, Any], rates: dict[float, dict[str, Any]]) -> dict[str, Any]:
    question = "Which learning rate is best?"
    claim = "Of the sheet's rates, 0.1 gave the lowest validation error: 0.014 (0.023 at 0.01, 0.060 at 0.001, 0.58 at 0.0001)."
    sweeps = [v for v in facts["sweeps"] if v["best"]]
    if not sweeps:
        return {"id": "best-rate", "question": question, "answer": "No sweep has a best rate (no rate finished ok and learned).",
                "claim": claim, "source": SOURCES["errors"], "agreement": "not tested"}  # fmt: skip
    overall = min(sweeps, key=lambda v: (v["best"]["best_val_error"], v["best"]["learning_rate"]))
    best = overall["best"]
    grid = f"grid {num(overall['grid'][0])} … {num(overall['grid'][-1])}" if overall["grid"] else "its grid"
    where = f"at the edge of its {grid}: the optimum may lie outside it" if overall["at_edge"] else f"inside its {grid}"
    ties = sorted({v["best"]["learning_rate"] for v in sweeps if v is not overall and math.isclose(
        v["best"]["best_val_error"], best["best_val_error"], rel_tol=1e-9, abs_tol=1e-12)} - {best["learning_rate"]})  # fmt: skip
    tied = f"; tied with {', '.join(num(t) for t in ties)} in another sweep, so the smaller rate is named" if ties else ""
    answer = (f"Over every rate measured, {num(best['learning_rate'])}: best validation error {best['best_val_error']:.3f} "
              f"(sweep {overall['folder']}, {where}{tied}).")  # fmt: skip
    sheet = {lr: r for lr, r in rates.items() if any(math.isclose(lr, s, rel_tol=1e-9) for s in SHEET_RATES)}
    sheet_ok = {lr: r for lr, r in sheet.items() if r["learned"] and r["best"] is not None}
    agreement, ours = "not tested", None
    if sheet_ok:
        ours = min(sheet_ok, key=lambda lr: (sheet_ok[lr]["best"], lr))
        theirs = min((s for s in SHEET_RATES if any(math.isclose(s, lr, rel_tol=1e-9) for lr in sheet)), key=ORIGINAL_ERRORS.get)
        agreement = "agrees" if math.isclose(ours, theirs, rel_tol=1e-9) else "differs"
        r = sheet_ok[ours]
        train = f" with {r['train']:,} training digits instead of {ORIGINAL_TRAIN:,}" if isinstance(r["train"], int) else ""
        answer += (f" Of the sheet's rates measured here ({', '.join(num(lr) for lr in sorted(sheet, reverse=True))}), "
                   f"{num(ours)} is best: {r['best']:.3f}, against the original's {ORIGINAL_ERRORS[theirs]:.3f} at "
                   f"{num(theirs)}{train}.")  # fmt: skip
    return {"id": "best-rate", "question": question, "answer": answer, "claim": claim, "source": SOURCES["errors"],
            "agreement": agreement, "best_rate": best["learning_rate"], "best_val_error": best["best_val_error"],
            "at_edge": overall["at_edge"], "best_sheet_rate": ours}  # fmt: skip


def _growth(facts: dict[str, Any], device: str) -> dict[str, Any]:
    question = f"How does the {device.upper()}'s epoch time grow with the number of parameters?"
    claim = "Time grows linearly with the number of parameters"
    claim += " (the original report's claim for the GPU)." if device == "cpu" else "."
    series = [(b, s) for b in facts["benches"] for s in b["series"] if s["device"] == device]
    if not series:
        return {"id": f"growth-{device}", "question": question, "claim": claim, "source": SOURCES["gpu"], "agreement": "not tested",
                "answer": f"No {device.upper()} was measured in this study" + (" (no GPU on this machine)." if device == "gpu" else "."),
                "series": []}  # fmt: skip
    parts, pairs, found = [], [], []
    for _, s in series:
        who = " · ".join(x for x in (s["device_name"] or s["device"], s["backend"], s["engine"]) if x)
        k = f", power-law exponent k = {s['power_k']:.2f}" if s["power_k"] is not None else ""
        verdict = s["verdict"] or "no verdict (too few points)"
        parts.append(f"{who}: {verdict}{k} ({s['points']} points)")
        found.append({"series": who, "verdict": s["verdict"], "power_k": s["power_k"]})
        if s["verdict"] in ("linear", "power", "exponential", "flat"):
            pairs.append(s["verdict"] == "linear")
    time = "steady epoch" if series[0][0]["time"] == "epoch_s_median" else "total training time"
    answer = f"The {time} against parameters, as fits.csv states it: " + "; ".join(parts) + "."
    agreement = _agreement(pairs)
    if not pairs:
        agreement = "not settled"
        answer += " No law is singled out by these few, noisy points (inconclusive), so the claim is neither confirmed nor refuted."
    return {"id": f"growth-{device}", "question": question, "answer": answer, "claim": claim, "source": SOURCES["gpu"],
            "agreement": agreement, "series": found}  # fmt: skip


def _speedup(found: Collection, facts: dict[str, Any]) -> dict[str, Any]:
    from cnnbench.plot.runtime import Metric, _speedups

    question = "How much faster is the GPU than the CPU?"
    claim = "The GPU is at least 20× faster than a CPU."
    measured = [(b, v) for b, v in zip(found.benches, facts["benches"], strict=True) if v["speedup"]]
    if not measured:
        return {"id": "speedup", "question": question, "claim": claim, "source": SOURCES["gpu"], "agreement": "not tested",
                "answer": "No bench measured the same models on a GPU and a CPU (no GPU on this machine)."}  # fmt: skip
    low = min((v["speedup"]["min"]["speedup"], v) for _, v in measured)[1]["speedup"]
    high = max((v["speedup"]["max"]["speedup"], v) for _, v in measured)[1]["speedup"]
    pairs = [r for b, _ in measured for r in _speedups(b.ok, Metric(b.ok)).to_dict("records")]
    answer = (f"{low['min']['speedup']:.1f}× to {high['max']['speedup']:.1f}× ({low['gpu']} over {low['cpu']}; "
              f"{len(pairs)} models measured ok on both).")  # fmt: skip
    if low["min"]["speedup"] >= SPEEDUP_CLAIM:
        agreement = "agrees"
    elif high["max"]["speedup"] < SPEEDUP_CLAIM:
        agreement = "differs"
    else:
        agreement = "partly agrees"
        above = sorted({int(r["filters"]) for r in pairs if r["speedup"] >= SPEEDUP_CLAIM})
        answer += f" At least {SPEEDUP_CLAIM:g}× only at {', '.join(map(str, above))} filters."
    return {"id": "speedup", "question": question, "answer": answer, "claim": claim, "source": SOURCES["gpu"], "agreement": agreement,
            "min": low["min"]["speedup"], "max": high["max"]["speedup"]}  # fmt: skip


def course_answers(found: Collection, facts: dict[str, Any]) -> dict[str, Any]:
    """The course's questions, each with this study's answer, the original report's claim and whether they agree."""
    rates = _rates(found)
    answers = [_stagnation(rates), _best_rate(found, facts, rates), _growth(facts, "cpu"), _growth(facts, "gpu"), _speedup(found, facts)]
    return {"claims": "course", "answers": answers}


def course_html(course: dict[str, Any]) -> str:
    from html import escape as e

    from cnnbench.report.tables import Raw, table

    rows = []
    for a in course["answers"]:
        answer = e(a["answer"]) + (f"<br><span class=note>Why: {e(a['why'])}</span>" if a.get("why") else "")
        answer += f"<br><span class=note>({e(a['rule'])})</span>" if a.get("rule") else ""
        verdict = e(a["agreement"]) + (f": {e(a['detail'])}" if a.get("detail") else "")
        kind = {"agrees": "good", "differs": "bad", "partly agrees": "warn"}.get(a["agreement"], "note")
        claim = f"{e(a['claim'])}<br><span class=note>Source: {e(a['source'])}</span>"
        rows.append([a["question"], Raw(answer), Raw(claim), Raw(f'<b class="agreement {kind}" data-id="{e(a["id"])}">{verdict}</b>')])
    return ('<h3 id="course-claims">The course\'s questions, answered from this study</h3><p>Every answer comes from this '
            "study's own numbers; only the original report's claims are fixed text.</p>"
            + table(["question", "this study", "the original lab report", "agreement"], rows, "course-table"))  # fmt: skip
