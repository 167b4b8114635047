"""Reading spec text safely: bounded files and standard input, UTF-8, and JSON/YAML loaders that read only
what JSON means (YAML 1.2 scalars, string keys, no duplicates, bounded depth, values and integers).

What the document must contain is `cnnbench.spec`; this module only turns bytes into JSON data or a SpecError
naming the source and line. Study files (`grid`) are read through it too.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from cnnbench.errors import SpecError, brief

MAX_SPEC_BYTES = 1_000_000  # the course spec is 700 bytes
MAX_DEPTH = 32  # the course spec nests 4 deep
MAX_NODES = 100_000  # values after YAML aliases are expanded: a 478-byte alias bomb expands to 10^9
MAX_INT_DIGITS = 30


def read_spec_file(path: Path, source: str) -> str:
    """The text of a spec file: regular files only (a FIFO or /dev/zero must not hang), at most MAX_SPEC_BYTES."""
    try:  # O_NONBLOCK: opening a FIFO returns at once, so fstat can refuse it
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise SpecError(source, "", "no such file") from None
    except OSError as exc:
        raise SpecError(source, "", f"cannot read the file: {exc.strerror or type(exc).__name__}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise SpecError(source, "", "is a folder, not a spec file")
        raise SpecError(source, "", "is not a regular file (a pipe, device or socket); a spec must be a file")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(MAX_SPEC_BYTES + 1)
        except OSError as exc:
            raise SpecError(source, "", f"cannot read the file: {exc.strerror or type(exc).__name__}") from None
    return _spec_text(data, source, f"the file is larger than {MAX_SPEC_BYTES:,} bytes; a spec is a short text file")


class _Refused(Exception):
    """A YAML form cnnbench refuses on purpose (ambiguous, too big): reported without 'invalid YAML'."""

    def __init__(self, message: str, mark=None) -> None:
        super().__init__(message)
        self.message, self.mark = message, mark


# YAML 1.2 core-schema scalars (what JSON means), plus the YAML 1.1 forms that would mean something else.
_YAML12 = {  # the YAML 1.1 forms come first: they would otherwise read as YAML 1.2 numbers
    "tag:cnnbench:yaml11": (r"^(?:[-+]?0[0-9_]+|[-+]?0b[01_]+|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?|[-+]?[0-9][0-9_]*_[0-9_]*)$",
                            list("-+0123456789")),  # fmt: skip
    "tag:yaml.org,2002:null": (r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    "tag:yaml.org,2002:bool": (r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    "tag:yaml.org,2002:int": (r"^(?:[-+]?(?:0|[1-9][0-9]*)|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    "tag:yaml.org,2002:float": (
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$",
        list("-+0123456789."),
    ),
}


def _yaml_loader():
    import yaml
    from yaml.composer import ComposerError

    class Loader(yaml.SafeLoader):
        """A SafeLoader that reads YAML as JSON would: YAML 1.2 core scalars, string keys, no duplicate keys,
        JSON's types only, and a bounded document (depth, values after alias expansion)."""

        yaml_implicit_resolvers: dict = {}
        yaml_constructors: dict = {}

        def __init__(self, stream) -> None:
            super().__init__(stream)
            self._depth = self._nodes = 0
            self._anchor_sizes: dict[str, int] = {}

        def _count(self, n: int, mark) -> None:
            self._nodes += n
            if self._nodes > MAX_NODES:
                raise _Refused(f"the document holds more than {MAX_NODES:,} values once YAML aliases are expanded", mark)

        def fetch_flow_collection_start(self, TokenClass):
            # The scanner looks up to 1,024 characters ahead for keys; refusing deep [[[[ here keeps that lookahead short.
            if self.flow_level >= MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep", self.get_mark())
            super().fetch_flow_collection_start(TokenClass)

        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                if event.anchor in self._anchor_sizes:
                    self._count(self._anchor_sizes[event.anchor], event.start_mark)
                return super().compose_node(parent, index)
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            before = self._nodes
            self._count(1, event.start_mark)
            node = super().compose_node(parent, index)
            self._depth -= 1
            if event.anchor is not None:
                self._anchor_sizes[event.anchor] = self._nodes - before
            return node

        def construct_mapping(self, node, deep=False):
            if not isinstance(node, yaml.MappingNode):
                raise ComposerError(None, None, f"expected a mapping, found {node.id}", node.start_mark)
            mapping = {}
            for key_node, value_node in node.value:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, str):
                    raise _Refused(f"keys must be strings, got {brief(key)}", key_node.start_mark)
                if key in mapping:
                    raise _Refused(f"duplicate key {brief(key)}", key_node.start_mark)
                mapping[key] = self.construct_object(value_node, deep=deep)
            return mapping

    def construct_int(loader, node):
        value = loader.construct_scalar(node)
        digits = value.lstrip("+-")
        if len(digits) > MAX_INT_DIGITS:
            raise _Refused(f"an integer of more than {MAX_INT_DIGITS} digits", node.start_mark)
        try:
            sign = -1 if value.startswith("-") else 1
            return sign * int(digits[2:], {"0o": 8, "0x": 16}[digits[:2]]) if digits[:2] in ("0o", "0x") else int(value)
        except ValueError:
            raise _Refused(f"{brief(value)} is not an integer", node.start_mark) from None

    def construct_float(loader, node):
        value = loader.construct_scalar(node)
        special = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}
        try:
            return special.get(value.lower(), None) if value.lower() in special else float(value)
        except ValueError:
            raise _Refused(f"{brief(value)} is not a number", node.start_mark) from None

    def construct_str(loader, node):
        value = loader.construct_scalar(node)
        if any("\ud800" <= c <= "\udfff" for c in value):  # "\ud83d\ude00" escapes: PyYAML keeps the halves, JSON joins them
            value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value

    def construct_yaml11(loader, node):
        value = loader.construct_scalar(node)
        raise _Refused(
            f"{brief(value)} means a different thing in YAML 1.1 (octal, base 60 or digit groups) than in JSON; "
            "write a plain decimal number, or quote it for text",
            node.start_mark,
        )

    for tag, (pattern, first) in _YAML12.items():
        Loader.add_implicit_resolver(tag, re.compile(pattern), first)
    for tag, constructor in {
        "tag:yaml.org,2002:null": yaml.SafeLoader.construct_yaml_null,
        "tag:yaml.org,2002:bool": yaml.SafeLoader.construct_yaml_bool,
        "tag:yaml.org,2002:int": construct_int,
        "tag:yaml.org,2002:float": construct_float,
        "tag:yaml.org,2002:str": construct_str,
        "tag:yaml.org,2002:seq": yaml.SafeLoader.construct_yaml_seq,
        "tag:yaml.org,2002:map": yaml.SafeLoader.construct_yaml_map,
        "tag:cnnbench:yaml11": construct_yaml11,
        None: yaml.SafeLoader.construct_undefined,
    }.items():
        Loader.add_constructor(tag, constructor)
    return Loader


