"""The shared flash-sale flow, end to end in one process, on real RabbitMQ + real Redis and
SQLite or PostgreSQL; the one checker reads the history it leaves.

No faults here (they come with the worker processes): this shows the safe configuration keeps
every promise on real services - nothing lost, nothing oversold, no voucher granted twice -
and that the checker does see it when a guard is switched off.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import pytest

from real_adapters.bootstrap import build_ports, close_ports, wall_history
from real_adapters.settings import Settings
from simulator.checker import CheckResult, check
from simulator.flow import DEAD_LETTER_QUEUE, QUEUE, ROUTING_KEY, STOCK_KEY, Policy, accept, \
    handle_delivery, relay_once
from simulator.history import History
from simulator.messages import Message, submission_body
from simulator.ports import Ports, drive

pytestmark = pytest.mark.real

N = 200
STOCK = 120  # fewer vouchers than submissions, so "sold out" is exercised too
MAX_RELAY_PASSES = 50


@dataclass
class World:
    history: History
    api: Ports
    consumer: Ports


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, amqp_url: str, redis_url: str, tmp_path) -> Settings:
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'flow.sqlite'}"
    else:
        database_url = request.getfixturevalue("postgres_url")
    return Settings(amqp_url=amqp_url, redis_url=redis_url, database_url=database_url)


@pytest.fixture
def world(settings: Settings, namespace: str) -> Iterator[World]:
    history = wall_history(keep=None)
    api = build_ports(settings, history=history, process_name=f"api-{namespace}", namespace=namespace,
                      declare=True)
    consumer = build_ports(settings, history=history, process_name=f"consumer-{namespace}",
                           namespace=namespace)
    yield World(history, api, consumer)
    try:
        api.broker.delete_topology()
        api.redis.clear()
        consumer.db.abort_open()
        api.db.abort_open()
        api.db.drop()
    finally:
        close_ports(api)
        close_ports(consumer)


def submissions(n: int, *, start: int = 0) -> list[Message]:
    return [Message(f"sub-{i}", f"corr-{i}", ROUTING_KEY, submission_body(f"s{i}", f"user-{i}", seq=i))
            for i in range(start, start + n)]


def open_sale(w: World, stock: int) -> None:
    w.history.record("ok", "stock-init", "world", {"stock": stock, "offered": stock})
    assert w.api.redis.set(STOCK_KEY, stock).error is None
    w.api.db.set_stock(stock)


def publish_all(w: World, policy: Policy, messages: list[Message]) -> Counter:
    statuses = Counter(drive(accept(w.api, policy, m, "api")) for m in messages)
    if policy.write_pattern == "outbox":
        for _ in range(MAX_RELAY_PASSES):
            batch = w.api.db.outbox_unpublished(64)
            if not batch:
                break
            drive(relay_once(w.api, policy, batch, "relay"))
        assert w.api.db.outbox_unpublished(1) == []
    return statuses


def consume_all(w: World, policy: Policy, expected: int) -> Counter:
    outcomes: Counter = Counter()
    for delivery in w.consumer.broker.deliveries(QUEUE, prefetch=20, auto_ack=policy.ack == "auto",
                                                 inactivity_timeout=1.0, max_deliveries=expected + 50,
                                                 max_seconds=120):
        outcomes[drive(handle_delivery(w.consumer, policy, delivery, "consumer-1"))] += 1
    return outcomes


def stock_left(w: World, policy: Policy) -> int:
    if policy.stock_strategy.startswith("redis"):
        return w.api.redis.get(STOCK_KEY).value
    return w.api.db.stock_value()


def assert_safe(result: CheckResult) -> None:
    c = result.counts
    assert (c["lost"], c["unexpected"], c["oversold"], c["double_granted"], c["ghost"], c["orphan"]) \
        == (0, 0, 0, 0, 0, 0), result.to_dict()
    assert result.valid


@pytest.mark.parametrize("policy", [
    Policy(stock_strategy="redis-lua", dedupe="db"),
    Policy(stock_strategy="db-update", dedupe="db"),
    Policy(stock_strategy="redis-lua", dedupe="db", write_pattern="outbox"),
], ids=["redis-lua", "db-update", "outbox"])
def test_the_safe_flow_keeps_every_promise(world: World, policy: Policy):
    open_sale(world, STOCK)
    statuses = publish_all(world, policy, submissions(N))
    assert statuses == {200: N}
    outcomes = consume_all(world, policy, N)
    result = check(world.history.ops)

    assert_safe(result)
    vouchers = min(STOCK, N)
    assert result.counts["promised"] == N and result.counts["dequeued"] == N
    assert result.counts["granted"] == vouchers
    assert outcomes == {"granted": vouchers, "sold_out": N - vouchers}
    db = world.api.db
    assert db.ledger_count() == vouchers == STOCK - stock_left(world, policy)
    assert db.processed_count() == N  # sold out is an answer too: every message is remembered
    assert world.api.broker.queue_depth(QUEUE) == 0
    assert world.api.broker.queue_depth(DEAD_LETTER_QUEUE) == 0
    if policy.write_pattern == "outbox":
        assert db.submission_count() == N


def test_republished_copies_are_absorbed_by_the_dedupe_table(world: World):
    """Every message published twice (a retry after a lost confirm): duplicates are delivered,
    but the processed table turns each second copy into a no-op."""
    policy = Policy(stock_strategy="redis-lua", dedupe="db")
    open_sale(world, STOCK)
    messages = submissions(30)
    assert publish_all(world, policy, messages + messages) == {200: 60}
    outcomes = consume_all(world, policy, 60)
    result = check(world.history.ops)
    assert_safe(result)
    assert result.counts["duplicated"] == 30 and result.counts["granted"] == 30
    assert outcomes == {"granted": 30, "duplicate": 30}
    # the duplicates gave their Redis decrement back (compensate), so the stock still adds up
    assert world.api.db.ledger_count() == 30 == STOCK - stock_left(world, policy)


def test_without_dedupe_the_checker_sees_the_double_grants(world: World):
    """The same duplicates with the guard switched off: the run must be reported invalid."""
    policy = Policy(stock_strategy="redis-lua", dedupe="off")
    open_sale(world, STOCK)
    messages = submissions(10)
    publish_all(world, policy, messages + messages)
    consume_all(world, policy, 20)
    result = check(world.history.ops)
    assert result.counts["double_granted"] > 0 and not result.valid
    assert result.counts["lost"] == 0


def test_invalid_payloads_are_dead_lettered_by_the_schema_gate(world: World):
    policy = Policy(stock_strategy="redis-lua", dedupe="db")
    open_sale(world, STOCK)
    bad = [Message(f"bad-{i}", f"corr-bad-{i}", ROUTING_KEY, {"user_id": f"u{i}"}) for i in range(5)]
    publish_all(world, policy, submissions(20) + bad)
    outcomes = consume_all(world, policy, 25)
    assert outcomes == {"granted": 20, "invalid": 5}
    assert_safe(check(world.history.ops))
    dead = []
    for d in world.api.broker.deliveries(DEAD_LETTER_QUEUE, inactivity_timeout=1.0, max_deliveries=10):
        dead.append(d)
        assert world.api.broker.ack(d).value is True
    assert sorted(d.message.message_id for d in dead) == sorted(m.message_id for m in bad)
    assert {d.death_reason for d in dead} == {"rejected"}
