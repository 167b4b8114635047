"""`cnnbench compare`: runs and sweeps side by side (table, JSON, one figure), bad paths as one line."""

from __future__ import annotations

import json
from pathlib import Path

from test_plot import make_run, make_sweep
from typer.testing import CliRunner

from cnnbench.cli import app
from cnnbench.plot import compare

runner = CliRunner()


def _two_sweeps(tmp_path: Path) -> tuple[Path, Path]:
    """Two sweeps of the same grid that differ only in epochs and seed, as a student would compare them."""
    short, long = tmp_path / "net-lr-sweep-0.01..0.1-n2-e3", tmp_path / "net-lr-sweep-0.01..0.1-n2-e6"
    for folder, epochs, seed in ((short, 3, 1), (long, 6, 2)):
        for lr in (0.01, 0.1):
            make_run(folder / f"lr-{lr:g}", lr, epochs, extra={"epochs": epochs, "seed": seed, "test_error": 0.061})
        (folder / "sweep.json").write_text("{}")
    return short, long


def test_two_sweeps_and_a_run_side_by_side(tmp_path):
    short, long = _two_sweeps(tmp_path)
    run = make_run(tmp_path / "lone-run", 0.05, 4, extra={"learned": False, "timing": {"epoch_s_median": 0.27}})
    out = tmp_path / "figs"
    rows, figures = compare([short, long, run], out=out, formats=["png"])
    assert figures == [out / "compare.png"] and figures[0].stat().st_size > 1000
    assert [(r["source"][0], r["learning_rate"], r["epochs"], r["seed"]) for r in rows] == [
        ("A", 0.01, 3, 1), ("A", 0.1, 3, 1), ("B", 0.01, 6, 2), ("B", 0.1, 6, 2), ("C", 0.05, 4, None),
    ]  # fmt: skip
    assert rows[0]["kind"] == "sweep" and rows[-1]["kind"] == "run" and rows[-1]["learned"] is False
    assert rows[-1]["epoch_s_median"] == 0.27 and rows[0]["test_error"] == 0.061 and rows[0]["dataset"] == "mnist-5k"


def test_cli_prints_a_table_and_the_figure_path_default_in_the_current_folder(tmp_path, monkeypatch):
    short, long = _two_sweeps(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["compare", str(short), str(long), "--format", "png"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[-1] == str(tmp_path / "compare.png") and (tmp_path / "compare.png").is_file()
    assert sum(" A lr-0.1 " in line or " B lr-0.1 " in line for line in lines) == 2
    assert any("3/3" in line for line in lines) and any("6/6" in line for line in lines)  # epochs run / planned
    result = runner.invoke(app, ["compare", str(short), "--json", "--format", "svg", "--out", str(tmp_path / "j")])
    data = json.loads(result.stdout)
    assert len(data["runs"]) == 2 and data["figures"] == [str(tmp_path / "j" / "compare.svg")]


def test_bad_paths_are_one_line_and_exit_2(tmp_path):
    make_run(tmp_path / "ok-run")
    (tmp_path / "empty").mkdir()
    broken = make_run(tmp_path / "broken")
    (broken / "run.json").write_text("{not json")
    for args, message in (
        ([str(tmp_path / "nope")], f"error: no such folder: {tmp_path / 'nope'}"),
        ([str(tmp_path / "empty")], f"error: {tmp_path / 'empty'}: not a run, sweep or bench folder"),
        ([str(broken)], f"error: {broken / 'run.json'}: not valid JSON"),
    ):
        result = runner.invoke(app, ["compare", str(tmp_path / "ok-run"), *args])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(message), result.stderr
    assert runner.invoke(app, ["compare"]).exit_code == 2


def test_a_broken_run_inside_a_sweep_is_skipped_with_a_warning(tmp_path):
    sweep = make_sweep(tmp_path / "sweep")
    (sweep / "lr-0.01" / "history.csv").write_text("no,epochs,here\n1,2,3\n")
    result = runner.invoke(app, ["compare", str(sweep), "--format", "png", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"warning: skipped {sweep / 'lr-0.01' / 'history.csv'}: no 'epoch' column" in result.stderr
    assert "lr-0.1 " in result.stdout and "lr-0.01 " not in result.stdout


def test_an_out_that_cannot_be_written_is_one_line(tmp_path):
    run = make_run(tmp_path / "run")
    (tmp_path / "taken").write_text("x")
    result = runner.invoke(app, ["compare", str(run), "--out", str(tmp_path / "taken")])
    assert result.exit_code == 2 and result.stderr == f"error: --out {tmp_path / 'taken'}: not a folder (is a file)\n"


def test_runs_in_natural_order_one_colour_per_run_across_sources_and_a_legend_of_line_styles(tmp_path):
    from matplotlib.colors import to_hex

    from cnnbench.plot.compare import _compare_figure, _sources

    benches = []
    for name, filters in (("bench-a", (64, 8, 32, 16)), ("bench-b", (16, 8))):
        for f in filters:
            make_run(tmp_path / name / "runs" / f"cpu-tensorflow-f{f}-r1", 0.1, 3)
        (tmp_path / name / "bench.json").write_text("{}")
        benches.append(tmp_path / name)
    rows, _ = compare(benches, out=tmp_path, formats=["png"])
    assert [r["run"] for r in rows] == [f"cpu-tensorflow-f{f}-r1" for f in (8, 16, 32, 64, 8, 16)]
    figure = _compare_figure(_sources(benches), log_scale=False)
    lines = figure.axes[0].get_lines()
    colour = {line.get_label(): to_hex(line.get_color()) for line in lines if not line.get_label().startswith("_")}
    assert colour["A cpu-tensorflow-f8-r1"] == colour["B cpu-tensorflow-f8-r1"]  # the same combination: one colour in A and B
    assert colour["A cpu-tensorflow-f16-r1"] == colour["B cpu-tensorflow-f16-r1"]
    assert len({colour[f"A cpu-tensorflow-f{f}-r1"] for f in (8, 16, 32, 64)}) == 4
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert "A = bench-a (line style)" in legend and "B = bench-b (line style)" in legend
