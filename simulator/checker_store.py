"""The checker's per-message and per-key state, with a dense form for settled messages.

A message the checker has seen dequeued once is, in a healthy run, finished: nothing more
will happen to it, but it must be remembered until the end (a later duplicate, or a final
example).  ``ColdMessages`` keeps such a message as a few numbers in flat arrays (flags, its
first-seen order and at most two steps as index/time/code) instead of a ``_Msg`` object with a
list of namedtuples: about 50 bytes instead of about 700.  Any later op for it brings the
exact same ``_Msg`` back (``pop``), so the checker's logic never sees the difference.

``BestByKey`` does the same for the per-key order state (highest seq and its dequeue step).
Ids that are not ``prefix + counter`` stay in ordinary dicts (see ``compact.split_id``).
"""

from __future__ import annotations

import heapq
from array import array
from typing import Any, Iterator

from .chains import Step
from .compact import StepCodec, fits, grow, split_id

_COLD, _GRANTED = 0x80, 0x40  # state byte: present, one grant seen; the low 6 bits are flags


class _Msg:
    __slots__ = ("flags", "dq", "grants", "steps", "pinned", "order")

    def __init__(self, order: int) -> None:
        self.flags = 0
        self.dq = 0  # dequeue ok ops seen
        self.grants = 0  # grant ok ops seen
        self.steps: list[Step] = []
        self.pinned = 0  # steps[:pinned] survive eviction (kept when first dequeued)
        self.order = order  # when the checker first saw it: final examples go in this order


SLOTS = 4  # steps a dense message can hold: its pinned delivery and dequeue, and two more
# (with publisher confirms the "enqueue ok" and "submit ok" often come after the dequeue)
_U32 = 1 << 32


class _MsgTable:
    """Messages of one id prefix, indexed by the id's counter.

    A step is stored as its index relative to the message's first step (4 bytes), its time
    (8) and its code (2): 14 bytes instead of a 120-byte namedtuple and its boxed numbers.
    Most messages have two steps; a third and fourth go to extension arrays shared by the
    table (``ext`` holds where, plus one), so the common case pays for two slots only.
    """

    __slots__ = ("state", "shape", "order", "base", "ext", "delta", "time", "code",
                 "ext_delta", "ext_time", "ext_code")

    def __init__(self) -> None:
        self.state = bytearray()
        self.shape = bytearray()  # pinned << 4 | number of steps
        self.order, self.base, self.ext = array("I"), array("I"), array("I")
        self.delta = [array("i") for _ in range(2)]
        self.time = [array("d") for _ in range(2)]
        self.code = [array("H") for _ in range(2)]
        # appended to; a slot given up when its message is brought back is not reused
        self.ext_delta = [array("i") for _ in range(SLOTS - 2)]
        self.ext_time = [array("d") for _ in range(SLOTS - 2)]
        self.ext_code = [array("H") for _ in range(SLOTS - 2)]

    def arrays(self) -> list[Any]:
        return [self.state, self.shape, self.order, self.base, self.ext, *self.delta, *self.time,
                *self.code]


