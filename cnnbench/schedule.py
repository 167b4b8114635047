"""The learning rate of each epoch: a spec's `training.lr_schedule`, worked out the same for every engine.

Per epoch, not per step: the `fit` engine sets it at each epoch's start (a callback), the fused engine writes it
into each lane's optimizer state before the epoch's program runs, and history.csv records it either way.

>>> [round(rate_at(0.1, {"type": "step", "step_epochs": 2, "factor": 0.5}, e, 6), 4) for e in range(6)]
[0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
>>> [round(rate_at(0.1, {"type": "constant", "warmup_epochs": 3}, e, 6), 4) for e in range(5)]
[0.025, 0.05, 0.075, 0.1, 0.1]
"""

from __future__ import annotations

import math
from typing import Any

DEFAULTS = {"step_epochs": 10, "step_factor": 0.1, "exponential_factor": 0.9, "alpha": 0.0}


def multiplier(schedule: dict[str, Any] | None, epoch: int, epochs: int) -> float:
    """The factor on the spec's learning rate in epoch `epoch` (0-based) of `epochs`; 1.0 without a schedule.

    Linear warm-up first: epoch e < w trains at (e + 1) / (w + 1) of the rate. Then, t epochs after the warm-up:
    step: factor ** (t // step_epochs); exponential: factor ** t; cosine: alpha + (1 - alpha) (1 + cos(pi t / T)) / 2
    over the T = epochs - w epochs left, from the full rate down towards alpha.
    """
    if not schedule:
        return 1.0
    warmup = int(schedule.get("warmup_epochs") or 0)
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    t, kind = epoch - warmup, schedule["type"]
    if kind == "step":
        return schedule.get("factor", DEFAULTS["step_factor"]) ** (t // schedule.get("step_epochs", DEFAULTS["step_epochs"]))
    if kind == "exponential":
        return schedule.get("factor", DEFAULTS["exponential_factor"]) ** t
    if kind == "cosine":
        alpha, span = schedule.get("alpha", DEFAULTS["alpha"]), max(epochs - warmup, 1)
        return alpha + (1 - alpha) * 0.5 * (1 + math.cos(math.pi * t / span))
    return 1.0


def rate_at(learning_rate: float, schedule: dict[str, Any] | None, epoch: int, epochs: int) -> float:
    """The learning rate of epoch `epoch` (0-based)."""
    return learning_rate * multiplier(schedule, epoch, epochs)
