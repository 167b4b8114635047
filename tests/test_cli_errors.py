"""Never a traceback, and fast answers: the real `cnnbench` command in a subprocess, its exact line and exit code.

Fast errors are checked for what makes them fast (TensorFlow and Keras never imported, seen through
`python -X importtime`), not for a wall time that depends on the machine's load.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cnnbench.precision import metric_value
from cnnbench.results import write_json

TINY = ["--epochs", "1", "--data", "mnist-5k", "--train-samples", "256", "--val-samples", "64", "--test-samples", "64"]
TINY_NET = {"input_shape": [28, 28, 1], "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]}


def cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 240, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnbench", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})}, **kwargs)  # fmt: skip


def fast_cli(*args: str, **kwargs) -> tuple[subprocess.CompletedProcess, list[str], set[str]]:
    """(result, stderr lines, top-level packages imported), through `python -X importtime`."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "cnnbench", *args], capture_output=True, text=True, timeout=120,
                            **kwargs)  # fmt: skip
    lines = result.stderr.splitlines()
    imported = {line.split("|")[-1].strip().split(".")[0] for line in lines if line.startswith("import time:")}
    return result, [line for line in lines if not line.startswith("import time:")], imported


# --- 6. mistakes that need no data are answered before TensorFlow is imported -----------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["train", "--engine", "fused", "--backend", "tensorflow", "--out", "{tmp}/out"],
         "error: engine fused needs the JAX backend, but this run uses tensorflow; use --backend jax or --engine fit"),
        (["build", json.dumps({**TINY_NET, "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10**9}]})],
         "error: <inline spec>: layers[1]: the model would have at least 2,000,000,000 parameters, above the limit of 100,000,000"),
        (["train", json.dumps({**TINY_NET, "layers": [{"type": "Conv2D", "filters": 10**6, "kernel_size": 11}, {"type": "Flatten"}]}),
          "--out", "{tmp}/out"],
         "error: <inline spec>: layers[0]: the model would have at least 122,000,000 parameters, above the limit of 100,000,000"),
    ],
)  # fmt: skip
def test_errors_that_need_no_data_come_before_tensorflow_is_imported(args, line, tmp_path):
    result, stderr, imported = fast_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert (result.returncode, stderr) == (2, [line])
    assert not imported & {"tensorflow", "keras", "jax", "torch"}, imported & {"tensorflow", "keras", "jax", "torch"}
    assert not (tmp_path / "out").exists()  # nothing written for bad input


@pytest.mark.parametrize(("what", "said"), [("missing", "no such file"), ("fifo", "is a named pipe (FIFO), not a .npz file"),
                                          ("folder", "is a folder, not a .npz file")])  # fmt: skip
def test_a_data_file_missing_or_not_a_file_is_one_line_before_tensorflow_and_never_opened(what, said, tmp_path):
    data = tmp_path / "mnist.npz"
    if what == "fifo":
        os.mkfifo(data)  # opened, it would hang the command: it is refused without being opened
    elif what == "folder":
        data.mkdir()
    result, stderr, imported = fast_cli("train", "--data", str(data), "--out", str(tmp_path / "out"))
    assert (result.returncode, stderr) == (2, [f"error: {data}: {said}"])
    assert not imported & {"tensorflow", "keras", "jax", "torch"}
    assert not (tmp_path / "out").exists()


def test_an_unknown_keras_backend_is_one_line_for_build():
    result, stderr, imported = fast_cli("build", "convolutional_nn", env={**os.environ, "KERAS_BACKEND": "garbage"})
    assert (result.returncode, stderr) == (2, ["error: unknown Keras backend 'garbage' (from KERAS_BACKEND); use tensorflow, jax, torch"])
    assert "keras" not in imported


# --- specs given inline, on stdin, and names that resolve ----------------------------------------------


def test_a_spec_inline_or_on_stdin_is_built(tmp_path):
    inline = cli("build", json.dumps(TINY_NET), "--json")
    assert inline.returncode == 0, inline.stderr
    assert json.loads(inline.stdout)["total_params"] == 7850 and json.loads(inline.stdout)["spec"]["name"] == "inline"
    piped = cli("build", "-", "--json", input="input_shape: [28, 28, 1]\nlayers: [{type: Flatten}, {type: Dense, units: 10}]\n")
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["spec"]["name"] == "stdin"


def test_a_long_inline_spec_is_never_taken_for_a_file_name():
    bad = '{"layers": [' + " " * 400 + "]}"
    result = cli("build", bad)
    assert (result.returncode, result.stderr) == (2, "error: <inline spec>: input_shape: is required\n")
    long_name = cli("build", "x" * 400)
    assert long_name.returncode == 2 and "Traceback" not in long_name.stderr
    assert long_name.stderr.endswith(": no such file, and not a built-in spec; built-in: convolutional_nn\n")


def test_a_built_in_name_is_the_built_in_even_beside_a_folder_of_that_name(tmp_path):
    (tmp_path / "convolutional_nn").mkdir()
    builtin = cli("build", "convolutional_nn", "--json", cwd=tmp_path)
    assert builtin.returncode == 0 and json.loads(builtin.stdout)["total_params"] == 104_250
    path = cli("build", "./convolutional_nn", cwd=tmp_path)
    assert (path.returncode, path.stderr) == (2, "error: ./convolutional_nn: is a folder, not a spec file\n")


def test_a_spec_name_cannot_hide_its_runs_from_ls_and_plot(tmp_path):
    named = cli("build", json.dumps({**TINY_NET, "name": ".hidden"}))
    assert named.returncode == 2
    assert named.stderr == ("error: <inline spec>: name: must not start with '.', got '.hidden': its run folders would be hidden, "
                            "and ls and plot skip them\n")  # fmt: skip
    (tmp_path / ".hidden.json").write_text(json.dumps(TINY_NET))
    from_file = cli("build", ".hidden.json", "--json", cwd=tmp_path)
    assert from_file.returncode == 0 and json.loads(from_file.stdout)["spec"]["name"] == "hidden"


# --- options: bounds, aliases, help, completion ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (["sweep-lr", "--values", "0.1", "--dry-run", "--parallel", "99999999999999999999"],
         "'--parallel': Input should be less than or equal to 256"),
        (["bench", "--repeats", "999999999999"], "'--repeats': Input should be less than or equal to 1000"),
        (["bench", "--timeout", "1e300"], "'--timeout': Input should be less than or equal to 2592000"),
        (["bench", "--memory-limit-mb", "99999999999999999999"], "'--memory-limit-mb': Input should be less than or equal to 16777216"),
        (["bench", "--ray", "--cpus-per-run", "1e300"], "'--cpus-per-run': Input should be less than or equal to 1024"),
        (["sweep", "--set", "training.learning_rate=1e-4..1", "--method", "random", "--n", "99999999999"],
         "error: --n 99,999,999,999: at most 10,000 sampled points are allowed"),
    ],
)  # fmt: skip
def test_options_that_size_work_have_bounds(args, what, tmp_path):
    result = cli(*args, "--out", str(tmp_path / "out"), env={"COLUMNS": "200"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert what in result.stderr
    assert not (tmp_path / "out").exists()


def test_lr_is_learning_rate():
    result = cli("train", "--lr", "-1")
    assert (result.returncode, result.stderr) == (2, "error: option: --learning-rate: must be a positive number, got -1.0\n")


def test_ray_help_names_the_extra():
    result = cli("sweep-lr", "--help", env={"COLUMNS": "250"})
    assert "pip install 'cnnbench[ray]'" in result.stdout


def complete(words: str) -> list[str]:
    """What the shell gets for the last word of `words` (bash's completion protocol, as `--install-completion` sets up)."""
    code = "import sys\nsys.argv[0] = 'cnnbench'\nfrom cnnbench.cli import main\nmain()"
    env = {**os.environ, "_CNNBENCH_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    return result.stdout.split()


def test_completion_offers_values_and_spec_names():
    assert complete("cnnbench train --device ") == ["cpu", "gpu", "auto"]
    assert complete("cnnbench train --backend j") == ["jax"]
    assert complete("cnnbench sweep-lr --engine f") == ["fit", "fused"]
    assert complete("cnnbench bench --data mnist") == ["mnist", "mnist-5k"]
    assert complete("cnnbench bench --backends tensorflow,t") == ["tensorflow,tensorflow", "tensorflow,torch"]
    assert complete("cnnbench build conv") == ["convolutional_nn"]


# --- streams: full, closed ------------------------------------------------------------------------------


def test_stdout_on_a_full_device_is_one_line_not_a_traceback():
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "cnnbench", "list"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (74, "error: stdout: cannot write the output: No space left on device\n")


def test_a_closed_stderr_does_not_stop_a_command():
    result = subprocess.run([sys.executable, "-m", "cnnbench", "build", "convolutional_nn"], stdout=subprocess.PIPE, stderr=None,
                            text=True, timeout=120, pass_fds=(), preexec_fn=lambda: os.close(2))  # fmt: skip
    assert result.returncode == 0
    assert "total parameters: 104,250 (104,250 trainable)" in result.stdout


# --- data -------------------------------------------------------------------------------------------------


def _npy(array: np.ndarray, shape: tuple) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + array.tobytes()


def test_a_damaged_npz_header_is_a_data_error_not_an_oom_run(tmp_path):
    path = tmp_path / "damaged.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", _npy(np.zeros((100, 28, 28), np.uint8), (10**11, 28, 28)))
        for key, shape in (("y_train", (100,)), ("x_test", (100, 28, 28)), ("y_test", (100,))):
            archive.writestr(f"{key}.npy", _npy(np.zeros(shape, np.uint8), shape))
    result = cli("train", "--data", str(path), "--epochs", "1", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (f"error: {path}: x_train is damaged: its header declares shape (100000000000, 28, 28) "
                                              "(78,400,000,000,000 bytes) but it holds 78,400 bytes")  # fmt: skip
    assert not (tmp_path / "out").exists()


# --- Ray addresses: checked before anything is made -----------------------------------------------------


def _serve(handler) -> tuple[int, socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    threading.Thread(target=handler, args=(server,), daemon=True).start()
    return server.getsockname()[1], server


def _http(server: socket.socket) -> None:
    while True:
        connection, _ = server.accept()
        connection.recv(1024)
        connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        connection.close()


def _silent(server: socket.socket) -> None:
    connection, _ = server.accept()  # held open, never answering: a port where ray.init would wait for minutes
    threading.Event().wait(120)
    connection.close()


def test_bad_ray_addresses_are_one_line_and_leave_no_folder(tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()
    http_port, http = _serve(_http)
    silent_port, silent = _serve(_silent)
    host = "a" * 70 + ".example:6379"
    cases = {
        f"127.0.0.1:{refused_port}": f"error: cannot reach a Ray cluster at 127.0.0.1:{refused_port}: Connection refused",
        f"127.0.0.1:{http_port}": f"error: 127.0.0.1:{http_port} is not a Ray cluster: the server there does not speak gRPC "
                                  "(is the port Ray's GCS port, 6379 by default?)",
        f"127.0.0.1:{silent_port}": f"error: 127.0.0.1:{silent_port} is not a Ray cluster: nothing answered there within 5 s",
    }  # fmt: skip
    for address, line in cases.items():
        result = cli("bench", "--address", address, "--filters", "8", "--out", str(tmp_path / "out"), timeout=60)
        assert (result.returncode, result.stderr) == (2, line + "\n")
    result = cli("sweep-lr", "--values", "0.1", "--address", host, "--out", str(tmp_path / "out"), timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: cannot reach a Ray cluster at {host}: the host name is not valid")
    assert not (tmp_path / "out").exists()
    http.close()
    silent.close()


# --- machine-readable numbers ---------------------------------------------------------------------------


def test_numbers_are_written_at_the_precision_they_have(tmp_path, tiny_spec):
    metric = float(np.float32(0.926))
    assert metric == 0.9259999990463257 and metric_value(metric) == 0.926
    assert metric_value(8.412711144999776) == 8.412711144999776  # a float64 timing keeps its digits
    write_json(tmp_path / "nan.json", {"loss": float("nan")})
    assert (tmp_path / "nan.json").read_text() == '{\n  "loss": null\n}\n'
    from cnnbench.train import train_run

    record = train_run(tiny_spec.with_overrides(epochs=1), tmp_path / "run")
    assert json.loads((tmp_path / "run" / "run.json").read_text()) == json.loads(json.dumps(record))  # memory and disk agree
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    header, row = history[0].split(","), dict(zip(history[0].split(","), history[1].split(","), strict=True))
    for column in ("loss", "accuracy", "val_loss", "val_accuracy", "val_error"):
        assert len(row[column].replace("0.", "").lstrip("0")) <= 9, (column, row[column])  # no float32 noise: at most 9 digits
    assert float(row["val_error"]) == metric_value(1 - float(row["val_accuracy"]))
    assert header[0] == "epoch" and len(repr(record["test_error"]).replace("0.", "").lstrip("0")) <= 9


def test_ls_json_is_json_even_with_nan_in_a_record(tmp_path):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "run.json").write_text('{"status": "ok", "best_val_error": NaN, "started_at": "2026-01-01T00:00:00+00:00"}')
    result = cli("ls", str(tmp_path), "--json")
    assert result.returncode == 0 and "NaN" not in result.stdout
    assert json.loads(result.stdout)[0]["best_val_error"] is None


# --- the last line of defence ---------------------------------------------------------------------------


def test_an_unexpected_error_is_one_line_naming_its_log_and_keeps_the_run(tmp_path):
    """A fault injected after training (the result table fails): the run folder is complete, the user gets one line."""
    code = ("import sys\nimport cnnbench.cli as cli\nimport cnnbench.cli.train as command\n"
            "def broken(*args, **kwargs):\n    raise RuntimeError('table broke')\n"
            "command._table = broken\nsys.argv = ['cnnbench', *sys.argv[1:]]\ncli.main()\n")  # fmt: skip
    cache = tmp_path / "cache"
    result = subprocess.run([sys.executable, "-c", code, "train", *TINY, "--out", str(tmp_path / "out")], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "CNNBENCH_CACHE": str(cache)})  # fmt: skip
    assert result.returncode == 70, result.stderr
    last = result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr
    (log,) = (cache / "crashes").iterdir()
    assert last == f"error: internal error (RuntimeError: table broke); the traceback is in {log}; please report it"
    assert "Traceback (most recent call last)" in log.read_text() and "in broken\nRuntimeError: table broke" in log.read_text()
    (run_dir,) = (tmp_path / "out").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "ok"


def test_a_disk_that_fills_while_a_failure_is_recorded_is_one_line(small_disk, tmp_path):
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "fill").write_bytes(b"\0" * max(0, free - 60_000))  # 60 kB left: records fit, a model does not
    result = cli("sweep-lr", "--values", "0.01,0.1", *TINY, "--out", str(small_disk), timeout=600)
    assert result.returncode in (1, 2), result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: ") or last.endswith("failed (tracebacks in error.txt of their run folders)"), last


# --- committed reference results are results ---------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_ls_reads_the_committed_reference_results():
    """docs/study and docs/bench-cpu keep their tables (summary.csv, bench.csv), not their run folders."""
    result = cli("ls", str(DOCS), "--json")
    assert result.returncode == 0, result.stderr
    rows = {Path(r["path"]).relative_to(DOCS).as_posix(): r for r in json.loads(result.stdout)}
    sheet = rows["study/sheet"]
    assert (sheet["status"], sheet["runs"], round(sheet["best_val_error"], 4)) == ("ok", 4, 0.034)
    assert rows["bench-cpu"]["runs"] == 36 and rows["bench-cpu"]["dataset"] == "mnist-5k"


def test_plot_draws_a_committed_sweep_from_its_tables():
    from cnnbench.plot.curves import load_sweep

    runs, missing = load_sweep(DOCS / "study" / "sheet")
    assert [r.lr for r in runs] == [0.0001, 0.001, 0.01, 0.1] and missing == []
    assert [len(r.history) for r in runs] == [20, 20, 20, 20]
    assert runs[-1].record["status"] == "ok" and round(float(runs[-1].val_error.min()), 3) == 0.034


# --- Ray: a driver killed with -9 leaves no process behind ------------------------------------------------


def test_a_killed_ray_driver_leaves_no_ray_process_behind(tmp_path):
    pytest.importorskip("ray")
    import signal

    import psutil
    from processes import finish, start_cli, survivors, training, wait_for

    process = start_cli("sweep-lr", "--values", "0.01,0.1", "--ray", *TINY[:1], "3", *TINY[2:], "--out", str(tmp_path))
    try:
        wait_for(training(tmp_path, "*/lr-*/history.csv"), process, timeout=300)
        ray_processes = [p.pid for p in psutil.Process(process.pid).children(recursive=True) if "ray" in " ".join(p.cmdline())]
        assert any("DashboardAgent" in " ".join(psutil.Process(p).cmdline()) for p in ray_processes if psutil.pid_exists(p))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert survivors(ray_processes, within_s=10) == []  # Ray's own agents lived on for over 30 s
    finally:
        finish(process)


# --- the library names its parameters; the command line shows its flags ------------------------------

# Literals of the library that may hold `--name`: none is a cnnbench option a message names.
FLAG_TEXT_ALLOWED = {
    "cnnbench/device.py": "nvidia-smi's and XLA's own flags (--query-gpu, --format=csv, --xla_cpu_...), passed to those programs",
    "cnnbench/report/assets.py": "CSS custom properties (--ink, --muted, ...)",
    "cnnbench/report/setup.py": "the report prints the command line that reproduces a sweep or bench: a command by design",
    "cnnbench/sinks/": "a sink reports the option its caller passes (`option=`); the defaults are the CLI's, pending issue 21's sinks work",
    "cnnbench/export.py": "passes `export`'s --to/--uri to the sinks as that `option=` (see cnnbench/sinks/)",
}
# `quoted` in library text but not parameters: a spec layer argument, a package, spec fields named in their help
NOT_PARAMETERS = {"filters", "mlxtend", "factor", "steps_per_execution"}


def _library_literals():
    """(path, line, text) of every string literal in cnnbench/ but the CLI, docstrings left out."""
    import ast

    root = Path(__file__).resolve().parent.parent
    for path in sorted((root / "cnnbench").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "cnnbench/cli.py" or rel.startswith("cnnbench/cli/") or rel == "cnnbench/cli_flags.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}  # fmt: skip
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                yield rel, node.lineno, node.value


def test_library_messages_name_parameters_not_command_line_flags():
    """A Python caller never typed `--parallel`: library messages say `parallel`, and only the CLI writes flags."""
    import re

    flag = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")
    found = [f"{rel}:{line}: {text[:80]!r}" for rel, line, text in _library_literals()
             if flag.search(text) and not any(rel.startswith(allowed) for allowed in FLAG_TEXT_ALLOWED)]  # fmt: skip
    assert found == []


def test_every_parameter_a_library_message_names_is_an_option_of_the_command():
    """Each `name` in a library message is one the CLI turns into a flag it has (a typo would reach the user as is)."""
    import re

    from cnnbench.cli.output import _app_flags
    from cnnbench.cli_flags import flag

    named = {(m[1], rel, line) for rel, line, text in _library_literals() for m in re.finditer(r"`([A-Za-z_][A-Za-z0-9_.]*)`", text)}
    unknown = sorted(f"{rel}:{line}: `{name}` → {flag(name)}" for name, rel, line in named
                     if name not in NOT_PARAMETERS and flag(name) not in _app_flags())  # fmt: skip
    assert unknown == [] and len({name for name, _, _ in named}) > 20


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["train", "--resume", "{tmp}/nothing-here"], "error: --resume {tmp}/nothing-here: not a folder"),
        (["train", "convolutional_nn", "--seed", "4294967296", "--out", "{tmp}/out"],
         "error: option: --seed: must be an integer from 0 to 4,294,967,295, got 4294967296"),
        (["sweep", "convolutional_nn", "--set", "training.seed=1,2", "--dry-run", "--out", "{tmp}/out"],
         "error: convolutional_nn: --set training.seed: the seed is not an axis; repeat every point over seeds with --seeds N"),
        (["sweep", "convolutional_nn", "--set", "training.learning_rate=1e-3..1e-1", "--method", "sobol", "--n", "6", "--dry-run",
          "--out", "{tmp}/out"],
         "warning: --method sobol: --n 6 is not a power of two; Sobol points are balanced only for 2^m points"),
    ],
)  # fmt: skip
def test_the_command_line_shows_its_flags_where_the_library_names_parameters(args, line, tmp_path):
    result = cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert line.replace("{tmp}", str(tmp_path)) in result.stderr.splitlines()
    assert "`" not in result.stderr
