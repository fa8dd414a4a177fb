"""Message loss: lesson 04, curriculum rows C2 and B7.

``run_loss(config)`` runs one tiny seeded flash sale per cell of a matrix::

    {transient, durable+persistent} x {no confirms, confirms} x {auto ack, manual ack}
        x crash target {producer, broker, consumer, redis under each persistence mode}

plus a control column without a crash.  Every cell sees the same arrivals (common random
numbers): a burst that builds a backlog, then a slow tail that lets it drain before the last
submission (the world stops once the last client is answered and the queue is empty, which
with auto-ack would cut off deliveries still in the consumers' buffers).  The producer, broker
or consumer dies at ``crash_at`` inside the burst; Redis dies at ``redis_crash_at``, after its
first AOF fsync tick.  Each cell holds the checker's ``lost`` count and one causal chain.

Only durable queue + persistent messages + publisher confirms + manual ack after the commit
loses nothing to a broker or a consumer crash (reliability-reference.md §3 invariants 1, 5-7).

Two Redis experiments follow (B7, invariants 4, 19, 20), both with less stock than demand:

* the stock key is lost (no persistence) and rebuilt either naively to the full stock (it
  oversells) or from the DB ledger, ``offered - issued`` (it does not);
* AOF ``everysec`` rolls the key back to the last fsync tick, so the decrements of up to one
  second come back as stock: ``oversold = max(0, lost decrements - safety stock)``, and a
  safety stock at least the size of that bounded window absorbs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping

import pydantic
from pydantic import Field, field_validator, model_validator

from simulator.config import FlashSaleConfig, Fault, StrictModel, split_commas
from simulator.flow import STOCK_KEY
from simulator.history import Op

if TYPE_CHECKING:
    from simulator.scenarios.flash_sale import FlashSaleResult

__all__ = ["LossConfig", "LossResult", "Design", "Cell", "make_config", "run_loss", "designs",
           "TARGETS", "REDIS_TARGETS"]

Target = Literal["none", "producer", "broker", "consumer", "redis:none", "redis:rdb", "redis:aof-everysec",
                 "redis:aof-always"]
TARGETS: tuple[str, ...] = ("none", "producer", "broker", "consumer", "redis:none", "redis:rdb",
                            "redis:aof-everysec", "redis:aof-always")
REDIS_TARGETS = tuple(t for t in TARGETS if t.startswith("redis:"))
# the order a cell looks for its example chain: the loss itself first
_EXAMPLE_KINDS = ("lost", "oversold", "double_granted", "duplicated")
BURST_SHARE = 0.7  # expected share of the submissions that arrive in the burst


_split = split_commas  # tuple fields also accept "a,b", as the command line passes them


class LossConfig(StrictModel):
    seed: int = Field(default=7, ge=0, le=2**32 - 1)
    # every cell is its own run: keep them tiny (the default is 64 cells + 6 Redis runs)
    submissions: int = Field(default=100, ge=10, le=5000, description="submissions per run")
    arrival_rate: float = Field(default=100.0, gt=0, le=10_000, allow_inf_nan=False,
                                description="per second during the burst (faster than the consumers drain)")
    tail_rate: float = Field(default=5.0, gt=0, le=10_000, allow_inf_nan=False,
                             description="per second after the burst, slow enough for the backlog to drain")
    consumers: int = Field(default=2, ge=1, le=64)
    crash_at: float = Field(default=0.5, gt=0, le=60, allow_inf_nan=False,
                            description="simulated second at which the producer, broker or consumer dies")
    redis_crash_at: float = Field(default=1.2, gt=0, le=60, allow_inf_nan=False,
                                  description="simulated second at which Redis dies (after 1 s: the first "
                                              "AOF fsync tick, so everysec rolls back instead of losing the key)")
    restart_after: float = Field(default=0.5, gt=0, le=60, allow_inf_nan=False)
    fsync_interval_s: float = Field(default=0.2, gt=0, le=5, allow_inf_nan=False,
                                    description="the broker's message-store flush batch")
    durability: tuple[Literal["transient", "durable"], ...] = Field(
        default=("transient", "durable"), description="transient, or durable queue + persistent messages")
    confirms: tuple[bool, ...] = (False, True)
    acks: tuple[Literal["auto", "manual"], ...] = ("auto", "manual")
    targets: tuple[Target, ...] = Field(default=TARGETS, description="crash targets (matrix columns)")
    redis_stock: int = Field(default=75, ge=1, le=5000,
                             description="stock of the Redis experiments (less than the demand)")
    safety_stocks: tuple[int, ...] = Field(default=(0, 10, 20, 30),
                                           description="safety stocks tried against the AOF everysec window")

    @field_validator("durability", "confirms", "acks", "targets", "safety_stocks", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        return _split(v)

    @model_validator(mode="after")
    def _sane(self) -> "LossConfig":
        for name in ("durability", "confirms", "acks", "targets", "safety_stocks"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name}: give at least one value")
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: each value at most once, got {list(values)}")
        if self.redis_stock >= self.submissions:
            raise ValueError(f"redis_stock: must be below submissions ({self.submissions}): "
                             "the Redis experiments need more demand than stock")
        for s in self.safety_stocks:
            if not 0 <= s <= self.redis_stock:
                raise ValueError(f"safety_stocks: each must be from 0 to redis_stock ({self.redis_stock}), got {s}")
        return self


def make_config(**values: Any) -> LossConfig:
    """``LossConfig(**values)``, a bad value reported as an ``InputError`` naming the field."""
    from simulator.config_errors import input_error_from

    try:
        return LossConfig.model_validate(values)
    except pydantic.ValidationError as exc:
        raise input_error_from(exc) from None


# --------------------------------------------------------------------------- the matrix

@dataclass(frozen=True)
class Design:
    """One row of the matrix: how the broker side is configured."""

    durable: bool  # durable queue and persistent messages together
    confirms: bool
    ack: str

    @property
    def label(self) -> str:
        return " / ".join(("durable+persistent" if self.durable else "transient",
                           "confirms" if self.confirms else "no confirms", f"{self.ack}-ack"))

    @property
    def safe(self) -> bool:
        return self.durable and self.confirms and self.ack == "manual"


def designs(cfg: LossConfig) -> list[Design]:
    return [Design(d == "durable", c, a) for d in cfg.durability for c in cfg.confirms for a in cfg.acks]


@dataclass
class Cell:
    design: Design
    target: str
    lost: int
    duplicated: int
    granted: int
    refused: int                    # the client was told: an error status or a timeout
    broker_dropped: int             # messages the broker threw away at the crash
    redis_lost_writes: int | None   # writes Redis rolled back (redis targets only)
    reseeded_to: int | None         # the stock key was rebuilt to this value
    oldest_lost_s: float | None     # broker crash: age of the oldest lost message's publish
    example_kind: str | None
    example: str | None
    history_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"design": self.design.label, "durable": self.design.durable,
                "confirms": self.design.confirms, "ack": self.design.ack, "target": self.target,
                "lost": self.lost, "duplicated": self.duplicated, "granted": self.granted,
                "refused": self.refused, "broker_dropped": self.broker_dropped,
                "redis_lost_writes": self.redis_lost_writes, "reseeded_to": self.reseeded_to,
                "oldest_lost_s": self.oldest_lost_s, "example_kind": self.example_kind,
                "example": self.example, "history_sha256": self.history_sha256}


def _flash(cfg: LossConfig, **overrides: Any) -> FlashSaleConfig:
    """A tiny flash sale: a burst, then a slow tail; one API server, so a producer crash takes
    the whole API down."""
    burst_s = round(BURST_SHARE * cfg.submissions / cfg.arrival_rate, 6)
    values: dict[str, Any] = dict(
        seed=cfg.seed, submissions=cfg.submissions, arrival_profile="piecewise",
        piecewise=((0.0, cfg.arrival_rate), (burst_s, cfg.tail_rate)), stock=cfg.submissions,
        servers=1, consumers=cfg.consumers, fsync_interval_s=cfg.fsync_interval_s,
        keep_history=None)  # ops are scanned below (a few thousand)
    values.update(overrides)
    return FlashSaleConfig(**values)


def _faults(cfg: LossConfig, target: str) -> tuple[Fault, ...]:
    if target == "none":
        return ()
    if target.startswith("redis:"):
        return (Fault(target="redis", at=cfg.redis_crash_at, restart_after=cfg.restart_after),)
    name = "consumer-1" if target == "consumer" else target
    return (Fault(target=name, at=cfg.crash_at, restart_after=cfg.restart_after),)


def _redis_events(ops: list[Op]) -> tuple[int | None, int | None]:
    """(writes the Redis crash rolled back, value the stock key was reseeded to)."""
    lost = next((op.value["lost_writes"] for op in ops if op.f == "crash" and op.process == "redis"), None)
    reseed = next((op.value["stock"] for op in ops if op.f == "reseed"), None)
    return lost, reseed


def _lost_decrements(ops: list[Op]) -> int | None:
    """Units the Redis crash put back on the stock key (decrements the disk never saw).

    Not the same as lost writes: a reservation writes the counter and the message's hold."""
    crash = next((op for op in ops if op.f == "crash" and op.process == "redis"), None)
    if crash is None:
        return None
    return int(crash.value.get("counters_rolled_back", {}).get(STOCK_KEY, 0))


