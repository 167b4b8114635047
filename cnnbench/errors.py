"""Typed errors the library raises and the CLI turns into one line and exit code 2.

Every error a user can cause (a bad spec, missing data, an absent device) is a `CnnbenchError`.
"""

from __future__ import annotations

import re
import signal


class CnnbenchError(Exception):
    """Base class: the message is already one complete line for the user."""


class SpecError(CnnbenchError):
    """A spec (or an option that overrides it) is invalid.

    >>> str(SpecError("my_net.yaml", "layers[2].filters", "must be a positive integer, got -3"))
    'my_net.yaml: layers[2].filters: must be a positive integer, got -3'
    """

    def __init__(self, source: str, path: str, message: str) -> None:
        source, path, message = cap(str(source), 200), cap(str(path), 200), cap(str(message), MAX_MESSAGE)
        self.source, self.path, self.message = source, path, message
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {message}")


MAX_MESSAGE = 600  # a safety net: every message already cuts the user's values with `brief`


def cap(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with "..." when longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def count(n: int, noun: str) -> str:
    """'1 epoch', '20 epochs'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


# C0 and C1 controls but tab and newline (escape sequences retitle or clear a terminal, \r overwrites a line),
# bidirectional overrides (they reorder what is shown) and lone surrogates (undecodable bytes of a file name).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def safe(text: object) -> str:
    r"""`text` fit for a terminal: every control character shown as its escape (`\x1b`), never sent.

    Text read from a results folder (names, paths, errors) reaches the terminal only through this.

    >>> safe("lr-0.1\x1b]0;owned\x07")
    'lr-0.1\\x1b]0;owned\\x07'
    """
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), str(text))


class DataError(CnnbenchError):
    """A dataset cannot be loaded or does not fit the model."""


class DeviceError(CnnbenchError):
    """A device or Keras backend that was asked for is not available."""


class UsageError(CnnbenchError):
    """A command-line value (e.g. a `--values` list) is malformed."""



BRIEF_LIMIT = 60


def brief(value: object, limit: int = BRIEF_LIMIT) -> str:
    """`repr(value)` cut to `limit` characters, built lazily: a user's value in a message is never unbounded.

    >>> brief("x" * 1000, 12)
    "'xxxxxxxx..."
    >>> brief([1, [2, 3]])
    '[1, [2, 3]]'
    """
    parts, length = [], 0
    for chunk in _repr_chunks(value, 0):
        parts.append(chunk)
        length += len(chunk)
        if length > limit:  # stop walking: an alias bomb expands to 10^9 items
            return "".join(parts)[: limit - 3] + "..."
    return "".join(parts)


def _repr_chunks(value: object, depth: int):
    if depth > 8:
        yield "..."
    elif isinstance(value, (list, tuple)):
        yield "[" if isinstance(value, list) else "("
        for i, item in enumerate(value):
            yield ", " if i else ""
            yield from _repr_chunks(item, depth + 1)
        yield "]" if isinstance(value, list) else ")"
    elif isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ", " if i else ""
            yield from _repr_chunks(key, depth + 1)
            yield ": "
            yield from _repr_chunks(item, depth + 1)
        yield "}"
    elif isinstance(value, str):
        yield repr(value[: BRIEF_LIMIT * 4])
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        yield f"<a {value.bit_length():,}-bit integer>"  # repr of a 5,000-digit int raises, and is unbounded anyway
    elif value is None or isinstance(value, (bool, int, float)):
        yield repr(value)
    else:
        yield f"<{type(value).__name__}>"


class OutputError(CnnbenchError):
    """Results cannot be written where they were asked for (a file in the way, read-only, a full disk)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a closed terminal or SSH session), handled like Ctrl-C: runs in flight are recorded
    `interrupted by SIGTERM` (or SIGHUP) and the command exits 128 + the signal's number (143, 129)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def stop_class(signum: int | None) -> type[KeyboardInterrupt]:
    """The exception class that stops a run in another thread or a Ray worker (which are handed a class, not an
    instance) the way `signum` stopped the driver: Terminated by that signal, or a Ctrl-C (None or SIGINT), so the
    run's record names the same signal as the driver's."""
    if signum is None or signum == signal.SIGINT:
        return KeyboardInterrupt
    return type("Terminated", (Terminated,), {"__init__": lambda self: Terminated.__init__(self, signum)})


