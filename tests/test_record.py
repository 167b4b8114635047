"""The run record: record.py is the only writer of run.json, its writes are atomic, and a marked run reads as it ended."""

from __future__ import annotations

import ast
import json
import threading
from pathlib import Path

import pytest

import cnnbench
from cnnbench import record, results
from cnnbench.files import UnsafeFileError
from cnnbench.results import inspect_record, list_results, read_record, run_status

PACKAGE = Path(cnnbench.__file__).parent
# Calls that put bytes into a file or a file in place: the callee's name, whatever object it is called on.
MOVERS = {"replace", "rename", "copy", "copy2", "copyfile", "copytree", "move", "link", "symlink"}
WRITERS = {"write_json", "atomic_write_text", "atomic_write_bytes", "write_text", "write_bytes", "write_csv", "dump", "open",
           "symlink_to", "hardlink_to", *MOVERS}  # fmt: skip


def _names_run_json(node: ast.AST) -> bool:
    """True when an expression mentions run.json: the literal (also inside an f-string) or the RUN_FILE constant."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value.endswith("run.json"):
            return True
        if isinstance(sub, (ast.Name, ast.Attribute)) and (getattr(sub, "id", None) or getattr(sub, "attr", None)) == "RUN_FILE":
            return True
    return False


def run_json_writes(source: str) -> list[int]:
    """Lines of `source` that write run.json: a writer called with it among its arguments, or on a path that names it."""
    tree = ast.parse(source)
    lines, via_record = [], _record_names(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else func.id if isinstance(
                func, ast.Name) else None) in via_record:  # fmt: skip
            continue  # record.copy(...), mark_ended(...): the writes record.py does
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name not in WRITERS:
            continue
        if name == "open" and not any(_writes_mode(arg) for arg in [*node.args[1:2], *(k.value for k in node.keywords if k.arg == "mode")]):
            continue  # open() to read
        if name in MOVERS:  # os.replace(src, dst), Path.replace(dst), shutil.copy(src, dst): the destination is written
            parts = node.args[-1:]
        else:  # write_json(path, ...), Path.write_text(...) on a path, open(path, "w")
            parts = [*node.args, *(k.value for k in node.keywords), *([func.value] if isinstance(func, ast.Attribute) else [])]
        if any(_names_run_json(part) for part in parts):
            lines.append(node.lineno)
    return sorted(lines)


def _record_names(tree: ast.AST) -> set[str]:
    """The names under which a module imported cnnbench.record or its functions."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "cnnbench":
            names |= {a.asname or a.name for a in node.names if a.name == "record"}
        elif isinstance(node, ast.ImportFrom) and node.module == "cnnbench.record":
            names |= {a.asname or a.name for a in node.names}
    return names


