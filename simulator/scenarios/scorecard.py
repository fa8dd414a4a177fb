"""The flash-sale scorecard: several architectures, the same arrivals, the same crashes.

``run_scorecard(config)`` runs each named architecture on the same seeded submissions with the
same crash schedule, then scores it from its history:

* fairness: first-come-first-served violations - submissions that got no voucher although a
  *later* one did;
* time to voucher (p99), rejected while stock remained, oversell, lost, duplicated.

The architectures are the steps of the lessons, from the seed's "before" picture (everything in
the request, stock by GET then SET, no dedupe) to the outbox.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping

import pydantic
from pydantic import Field, field_validator

from simulator.config import Fault, FlashSaleConfig, StrictModel
from simulator.history import Op
from simulator.scenarios.sync_async import run_world

__all__ = ["ARCHITECTURES", "ScorecardConfig", "ScorecardResult", "make_config", "run_scorecard",
           "fairness", "rejected_while_stock_remained", "DEFAULT_FAULTS"]

# name -> (what it is, the FlashSaleConfig fields it changes from the safe defaults)
ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    "naive-sync": ("everything inside the request; stock by GET then SET; no dedupe",
                   {"mode": "sync", "stock_strategy": "redis-get-set", "dedupe": "off"}),
    "async-auto-ack": ("queue and consumers, but messages acked on delivery", {"ack": "auto"}),
    "async-safe": ("durable queue, confirms, manual ack after commit, DB dedupe, Lua stock", {}),
    "async-outbox": ("async-safe, with the row and its event saved in one transaction",
                     {"write_pattern": "outbox"}),
}
ArchitectureName = Literal["naive-sync", "async-auto-ack", "async-safe", "async-outbox"]
# a consumer dies holding deliveries; Redis restarts early in the rush, while stock remains
DEFAULT_FAULTS = (Fault(target="redis", at=0.2, restart_after=0.5),
                  Fault(target="consumer-2", at=0.5, restart_after=1.0))
METRICS = ("fcfs_violations", "time_to_voucher_p99_s", "rejected_while_stock_remained", "oversold",
           "lost", "duplicated", "double_granted", "vouchers_granted")


class ScorecardConfig(StrictModel):
    seed: int = Field(default=7, ge=0, le=2**32 - 1)
    # the whole history is read for fairness: about ten operations a submission
    submissions: int = Field(default=1500, ge=1, le=100_000)
    stock: int = Field(default=400, ge=0, le=2**62)
    arrival_rate: float = Field(default=1000.0, gt=0, le=1e6, allow_inf_nan=False,
                                description="submissions per second at the opening")
    consumers: int = Field(default=4, ge=1, le=10_000)
    gateway_latency_ms: float = Field(default=30.0, ge=0, le=600_000, allow_inf_nan=False)
    architectures: tuple[ArchitectureName, ...] = Field(
        default=tuple(ARCHITECTURES), description="comma-separated: " + ", ".join(ARCHITECTURES))
    crashes: bool = Field(default=True, description="apply the crash schedule (faults) to every architecture")
    faults: tuple[Fault, ...] = DEFAULT_FAULTS

    @field_validator("architectures", mode="before")
    @classmethod
    def _csv(cls, v: Any) -> Any:
        return tuple(p.strip() for p in v.split(",") if p.strip()) if isinstance(v, str) else v

    @field_validator("architectures")
    @classmethod
    def _distinct(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or len(set(v)) != len(v):
            raise ValueError("name at least one architecture, each once")
        return v

    def flash_sale(self, name: str) -> FlashSaleConfig:
        return FlashSaleConfig(seed=self.seed, submissions=self.submissions, stock=self.stock,
                               arrival_rate=self.arrival_rate, consumers=self.consumers,
                               gateway_latency_ms=self.gateway_latency_ms,
                               faults=self.faults if self.crashes else (), keep_history=None,
                               **ARCHITECTURES[name][1])


def make_config(**values: Any) -> ScorecardConfig:
    """``ScorecardConfig(**values)``; a bad value becomes an ``InputError`` naming the field."""
    from simulator.config_errors import input_error_from

    try:
        return ScorecardConfig.model_validate(values)
    except pydantic.ValidationError as exc:
        raise input_error_from(exc) from None


# --------------------------------------------------------------------------- scoring a history

@dataclass
class _Submission:
    order: int                  # arrival order (the submit invoke's place in the history)
    granted: bool = False
    invalid: bool = False       # the schema gate refused it: not a valid entry
    refused_at: float | None = None  # first "no": a sold-out answer or an error reply
    claimed_at: float | None = None  # when its voucher left stock (stock op, else the grant)


def _outcomes(ops: Iterable[Op]) -> dict[str, _Submission]:
    subs: dict[str, _Submission] = {}
    for op in ops:
        mid = op.msg_id
        if mid is None:
            continue
        if op.f == "submit" and op.type == "invoke":
            subs.setdefault(mid, _Submission(len(subs)))
            continue
        sub = subs.get(mid)
        if sub is None:
            continue
        outcome = op.value.get("outcome") if op.f == "dequeue" and isinstance(op.value, dict) else None
        if op.f == "grant" and op.type == "ok":
            sub.granted = True
            sub.claimed_at = op.time if sub.claimed_at is None else sub.claimed_at
        elif op.f == "stock" and op.type == "ok" and sub.claimed_at is None:
            sub.claimed_at = op.time
        elif outcome == "invalid":
            sub.invalid = True
        elif (outcome == "sold_out" or (op.f == "submit" and op.type != "ok")) and sub.refused_at is None:
            sub.refused_at = op.time
    return subs


def fairness(ops: Iterable[Op]) -> dict[str, int]:
    """First-come-first-served violations, from the history alone.

    ``violations``: valid submissions that got no voucher although a later one got one (each
    counted once).  ``pairs``: (earlier refused, later granted) pairs - how far out of order.
    """
    subs = sorted(_outcomes(ops).values(), key=lambda s: s.order)
    violations = pairs = later_granted = 0
    for sub in reversed(subs):
        if sub.granted:
            later_granted += 1
        elif not sub.invalid and later_granted:
            violations += 1
            pairs += later_granted
    return {"violations": violations, "pairs": pairs}


def rejected_while_stock_remained(ops: Iterable[Op], offered: int) -> int:
    """Valid submissions told "no" (sold out, an error, a timeout) while stock remained.

    Stock remained at time t when fewer than ``offered`` vouchers had been claimed by t, where a
    voucher counts as claimed from the moment its decrement took effect - but only if that
    message was granted in the end (a decrement lost to a crash never reached anyone, so the
    voucher it took still counted as remaining).  The submission must never get a voucher later.
    """
    subs = list(_outcomes(ops).values())
    claims = sorted(s.claimed_at for s in subs if s.granted and s.claimed_at is not None)
    count = 0
    for sub in subs:
        if sub.granted or sub.invalid or sub.refused_at is None:
            continue
        if bisect_right(claims, sub.refused_at) < offered:  # vouchers claimed by then
            count += 1
    return count


# --------------------------------------------------------------------------- the run

@dataclass
class ScorecardResult:
    config: ScorecardConfig
    rows: dict[str, dict[str, Any]]
    series: dict[str, dict[str, list[float]]] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": "scorecard", "seed": self.config.seed,
                "config": self.config.model_dump(mode="json"), "order": list(self.rows),
                "architectures": self.rows}

    def report(self) -> str:
        cfg = self.config
        crashes = ", ".join(f"{f.target}@{f.at:g}" for f in cfg.faults if f.at is not None) \
            if cfg.crashes and cfg.faults else "none"
        heads = ("FCFS viol.", "ttv p99 s", "rej+stock", "oversold", "lost", "dup.", "2x grant", "vouchers")
        lines = [f"scorecard  seed={cfg.seed}  {cfg.submissions} submissions, stock {cfg.stock}, "
                 f"spike from {cfg.arrival_rate:g}/s, crashes: {crashes}",
                 f"  {'':<16}" + "".join(f"{h:>11}" for h in heads)]
        for name, row in self.rows.items():
            cells = [f"{row[k]:.2f}" if isinstance(row[k], float) else ("-" if row[k] is None else str(row[k]))
                     for k in METRICS]
            lines.append(f"  {name:<16}" + "".join(f"{c:>11}" for c in cells))
        return "\n".join(lines)


def score(cfg: ScorecardConfig, name: str) -> tuple[dict[str, Any], dict[str, list[float]]]:
    flash = cfg.flash_sale(name)
    world = run_world(flash)
    ops = world.history.ops
    counts = world.checker.result().counts
    fair = fairness(ops)
    row = {
        "description": ARCHITECTURES[name][0],
        "fcfs_violations": fair["violations"],
        "fcfs_pairs": fair["pairs"],
        "time_to_voucher_p99_s": world.time_to_voucher.to_dict()["p99"],
        "rejected_while_stock_remained": rejected_while_stock_remained(ops, flash.offered_stock),
        "oversold": counts["oversold"],
        "lost": counts["lost"],
        "duplicated": counts["duplicated"],
        "double_granted": counts["double_granted"],
        "vouchers_granted": counts["granted"],
        "api_refusals": sum(n for s, n in world.statuses.items() if s != 200) + world.timeouts,
        "history_sha256": world.history.sha256(),
    }
    return row, world.series.to_dict()


def run_scorecard(config: ScorecardConfig | Mapping[str, Any] | None = None) -> ScorecardResult:
    cfg = config if isinstance(config, ScorecardConfig) else make_config(**dict(config or {}))
    rows: dict[str, dict[str, Any]] = {}
    series: dict[str, dict[str, list[float]]] = {}
    for name in cfg.architectures:
        rows[name], series[name] = score(cfg, name)
    return ScorecardResult(cfg, rows, series)
