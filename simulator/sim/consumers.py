"""Consumers: one SimPy process each, consuming with a prefetch window and handling one
delivery at a time (like a pika ``BlockingConnection`` worker).

A crash is ``kill -9``: the process stops wherever it is, its channel closes (the broker
requeues what it had not acked; what auto-ack already removed is gone) and its open DB
transactions roll back.  A restart opens a new channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import simpy

from simulator.errors import ChannelClosed, ServiceDown
from simulator.flow import QUEUE, handle_delivery
from simulator.ports import Ports

if TYPE_CHECKING:
    from simulator.sim.world import World


class Consumer:
    def __init__(self, world: "World", name: str, ports: Ports):
        self.world = world
        self.env: simpy.Environment = world.env
        self.name = name
        self.ports = ports
        self.channel: Any = None
        self.up = True
        self.handled = 0
        self.busy = False  # holding a delivery (auto-ack deliveries are in no broker count)
        self.process = self.env.process(self._run())

    def _handler_time(self) -> float:
        mean = self.world.config.handler_ms / 1000.0
        return float(self.world.rng(self.name).exponential(mean)) if mean > 0 else 0.0

    def _run(self):
        cfg = self.world.config
        policy = self.world.policy
        while not self.world.finished:
            try:
                self.channel = self.world.broker.consume(
                    QUEUE, consumer_tag=self.name, prefetch=cfg.prefetch,
                    auto_ack=(cfg.ack == "auto"))
                self.ports.broker.channel = self.channel
                while True:
                    self.busy = False
                    delivery = yield self.channel.get()
                    self.busy = True
                    duration = self._handler_time()
                    if duration:
                        yield self.env.timeout(duration)
                    try:
                        yield from handle_delivery(self.ports, policy, delivery, self.name)
                    except ChannelClosed:
                        raise
                    except ServiceDown:
                        # a store is down: back off, hand the message back for a later try
                        yield self.env.timeout(cfg.reconnect_s)
                        if cfg.ack == "manual":
                            self.channel.nack(delivery, requeue=True)
                    self.handled += 1
            except ChannelClosed:
                self.busy = False
                try:
                    yield self.env.timeout(cfg.reconnect_s)
                except simpy.Interrupt as stop:  # killed while waiting to reconnect
                    if not (yield from self._dead(stop.cause)):
                        return
            except simpy.Interrupt as stop:
                if not (yield from self._dead(stop.cause)):
                    return

    @property
    def idle(self) -> bool:
        channel = self.channel
        return not self.busy and (channel is None or not channel.open or not channel.buffered)

    def crash(self, restart_after: float | None) -> None:
        if not self.up or not self.process.is_alive:
            return
        if self.process is self.env.active_process:
            return  # a crash point: the consumer's own wait fails with the interrupt instead
        if self.process.target is not None:
            self.process.target.defused = True  # nobody will wait for what it was waiting on
        self.process.interrupt(restart_after)

    def _dead(self, restart_after: float | None):
        self.up = False
        self.busy = False
        self.world.history.record("info", "crash", self.name, component="consumer")
        if self.channel is not None:
            self.channel.close()
        self.ports.db.abort_all()
        if restart_after is None:
            return False
        yield self.env.timeout(restart_after)
        self.up = True
        self.world.history.record("info", "restart", self.name, component="consumer")
        return True