def _oldest_lost(ops: list[Op], crash_at: float) -> float | None:
    """How long before the crash the oldest lost message was (last) published.

    Invariant 6: with confirms off on a durable queue it is within one fsync interval.
    """
    published: dict[str, float] = {}
    dequeued: set[str] = set()
    for op in ops:
        if op.f == "enqueue" and op.type == "ok" and op.msg_id is not None:
            published[op.msg_id] = op.time
        elif op.f == "dequeue" and op.type == "ok" and op.msg_id is not None:
            dequeued.add(op.msg_id)
    times = [t for mid, t in published.items() if mid not in dequeued and t <= crash_at]
    return round(crash_at - min(times), 6) if times else None


def _example(run: "FlashSaleResult") -> tuple[str | None, str | None]:
    for kind in _EXAMPLE_KINDS:
        for anomaly in run.checker.anomalies:
            if anomaly.kind == kind:
                return kind, anomaly.chain
    return None, None


def _run_cell(cfg: LossConfig, design: Design, target: str) -> Cell:
    from simulator.scenarios.flash_sale import run_flash_sale  # builds the SimPy world: load it late

    persistence = target.split(":")[1] if target.startswith("redis:") else "aof-everysec"
    run = run_flash_sale(_flash(cfg, durable=design.durable, persistent=design.durable,
                                confirms=design.confirms, ack=design.ack,
                                redis_persistence=persistence, faults=_faults(cfg, target)))
    c, m = run.checker.counts, run.metrics
    lost_writes, reseeded = _redis_events(run.ops)
    kind, chain = _example(run)
    return Cell(design, target, c["lost"], c["duplicated"], c["granted"], m["refused"] + m["timeouts"],
                m["broker"]["lost_on_crash"], lost_writes, reseeded,
                _oldest_lost(run.ops, cfg.crash_at) if target == "broker" and c["lost"] else None,
                kind, chain, run.history_sha256)


