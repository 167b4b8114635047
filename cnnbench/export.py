"""`cnnbench export tensorboard|mlflow RESULTS...`: run folders already on disk, written by the sinks' own code.

Idempotent: a run already exported with the same history is skipped, a changed one is rewritten in place.

>>> export("tensorboard", ["results/"], "tb/").counts          # {'written': 8}; again: {'unchanged': 8}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cnnbench import results
from cnnbench.errors import UsageError
from cnnbench.sinks import REGISTRY, SinkError, create_sink, read_run

TARGET_OPTION = {"tensorboard": "--to", "mlflow": "--uri"}
MLFLOW_FOLDERS = {"mlartifacts", "mlruns"}  # MLflow's own artifact copies of run folders are not runs


@dataclass
class ExportResult:
    sink: str
    counts: dict[str, int] = field(default_factory=dict)  # written / updated / unchanged / not finished
    runs: int = 0

    def line(self) -> str:
        order = ("written", "updated", "unchanged", "not finished")
        parts = [f"{self.counts[k]} {k}" for k in order if self.counts.get(k)]
        return f"{self.sink}: {self.runs} run{'' if self.runs == 1 else 's'}: {', '.join(parts) or 'nothing to do'}"


def export(sink: str, paths: Sequence[str | Path], target: str | Path | None,
           on_run: Callable[[str, str], None] | None = None) -> ExportResult:  # fmt: skip
    """Write every run folder at or below `paths` to the sink `sink` (a TensorBoard folder, an MLflow URI).

    UsageError for an unknown sink or a path with no run folder; SinkError (one line naming the run)
    when the sink fails. `on_run(name, outcome)` hears of each run.
    """
    if sink not in REGISTRY:
        raise UsageError(f"export: unknown target {sink!r}; choose one of: {', '.join(REGISTRY)}")
    if sink == "tensorboard" and target is None:
        raise UsageError("export tensorboard: --to DIR is required (the TensorBoard log folder)")
    run_dirs: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise UsageError(f"export: {path}: no such folder")
        found = [p for p in results.find_runs(path) if not set(p.relative_to(path).parts) & MLFLOW_FOLDERS]
        if not found:
            raise UsageError(f"export: {path}: no run folders (none holds a run.json)")
        run_dirs.extend(found)
    run_dirs = list(dict.fromkeys(p.resolve() for p in run_dirs))
    writer = create_sink(sink, target, TARGET_OPTION[sink])
    result = ExportResult(sink, runs=len(run_dirs))
    try:
        for run_dir in run_dirs:
            run = read_run(run_dir)
            name = run.name if run else run_dir.name
            try:
                outcome = writer.on_run_end(run) if run else "not finished"
            except Exception as exc:
                raise SinkError(f"export {sink}: {name}: {' '.join(str(exc).split())[:300] or type(exc).__name__}") from None
            result.counts[outcome] = result.counts.get(outcome, 0) + 1
            if on_run:
                on_run(name, outcome)
    finally:
        writer.close()
    return result
