"""The docs match the tool: links lead to files of the repository, option tables list every option."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.M)}


def _links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every relative link and image of a page, code blocks and spans left out."""
    found = []
    in_block = False
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            continue
        for m in LINK.finditer(re.sub(r"`[^`]*`", "``", line)):
            target = m.group(1)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):  # http:, https:, mailto: ...
                found.append((number, target))
    return found


def test_the_pages_link_to_something():
    assert sum(len(_links(p)) for p in PAGES) > 20  # the link parser finds the links the pages have


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_leads_to_a_file_of_the_repository(page):
    broken = []
    for number, target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        if not dest.is_relative_to(ROOT):
            broken.append(f"{where}: outside the repository")
        elif not dest.exists():
            broken.append(f"{where}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{where}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert broken == []


def _section(page: Path, heading: str) -> str:
    """The text of `page` from the line `heading` to the next heading of the same or a higher level."""
    text = page.read_text()
    level = heading.split(" ")[0]
    start = text.index(f"\n{heading}\n")
    end = re.search(rf"\n#{{1,{len(level)}}} ", text[start + 1 :])
    return text[start : start + 1 + end.start()] if end else text[start:]


@pytest.mark.parametrize(
    ("command", "page", "heading"),
    [
        ("bench", "docs/bench.md", "## Options"),
        ("sweep-lr", "docs/sweeps.md", "## Options"),
        ("plot", "docs/plots.md", "## Options"),
        ("train", "README.md", "### `train`"),
    ],
)
def test_the_docs_name_every_option_of_the_command(command, page, heading):
    import typer.main

    from cnnbench.cli import app

    group = typer.main.get_command(app)
    section = _section(ROOT / page, heading)
    documented = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", section))
    options = [[o for o in p.opts if o.startswith("--")] for p in group.commands[command].params]
    # One name of an alias pair (--learning-rate, --lr) will do.
    missing = [names[0] for names in options if names and names != ["--help"] and not documented & set(names)]
    assert missing == [], f"{page} ({heading}) does not name these options of `cnnbench {command}`"


def _dependencies() -> dict[str, str]:
    """pyproject.toml's runtime dependencies: name -> the requirement as written ("keras>=3.15,<3.16")."""
    block = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), flags=re.M | re.S).group(1)
    requirements = re.findall(r'^\s*"([^"]+)"', block, flags=re.M)
    return {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower(): r for r in requirements}


def test_every_pip_install_of_keras_in_the_docs_carries_the_pin_of_pyproject():
    """The fused engine relies on Keras internals: a recipe that installs another Keras breaks it."""
    pin = _dependencies()["keras"]
    assert pin.startswith("keras>=")
    installs = [
        (page.relative_to(ROOT).as_posix(), line.strip())
        for page in PAGES
        for line in page.read_text().splitlines()
        if "pip install" in line and re.search(r"""(?<![\w\[-])keras(?![\w\]-])""", line)
    ]
    assert installs, "the docs have a recipe that installs Keras without TensorFlow (docs/engines.md)"
    for page, line in installs:
        assert f'"{pin}"' in line, f"{page}: {line}"


def test_the_recipe_without_tensorflow_installs_every_other_dependency():
    recipe = next(line for line in (ROOT / "docs" / "engines.md").read_text().splitlines() if line.startswith('pip install "jax[cuda'))
    words = {re.match(r"[A-Za-z0-9_.-]+", w.strip("\"'")).group(0).lower() for w in recipe.split("#")[0].split()[2:]}
    assert sorted(set(_dependencies()) - {"tensorflow"} - words) == []


SWEEP_FOLDER = re.compile(r"(\w+)-lr-sweep-[\w.]+-n\d+-e\d+-s\d+-[0-9a-f]{6}\b")


def test_sweep_folder_names_in_the_docs_are_the_ones_their_commands_make():
    """A folder name shown with its command (same line, or up to two lines above) is the name that command gives."""
    from cnnbench.spec import load_spec
    from cnnbench.sweep import sweep_name
    from cnnbench.values import parse_values

    checked = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        for number, line in enumerate(lines):
            if not (m := SWEEP_FOLDER.search(line)):
                continue
            context = " ".join(lines[max(0, number - 2) : number + 1])
            values = re.search(r"--values[ =]([^\s)`]+)", context)
            assert values, f"{page.relative_to(ROOT)}:{number + 1}: show the command (--values) beside {m.group(0)}"
            overrides = {}
            if epochs := re.search(r"--epochs[ =](\d+)", context):
                overrides["epochs"] = int(epochs.group(1))
            if data := re.search(r"--data[ =](\S+)", context):
                overrides["dataset"] = data.group(1)
            spec = load_spec(m.group(1)).with_overrides(**overrides)
            expected = sweep_name(spec, parse_values(values.group(1)))
            checked.append((f"{page.relative_to(ROOT)}:{number + 1}", m.group(0), expected))
    assert len(checked) >= 3
    assert [(where, shown) for where, shown, expected in checked if shown != expected] == [], checked
