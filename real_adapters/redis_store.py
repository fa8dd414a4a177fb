"""The Redis port over a redis-py client: a real ``redis.Redis`` or an in-process ``fakeredis``.

Every method returns ``Done``; a lost connection is ``Done(error=ServiceDown("redis"))``.
Integer values come back as ``int`` whatever the client's ``decode_responses`` is.

``key_prefix`` is put in front of every key (the flow's ``stock:gift`` becomes
``<prefix>stock:gift``) so that runs and tests sharing one server do not see each other.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import redis

from simulator.errors import ServiceDown
from simulator.ports import Done, hold_key

COMPONENT = "redis"
_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)  # BusyLoading is a ConnectionError

# Check-and-decrement as one atomic step (Redis runs a script with nothing in between).
# A missing key, a non-number or a value <= 0 means "nothing left": -1, and the key is left alone,
# unlike a bare DECR, which would create it at -1.
CHECK_AND_DECR = """
local left = tonumber(redis.call('GET', KEYS[1]))
if left == nil or left <= 0 then
  return -1
end
return redis.call('DECR', KEYS[1])
"""

# Reserve one unit for one message: KEYS[1] the counter, KEYS[2] the message's hold, ARGV[1]
# the caller.  A message that holds a unit already keeps it (fresh = 0) and the caller takes the
# hold over, so a redelivery after a crash between the decrement and the ledger commit reuses
# the unit instead of taking (and leaking) another.
RESERVE = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('SET', KEYS[2], ARGV[1])
  local level = tonumber(redis.call('GET', KEYS[1]))
  if level == nil or level < 0 then level = 0 end
  return {level, 0}
end
local left = tonumber(redis.call('GET', KEYS[1]))
if left == nil or left <= 0 then
  return {-1, 0}
end
left = redis.call('DECR', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1])
return {left, 1}
"""

# Give a message's unit back, only if the caller still owns its hold: a hold taken over by a
# concurrent copy of the message stays with that copy, and a repeated release does nothing.
# INCR before DEL (a script's earlier writes stay if a later command errors), and no INCR once
# the counter is gone (the sale's TTL ended it: INCR would reopen it at 1).
RELEASE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCR', KEYS[1])
end
redis.call('DEL', KEYS[2])
return 1
"""


def _value(raw: Any) -> Any:
    """Redis stores strings; give integers back as ``int``, other text as ``str``."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError:
            return raw
    if isinstance(raw, str):
        try:
            return int(raw)
        except ValueError:
            return raw
    return raw


