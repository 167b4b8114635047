"""A results folder cannot be turned against its owner: planted links, pipes, devices, markup and escape
sequences, and records whose fields lie. Each case runs the real CLI, with a timeout, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnbench import results as records
from cnnbench.errors import UsageError, safe
from cnnbench.files import MAX_RESULT_BYTES, UnsafeFileError, open_for_writing, read_bytes
from cnnbench.results import CORRUPT, inspect_record, list_results

TINY = {
    "name": "tiny",
    "input_shape": [28, 28, 1],
    "layers": [{"type": "Conv2D", "filters": 2, "kernel_size": 3}, {"type": "Flatten"},
               {"type": "Dense", "units": 10, "activation": "softmax"}],
    "training": {"epochs": 2, "batch_size": 64, "learning_rate": 0.1, "seed": 0},
    "data": {"dataset": "synthetic", "train_samples": 128, "val_samples": 64, "test_samples": 64},
}
REFUSED = "cnnbench reads and writes only regular files in a results folder (remove it)"


def cli(*args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m cnnbench ARGS`; a hang fails the test (TimeoutExpired) instead of hanging the suite."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "cnnbench", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def one_line_error(result: subprocess.CompletedProcess, *parts: str) -> str:
    """The command failed with exit code 2 and one line `error: ...` holding `parts`, and no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def interrupted_run(run_dir: Path, epochs_run: int = 1, **fields) -> Path:
    """A run folder as a Ctrl-C leaves it after `epochs_run` epochs: spec.json, run.json, history.csv."""
    records.write_json(run_dir / "spec.json", TINY)
    record = {"name": "tiny", "status": "interrupted", "error": "interrupted by the user (Ctrl-C)", "learning_rate": 0.1,
              "epochs": 2, "epochs_run": epochs_run, "best_val_error": 0.5, "final_val_error": 0.5, "best_epoch": 1,
              "data": {"name": "synthetic", "train_samples": 128, "val_samples": 64}, "started_at": "2026-11-20T10:00:00+00:00",
              **fields}  # fmt: skip
    records.write_json(run_dir / "run.json", record)
    records.write_csv(run_dir / "history.csv", [{"epoch": e, "loss": 2.0, "val_error": 0.5, "epoch_time_s": 0.1, "samples_per_s": 900.0}
                                                for e in range(1, epochs_run + 1)])  # fmt: skip
    return run_dir


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file of the owner's that a planted link points at: it must come out of every command as it went in."""
    path = tmp_path / "victim.txt"
    path.write_text("the owner's thesis\n")
    return path


