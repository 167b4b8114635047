"""The `fused` engine: each epoch one compiled JAX program, several learning rates as its vmapped lanes.

The program itself is cnnbench/fused.py; this file says when the engine applies and drives it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

from cnnbench.engines.base import Engine, Program


class FusedEngine(Engine):
    name = "fused"
    backends = ("jax",)
    lanes_together = True

    def chosen_by_auto(self, backend: str, device_kind: str) -> bool:
        return backend == "jax" and device_kind == "gpu"  # on XLA:CPU a compiled epoch is slower than fit

    def check(self, model: Any, data: Any, spec: Any) -> None:
        from cnnbench.fused import check_model

        check_model(model, data, spec.training.batch_size)  # also builds the optimizer, whose slots lane_cap counts

    def lane_count(self, specs: Sequence[Any], model: Any, summary: Any, resume: bool) -> int:
        from cnnbench.fused import lane_cap, unfusable_reason

        if len(specs) < 2 or resume:
            return 1
        if reason := unfusable_reason(specs):
            warnings.warn(f"not fusing: {reason}; training the runs one after another", stacklevel=3)
            return 1
        take = min(len(specs), lane_cap(model, specs[0].training.batch_size, summary))
        if take < len(specs):
            warnings.warn(f"fusing {take} of {len(specs)} runs at once (device memory estimate); the rest follow", stacklevel=3)
        return take

    def train(self, program: Program) -> None:
        import keras

        from cnnbench.fused import FusedTrainer
        from cnnbench.schedule import multiplier

        t0 = time.perf_counter()
        spec, lanes, epochs = program.spec, program.lanes, program.spec.training.epochs
        rates = [s.training.learning_rate for s in program.specs]
        schedule = spec.training.lr_schedule
        trainer = FusedTrainer(program.model, program.data, spec.training.batch_size, spec.training.seed, rates, checked=True,
                               lr_multiplier=(lambda epoch: multiplier(schedule, epoch, epochs)) if schedule else None)  # fmt: skip
        program.setup_s += time.perf_counter() - t0  # building the state and putting the data on the device
        callbacks = [keras.callbacks.CallbackList(lane.callbacks, model=program.model) for lane in lanes]
        if program.first_epoch < program.fit_epochs:
            stopped = lambda k: lanes[k].guard.reason is not None
            trainer.fit(program.fit_epochs, program.timer, callbacks, on_lane_end=program.finish, stopped=stopped,
                        initial_epoch=program.first_epoch)  # fmt: skip
        for k, lane in enumerate(lanes):
            if not lane.done:  # resumed at its last epoch: nothing left to train
                trainer.write_back(k)
                program.finish(k)
