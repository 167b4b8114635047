"""cnnbench: define, train, sweep and benchmark convolutional networks from a spec file.

The public API is re-exported here lazily, so `import cnnbench` never imports Keras:

>>> import cnnbench
>>> spec = cnnbench.load_spec("convolutional_nn")
>>> record = cnnbench.train_run(spec.with_overrides(epochs=2, dataset="mnist-5k"), "results/demo")
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "load_spec": "cnnbench.spec",
    "parse_spec": "cnnbench.spec",
    "Spec": "cnnbench.spec",
    "SpecError": "cnnbench.errors",
    "DataError": "cnnbench.errors",
    "DeviceError": "cnnbench.errors",
    "CnnbenchError": "cnnbench.errors",
    "build_model": "cnnbench.model",
    "summarize": "cnnbench.model",
    "load_dataset": "cnnbench.data",
    "RunOptions": "cnnbench.train",
    "train_run": "cnnbench.train",
    "plan_run": "cnnbench.run",
    "plan_resume": "cnnbench.run",
    "run_train": "cnnbench.run",
    "load_runs": "cnnbench.results",
    "load_histories": "cnnbench.results",
    "list_results": "cnnbench.results",
    "plan_sweep": "cnnbench.sweep",
    "run_sweep": "cnnbench.sweep",
    "SweepOptions": "cnnbench.sweep",
    "make_grid": "cnnbench.grid",
    "plan_study": "cnnbench.study",
    "run_study": "cnnbench.study",
    "StudyOptions": "cnnbench.study",
    "parse_values": "cnnbench.values",
    "run_bench": "cnnbench.bench",
    "BenchOptions": "cnnbench.bench",
    "plot_results": "cnnbench.plot",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cnnbench' has no attribute {name!r}")
