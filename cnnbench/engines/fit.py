"""The `fit` engine: Keras' own `model.fit`, one run at a time, on every backend.

The default: what `auto` picks unless another engine is better for the backend and device.
"""

from __future__ import annotations

from cnnbench.engines.base import Engine, Program


class FitEngine(Engine):
    name = "fit"

    def train(self, program: Program) -> None:
        from cnnbench.callbacks import ScheduledRate

        lane, spec, data = program.lanes[0], program.spec, program.data
        if program.first_epoch < program.fit_epochs:
            scheduled = [ScheduledRate(lane.history.rate_at)] if spec.training.lr_schedule else []
            program.model.fit(
                data.x_train, data.y_train,
                batch_size=spec.training.batch_size, epochs=program.fit_epochs, initial_epoch=program.first_epoch,
                validation_data=(data.x_val, data.y_val),
                callbacks=[program.timer, *scheduled, *lane.callbacks], verbose=0, shuffle=True,
            )  # fmt: skip
        program.finish(0)
