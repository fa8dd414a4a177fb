"""One classic RabbitMQ queue: its arguments, its ready messages, and dead-letter headers.

Ready messages live in a binary heap keyed by ``(-priority, publish_seq)``.  Without
``x-max-priority`` every priority is 0, so the heap is plain FIFO by publish order.  Because
the key never changes, a requeued message (nack, reject, consumer death, broker restart)
slides back into its original position, which is what RabbitMQ does "if possible".  Every
operation is O(log n), so a backlog of 10^5 stays cheap.

Unacked messages are not here: the channel that holds them keeps them until ack or requeue.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from simulator.errors import InputError
from simulator.messages import Message
from simulator.routing import MAX_SHORTSTR_BYTES

if TYPE_CHECKING:
    from simulator.sim.broker import Channel

OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
QUEUE_ARGUMENTS = ("x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
                   "x-max-priority", "x-max-length", "x-overflow")
DEATH_REASONS = ("rejected", "expired", "maxlen")


@dataclass(frozen=True, slots=True)
class QueueArgs:
    """The parsed, validated ``x-`` arguments of a queue."""

    ttl: float | None = None          # seconds (declared in ms)
    dlx: str | None = None            # None: no dead-lettering; "" is the default exchange
    dl_routing_key: str | None = None
    max_priority: int | None = None
    max_length: int | None = None
    overflow: str = "drop-head"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shortstr(field_name: str, value: Any) -> str:
    if not isinstance(value, str) or len(value.encode()) > MAX_SHORTSTR_BYTES:
        raise InputError(field_name, value, f"a string of at most {MAX_SHORTSTR_BYTES} bytes")
    return value


def validate_queue_name(name: Any) -> None:
    _shortstr("queue", name)
    if name == "":
        raise InputError("queue", name, "a non-empty name (server-named queues are not modelled)")
    if name.startswith("amq."):
        raise InputError("queue", name, "a name not starting with 'amq.' (reserved, 403 in RabbitMQ)")


def parse_queue_arguments(arguments: Mapping[str, Any] | None) -> QueueArgs:
    """Validate a queue's arguments the way RabbitMQ would, plus reject what we do not model."""
    args = dict(arguments or {})
    for key in args:
        if key not in QUEUE_ARGUMENTS:
            raise InputError("queue argument", key, ", ".join(QUEUE_ARGUMENTS))
    ttl_ms = args.get("x-message-ttl")
    if ttl_ms is not None and (not _is_int(ttl_ms) or ttl_ms < 0):
        raise InputError("x-message-ttl", ttl_ms, "a whole number of milliseconds >= 0")
    dlx = args.get("x-dead-letter-exchange")
    if dlx is not None:
        _shortstr("x-dead-letter-exchange", dlx)
    dlrk = args.get("x-dead-letter-routing-key")
    if dlrk is not None:
        _shortstr("x-dead-letter-routing-key", dlrk)
        if dlx is None:
            # RabbitMQ: 406 PRECONDITION_FAILED, a routing key without an exchange means nothing
            raise InputError("x-dead-letter-routing-key", dlrk, "only together with x-dead-letter-exchange")
    max_priority = args.get("x-max-priority")
    if max_priority is not None and (not _is_int(max_priority) or not 0 <= max_priority <= 255):
        raise InputError("x-max-priority", max_priority, "a whole number from 0 to 255")
    max_length = args.get("x-max-length")
    if max_length is not None and (not _is_int(max_length) or max_length < 0):
        raise InputError("x-max-length", max_length, "a whole number >= 0")
    overflow = args.get("x-overflow", "drop-head")
    if overflow not in OVERFLOW_MODES:
        raise InputError("x-overflow", overflow, ", ".join(OVERFLOW_MODES))
    return QueueArgs(ttl=None if ttl_ms is None else ttl_ms / 1000.0, dlx=dlx,
                     dl_routing_key=dlrk, max_priority=max_priority, max_length=max_length,
                     overflow=overflow)


