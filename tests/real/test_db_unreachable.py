"""F12: PostgreSQL becomes unreachable in the middle of the dual write (Redis, then the DB).

The shared flow runs on real RabbitMQ, real Redis and real PostgreSQL, but the consumer reaches
PostgreSQL through a test-owned TCP proxy (``real_adapters.tcp_proxy``).  After a few messages
the proxy is cut *after* the consumer has taken a voucher from Redis and *before* its ledger
row is written.  What must happen:

* the DB step fails with ``ServiceDown("db")`` (not a hang, not a crash);
* the flow gives the Redis decrement back (one compensating INCR), so at every moment
  Redis stock + ledger rows == initial stock;
* the message is not acked; it comes back after the DB does and is granted exactly once;
* with the proxy restored, the rest of the work completes and the checker finds nothing wrong.

Two cut points: inside the open transaction (the INSERT fails) and just before it (BEGIN fails).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from real_adapters.bootstrap import build_ports, close_ports, wall_history
from real_adapters.settings import Settings
from real_adapters.tcp_proxy import TcpProxy
from simulator.checker import check
from simulator.errors import ServiceDown
from simulator.flow import QUEUE, ROUTING_KEY, STOCK_KEY, Policy, accept, handle_delivery
from simulator.history import History
from simulator.messages import Message, submission_body
from simulator.ports import Done, Ports, drive, hold_key

pytestmark = pytest.mark.real

N = 40
STOCK = 30          # fewer than N: "sold out" must still add up after the outage
CUT_AT = 5          # the 5th voucher taken from Redis is the one caught by the cut
FAILURES_WHILE_CUT = 3  # more deliveries that fail while the DB is away, then restore
POLICY = Policy(stock_strategy="redis-lua", dedupe="db")


def through(proxy: TcpProxy, url: str) -> str:
    """The same PostgreSQL URL, but host:port of the proxy."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}{proxy.host}:{proxy.port}"))


class CutAfterStock:
    """Faults hook: cut the proxy the ``at``-th time a consumer has just decremented Redis.
    The flow then calls ``db.begin()`` on a connection that is already dead."""

    def __init__(self, proxy: TcpProxy, at: int):
        self.proxy, self.at, self.seen, self.cut_msgs = proxy, at, 0, 0

    def point(self, name: str, process: str) -> Done:
        if name == "consumer:after-stock":
            self.seen += 1
            if self.seen == self.at:
                self.proxy.cut()
                self.cut_msgs += 1
        return Done(None)


class CutInsideTransaction:
    """Wraps the db port: the ``at``-th transaction loses its connection after BEGIN, right
    before its first INSERT (so the cut lands between the Redis decrement and the insert)."""

    def __init__(self, db: Any, proxy: TcpProxy, at: int):
        self._db, self.proxy, self.at, self.begun, self.cut_msgs = db, proxy, at, 0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def begin(self) -> Done:
        done = self._db.begin()
        if done.error is None:
            self.begun += 1
            done = Done(_CuttingTransaction(done.value, self) if self.begun == self.at else done.value)
        return done


class _CuttingTransaction:
    def __init__(self, tx: Any, owner: CutInsideTransaction):
        self._tx, self._owner, self._armed = tx, owner, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    def insert_processed(self, msg_id: str) -> Done:
        if self._armed:
            self._armed = False
            self._owner.proxy.cut()
            self._owner.cut_msgs += 1
        return self._tx.insert_processed(msg_id)


@dataclass
class World:
    history: History
    api: Ports
    consumer: Ports
    proxy: TcpProxy
    errors: list[ServiceDown] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)


@pytest.fixture
def world(amqp_url: str, redis_url: str, postgres_url: str, namespace: str) -> Iterator[World]:
    pg = urlsplit(postgres_url)
    with TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432) as proxy:
        settings = Settings(amqp_url=amqp_url, redis_url=redis_url,
                            database_url=through(proxy, postgres_url))
        history = wall_history(keep=None)
        api = build_ports(settings, history=history, process_name=f"api-{namespace}",
                          namespace=namespace, declare=True)
        consumer = build_ports(settings, history=history, process_name=f"consumer-{namespace}",
                               namespace=namespace)
        w = World(history, api, consumer, proxy)
        try:
            yield w
        finally:
            proxy.restore()  # clean up through a working path whatever the test did
            try:
                api.broker.delete_topology()
                api.redis.clear()
                consumer.db.abort_open()
                api.db.drop()
            finally:
                close_ports(api)
                close_ports(consumer)


