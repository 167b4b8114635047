"""The TensorBoard sink: event files in Keras' layout plus one HParams record per run, without TensorFlow.

DIR/<run>/train and DIR/<run>/validation hold `epoch_loss`, `epoch_accuracy`, `epoch_error` (step = epoch,
as in history.csv); train also `epoch_time_s`, `samples_per_s`, `learning_rate`. DIR/<run> itself holds the
HParams session (the run's settings, its status) and `best_val_error`, `final_val_error`, `test_error`, so
TensorBoard's HParams table, parallel coordinates and scatter views compare a sweep. Written with
tensorboardX's protobufs: no TensorFlow import, so JAX and torch processes stay free of it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from cnnbench import results
from cnnbench.sinks import RunFolder, flatten_spec, iso_seconds, run_name

MARKER = ".cnnbench-export.json"  # per run folder in DIR: the history digest written and the event files it made
TRAIN_TAGS = {"loss": "epoch_loss", "accuracy": "epoch_accuracy", "error": "epoch_error", "epoch_time_s": "epoch_time_s",
              "samples_per_s": "samples_per_s", "learning_rate": "learning_rate"}  # fmt: skip
VALIDATION_TAGS = {"val_loss": "epoch_loss", "val_accuracy": "epoch_accuracy", "val_error": "epoch_error"}
SUMMARY_TAGS = ("best_val_error", "final_val_error", "test_error")
HPARAMS = ("learning_rate", "filters", "batch_size", "optimizer", "epochs", "seed", "dataset", "device", "backend", "engine")


def load_tensorboardx() -> None:
    """Import tensorboardX's writer and summaries, without torch.

    tensorboardX's package imports torch whenever it is installed (to accept torch tensors, which cnnbench never
    hands it): seconds and hundreds of MB that a JAX or TensorFlow process never needs. Unless torch is already
    loaded (a torch-backend process), it is hidden for the length of this import, so tensorboardX takes numpy's path.
    """
    if "tensorboardX.writer" in sys.modules:
        return
    hide = "torch" not in sys.modules and importlib.util.find_spec("torch") is not None
    if hide:
        sys.modules["torch"] = None  # the standard way to make a module unimportable
    try:
        import tensorboardX.summary  # noqa: F401
        import tensorboardX.writer  # noqa: F401
    finally:
        if hide and sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]


def hparams(run: RunFolder) -> dict[str, Any]:
    """The run's HParams: what it trained with (run.json first, then spec.json), the swept paths, its status."""
    record, flat = run.record, flatten_spec(run.spec)
    filters = next((v for k, v in flat.items() if k.startswith("layers.") and k.endswith(".filters")), record.get("filters"))
    values = {
        "learning_rate": record.get("learning_rate", flat.get("training.learning_rate")),
        "filters": filters,
        "batch_size": record.get("batch_size", flat.get("training.batch_size")),
        "optimizer": record.get("optimizer", flat.get("training.optimizer")),
        "epochs": record.get("epochs", flat.get("training.epochs")),
        "seed": record.get("seed", flat.get("training.seed")),
        "dataset": (record.get("data") or {}).get("name"),
        "device": record.get("device"),
        "backend": record.get("backend"),
        "engine": record.get("engine"),
    }
    for path in run.swept:
        if path not in ("training.learning_rate", "training.batch_size", "training.epochs", "training.seed") and path in flat:
            values[path] = flat[path]
    values["status"] = run.status
    return {k: v for k, v in values.items() if isinstance(v, (str, bool, int, float))}


def _session_summaries(run: RunFolder, start_s: float | None) -> list:
    load_tensorboardx()
    from tensorboardX.proto.api_pb2 import Status
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo, SessionStartInfo
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

    start = SessionStartInfo(start_time_secs=start_s or 0.0)
    for key, value in hparams(run).items():
        if isinstance(value, bool):
            start.hparams[key].bool_value = value
        elif isinstance(value, (int, float)):
            start.hparams[key].number_value = float(value)
        else:
            start.hparams[key].string_value = value
    status = {"ok": "STATUS_SUCCESS", "diverged": "STATUS_FAILURE", "failed": "STATUS_FAILURE", "oom": "STATUS_FAILURE"}
    end = SessionEndInfo(status=Status.Value(status.get(run.status, "STATUS_UNKNOWN")),
                         end_time_secs=iso_seconds(run.record.get("ended_at")) or 0.0)  # fmt: skip
    summaries = []
    for tag, data in (("_hparams_/session_start_info", HParamsPluginData(session_start_info=start, version=0)),
                      ("_hparams_/session_end_info", HParamsPluginData(session_end_info=end, version=0))):  # fmt: skip
        plugin = SummaryMetadata.PluginData(plugin_name="hparams", content=data.SerializeToString())
        summaries.append(Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))]))
    return summaries


def _epoch_scalars(row: dict[str, Any]):
    """(part, tag, value) of one history row: train/ and validation/ as Keras names them."""
    if "accuracy" in row:
        row = {**row, "error": 1.0 - row["accuracy"]}
    for part, tags in (("train", TRAIN_TAGS), ("validation", VALIDATION_TAGS)):
        for column, tag in tags.items():
            value = row.get(column)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                yield part, tag, float(value)


