"""What a Redis value and key may be in the model, and how a value reads as an integer.

Redis's own rules: integers are signed 64-bit, written without spaces, '+' or leading zeros;
keys and values given by a caller are checked before a command is queued.
"""

from __future__ import annotations

import math
import re
from typing import Any

from simulator.errors import InputError

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
NOT_AN_INTEGER = "ERR value is not an integer or out of range"  # Redis's own wording
OVERFLOW = "ERR increment or decrement would overflow"
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")  # Redis accepts no spaces, no '+', no leading zeros
_MISSING = object()

Value = int | str


def _as_int(value: Value) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        number = int(value)
        if INT64_MIN <= number <= INT64_MAX:
            return number
    raise ValueError(NOT_AN_INTEGER)


def _check_write(key: Any, value: Any, ex: Any) -> None:
    _check_key(key)
    _check_value(value)
    _check_ex(ex)


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise InputError("redis.key", key, "a string")


def _check_value(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InputError("redis.value", value, "an int or a string")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise InputError("redis.value", value, "an integer within the signed 64-bit range")


def _check_ex(ex: Any) -> None:
    if ex is None:
        return
    if isinstance(ex, bool) or not isinstance(ex, int | float) or not math.isfinite(ex) or ex <= 0:
        raise InputError("redis.ex", ex, "None or a number of seconds > 0")
