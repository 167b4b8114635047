"""What an engine is: a name, the backends it runs on, whether `auto` picks it, and how it trains a program.

`train` prepares the model, the data and one `Lane` per run (its folder, record and callbacks), then
hands the `Program` to the engine; the engine trains and calls `program.finish(k)` as each lane ends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

BACKEND_NAMES = {"jax": "JAX", "tensorflow": "TensorFlow", "torch": "PyTorch"}


@dataclass
class Program:
    """One training program: the runs (lanes) that train together, and what they train on.

    lanes: `train._Lane`s (run_dir, record, history, guard, callbacks, done). timer: the epoch timer all lanes
    share. finish(k): record lane k's end (its model weights in `model`). setup_s: time spent before the
    first epoch; an engine adds what it spends building its program.
    """

    model: Any
    data: Any
    spec: Any
    specs: Sequence[Any]
    lanes: list
    timer: Any
    first_epoch: int
    fit_epochs: int
    finish: Callable[[int], None]
    setup_s: float = 0.0


class Engine(ABC):
    """A training engine. Subclasses set `name` (what run.json's `engine` says), write `train` and override what differs.

    backends: the Keras backends it runs on (None: every one). lanes_together: it can train several runs
    (specs that differ only in the learning rate) as lanes of one program, and history.csv says how many.
    """

    name: str = ""
    backends: tuple[str, ...] | None = None
    lanes_together: bool = False

    def unavailable(self, backend: str) -> str | None:
        """Why this engine cannot train on `backend` (None when it can): the one availability rule."""
        if self.backends is None or backend in self.backends:
            return None
        return f"engine {self.name} needs the {' or '.join(BACKEND_NAMES.get(b, b) for b in self.backends)} backend"

    def chosen_by_auto(self, backend: str, device_kind: str) -> bool:
        """True when `auto` should pick this engine over the default for this backend and device."""
        return False

    def check(self, model: Any, data: Any, spec: Any) -> None:
        """Refuse (UsageError) a model this engine cannot train, before anything is written; any model by default."""
        return None

    def lane_count(self, specs: Sequence[Any], model: Any, summary: Any, resume: bool) -> int:
        """How many of `specs` (from the first) train as lanes of one program; the rest follow in later programs."""
        return 1

    @abstractmethod
    def train(self, program: Program) -> None:
        """Train the program's lanes to `program.fit_epochs`, calling `program.finish(k)` for each lane that ends."""
