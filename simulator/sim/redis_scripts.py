"""The Lua scripts MQ Lab runs on Redis, as the model runs them: whole, on the command thread.

A script is atomic because Redis runs nothing else while it runs; the model gets that by
executing the script body as one command on the single thread (``Redis._call``).

``reserve``/``release`` keep a *hold* per message (``<key>:hold:<msg_id>``, naming its owner)
beside the counter.  A consumer that dies after taking a unit and before committing its ledger
row leaves the hold behind; the redelivered message finds it, takes it over and goes on with
the same unit instead of taking a second one, so no unit leaks and none is counted twice
(invariants 4 and 16).  Only the hold's current owner can give the unit back: a delivery whose
hold was taken over by a concurrent copy of its message must not return a unit that copy may
have granted.
"""

from __future__ import annotations

from typing import Any, Callable

import simpy

from simulator.ports import hold_key
from simulator.sim.redis_values import _MISSING, _as_int, _check_key


class Scripts:
    """Mixed into ``Redis``: the script commands, on top of its plain commands."""

    script_time: float
    _call: Callable[..., simpy.Event]
    _live: Callable[[str], Any]
    _add: Callable[[str, int], int]
    _write: Callable[[str, Any, float | None], bool]
    _delete: Callable[[str], int]

    def check_and_decr(self, key: str) -> simpy.Event:
        """The Lua script: -1 (and no write) when the value is missing or <= 0, else DECR."""
        _check_key(key)
        return self._call(lambda: self._check_and_decr(key), self.script_time)

    def reserve(self, key: str, msg_id: str, owner: str) -> simpy.Event:
        """The reservation script: ``(left, fresh)``.

        A message whose hold exists already keeps its unit: ``owner`` takes the hold over and
        the answer is ``(level now, False)``, with no second decrement.  Otherwise one unit
        moves from ``key`` to the hold (``(left, True)``), or ``(-1, False)`` if none is left.
        """
        _check_key(key)
        return self._call(lambda: self._reserve(key, hold_key(key, msg_id), owner), self.script_time)

    def release(self, key: str, msg_id: str, owner: str) -> simpy.Event:
        """The release script: if ``owner`` still owns the message's hold, drop it and give the
        unit back (True); a hold taken over by a redelivery stays (False)."""
        _check_key(key)
        return self._call(lambda: self._release(key, hold_key(key, msg_id), owner), self.script_time)

    # ------------------------------------------------------------------ on the thread

    def _check_and_decr(self, key: str) -> int:
        current = self._live(key)
        if current is _MISSING or _as_int(current) <= 0:
            return -1
        return self._add(key, -1)

    def _reserve(self, key: str, hold: str, owner: str) -> tuple[int, bool]:
        if self._live(hold) is not _MISSING:
            self._write(hold, owner, None)
            level = self._live(key)
            return (0 if level is _MISSING else max(_as_int(level), 0)), False
        left = self._check_and_decr(key)
        if left < 0:
            return -1, False
        self._write(hold, owner, None)
        return left, True

    def _release(self, key: str, hold: str, owner: str) -> bool:
        if self._live(hold) != owner:
            return False
        if self._live(key) is not _MISSING:  # an ended sale (TTL) is not reopened
            self._add(key, 1)
        self._delete(hold)
        return True
