"""Dense storage for per-id state that must live until the end of a long run.

The checker has to remember every message until the final drain (lost and duplicated are only
known then), and the DB model every processed id.  Kept as Python objects that costs about a
kilobyte per message: the id string, a dict entry, a record object, a list and a namedtuple
per step holding boxed ints and floats.  Ids are almost always a prefix and a counter
(``m17``, ``user-17``), so this module stores them as the counter's position in flat arrays,
one table per prefix; anything that does not fit that shape goes to an ordinary dict or set,
so every id still works and every answer is the same.

``split_id`` decides the shape; ``StepCodec`` turns a chain step into three numbers and back.
"""

from __future__ import annotations

from array import array
from typing import Any, Iterable, Iterator

from .chains import Step

_DIGITS = "0123456789"
# A dense table is indexed by the counter itself, so a huge counter would allocate a huge
# table: past this slack beyond the current size an id is kept in the ordinary fallback.
_SLACK = 1 << 16


def split_id(text: Any) -> tuple[str, int] | None:
    """``"m17"`` -> ``("m", 17)``; None unless ``prefix + str(n)`` gives ``text`` back exactly.

    The round trip is what makes storing the number safe: no leading zeros, ASCII digits only
    (rstrip strips only those, so an id ending in another Unicode digit has no digits: refused),
    a positive counter and a prefix that does not itself end in a digit.
    """
    if type(text) is not str:
        return None
    prefix = text.rstrip(_DIGITS)
    digits = text[len(prefix):]  # only ASCII digits: rstrip removed nothing else
    if not digits or digits[0] == "0" or len(digits) > 15:
        return None
    return prefix, int(digits)


def grow(arrays: Iterable[Any], size: int) -> None:
    """Extend every array (or bytearray) with zeros to hold index ``size - 1``.

    Grows by an eighth at least, so a run that adds ids one by one pays amortised O(1) and
    over-allocates little (a doubling would cost up to twice the memory at the peak).
    """
    for arr in arrays:
        have = len(arr)
        if have >= size:
            continue
        extra = max(size - have, have // 8, 1024)
        arr.frombytes(bytes(extra * arr.itemsize)) if isinstance(arr, array) else arr.extend(bytes(extra))


def fits(n: int, have: int) -> bool:
    return n < have + _SLACK or n < 2 * have


class StepCodec:
    """A step as (index, time, code): ``code`` numbers its (type, f, process, where, detail).

    Those five fields take few distinct values in a run (a handful of op kinds times the
    processes), so each combination is kept once; 0 means "no step".  Only steps whose index
    is an ``int`` and time a ``float`` are encoded, so decoding gives equal values back.
    """

    def __init__(self) -> None:
        self._codes: dict[tuple[Any, ...], int] = {}
        self._parts: list[tuple[Any, ...]] = [()]

    def code(self, step: Step) -> int:
        """The step's code, or 0 when the step cannot be stored exactly as three numbers."""
        if type(step.index) is not int or type(step.time) is not float or \
                not -(1 << 62) < step.index < 1 << 62:
            return 0
        key = (step.type, step.f, step.process, step.where, step.detail)
        found = self._codes.get(key)
        if found is None:
            found = self._codes[key] = len(self._parts)
            self._parts.append(key)
        return found

    def step(self, index: int, time: float, code: int, msg_id: str | None) -> Step:
        type_, f, process, where, detail = self._parts[code]
        return Step(index, time, type_, f, process, where, msg_id, detail)


class IdSet:
    """A set of ids (strings or anything hashable): one bit per counter for ``prefix + n`` ids.

    Supports what the DB model's processed table needs: ``add``, ``update``, ``in`` and
    ``len``.  Iteration order is not kept (nothing iterates that table).
    """

    def __init__(self) -> None:
        self._bits: dict[str, bytearray] = {}
        self._other: set[Any] = set()
        self._count = 0

    def __contains__(self, item: Any) -> bool:
        parts = split_id(item)
        if parts is not None:
            bits = self._bits.get(parts[0])
            n = parts[1]
            if bits is not None and (n >> 3) < len(bits) and bits[n >> 3] >> (n & 7) & 1:
                return True
        return item in self._other

    def add(self, item: Any) -> None:
        parts = split_id(item)
        if parts is not None:
            prefix, n = parts
            bits = self._bits.get(prefix)
            if bits is None:
                bits = self._bits[prefix] = bytearray()
            byte, bit = n >> 3, 1 << (n & 7)
            if byte < len(bits) and bits[byte] & bit:
                return  # already there
            if (byte < len(bits) or fits(byte, len(bits))) and item not in self._other:
                if byte >= len(bits):
                    grow((bits,), byte + 1)
                bits[byte] |= bit
                self._count += 1
                return
        if item not in self._other:
            self._other.add(item)
            self._count += 1

    def update(self, items: Iterable[Any]) -> None:
        for item in items:
            self.add(item)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Any]:
        yield from self._other
        for prefix, bits in self._bits.items():
            for i, byte in enumerate(bits):
                for b in range(8 if byte else 0):
                    if byte >> b & 1:
                        yield f"{prefix}{i * 8 + b}"
