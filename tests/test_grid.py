"""Axes of `cnnbench sweep`: paths into the spec, values, crossing, zips, seeds, sampling, sweep files, bad axes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cnnbench.cli import app
from cnnbench.cli_flags import as_flags
from cnnbench.errors import SpecError, UsageError
from cnnbench.grid import make_grid, parse_axis_values, read_sweep_file, resolve_path
from cnnbench.study import plan_study, spec_identity

runner = CliRunner()


@pytest.fixture
def doc(course_spec):
    return course_spec.to_dict()  # layers: 0 Conv2D, 1 MaxPooling2D, 2 Conv2D, 3 MaxPooling2D, 4 Flatten, 5 Dense, 6 Dense


# --- paths ---------------------------------------------------------------------------------------


STUDY_FLAGS = {"--set", "--seeds", "--zip", "--method", "--n"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("training.learning_rate", [("training", "learning_rate")]),
        ("layers.0.filters", [("layers", 0, "filters")]),
        ("layers[0].filters", [("layers", 0, "filters")]),
        ("layers.*.filters", [("layers", 0, "filters"), ("layers", 2, "filters")]),
        ("layers[*].filters", [("layers", 0, "filters"), ("layers", 2, "filters")]),
        ("layers[type=Conv2D].filters", [("layers", 0, "filters"), ("layers", 2, "filters")]),
        ("layers[type=Dense].units", [("layers", 5, "units"), ("layers", 6, "units")]),
        ("layers.*.units", [("layers", 5, "units"), ("layers", 6, "units")]),
        ("layers[5].units", [("layers", 5, "units")]),
        ("layers.0.activation", [("layers", 0, "activation")]),  # in the spec
        ("layers.0.use_bias", [("layers", 0, "use_bias")]),  # a Conv2D argument the spec leaves at its default
        ("training.momentum", [("training", "momentum")]),  # a knob the spec leaves unset
        ("training.lr_schedule.type", [("training", "lr_schedule", "type")]),  # a key of an unset knob mapping
        ("training.early_stopping.patience", [("training", "early_stopping", "patience")]),
    ],
)
def test_paths_resolve_to_exactly_these_fields(doc, path, expected):
    assert list(resolve_path(doc, path)) == expected


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ["training.learnin_rate=0.1"],
            "convolutional_nn: --set training.learnin_rate: unknown key 'learnin_rate' in training "
            "(did you mean 'learning_rate'?); known: optimizer, learning_rate, batch_size, epochs, seed, steps_per_execution, engine, "
            "momentum, nesterov, weight_decay, beta_1, beta_2, epsilon, clipnorm, clipvalue, global_clipnorm, lr_schedule, early_stopping, "
            "label_smoothing",
        ),
        (
            ["training.lr_schedule.typ=cosine"],
            "convolutional_nn: --set training.lr_schedule.typ: unknown key 'typ' in training.lr_schedule (did you mean 'type'?); "
            "known: type, warmup_epochs, step_epochs, factor, alpha",
        ),
        (
            ["training.lr_schedule.warmup_epochs=1,2"],
            "convolutional_nn: --set training.lr_schedule.warmup_epochs: at the point training.lr_schedule.warmup_epochs=1: "
            "training.lr_schedule.type: is required",
        ),
        (
            ["training.momentum=0.5,1.5"],
            "convolutional_nn: --set training.momentum: at the point training.momentum=1.5: training.momentum: must be a number in [0, 1), "
            "got 1.5",
        ),
        (
            ["layers.9.filters=8"],
            "convolutional_nn: --set layers.9.filters: index 9 is out of range: layers has 7 items (0 to 6); "
            "layers: 0 Conv2D, 1 MaxPooling2D, 2 Conv2D, 3 MaxPooling2D, 4 Flatten, 5 Dense, 6 Dense",
        ),
        (
            ["layers.*.filtrs=8"],
            "convolutional_nn: --set layers.*.filtrs: matches nothing: no selected element has the key 'filtrs' (did you mean 'filters'?)",
        ),
        (
            ["layers[type=Conv3D].filters=8"],
            "convolutional_nn: --set layers[type=Conv3D].filters: matches nothing; layers: 0 Conv2D, "
            "1 MaxPooling2D, 2 Conv2D, 3 MaxPooling2D, 4 Flatten, 5 Dense, 6 Dense",
        ),
        (
            ["layers.1.filters=8"],
            "convolutional_nn: --set layers.1.filters: unknown key 'filters' in layers.1; known: type, pool_size, "
            "strides, padding, data_format",
        ),
        (
            ["training.learning_rate=0.1,-1"],
            "convolutional_nn: --set training.learning_rate: at the point training.learning_rate=-1: "
            "training.learning_rate: must be a positive number, got -1",
        ),
        (
            ["layers.*.filters=8,0"],
            "convolutional_nn: --set layers.*.filters: at the point layers.*.filters=0: layers[0].filters: "
            "must be a positive integer, got 0",
        ),
        (
            ["training.optimizer=sgd,adm"],
            "convolutional_nn: --set training.optimizer: at the point training.optimizer=adm: "
            "training.optimizer: unknown optimizer 'adm' (did you mean 'adam'?); known: sgd, adam, adamw, rmsprop, adagrad, adadelta, "
            "adamax, nadam, ftrl, lion, adafactor",
        ),
        (
            ["training.seed=1,2"],
            "convolutional_nn: --set training.seed: the seed is not an axis; repeat every point over seeds with --seeds N",
        ),
        (
            ["training.learning_rate=0.01:0.1:0"],
            "convolutional_nn: --set training.learning_rate=0.01:0.1:0: the step of '0.01:0.1:0' must be positive, got 0",
        ),
    ],
)
def test_each_bad_axis_is_one_line_naming_the_axis_and_the_point(course_spec, sets, message):
    with pytest.raises((SpecError, UsageError)) as caught:
        make_grid(course_spec, sets)
    assert "--" not in str(caught.value) and as_flags(str(caught.value), STUDY_FLAGS) == message  # the library names parameters


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            dict(sets=["training.batch_size=32,64", "training.learning_rate=0.1"], zips=["training.batch_size,training.learning_rate"]),
            "--zip training.batch_size,training.learning_rate: zipped axes need the same number of values; training.batch_size has 2, "
            "training.learning_rate has 1",
        ),
        (
            dict(sets=["training.batch_size=32,64"], zips=["training.batch_size,training.lr"]),
            "--zip training.batch_size,training.lr: 'training.lr' is not an axis (did you mean 'training.batch_size'?); "
            "axes: training.batch_size",
        ),
        (
            dict(sets=["training.learning_rate=1e-4..1e-1"]),
            "--set training.learning_rate: a range lo..hi is sampled: add --method random or sobol with --n N",
        ),
        (
            dict(sets=["training.learning_rate=0.1"], method="sobol", n=4),
            "--method sobol: no axis has a range to sample; write one as PATH=lo..hi",
        ),
        (
            dict(sets=["layers.*.filters=8", "layers.0.filters=16"]),
            "--set layers.0.filters: sets layers.0.filters, which --set layers.*.filters also sets",
        ),
        (dict(sets=["training.learning_rate=0.1"], seeds="0,3,3"), "--seeds 0,3,3: seed offsets must be distinct integers from 0"),
    ],
)
def test_bad_combinations_are_one_line(course_spec, args, message):
    with pytest.raises(UsageError) as caught:
        make_grid(course_spec, **args)
    assert "--" not in str(caught.value) and as_flags(str(caught.value), STUDY_FLAGS) == message  # the CLI shows the flags


def test_values_grammar_numbers_ranges_strings_booleans():
    assert parse_axis_values("0.01:0.05:0.02") == [0.01, 0.03, 0.05]
    assert parse_axis_values("8:64:*2") == [8, 16, 32, 64]
    assert parse_axis_values("sgd,adam,sgd") == ["sgd", "adam"]
    assert parse_axis_values("true,false") == [True, False]
    assert parse_axis_values("64,1e-3,null") == [64, 0.001, None]


# --- combining -------------------------------------------------------------------------------------


def test_grid_zip_and_seed_counts(course_spec):
    grid = make_grid(course_spec, ["layers.*.filters=8,16,32", "training.learning_rate=0.01,0.05"], seeds="3")
    assert len(grid.points) == 6 and grid.seeds == (0, 1, 2)
    assert grid.points[:3] == ((8, 0.01), (8, 0.05), (16, 0.01))
    sets = ["training.batch_size=32,64,128", "training.learning_rate=0.02,0.04,0.08", "training.optimizer=sgd,adam"]
    zipped = make_grid(course_spec, sets,
                       zips=["training.batch_size,training.learning_rate"], seeds="0,3,7")  # fmt: skip
    assert zipped.points == ((32, 0.02, "sgd"), (32, 0.02, "adam"), (64, 0.04, "sgd"), (64, 0.04, "adam"), (128, 0.08, "sgd"),
                             (128, 0.08, "adam"))  # fmt: skip
    assert [zipped.point_spec(zipped.points[0], k).training.seed for k in zipped.seeds] == [0, 3, 7]


def test_raising_seeds_keeps_the_first_ones_and_seeds_are_shared_by_all_points(course_spec, tmp_path):
    three = plan_study(make_grid(course_spec, ["training.learning_rate=0.01,0.05"], seeds="3"), tmp_path)
    five = plan_study(make_grid(course_spec, ["training.learning_rate=0.01,0.05"], seeds="5"), tmp_path)
    assert three.study_dir == five.study_dir
    assert {r.identity for r in three.runs} < {r.identity for r in five.runs}
    assert [r.seed for r in five.runs if r.point == (0.01,)] == [r.seed for r in five.runs if r.point == (0.05,)] == [0, 1, 2, 3, 4]


def test_identity_is_the_same_for_two_spellings_of_one_configuration(course_spec, tmp_path):
    star = make_grid(course_spec, ["layers.*.filters=32", "training.learning_rate=0.1"])
    each = make_grid(course_spec, ["layers.0.filters=32", "layers.2.filters=32", "training.learning_rate=1e-1"])
    typed = make_grid(course_spec, ["layers[type=Conv2D].filters=32", "training.learning_rate=0.10"])
    ids = {spec_identity(g.point_spec(g.points[0])) for g in (star, each, typed)}
    assert len(ids) == 1
    assert len({plan_study(g, tmp_path).study_dir for g in (star, each, typed)}) == 1  # the same folder too
    other = make_grid(course_spec, ["layers.*.filters=32", "training.learning_rate=0.1"], seeds="0,1")
    assert spec_identity(other.point_spec(other.points[0], 1)) not in ids  # the seed is part of the identity
    described = course_spec.to_dict() | {"description": "edited"}
    from cnnbench.spec import parse_spec

    assert spec_identity(parse_spec(described, "x", "convolutional_nn")) == spec_identity(course_spec)


def test_sobol_and_random_points_are_reproducible_log_uniform_and_rounded(course_spec):
    sets = ["training.learning_rate=1e-4..1e-1", "layers.*.filters=4..64"]
    first = make_grid(course_spec, sets, method="sobol", n=8)
    again = make_grid(course_spec, sets, method="sobol", n=8)
    assert first.points == again.points and len(first.points) == 8
    assert all(1e-4 <= lr <= 1e-1 and isinstance(f, int) and 4 <= f <= 64 for lr, f in first.points)
    assert sum(lr < 1e-2 for lr, _ in first.points) >= 4  # log-uniform: as many below 0.01 as above, not 10 %
    assert make_grid(course_spec, sets, method="random", n=8).points == make_grid(course_spec, sets, method="random", n=8).points
    other_seed = make_grid(course_spec.with_overrides(seed=1), sets, method="sobol", n=8)
    assert other_seed.points != first.points
    with pytest.warns(UserWarning, match=r"`method` sobol: `n` 6 is not a power of two"):
        make_grid(course_spec, sets, method="sobol", n=6)


def test_a_sweep_file_holds_the_same_axes_and_the_command_line_wins(tmp_path, course_spec):
    path = tmp_path / "study.yaml"
    path.write_text("set:\n  training.learning_rate: [0.01, 0.05]\n  layers.*.filters: 8,16\nseeds: 2\ntune: training.learning_rate\n")
    given = read_sweep_file(path)
    assert given == {"set": ["training.learning_rate=0.01,0.05", "layers.*.filters=8,16"], "zip": [], "seeds": "2",
                     "tune": "training.learning_rate"}  # fmt: skip
    out = tmp_path / "out"
    result = runner.invoke(app, ["sweep", "--sweep", str(path), "--set", "layers.*.filters=4", "--dry-run", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "axis layers.*.filters -> layers.0.filters, layers.2.filters: 4" in result.stdout
    assert "2 points x 2 seeds = 4 runs: 4 to train, 0 kept" in result.stdout
    path.write_text("set:\n  training.learning_rate: [0.01]\nsed: 2\n")
    bad = runner.invoke(app, ["sweep", "--sweep", str(path), "--out", str(out)])
    assert bad.exit_code == 2
    known = "set, zip, seeds, tune, method, n, rank, tensorboard, mlflow"
    assert bad.stderr == f"error: {path}: sed: unknown key (did you mean 'seeds'?); known: {known}\n"


# --- the command -----------------------------------------------------------------------------------


def test_the_knobs_a_spec_leaves_unset_are_axes_too(course_spec, tmp_path):
    grid = make_grid(course_spec, ["training.momentum=0,0.9", "training.lr_schedule.type=cosine,constant",
                                   "training.early_stopping.patience=2..5"], method="random", n=4)  # fmt: skip
    sampled = {patience for _, _, patience in grid.points}  # 4 draws, rounded to integers: repeats are one point
    assert len(grid.points) == 2 * 2 * len(sampled)
    assert all(isinstance(patience, int) and 2 <= patience <= 5 for _, _, patience in grid.points)  # an integer field: rounded
    spec = grid.point_spec(grid.points[0])
    momentum, schedule, patience = grid.points[0]
    assert (spec.training.momentum, spec.training.lr_schedule, spec.training.early_stopping) == (momentum, {"type": schedule},
                                                                                                 {"patience": patience})  # fmt: skip
    assert course_spec.training.momentum is None and course_spec.training.lr_schedule is None  # the spec itself is untouched
    plan = plan_study(grid, tmp_path)
    assert plan.study_dir.name.startswith("convolutional_nn-sweep-momentum-type-patience-")
    assert plan.runs[0].run_dir.parent.name == f"momentum-{momentum}_type-{schedule}_patience-{patience}"


def test_dry_run_prints_axes_expanded_counts_and_a_plan_per_run(tmp_path):
    args = ["sweep", "--set", "layers.*.filters=8,16", "--set", "training.learning_rate=0.01,0.05", "--seeds", "2", "--dry-run",
            "--out", str(tmp_path)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1:3] == ["axis layers.*.filters -> layers.0.filters, layers.2.filters: 8, 16", "axis training.learning_rate: 0.01, 0.05"]
    assert lines[3] == "  filters-8_learning_rate-0.01/seed-0  train"
    assert lines[-1] == "4 points x 2 seeds = 8 runs: 8 to train, 0 kept; nothing trained (--dry-run)"
    assert list(tmp_path.iterdir()) == []
    paired = runner.invoke(app, ["sweep", "--set", "training.batch_size=32,64", "--set", "training.learning_rate=0.02,0.04", "--zip",
                                 "training.batch_size,training.learning_rate", "--set", "training.momentum=0..0.9", "--method", "random",
                                 "--n", "2", "--dry-run", "--out", str(tmp_path)])  # fmt: skip
    assert paired.exit_code == 0, paired.output
    lines = paired.stdout.splitlines()
    assert lines[3].startswith("axis training.momentum: ") and lines[3].endswith(" (sampled from 0..0.9)")
    assert lines[4:6] == ["zip training.batch_size, training.learning_rate: paired, 2 pairs", "method random: 2 points sampled with seed 0"]
    assert lines[-1] == "4 points x 1 seed = 4 runs: 4 to train, 0 kept; nothing trained (--dry-run)"
    assert list(tmp_path.iterdir()) == []


def test_a_bad_point_is_exit_2_one_line_and_nothing_written(tmp_path):
    out = tmp_path / "results"
    result = runner.invoke(app, ["sweep", "--set", "layers.*.filters=8,-3", "--seeds", "2", "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr == ("error: convolutional_nn: --set layers.*.filters: at the point layers.*.filters=-3: layers[0].filters: "
                             "must be a positive integer, got -3\n")  # fmt: skip
    assert not out.exists()
