"""A SimPy model of one Redis server: one command thread, TTLs on the simulation clock, and
what a ``kill -9`` loses under each persistence setting.

What it keeps from Redis (see /work/shared/reliability-reference.md §1 P15-P18):

* commands run one at a time on a single thread (P15), so ``DECR`` and a Lua script are
  atomic while ``GET`` then ``SET`` from two clients can interleave and lose an update (P16).
  A command takes effect when the thread *starts* it; the client hears the answer half a
  round trip after the thread finishes.
* ``DECR`` of a missing key counts from 0 (so it gives -1), a non-integer value is an error,
  and the result must stay inside a signed 64-bit integer.
* durability (P17, P18): ``none`` loses the whole dataset on a crash, ``rdb`` the writes since
  the last snapshot (one every ``rdb_interval``), ``aof-everysec`` the writes since the last
  1 s fsync tick, ``aof-always`` nothing.

Persistence keeps no copy of the dataset: only an *undo log* (each key's value as of the last
durable point, recorded the first time the key is written after it) and a count of writes
since then.  Ticks are computed from the clock when a write arrives, so an idle server
schedules nothing and ``env.run()`` without ``until`` still ends.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import simpy

from simulator.errors import InputError, ServiceDown
from simulator.history import History
from simulator.sim.redis_scripts import Scripts
from simulator.sim.redis_values import (_MISSING, INT64_MAX, INT64_MIN, OVERFLOW, Value, _as_int,
                                        _check_key, _check_write)
from simulator.sim.servicepool import ServicePool

__all__ = ["Redis", "PERSISTENCE_MODES", "AOF_FSYNC_INTERVAL"]

PERSISTENCE_MODES = ("none", "rdb", "aof-everysec", "aof-always")
AOF_FSYNC_INTERVAL = 1.0  # appendfsync everysec
def _check_time(field: str, value: Any, *, positive: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise InputError(field, value, "a finite number of seconds " + ("> 0" if positive else ">= 0"))
    return float(value)


def _fail(event: simpy.Event, error: BaseException) -> simpy.Event:
    # defused: a client that was killed while waiting never looks, and SimPy must not crash
    event.defused = True
    event.fail(error)
    return event


class Redis(Scripts):
    def __init__(self, env: simpy.Environment, rng: np.random.Generator, *, name: str = "redis",
                 command_time: float = 0.00005, rtt: float = 0.0002, script_time: float = 0.0001,
                 persistence: str = "none", rdb_interval: float = 60.0, jitter: bool = True,
                 history: History | None = None):
        self.env = env
        self.rng = rng
        self.name = name
        self.command_time = _check_time(f"{name}.command_time", command_time)
        self.rtt = _check_time(f"{name}.rtt", rtt)
        self.script_time = _check_time(f"{name}.script_time", script_time)
        self.rdb_interval = _check_time(f"{name}.rdb_interval", rdb_interval, positive=True)
        if persistence not in PERSISTENCE_MODES:
            raise InputError(f"{name}.persistence", persistence, ", ".join(PERSISTENCE_MODES))
        self.persistence = persistence
        self.jitter = bool(jitter)
        self.history = history
        self.up = True
        self._data: dict[str, Value] = {}
        self._expires: dict[str, float] = {}  # absolute sim time, as Redis stores unix time
        self._thread = ServicePool(env, 1, name=f"{name}.thread")
        # requests not yet answered, in arrival order, so a crash fails them reproducibly
        self._pending: dict[simpy.Event, None] = {}
        # persistence window: see the module docstring
        self._origin = env.now
        self._period = 0
        self._undo: dict[str, tuple[Any, float | None]] = {}
        self._unsaved = 0
        self.commands = 0
        self.max_queue = 0
        self.crashes = 0
        self.lost_writes = 0

    # ------------------------------------------------------------------ port methods

    def get(self, key: str) -> simpy.Event:
        _check_key(key)
        return self._call(lambda: self._value_or_none(key))

    def set(self, key: str, value: Value, ex: float | None = None) -> simpy.Event:
        _check_write(key, value, ex)
        return self._call(lambda: self._write(key, value, ex))

    def set_nx(self, key: str, value: Value, ex: float | None = None) -> simpy.Event:
        _check_write(key, value, ex)
        return self._call(lambda: self._live(key) is _MISSING and self._write(key, value, ex))

    def incr(self, key: str) -> simpy.Event:
        _check_key(key)
        return self._call(lambda: self._add(key, 1))

    def decr(self, key: str) -> simpy.Event:
        _check_key(key)
        return self._call(lambda: self._add(key, -1))

    def decrby(self, key: str, n: int) -> simpy.Event:
        _check_key(key)
        if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= INT64_MAX:
            raise InputError(f"{self.name}.decrby", n, "a whole number > 0")
        return self._call(lambda: self._add(key, -n))

    def expire(self, key: str, seconds: float) -> simpy.Event:
        _check_key(key)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
            raise InputError(f"{self.name}.expire", seconds, "a finite number of seconds")
        return self._call(lambda: self._expire(key, seconds))

    def ttl(self, key: str) -> simpy.Event:
        _check_key(key)
        return self._call(lambda: self._ttl(key))

    def delete(self, key: str) -> simpy.Event:
        _check_key(key)
        return self._call(lambda: self._delete(key))

    # ------------------------------------------------------------------ inspection and seeding
    # Instant, outside the command thread: what a lesson's operator sees or sets up.

    def peek(self, key: str) -> Value | None:
        return self._value_or_none(key)

    def data_set(self, key: str, value: Value) -> None:
        """Seed a key (counts as a write for what a crash can lose)."""
        _check_write(key, value, None)
        self._write(key, value, None)

    def expire_now(self, key: str, seconds: float) -> bool:
        return self._expire(key, seconds)

    def keys(self) -> list[str]:
        self._purge_expired()
        return list(self._data)

    @property
    def dbsize(self) -> int:
        self._purge_expired()
        return len(self._data)

    @property
    def stats(self) -> dict[str, float]:
        return {"commands": self.commands, "busy_time": self._thread.busy_time,
                "max_queue": self.max_queue, "crashes": self.crashes, "lost_writes": self.lost_writes}

    def utilisation(self, horizon: float) -> float:
        return self._thread.utilisation(horizon)

    # ------------------------------------------------------------------ crash / restart

    def crash(self) -> None:
        """kill -9: every unanswered command fails, the dataset falls back to what was on disk."""
        if not self.up:
            return
        self.up = False
        self.crashes += 1
        for result in self._pending:
            _fail(result, ServiceDown(self.name, "crashed"))
        self._pending.clear()
        # queued commands never run; the one on the thread already took effect
        self._thread.fail_all(lambda: ServiceDown(self.name, "crashed"))
        lost, counters = self._roll_back()
        self.lost_writes += lost
        record: dict[str, Any] = {"persistence": self.persistence, "lost_writes": lost}
        if counters:
            record["counters_rolled_back"] = counters  # e.g. the stock decrements the disk never saw
        self._record("crash", record)

    def restart(self) -> None:
        if self.up:
            return
        self.up = True
        self._origin = self.env.now  # fsync ticks and snapshots count from the new start
        self._period = 0
        self._record("restart", {"keys": self.dbsize})

    # ------------------------------------------------------------------ the request path

    def _call(self, command: Callable[[], Any], mean: float | None = None) -> simpy.Event:
        result = self.env.event()
        if not self.up:
            return _fail(result, ServiceDown(self.name, "connection refused"))
        self._pending[result] = None
        service = self._sample(self.command_time if mean is None else mean)
        self._later(self.rtt / 2, lambda: self._arrive(result, command, service))
        return result

    def _arrive(self, result: simpy.Event, command: Callable[[], Any], service: float) -> None:
        if result.triggered:
            return  # failed by a crash while on the wire
        job = self._thread.submit(service, lambda: self._execute(command))
        self.max_queue = max(self.max_queue, self._thread.queued)
        job.callbacks.append(lambda done: self._served(result, done))

    def _execute(self, command: Callable[[], Any]) -> Any:
        self.commands += 1
        return command()

    def _served(self, result: simpy.Event, job: simpy.Event) -> None:
        job.defused = True  # its outcome is handed on to ``result`` (or dropped after a crash)
        if result.triggered:
            return
        self._later(self.rtt / 2, lambda: self._reply(result, job.ok, job.value))

    def _reply(self, result: simpy.Event, ok: bool, value: Any) -> None:
        if result.triggered:
            return
        del self._pending[result]
        if ok:
            result.succeed(value)
        else:
            result.fail(value)  # a command error (not an integer): the caller's bug to see

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        if delay > 0:
            self.env.timeout(delay).callbacks.append(lambda _e: action())
        else:
            action()

    def _sample(self, mean: float) -> float:
        return float(self.rng.exponential(mean)) if self.jitter and mean > 0 else mean

    # ------------------------------------------------------------------ commands (on the thread)

    def _live(self, key: str) -> Any:
        expires = self._expires.get(key)
        if expires is not None and self.env.now >= expires:
            del self._data[key], self._expires[key]  # lazy expiry, as Redis does on access
            return _MISSING
        return self._data.get(key, _MISSING)

    def _value_or_none(self, key: str) -> Value | None:
        value = self._live(key)
        return None if value is _MISSING else value

    def _write(self, key: str, value: Value, ex: float | None) -> bool:
        self._logged(key)
        self._data[key] = value
        if ex is None:
            self._expires.pop(key, None)  # a plain SET clears the TTL
        else:
            self._expires[key] = self.env.now + ex
        return True

    def _add(self, key: str, delta: int) -> int:
        current = self._live(key)
        number = (0 if current is _MISSING else _as_int(current)) + delta
        if not INT64_MIN <= number <= INT64_MAX:
            raise ValueError(OVERFLOW)
        self._logged(key)
        self._data[key] = number  # INCR/DECR keep the TTL
        return number

    def _expire(self, key: str, seconds: float) -> bool:
        if self._live(key) is _MISSING:
            return False
        self._logged(key)
        if seconds <= 0:  # Redis deletes a key given a non-positive TTL
            del self._data[key]
            self._expires.pop(key, None)
        else:
            self._expires[key] = self.env.now + seconds
        return True

    def _ttl(self, key: str) -> int:
        if self._live(key) is _MISSING:
            return -2
        expires = self._expires.get(key)
        if expires is None:
            return -1
        return math.floor(expires - self.env.now + 1e-9)  # the epsilon absorbs float noise

    def _delete(self, key: str) -> int:
        if self._live(key) is _MISSING:
            return 0
        self._logged(key)
        del self._data[key]
        self._expires.pop(key, None)
        return 1

    def _purge_expired(self) -> None:
        now = self.env.now
        for key in [k for k, t in self._expires.items() if now >= t]:
            del self._data[key], self._expires[key]

    # ------------------------------------------------------------------ persistence

    def _interval(self) -> float:
        return AOF_FSYNC_INTERVAL if self.persistence == "aof-everysec" else self.rdb_interval

    def _advance(self) -> None:
        """Forget the undo log once a tick has passed since its first write: it is on disk."""
        period = math.floor((self.env.now - self._origin) / self._interval())
        if period != self._period:
            self._period = period
            self._undo.clear()
            self._unsaved = 0

    def _logged(self, key: str) -> None:
        """Called before every write, with the key still holding its old value."""
        if self.persistence == "aof-always":
            return  # fsynced before the reply: nothing to lose
        if self.persistence != "none":
            self._advance()
            if key not in self._undo:
                self._undo[key] = (self._data.get(key, _MISSING), self._expires.get(key))
        self._unsaved += 1

    def _roll_back(self) -> tuple[int, dict[str, int]]:
        """Make the dataset what the disk holds; returns how many writes that undid and, for
        each integer key that survives with another value, by how much it went back up."""
        counters: dict[str, int] = {}
        if self.persistence == "aof-always":
            return 0, counters
        if self.persistence == "none":
            self._data.clear()
            self._expires.clear()
        else:
            self._advance()
            for key, (value, expires) in self._undo.items():
                now = self._data.get(key)
                if isinstance(value, int) and isinstance(now, int) and value != now:
                    counters[key] = value - now
                if value is _MISSING:
                    self._data.pop(key, None)
                    self._expires.pop(key, None)
                    continue
                self._data[key] = value
                if expires is None:
                    self._expires.pop(key, None)
                else:
                    self._expires[key] = expires
        lost, self._unsaved = self._unsaved, 0
        self._undo.clear()
        return lost, dict(sorted(counters.items()))

    def _record(self, f: str, value: Any) -> None:
        if self.history is not None:
            self.history.record("info", f, self.name, value)