def write_run(folder: Path, run: RunFolder) -> None:
    """Write `run` under `folder` (its own event files: one in folder, one in train/, one in validation/)."""
    load_tensorboardx()
    from tensorboardX.summary import scalar
    from tensorboardX.writer import FileWriter

    start_s = iso_seconds(run.record.get("started_at"))
    clock = start_s or (run.run_dir / "run.json").stat().st_mtime
    writers = {part: FileWriter(str(folder / part) if part else str(folder), flush_secs=3600) for part in ("train", "validation", "")}
    try:
        for row in run.history:
            step = int(row["epoch"])
            clock += row.get("epoch_time_s") or 0.0
            for part, tag, value in _epoch_scalars(row):
                writers[part].add_summary(scalar(tag, value), global_step=step, walltime=clock)
        root = writers[""]
        for summary in _session_summaries(run, start_s):
            root.add_summary(summary, global_step=0, walltime=start_s or clock)
        last = int(run.history[-1]["epoch"]) if run.history else 0
        for tag in SUMMARY_TAGS:
            value = run.record.get(tag)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                root.add_summary(scalar(tag, float(value)), global_step=last, walltime=clock)
    finally:
        for writer in writers.values():
            writer.close()


def _event_files(folder: Path) -> set[Path]:
    return {p for part in ("", "train", "validation") for p in (folder / part).glob("events.out.tfevents.*")}


def _forget(folder: Path, marker: dict[str, Any] | None) -> None:
    """Remove the event files a marker lists (what cnnbench wrote of a run before), nothing else."""
    for name in (marker or {}).get("files") or []:
        if isinstance(name, str) and ".." not in Path(name).parts:
            (folder / name).unlink(missing_ok=True)


class TensorBoardSink:
    """Writes each finished run to DIR/<run name>; a run written before is skipped, or rewritten when it changed.

    While a run trains in this process (or its epochs reach this driver), its curves are written live to
    event files of their own, listed in the marker; when it ends they give way to the files written from
    the finished folder, so live and exported runs are the same, and an interrupted run is replaced by
    `export` later.
    """

    name = "tensorboard"

    def __init__(self, target: str | Path, option: str = "--tensorboard", deferred: bool = False) -> None:
        self.root = results.check_out_dir(target, option)
        if not deferred:
            self.open()
        self.live: dict[Path, tuple[Path, dict[str, Any]]] = {}  # run folder -> (its DIR/<run>, writers for train/ and validation/)

    def open(self) -> None:
        """Import tensorboardX's writer (its extra was found when the sink was made): a fraction of a second."""
        load_tensorboardx()

    def on_run_start(self, run_dir: Path, record: dict[str, Any]) -> None:
        load_tensorboardx()
        from tensorboardX.writer import FileWriter

        folder = self.root / run_name(run_dir)
        _forget(folder, results.read_record(folder / MARKER))  # a redone or resumed run starts its curves afresh
        before = _event_files(folder)
        writers = {part: FileWriter(str(folder / part), flush_secs=3600) for part in ("train", "validation")}
        made = sorted(p.relative_to(folder).as_posix() for p in _event_files(folder) - before)
        results.write_json(folder / MARKER, {"digest": None, "run_dir": str(Path(run_dir).resolve()), "files": made,
                                             "written_at": results.now_iso()})  # fmt: skip
        self.live[Path(run_dir).resolve()] = (folder, writers)

    def on_epoch(self, run_dir: Path, row: dict[str, Any]) -> None:
        load_tensorboardx()
        from tensorboardX.summary import scalar

        if (entry := self.live.get(Path(run_dir).resolve())) is None or "epoch" not in row:
            return
        writers = entry[1]
        for part, tag, value in _epoch_scalars(row):
            writers[part].add_summary(scalar(tag, value), global_step=int(row["epoch"]))
        for writer in writers.values():
            writer.flush()  # TensorBoard shows the epoch now

    def on_run_end(self, run: RunFolder) -> str:
        live = self.live.pop(run.run_dir.resolve(), None)
        for writer in (live[1] if live else {}).values():
            writer.close()
        folder = self.root / run.name
        marker = results.read_record(folder / MARKER)
        if marker and marker.get("digest") == run.digest:
            return "unchanged"
        _forget(folder, marker)  # a changed run (resumed, redone) or its live curves: replaced by what the folder holds
        before = _event_files(folder)
        write_run(folder, run)
        made = sorted(p.relative_to(folder).as_posix() for p in _event_files(folder) - before)
        results.write_json(folder / MARKER, {"digest": run.digest, "run_dir": str(run.run_dir.absolute()), "files": made,
                                             "written_at": results.now_iso()})  # fmt: skip
        return "updated" if marker and marker.get("digest") else "written"

    def close(self) -> None:
        for _, writers in self.live.values():  # runs that never ended (Ctrl-C): their live curves stay, listed in the marker
            for writer in writers.values():
                writer.close()
        self.live = {}
