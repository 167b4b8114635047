"""The training loss: sparse categorical cross-entropy, with the spec's label smoothing when it sets one.

Keras' sparse cross-entropy takes no label smoothing; this is the same smoothing Keras' categorical one applies
(targets (1 - s) one-hot + s / classes) on integer labels, so both engines train on it alike.
"""

from __future__ import annotations

import keras
from keras import ops

EPSILON = 1e-7  # Keras' clip of probabilities, as in its own cross-entropy


@keras.saving.register_keras_serializable(package="cnnbench")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """(1 - s) * -log p[label] + s * mean over classes of -log p[class]."""

    def __init__(self, label_smoothing: float = 0.0, from_logits: bool = False, name: str = "smoothed_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing, self.from_logits = float(label_smoothing), bool(from_logits)

    def call(self, y_true, y_pred):
        if self.from_logits:
            log_p = ops.log_softmax(y_pred, axis=-1)
        else:
            p = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
            log_p = ops.log(ops.clip(p, EPSILON, 1.0 - EPSILON))
        labels = ops.cast(ops.reshape(y_true, (-1, 1)), "int32")
        nll = -ops.squeeze(ops.take_along_axis(log_p, labels, axis=-1), axis=-1)
        return (1.0 - self.label_smoothing) * nll - self.label_smoothing * ops.mean(log_p, axis=-1)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "from_logits": self.from_logits}


def training_loss(label_smoothing: float | None, from_logits: bool):
    """Keras' own sparse cross-entropy without smoothing (a spec that sets none trains exactly as before), else ours."""
    if not label_smoothing:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    return SmoothedSparseCrossentropy(label_smoothing, from_logits=from_logits)