# --------------------------------------------------------------------------- Redis experiments

def _redis_run(cfg: LossConfig, persistence: str, reseed: str, safety: int) -> "FlashSaleResult":
    from simulator.scenarios.flash_sale import run_flash_sale

    return run_flash_sale(_flash(cfg, stock=cfg.redis_stock, safety_stock=safety,
                                 redis_persistence=persistence, reseed=reseed,
                                 faults=_faults(cfg, "redis:" + persistence)))


def _redis_summary(run: "FlashSaleResult") -> dict[str, Any]:
    c = run.checker.counts
    lost_writes, reseeded = _redis_events(run.ops)
    oversold = [a.chain for a in run.checker.anomalies if a.kind == "oversold"]
    return {"stock": c["stock"], "offered": run.config.offered_stock,
            "safety_stock": run.config.safety_stock, "granted": c["granted"],
            "oversold": c["oversold"], "redis_lost_writes": lost_writes,
            "redis_lost_decrements": _lost_decrements(run.ops), "reseeded_to": reseeded,
            "lost": c["lost"], "example": oversold[0] if oversold else None,
            "history_sha256": run.history_sha256}


# --------------------------------------------------------------------------- result

@dataclass
class LossResult:
    config: LossConfig
    cells: list[Cell]
    reseed: dict[str, dict[str, Any]]     # "full" / "ledger" -> summary
    safety: list[dict[str, Any]]          # one summary per safety stock
    metrics: dict[str, Any]
    grant_times: dict[str, list[float]] = field(repr=False)  # reseed policy -> when each voucher was granted

    @property
    def rows(self) -> list[str]:
        return list(dict.fromkeys(c.design.label for c in self.cells))

    @property
    def targets(self) -> list[str]:
        return list(dict.fromkeys(c.target for c in self.cells))

    def cell(self, label: str, target: str) -> Cell:
        return next(c for c in self.cells if c.design.label == label and c.target == target)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": "loss", "seed": self.config.seed,
                "config": self.config.model_dump(mode="json"), "metrics": self.metrics,
                "cells": [c.to_dict() for c in self.cells], "reseed": self.reseed,
                "safety_stock": self.safety}

    def report(self) -> str:
        cfg = self.config
        width = max(len(r) for r in self.rows)
        lines = [f"loss  seed={cfg.seed}  {cfg.submissions} submissions per run, crash at "
                 f"t={cfg.crash_at} s (Redis at t={cfg.redis_crash_at} s), back after "
                 f"{cfg.restart_after} s; {self.metrics['runs']} runs",
                 "  lost messages (checker, after the final drain) per design and crash target:",
                 "  " + " " * width + "".join(f"{t:>20}" for t in self.targets)]
        for row in self.rows:
            lines.append("  " + row.ljust(width) +
                         "".join(f"{self.cell(row, t).lost:>20}" for t in self.targets))
        if {"broker", "consumer"} & set(self.targets):
            safe = self.metrics["zero_loss_designs"]
            lines.append("  no loss to a broker or consumer crash: " + (", ".join(safe) or "none"))
        for target in self.targets:  # one "why" per column: its first cell that lost something
            hit = next((c for c in self.cells if c.target == target and c.lost), None)
            if hit is not None:
                lines.append(f"  why ({target}; {hit.design.label}): {hit.example}")
        full, ledger = self.reseed["full"], self.reseed["ledger"]
        lines += [f"  Redis lost the stock key (no persistence), stock {full['stock']}:",
                  f"    naive reseed to full stock   -> {full['granted']} vouchers, oversold {full['oversold']}",
                  f"    reseed from the DB ledger    -> {ledger['granted']} vouchers, oversold {ledger['oversold']}"]
        if full["example"]:
            lines.append(f"    why: {full['example']}")
        lines.append("  Redis AOF everysec crash (key rolled back to the last fsync tick):")
        for s in self.safety:
            lines.append(f"    safety stock {s['safety_stock']:>4}: {s['redis_lost_decrements']} decrements lost, "
                         f"{s['granted']} vouchers, oversold {s['oversold']}")
        return "\n".join(lines)


