"""The tiny net the benchmark scripts train when the net itself is not what they measure (driver cost, sinks).

A script run as `python benchmarks/<name>.py` has this folder on its path: `from tiny import tiny_net`.
"""

from __future__ import annotations


def tiny_net(epochs: int = 1, data: dict | None = None) -> dict:
    """A spec dict: one 4-filter convolution, pooling, a softmax layer; sgd at 0.1, batch 64, seed 0.

    data: the spec's data section (default: 512/128/128 synthetic samples, no download, seconds per epoch).
    """
    return {
        "name": "tiny",
        "input_shape": [28, 28, 1],
        "layers": [
            {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"},
            {"type": "MaxPooling2D", "pool_size": 2},
            {"type": "Flatten"},
            {"type": "Dense", "units": 10, "activation": "softmax"},
        ],
        "training": {"optimizer": "sgd", "learning_rate": 0.1, "batch_size": 64, "epochs": epochs, "seed": 0},
        "data": data or {"dataset": "synthetic", "train_samples": 512, "val_samples": 128, "test_samples": 128},
    }