def consume(w: World, *, max_deliveries: int, stop_after_errors: int | None = None) -> None:
    """Handle deliveries one at a time; a ServiceDown leaves the message for later (requeued)."""
    errors_before = len(w.errors)
    for delivery in w.consumer.broker.deliveries(QUEUE, prefetch=1, inactivity_timeout=1.0,
                                                 max_deliveries=max_deliveries, max_seconds=60):
        try:
            w.outcomes[drive(handle_delivery(w.consumer, POLICY, delivery, "consumer-1"))] += 1
        except ServiceDown as exc:
            w.errors.append(exc)
            assert w.consumer.broker.nack(delivery, requeue=True).value is True
            if stop_after_errors is not None and len(w.errors) - errors_before >= stop_after_errors:
                return


def stock_plus_ledger(w: World) -> int:
    return w.api.redis.get(STOCK_KEY).value + w.api.db.ledger_count()


# "before-begin" guards the flow's BEGIN sitting inside the compensating try: a DB lost
# just before BEGIN once stranded one voucher (29 of 30 granted)
@pytest.mark.parametrize("cut_point", ["inside-transaction", "before-begin"])
def test_db_cut_between_redis_and_ledger_is_compensated_and_recovers(
        world: World, cut_point: str, capsys: pytest.CaptureFixture):
    w = world
    if cut_point == "inside-transaction":
        hook = w.consumer.db = CutInsideTransaction(w.consumer.db, w.proxy, CUT_AT)
    else:
        hook = w.consumer.faults = CutAfterStock(w.proxy, CUT_AT)

    w.history.record("ok", "stock-init", "world", {"stock": STOCK, "offered": STOCK})
    assert w.api.redis.set(STOCK_KEY, STOCK).error is None
    messages = [Message(f"sub-{i}", f"corr-{i}", ROUTING_KEY, submission_body(f"s{i}", f"u{i}", seq=i))
                for i in range(N)]
    assert Counter(drive(accept(w.api, POLICY, m, "api")) for m in messages) == {200: N}

    # phase 1: run into the cut, and let a few more deliveries fail while the DB is away
    consume(w, max_deliveries=N, stop_after_errors=1 + FAILURES_WHILE_CUT)
    assert hook.cut_msgs == 1 and w.proxy.is_cut
    assert len(w.errors) == 1 + FAILURES_WHILE_CUT
    assert {e.component for e in w.errors} == {"db"}  # the DB step failed, nothing else
    granted_before = w.outcomes["granted"]
    assert granted_before == CUT_AT - 1

    compensated = [op.msg_id for op in w.history.ops if op.f == "compensate"]
    caught = f"sub-{CUT_AT - 1}"
    redis_now = w.api.redis.get(STOCK_KEY).value
    if cut_point == "before-begin":
        # no transaction began: the unit went back at once, compensated once
        assert compensated == [caught], f"compensations: {compensated}"
        assert redis_now == STOCK - granted_before, "a Redis decrement leaked during the outage"
    else:
        # after BEGIN the commit may have been applied, so the unit stays held for the message
        # (its hold), for the redelivery to take over; nothing is given back twice
        assert compensated == [], f"compensations: {compensated}"
        assert redis_now == STOCK - granted_before - 1
        assert w.api.redis.get(hold_key(STOCK_KEY, caught)).value is not None

    # phase 2: the DB is back; everything left (the cut message included) is handled
    w.proxy.restore()
    consume(w, max_deliveries=2 * N)
    ledger = w.api.db.ledger_count()
    result = check(w.history.ops)
    with capsys.disabled():
        print(f"\n[F12 {cut_point}] messages={N} stock={STOCK} cut at voucher #{CUT_AT}; "
              f"db errors={len(w.errors)} compensations={len(compensated)} "
              f"outcomes={dict(w.outcomes)} ledger={ledger} redis={w.api.redis.get(STOCK_KEY).value} "
              f"proxy accepted={w.proxy.accepted} refused={w.proxy.refused}")

    assert w.outcomes == {"granted": STOCK, "sold_out": N - STOCK}
    assert ledger == STOCK and stock_plus_ledger(w) == STOCK
    assert w.api.db.processed_count() == N
    c = result.counts
    assert (c["lost"], c["oversold"], c["double_granted"], c["unexpected"]) == (0, 0, 0, 0), result.to_dict()
    assert c["granted"] == STOCK and result.valid
    assert w.api.broker.queue_depth(QUEUE) == 0
