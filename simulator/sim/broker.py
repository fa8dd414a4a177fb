"""A SimPy model of one RabbitMQ node: exchanges, publishing, confirms, crash and restart.

The queue side (dispatch, acks, TTL, dead-lettering) is ``simulator.sim.amqp_dispatch``,
the queue data structure ``simulator.sim.amqp_queue``.

What it keeps from RabbitMQ (see /work/shared/reliability-reference.md §1):

* confirms (P1, P2): a persistent message routed to a durable queue is confirmed at the next
  fsync tick (the message store flushes in batches); anything else after ``confirm_latency``.
  An unroutable message is still acked and silently dropped unless ``mandatory`` is set.
* durability (P3): a crash deletes transient queues, discards transient messages, and loses
  persistent messages not yet flushed (never confirmed).  Flushed unacked ones come back
  with ``redelivered=True``.
* acks (P4, P5, P7): auto-ack deliveries are gone once sent; manual-ack deliveries return to
  their original position when the channel closes.
* prefetch (P8), round-robin dispatch (P10), priorities, TTL at the head of the queue,
  max-length overflow and dead-lettering with the reasons ``rejected``/``expired``/``maxlen``
  (P14, including RabbitMQ's drop of a dead-letter cycle without a rejection).

Everything is callbacks on SimPy timeouts (no process per message), so 10^5 messages cost
O(log n) each.  A crash bumps ``_epoch``; every scheduled callback carries the epoch it was
made in and does nothing once the broker has crashed since.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import simpy

from simulator.errors import ChannelClosed, InputError
from simulator.history import History
from simulator.messages import Message
from simulator.routing import Binding, route, validate_binding, validate_exchange, validate_routing_key
from simulator.sim.amqp_dispatch import Channel, QueueDispatch, fail_event
from simulator.sim.amqp_queue import AmqpQueue, QueuedMessage, parse_queue_arguments, validate_queue_name

__all__ = ["Broker", "Channel", "STAT_KEYS"]

STAT_KEYS = ("published", "confirmed", "returned", "nacked", "unroutable_dropped", "delivered",
             "redelivered", "acked", "requeued", "rejected", "expired", "dead_lettered",
             "dead_letter_dropped", "maxlen_dropped", "lost_on_crash", "channel_errors")
EXCHANGE_ARGUMENTS = ("alternate-exchange", "hash-header", "hash-property")


@dataclass(eq=False)
class _Exchange:
    name: str
    type: str
    durable: bool
    arguments: dict[str, Any]
    bindings: list[Binding] = field(default_factory=list)


def _check_time(name: str, value: float, *, positive: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise InputError(name, value, "a finite number of seconds " + ("> 0" if positive else ">= 0"))
    return float(value)


class Broker(QueueDispatch):
    def __init__(self, env: simpy.Environment, rng: np.random.Generator, *, name: str = "broker",
                 publish_latency: float = 0.0002, confirm_latency: float = 0.0005,
                 deliver_latency: float = 0.0002, fsync_interval: float = 0.2,
                 history: History | None = None):
        self.env = env
        self.rng = rng  # injected for future jitter; the model itself is deterministic
        self.name = name
        self.publish_latency = _check_time("publish_latency", publish_latency)
        self.confirm_latency = _check_time("confirm_latency", confirm_latency)
        self.deliver_latency = _check_time("deliver_latency", deliver_latency)
        self.fsync_interval = _check_time("fsync_interval", fsync_interval, positive=True)
        self.history = history
        self.up = True
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self._exchanges: dict[str, _Exchange] = {}
        self._queues: dict[str, AmqpQueue] = {}
        self._epoch = 0
        self._seq = 0
        # publishes not yet answered; a dict, not a set, so a crash fails them in publish
        # order and the run stays reproducible (a set iterates in id order)
        self._pending: dict[simpy.Event, None] = {}
        self._wire: dict[int, Message] = {}  # unconfirmed publishes still travelling
        self._next_wire = 0
        self._await_fsync: list[simpy.Event] = []      # confirms held for the next tick
        self._unflushed: list[QueuedMessage] = []      # persistent copies not yet on disk
        self._tick_armed = False

    # ------------------------------------------------------------------ topology

    def declare_exchange(self, name: str, exchange_type: str, *, durable: bool = True,
                         arguments: Mapping[str, Any] | None = None) -> None:
        self._require_up()
        args = dict(arguments or {})
        validate_exchange(name, exchange_type, args)
        for key in args:
            if key not in EXCHANGE_ARGUMENTS or (key.startswith("hash-") and exchange_type != "x-consistent-hash"):
                raise InputError("exchange argument", key,
                                 "alternate-exchange; hash-header/hash-property on x-consistent-hash")
        if not isinstance(args.get("alternate-exchange", ""), str):
            raise InputError("alternate-exchange", args["alternate-exchange"], "an exchange name")
        existing = self._exchanges.get(name)
        if existing is not None:
            if (existing.type, existing.durable, existing.arguments) != (exchange_type, durable, args):
                raise InputError("exchange", name, f"the same type, durability and arguments as declared "
                                 f"(type={existing.type!r}, durable={existing.durable}); 406 PRECONDITION_FAILED")
            return
        self._exchanges[name] = _Exchange(name, exchange_type, bool(durable), args)

    def declare_queue(self, name: str, *, durable: bool = True,
                      arguments: Mapping[str, Any] | None = None) -> None:
        self._require_up()
        validate_queue_name(name)
        raw = dict(arguments or {})
        args = parse_queue_arguments(raw)
        existing = self._queues.get(name)
        if existing is not None:
            if (existing.durable, existing.raw_arguments) != (bool(durable), raw):
                raise InputError("queue", name, f"the same durability and arguments as declared "
                                 f"(durable={existing.durable}, arguments={existing.raw_arguments}); "
                                 "406 PRECONDITION_FAILED")
            return
        self._queues[name] = AmqpQueue(name, bool(durable), args, raw)

    def bind(self, queue: str, exchange: str, binding_key: str = "",
             arguments: Mapping[str, Any] | None = None) -> None:
        self._require_up()
        self._queue(queue)
        if exchange == "":
            raise InputError("exchange", exchange, "a declared exchange (the default exchange takes no bindings)")
        ex = self._exchange(exchange)
        args = dict(arguments or {})
        validate_binding(ex.type, binding_key, args)
        binding = Binding(queue, binding_key, args)
        if binding not in ex.bindings:  # binding twice is a no-op in AMQP
            ex.bindings.append(binding)

    def queue_names(self) -> list[str]:
        return list(self._queues)

    def depth(self, queue: str) -> int:
        return len(self._queue(queue))

    def on_the_wire(self, queue: str) -> bool:
        """A delivery from ``queue`` is travelling to a consumer right now."""
        return self._queue(queue).dispatching

    def unacked(self, queue: str) -> int:
        return sum(ch.unacked_count for ch in self._queue(queue).consumers)

    def drain(self, queue: str) -> list[Message]:
        """Remove and return every ready message in delivery order (expired ones expire)."""
        q = self._queue(queue)
        out: list[Message] = []
        while len(q):
            item = q.pop()
            if item.expires_at < self.env.now:
                self._expire(q, item)
            else:
                out.append(item.message)
        return out

    # ------------------------------------------------------------------ publish

    def publish(self, exchange: str, routing_key: str, message: Message, *,
                mandatory: bool = False, confirm: bool = True) -> simpy.Event:
        validate_routing_key(routing_key)
        _check_message(message)
        done = self.env.event()
        if not self.up:
            return fail_event(done, ChannelClosed(self.name, "broker is down"))
        if exchange != "":
            self._exchange(exchange)  # 404 NOT_FOUND in RabbitMQ
        if message.exchange != exchange or message.routing_key != routing_key:
            message = replace(message, exchange=exchange, routing_key=routing_key)
        if not confirm:
            # basic.publish without confirms returns once the frame is in the socket buffer:
            # the publisher learns nothing more, and a crash before arrival loses the message
            done.succeed("sent")
            ticket = self._next_wire = self._next_wire + 1
            self._wire[ticket] = message

            def arrive_unconfirmed() -> None:
                self._wire.pop(ticket, None)
                self._arrive(self.env.event(), exchange, routing_key, message, mandatory, False)

            self._after(self.publish_latency, arrive_unconfirmed)
            return done
        self._pending[done] = None
        self._after(self.publish_latency,
                    lambda: self._arrive(done, exchange, routing_key, message, mandatory, confirm))
        return done

    def _arrive(self, done: simpy.Event, exchange: str, routing_key: str, message: Message,
                mandatory: bool, confirm: bool) -> None:
        self.stats["published"] += 1
        targets = self._route(exchange, routing_key, message)
        rejected = False
        needs_fsync = False
        for name in targets:
            q = self._queues[name]
            rejected |= not self._enqueue(q, message)
            needs_fsync |= q.durable and message.persistent
        if not targets:
            if mandatory:
                self.stats["returned"] += 1  # basic.return, then the ack
            else:
                self.stats["unroutable_dropped"] += 1
                self._drop_op("unroutable", message)
        if not confirm:
            return  # answered at publish time
        if not targets:
            self._after(self.confirm_latency, lambda: self._answer(done, "returned" if mandatory else "ack"))
        elif rejected:
            self._after(self.confirm_latency, lambda: self._answer(done, "nack"))
        elif needs_fsync:
            self._await_fsync.append(done)
            self._arm_fsync()
        else:
            self._after(self.confirm_latency, lambda: self._answer(done, "ack"))

    def _answer(self, done: simpy.Event, value: str) -> None:
        self._pending.pop(done, None)
        if value == "ack":
            self.stats["confirmed"] += 1
        elif value == "nack":
            self.stats["nacked"] += 1
        done.succeed(value)

    def _route(self, exchange: str, routing_key: str, message: Message) -> list[str]:
        if exchange == "":
            return [routing_key] if routing_key in self._queues else []
        seen: set[str] = set()
        ex = self._exchanges.get(exchange)
        while ex is not None and ex.name not in seen:
            seen.add(ex.name)
            properties = {"message_id": message.message_id, "correlation_id": message.correlation_id,
                          "timestamp": message.timestamp}
            targets = route(ex.type, ex.bindings, routing_key, message.headers,
                            properties=properties, exchange_arguments=ex.arguments)
            targets = [t for t in targets if t in self._queues]
            if targets:
                return targets
            # unroutable here: try the alternate exchange, as RabbitMQ does
            ex = self._exchanges.get(ex.arguments.get("alternate-exchange", ""))
        return []

    # ------------------------------------------------------------------ fsync

    def _arm_fsync(self) -> None:
        if self._tick_armed:
            return
        self._tick_armed = True
        # ticks sit on multiples of fsync_interval; armed only when something waits for one,
        # so an idle simulation can run to completion
        nxt = (math.floor(self.env.now / self.fsync_interval) + 1) * self.fsync_interval
        self._after(max(0.0, nxt - self.env.now), self._fsync)

    def _fsync(self) -> None:
        self._tick_armed = False
        for item in self._unflushed:
            item.on_disk = True
        self._unflushed = []
        waiting, self._await_fsync = self._await_fsync, []
        for done in waiting:
            self._answer(done, "ack")

    # ------------------------------------------------------------------ consume

    def consume(self, queue: str, *, consumer_tag: str, prefetch: int = 0,
                auto_ack: bool = False) -> Channel:
        if not isinstance(prefetch, int) or isinstance(prefetch, bool) or not 0 <= prefetch <= 65535:
            raise InputError("prefetch", prefetch, "a whole number from 0 (unlimited) to 65535")
        if not isinstance(consumer_tag, str):
            raise InputError("consumer_tag", consumer_tag, "a string")
        self._require_up()
        q = self._queue(queue)
        ch = Channel(self, q, consumer_tag, prefetch, bool(auto_ack))
        q.consumers.append(ch)
        self._kick(q)
        return ch

    # ------------------------------------------------------------------ crash / restart

    def crash(self) -> None:
        """kill -9: lose everything not durable and not on disk; close every channel."""
        if not self.up:
            return
        self.up = False
        self._epoch += 1  # every callback scheduled before now becomes a no-op
        self._op("crash")
        for done in list(self._pending):
            fail_event(done, ChannelClosed(self.name, "broker crashed before the confirm"))
        self._pending.clear()
        for message in self._wire.values():
            self.stats["lost_on_crash"] += 1
            self._drop_op("in-flight", message)
        self._wire.clear()
        self._await_fsync = []
        self._unflushed = []
        self._tick_armed = False
        for q in self._queues.values():
            for ch in list(q.consumers):
                self._close_channel(ch)  # unacked go back to the queue; sorted out below
            q.dispatching = False
            q.timer_at = None
        for q in list(self._queues.values()):
            if not q.durable:
                q.deleted = True
                del self._queues[q.name]
                for item in q.clear():
                    self._lose(item, "queue-deleted")
                continue
            gone = q.remove_where(lambda it: not (it.message.persistent and it.on_disk))
            for item in gone:
                self._lose(item, "unflushed" if item.message.persistent else "transient")
        self._exchanges = {n: ex for n, ex in self._exchanges.items() if ex.durable}
        for ex in self._exchanges.values():
            ex.bindings = [b for b in ex.bindings if b.queue in self._queues]

    def restart(self) -> None:
        if self.up:
            return
        self.up = True
        self._op("restart")
        for q in self._queues.values():
            self._kick(q)  # recovered heads may have expired while down

    def _lose(self, item: QueuedMessage, reason: str) -> None:
        self.stats["lost_on_crash"] += 1
        self._drop_op(reason, item.message)

    # ------------------------------------------------------------------ helpers

    def _after(self, delay: float, action: Callable[[], None]) -> None:
        epoch = self._epoch

        def fire(_event: simpy.Event) -> None:
            if epoch == self._epoch:
                action()

        self.env.timeout(delay).callbacks.append(fire)

    def _require_up(self) -> None:
        if not self.up:
            raise ChannelClosed(self.name, "broker is down")

    def _queue(self, name: str) -> AmqpQueue:
        q = self._queues.get(name)
        if q is None:
            raise InputError("queue", name, f"a declared queue ({', '.join(self._queues) or 'none yet'})")
        return q

    def _exchange(self, name: str) -> _Exchange:
        ex = self._exchanges.get(name)
        if ex is None:
            raise InputError("exchange", name,
                             f"a declared exchange ({', '.join(self._exchanges) or 'none yet'}) or ''")
        return ex

    def _op(self, f: str, value: Any = None, message: Message | None = None) -> None:
        if self.history is not None:
            self.history.record("info", f, self.name, value,
                                msg_id=message.message_id if message else None,
                                corr_id=message.correlation_id if message else None)

    def _drop_op(self, reason: str, message: Message) -> None:
        self._op("drop", {"reason": reason}, message)


def _check_message(message: Message) -> None:
    if not isinstance(message, Message):
        raise InputError("message", type(message).__name__, "a simulator.messages.Message")
    p = message.priority
    if not isinstance(p, int) or isinstance(p, bool) or not 0 <= p <= 255:
        raise InputError("priority", p, "a whole number from 0 to 255 (AMQP octet)")
    e = message.expiration
    if e is not None:
        if isinstance(e, bool) or not isinstance(e, int | float) or not math.isfinite(e) or e < 0:
            raise InputError("expiration", e, "None or a finite number of seconds >= 0")