def _metrics(cells: list[Cell], reseed: dict[str, dict[str, Any]],
             safety: list[dict[str, Any]]) -> dict[str, Any]:
    matrix: dict[str, dict[str, int]] = {}
    for c in cells:
        matrix.setdefault(c.design.label, {})[c.target] = c.lost
    # the claim of C2 is about broker and consumer crashes; judged on the columns that ran
    judged = [t for t in ("broker", "consumer") if any(c.target == t for c in cells)]
    zero = [label for label, row in matrix.items() if judged and all(row[t] == 0 for t in judged)]
    return {"runs": len(cells) + len(reseed) + len(safety), "cells": len(cells), "lost": matrix,
            "lost_total": sum(c.lost for c in cells), "zero_loss_designs": zero,
            "reseed_oversold": {k: v["oversold"] for k, v in reseed.items()},
            "safety_oversold": {str(s["safety_stock"]): s["oversold"] for s in safety}}


def run_loss(config: LossConfig | Mapping[str, Any] | None = None) -> LossResult:
    cfg = config if isinstance(config, LossConfig) else make_config(**dict(config or {}))
    cells = [_run_cell(cfg, d, t) for d in designs(cfg) for t in cfg.targets]
    reseed_runs = {policy: _redis_run(cfg, "none", policy, 0) for policy in ("full", "ledger")}
    reseed = {k: _redis_summary(run) for k, run in reseed_runs.items()}
    safety = [_redis_summary(_redis_run(cfg, "aof-everysec", "ledger", s)) for s in cfg.safety_stocks]
    grant_times = {k: [op.time for op in run.ops if op.f == "grant" and op.type == "ok"]
                   for k, run in reseed_runs.items()}
    return LossResult(cfg, cells, reseed, safety, _metrics(cells, reseed, safety), grant_times)