@pytest.fixture
def spec_file(tmp_path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


# --- 1. writers never follow a link ----------------------------------------------------------------


@pytest.mark.parametrize("dangling", [False, True], ids=["link-to-a-file", "dangling-link"])
def test_a_link_planted_as_the_lock_file_is_refused_not_followed(tmp_path, victim, dangling):
    run = interrupted_run(tmp_path / "results" / "tiny-20261120-100000")
    target = tmp_path / "created-by-cnnbench.txt" if dangling else victim
    (run / ".cnnbench.lock").symlink_to(target)
    result = cli("train", "--resume", str(run))
    one_line_error(result, f"{run / '.cnnbench.lock'}: is a symbolic link; {REFUSED}")
    assert victim.read_text() == "the owner's thesis\n"
    assert not (tmp_path / "created-by-cnnbench.txt").exists()  # a dangling link does not create its target
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"  # nothing written, nothing left `running`


@pytest.mark.parametrize("planted", ["history.csv", "run.json", "the run folder"])
def test_a_link_planted_in_a_sweep_folder_is_refused_before_anything_is_written(tmp_path, victim, spec_file, planted):
    out = tmp_path / "results"
    dry = cli("sweep-lr", str(spec_file), "--values", "0.1,0.2", "--out", str(out), "--dry-run")
    sweep_dir = Path(dry.stdout.split("sweep folder: ")[1].split(" (")[0])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if planted == "the run folder":
        sweep_dir.mkdir(parents=True)
        (sweep_dir / "lr-0.1").symlink_to(elsewhere, target_is_directory=True)
        named = sweep_dir / "lr-0.1"
    else:
        interrupted_run(sweep_dir / "lr-0.1")
        (sweep_dir / "lr-0.1" / planted).unlink()
        (sweep_dir / "lr-0.1" / planted).symlink_to(victim)
        named = sweep_dir / "lr-0.1" / planted
    for args in (["--dry-run"], []):  # planning refuses what holding the folder would refuse
        result = cli("sweep-lr", str(spec_file), "--values", "0.1,0.2", "--out", str(out), *args)
        one_line_error(result, f"{named}: is a symbolic link; {REFUSED}")
    assert victim.read_text() == "the owner's thesis\n" and list(elsewhere.iterdir()) == []
    assert not (sweep_dir / "lr-0.2").exists() and not (sweep_dir / "sweep.json").exists()


def test_a_link_planted_as_a_bench_childs_log_is_refused(tmp_path, victim, spec_file):
    from cnnbench.bench import BenchOptions, bench_dir
    from cnnbench.spec import load_spec

    out = tmp_path / "results"
    folder = bench_dir(out, load_spec(str(spec_file)), BenchOptions(devices=("cpu",), backends=("tensorflow",), filters=(2,)))
    records.write_json(folder / "bench.json", {"status": "interrupted", "models": {"2": {"params": 13550, "flops_per_sample": 1}}})
    run = folder / "runs" / "cpu-tensorflow-f2-r1"
    run.mkdir(parents=True)
    (run / "child.log").symlink_to(victim)
    result = cli("bench", str(spec_file), "--devices", "cpu", "--backends", "tensorflow", "--filters", "2", "--out", str(out))
    one_line_error(result, f"{run / 'child.log'}: is a symbolic link; {REFUSED}")
    assert victim.read_text() == "the owner's thesis\n"
    assert json.loads((folder / "bench.json").read_text())["status"] == "interrupted"


def test_atomic_writes_and_log_files_never_write_through_a_link_or_into_a_pipe(tmp_path, victim):
    link, dangling, fifo = tmp_path / "run.json", tmp_path / "history.csv", tmp_path / "summary.csv"
    link.symlink_to(victim)
    dangling.symlink_to(tmp_path / "created.txt")
    os.mkfifo(fifo)
    for path, kind in ((link, "a symbolic link"), (dangling, "a symbolic link"), (fifo, "a named pipe (FIFO)")):
        for write in (lambda p: records.write_json(p, {"status": "ok"}), lambda p: records.write_csv(p, [{"epoch": 1}]), open_for_writing):
            with pytest.raises(UnsafeFileError) as caught:
                write(path)
            assert str(caught.value) == f"{path}: is {kind}; {REFUSED}"
    assert victim.read_text() == "the owner's thesis\n" and not (tmp_path / "created.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "run.json", "summary.csv", "victim.txt"]  # no temp file left


def test_the_model_is_saved_under_a_fresh_temporary_name_never_through_a_planted_one(tmp_path, victim):
    import keras

    from cnnbench.train import _save_model

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    (tmp_path / ".model.tmp.keras").symlink_to(victim)  # the fixed temporary name cnnbench 0.1 used
    _save_model(model, tmp_path / "model.keras")
    assert victim.read_text() == "the owner's thesis\n"
    assert (tmp_path / "model.keras").is_file() and not (tmp_path / "model.keras").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.tmp.keras", "model.keras", "victim.txt"]
    (tmp_path / "model.keras").unlink()
    (tmp_path / "model.keras").symlink_to(victim)
    with pytest.raises(UnsafeFileError, match="model.keras: is a symbolic link"):
        _save_model(model, tmp_path / "model.keras")
    assert victim.read_text() == "the owner's thesis\n"


# --- 2. one bounded reader: a pipe, a device or a huge file never hangs or fills memory -------------


def plant(path: Path, what: str) -> None:
    path.unlink(missing_ok=True)
    if what == "fifo":
        os.mkfifo(path)
    elif what == "dev-zero":
        path.symlink_to("/dev/zero")
    else:  # a sparse file larger than any record: reading it whole would take 65 MB of memory and more
        with open(path, "wb") as f:
            f.truncate(MAX_RESULT_BYTES + 1)


WHAT = {"fifo": "is a named pipe (FIFO)", "dev-zero": "is a symbolic link", "huge": "is 64.0 MiB, larger than any file"}


@pytest.mark.parametrize("what", list(WHAT))
@pytest.mark.parametrize("name", ["run.json", "history.csv"])
def test_a_pipe_device_or_huge_file_planted_in_a_run_hangs_nothing(tmp_path, name, what):
    root = tmp_path / "results"
    run = interrupted_run(root / "tiny-20261120-100000")
    plant(run / name, what)
    shown = f"{run / name}: {WHAT[what]}"

    listed = cli("ls", str(root), "--json", timeout=60)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["status"] == (CORRUPT if name == "run.json" else "interrupted")

    plotted = cli("plot", str(root), timeout=60)
    assert plotted.returncode == 2 and f"warning: skipped {shown}" in plotted.stderr and "Traceback" not in plotted.stderr

    compared = cli("compare", str(run), "--out", str(tmp_path), timeout=60)
    one_line_error(compared, shown)

    if name == "history.csv" and what == "huge":
        return  # a regular file, read on resume only beside a checkpoint (without one the run starts again and replaces it)
    resumed = cli("train", "--resume", str(run), timeout=60)
    line = one_line_error(resumed, str(run))
    assert ("cannot be trusted" in line) if name == "run.json" else (WHAT[what] in line)


@pytest.mark.parametrize("what", ["fifo", "dev-zero"])
def test_a_pipe_or_device_planted_as_a_sweep_or_bench_index_hangs_nothing(tmp_path, what):
    root = tmp_path / "results"
    sweep = root / "tiny-lr-sweep-0.1..0.2-n2-e2-s0-abcdef"
    interrupted_run(sweep / "lr-0.1", status="ok", epochs_run=2)
    records.write_json(sweep / "sweep.json", {"spec": TINY, "runs": [{"learning_rate": 0.1, "run_dir": "lr-0.1"}]})
    records.write_csv(sweep / "summary.csv", [{"learning_rate": 0.1, "status": "ok"}])
    bench = root / "bench-tiny-12345678"
    interrupted_run(bench / "runs" / "cpu-tensorflow-f2-r1", status="ok", epochs_run=2)
    records.write_json(bench / "bench.json", {"spec": TINY, "status": "complete"})
    records.write_csv(bench / "bench.csv", [{"device": "cpu", "backend": "tensorflow", "filters": 2}])
    for path in (sweep / "sweep.json", sweep / "summary.csv", bench / "bench.json", bench / "bench.csv", sweep / "lr-0.1" / "spec.json"):
        plant(path, what)

    listed = cli("ls", str(root), "--json", timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert sorted(r["kind"] for r in json.loads(listed.stdout)) == ["bench", "sweep"]
    plotted = cli("plot", str(root), timeout=60)
    assert plotted.returncode in (0, 2) and "Traceback" not in plotted.stderr and "warning: skipped" in plotted.stderr
    compared = cli("compare", str(sweep), "--out", str(tmp_path), timeout=60)
    assert compared.returncode in (0, 2) and "Traceback" not in compared.stderr


def tiny_study(folder: Path) -> Path:
    """A `cnnbench sweep` study of two learning rates, one seed, as its folder holds it after the runs."""
    runs = [{"point": f"learning_rate-{lr}", "training.learning_rate": lr, "seed": 0, "status": "ok", "best_val_error": 0.5,
             "run_dir": f"learning_rate-{lr}/seed-0"} for lr in (0.1, 0.2)]  # fmt: skip
    for run in runs:
        interrupted_run(folder / run["run_dir"], status="ok", epochs_run=2)
    axes = [{"path": "training.learning_rate", "expanded": ["training.learning_rate"], "values": [0.1, 0.2], "range": None}]
    planned = [{"point_label": r["point"], "seed": 0, "run_dir": r["run_dir"]} for r in runs]
    records.write_json(folder / "sweep.json", {"kind": "study", "name": "tiny", "axes": axes, "seeds": [0], "spec": TINY, "runs": planned})
    records.write_csv(folder / "points.csv", [{"point": r["point"], "training.learning_rate": r["training.learning_rate"], "n": 1,
                                               "n_ok": 1, "best_val_error_mean": 0.5} for r in runs])  # fmt: skip
    records.write_csv(folder / "runs.csv", runs)
    return folder


STUDY_TABLE_CASES = [("points.csv", "fifo"), ("points.csv", "3-GiB"), ("points.csv", "not-utf8"),
                     ("runs.csv", "dev-zero"), ("runs.csv", "no-columns"), ("runs.csv", "run-dir-outside")]  # fmt: skip


@pytest.mark.parametrize(("name", "what"), STUDY_TABLE_CASES)
def test_a_studys_tables_planted_or_edited_are_skipped_with_a_warning_never_read_whole(tmp_path, name, what):
    import warnings

    from cnnbench.plot import plot_results

    study = tiny_study(tmp_path / "results" / "tiny-sweep-learning_rate-abcdef")
    path = study / name
    if what in ("fifo", "dev-zero"):
        plant(path, what)  # in this process: a reader that opened it would hang the test, not pass it
    elif what == "3-GiB":  # sparse: reading it whole would take 3 GB of memory
        with open(path, "wb") as f:
            f.truncate(3 * 2**30)
    elif what == "not-utf8":
        path.write_bytes(b"point,\xff\xfe\n\xa7,1\n")
    elif what == "no-columns":
        path.write_text("a,b\n1,2\n")
    else:  # a run folder outside the study: its history is not read, its curve not drawn
        interrupted_run(tmp_path / "private-run", status="ok", epochs_run=2)
        path.write_text(path.read_text().replace("learning_rate-0.1/seed-0", "../../private-run"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = plot_results(study, formats=["png"])
    said = [str(w.message) for w in caught]
    assert any(p.name == "val_error_curves.png" for p in written)  # the sweep's own figures are still drawn
    if what == "run-dir-outside":
        assert "runs.csv: run_dir '../../private-run' is not a folder inside the study; its curve is not drawn" in " ".join(said)
        assert any(p.name == "study_curves.png" for p in written)
    elif what != "no-columns":
        assert any(m.startswith(f"skipped {path}: ") for m in said), said


def test_the_bounded_reader_refuses_without_opening_what_is_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "log").write_bytes(b"x" * 100 + b"\nlast line\n")
    with pytest.raises(UnsafeFileError, match="is a named pipe"):
        read_bytes(tmp_path / "fifo")
    with pytest.raises(UnsafeFileError, match="is a symbolic link"):
        read_bytes(tmp_path / "zero")
    with pytest.raises(UnsafeFileError, match="larger than any file"):
        read_bytes(tmp_path / "log", limit=50)
    assert read_bytes(tmp_path / "log", limit=10, tail=True) == b"last line\n"  # a log's end


# --- 3. text from disk reaches the terminal escaped ------------------------------------------------


def test_safe_shows_control_characters_instead_of_sending_them():
    assert safe("lr\x1b]0;owned\x07 \x1b[2J\r\x9b\u202e ok é\tx\ny") == "lr\\x1b]0;owned\\x07 \\x1b[2J\\r\\x9b\\u202e ok é\tx\ny"


def test_names_and_fields_from_disk_reach_the_terminal_escaped(tmp_path):
    root = tmp_path / "results[/x]"  # `[/x]` in a path: a closing tag rich cannot match
    hostile = "tiny[bold]\x1b]0;owned\x07\x1b[2J"
    run = interrupted_run(root / hostile, data={"name": "synthetic[/x]\x1b[31m", "train_samples": 128},
                          error="boom [/red] \x1b]2;title\x07")  # fmt: skip
    for args in (["ls", str(root)], ["ls", str(root), "--csv"], ["plot", str(root)], ["compare", str(run), "--out", str(tmp_path)]):
        result = cli(*args, timeout=90)
        assert result.returncode == 0, result.stderr
        both = result.stdout + result.stderr
        assert "\x1b" not in both and "\x07" not in both and "Traceback" not in both
        assert "Glyph" not in both  # nor drawn into a figure: matplotlib has no glyph for a control character
        assert "tiny[bold]\\x1b]0;owned\\x07" in both  # shown as it is named, markup and all, made harmless
    listed = cli("ls", str(root), timeout=60).stdout
    assert "synthetic[/x]\\x1b[31m" in listed


def test_markup_and_escapes_in_the_results_path_do_not_crash_train_after_its_run(tmp_path, spec_file):
    out = "res[/x]\x1b]0;owned\x07"  # relative: the summary table shows the whole run folder
    result = cli("train", str(spec_file), "--epochs", "1", "--out", out, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "\x1b" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert "res[/x]\\x1b]0;owned\\x07" in result.stderr  # "training ... -> <run folder>"
    assert "res[/x]\\x1b]0;owned\\x07/tiny-" in result.stdout  # the summary table's run folder row
    (run,) = (tmp_path / out).iterdir()
    assert json.loads((run / "run.json").read_text())["status"] == "ok"


# --- 4. every field read from a record is validated where it is read -------------------------------

UNTRUSTED = {
    "resumed a number": ("run.json", {"status": "interrupted", "resumed": 5}, "resumed is 5, expected a list or null"),
    "resumed entry": ("run.json", {"status": "interrupted", "resumed": [{"from_epoch": "1"}]}, "resumed[0] is {'from_epoch': '1'}"),
    "chance_error text": ("run.json", {"status": "ok", "chance_error": "0.9"}, "chance_error is '0.9', expected a number or null"),
    "run folder outside": ("sweep.json", {"runs": [{"run_dir": "../../home"}]}, "runs[0].run_dir is '../../home', expected a folder name"),
    "run folder absolute": ("sweep.json", {"runs": [{"run_dir": "/etc"}]}, "runs[0].run_dir is '/etc', expected a folder name inside"),
    "run folder dot-dot": ("sweep.json", {"runs": [{"run_dir": ".."}]}, "runs[0].run_dir is '..', expected a folder name inside"),
    "run not an object": ("sweep.json", {"runs": ["lr-0.1"]}, "runs[0] is 'lr-0.1', expected an object"),
    "model a string": ("bench.json", {"models": {"8": "x"}}, "models['8'] is 'x', expected an object"),
    "model params text": ("bench.json", {"models": {"8": {"params": "52", "flops_per_sample": 1}}}, "models['8'].params is '52'"),
    "model flops negative": ("bench.json", {"models": {"8": {"params": 1, "flops_per_sample": -1}}}, "models['8'].flops_per_sample is -1"),
}


@pytest.mark.parametrize("case", list(UNTRUSTED))
def test_every_field_read_from_a_record_is_validated(tmp_path, case):
    name, record, problem = UNTRUSTED[case]
    (tmp_path / name).write_text(json.dumps(record))
    found = inspect_record(tmp_path / name)
    assert found[0] is None and found[1].startswith(problem), found


def test_a_sweep_json_naming_folders_outside_the_sweep_is_not_followed(tmp_path):
    root = tmp_path / "results"
    sweep = root / "tiny-lr-sweep-0.1..0.2-n2-e2-s0-abcdef"
    interrupted_run(sweep / "lr-0.1", status="ok", epochs_run=2)
    interrupted_run(tmp_path / "private-run", status="ok", epochs_run=2)  # someone else's, outside the results folder
    records.write_json(sweep / "sweep.json", {"runs": [{"learning_rate": 0.1, "run_dir": "lr-0.1"},
                                                       {"learning_rate": 0.2, "run_dir": "../../private-run"}]})  # fmt: skip
    (row,) = list_results(root)
    assert row["runs"] == 1 and row["status"] == "ok"


def test_resume_refuses_an_untrusted_record_in_one_line_and_leaves_it_as_it_was(tmp_path):
    run = interrupted_run(tmp_path / "results" / "tiny-20261120-100000", resumed=5)
    before = (run / "run.json").read_bytes()
    result = cli("train", "--resume", str(run), timeout=60)
    one_line_error(result, f"--resume {run}: its run.json cannot be trusted (resumed is 5, expected a list or null)")
    assert (run / "run.json").read_bytes() == before


@pytest.mark.parametrize("text", ["epoch,loss\n1,fast\n", "loss\n2.0\n", "epoch,loss\n1.5x,2.0\n"], ids=["text", "no-epoch", "bad-epoch"])
def test_a_history_cell_that_is_not_a_number_is_refused_on_resume(tmp_path, text):
    from cnnbench.train import _history_rows

    (tmp_path / "history.csv").write_text(text)
    with pytest.raises(UsageError, match=r"history.csv: line 2: not a history row cnnbench wrote"):
        _history_rows(tmp_path / "history.csv", 2)
