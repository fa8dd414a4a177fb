"""Turn a pydantic ``ValidationError`` into MQ Lab's one-line ``InputError``.

Every config is a pydantic model; whatever goes wrong, the user should read one line naming
the field, the value given and what is allowed - not pydantic's multi-line report.  Only the
first error is shown: fixing one thing at a time is easier to follow than a list.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import pydantic

from simulator.errors import InputError

__all__ = ["input_error_from", "CLI_FLAGS"]

# fields whose command-line option is not simply ``--field-name`` (see simulator.cli)
CLI_FLAGS: Mapping[str, str] = {"faults": "--crash"}

# pydantic puts these in front of a message raised by our own validators
_PREFIXES = ("Value error, ", "Assertion failed, ")
# a union's branches add a tag to the location ("int", "literal['a','b']", ...)
_BRANCH_TAGS = {"int", "float", "str", "bool", "bytes", "none", "list", "dict", "tuple"}
_FIELD_FIRST = re.compile(r"^([a-z_][a-z0-9_]*):\s*(.*)$", re.S)


class _Default:
    """The value of a field the user left out (its default took part in the failed check)."""

    def __repr__(self) -> str:
        return "the default"


def _message(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def _is_branch_tag(part: object) -> bool:
    return isinstance(part, str) and (part in _BRANCH_TAGS or any(ch in part for ch in "[-'("))


def _name(loc: tuple[Any, ...], prefix: str, flags: bool | Mapping[str, str]) -> str:
    parts = [str(p) for p in loc]
    if flags and parts:
        table = CLI_FLAGS if flags is True else flags
        head = table.get(parts[0], "--" + parts[0].replace("_", "-"))
        return head + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts[1:])
    head = prefix.strip(".")
    return ".".join([head, *parts] if head else parts)


def _model_level(error: Mapping[str, Any], msg: str) -> tuple[tuple[Any, ...], object, str]:
    """A model validator's error has no location: find the field it is about.

    Our validators start the message with the field name (``"pick: ..."``); failing that, the
    field named earliest in the message is taken.
    """
    given = error.get("input")
    given = given if isinstance(given, Mapping) else {}
    m = _FIELD_FIRST.match(msg)
    if m:
        field = m.group(1)
        return (field,), given.get(field, _Default()), m.group(2)
    hits = [(m.start(), key) for key in given
            if isinstance(key, str) and (m := re.search(rf"\b{re.escape(key)}\b", msg))]
    if hits:
        key = min(hits)[1]
        return (key,), given[key], msg
    return (), dict(given), msg


def input_error_from(exc: pydantic.ValidationError, prefix: str = "", *,
                     flags: bool | Mapping[str, str] = False) -> InputError:
    """The first error of ``exc`` as ``InputError(field, value, allowed)``.

    ``field`` is the dotted path of the field (``faults.0.target``) after ``prefix``; with
    ``flags`` it is spelled as the command-line option instead (``--crash[0].target``), using
    ``CLI_FLAGS`` or the mapping given for options that are renamed.  A union's branches
    fail together, so their messages are joined with "or" under the field's own name.
    """
    errors = exc.errors()
    if not errors:  # pydantic never does this, but an InputError must still come out
        return InputError(prefix.strip(".") or "config", None, str(exc))
    first = errors[0]
    loc = tuple(first["loc"])
    msg = _message(first)
    value: object = first.get("input")
    if not loc:
        loc, value, msg = _model_level(first, msg)
    elif _is_branch_tag(loc[-1]):
        base = loc[:-1]
        branches = [e for e in errors if tuple(e["loc"])[:-1] == base and len(e["loc"]) == len(loc)
                    and _is_branch_tag(e["loc"][-1])]
        loc = base
        msg = " or ".join(dict.fromkeys(_message(e) for e in branches))
    return InputError(_name(loc, prefix, flags) or "config", value, msg)