class RedisPort:
    def __init__(self, client: redis.Redis, *, key_prefix: str = ""):
        self.client = client
        self.prefix = key_prefix
        # register_script runs EVALSHA and reloads the script on NOSCRIPT (the script cache is
        # empty after a Redis restart); it makes no call until first used
        self._check_and_decr = client.register_script(CHECK_AND_DECR)
        self._reserve = client.register_script(RESERVE)
        self._release = client.register_script(RELEASE)

    def key(self, name: str) -> str:
        return self.prefix + name

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Done:
        try:
            return Done(fn(*args, **kwargs))
        except _DOWN as exc:
            return Done(error=ServiceDown(COMPONENT, type(exc).__name__))

    # ------------------------------------------------------------------ port methods
    def get(self, key: str) -> Done:
        done = self._call(self.client.get, self.key(key))
        return done if done.error else Done(_value(done.value))

    def set(self, key: str, value: Any) -> Done:
        done = self._call(self.client.set, self.key(key), value)
        return done if done.error else Done(bool(done.value))

    def set_nx(self, key: str, value: Any, ex: float | None = None) -> Done:
        """SET key value NX [PX ms]: True if this call created the key."""
        px = None if ex is None else max(1, int(round(ex * 1000)))
        done = self._call(self.client.set, self.key(key), value, nx=True, px=px)
        return done if done.error else Done(bool(done.value))

    def decr(self, key: str) -> Done:
        # the flow's hottest Redis call: spelled out rather than through _call
        try:
            return Done(self.client.decr(self.prefix + key))
        except _DOWN as exc:
            return Done(error=ServiceDown(COMPONENT, type(exc).__name__))

    def decr_many(self, keys: Sequence[str]) -> Done:
        """DECR each key in order, all in one round trip (a pipeline without MULTI/EXEC):
        ``Done([new value, ...])``, the same values one ``decr`` per key would give.

        Not atomic: other clients' commands may run between these.  On ServiceDown some of the
        decrements may have been applied (as with a ``decr`` whose reply was lost).  A value
        that is not an integer raises ``redis.ResponseError``, as ``decr`` does, after the rest
        of the batch has run.
        """
        pipe = self.client.pipeline(transaction=False)
        prefix = self.prefix
        # ``pipe.decr(k)`` is ``execute_command("DECRBY", k, 1)`` behind a wrapper frame; queue
        # the same command directly (the same bytes on the wire, one call less per key)
        queue = pipe.execute_command
        for key in keys:
            queue("DECRBY", prefix + key, 1)
        try:
            return Done(pipe.execute())
        except _DOWN as exc:
            return Done(error=ServiceDown(COMPONENT, type(exc).__name__))

    def incr(self, key: str) -> Done:
        return self._call(self.client.incr, self.key(key))

    def expire(self, key: str, seconds: float) -> Done:
        done = self._call(self.client.pexpire, self.key(key), max(1, int(round(seconds * 1000))))
        return done if done.error else Done(bool(done.value))

    def ttl(self, key: str) -> Done:
        """Seconds left; -1 for a key with no expiry, -2 for a missing key (as Redis says)."""
        return self._call(self.client.ttl, self.key(key))

    def check_and_decr(self, key: str) -> Done:
        """The new value after an atomic decrement, or -1 when nothing was left (never below 0)."""
        done = self._script(self._check_and_decr, [self.key(key)])
        return done if done.error else Done(int(done.value))

    def reserve(self, key: str, msg_id: str, owner: str) -> Done:
        """``(left, fresh)``: take one unit for ``msg_id`` and hold it for ``owner``, or take
        over the hold the message already has (``fresh`` False)."""
        done = self._script(self._reserve, [self.key(key), self.key(hold_key(key, msg_id))], [owner])
        return done if done.error else Done((int(done.value[0]), bool(int(done.value[1]))))

    def release(self, key: str, msg_id: str, owner: str) -> Done:
        """Give ``msg_id``'s unit back if ``owner`` still owns its hold; False otherwise."""
        done = self._script(self._release, [self.key(key), self.key(hold_key(key, msg_id))], [owner])
        return done if done.error else Done(bool(int(done.value)))

    def _script(self, script: Any, keys: list[str], args: list[str] | None = None) -> Done:
        try:
            return self._call(script, keys=keys, args=args or [])
        except redis.exceptions.ResponseError as exc:
            if "unknown command" in str(exc).lower():
                # fakeredis without its Lua runtime: say what is missing instead of a Redis error
                raise RuntimeError("this Redis client cannot run Lua scripts; fakeredis needs the "
                                   "'lupa' package (pip install 'fakeredis[lua]')") from exc
            raise

    # ------------------------------------------------------------------ for the world and tests
    def delete(self, *keys: str) -> int:
        try:
            return int(self.client.delete(*(self.key(k) for k in keys))) if keys else 0
        except _DOWN as exc:
            raise ServiceDown(COMPONENT, type(exc).__name__) from None

    def clear(self, *, batch: int = 500, max_keys: int = 1_000_000) -> int:
        """Delete every key under this port's prefix (refuses to run without a prefix)."""
        if not self.prefix:
            raise ValueError("clear() needs a key_prefix: it will not empty a whole database")
        removed = 0
        try:
            pending: list[Any] = []
            for name in self._scan(batch):
                pending.append(name)
                if len(pending) >= batch:
                    removed += int(self.client.delete(*pending))
                    pending = []
                if removed + len(pending) >= max_keys:
                    break
            if pending:
                removed += int(self.client.delete(*pending))
        except _DOWN as exc:
            raise ServiceDown(COMPONENT, type(exc).__name__) from None
        return removed

    def _scan(self, batch: int) -> Iterable[Any]:
        pattern = self.prefix.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?") \
            .replace("[", "\\[") + "*"
        return self.client.scan_iter(match=pattern, count=batch)

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except _DOWN:
            return False

    def close(self) -> None:
        self.client.close()
