"""Did a run learn anything: the error of guessing among a dataset's classes, and the one rule that says a
validation error is clearly below it. Pure arithmetic: `train` records the verdict, `plot` and `report` read it.

>>> chance_error(10), learned(0.87, 10, 500), learned(0.5, 10, 500)
(0.9, False, True)
"""

from __future__ import annotations

import math

LEARNED_MIN_MARGIN = 0.02  # below chance by at least this much, however large the validation set


def chance_error(num_classes: int) -> float:
    """The error of guessing uniformly among `num_classes` classes: 1 - 1/classes (0.9 for digits)."""
    return 1.0 - 1.0 / max(num_classes, 1)


def learned_margin(num_classes: int, val_samples: int) -> float:
    """How far below chance a validation error must be to count as learning.

    Three binomial standard deviations of the error of a chance-level model on `val_samples`
    images, and never less than LEARNED_MIN_MARGIN: 0.040 for 500 validation images, 0.080 for 128,
    0.020 for 10,000.
    """
    p = chance_error(num_classes)
    return max(LEARNED_MIN_MARGIN, 3.0 * math.sqrt(p * (1.0 - p) / max(val_samples, 1)))


def learned(best_val_error: float | None, num_classes: int, val_samples: int) -> bool | None:
    """False when the best validation error is not clearly below chance (None when there is none)."""
    if best_val_error is None or best_val_error != best_val_error:
        return None
    return bool(best_val_error < chance_error(num_classes) - learned_margin(num_classes, val_samples))
