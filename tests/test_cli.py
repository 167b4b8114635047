"""The command line, in-process (CliRunner) and through a real subprocess as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

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
    for command in ("build", "train", "schema", "list", "sweep-lr", "bench", "plot"):
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
    ci_lines = [line for line in (root / ".ci" / "run").read_text().splitlines() if "pytest" in line]
    assert ci_lines and ci_lines[0] in (root / "README.md").read_text()


def test_unknown_dataset_names_the_option():
    result = runner.invoke(app, ["train", "convolutional_nn", "--data", "mnist5k"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: option: --data: must be one of mnist, mnist-5k, synthetic, got 'mnist5k' (did you mean 'mnist-5k'?)"
    )


def test_absent_gpu_is_one_line_and_writes_nothing(tmp_path):
    result = run_cli("train", "convolutional_nn", "--device", "gpu", "--data", "mnist-5k", "--epochs", "1", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --device gpu: no GPU is visible to Keras' tensorflow backend"
    assert not (tmp_path / "r").exists()