def interrupt_reason(exc: BaseException) -> str:
    """What an interrupted run's record says: the signal (Terminated) or the user's Ctrl-C."""
    return f"interrupted by {exc.name}" if isinstance(exc, Terminated) else "interrupted by the user (Ctrl-C)"


def stop_exception(signum: int) -> KeyboardInterrupt:
    """What a stop signal raises: a KeyboardInterrupt for SIGINT (a Ctrl-C), Terminated for SIGTERM or SIGHUP."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


# A stop signal whose handler raised where the exception is lost would be lost with it: Python swallows it in a
# finaliser or a weakref callback, and third-party code catches it with a bare `except:` (Keras does, while it
# builds a model, traces a step or saves) and goes on, or raises another error instead. So it is also kept here:
# raised again at the next epoch or run boundary, and an error raised after it is the stop, not a failure.
_stop_signals: list[int] = []


def request_stop(signum: int) -> bool:
    """Note a stop signal (SIGINT, SIGTERM, SIGHUP); True for the first one since `clear_stop()`."""
    _stop_signals.append(int(signum))
    return len(_stop_signals) == 1


def stop_requested() -> int | None:
    """The first stop signal received and not cleared, or None."""
    return _stop_signals[0] if _stop_signals else None


def raise_if_stopped() -> None:
    """At an epoch or run boundary, or where an error is handled: raise the stop (`stop_exception`) when a stop
    signal has arrived, even if its first raise was swallowed or turned into another error on the way."""
    if _stop_signals:
        raise stop_exception(_stop_signals[0])


def clear_stop() -> None:
    _stop_signals.clear()


# --- one error transport across processes ------------------------------------------------------


def error_payload(exc: BaseException) -> dict:
    """What crosses a process boundary (a pipe, Ray, a JSON file) for `exc`: its type, message and fields.

    A CnnbenchError keeps its class and the scalar attributes it carries (a SpecError's source, path
    and message), so `raise_payload` raises the same error on the other side; anything else is a bug
    and travels with its traceback.

    >>> error_payload(SpecError("net.yaml", "layers[0]", "bad"))["fields"]["path"]
    'layers[0]'
    """
    import traceback

    user = isinstance(exc, CnnbenchError)
    fields = {k: v for k, v in vars(exc).items() if isinstance(v, (str, int, float, bool)) or v is None} if user else {}
    message = str(exc) if user else "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    bases = [cls.__name__ for cls in type(exc).__mro__[1:] if issubclass(cls, CnnbenchError)] if user else []
    return {"type": type(exc).__name__, "bases": bases, "user_error": user, "message": message, "fields": fields}


def _error_classes(cls: type | None = None) -> dict[str, type]:
    cls = cls or CnnbenchError
    found = {cls.__name__: cls}
    for sub in cls.__subclasses__():
        found.update(_error_classes(sub))
    return found


def error_from_payload(payload: dict, where: str = "a worker") -> BaseException:
    """The exception `error_payload` described: a CnnbenchError of the same class and fields (its nearest
    base class known here when that class is not), or a RuntimeError with the bug's traceback, saying `where` it failed."""
    if not payload.get("user_error"):
        return RuntimeError(f"{where} failed:\n{payload.get('message', '')}")
    known = _error_classes()
    cls = next((known[name] for name in (payload.get("type", ""), *(payload.get("bases") or [])) if name in known), CnnbenchError)
    exc = cls.__new__(cls)
    Exception.__init__(exc, payload.get("message", ""))
    exc.__dict__.update(payload.get("fields") or {})
    return exc


def raise_payload(payload: dict, where: str = "a worker") -> None:
    """Raise, here, the error that another process described with `error_payload`."""
    raise error_from_payload(payload, where)
