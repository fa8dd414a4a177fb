"""The history: Jepsen-style operations that both worlds record and one checker reads.

Every operation has a ``type`` (``invoke`` / ``ok`` / ``fail`` / ``info``), a function ``f``,
the ``process`` that did it, the ``time`` it happened (simulated or wall-clock seconds), and
where it applies the ``msg_id``, ``corr_id`` (correlation id) and ``component``.

The vocabulary of ``f`` (what the checker understands):

============== ===================================================================================
``f``          meaning
============== ===================================================================================
stock-init     the event opens; ``value={"stock": N}`` is the number of vouchers on offer
submit         a client's survey submission reaches the API (invoke), is accepted with 200 (ok),
               refused (fail) or times out so the client cannot tell (info)
save           the submission row is written to the DB (ok = committed)
enqueue        a producer publishes a message: ok = the broker confirmed it (or, with confirms off,
               the publish call returned), fail = nack / returned unroutable, info = no answer
deliver        the broker hands a message to a consumer; ``value={"redelivered": b, "ack": mode}``
dequeue        a consumer is finished with a message (the Jepsen dequeue); ``value={"outcome": o}``
               where o is granted / sold_out / duplicate / invalid / drained / failed
grant          a voucher row is committed to the ledger for ``msg_id``; ``value={"user": u}``
stock          a stock decrement took effect; ``value={"left": n}``
compensate     a stock decrement was given back (INCR) after a later step failed
send           the voucher gateway was asked to send (ok / fail)
ack            a delivery was acknowledged (ok) or the ack was lost on the way (fail)
crash          a component died (``type="info"``, ``process`` names it)
restart        a component came back (``type="info"``)
reseed         the Redis stock key was rebuilt; ``value={"stock": n, "from": "ledger"|"full"}``
============== ===================================================================================

Ordering events carry ``value={"key": k, "seq": s}`` on ``enqueue`` and ``dequeue`` so the
checker can count per-key inversions.

Operations are written to *sinks* as they happen: a SHA-256 of the canonical JSON lines
(``history_sha256``), the streaming checker, and optionally a bounded list kept for tracing
and export.  Nothing grows without bound unless the caller asks to keep every operation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from json import encoder as _json_encoder
from typing import Any, Callable, Iterable, Iterator, Protocol

OP_TYPES = ("invoke", "ok", "fail", "info")


def _make_encoder() -> Any:
    """The C encoder ``json.dumps(obj, sort_keys=True, separators=(",", ":"))`` builds, built once.

    ``json.dumps`` makes a new encoder object per call, which is most of its cost for a small
    dict; every op is encoded once for the history hash, so this is reused instead.  The
    arguments are exactly the ones ``JSONEncoder.iterencode`` passes, so the bytes are the same.
    """
    make = _json_encoder.c_make_encoder
    if make is None:  # no C accelerator (another Python): json.dumps is used
        return None
    return make({}, json.JSONEncoder().default, _json_encoder.encode_basestring_ascii, None,
                ":", ",", True, False, True)


_encode = _make_encoder()


def canonical_json(d: dict[str, Any]) -> str:
    """``json.dumps(d, sort_keys=True, separators=(",", ":"))``, with the encoder reused."""
    global _encode
    if _encode is not None:
        try:
            return "".join(_encode(d, 0))
        except Exception:  # noqa: BLE001 - json.dumps below raises the error callers expect
            _encode = _make_encoder()  # its circular-reference memo may keep entries now
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


@dataclass(slots=True, frozen=True)
class Op:
    index: int
    time: float
    type: str
    f: str
    process: str
    value: Any = None
    msg_id: str | None = None
    corr_id: str | None = None
    component: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"index": self.index, "time": round(self.time, 9), "type": self.type, "f": self.f,
               "process": self.process}
        for name in ("value", "msg_id", "corr_id", "component"):
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        return out

    def to_json(self) -> str:
        """Canonical form: sorted keys, no spaces; the same op always gives the same bytes."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Op":
        return cls(index=int(d["index"]), time=float(d["time"]), type=d["type"], f=d["f"],
                   process=d["process"], value=d.get("value"), msg_id=d.get("msg_id"),
                   corr_id=d.get("corr_id"), component=d.get("component"))


class Sink(Protocol):
    def __call__(self, op: Op) -> None: ...


class History:
    """Records operations with a clock and passes each one to its sinks.

    ``clock`` is a zero-argument callable giving the current time: ``env.now`` wrapped in a
    lambda in the SimPy world, a monotonic wall clock in the real world.
    ``keep`` is how many operations to keep in memory (``None`` keeps all, ``0`` none).
    """

    def __init__(self, clock: Callable[[], float], *, keep: int | None = 0,
                 sinks: Iterable[Sink] = ()):
        self._clock = clock
        self._hash = hashlib.sha256()
        self._sinks = list(sinks)
        self._keep = keep
        self.ops: list[Op] = []
        self.count = 0
        self.dropped = 0

    def add_sink(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def record(self, type: str, f: str, process: str, value: Any = None, *,
               msg_id: str | None = None, corr_id: str | None = None,
               component: str | None = None, time: float | None = None) -> Op:
        op = Op(self.count, self._clock() if time is None else time, type, f, process, value,
                msg_id, corr_id, component)
        self.count += 1
        self._hash.update(op.to_json().encode())
        self._hash.update(b"\n")
        if self._keep is None or len(self.ops) < self._keep:
            self.ops.append(op)
        else:
            self.dropped += 1
        for sink in self._sinks:
            sink(op)
        return op

    def sha256(self) -> str:
        return self._hash.hexdigest()

    def to_jsonl(self) -> Iterator[str]:
        for op in self.ops:
            yield op.to_json()


def read_jsonl(lines: Iterable[str]) -> list[Op]:
    return [Op.from_dict(json.loads(line)) for line in lines if line.strip()]
