"""The foundation's claims on seeded flash-sale runs in the SimPy world."""

from __future__ import annotations

import pytest

from simulator.config import FlashSaleConfig, Fault
from simulator.scenarios.flash_sale import run_flash_sale

SMALL = dict(submissions=600, stock=200, arrival_rate=300.0)


@pytest.fixture(scope="module")
def default_run():
    return run_flash_sale(FlashSaleConfig(seed=7, **SMALL))


def test_safe_default_is_valid_and_grants_exactly_the_stock(default_run):
    counts = default_run.checker.counts
    assert default_run.checker.valid, default_run.checker.to_dict()
    assert counts["lost"] == 0 and counts["oversold"] == 0 and counts["double_granted"] == 0
    assert default_run.metrics["vouchers_granted"] == min(200, 600)


def test_stock_larger_than_demand_grants_every_submission():
    result = run_flash_sale(FlashSaleConfig(seed=3, submissions=300, stock=1000, arrival_rate=200.0))
    assert result.checker.valid
    assert result.metrics["vouchers_granted"] == 300


def test_same_seed_same_history_other_seed_differs(default_run):
    again = run_flash_sale(FlashSaleConfig(seed=7, **SMALL))
    other = run_flash_sale(FlashSaleConfig(seed=8, **SMALL))
    assert again.history_sha256 == default_run.history_sha256
    assert again.to_dict() == default_run.to_dict()
    assert other.history_sha256 != default_run.history_sha256


def test_auto_ack_and_a_consumer_crash_loses_messages_with_a_causal_chain():
    crash = Fault(target="consumer-2", at=0.5, restart_after=1.0)
    cfg = FlashSaleConfig(seed=7, ack="auto", prefetch=50, handler_ms=5.0, faults=(crash,), **SMALL)
    result = run_flash_sale(cfg)
    assert result.checker.counts["lost"] > 0
    assert not result.checker.valid
    chains = [a.chain for a in result.checker.anomalies if a.kind == "lost"]
    assert chains and any("consumer-2" in c and "crash" in c for c in chains)


def test_manual_ack_survives_the_same_crash():
    crash = Fault(target="consumer-2", at=0.5, restart_after=1.0)
    cfg = FlashSaleConfig(seed=7, ack="manual", prefetch=50, handler_ms=5.0, faults=(crash,), **SMALL)
    result = run_flash_sale(cfg)
    assert result.checker.counts["lost"] == 0
    assert result.checker.counts["oversold"] == 0
    assert result.checker.valid


def test_read_then_write_stock_with_eight_consumers_oversells():
    cfg = FlashSaleConfig(seed=7, stock_strategy="redis-get-set", consumers=8, **SMALL)
    result = run_flash_sale(cfg)
    assert result.checker.counts["oversold"] > 0
    assert result.metrics["vouchers_granted"] > 200


@pytest.mark.parametrize("strategy", ["redis-lua", "redis-decr", "db-update"])
def test_atomic_strategies_never_oversell(strategy):
    cfg = FlashSaleConfig(seed=11, stock_strategy=strategy, consumers=8, **SMALL)
    result = run_flash_sale(cfg)
    assert result.checker.counts["oversold"] == 0
    assert result.metrics["vouchers_granted"] == 200


def test_db_read_then_write_oversells_under_concurrency():
    cfg = FlashSaleConfig(seed=7, stock_strategy="db-read-then-write", consumers=8, **SMALL)
    assert run_flash_sale(cfg).checker.counts["oversold"] > 0


def test_ack_loss_without_dedupe_double_grants_and_with_dedupe_does_not():
    base = dict(seed=5, ack_loss=0.05, **SMALL)
    without = run_flash_sale(FlashSaleConfig(dedupe="off", stock=600, **{k: v for k, v in base.items()
                                                                          if k != "stock"}))
    with_db = run_flash_sale(FlashSaleConfig(dedupe="db", stock=600, **{k: v for k, v in base.items()
                                                                         if k != "stock"}))
    assert without.checker.counts["duplicated"] > 0
    assert without.checker.counts["double_granted"] > 0
    assert with_db.checker.counts["duplicated"] > 0
    assert with_db.checker.counts["double_granted"] == 0


def test_broker_crash_with_confirms_loses_nothing():
    crash = Fault(target="broker", at=0.8, restart_after=1.0)
    result = run_flash_sale(FlashSaleConfig(seed=7, faults=(crash,), **SMALL))
    assert result.checker.counts["lost"] == 0
    assert result.checker.valid


def test_transient_messages_without_confirms_are_lost_on_broker_crash():
    crash = Fault(target="broker", at=0.8, restart_after=1.0)
    cfg = FlashSaleConfig(seed=7, durable=False, persistent=False, confirms=False,
                          consumers=1, handler_ms=10.0, faults=(crash,), **SMALL)
    result = run_flash_sale(cfg)
    assert result.checker.counts["lost"] > 0


def test_sync_mode_responds_slower_than_async_under_the_spike():
    spike = dict(seed=7, submissions=2000, stock=500, arrival_rate=2000.0, gateway_latency_ms=200.0)
    sync = run_flash_sale(FlashSaleConfig(mode="sync", **spike))
    async_ = run_flash_sale(FlashSaleConfig(mode="async", **spike))
    assert sync.metrics["response_ms"]["p99"] > 5 * async_.metrics["response_ms"]["p99"]


def test_invalid_payloads_never_reach_the_handler():
    result = run_flash_sale(FlashSaleConfig(seed=7, invalid_fraction=0.1, **SMALL))
    invalid = [op for op in result.ops if op.f == "dequeue" and op.value["outcome"] == "invalid"]
    granted_ids = {op.msg_id for op in result.ops if op.f == "grant"}
    assert invalid
    assert not granted_ids & {op.msg_id for op in invalid}


def test_outbox_run_is_valid_with_no_ghosts_or_orphans():
    result = run_flash_sale(FlashSaleConfig(seed=7, write_pattern="outbox", **SMALL))
    counts = result.checker.counts
    assert result.checker.valid, result.checker.to_dict()
    assert counts["ghost"] == 0 and counts["orphan"] == 0
    assert result.metrics["vouchers_granted"] == 200
