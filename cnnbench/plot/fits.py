"""Curve fits for runtime figures (numpy only): linear, power-law and exponential growth, and the verdict.

Each model is fitted as a straight line on the axes where it is one; all are then judged on t itself.

>>> [round(v, 6) for v in fit_linear([1, 2, 3], [3, 5, 7])]    # t = a + b·P: a, b, R²
[1.0, 2.0, 1.0]
>>> compare_growth([1, 2, 4, 8], [2, 8, 32, 128]).verdict
'power'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MIN_FIT_POINTS = 3  # two points fit any curve exactly; R² means something from three on
MODELS = ("linear", "power", "exponential")  # also the tie-break order: the simplest reading first
TIE = 1e-9


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


def fit_linear(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares line y = a + b·x on linear axes: returns (a, b, R²).

    >>> [round(v, 6) for v in fit_linear([1, 2, 3], [3, 5, 7])]
    [1.0, 2.0, 1.0]
    """
    x, y = _points(x, y)
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b), _r2(y, a + b * x)


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

    R² is measured on y itself, so it compares with the other two fits.

    >>> [round(v, 6) for v in fit_exponential([0, 1, 2], [2, 2 * math.e, 2 * math.e**2])]
    [2.0, 1.0, 1.0]
    """
    x, y = _points(x, y)
    _positive(x, y, "n exponential", need_x=False)
    b, log_c = np.polyfit(x, np.log(y), 1)
    c = math.exp(log_c)
    return c, float(b), _r2(y, c * np.exp(b * x))


def predict(model: str, params: tuple[float, float], x) -> np.ndarray:
    """The fitted curve of `model` ('linear', 'power', 'exponential') at x."""
    x = np.asarray(x, dtype=float)
    p, q = params
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


@dataclass(frozen=True)
class Fit:
    """One fitted model: parameters (p, q) as in `predict`, R² on t, the typical miss and the worst one.

    `miss` is the root-mean-square of log(t / fit): how far, as a factor, the fit typically misses a
    point (0.1 ≈ 10 %), small and large models counted alike; infinite when the fit predicts a time
    ≤ 0 at a measured point (a line with a negative intercept does, for the smallest models).
    """

    p: float
    q: float
    r2: float
    miss: float
    max_rel_residual: float

    @property
    def miss_pct(self) -> str:
        return "t ≤ 0 predicted" if math.isinf(self.miss) else f"{100 * math.expm1(self.miss):.0f} %"


@dataclass
class Growth:
    """The three fits of one series and which describes it best.

    `verdict` is the model with the smallest typical miss (`Fit.miss`), ties going to the simpler reading
    (linear, then power, then exponential); `margin` is the runner-up's miss minus the verdict's. It is
    "flat" instead when the series does not grow: the power law's change over the measured range,
    |k|·ln(P_max/P_min), is no larger than its typical miss (the trend is inside the scatter) — then all
    three fits describe noise equally well and naming one would be a false answer.
    R² on t is kept for reference: it is dominated by the largest models, so a line that predicts
    negative times for the smallest ones can still reach 0.96.
    """

    n: int
    fits: dict[str, Fit] = field(default_factory=dict)
    verdict: str = ""
    margin: float = float("nan")
    slopes: list[float] = field(default_factory=list)

    def summary(self) -> str:
        """'power law fits best: typical miss 17 % (linear: t ≤ 0 predicted, exponential: 124 %)'."""
        if not self.verdict:
            return ""
        if self.verdict == "flat":
            power = self.fits["power"]
            return f"flat: no growth beyond the scatter (power-law exponent {power.q:.2f}, typical miss {power.miss_pct})"
        name = {"linear": "linear", "power": "power law", "exponential": "exponential"}[self.verdict]
        others = ", ".join(f"{m}: {self.fits[m].miss_pct}" for m in MODELS if m != self.verdict and m in self.fits)
        return f"{name} fits best: typical miss {self.fits[self.verdict].miss_pct}" + (f" ({others})" if others else "")


def compare_growth(x: Sequence[float], y: Sequence[float]) -> Growth:
    """Fit t = a + b·P (lin-lin), log t = a + k·log P (log-log) and log t = a + b·P (semi-log), each where
    it is a straight line, and judge them on one scale: the typical factor by which each misses the
    points. Fewer than MIN_FIT_POINTS distinct x (or values ≤ 0): no verdict.

    >>> g = compare_growth([10, 20, 30, 40], [1.5, 2.5, 3.5, 4.5])
    >>> g.verdict, [round(s, 2) for s in g.slopes]
    ('linear', [0.74, 0.83, 0.87])
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[keep], y[keep]
    growth = Growth(n=len(x), slopes=local_slopes(x, y))
    if len(np.unique(x)) < MIN_FIT_POINTS:
        return growth
    for model, fit in (("linear", fit_linear), ("power", fit_power), ("exponential", fit_exponential)):
        with np.errstate(all="ignore"):
            p, q, r2 = fit(x, y)
            t = predict(model, (p, q), x)
            miss = float(np.sqrt(np.mean(np.log(y / t) ** 2))) if np.all(t > 0) else math.inf
            worst = float(np.max(np.abs(y - t) / y))
        if math.isfinite(r2):
            growth.fits[model] = Fit(p, q, r2, miss, worst)
    ranked = sorted(growth.fits, key=lambda m: (round(growth.fits[m].miss / TIE) * TIE if math.isfinite(growth.fits[m].miss)
                                                else math.inf, MODELS.index(m)))  # fmt: skip
    if ranked:
        growth.verdict = ranked[0]
        if len(ranked) > 1:
            growth.margin = growth.fits[ranked[1]].miss - growth.fits[ranked[0]].miss
    power = growth.fits.get("power")
    if power is not None and abs(power.q) * math.log(x.max() / x.min()) <= power.miss:
        growth.verdict = "flat"  # e.g. a GPU epoch bound by per-step overhead: time does not follow size at all
    return growth
