"""Curve fits for runtime figures (numpy only): flat, linear, power-law and exponential growth, and the verdict.

Every candidate is fitted and judged on one loss, the typical miss RMS(log(t / fit)), against the measured spread.

>>> [round(v, 6) for v in fit_linear([1, 2, 3], [3, 5, 7])]    # t = a + b·P: a, b, R²
[1.0, 2.0, 1.0]
>>> g = compare_growth([1, 2, 4, 8, 16, 32], [2, 8, 32, 128, 512, 2048])
>>> g.verdict, g.within
('power', ['power'])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MIN_FIT_POINTS = 3  # two points fit any curve exactly; a fit means something from three on
MIN_VERDICT_POINTS = 5  # naming one growth law needs 3 residual degrees of freedom per 2-parameter candidate
MIN_VERDICT_SPAN = 10.0  # ... and one decade of x: over less, a power law and an exponential bend alike
MODELS = ("flat", "linear", "power", "exponential")  # also the order in which they are named: the simplest reading first
NAMES = {"flat": "flat", "linear": "linear", "power": "power law", "exponential": "exponential"}


def _points(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("x and y must be 1-D sequences of the same length")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("a fit needs finite x and y")
    if len(np.unique(x)) < 2:
        raise ValueError("a fit needs at least two distinct x values")
    return x, y


def _r2(y: np.ndarray, predicted: np.ndarray) -> float:
    ss_res = float(np.sum((y - predicted) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


def _positive(x: np.ndarray, y: np.ndarray, what: str, need_x: bool = True) -> None:
    if (need_x and np.any(x <= 0)) or np.any(y <= 0):
        raise ValueError(f"a{what} fit needs positive {'x and y' if need_x else 'y'}")


def _log_loss(log_y: np.ndarray, t: np.ndarray) -> float:
    """Σ (log y − log t)²: the loss every candidate is fitted on (infinite where t ≤ 0)."""
    with np.errstate(all="ignore"):
        return float(np.sum((log_y - np.log(t)) ** 2)) if np.all(t > 0) else math.inf


def _line_in_log_space(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The line t = a + b·x with a, b ≥ 0 (a fixed cost plus a cost per unit) that minimises Σ log²(t_i / fit).

    For a fixed knee x0 = a/b the best scale is closed-form, so x0 is searched on a grid and the best
    point polished by Gauss-Newton on (log a, log b); the edges b = 0 (flat) and a = 0 (t ∝ x) compete too.
    """
    log_y = np.log(y)
    candidates = [(math.exp(float(log_y.mean())), 0.0)]
    if np.all(x > 0):
        candidates.append((0.0, math.exp(float(np.mean(log_y - np.log(x))))))
    span = np.abs(x[x != 0]) if np.any(x != 0) else np.array([1.0])
    knees = np.geomspace(span.min() * 1e-4, span.max() * 1e4, 321)
    for x0 in knees:
        if np.all(x0 + x > 0):
            b = math.exp(float(np.mean(log_y - np.log(x0 + x))))
            candidates.append((b * x0, b))
    a, b = min(candidates, key=lambda ab: _log_loss(log_y, ab[0] + ab[1] * x))
    if a > 0 and b > 0:  # Gauss-Newton on (log a, log b), each step accepted only if it lowers the loss
        u = np.array([math.log(a), math.log(b)])
        loss = _log_loss(log_y, a + b * x)
        for _ in range(60):
            t = math.exp(u[0]) + math.exp(u[1]) * x
            jac = np.column_stack([math.exp(u[0]) / t, math.exp(u[1]) * x / t])
            step, *_ = np.linalg.lstsq(jac, log_y - np.log(t), rcond=None)
            for scale in (1.0, 0.5, 0.25, 0.1, 0.01):
                trial = u + scale * step
                with np.errstate(over="ignore"):
                    new = _log_loss(log_y, math.exp(trial[0]) + math.exp(trial[1]) * x) if np.all(np.abs(trial) < 700) else math.inf
                if new < loss:
                    u, loss = trial, new
                    break
            else:
                break
        a, b = math.exp(u[0]), math.exp(u[1])
    return float(a), float(b)