def _reject_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {brief(key)}")
        seen[key] = value
    return seen


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of more than {MAX_INT_DIGITS} digits")
    return int(text)


def _json_constant(name: str):
    raise ValueError(f"{name} is not JSON (use a number)")


_JSON_STRUCTURE = re.compile(r'[\[\]{}"]')
_JSON_STRING_REST = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # "unrolled": linear time, no regex stack per character


def _json_depth_problem(text: str) -> tuple[int, str] | None:
    """(line, message) when brackets nest deeper than MAX_DEPTH; a linear scan, before json.loads recurses."""
    depth, pos = 0, 0
    while match := _JSON_STRUCTURE.search(text, pos):
        char, pos = match.group(), match.end()
        if char == '"':
            rest = _JSON_STRING_REST.match(text, pos)
            if rest is None:
                return None  # an unterminated string: json.loads names the line
            pos = rest.end()
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return text.count("\n", 0, pos) + 1, f"nested more than {MAX_DEPTH} levels deep"
        else:
            depth -= 1
    return None


def parse_text(text: str, source: str, suffix: str) -> Any:
    """Parse JSON or YAML text into JSON data; syntax errors and refused forms become a SpecError with the line."""
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(source, "", f"the text is longer than {MAX_SPEC_BYTES:,} characters; a spec is a short text file")
    if not text.strip():
        raise SpecError(source, "", "the file is empty")
    if suffix == ".json":
        if problem := _json_depth_problem(text):
            raise SpecError(source, f"line {problem[0]}", problem[1])
        try:
            return json.loads(text, object_pairs_hook=_reject_duplicates, parse_int=_json_int, parse_constant=_json_constant)
        except json.JSONDecodeError as exc:
            raise SpecError(source, f"line {exc.lineno}", f"invalid JSON: {exc.msg}") from None
        except (ValueError, RecursionError) as exc:
            raise SpecError(source, "", f"invalid JSON: {exc}") from None
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except _Refused as exc:
        line = f"line {exc.mark.line + 1}" if exc.mark else ""
        raise SpecError(source, line, exc.message) from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise SpecError(source, f"line {line}", f"invalid YAML: {brief(exc.problem, 200)[1:-1]}") from None
    except yaml.YAMLError as exc:
        raise SpecError(source, "", f"invalid YAML: {brief(str(exc), 200)[1:-1]}") from None
    except RecursionError:
        raise SpecError(source, "", f"nested more than {MAX_DEPTH} levels deep") from None


def read_spec_stream(source: str) -> str:
    """A spec read from standard input, bounded like a file."""
    import sys

    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        raise SpecError(source, "", "no standard input to read the spec from")
    try:
        data = stream.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError(source, "", f"cannot read standard input: {exc.strerror or type(exc).__name__}") from None
    return _spec_text(data, source, f"more than {MAX_SPEC_BYTES:,} bytes; a spec is a short text")


def _spec_text(data: bytes, source: str, too_large: str) -> str:
    """Spec bytes read with one byte to spare (files and stdin alike) as text: bounded, UTF-8 (a BOM allowed)."""
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(source, "", too_large)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(source, "", f"is not UTF-8 text (byte {exc.start:,})") from None
