"""The command line's names for the library's parameters: the library names a parameter as `name` in its
messages (what a Python caller typed); the CLI shows the flag that sets it, so a message reads as the user typed it.

>>> as_flags("`parallel` must be at least 1, got 0", {"--parallel"})
'--parallel must be at least 1, got 0'
>>> as_flags("`dataset`: unknown; `mlxtend` is not installed", {"--data"})
'--data: unknown; `mlxtend` is not installed'
"""

from __future__ import annotations

import re
from collections.abc import Collection

# Parameters whose flag is not `--` + the name with dashes.
ALIASES = {
    "dataset": "--data",  # Spec.with_overrides(dataset=...), data.dataset in a spec
    "path": "--data",  # Spec.with_overrides(path=...): a data file is given with --data FILE
    "use_ray": "--ray",
    "formats": "--format",
    "sets": "--set",
    "zips": "--zip",
    "BenchOptions.filters": "--filters",  # qualified: a bench message also names the spec layers' `filters` argument
}
_NAMED = re.compile(r"`([A-Za-z_][A-Za-z0-9_.]*)`")


def flag(name: str) -> str:
    """The flag a parameter name maps to: `--cpus-per-run` for cpus_per_run, `--data` for dataset."""
    return ALIASES.get(name) or "--" + name.replace("_", "-")


def as_flags(message: str, flags: Collection[str]) -> str:
    """`message` with each `name` that one of `flags` sets written as that flag; other `quoted` words stay."""
    return _NAMED.sub(lambda m: flag(m[1]) if flag(m[1]) in flags else m[0], message)


def command_flags(command) -> frozenset[str]:
    """Every long option of a Click command and, for a group, of all its subcommands (the Typer app's)."""
    found: set[str] = set()
    stack = [command]
    while stack:
        cmd = stack.pop()
        for param in getattr(cmd, "params", ()):
            found.update(o for o in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())) if o.startswith("--"))
        stack.extend(getattr(cmd, "commands", {}).values())
    return frozenset(found)