def _writes_mode(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and any(c in node.value for c in "wax+")


def test_the_scan_finds_every_way_of_writing_run_json():
    # The scanner itself: each of these writes run.json and must be found, so that the test below can fail.
    bad = """
write_json(run_dir / "run.json", record)
(folder / "run.json").write_text(json.dumps(run))
atomic_write_text(Path(d) / "run.json", text)
with open(run_dir / "run.json", "w") as f: pass
os.replace(tmp, run_dir / "run.json")
write_json(run_dir / record.RUN_FILE, record)
shutil.copy(other / "run.json", run_dir / "run.json")
"""
    assert run_json_writes(bad) == [2, 3, 4, 5, 6, 7, 8]
    reads = """
read_record(run_dir / "run.json")
open(run_dir / "run.json").read()
results.set_aside(run_dir / "run.json")
os.replace(run_dir / "run.json", run_dir / "run.json.corrupt")
from cnnbench import record as run_record
run_record.copy(run_dir, json.loads(files[run_record.RUN_FILE]))
"""
    assert run_json_writes(reads) == []
    assert run_json_writes((PACKAGE / "record.py").read_text()), "record.py writes run.json, and the scan sees it"


def test_no_module_but_record_writes_run_json():
    writers = {
        str(path.relative_to(PACKAGE)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "record.py" and (lines := run_json_writes(path.read_text()))
    }
    assert writers == {}, f"run.json is written outside cnnbench/record.py: {writers}"


def test_the_schema_is_one_results_validates_with_it():
    assert results.RUN_FIELDS is record.FIELDS and results.STATUSES is record.STATUSES and results.FINISHED is record.FINISHED


# --- atomic writes ------------------------------------------------------------------------------------


def test_a_reader_never_sees_a_torn_record(tmp_path):
    # A record large enough to take several writes of the OS to land, rewritten while another thread reads it.
    big = [{"record": i, "pad": "x" * 20_000, "data": {"warnings": ["w" * 1000] * 20}} for i in range(6)]
    records = [{"status": "running", "name": f"r{i}", "data": {"name": "mnist-5k", "warnings": b["data"]["warnings"]},
                "error": b["pad"]} for i, b in enumerate(big)]  # fmt: skip
    record.copy(tmp_path, records[0])
    stop, seen, torn = threading.Event(), set(), []

    def read() -> None:
        while not stop.is_set():
            text = (tmp_path / "run.json").read_bytes()
            try:
                seen.add(json.loads(text)["name"])
            except ValueError:
                torn.append(len(text))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(30):
            for r in records:
                record.copy(tmp_path, r)
    finally:
        stop.set()
        reader.join()
    assert torn == [] and seen <= {r["name"] for r in records} and len(seen) > 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no temporary file is left behind


def test_a_write_that_fails_keeps_the_previous_record(tmp_path):
    record.copy(tmp_path, {"status": "running", "name": "net"})
    with pytest.raises(TypeError):
        record.mark_ended(tmp_path, "failed", "boom", base={"unwritable": object()})
    assert read_record(tmp_path / "run.json") == {"status": "running", "name": "net"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_link_planted_as_run_json_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").symlink_to(target)
    with pytest.raises(UnsafeFileError, match="is a symbolic link"):
        record.copy(tmp_path / "run", {"status": "running"})
    assert target.read_text() == "precious"


def test_start_and_final_records_are_what_they_say(tmp_path):
    with pytest.raises(ValueError, match="running"):
        record.write_start(tmp_path, {"status": "ok"})
    with pytest.raises(ValueError, match="final status"):
        record.write_final(tmp_path, {"status": "running"})
    assert not (tmp_path / "run.json").exists()


def test_the_start_record_is_a_trustworthy_running_record(tiny_spec, tmp_path):
    run = {"epochs_measured": 2, "device": "cpu", "device_requested": "auto", "device_name": "x86", "backend": "tensorflow",
           "engine": "fit", "fused_k": 1, "environment": {"python": "3"}, "chance_error": 0.9, "learned_margin": 0.08,
           "started_at": record.now_iso()}  # fmt: skip
    model = {"params": 104250, "trainable_params": 104250, "flops_per_sample": 1000}
    data = {"name": "mnist-5k", "train_samples": 512, "warnings": []}
    start = record.start_record(tiny_spec, run, model, data, steps_per_execution=4)
    record.write_start(tmp_path, start)
    on_disk = read_record(tmp_path / "run.json")
    assert on_disk["status"] == "running" and on_disk["error"] is None and "resumed" not in on_disk
    assert (on_disk["name"], on_disk["epochs"], on_disk["learning_rate"]) == ("convolutional_nn", 2, tiny_spec.training.learning_rate)
    assert on_disk["data"] == {"name": "mnist-5k", "train_samples": 512, "requested": "mnist-5k", "warnings": []}
    assert run_status(tmp_path) == "running"


# --- marking a run that ended outside training ---------------------------------------------------------


def _running(run_dir: Path, **fields) -> None:
    record.copy(run_dir, {"status": "running", "name": "net", "learning_rate": 0.1, "device": "cpu", "epochs_run": 1, **fields})


def test_an_interrupted_run_keeps_what_it_said_and_says_why(tmp_path):
    _running(tmp_path / "a")
    marked = record.mark_ended(tmp_path / "a", "interrupted", "interrupted (Ctrl-C)", only=("running",))
    on_disk = read_record(tmp_path / "a" / "run.json")
    assert marked == on_disk and on_disk["status"] == "interrupted" and on_disk["error"] == "interrupted (Ctrl-C)"
    assert (on_disk["device"], on_disk["learning_rate"], on_disk["epochs_run"]) == ("cpu", 0.1, 1) and on_disk["ended_at"]
    rows = {row["name"]: row for row in list_results(tmp_path)}
    assert rows["a"]["status"] == "interrupted"


def test_a_finished_or_never_started_run_is_not_marked_interrupted(tmp_path):
    _running(tmp_path / "done", status="ok")
    before = (tmp_path / "done" / "run.json").read_bytes()
    assert record.mark_ended(tmp_path / "done", "interrupted", "interrupted (Ctrl-C)", only=("running",)) is None
    assert (tmp_path / "done" / "run.json").read_bytes() == before
    (tmp_path / "never").mkdir()
    assert record.mark_ended(tmp_path / "never", "interrupted", "interrupted (Ctrl-C)", only=("running",)) is None
    assert not (tmp_path / "never" / "run.json").exists()


def test_a_run_whose_worker_died_before_its_record_is_failed_with_the_error(tmp_path):
    base = {"name": "net", "learning_rate": 0.05}
    record.mark_ended(tmp_path / "lr-0.05", "failed", "the worker process died (exit -9)", only=(None, "running"), base=base)
    on_disk = read_record(tmp_path / "lr-0.05" / "run.json")
    assert {k: on_disk[k] for k in ("name", "learning_rate", "status", "error")} == {
        **base, "status": "failed", "error": "the worker process died (exit -9)"}  # fmt: skip
    assert run_status(tmp_path / "lr-0.05") == "failed" and not results.is_finished(tmp_path / "lr-0.05")


def test_a_corrupt_record_is_replaced_by_the_mark(tmp_path):
    (tmp_path / "run.json").write_text('{"status": "ok", "epochs_run": "two"}')
    assert inspect_record(tmp_path / "run.json")[1] == "epochs_run is 'two', expected an integer or null"
    record.mark_ended(tmp_path, "failed", "exited with code 1", base={"device": "cpu"})
    assert read_record(tmp_path / "run.json")["status"] == "failed"


def test_a_run_out_of_memory_at_start_is_recorded_oom_and_kept(tiny_spec, tmp_path):
    started = record.now_iso()
    oom = record.oom_at_start(tiny_spec, tmp_path, "MemoryError: Unable to allocate 64 GiB", "cpu", started, 812.5)
    on_disk = read_record(tmp_path / "run.json")
    assert oom == on_disk and on_disk["status"] == "oom" and on_disk["error"] == "MemoryError: Unable to allocate 64 GiB"
    assert (on_disk["epochs_run"], on_disk["learned"], on_disk["best_val_error"], on_disk["started_at"]) == (0, None, None, started)
    assert results.is_finished(tmp_path)  # a resumed sweep keeps it instead of allocating again


def test_a_record_shipped_back_from_a_worker_lands_as_it_was(tmp_path):
    from cnnbench.executor import write_shipped

    final = {"status": "ok", "name": "net", "best_val_error": 0.125, "timing": {"epoch_s_median": 1.5}}
    (tmp_path / "error.txt").write_text("stale")
    write_shipped(tmp_path, {"run.json": json.dumps(final).encode(), "history.csv": b"epoch\n1\n"})
    assert read_record(tmp_path / "run.json") == final
    assert (tmp_path / "history.csv").read_text() == "epoch\n1\n" and not (tmp_path / "error.txt").exists()
