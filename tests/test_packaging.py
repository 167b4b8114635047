"""The package as users install it: the wheel `pip install .` builds holds every module and data file."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BYTECODE = ("__pycache__", ".pyc", ".pyo")


def _source_files() -> set[str]:
    """Every file under cnnbench/ of the source tree, as a wheel names it (cnnbench/plot/fits.py)."""
    return {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "cnnbench").rglob("*")
        if p.is_file() and not any(part == "__pycache__" or part.endswith(BYTECODE) for part in p.parts)
    }


def test_the_wheel_holds_every_module_and_data_file_of_the_source_tree(tmp_path):
    # Built from a copy of what the build reads: it leaves build/ and *.egg-info behind, and the checkout
    # stays as it was (a stale build/ there could also hide a missing file).
    src = tmp_path / "src"
    shutil.copytree(ROOT / "cnnbench", src / "cnnbench", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("cnnbench-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (info,) = {n.split("/")[0] for n in names if n.endswith(".dist-info/entry_points.txt")}
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        top_level = archive.read(f"{info}/top_level.txt").decode().split()
    expected = _source_files()
    assert {"cnnbench/cli/__init__.py", "cnnbench/plot/__init__.py", "cnnbench/specs/convolutional_nn.json"} <= expected
    assert sorted(expected - names) == []  # nothing left out: a new subpackage or data file ships too
    assert sorted(n for n in names if n.endswith(BYTECODE) or "__pycache__" in n) == []
    assert top_level == ["cnnbench"]  # tests/, benchmarks/ and docs/ are not installed
    assert "cnnbench = cnnbench.cli:main" in entry_points
