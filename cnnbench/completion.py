"""Shell completion of the command's values (`cnnbench --install-completion`): option values and spec names.

Called by the shell on every Tab, so nothing heavy is imported here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def offer(*choices: str, comma_list: bool = False) -> Callable[[str], list[str]]:
    """Shell completion of an option's values (`cnnbench --install-completion`); of the last item of a comma list."""

    def complete(incomplete: str) -> list[str]:
        done, sep, last = incomplete.rpartition(",") if comma_list else ("", "", incomplete)
        return [f"{done}{sep}{c}" for c in choices if c.startswith(last)]

    return complete


def complete_spec(incomplete: str) -> list[str]:
    """Built-in spec names, then spec files in the current folder."""
    from cnnbench.spec import SPEC_SUFFIXES, builtin_specs

    names = [n for n in builtin_specs() if n.startswith(incomplete)]
    folder, _, stem = incomplete.rpartition("/")
    try:
        found = [p for p in Path(folder or ".").iterdir() if p.suffix in SPEC_SUFFIXES and p.name.startswith(stem)]
        files = sorted(str(p) if folder else p.name for p in found)
    except OSError:
        files = []
    return names + files