def fit_linear(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Line y = a + b·x with a, b ≥ 0, fitted on the same loss as the others (Σ log²(y / fit)): returns (a, b, R²).

    R² is measured on y itself, for reference.

    >>> [round(v, 6) for v in fit_linear([1, 2, 3], [3, 5, 7])]
    [1.0, 2.0, 1.0]
    """
    x, y = _points(x, y)
    _positive(x, y, " linear", need_x=False)
    a, b = _line_in_log_space(x, y)
    return a, b, _r2(y, a + b * x)


def fit_power(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Power law y = c·x^k, fitted as the line log y = log c + k·log x (log-log axes): returns (c, k, R²).

    R² is measured on y itself (not on log y), so it compares with `fit_linear`'s.

    >>> [round(v, 6) for v in fit_power([1, 2, 4], [3, 12, 48])]
    [3.0, 2.0, 1.0]
    """
    x, y = _points(x, y)
    _positive(x, y, " power-law")
    k, log_c = np.polyfit(np.log(x), np.log(y), 1)
    c = math.exp(log_c)
    return c, float(k), _r2(y, c * x**k)


def fit_exponential(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Exponential y = c·e^(b·x), fitted as the line log y = log c + b·x (semi-log axes): returns (c, b, R²).

    R² is measured on y itself, so it compares with the other fits.

    >>> [round(v, 6) for v in fit_exponential([0, 1, 2], [2, 2 * math.e, 2 * math.e**2])]
    [2.0, 1.0, 1.0]
    """
    x, y = _points(x, y)
    _positive(x, y, "n exponential", need_x=False)
    b, log_c = np.polyfit(x, np.log(y), 1)
    c = math.exp(log_c)
    return c, float(b), _r2(y, c * np.exp(b * x))


def fit_flat(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Constant y = c (no growth), c the geometric mean: returns (c, 0, R²)."""
    x, y = _points(x, y)
    _positive(x, y, " flat", need_x=False)
    c = math.exp(float(np.mean(np.log(y))))
    return c, 0.0, _r2(y, np.full_like(y, c))


_FITTERS = {"flat": fit_flat, "linear": fit_linear, "power": fit_power, "exponential": fit_exponential}


def predict(model: str, params: tuple[float, float], x) -> np.ndarray:
    """The fitted curve of `model` ('flat', 'linear', 'power', 'exponential') at x."""
    x = np.asarray(x, dtype=float)
    p, q = params
    if model == "flat":
        return np.full_like(x, p)
    if model == "linear":
        return p + q * x
    if model == "power":
        return p * x**q
    return p * np.exp(q * x)


def local_slopes(x: Sequence[float], y: Sequence[float]) -> list[float]:
    """Slopes on log-log axes between neighbouring points (sorted by x): the local exponent of t ∝ P^k.

    Constant for a power law; rising from 0 towards 1 for a line with an intercept; rising without
    bound (∝ x) for an exponential.

    >>> [round(s, 6) for s in local_slopes([1, 2, 4], [3, 12, 48])]
    [2.0, 2.0]
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    return [
        float(np.log(y[i + 1] / y[i]) / np.log(x[i + 1] / x[i])) for i in range(len(x) - 1) if x[i + 1] > x[i] > 0 and y[i] > 0 < y[i + 1]
    ]


def pct(log_units: float) -> str:
    """A miss or a spread in log units as the percentage it stands for: 0.1 → '11 %'."""
    return "t ≤ 0 predicted" if math.isinf(log_units) else f"{100 * math.expm1(log_units):.0f} %"


@dataclass(frozen=True)
class Fit:
    """One fitted model: parameters (p, q) as in `predict`, R² on t, the typical miss and the worst one.

    `miss` is the root-mean-square of log(t / fit), the loss every model is fitted on: how far, as a
    factor, the fit typically misses a point (0.1 ≈ 10 %), small and large models counted alike.
    """

    p: float
    q: float
    r2: float
    miss: float
    max_rel_residual: float

    @property
    def miss_pct(self) -> str:
        return pct(self.miss)


@dataclass
class Growth:
    """The fits of one series and the verdict the data support (see `compare_growth`).

    `verdict`: 'flat', 'linear', 'power', 'exponential', 'inconclusive', or '' (too few points to fit);
    `within`: the candidates that fit within the noise; `noise`: that noise in log units; `reason`:
    the verdict's explanation in words (the figure and fits.csv print `verdict: reason`);
    `margin`: the runner-up's typical miss minus the best's.
    """

    n: int
    fits: dict[str, Fit] = field(default_factory=dict)
    verdict: str = ""
    margin: float = float("nan")
    slopes: list[float] = field(default_factory=list)
    noise: float = float("nan")
    spread: float = float("nan")
    within: list[str] = field(default_factory=list)
    reason: str = ""

    def summary(self) -> str:
        """'inconclusive: power law, exponential fit within the noise (±12 %); 4 points …' — the words of fits.csv."""
        return f"{self.verdict}: {self.reason}" if self.verdict else ""


def spread_noise(y: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None) -> np.ndarray:
    """Per point, half the measured min–max range in log units (0 where none was recorded)."""
    if lo is None or hi is None:
        return np.zeros_like(y)
    lo, hi = np.minimum(np.asarray(lo, dtype=float), y), np.maximum(np.asarray(hi, dtype=float), y)
    with np.errstate(all="ignore"):
        half = 0.5 * np.log(hi / lo)
    return np.where(np.isfinite(half) & (half > 0), half, 0.0)


def compare_growth(
    x: Sequence[float],
    y: Sequence[float],
    lo: Sequence[float] | None = None,
    hi: Sequence[float] | None = None,
    expected: str | None = None,
) -> Growth:
    """Fit flat, linear (t = a + b·x, a, b ≥ 0), power and exponential growth on one loss, Σ log²(t / fit),
    and say which of them the data support.

    `lo`, `hi`: each point's measured fastest and slowest time (the min–max over epochs and repeats).
    The noise is the larger of the measured spread (RMS over the points of ½·log(hi / lo)) and the best
    fit's own typical miss (the scatter left around the best curve). A candidate *fits within the noise*
    when its typical miss exceeds the best one's by no more than the noise. Verdict, in this order:
    'flat' when the constant fits within the noise (no growth shown); `expected` (runtime against FLOPs:
    'linear', a fixed cost plus a cost per FLOP) when it fits within the noise; the one candidate within
    the noise, given at least MIN_VERDICT_POINTS points spanning MIN_VERDICT_SPAN; else 'inconclusive',
    naming the candidates within the noise. Fewer than MIN_FIT_POINTS distinct x (or values ≤ 0): no verdict.

    >>> g = compare_growth([10, 20, 40, 80], [1.5, 2.5, 4.5, 8.5])
    >>> g.verdict, g.within
    ('inconclusive', ['linear'])
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lo = None if lo is None else np.asarray(lo, dtype=float)[keep]
    hi = None if hi is None else np.asarray(hi, dtype=float)[keep]
    x, y = x[keep], y[keep]
    growth = Growth(n=len(x), slopes=local_slopes(x, y))
    if len(np.unique(x)) < MIN_FIT_POINTS:
        return growth
    for model in MODELS:
        with np.errstate(all="ignore"):
            p, q, r2 = _FITTERS[model](x, y)
            t = predict(model, (p, q), x)
            miss = float(np.sqrt(np.mean(np.log(y / t) ** 2))) if np.all(t > 0) else math.inf
            worst = float(np.max(np.abs(y - t) / y))
        if math.isfinite(p) and math.isfinite(q):
            growth.fits[model] = Fit(p, q, r2, miss, worst)
    ranked = sorted(growth.fits, key=lambda m: (growth.fits[m].miss, MODELS.index(m)))
    best = growth.fits[ranked[0]].miss
    growth.margin = growth.fits[ranked[1]].miss - best if len(ranked) > 1 else float("nan")
    growth.spread = float(np.sqrt(np.mean(spread_noise(y, lo, hi) ** 2)))
    growth.noise = max(growth.spread, best)
    # a hair of slack: exact laws fit to rounding error, and a tie must not be decided by it
    growth.within = [m for m in MODELS if m in growth.fits and growth.fits[m].miss <= best + growth.noise + 1e-9]
    noise = f"within the noise (±{pct(growth.noise)})"
    named = ", ".join(NAMES[m] for m in growth.within)
    span = float(x.max() / x.min())
    if "flat" in growth.within:
        growth.verdict, growth.reason = "flat", f"no growth beyond the noise (±{pct(growth.noise)})"
    elif expected in growth.within:
        others = ", ".join(NAMES[m] for m in growth.within if m != expected)
        growth.verdict = expected
        growth.reason = f"fixed cost + cost per unit, tested first, fits {noise}" + (f"; also within it: {others}" if others else "")
    elif len(growth.within) == 1 and growth.n >= MIN_VERDICT_POINTS and span >= MIN_VERDICT_SPAN:
        runner = ranked[1]
        growth.verdict = growth.within[0]
        growth.reason = f"the only candidate {noise}; next {NAMES[runner]} misses by {pct(growth.fits[runner].miss)}"
    else:
        growth.verdict = "inconclusive"
        growth.reason = f"{named} fit{'s' if len(growth.within) == 1 else ''} {noise}"
        if growth.n < MIN_VERDICT_POINTS or span < MIN_VERDICT_SPAN:
            need = f"{MIN_VERDICT_POINTS} over {MIN_VERDICT_SPAN:g}×"
            growth.reason += f"; {growth.n} points over {span:.3g}× cannot tell growth laws apart (needs {need})"
    return growth
