"""Hostile spec files, generated here: each is refused in one line with exit code 2, fast and in flat memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cnnbench.cli import app
from cnnbench.errors import SpecError, brief
from cnnbench.spec import load_spec
from cnnbench.spec_text import parse_text

COURSE_YAML = "input_shape: [28, 28, 1]\nlayers:\n  - {type: Flatten}\n  - {type: Dense, units: 10}\n"

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def refused(path: Path, *args: str, budget_s: float = 5.0) -> str:
    """`cnnbench build PATH`: exit 2, one line, no traceback, within `budget_s` and 50 MB; returns the message."""
    import cnnbench.model  # noqa: F401 - imported before measuring: importing Keras is not the spec's cost
    import cnnbench.train  # noqa: F401
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = CliRunner().invoke(app, ["build", str(path), *args])
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output[:2000]
    assert elapsed < budget_s, f"took {elapsed:.1f} s"
    assert peak < 50e6, f"peak {peak / 1e6:.0f} MB"
    return lines[0].removeprefix(f"error: {path}: ")


def test_billion_laughs_fails_fast_in_flat_memory(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS.encode()) < 500
    assert refused(path) == "line 6: the document holds more than 100,000 values once YAML aliases are expanded"


def test_billion_laughs_inside_a_value(tmp_path):
    # The bomb as the value of a field whose error message would print it.
    bomb = "&a [x,x,x,x,x,x,x,x,x]"
    lines = [f"  - &l0 {bomb[3:]}"] + [f"  - &l{k} [{','.join([f'*l{k - 1}'] * 9)}]" for k in range(1, 9)]
    text = "input_shape: [28, 28, 1]\ndescription:\n" + "\n".join(lines) + "\nlayers: [{type: Flatten}, {type: Dense, units: 10}]\n"
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    assert refused(path).endswith("the document holds more than 100,000 values once YAML aliases are expanded")


def test_a_small_alias_is_fine(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "input_shape: [28, 28, 1]\nlayers:\n  - &conv {type: Conv2D, filters: 4, kernel_size: 3}\n  - {type: MaxPooling2D}\n"
        "  - {type: Flatten}\n  - {type: Dense, units: 10}\n"
    )
    assert load_spec(path).layers[0]["filters"] == 4


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_deep_nesting_is_one_line(tmp_path, suffix):
    path = tmp_path / f"deep{suffix}"
    path.write_text('{"input_shape": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert refused(path, budget_s=2.0) == "line 1: nested more than 32 levels deep"


def test_deep_yaml_block_nesting_is_one_line(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("layers:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 1000)))
    assert refused(path, budget_s=2.0) == "line 32: nested more than 32 levels deep"
    path.write_text("layers:\n" + "- " * 100_000 + "x\n")
    assert refused(path, budget_s=2.0) == "line 2: nested more than 32 levels deep"


def test_deep_nesting_inside_a_string_is_just_text(tmp_path):
    path = tmp_path / "text.json"
    path.write_text(json.dumps({"description": "[" * 10_000, "input_shape": [4], "layers": [{"type": "Dense", "units": 10}]}))
    assert load_spec(path).description == "[" * 10_000


def test_yaml_duplicate_keys_are_refused_like_json(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("input_shape: [4]\nlayers:\n  - {type: Dense, units: 10, units: 5000}\n")
    assert refused(path) == "line 3: duplicate key 'units'"
    path = tmp_path / "dup.json"
    path.write_text('{"input_shape": [4], "layers": [{"type": "Dense", "units": 10, "units": 5000}]}')
    assert refused(path) == "invalid JSON: duplicate key 'units'"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("  - {type: Dense, units: 012}", "line 3: '012' means a different thing in YAML 1.1"),
        ("  - {type: Dense, units: 1_0}", "line 3: '1_0' means a different thing in YAML 1.1"),
        ("  - {type: Dense, units: 10, use_bias: yes}",
         "layers[0].use_bias: must be true or false, got 'yes' (YAML 1.1 yes/no/on/off are plain strings in a spec)"),
    ],
)  # fmt: skip
def test_yaml_11_surprises_are_not_silent(tmp_path, line, expected):
    path = tmp_path / "net.yaml"
    path.write_text(f"input_shape: [4]\nlayers:\n{line}\n")
    assert refused(path).startswith(expected)


def test_sexagesimal_epochs(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(COURSE_YAML + "training: {epochs: 1:30}\n")
    assert refused(path).startswith("line 5: '1:30' means a different thing in YAML 1.1")


def test_yaml_reads_like_json(tmp_path):
    """YAML 1.2 core scalars: what JSON would read, and nothing else (no dates, no merge keys, no sets)."""
    path = tmp_path / "net.yaml"
    path.write_text(COURSE_YAML + "description: 2001-12-14\ntraining: {learning_rate: 1e-3, seed: 0x10}\n")
    spec = load_spec(path)
    assert spec.description == "2001-12-14" and spec.training.learning_rate == 0.001 and spec.training.seed == 16
    path.write_text(COURSE_YAML + "description: !!binary aGVsbG8=\n")
    assert refused(path).startswith("line 5: invalid YAML: could not determine a constructor for the tag")


def test_huge_integers_and_nan(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(COURSE_YAML.replace("units: 10", "units: " + "9" * 5000))
    assert refused(path) == "line 4: an integer of more than 30 digits"
    path = tmp_path / "big.json"
    path.write_text('{"input_shape": [4], "layers": [{"type": "Dense", "units": ' + "9" * 5000 + "}]}")
    assert refused(path) == "invalid JSON: an integer of more than 30 digits"
    path.write_text('{"input_shape": [4], "layers": [{"type": "Dense", "units": 10}], "training": {"learning_rate": NaN}}')
    assert refused(path) == "invalid JSON: NaN is not JSON (use a number)"


def test_a_huge_value_is_never_printed_whole(tmp_path):
    path = tmp_path / "long.json"
    path.write_text(json.dumps({"input_shape": [4], "layers": [{"type": "Dense", "units": "x" * 500_000}]}))
    message = refused(path)
    assert message.startswith("layers[0].units: must be a positive integer, got 'xxx") and len(message) < 150
    assert len(brief(list(range(10**6)))) == 60


def test_file_size_is_capped(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(COURSE_YAML + "#" * 1_000_000 + "\n")
    assert refused(path) == "the file is larger than 1,000,000 bytes; a spec is a short text file"


def test_non_utf8_and_folders(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"input_shape: [4]\n\xff\xfe")
    assert refused(path) == "is not UTF-8 text (byte 17)"
    (tmp_path / "dir.yaml").mkdir()
    assert refused(tmp_path / "dir.yaml") == "is a folder, not a spec file"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_fifo_and_devices_as_the_spec_do_not_hang(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)  # nothing ever writes to it: reading it would block forever
    for path in (fifo, Path("/dev/zero")):
        if not path.exists():
            continue
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "cnnbench", "build", str(path)], capture_output=True, text=True, timeout=60, env=env)
        assert time.perf_counter() - started < 30
        assert result.returncode == 2
        assert result.stderr.strip() == f"error: {path}: is not a regular file (a pipe, device or socket); a spec must be a file"


def test_seed_and_steps_per_execution_bounds(tmp_path, course_spec):
    path = tmp_path / "net.yaml"
    path.write_text(COURSE_YAML + f"training: {{seed: {2**32}}}\n")
    assert refused(path) == "training.seed: must be an integer from 0 to 4,294,967,295, got 4294967296"
    path.write_text(COURSE_YAML + "training: {steps_per_execution: 1000000000}\n")
    assert refused(path) == "training.steps_per_execution: must be an integer from 1 to 10,000, got 1000000000"
    with pytest.raises(SpecError, match=r"^option: `seed`: must be an integer from 0 to 4,294,967,295, got 4294967296$"):
        course_spec.with_overrides(seed=2**32)
    result = CliRunner().invoke(app, ["train", "convolutional_nn", "--seed", str(2**32), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: option: --seed: must be an integer from 0 to 4,294,967,295, got 4294967296"
    assert not (tmp_path / "r").exists()


_numbers = st.integers(-(10**12), 10**12) | st.floats(allow_nan=False, allow_infinity=False)
_scalars = st.none() | st.booleans() | _numbers | st.text(max_size=12)
_documents = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                          max_leaves=20)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(_documents)
def test_json_text_means_the_same_read_as_yaml(doc):
    """JSON is YAML 1.2: the same text read by cnnbench's YAML loader gives the same data as its JSON reader."""
    text = json.dumps({"doc": doc})
    assert parse_text(text, "x.yaml", ".yaml") == parse_text(text, "x.json", ".json")


def test_layer_count_is_bounded(tmp_path):
    path = tmp_path / "many.json"
    path.write_text(json.dumps({"input_shape": [4], "layers": [{"type": "ReLU"}] * 50_000 + [{"type": "Dense", "units": 10}]}))
    assert refused(path) == "layers: has 50,001 layers; at most 1,000 are allowed"