class ColdMessages:
    """Settled messages (one dequeue, at most one grant, at most ``SLOTS`` steps), dense."""

    def __init__(self, codec: StepCodec) -> None:
        self._codec = codec
        self._tables: dict[str, _MsgTable] = {}
        self.count = 0

    def put(self, msg_id: str, msg: _Msg) -> bool:
        """Store ``msg`` densely if it fits exactly; False leaves it to the caller's dict."""
        steps = msg.steps
        count = len(steps)
        if msg.dq != 1 or msg.grants > 1 or count > SLOTS or msg.pinned > count \
                or msg.flags >= _GRANTED or not 0 <= msg.order < _U32:
            return False
        parts = split_id(msg_id)
        if parts is None:
            return False
        code = self._codec.code
        codes = [code(s) for s in steps]
        base = steps[0].index if count else 0
        if count and (0 in codes or max(codes) > 0xFFFF or not 0 <= base < _U32):
            return False
        for s in steps:
            if s.msg_id != msg_id or not -(1 << 31) <= s.index - base < 1 << 31:
                return False
        prefix, n = parts
        table = self._tables.get(prefix)
        if table is None:
            table = self._tables[prefix] = _MsgTable()
        if n >= len(table.state):
            if not fits(n, len(table.state)):
                return False
            grow(table.arrays(), n + 1)
        if count > 2 and len(table.ext_time[0]) + 1 >= _U32:
            return False
        table.state[n] = _COLD | (_GRANTED if msg.grants else 0) | msg.flags
        table.shape[n] = msg.pinned << 4 | count
        table.order[n], table.base[n], table.ext[n] = msg.order, base, 0
        if count:
            s = steps[0]
            table.delta[0][n], table.time[0][n], table.code[0][n] = s.index - base, s.time, codes[0]
        if count > 1:
            s = steps[1]
            table.delta[1][n], table.time[1][n], table.code[1][n] = s.index - base, s.time, codes[1]
        if count > 2:
            table.ext[n] = len(table.ext_time[0]) + 1
            for k in range(SLOTS - 2):
                s = steps[k + 2] if k + 2 < count else None
                table.ext_delta[k].append(s.index - base if s else 0)
                table.ext_time[k].append(s.time if s else 0.0)
                table.ext_code[k].append(codes[k + 2] if s else 0)
        self.count += 1
        return True

    def _decode(self, table: _MsgTable, n: int, msg_id: str) -> _Msg:
        state, shape, base = table.state[n], table.shape[n], table.base[n]
        msg = _Msg(table.order[n])
        msg.flags, msg.dq, msg.grants = state & 0x3F, 1, 1 if state & _GRANTED else 0
        step = self._codec.step
        count = shape & 0xF
        steps = msg.steps = [step(base + table.delta[k][n], table.time[k][n], table.code[k][n], msg_id)
                             for k in range(min(count, 2))]
        if count > 2:
            e = table.ext[n] - 1
            steps += [step(base + table.ext_delta[k][e], table.ext_time[k][e], table.ext_code[k][e], msg_id)
                      for k in range(count - 2)]
        msg.pinned = shape >> 4
        return msg

    def pop(self, msg_id: Any) -> _Msg | None:
        """The stored message as the ``_Msg`` it was (removed from here), or None."""
        if not self.count:
            return None
        parts = split_id(msg_id)
        if parts is None:
            return None
        table = self._tables.get(parts[0])
        n = parts[1]
        if table is None or n >= len(table.state) or not table.state[n]:
            return None
        msg = self._decode(table, n, msg_id)
        table.state[n] = 0
        self.count -= 1
        return msg

    def ordered(self) -> Iterator[tuple[int, str, _Msg]]:
        """Every stored message as (order, msg_id, a decoded copy), oldest first."""
        if not self.count:
            return iter(())
        return heapq.merge(*(self._table_ordered(p, t) for p, t in self._tables.items()))

    def _table_ordered(self, prefix: str, table: _MsgTable) -> Iterator[tuple[int, str, _Msg]]:
        import numpy as np  # only when examples are picked from a big run

        present = np.flatnonzero(np.frombuffer(bytes(table.state), dtype=np.uint8))
        orders = np.frombuffer(table.order.tobytes(), dtype=f"u{table.order.itemsize}")[present]
        for n in present[np.argsort(orders, kind="stable")].tolist():
            msg_id = f"{prefix}{n}"
            msg = self._decode(table, n, msg_id)
            yield msg.order, msg_id, msg


class _KeyTable:
    __slots__ = ("present", "seq", "index", "time", "code", "msg")

    def __init__(self) -> None:
        self.present = bytearray()  # 0: absent; else 1 + the number of the step's msg_id prefix
        self.seq, self.index, self.time = array("i"), array("I"), array("d")
        self.code, self.msg = array("H"), array("I")

    def arrays(self) -> tuple[Any, ...]:
        return (self.present, self.seq, self.index, self.time, self.code, self.msg)


class BestByKey:
    """key -> (highest seq seen, the dequeue step that had it), dense for ``prefix + n`` keys."""

    def __init__(self, codec: StepCodec) -> None:
        self._codec = codec
        self._tables: dict[str, _KeyTable] = {}
        self._other: dict[Any, tuple[Any, Step]] = {}
        self._prefixes: list[str] = []  # msg_id prefixes, numbered from 1 in ``present``
        self._last: tuple[Any, Any] = (None, None)  # (key, split_id(key)) of the last get

    def get(self, key: Any) -> tuple[Any, Step] | None:
        parts = split_id(key)
        self._last = (key, parts)  # the checker's put follows its get for the same key
        if parts is not None:
            table = self._tables.get(parts[0])
            n = parts[1]
            if table is not None and n < len(table.present) and table.present[n]:
                msg_id = f"{self._prefixes[table.present[n] - 1]}{table.msg[n]}"
                return table.seq[n], self._codec.step(table.index[n], table.time[n], table.code[n], msg_id)
        return self._other.get(key)

    def put(self, key: Any, seq: Any, step: Step) -> None:
        if self._put_dense(key, seq, step):
            if self._other:
                self._other.pop(key, None)
            return
        parts = split_id(key)
        table = self._tables.get(parts[0]) if parts else None
        if table is not None and parts[1] < len(table.present):
            table.present[parts[1]] = 0  # the key now lives in the dict
        self._other[key] = (seq, step)

    def _put_dense(self, key: Any, seq: Any, step: Step) -> bool:
        last_key, parts = self._last
        if last_key is not key:
            parts = split_id(key)
        mparts = split_id(step.msg_id)
        if parts is None or mparts is None or type(seq) is not int or not -(1 << 31) <= seq < 1 << 31:
            return False
        code = self._codec.code(step)
        if not 0 < code <= 0xFFFF or not 0 <= step.index < _U32 or mparts[1] >= _U32:
            return False
        if mparts[0] not in self._prefixes:
            if len(self._prefixes) >= 255:
                return False
            self._prefixes.append(mparts[0])
        prefix, n = parts
        table = self._tables.get(prefix)
        if table is None:
            table = self._tables[prefix] = _KeyTable()
        if n >= len(table.present):
            if not fits(n, len(table.present)):
                return False
            grow(table.arrays(), n + 1)
        table.present[n] = self._prefixes.index(mparts[0]) + 1
        table.seq[n], table.index[n], table.time[n] = seq, step.index, step.time
        table.code[n], table.msg[n] = code, mparts[1]
        return True
