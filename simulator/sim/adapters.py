"""The SimPy world's side of the ports: thin wrappers that turn component calls into events.

Most components already return SimPy events from the port methods; these wrappers add what
belongs to one *client* rather than to the component: a consumer's channel for acks, the
open transactions a crashed process must roll back, and the clock.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simpy


class SimClock:
    def __init__(self, env: simpy.Environment):
        self.env = env

    def now(self) -> float:
        return self.env.now

    def sleep(self, seconds: float) -> simpy.Event:
        return self.env.timeout(seconds)


class BrokerPort:
    """Publishing through the broker, and acking on this client's current channel.

    ``ack_loss`` is the chance that the connection drops just before an ack reaches the
    broker: the channel closes, everything unacked on it is requeued (``redelivered``), and
    the consumer reconnects - the seed's "processed, but the ack was lost" duplicate.
    """

    def __init__(self, env: simpy.Environment, broker: Any, *, ack_latency: float = 0.0001,
                 ack_loss: float = 0.0, rng: np.random.Generator | None = None):
        self.env = env
        self.broker = broker
        self.channel: Any = None
        self.ack_latency = ack_latency
        self.ack_loss = ack_loss
        self.rng = rng

    def publish(self, exchange: str, routing_key: str, message: Any, *, mandatory: bool = False,
                confirm: bool = True) -> simpy.Event:
        return self.broker.publish(exchange, routing_key, message, mandatory=mandatory,
                                   confirm=confirm)

    def _answer(self, value: Any) -> simpy.Event:
        return self.env.timeout(self.ack_latency, value)

    def ack(self, delivery: Any) -> simpy.Event:
        if self.ack_loss and self.rng is not None and self.rng.random() < self.ack_loss:
            self.channel.close()
            return self._answer(False)
        return self._answer(self.channel.ack(delivery))

    def nack(self, delivery: Any, requeue: bool = True) -> simpy.Event:
        return self._answer(self.channel.nack(delivery, requeue=requeue))

    def reject(self, delivery: Any, requeue: bool = True) -> simpy.Event:
        return self._answer(self.channel.reject(delivery, requeue=requeue))


class DbSession:
    """One client's use of the database: remembers open transactions so that a crash of the
    client rolls them back, as the DB does when a connection drops."""

    def __init__(self, db: Any):
        self.db = db
        self.open: list[Any] = []

    def begin(self) -> simpy.Event:
        event = self.db.begin()
        event.callbacks.append(self._opened)
        return event

    def _opened(self, event: simpy.Event) -> None:
        if event.ok:
            self.open = [tx for tx in self.open if not tx.finished]
            self.open.append(event.value)

    def abort_all(self) -> None:
        for tx in self.open:
            if not tx.finished:
                tx.abort()
        self.open = []

    def mark_published(self, msg_id: str) -> simpy.Event:
        return self.db.mark_published(msg_id)

    def __getattr__(self, name: str) -> Any:  # anything else goes to the database itself
        return getattr(self.db, name)
