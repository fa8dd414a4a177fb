"""The flash-sale gift event: the seed's interview question as one seeded run.

``run_flash_sale(config)`` builds the SimPy world, runs the shared flow until the work
drains (or the time bound), performs the final drain, and returns the metrics, the checker's
verdict and the history's SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simulator.checker import CheckResult
from simulator.config import FlashSaleConfig
from simulator.history import Op
from simulator.sim.world import World


@dataclass
class FlashSaleResult:
    config: FlashSaleConfig
    metrics: dict[str, Any]
    checker: CheckResult
    history_sha256: str
    series: dict[str, list[float]] = field(repr=False)
    ops: list[Op] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": "flash-sale",
            "seed": self.config.seed,
            "config": self.config.model_dump(mode="json"),
            "metrics": self.metrics,
            "checker": self.checker.to_dict(),
            "history_sha256": self.history_sha256,
        }

    def report(self) -> str:
        m, c = self.metrics, self.checker.counts
        lines = [
            f"flash-sale  seed={self.config.seed}  mode={self.config.mode}  "
            f"stock={self.config.stock} ({self.config.stock_strategy})  consumers={self.config.consumers}"
            f"  ack={self.config.ack}  dedupe={self.config.dedupe}",
            f"  submissions        {m['submissions']}  (accepted {m['accepted']}, refused {m['refused']},"
            f" timed out {m['timeouts']})",
            f"  vouchers granted   {m['vouchers_granted']}  (expected {m['expected_vouchers']})",
            f"  response           p50 {m['response_ms']['p50']:.1f} ms   p99 {m['response_ms']['p99']:.1f} ms",
            f"  time to voucher    p50 {m['time_to_voucher_s']['p50']:.3f} s   "
            f"p99 {m['time_to_voucher_s']['p99']:.3f} s",
            f"  peak queue depth   {m['peak_queue_depth']}    simulated {m['sim_seconds']:.1f} s",
            "  checker            " + ("VALID" if self.checker.valid else "INVALID") + "  " +
            "  ".join(f"{k}={c[k]}" for k in ("lost", "duplicated", "unexpected", "oversold",
                                               "double_granted", "out_of_order", "ghost", "orphan")),
        ]
        for anomaly in self.checker.anomalies[:5]:
            lines.append(f"    {anomaly.kind}: {anomaly.chain}")
        lines.append(f"  history sha256     {self.history_sha256}")
        return "\n".join(lines)


def run_flash_sale(config: FlashSaleConfig | None = None) -> FlashSaleResult:
    cfg = config or FlashSaleConfig()
    world = World(cfg)
    world.run()
    check = world.checker.result()
    series = world.series.to_dict()
    accepted = world.statuses.get(200, 0)
    valid_share = 1.0 - cfg.invalid_fraction
    metrics = {
        "submissions": cfg.submissions,
        "accepted": accepted,
        "refused": sum(n for s, n in world.statuses.items() if s != 200),
        "timeouts": world.timeouts,
        "vouchers_granted": check.counts["granted"],
        "expected_vouchers": min(cfg.offered_stock, round(cfg.submissions * valid_share))
        if not cfg.invalid_fraction else None,
        "response_ms": world.response.to_dict(),
        "time_to_voucher_s": world.time_to_voucher.to_dict(),
        "peak_queue_depth": int(max(series.get("queue_depth", [0]) or [0])),
        "sim_seconds": round(world.env.now, 6),
        "redis_commands": world.redis.stats["commands"],
        "db_lock_wait_s": round(world.db.stats["lock_wait_time"], 6),
        "broker": dict(world.broker.stats),
        "history_ops": world.history.count,
    }
    return FlashSaleResult(cfg, metrics, check, world.history.sha256(), series, world.history.ops)