@dataclass(slots=True, eq=False)
class QueuedMessage:
    """A message inside one queue (each queue a message is routed to gets its own)."""

    message: Message
    seq: int                      # broker-wide publish order: the FIFO tie-breaker
    priority: int                 # effective priority (0 without x-max-priority)
    expires_at: float             # absolute time; inf without a TTL
    on_disk: bool = False         # persistent copy flushed by an fsync tick
    delivered: bool = False       # handed out before: the next delivery is a redelivery
    death_reason: str | None = None


@dataclass(eq=False)
class AmqpQueue:
    name: str
    durable: bool
    args: QueueArgs
    raw_arguments: dict[str, Any]
    consumers: list[Channel] = field(default_factory=list)
    dispatching: bool = False     # one delivery in flight at a time (a queue is one process)
    timer_at: float | None = None  # when the armed head-expiry timer fires
    deleted: bool = False
    _heap: list[tuple[int, int, QueuedMessage]] = field(default_factory=list)
    _rr: int = 0                  # round-robin cursor into consumers

    def __len__(self) -> int:
        return len(self._heap)

    def effective_priority(self, priority: int) -> int:
        if self.args.max_priority is None:
            return 0  # RabbitMQ ignores priority on a queue declared without x-max-priority
        return min(max(priority, 0), self.args.max_priority)

    def expiry(self, now: float, message: Message) -> float:
        """Queue TTL and per-message TTL: the lower one wins."""
        ttls = [t for t in (self.args.ttl, message.expiration) if t is not None]
        return now + min(ttls) if ttls else math.inf

    def push(self, item: QueuedMessage) -> None:
        heapq.heappush(self._heap, (-item.priority, item.seq, item))

    def peek(self) -> QueuedMessage | None:
        return self._heap[0][2] if self._heap else None

    def pop(self) -> QueuedMessage:
        return heapq.heappop(self._heap)[2]

    def over_length(self, extra: int = 0) -> bool:
        limit = self.args.max_length
        return limit is not None and len(self._heap) + extra > limit

    def remove_where(self, drop: Callable[[QueuedMessage], bool]) -> list[QueuedMessage]:
        """Remove every ready message ``drop`` selects (O(n): only used at a crash)."""
        kept = [entry for entry in self._heap if not drop(entry[2])]
        gone = [entry[2] for entry in self._heap if drop(entry[2])]
        heapq.heapify(kept)
        self._heap = kept
        return sorted(gone, key=lambda it: it.seq)

    def clear(self) -> list[QueuedMessage]:
        gone = sorted((entry[2] for entry in self._heap), key=lambda it: it.seq)
        self._heap = []
        return gone

    def next_consumer(self) -> Channel | None:
        """Round-robin over the consumers that have prefetch room."""
        n = len(self.consumers)
        for i in range(n):
            ch = self.consumers[(self._rr + i) % n]
            if ch.has_room():
                self._rr = (self._rr + i + 1) % n
                return ch
        return None


def dead_letter_copy(message: Message, queue: str, reason: str, exchange: str,
                     routing_key: str, now: float) -> Message:
    """The message as the DLX receives it: same ids, an ``x-death`` entry, no TTL.

    RabbitMQ removes the per-message expiration so the copy does not expire again at once,
    and keeps one ``x-death`` entry per (queue, reason) with a count, newest first.
    """
    deaths = [dict(d) for d in message.headers.get("x-death", [])]
    entry = next((d for d in deaths if d.get("queue") == queue and d.get("reason") == reason), None)
    if entry is None:
        entry = {"count": 0, "reason": reason, "queue": queue, "exchange": message.exchange,
                 "routing-keys": [message.routing_key]}
        if message.expiration is not None:
            entry["original-expiration"] = message.expiration
    else:
        deaths.remove(entry)
    entry["count"] += 1
    entry["time"] = now
    headers = {**message.headers, "x-death": [entry, *deaths]}
    return replace(message, headers=headers, exchange=exchange, routing_key=routing_key,
                   expiration=None)


def is_dead_letter_cycle(message: Message, target: str) -> bool:
    """True when ``target`` was already left by a death and no death was a rejection.

    RabbitMQ drops such a message rather than letting it circle forever on TTL or max-length
    alone; a cycle that includes a client rejection is allowed.
    """
    deaths = message.headers.get("x-death", [])
    if not any(d.get("queue") == target for d in deaths):
        return False
    return not any(d.get("reason") == "rejected" for d in deaths)
