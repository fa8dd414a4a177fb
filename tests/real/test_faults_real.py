"""Real faults on real services, each leaving every service running.

With manual ack, publisher confirms, dedupe and (for the relay) the outbox, each fault must end
with nothing lost, no voucher granted twice, nothing oversold, and the independent audit's
reconciliation exact (vouchers taken from the Redis counter == ledger rows).  With auto-ack the
same worker kill loses messages - the checker must see it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from real_adapters.conformance import compare_with_model
from real_adapters.faults import parse_fault
from real_adapters.runner import RealOptions, RealResult, run_real
from real_adapters.settings import Settings
from simulator.config import FlashSaleConfig

pytestmark = pytest.mark.real

SAFE = dict(ack="manual", confirms=True, dedupe="db", stock_strategy="redis-lua")


@pytest.fixture
def settings(amqp_url: str, redis_url: str, postgres_url: str) -> Settings:
    return Settings(amqp_url=amqp_url, redis_url=redis_url, database_url=postgres_url)


def run(settings: Settings, tmp_path: Path, *faults: str, **config) -> RealResult:
    base = dict(submissions=150, stock=100, consumers=2, gateway_latency_ms=20.0,
                arrival_profile="constant", arrival_rate=1000.0, **SAFE)
    cfg = FlashSaleConfig(**{**base, **config})
    return run_real(RealOptions(config=cfg, settings=settings, faults=tuple(map(parse_fault, faults)),
                                run_dir=tmp_path / "run", max_seconds=90))


def fired(result: RealResult) -> dict:
    assert len(result.faults) == 1 and "skipped" not in result.faults[0], (result.faults, result.run)
    return result.faults[0]


def assert_kept_every_promise(result: RealResult) -> None:
    c, a = result.checker.counts, result.audit
    assert (c["lost"], c["double_granted"], c["oversold"], c["unexpected"]) == (0, 0, 0, 0), \
        json.dumps(result.checker.to_dict())[:2000]
    assert c["promised"] == result.config.submissions == c["dequeued"]
    # the audit reads the real state, not the history
    assert a["reconciled"] and a["stock_leaked"] == 0 and a["oversold"] == 0, a
    assert a["ledger_rows"] == c["granted"] == min(result.config.stock, result.config.submissions)
    assert a["queue_ready_after_drain"] == 0 and not result.run["errors"], result.run


def test_kill_9_of_a_worker_mid_send_loses_nothing(settings, tmp_path):
    # killed with its ledger row committed and its ack not sent: the redelivered copy meets the
    # dedupe table; the messages it had prefetched go to the other worker
    result = run(settings, tmp_path, "kill:consumer-1@30%/sending")
    note = fired(result)
    assert note["sending"] is True
    assert_kept_every_promise(result)
    assert result.metrics["redeliveries"] >= 1  # the kill really caught work in flight
    # the model, given the same seed, config and kill time, agrees on every safety count
    conformance = compare_with_model(result)
    verdicts = {row["figure"]: row["verdict"] for row in conformance["rows"]}
    assert all(verdicts[k] == "same" for k in ("lost", "double_granted", "oversold", "unexpected")), \
        conformance["rows"]


def test_with_auto_ack_the_same_kill_loses_messages(settings, tmp_path):
    result = run(settings, tmp_path, "kill:consumer-1@25%", ack="auto")
    fired(result)
    c, a = result.checker.counts, result.audit
    assert c["lost"] > 0 and not result.checker.valid
    assert c["lost"] + c["dequeued"] == c["promised"] == 150
    assert c["double_granted"] == 0 and c["oversold"] == 0
    # nothing comes back from a killed auto-ack consumer: the broker forgot them on delivery
    assert a["drained_at_end"] == 0 and a["queue_ready_after_drain"] == 0
    assert any(e.kind == "lost" for e in result.checker.anomalies)


def test_a_broker_restart_mid_run_is_ridden_out_by_reconnecting_and_republishing(settings, tmp_path):
    import pika

    # arrivals over ~4 s, the restart early: rabbitmqctl itself takes a second or two to act, and
    # the outage must fall while clients are still publishing
    result = run(settings, tmp_path, "broker-restart@10%+0.5", submissions=160, arrival_rate=40.0,
                 publish_retries=12)
    note = fired(result)
    assert note["down_s"] > 0.5
    assert_kept_every_promise(result)
    ops = result.ops
    retried = [op for op in ops if op.f == "enqueue" and op.type == "info"]
    last_submit = max(op.time for op in ops if op.f == "submit")
    context = {"fault": note, "retried": len(retried), "last_submit_after_go_s": round(last_submit - ops[0].time, 2)}
    assert result.metrics["accepted"] == 160, context  # every client got its 200 in the end
    # the broker was really gone: some publishes got no answer and were sent again
    assert retried, context
    assert [op.f for op in ops if op.process == "broker"] == ["crash", "restart"]
    params = pika.URLParameters(settings.amqp_url)
    params.connection_attempts, params.socket_timeout = 1, 5
    pika.BlockingConnection(params).close()  # and it is serving again


def test_the_relay_killed_between_publish_and_mark_republishes_and_dedupe_absorbs_it(settings, tmp_path):
    result = run(settings, tmp_path, "point:relay@relay:after-publish#30", write_pattern="outbox")
    note = fired(result)
    assert note["back_after_s"] > 0  # a new relay took over
    assert_kept_every_promise(result)
    c, a = result.checker.counts, result.audit
    assert c["duplicated"] >= 1 and c["ghost"] == c["orphan"] == 0  # the row went out twice
    assert a["outbox_unpublished"] == 0 and a["submission_rows"] == 150
    relay_crashes = [op for op in result.ops if op.f == "crash" and op.process == "relay"]
    assert len(relay_crashes) == 1 and relay_crashes[0].value == {"point": "relay:after-publish"}


def test_the_audit_sees_a_voucher_leaked_between_stock_and_ledger(settings, tmp_path):
    """Plain DECR, and a worker dying after the decrement and before the commit: nothing is
    lost or oversold - the history is valid - but one voucher is gone from the counter with no
    ledger row.  Only the independent audit of the real state can see that."""
    # stock above demand: DECR would count refusals below zero, which is another lesson
    result = run(settings, tmp_path, "point:consumer-1@consumer:after-stock#12",
                 stock_strategy="redis-decr", stock=200)
    fired(result)
    assert result.checker.valid and result.checker.counts["lost"] == 0
    a = result.audit
    assert (a["stock_leaked"], a["reconciled"]) == (1, False), a
    assert a["ledger_rows"] == a["offered_stock"] - a["stock_left"] - 1


def test_the_lua_reservation_leaks_nothing_when_a_worker_dies_after_taking_stock(settings, tmp_path):
    """The same death with the Lua reservation: the redelivered message finds the hold its
    first delivery left in Redis and grants with that unit, so the audit reconciles exactly."""
    result = run(settings, tmp_path, "point:consumer-1@consumer:after-stock#12")
    fired(result)
    assert_kept_every_promise(result)
    reused = [op for op in result.ops if op.f == "stock" and op.value.get("reused")]
    assert len(reused) == 1 and reused[0].process == "consumer-2", reused


def test_a_paused_worker_holds_its_messages_and_then_finishes_them(settings, tmp_path):
    result = run(settings, tmp_path, "stop:consumer-2@30%+1.5")
    note = fired(result)
    assert note["pause_s"] == 1.5
    assert_kept_every_promise(result)
    assert result.metrics["redeliveries"] == 0  # the channel stayed open: nothing was requeued
    kinds = [op.f for op in result.ops if op.process == "consumer-2" and op.type == "info"]
    assert kinds == ["pause", "resume"]
