"""The report's conclusions as plain data: best learning rate and whether it sits at the edge of the grid,
runs that never learned, diverged or failed, each bench series' growth verdict (as fits.csv wrote it) and the
GPU/CPU speed-up range. `cnnbench report --json` prints exactly this object; the page states it in sentences.
"""

from __future__ import annotations

import math
from typing import Any

from cnnbench.chance import chance_error
from cnnbench.data import MNIST_CLASSES
from cnnbench.plot.curves import wilson_interval
from cnnbench.plot.figure import device_label, join
from cnnbench.report.collect import Bench, Collection, Sweep, rate_key

FAILED = ("failed", "interrupted", "oom")


def _rate(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def _val_samples(sweep: Sweep, row: dict[str, Any]) -> int | None:
    run = sweep.run_at(row["learning_rate"]) if row.get("learning_rate") is not None else None
    return None if run is None else run.data.get("val_samples")


def _learned(sweep: Sweep, row: dict[str, Any]) -> bool | None:
    """summary.csv's `learned`; without that column, the run's own (run.json, else the chance rule `plot` uses)."""
    if isinstance(row.get("learned"), bool):
        return row["learned"]
    run = _match(sweep, row["learning_rate"]) if row.get("learning_rate") is not None else None
    return None if run is None else run.learned


def _match(sweep: Sweep, lr: float):
    return sweep.run_at(lr)


def summary_rows(sweep: Sweep) -> list[dict[str, Any]]:
    """summary.csv's rows with a rate, each completed from its run folder where a column is absent or empty
    (an older or hand-made summary); a run summary.csv does not list yet gets a row of its own."""
    rows = [dict(r) for r in sweep.summary if _rate(r.get("learning_rate")) is not None]
    listed = [r["learning_rate"] for r in rows]
    keys = {rate_key(lr) for lr in listed}
    for run in sweep.runs:
        if rate_key(run.lr) not in keys and not any(math.isclose(run.lr, lr, rel_tol=1e-9) for lr in listed):
            rows.append({"learning_rate": run.lr, "status": run.status})
    for row in rows:
        run = _match(sweep, row["learning_rate"])
        if run is None or run.history.empty:
            continue
        errors = run.val_error
        finite = [(e, int(ep)) for e, ep in zip(errors, run.epochs, strict=True) if math.isfinite(e)]
        if finite:
            best, epoch = min(finite, key=lambda t: (t[0], t[1]))
            row.setdefault("best_val_error", None)
            row.setdefault("final_val_error", None)
            row.setdefault("best_epoch", None)
            row["best_val_error"] = row["best_val_error"] if _rate(row["best_val_error"]) is not None else best
            row["final_val_error"] = row["final_val_error"] if _rate(row["final_val_error"]) is not None else finite[-1][0]
            row["best_epoch"] = row["best_epoch"] if _rate(row["best_epoch"]) is not None else epoch
        if not row.get("status"):
            row["status"] = run.status
    return sorted(rows, key=lambda r: r["learning_rate"])


def sweep_verdict(sweep: Sweep, anchor: str) -> dict[str, Any]:
    """Best rate as `sweep-lr` picks it (ok, learned, lowest best error, then lowest final error, then the smaller rate)."""
    rows = summary_rows(sweep)
    grid = sorted({float(v) for v in sweep.record.get("values") or [] if _rate(v) is not None} or {r["learning_rate"] for r in rows})
    ok = [r for r in rows if r.get("status") == "ok" and _rate(r.get("best_val_error")) is not None and _learned(sweep, r) is not False]

    def rank(row: dict[str, Any]) -> tuple:
        final = _rate(row.get("final_val_error"))
        return row["best_val_error"], final if final is not None else math.inf, row["learning_rate"]

    best = None
    if ok:
        row = min(ok, key=rank)
        n = _val_samples(sweep, row)
        low, high = wilson_interval(row["best_val_error"], n) if n else (None, None)
        best = {
            "learning_rate": row["learning_rate"],
            "best_val_error": row["best_val_error"],
            "best_epoch": _int(row.get("best_epoch")),
            "final_val_error": _rate(row.get("final_val_error")),
            "val_samples": n,
            "interval_95": [low, high] if n else None,
        }
    chance = max((r.chance for r in sweep.runs), default=chance_error(MNIST_CLASSES))
    return {
        "anchor": anchor,
        "folder": str(sweep.folder),
        "name": sweep.record.get("name") or join(r.record.get("name") for r in sweep.runs) or sweep.folder.name,
        "parameter": sweep.record.get("parameter") or "learning_rate",
        "grid": grid,
        "best": best,
        "at_edge": bool(best and len(grid) > 1 and best["learning_rate"] in (grid[0], grid[-1])),
        "chance": round(chance, 6),
        "never_learned": [r["learning_rate"] for r in rows if _learned(sweep, r) is False and r.get("status") == "ok"],
        "diverged": [r["learning_rate"] for r in rows if r.get("status") == "diverged"],
        "failed": [
            {"learning_rate": r["learning_rate"], "status": r.get("status"), "error": r.get("error")}
            for r in rows
            if r.get("status") in FAILED
        ],
        "not_finished": [
            {"learning_rate": r["learning_rate"], "status": r.get("status")}
            for r in rows
            if r.get("status") not in ("ok", "diverged", *FAILED)
        ],
        "rebuilt_from_curves": sweep.rebuilt,
    }


def _int(value: Any) -> int | None:
    return int(value) if _rate(value) is not None else None


def metric_column(bench: Bench) -> str:
    """The time the figures plot: the steady epoch where any ok row has one, else the total (runtime.Metric's rule)."""
    from cnnbench.plot.runtime import Metric

    return Metric(bench.ok).column if not bench.ok.empty else "epoch_s_median"


def bench_verdict(bench: Bench, anchor: str) -> dict[str, Any]:
    """Each series' verdict as fits.csv states it (x = parameters, y = the plotted time), and the speed-up range."""
    column = metric_column(bench)
    fits = [r for r in bench.fits if r.get("x") == "params" and r.get("y") == column]
    series = []
    for r in fits:
        verdict = r.get("verdict")
        model = verdict if verdict in ("linear", "power", "exponential") else None
        series.append(
            {
                "device": r.get("device"),
                "device_name": r.get("device_name"),
                "backend": r.get("backend"),
                "engine": r.get("engine") or "",
                "points": _int(r.get("points")),
                "verdict": verdict if isinstance(verdict, str) else None,
                "margin": _rate(r.get("verdict_margin")),
                "power_k": _rate(r.get("power_k")),
                "miss": _rate(r.get(f"{model}_miss")) if model else None,
                "r2": _rate(r.get(f"{model}_r2")) if model else None,
                "local_slopes": r.get("local_slopes") if isinstance(r.get("local_slopes"), str) else None,
            }
        )
    return {
        "anchor": anchor,
        "folder": str(bench.folder),
        "name": (bench.info.get("spec") or {}).get("name") if isinstance(bench.info.get("spec"), dict) else None,
        "time": column,
        "fits_from": str(bench.fits_path) if bench.fits_path else "computed now (no fits.csv in the folder)",
        "series": series,
        "speedup": speedup(bench, column),
        "not_measured": not_measured(bench),
    }


def speedup(bench: Bench, column: str) -> dict[str, Any] | None:
    """Lowest and highest GPU/CPU ratio of the plotted time over every (backend, engine, filters) measured ok on both."""
    from cnnbench.plot.runtime import Metric, _speedups

    if bench.ok.empty or "filters" not in bench.ok or not {"cpu", "gpu"} <= set(bench.ok["device"]):
        return None
    table = _speedups(bench.ok, Metric(bench.ok))
    if table.empty:
        return None
    rows = table.sort_values(["speedup", "filters"]).to_dict("records")
    lo, hi = rows[0], rows[-1]
    names = {d: join(bench.ok.loc[bench.ok["device"] == d, "device_name"]) for d in ("gpu", "cpu")}

    def point(r: dict[str, Any]) -> dict[str, Any]:
        return {
            "speedup": round(float(r["speedup"]), 4),
            "filters": _int(r["filters"]),
            "backend": r["backend"],
            "engine": r["engine"] or "",
        }

    return {
        "min": point(lo),
        "max": point(hi),
        "pairs": len(rows),
        "gpu": device_label("gpu", names["gpu"]),
        "cpu": device_label("cpu", names["cpu"]),
        "time": column,
    }


def not_measured(bench: Bench) -> list[dict[str, Any]]:
    rows = bench.rows
    if "status" not in rows:
        return []
    bad = rows[rows["status"].astype(str) != "ok"]
    out = []
    for r in bad.to_dict("records"):
        error = r.get("error")
        out.append(
            {
                "device": r.get("device"),
                "backend": r.get("backend"),
                "engine": r.get("engine") or "",
                "filters": _int(r.get("filters")),
                "status": r.get("status"),
                "error": error if isinstance(error, str) else None,
            }
        )
    return out


def verdicts(found: Collection, anchors: dict[int, str]) -> dict[str, Any]:
    """The whole verdicts object; `anchors` maps id(sweep or bench) to its section id on the page."""
    from cnnbench import __version__
    from cnnbench.report.studies import study_verdict

    return {
        "cnnbench": __version__,
        "sweeps": [sweep_verdict(s, anchors[id(s)]) for s in found.sweeps],
        "studies": [study_verdict(s, anchors[id(s)]) for s in found.studies],
        "benches": [bench_verdict(b, anchors[id(b)]) for b in found.benches],
        "runs": [
            {
                "anchor": anchors[id(r)],
                "folder": str(r.folder),
                "name": r.run.name,
                "status": r.run.status,
                "learning_rate": r.run.lr,
                "best_val_error": _rate(r.run.best_val_error),
                "learned": r.run.learned,
            }
            for r in found.runs
        ],
        "skipped": [{"folder": str(s.folder), "reason": s.reason} for s in found.skipped],
    }
