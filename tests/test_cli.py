"""The command line, in-process (CliRunner) and through a real subprocess as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnbench.cli import app

runner = CliRunner()


def run_cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnbench", *args], capture_output=True, text=True, timeout=timeout)


def test_help_does_not_import_tensorflow_or_keras():
    code = (
        "import sys\nfrom cnnbench.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'tensorflow', 'keras', 'matplotlib', 'pandas', 'jax', 'torch'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("build", "train", "schema", "list", "sweep-lr", "bench", "plot", "ls"):
        assert command in result.stdout


def test_public_api_is_reexported_lazily():
    import cnnbench

    for name in cnnbench.__all__:
        assert getattr(cnnbench, name) is not None


def test_python_dash_m_and_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("cnnbench ")


def test_build_prints_the_layer_table_and_totals():
    result = runner.invoke(app, ["build", "convolutional_nn"])
    assert result.exit_code == 0, result.output
    assert "total parameters: 104,250 (104,250 trainable)" in result.stdout
    assert "forward FLOPs per sample: 1,332,224" in result.stdout
    assert "MaxPooling2D" in result.stdout and "(None, 7, 7, 16)" in result.stdout


def test_build_json_is_machine_readable():
    result = runner.invoke(app, ["build", "specs/convolutional_nn.yaml", "--json"])
    data = json.loads(result.stdout)
    assert data["total_params"] == 104_250 and data["flops_per_sample"] == 1_332_224
    assert [layer["params"] for layer in data["layers"]] == [160, 0, 2320, 0, 0, 100480, 1290]


def test_schema_is_json_schema():
    data = json.loads(runner.invoke(app, ["schema"]).stdout)
    assert data["$schema"].startswith("https://json-schema.org/") and "layers" in data["properties"]


def test_bad_option_value_is_one_line_exit_2():
    result = runner.invoke(app, ["train", "convolutional_nn", "--learning-rate", "-1"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: option: --learning-rate: must be a positive number, got -1.0"


def test_train_in_process_writes_a_run_folder(tmp_path):
    result = runner.invoke(app, ["train", "convolutional_nn", "--epochs", "2", "--data", "mnist-5k", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("convolutional_nn-")
    assert "epoch   2/2" in result.stderr and "status" in result.stdout and "steady epoch" in result.stdout
    assert json.loads((run_dir / "run.json").read_text())["status"] == "ok"


def test_train_through_a_real_subprocess(tmp_path):
    result = run_cli("train", "convolutional_nn", "--epochs", "1", "--data", "mnist-5k", "--seed", "3", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (run_dir,) = tmp_path.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert (record["status"], record["seed"], record["epochs_run"]) == ("ok", 3, 1)
    assert "Traceback" not in result.stderr and "I0000" not in result.stderr  # TensorFlow's start-up chatter is filtered


def test_a_jax_run_prints_no_tensorflow_chatter_either(tmp_path):
    """Keras seeds TensorFlow too when it is installed, importing it mid-run on the JAX backend: its C++ lines must not leak."""
    args = ("--epochs", "1", "--data", "mnist-5k", "--train-samples", "256", "--val-samples", "64", "--test-samples", "64")
    result = run_cli("train", "convolutional_nn", "--backend", "jax", *args, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("training convolutional_nn on mnist-5k (256 train / 64 val), cpu, jax, engine fit")
    assert lines[1].startswith("epoch   1/1") and len(lines) == 2, lines


def test_bad_spec_through_a_real_subprocess(tmp_path):
    path = tmp_path / "my_net.yaml"
    path.write_text("input_shape: [28, 28, 1]\nlayers:\n  - {type: Conv2d, filters: 16, kernel_size: 3}\n")
    result = run_cli("train", str(path), "--out", str(tmp_path / "results"))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: {path}: layers[0].type: unknown layer type 'Conv2d' (did you mean 'Conv2D'?); "
        "the allowed types are listed in docs/spec.md"
    )
    assert not (tmp_path / "results").exists()


def test_ci_runs_the_readmes_test_command():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    ci = (root / ".ci" / "run").read_text()
    readme = (root / "README.md").read_text()
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev,ray]' && .venv/bin/python -m pytest" in readme
    assert "DEV_EXTRAS=dev,ray" in ci and 'python3 -m venv .venv && .venv/bin/pip install -q -e ".[$DEV_EXTRAS]"' in ci
    runs = [line.strip() for line in ci.splitlines() if "pytest" in line and not line.lstrip().startswith("#")]
    assert runs == [".venv/bin/python -m pytest"]


def test_unknown_dataset_names_the_option():
    result = runner.invoke(app, ["train", "convolutional_nn", "--data", "mnist5k"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: option: --data: must be one of mnist, mnist-5k, synthetic, got 'mnist5k' (did you mean 'mnist-5k'?)"
    )


def test_absent_gpu_is_one_line_and_writes_nothing(tmp_path):
    result = run_cli("train", "convolutional_nn", "--device", "gpu", "--data", "mnist-5k", "--epochs", "1", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --device gpu: no GPU is visible to Keras' tensorflow backend (nvidia-smi lists none; for an NVIDIA GPU: "
        "pip install 'tensorflow[and-cuda]', or JAX with CUDA: pip install 'jax[cuda12]' and --backend jax)"
    )
    assert not (tmp_path / "r").exists()


# --- refusals before any work: --out, --threads, a missing backend ----------------------------

OUT_COMMANDS = {
    "train": ["train", "convolutional_nn"],
    "sweep-lr": ["sweep-lr", "--values", "0.1"],
    "bench": ["bench"],
    "plot": ["plot", "."],
}


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may write in: a read-only tmpfs as root (root ignores permissions), mode 555 otherwise."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.mark.parametrize("command", list(OUT_COMMANDS))
def test_an_out_folder_that_cannot_be_written_is_one_line_exit_2(command, tmp_path, read_only_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    cases = {
        str(a_file): f"error: --out {a_file}: not a folder (is a file)",
        str(a_file / "sub"): f"error: --out {a_file / 'sub'}: not a folder (lies inside {a_file}, which is a file)",
        str(read_only_dir / "results"): f"error: --out {read_only_dir / 'results'}: cannot write in {read_only_dir} (",
        "x" * 300: "error: --out xxxxxxxx",
    }
    for out, expected in cases.items():
        result = runner.invoke(app, [*OUT_COMMANDS[command], "--out", out])
        assert result.exit_code == 2, (out[:40], result.output)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith(expected), result.stderr
    assert "(300 characters)" in result.stderr and "a name in it is too long (300 bytes; the limit is 255)" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro", "taken"]  # nothing was created


@pytest.mark.parametrize("command", ["train", "sweep-lr", "bench"])
def test_absurd_thread_counts_are_refused(command):
    from cnnbench.device import cpu_cores

    result = runner.invoke(app, [*OUT_COMMANDS[command], "--threads", "5000"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --threads 5000: use 1 to {4 * cpu_cores()} (4 per core on this machine's {cpu_cores()} cores)"


@pytest.mark.parametrize("command", ["train", "sweep-lr"])
def test_a_missing_keras_backend_is_one_line_with_the_install_hint(command, tmp_path, monkeypatch):
    from cnnbench.device import backend_installed

    monkeypatch.setitem(sys.modules, "torch", None)  # torch absent for this process, as where it is not installed (CI installs it)
    assert not backend_installed("torch")
    result = runner.invoke(app, [*OUT_COMMANDS[command], "--backend", "torch", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: the Keras backend torch is not installed (pip install torch), or choose another with --backend"
    assert not (tmp_path / "r").exists()


# --- small things: help, completion, split sizes, pipes ---------------------------------------


def test_help_shows_flags_without_a_value_and_offers_completion():
    result = runner.invoke(app, ["build", "--help"])
    assert "--json" in result.stdout and "<bool>" not in result.stdout
    top = runner.invoke(app, ["--help"])
    assert "--install-completion" in top.stdout and "<bool>" not in top.stdout


def test_the_shared_options_are_on_every_command_and_a_commands_own_declaration_keeps_its_help(tmp_path):
    """train, sweep-lr, sweep and bench take the option groups of cnnbench/cli/options.py; sweep's --seed and bench's
    --train-samples keep their own help, and every grouped value reaches the run's spec (--dry-run shows its folder)."""
    from typer.main import get_command

    commands = get_command(app).commands
    options = {name: {flag: p for p in commands[name].params for flag in p.opts} for name in ("train", "sweep-lr", "sweep", "bench")}
    spec_flags = {"--epochs", "--batch-size", "--data", "--seed", "--train-samples", "--val-samples", "--test-samples", "--offline"}
    for name, flags in options.items():
        assert spec_flags | {"--tensorboard", "--mlflow"} <= flags.keys(), name
        assert name == "train" or {"--ray", "--address", "--cpus-per-run", "--gpus-per-run"} <= flags.keys(), name
    assert options["sweep"]["--seed"].help == "Override training.seed (seed k of a point is this + k)."
    assert options["bench"]["--train-samples"].help == "Override data.train_samples."
    assert options["sweep-lr"]["--seed"].help == options["train"]["--seed"].help == "Override training.seed."
    base = ["--values", "0.1", "convolutional_nn", "--data", "synthetic", "--train-samples", "64", "--val-samples", "32",
            "--test-samples", "32", "--dry-run", "--out", str(tmp_path)]  # fmt: skip
    folders = {runner.invoke(app, ["sweep-lr", *base, "--epochs", str(epochs)]).stdout.splitlines()[0] for epochs in (1, 2, 1)}
    assert len(folders) == 2  # the sweep folder is named after the spec the grouped options made


