"""A sweep's and a study's tables grow with the runs, not with the runs squared: rewritten at most once a second.

summary.csv, runs.csv and points.csv are rewritten at the start, when at least `INTERVAL_S` passed since the last
write while runs finish, and at the end (Ctrl-C included): never once per run on a fast study. The clock is the
tables' own (`cnnbench.aggregates.clock`), given here by the test, so the counts are exact under any load.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import pytest

import cnnbench.files
from cnnbench import aggregates
from cnnbench.grid import make_grid
from cnnbench.results import write_csv, write_json
from cnnbench.study import RUN_COLUMNS, plan_study, run_study
from cnnbench.sweep import SUMMARY_COLUMNS, plan_sweep, run_sweep, summary_rows
from cnnbench.values import format_value
from cnnbench.verdict import point_columns

TABLES = ("summary.csv", "runs.csv", "points.csv")
RATES = [round(0.01 * (i + 1), 2) for i in range(12)]


class Clock:
    """The tables' clock: moves only when a run trains (`per_run` seconds each), or when told."""

    def __init__(self, per_run: float = 0.0) -> None:
        self.now, self.per_run = 0.0, per_run

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(aggregates, "clock", clock)
    return clock


@pytest.fixture
def writes(monkeypatch):
    """Every table written, in order, with the file as a reader saw it right after that write (parsed)."""
    seen: list[tuple[str, list[dict[str, str]], list[str]]] = []
    real = cnnbench.files.atomic_write_bytes

    def counting(path, write):
        real(path, write)
        if Path(path).name in TABLES:
            reader = csv.DictReader(io.StringIO(Path(path).read_text()))
            seen.append((Path(path).name, list(reader), list(reader.fieldnames or [])))

    monkeypatch.setattr(cnnbench.files, "atomic_write_bytes", counting)
    return seen


@pytest.fixture
def fake_training(monkeypatch, clock):
    """train_run replaced by an instant one that writes spec.json and run.json as train_run does; `interrupt` holds
    the rates that raise KeyboardInterrupt (a Ctrl-C during that run). Each run moves the clock by clock.per_run."""
    interrupt: set[float] = set()

    def fake_train_run(spec, run_dir, options, on_epoch=None, on_start=None):
        lr = spec.training.learning_rate
        clock.now += clock.per_run
        if lr in interrupt:
            raise KeyboardInterrupt
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "spec.json", spec.to_dict())
        record = {"name": spec.name, "status": "running", "error": None, "learning_rate": lr, "seed": spec.training.seed}
        write_json(run_dir / "run.json", record)
        if on_start:
            on_start(dict(record))
        if on_epoch:
            on_epoch({"epoch": 1, "loss": 1.0, "val_error": lr})
        record.update(status="ok", best_val_error=lr, final_val_error=lr + 0.01, best_epoch=1, epochs_run=1, total_time_s=0.01,
                      learned=True, timing={"epoch_s_median": 0.5}, data={"name": "mnist-5k"})  # fmt: skip
        write_json(run_dir / "run.json", record)
        return record

    monkeypatch.setattr("cnnbench.train.train_run", fake_train_run)
    return interrupt


def counts(writes) -> Counter:
    return Counter(name for name, _, _ in writes)


def test_a_fast_sweep_writes_its_summary_at_the_start_and_the_end_only_with_the_same_final_file(
    fake_training, clock, writes, tiny_spec, tmp_path
):
    result = run_sweep(plan_sweep(tiny_spec, RATES, tmp_path / "fast"))  # every run ends within the same second
    assert counts(writes)["summary.csv"] == 2  # was 2 + 12: once more after every run
    for _, rows, columns in writes:  # every version a reader could see is a whole table
        assert columns == list(SUMMARY_COLUMNS) and [row["learning_rate"] for row in rows] == [format_value(r) for r in RATES]
    assert [row["status"] for row in writes[0][1]] == ["pending"] * 12 and [row["status"] for row in writes[-1][1]] == ["ok"] * 12

    writes.clear()
    clock.per_run = 10.0  # every run takes longer than the interval: the summary follows each one, as it always did
    slow = run_sweep(plan_sweep(tiny_spec, RATES, tmp_path / "slow"))
    assert counts(writes)["summary.csv"] == 2 + 12
    assert [sum(row["status"] == "ok" for row in rows) for _, rows, _ in writes] == [0, *range(1, 13), 12]

    final = result.summary_path.read_bytes()
    assert final == slow.summary_path.read_bytes()  # the final file does not depend on when the tables were written
    from_disk = [{**row, "learning_rate": format_value(row["learning_rate"])} for row in summary_rows(result.plan)]
    write_csv(tmp_path / "expected.csv", from_disk, SUMMARY_COLUMNS)  # summary.csv made from the run folders alone
    assert final == (tmp_path / "expected.csv").read_bytes()


def test_rewrites_are_bounded_by_the_time_the_runs_take(fake_training, clock, writes, tiny_spec, tmp_path):
    clock.per_run = 0.3  # 12 runs in 3.6 s: at most 3 rewrites while they run, plus the start and the end
    run_sweep(plan_sweep(tiny_spec, RATES, tmp_path))
    n = counts(writes)["summary.csv"]
    assert 2 + 2 <= n <= 2 + 3
    done = [sum(row["status"] == "ok" for row in rows) for _, rows, _ in writes]
    assert done == sorted(done) and done[-1] == 12  # each rewrite shows the runs finished so far


def test_ctrl_c_writes_the_tables_as_the_runs_were_left(fake_training, clock, writes, tiny_spec, tmp_path):
    fake_training.add(RATES[4])
    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan_sweep(tiny_spec, RATES, tmp_path / "sweep"))
    assert counts(writes)["summary.csv"] == 2  # the start, and the write on the way out
    assert [row["status"] for row in writes[-1][1]] == ["ok"] * 4 + ["pending"] * 8

    writes.clear()
    with pytest.raises(KeyboardInterrupt):
        run_study(plan_study(make_grid(tiny_spec, [f"training.learning_rate={','.join(map(str, RATES))}"]), tmp_path / "study"))
    assert counts(writes) == {"runs.csv": 2, "points.csv": 2}
    (last_runs,) = [rows for name, rows, _ in writes[-2:] if name == "runs.csv"]
    assert [row["status"] for row in last_runs] == ["ok"] * 4 + ["pending"] * 8


def test_a_fast_study_writes_runs_and_points_at_the_start_and_the_end_only_with_the_same_final_files(
    fake_training, clock, writes, tiny_spec, tmp_path
):
    sets = [f"training.learning_rate={','.join(map(str, RATES[:6]))}", "layers.0.filters=4,8"]
    run_study(plan_study(make_grid(tiny_spec, sets), tmp_path / "fast"))
    assert counts(writes) == {"runs.csv": 2, "points.csv": 2}  # was 2 + 12 each
    axes = ["training.learning_rate", "layers.0.filters"]
    for name, rows, columns in writes:
        assert columns == (["point", *axes, *RUN_COLUMNS] if name == "runs.csv" else point_columns(axes)) and len(rows) == 12

    writes.clear()
    clock.per_run = 10.0
    run_study(plan_study(make_grid(tiny_spec, sets), tmp_path / "slow"))
    assert counts(writes) == {"runs.csv": 2 + 12, "points.csv": 2 + 12}
    (fast,), (slow,) = (tmp_path / "fast").iterdir(), (tmp_path / "slow").iterdir()
    for name in ("runs.csv", "points.csv"):
        assert (fast / name).read_bytes() == (slow / name).read_bytes()
