"""Pure-Python timing arithmetic: summaries of epoch times and epoch-count extrapolation.

The Keras callbacks that take the measurements live in `cnnbench.callbacks`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def summarize_epochs(epoch_times_s: Sequence[float]) -> dict[str, float | int | None]:
    """First epoch (tracing + compilation) apart from the steady-state ones.

    >>> summarize_epochs([0.55, 0.26, 0.27, 0.25])["epoch_s_median"]
    0.26
    """
    times = [float(t) for t in epoch_times_s]
    steady = times[1:]
    return {
        "first_epoch_s": times[0] if times else None,
        "epoch_s_median": statistics.median(steady) if steady else None,
        "epoch_s_min": min(steady) if steady else None,
        "epoch_s_max": max(steady) if steady else None,
        "steady_epochs": len(steady),
        "train_s": sum(times),
    }


def extrapolate_total(first_epoch_s: float, steady_epoch_s: float | None, epochs: int) -> float:
    """Estimated time of `epochs` epochs from a short measurement: one first epoch + (E-1) steady ones.

    >>> extrapolate_total(0.5, 0.25, 20)
    5.25
    """
    if epochs < 1:
        raise ValueError("epochs must be at least 1")
    steady = first_epoch_s if steady_epoch_s is None else steady_epoch_s
    return first_epoch_s + (epochs - 1) * steady


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}