def test_a_small_npz_gets_a_hint_to_set_the_split_sizes(tmp_path):
    import numpy as np

    path = tmp_path / "mnist.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, (40, 28, 28), dtype="uint8"), y_train=np.arange(40) % 10,
             x_test=rng.integers(0, 255, (10, 28, 28), dtype="uint8"), y_test=np.arange(10))  # fmt: skip
    result = runner.invoke(app, ["train", "--data", str(path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert f"error: mnist ({path}): asked for 50000 + 10000 + 10000 samples, but it has 50; " in result.stderr
    assert "set smaller splits with --train-samples/--val-samples/--test-samples" in result.stderr


def test_split_size_options_reach_the_run(tmp_path):
    result = runner.invoke(app, ["train", "--epochs", "1", "--data", "mnist-5k", "--train-samples", "256", "--val-samples", "64",
                                 "--test-samples", "32", "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    data = json.loads((run_dir / "run.json").read_text())["data"]
    assert (data["train_samples"], data["val_samples"], data["test_samples"]) == (256, 64, 32)


def test_a_closed_pipe_never_fails_the_run(tmp_path):
    """`cnnbench train ... 2>&1 | head -1`: the reader goes away, the run finishes and is recorded by its own status."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnbench", "train", "--epochs", "3", "--data", "mnist-5k", "--train-samples", "512",
         "--val-samples", "128", "--test-samples", "128", "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    first = proc.stdout.readline()
    proc.stdout.close()  # like `head -1`
    code = proc.wait(timeout=120)
    assert first.startswith(b"training convolutional_nn")
    (run_dir,) = tmp_path.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert (record["status"], record["epochs_run"], record["error"]) == ("ok", 3, None)
    assert code in (0, 1)  # quiet: nothing more can be said to a closed pipe
    assert not (run_dir / "error.txt").exists()


# --- resume ------------------------------------------------------------------------------------


def test_train_resume_continues_an_interrupted_run_and_says_when_there_is_nothing_to_do(tiny_spec, tmp_path):
    from cnnbench.train import train_run

    run_dir = tmp_path / "run"

    def stop(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(tiny_spec.with_overrides(epochs=3), run_dir, on_epoch=stop)
    result = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "resuming after epoch 2/3: convolutional_nn on mnist-5k" in result.stderr  # epoch 2 was reported: it was saved
    assert "epoch   3/3" in result.stderr and "epoch   2/3" not in result.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert (record["status"], record["epochs_run"]) == ("ok", 3)
    again = runner.invoke(app, ["train", "--resume", str(run_dir)])
    assert again.exit_code == 0 and again.stdout.strip() == f"{run_dir}: already finished (ok, 3/3 epochs); nothing to resume"
    assert json.loads((run_dir / "run.json").read_text()) == record


def test_train_resume_refuses_spec_options_and_non_run_folders(tmp_path):
    with_spec = runner.invoke(app, ["train", "convolutional_nn", "--epochs", "5", "--resume", str(tmp_path)])
    assert with_spec.exit_code == 2
    assert with_spec.stderr.strip() == "error: --resume continues a run as it was specified; drop SPEC 'convolutional_nn', --epochs"
    empty = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert empty.exit_code == 2
    assert empty.stderr.strip() == f"error: --resume {tmp_path}: no run.json (not a run folder)"
    (tmp_path / "run.json").write_text('{"status": "runn')
    torn = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert torn.stderr.strip() == f"error: --resume {tmp_path}: its run.json cannot be trusted (not valid JSON (torn or edited))"


# --- sweeps: never-learned runs, the edge of the grid -----------------------------------------


def test_sweep_marks_runs_that_never_learned_and_a_best_rate_at_the_edge(tiny_spec, tmp_path):
    spec_path = tmp_path / "adam.json"
    spec_path.write_text(json.dumps(tiny_spec.with_overrides(optimizer="adam").to_dict()))
    result = runner.invoke(app, ["sweep-lr", str(spec_path), "--values", "0.001,0.05", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert re.search(r"^warning: lr 0\.05 never learned: best val error 0\.\d{3} ≈ chance 0\.900$", result.stderr, re.M), result.stderr
    assert "NEVER LEARNED (chance 0.900)" in result.stderr  # its run line
    assert "never learned" in result.stdout  # its row in the table
    assert "best: lr 0.001," in result.stdout
    assert "note: lr 0.001 is the smallest rate of the grid (0.001..0.05): the optimum may lie outside the grid" in result.stdout
    (summary,) = Path(tmp_path / "r").glob("*/summary.csv")
    assert "learned" in summary.read_text().splitlines()[0]


def test_a_sweep_onto_a_full_disk_records_each_run_failed_and_ends_cleanly(tiny_spec, tmp_path, small_disk):
    """600 kB free: each run's second checkpoint (2 x 420 kB while it is replaced) does not fit."""
    import csv

    spec_path = tmp_path / "net.json"
    spec_path.write_text(json.dumps(tiny_spec.to_dict()))
    stat = os.statvfs(small_disk)
    (small_disk / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 600_000))
    result = runner.invoke(app, ["sweep-lr", str(spec_path), "--values", "0.01,0.1", "--out", str(small_disk / "r")])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "2 run(s) failed" in result.stderr
    (summary,) = (small_disk / "r").glob("*/summary.csv")
    rows = list(csv.DictReader(open(summary)))
    assert [(r["status"], r["error"]) for r in rows] == [("failed", "no space left on device while writing checkpoint.npz")] * 2
    assert [p.name for p in small_disk.rglob(".*")] == []  # no temporary file left behind
