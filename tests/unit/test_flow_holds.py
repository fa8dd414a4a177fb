"""The Lua reservation's holds under hand-made schedules of ``grant_voucher``.

Each test drives the shared flow directly on the SimPy Redis and DB models (no broker: each
"delivery" is one call of grant_voucher) and ends by checking the stock ledger:
Redis stock + vouchers issued == offered.  Found in review of the reservation change.
"""

from __future__ import annotations

import numpy as np
import simpy

from simulator.errors import ServiceDown
from simulator.flow import STOCK_KEY, Policy, grant_voucher
from simulator.history import History
from simulator.messages import Message, submission_body
from simulator.ports import Ports
from simulator.sim.adapters import DbSession, SimClock
from simulator.sim.database import Database
from simulator.sim.gateway import VoucherGateway
from simulator.sim.redis import Redis


class CrashPoints:
    """(point, process) in ``kill`` never returns (the process died); ``pause`` stalls it."""

    def __init__(self, env: simpy.Environment):
        self.env, self.kill, self.pause = env, set(), {}

    def point(self, name: str, process: str) -> simpy.Event:
        if (name, process) in self.kill:
            return self.env.event()
        return self.env.timeout(self.pause.get((name, process), 0))


class Shop:
    def __init__(self, stock: int, persistence: str = "none"):
        self.env = env = simpy.Environment()
        self.history = History(lambda: env.now)
        rng = np.random.default_rng(0)
        self.redis = Redis(env, rng, persistence=persistence, jitter=False, history=self.history)
        self.db = Database(env, rng, query_time=0.001, stock=stock, jitter=False, history=self.history)
        self.gateway = VoucherGateway(env, rng, latency=0.001, history=self.history)
        self.redis.data_set(STOCK_KEY, stock)
        self.faults = CrashPoints(env)
        self.stock = stock
        self.answers: list[tuple[str, str, str]] = []

    def deliver(self, mid: str, process: str, at: float) -> None:
        msg = Message(message_id=mid, correlation_id="c" + mid, routing_key="k",
                      body=submission_body(mid, "user-" + mid))
        ports = Ports(broker=None, redis=self.redis, db=DbSession(self.db), gateway=self.gateway,
                      clock=SimClock(self.env), history=self.history, faults=self.faults)

        def run():
            yield self.env.timeout(at)
            try:
                answer = yield from grant_voucher(ports, Policy(), msg, process)
            except ServiceDown:
                answer = "down"
            self.answers.append((mid, process, answer))
        self.env.process(run())

    def balance(self) -> int:
        return int(self.redis.peek(STOCK_KEY) or 0) + self.db.ledger_count() - self.stock


def test_a_taken_over_hold_of_a_message_answered_sold_out_goes_back():
    shop, env = Shop(stock=1), None
    env = shop.env

    def db_blip():
        yield env.timeout(0.006)
        shop.db.crash()
        yield env.timeout(0.0001)
        shop.db.restart()
    env.process(db_blip())
    shop.deliver("n", "consumer-1", at=0.0)       # takes the unit; the DB blip gives it back
    shop.deliver("m", "consumer-2", at=0.0005)    # sold out (a processed row, no hold)
    shop.faults.kill.add(("consumer:after-stock", "consumer-3"))
    shop.deliver("m", "consumer-3", at=0.010)     # a copy of m takes the returned unit, dies
    shop.deliver("m", "consumer-2", at=0.020)     # its redelivery takes the hold over: duplicate
    shop.deliver("n", "consumer-1", at=0.030)     # n comes back and must still find its unit
    env.run()
    assert ("n", "consumer-1", "granted") in shop.answers, shop.answers
    assert shop.balance() == 0


def test_a_rolled_back_hold_owner_cannot_release_a_unit_that_was_granted():
    shop = Shop(stock=1, persistence="aof-everysec")
    env = shop.env
    shop.faults.pause[("consumer:after-stock", "consumer-1")] = 1.1
    shop.deliver("m", "consumer-1", at=0.9)       # reserves (saved by the t=1 fsync), stalls
    shop.deliver("m", "consumer-2", at=1.5)       # a copy takes the hold over and grants

    def redis_crash():
        yield env.timeout(1.6)                     # the takeover is not on disk yet
        shop.redis.crash()
        yield env.timeout(0.01)
        shop.redis.restart()
    env.process(redis_crash())
    env.run()
    shop.deliver("late", "consumer-3", at=3.0)
    env.run()
    assert ("late", "consumer-3", "sold_out") in shop.answers, shop.answers
    assert shop.db.ledger_count() == 1 and shop.balance() == 0
