"""Training engines by name: `fit` (Keras model.fit) and `fused` (one compiled JAX program, several rates as lanes).

`resolve(requested, backend, device_kind)` is the one door from a spec's or option's `engine` (a name or
`auto`) to the engine a run uses; each engine says which backends it runs on. Nothing here imports Keras.

>>> resolve("auto", "jax", "gpu"), resolve("auto", "jax", "cpu"), resolve("fit", "jax", "gpu")
('fused', 'fit', 'fit')
"""

from __future__ import annotations

from cnnbench.engines.base import Engine, Program
from cnnbench.engines.fit import FitEngine
from cnnbench.engines.fused import FusedEngine
from cnnbench.errors import UsageError

# The registry: a new engine is one file beside these and one entry here.
ENGINES: dict[str, Engine] = {engine.name: engine for engine in (FitEngine(), FusedEngine())}
DEFAULT = "fit"  # what `auto` gives where no engine asks for the backend and device
NAMES = tuple(ENGINES)  # what run.json's `engine` says
CHOICES = ("auto", *NAMES)  # what a spec's training.engine and --engine accept

__all__ = ["CHOICES", "DEFAULT", "ENGINES", "NAMES", "Engine", "Program", "get", "resolve", "unavailable"]


def get(name: str) -> Engine:
    """The engine called `name` (not `auto`: resolve it first); UsageError for an unknown one."""
    if name not in ENGINES:
        raise UsageError(f"unknown engine {str(name)[:40]!r}; use {', '.join(NAMES)} or auto")
    return ENGINES[name]


def unavailable(name: str, backend: str) -> str | None:
    """Why engine `name` cannot train on `backend` (None when it can, or for `auto`, which always finds one)."""
    return None if name == "auto" else get(name).unavailable(backend)


def resolve(requested: str, backend: str, device_kind: str) -> str:
    """The engine a run uses: `auto` picks the engine that asks for this backend and device (fused for JAX on a
    GPU), else fit; a named one is checked. UsageError for an unknown name or a backend the engine does not run on."""
    if requested == "auto":
        return next((e.name for e in ENGINES.values() if e.chosen_by_auto(backend, device_kind)), DEFAULT)
    engine = get(requested)
    if why := engine.unavailable(backend):
        raise UsageError(f"{why}, but this run uses {backend}; use `backend` {engine.backends[0]} or `engine` {DEFAULT}")
    return requested
