"""The consumer side of the broker model: channels, dispatch, acks, TTL and dead-lettering.

``QueueDispatch`` is the half of ``Broker`` that moves messages through queues once they
are routed; ``simulator.sim.broker`` adds exchanges, publishing, confirms and crashes.

Dispatch follows RabbitMQ: a queue is one process, so it hands out one delivery at a time
(``deliver_latency`` each), round-robin among its consumers that have prefetch room.  The
broker *pushes*: deliveries wait in the channel's buffer (the client library's buffer) until
``get()`` takes them, so an auto-ack consumer that dies loses its whole buffer (P4).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import simpy

from simulator.errors import ChannelClosed
from simulator.messages import Delivery, Message
from simulator.sim.amqp_queue import AmqpQueue, QueuedMessage, dead_letter_copy, is_dead_letter_cycle


def fail_event(event: simpy.Event, error: BaseException) -> simpy.Event:
    # Defused: a waiter that was killed (kill -9) never sees it, and SimPy must not crash.
    event.defused = True
    event.fail(error)
    return event


class Channel:
    """One consumer on one queue (``basic.consume`` on its own channel).

    Every manual-ack delivery is in ``_unacked`` from the moment it leaves the queue (still
    on the wire, buffered, or being processed) until it is acked, nacked or requeued.
    """

    def __init__(self, broker: QueueDispatch, queue: AmqpQueue, consumer_tag: str, prefetch: int,
                 auto_ack: bool):
        self._broker = broker
        self._queue = queue
        self.consumer_tag = consumer_tag
        self.prefetch = prefetch
        self.auto_ack = auto_ack
        self.open = True
        self._next_tag = 0
        self._unacked: dict[int, tuple[QueuedMessage, Delivery]] = {}
        self._buffer: deque[Delivery] = deque()
        self._waiters: deque[simpy.Event] = deque()

    @property
    def unacked_count(self) -> int:
        return len(self._unacked)

    @property
    def buffered(self) -> int:
        """Deliveries that reached the consumer but that it has not taken yet."""
        return len(self._buffer)

    def has_room(self) -> bool:
        # RabbitMQ ignores prefetch for auto-ack consumers: they take as fast as it sends.
        return self.auto_ack or self.prefetch == 0 or len(self._unacked) < self.prefetch

    def get(self) -> simpy.Event:
        """The next delivery; yield it at once (an event nobody waits on is skipped)."""
        event = self._broker.env.event()
        if not self.open:
            return fail_event(event, ChannelClosed(self._broker.name, f"channel {self.consumer_tag} closed"))
        if self._buffer:
            event.succeed(self._buffer.popleft())
        else:
            self._waiters.append(event)
        return event

    def ack(self, delivery: Delivery) -> bool:
        return self._settle(delivery, None)

    def nack(self, delivery: Delivery, requeue: bool = True) -> bool:
        return self._settle(delivery, requeue)

    def reject(self, delivery: Delivery, requeue: bool = True) -> bool:
        return self._settle(delivery, requeue)

    def close(self) -> None:
        """The consumer died or hung up: unacked deliveries go back to the queue."""
        if self.open:
            self._broker._close_channel(self)

    # --- broker side

    def _issue_tag(self) -> int:
        self._next_tag += 1
        return self._next_tag

    def _hand(self, delivery: Delivery) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            # SimPy removes an interrupted process from its target's callbacks: a waiter
            # left with none belongs to a process that no longer listens
            if waiter.callbacks:
                waiter.succeed(delivery)
                return
        self._buffer.append(delivery)

    def _settle(self, delivery: Delivery, requeue: bool | None) -> bool:
        if not self.open:
            return False  # lost with the channel; the broker redelivers the message
        entry = self._unacked.get(delivery.delivery_tag)
        if entry is None or entry[1] is not delivery:
            # Unknown tag (double ack, ack on an auto-ack channel, another channel's delivery):
            # RabbitMQ closes the channel with 406 PRECONDITION_FAILED and requeues its unacked.
            self._broker.stats["channel_errors"] += 1
            self._broker._close_channel(self)
            return False
        del self._unacked[delivery.delivery_tag]
        self._broker._settled(self._queue, entry[0], requeue)
        return True


class QueueDispatch:
    """Enqueue with overflow, deliver, settle, expire and dead-letter (mixed into ``Broker``)."""

    env: simpy.Environment
    name: str
    up: bool
    stats: dict[str, int]
    deliver_latency: float
    _queues: dict[str, AmqpQueue]
    _exchanges: dict[str, Any]
    _seq: int
    _unflushed: list[QueuedMessage]

    # provided by Broker
    def _route(self, exchange: str, routing_key: str, message: Message) -> list[str]:
        raise NotImplementedError

    def _after(self, delay: float, action: Callable[[], None]) -> None:
        raise NotImplementedError

    def _arm_fsync(self) -> None:
        raise NotImplementedError

    def _drop_op(self, reason: str, message: Message) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ into a queue

    def _enqueue(self, q: AmqpQueue, message: Message, death_reason: str | None = None) -> bool:
        """Put one copy into ``q``; False when the queue refused it (reject-publish overflow)."""
        if q.args.overflow != "drop-head" and q.over_length(extra=1):
            if q.args.overflow == "reject-publish-dlx":
                self._dead_letter(q, message, "maxlen")
            return False
        self._seq += 1
        item = QueuedMessage(message, self._seq, q.effective_priority(message.priority),
                             q.expiry(self.env.now, message), death_reason=death_reason)
        if q.durable and message.persistent:
            self._unflushed.append(item)
            self._arm_fsync()
        q.push(item)
        self._trim(q)
        self._kick(q)
        return True

    def _trim(self, q: AmqpQueue) -> None:
        # drop-head: the head (oldest, or highest priority) goes, dead-lettered as "maxlen"
        while q.args.overflow == "drop-head" and q.over_length():
            item = q.pop()
            self.stats["maxlen_dropped"] += 1
            self._dead_letter(q, item.message, "maxlen")

    # ------------------------------------------------------------------ out to consumers

    def _kick(self, q: AmqpQueue) -> None:
        """Start the next delivery if the queue is idle, has a ready message and a consumer with room."""
        if not self.up or q.dispatching or q.deleted:
            return
        # expire at the head only, like RabbitMQ; strict '<' so a TTL-0 message still goes to
        # a consumer that can take it right now
        while (head := q.peek()) is not None and head.expires_at < self.env.now:
            self._expire(q, q.pop())
        if q.dispatching:  # a dead-letter cycle re-entered this queue and started a delivery
            return
        ch = q.next_consumer() if len(q) else None
        if ch is not None:
            self._deliver(q, ch, q.pop())
        self._arm_expiry(q)

    def _deliver(self, q: AmqpQueue, ch: Channel, item: QueuedMessage) -> None:
        q.dispatching = True
        delivery = Delivery(item.message, ch._issue_tag(), item.delivered, q.name,
                            ch.consumer_tag, item.death_reason)
        item.delivered = True
        self.stats["delivered"] += 1
        self.stats["redelivered"] += delivery.redelivered
        if not ch.auto_ack:
            ch._unacked[delivery.delivery_tag] = (item, delivery)

        def arrived() -> None:
            q.dispatching = False
            if ch.open:
                ch._hand(delivery)  # a closed channel already requeued it (or, auto-ack, lost it)
            self._kick(q)

        self._after(self.deliver_latency, arrived)

    def _settled(self, q: AmqpQueue, item: QueuedMessage, requeue: bool | None) -> None:
        if requeue is None:
            self.stats["acked"] += 1
        elif requeue:
            self.stats["requeued"] += 1
            q.push(item)  # same heap key: back to its original position
            self._trim(q)
        else:
            self.stats["rejected"] += 1
            self._dead_letter(q, item.message, "rejected")
        self._kick(q)

    def _close_channel(self, ch: Channel) -> None:
        ch.open = False
        q = ch._queue
        if ch in q.consumers:
            q.consumers.remove(ch)
        while ch._waiters:
            fail_event(ch._waiters.popleft(), ChannelClosed(self.name, f"channel {ch.consumer_tag} closed"))
        ch._buffer.clear()  # auto-ack deliveries in the client's buffer die with the consumer
        for item, _ in ch._unacked.values():
            q.push(item)  # at a crash the broker sorts these out by durability right after
        if self.up:
            self.stats["requeued"] += len(ch._unacked)
        ch._unacked.clear()
        if self.up:
            self._trim(q)
            self._kick(q)

    # ------------------------------------------------------------------ TTL and dead letters

    def _arm_expiry(self, q: AmqpQueue) -> None:
        """Keep a timer for the head's expiry so an idle queue still expires its head."""
        head = q.peek()
        if head is None or head.expires_at == math.inf:
            return
        at = head.expires_at
        if q.timer_at is not None and q.timer_at <= at:
            return  # an earlier timer will re-arm for this head when it fires
        q.timer_at = at

        def due() -> None:
            if q.deleted:
                return
            if q.timer_at == at:
                q.timer_at = None
            # compare with ``at``, not only env.now: now + (at - now) may round just below ``at``
            while (h := q.peek()) is not None and h.expires_at <= max(at, self.env.now):
                self._expire(q, q.pop())
            self._kick(q)
            self._arm_expiry(q)  # _kick skips arming while a delivery is in flight

        self._after(max(0.0, at - self.env.now), due)

    def _expire(self, q: AmqpQueue, item: QueuedMessage) -> None:
        self.stats["expired"] += 1
        self._dead_letter(q, item.message, "expired")

    def _dead_letter(self, q: AmqpQueue, message: Message, reason: str) -> None:
        dlx = q.args.dlx
        if dlx is None or (dlx != "" and dlx not in self._exchanges):
            # no DLX, or it names a missing exchange: RabbitMQ drops the message silently
            self.stats["dead_letter_dropped"] += 1
            self._drop_op(reason, message)
            return
        key = q.args.dl_routing_key if q.args.dl_routing_key is not None else message.routing_key
        copy = dead_letter_copy(message, q.name, reason, dlx, key, self.env.now)
        targets = [t for t in self._route(dlx, key, copy) if not is_dead_letter_cycle(copy, t)]
        if not targets:
            self.stats["dead_letter_dropped"] += 1
            self._drop_op(reason, message)
            return
        self.stats["dead_lettered"] += 1
        for name in targets:
            # at-most-once, RabbitMQ's default: a copy the target refuses is simply gone
            self._enqueue(self._queues[name], copy, death_reason=reason)
