"""The ports the shared flow talks to, and the driver that runs the flow outside SimPy.

A flow step is a generator.  It ``yield``s one *port operation* at a time and gets the
operation's result sent back (or its exception thrown in).  Each world backs the same
methods differently:

* the SimPy world returns a SimPy event (queued on the component's resource, taking a sampled
  service time) and SimPy's own process machinery sends the value back;
* the real world performs the call at once (pika, redis-py, SQL) and returns a ``Done``; the
  small ``drive`` function below sends its value back into the generator.

Port methods (names follow AMQP's and Redis's words):

``broker``   publish(exchange, routing_key, message, mandatory) -> "ack" | "nack" | "returned" | "sent"
             ack(delivery) -> bool (False when the channel closed and the ack was lost)
             nack(delivery, requeue) / reject(delivery, requeue) -> bool
``redis``    get(key) -> int|None, set(key, value), set_nx(key, value, ex=None) -> bool,
             decr(key) -> int, incr(key) -> int, expire(key, seconds) -> bool, ttl(key) -> int,
             check_and_decr(key) -> int  (atomic script: the new value, or -1 when nothing is left)
             reserve(key, msg_id, owner) -> (left, fresh)  (atomic script: take one unit for the
             message and record it under ``hold_key``, or take over the hold it already has)
             release(key, msg_id, owner) -> bool  (atomic script: if ``owner`` still owns the
             hold, drop it and give the unit back)
``db``       begin() -> Transaction; has_voucher(msg_id) -> bool (a committed ledger row);  Transaction: insert_processed(msg_id) -> bool (False on a
             duplicate key), insert_ledger(msg_id, user) -> bool, insert_submission(msg_id, user),
             insert_outbox(msg_id, payload), decrement_stock() -> int|None (``UPDATE ... SET
             stock = stock - 1 WHERE stock > 0``: the new value, None when sold out), read_stock(),
             write_stock(n), commit(), rollback()
``gateway``  send(user, voucher_id) -> bool
``clock``    now() -> float (seconds), sleep(seconds)
``batches``  real adapters only, for throughput (the flow never calls them):
             broker.publish_many(exchange, routing_key, messages, window, mandatory, timeout_s)
             -> PublishReport (windowed confirms); redis.decr_many(keys) -> [int] (one pipeline)
``faults``   point(name, process): a named crash point; the world may kill ``process`` there
             (``None`` when no fault is planned at any point)
``history``  record(...) (see ``simulator.history``)

Every port operation may raise ``simulator.errors.ServiceDown`` when its component is down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator, Protocol


@dataclass(slots=True)
class Done:
    """An already-completed port operation (the real world's answer to a SimPy event)."""

    value: Any = None
    error: BaseException | None = None


Step = Generator[Any, Any, Any]


def hold_key(key: str, msg_id: str) -> str:
    """The Redis key that records the unit of ``key`` reserved for one message (both worlds)."""
    return f"{key}:hold:{msg_id}"


def drive(step: Step) -> Any:
    """Run a flow step to completion where every yielded operation is already done.

    This is the whole of the real world's scheduler: send each result back in (or throw its
    error) until the generator returns, and return what it returned.
    """
    send_value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = step.throw(error) if error is not None else step.send(send_value)
        except StopIteration as stop:
            return stop.value
        send_value, error = (op.value, op.error) if isinstance(op, Done) else (op, None)


class Clock(Protocol):
    def now(self) -> float: ...


@dataclass(slots=True)
class Ports:
    """The set of ports a flow step is given.  ``None`` means the scenario does not use it."""

    broker: Any
    redis: Any
    db: Any
    gateway: Any
    clock: Clock
    history: Any
    faults: Any = None
