"""A study's numbers and verdict as data: per-point statistics over seeds, the best point, edges, isolation by `--tune`.

Pure Python over plain rows (runs.csv as dicts), so `ls`, `compare`, a report and the CLI read one answer.

>>> stats([0.10, 0.12, 0.11])["mean"], round(stats([0.10, 0.12, 0.11])["ci95_high"], 4)
(0.11, 0.1348)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

METRICS = ("best_val_error", "final_val_error", "epoch_s_median")  # summarized per point in points.csv
STATS = ("mean", "std", "median", "min", "max", "ci95_low", "ci95_high")
RANKS = ("mean", "median")
LEARNING_RATE = "training.learning_rate"

# Student's t, 97.5 % quantile, for 1..30 degrees of freedom; beyond, a Cornish-Fisher expansion (error < 1e-7).
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139, 2.200985,
         2.178813, 2.160369, 2.144787, 2.13145, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873,
         2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.04523, 2.042272)  # fmt: skip


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom (the half-width factor of a 95 % interval)."""
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054
    g = ((z**3 + z) / 4, (5 * z**5 + 16 * z**3 + 3 * z) / 96, (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
         (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160)  # fmt: skip
    return z + sum(c / df ** (i + 1) for i, c in enumerate(g))


def stats(values: Sequence[float]) -> dict[str, float | None]:
    """mean, std (n-1), median, min, max and the 95 % Student-t interval of the mean (n >= 2) of `values`."""
    out: dict[str, float | None] = dict.fromkeys(STATS)
    if not values:
        return out
    mean = statistics.fmean(values)
    out.update(mean=mean, median=statistics.median(values), min=min(values), max=max(values))
    if len(values) >= 2:
        std = statistics.stdev(values)
        half = t975(len(values) - 1) * std / math.sqrt(len(values))
        out.update(std=std, ci95_low=mean - half, ci95_high=mean + half)
    return out


def _number(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _learned(value: Any) -> bool | None:
    if isinstance(value, bool) or value is None:
        return value
    return {"true": True, "false": False}.get(str(value).strip().lower())


def point_rows(runs: Sequence[dict[str, Any]], axes: Sequence[str]) -> list[dict[str, Any]]:
    """points.csv: one row per point (runs sharing the values of `axes`), in the order the points first appear.

    n counts the point's runs, n_ok those `ok`, n_diverged those `diverged`, n_never_learned ok runs that stayed at
    chance; the statistics of each metric are over the ok seeds; `flagged` when a seed diverged or never learned.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(run["point"], []).append(run)
    rows = []
    for label, members in groups.items():
        ok = [r for r in members if r.get("status") == "ok"]
        never = [r for r in ok if _learned(r.get("learned")) is False]
        diverged = [r for r in members if r.get("status") == "diverged"]
        row: dict[str, Any] = {"point": label, **{axis: members[0].get(axis) for axis in axes}}
        row.update(n=len(members), n_ok=len(ok), n_diverged=len(diverged), n_never_learned=len(never),
                   flagged=bool(diverged or never), learned=bool(ok) and len(never) < len(ok))  # fmt: skip
        for metric in METRICS:
            values = [v for r in ok if (v := _number(r.get(metric))) is not None]
            row.update({f"{metric}_{name}": value for name, value in stats(values).items()})
        row["median_rank_error"] = _median_counting_worst(members)
        rows.append(row)
    return rows


def point_columns(axes: Sequence[str]) -> list[str]:
    counts = ["n", "n_ok", "n_diverged", "n_never_learned", "flagged", "learned"]
    return ["point", *axes, *counts, *(f"{m}_{s}" for m in METRICS for s in STATS), "median_rank_error"]


def _median_counting_worst(members: Sequence[dict[str, Any]]) -> float | None:
    """The median best_val_error with every seed that is not a learning `ok` run counted as the worst (infinite)."""
    finished = [r for r in members if r.get("status") in ("ok", "diverged", "failed", "oom", "interrupted")]
    if not finished:
        return None
    values = []
    for r in finished:
        error = _number(r.get("best_val_error"))
        good = r.get("status") == "ok" and _learned(r.get("learned")) is not False and error is not None
        values.append(error if good else math.inf)
    return statistics.median(values)


# --- the verdict -------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What a study found: the best point, where it sits, and what never learned.

    best: the best point's row of points.csv (None when no point learned); flagged: it has a diverged or
    never-learning seed; at_edge: the axes on whose smallest or largest value the best sits (the optimum may lie
    outside); never_learned: labels of points none of whose ok seeds learned; tuned: with `--tune`, the best point
    for each value of the other axes (the isolation view), each with `at_edge` for the tuned axis; note: a line
    for the reader (the learning rate held fixed).
    """

    rank: str
    best: dict[str, Any] | None
    flagged: bool = False
    at_edge: list[str] = field(default_factory=list)
    never_learned: list[str] = field(default_factory=list)
    tune: str | None = None
    tuned: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def score(self) -> float | None:
        """The best point's ranking error: its mean best_val_error (rank mean) or its median with diverged and
        never-learning seeds counted worst (rank median); None without a best point."""
        if self.best is None:
            return None
        return self.best.get("best_val_error_mean" if self.rank == "mean" else "median_rank_error")


def _score(row: dict[str, Any], rank: str) -> float | None:
    if rank == "median":
        value = row.get("median_rank_error")
        return None if value is None or math.isinf(value) else value
    return row.get("best_val_error_mean") if row.get("learned") else None


def best_of(points: Sequence[dict[str, Any]], rank: str = "mean") -> dict[str, Any] | None:
    """The best point: the lowest mean of best_val_error over ok seeds (or `median`, other seeds counted worst);
    ties go to the lower mean final_val_error, then to the point listed first."""
    scored = [(score, i, row) for i, row in enumerate(points) if (score := _score(row, rank)) is not None]
    if not scored:
        return None

    def key(item) -> tuple:
        score, i, row = item
        final = row.get("final_val_error_mean")
        return score, final if final is not None else math.inf, i

    return min(scored, key=key)[2]


def _edges(row: dict[str, Any], axes: dict[str, Sequence[Any]]) -> list[str]:
    """Axes (of 2+ numeric values) on whose smallest or largest value `row` sits."""
    found = []
    for path, values in axes.items():
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) < 2 or len(numbers) != len(values):
            continue
        value = _number(row.get(path))
        if value is not None and value in (min(numbers), max(numbers)):
            found.append(path)
    return found


def make_verdict(points: Sequence[dict[str, Any]], axes: dict[str, Sequence[Any]], spec_doc: dict[str, Any] | None = None,
                 rank: str = "mean", tune: str | None = None) -> Verdict:  # fmt: skip
    """The verdict over points.csv rows; `axes` maps each axis path to its values (for edges and `--tune`)."""
    best = best_of(points, rank)
    verdict = Verdict(rank, best, tune=tune)
    if best is not None:
        verdict.flagged = bool(best.get("flagged"))
        verdict.at_edge = _edges(best, axes)
    verdict.never_learned = [row["point"] for row in points if row.get("n_ok") and not row.get("learned")]
    if tune is not None:
        others = [path for path in axes if path != tune]
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for row in points:
            groups.setdefault(tuple(row.get(p) for p in others), []).append(row)
        for key, members in groups.items():
            top = best_of(members, rank)
            verdict.tuned.append({**dict(zip(others, key, strict=True)), "best": top,
                                  "at_edge": bool(top) and tune in _edges(top, {tune: axes[tune]})})  # fmt: skip
    if spec_doc is not None and axes and not any(path == LEARNING_RATE or path.endswith(".learning_rate") for path in axes):
        rate = (spec_doc.get("training") or {}).get("learning_rate")
        verdict.note = (f"the learning rate is held at {rate} for every point; the best rate may differ between points "
                        f"(add `sets` {LEARNING_RATE}=... `tune` {LEARNING_RATE} to compare each at its own best rate)")  # fmt: skip
    return verdict
