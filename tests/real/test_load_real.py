"""A burst of 20,000 submissions on the real services with 4 worker processes.

Reliability issue, "Load": nothing lost, no effect (voucher) applied twice, and client memory
bounded - each worker holds at most ``prefetch`` unacked deliveries and the load generator waits
for each publisher confirm, so a worker's peak RSS must not grow with the size of the burst.
That is checked against a burst a tenth the size, run the same way just before.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from real_adapters.runner import RealOptions, RealResult, run_real
from real_adapters.settings import Settings
from simulator.config import FlashSaleConfig

pytestmark = pytest.mark.real

BURST = 20_000
WORKERS = 4
GROWTH_MIB = 8.0  # a worker may grow by this much from a 2,000 to a 20,000 burst, no more


@pytest.fixture
def settings(amqp_url: str, redis_url: str, postgres_url: str) -> Settings:
    return Settings(amqp_url=amqp_url, redis_url=redis_url, database_url=postgres_url)


def burst(settings: Settings, run_dir: Path, submissions: int) -> RealResult:
    # stock below demand, so both answers (granted and sold out) are exercised at volume
    cfg = FlashSaleConfig(submissions=submissions, stock=submissions * 3 // 5, consumers=WORKERS,
                          prefetch=20, gateway_latency_ms=0.0, arrival_profile="constant",
                          arrival_rate=50_000.0, ack="manual", confirms=True, dedupe="db",
                          stock_strategy="redis-lua")
    return run_real(RealOptions(config=cfg, settings=settings, run_dir=run_dir, max_seconds=600))


def test_a_20k_burst_with_4_workers_loses_and_duplicates_nothing_in_bounded_memory(settings, tmp_path):
    small = burst(settings, tmp_path / "small", BURST // 10)
    big = burst(settings, tmp_path / "big", BURST)
    for result in (small, big):
        c, a = result.checker.counts, result.audit
        n = result.config.submissions
        assert not result.run["timed_out"] and not result.run["errors"], result.run
        assert (c["lost"], c["double_granted"], c["oversold"], c["unexpected"]) == (0, 0, 0, 0), \
            json.dumps(result.checker.to_dict())[:2000]
        assert c["promised"] == n == c["dequeued"]
        assert a["ledger_rows"] == c["granted"] == result.config.stock  # every unit, once each
        assert a["reconciled"] and a["stock_leaked"] == 0 and a["oversold"] == 0, a
        assert a["queue_ready_after_drain"] == 0, a
    peaks = {size: _peaks(result) for size, result in (("small", small), ("big", big))}
    assert set(peaks["big"]) == {"consumer", "loadgen"} and len(big.run["peak_rss_mib"]) == WORKERS + 1
    for role, peak in peaks["big"].items():
        assert peak <= peaks["small"][role] + GROWTH_MIB, (role, peaks)
    print(f"\n20k burst: {big.checker.counts['granted']} granted, wall {big.metrics['wall_seconds']} s, "
          f"peak RSS MiB {peaks}")  # shown with -s: the figures for the reliability note


def _peaks(result: RealResult) -> dict[str, float]:
    """The largest peak RSS per role (consumer-1.<pid> -> consumer)."""
    out: dict[str, float] = {}
    for stem, mib in result.run["peak_rss_mib"].items():
        role = stem.split(".")[0].rstrip("0123456789").rstrip("-")
        out[role] = max(out.get(role, 0.0), mib)
    return out
