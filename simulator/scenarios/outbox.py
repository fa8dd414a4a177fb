"""The crash-point explorer: lesson 07, curriculum row C7 (reference §3 invariants 14-16).

A DB write and a queue publish cannot be one transaction.  This scenario kills a process at
each named crash point of the shared flow (``simulator.flow.CRASH_POINTS``), once per write
pattern, on the same seeded arrivals, and reads each small run's verdict off the checker:

* ``db-then-publish``: a crash after the save leaves an *orphan* (a row never published);
* ``publish-then-db``: a crash after the publish leaves a *ghost* (an event with no row);
* ``outbox``: the row and its event commit together; a relay crash after publishing makes
  the relay publish again, a *duplicate* the consumer's dedupe absorbs (no double grant);
* ``db-then-publish+reconcile``: the batch re-sends the orphan;
* ``outbox+compensation``: the outbox flow with plain ``DECR`` stock, read on the stock side.
  The flow gives a decrement back (``INCR``, a compensating action) when the DB step after it
  fails or finds a duplicate; this row checks the stock ledger at quiescence:
  ``redis stock + vouchers issued == offered``.  A consumer killed between its ``DECR`` and
  that ``INCR`` leaks a unit: nothing records which message took it.
* ``outbox+reservation``: the same runs as ``outbox`` (the Lua strategy), read on the stock
  side.  The script keeps a hold per message, so a redelivered or duplicated message takes
  its hold over instead of taking a second unit: nothing to give back, nothing leaked.

Two extra columns: ``none`` (no fault, the baseline) and ``db-down`` (a timed DB outage, the
"later step fails" of a compensation).  A crash point a pattern's flow never reaches is
``n/a``: the fault stays pending and the run equals the baseline.

The stock stays above demand by default, so every submission should get a voucher and any
missing one is an anomaly rather than a sell-out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping, get_args

import pydantic
from pydantic import Field, field_validator, model_validator

from simulator.config import FlashSaleConfig, Fault, StrictModel, split_commas
from simulator.flow import CRASH_POINTS, STOCK_KEY

if TYPE_CHECKING:
    from simulator.sim.world import World

__all__ = ["OutboxConfig", "OutboxResult", "Cell", "make_config", "run_outbox", "PATTERNS",
           "COLUMNS", "MESSAGE_STATES", "STOCK_STATES", "COMPENSATION", "RESERVATION"]

Pattern = Literal["db-then-publish", "publish-then-db", "outbox", "db-then-publish+reconcile",
                  "outbox+compensation", "outbox+reservation"]
Column = Literal["none", "api:after-save", "api:after-publish", "relay:after-publish",
                 "consumer:after-stock", "consumer:after-commit", "db-down"]
PATTERNS: tuple[str, ...] = get_args(Pattern)
COLUMNS: tuple[str, ...] = get_args(Column)
COMPENSATION = "outbox+compensation"
RESERVATION = "outbox+reservation"
STOCK_ROWS = (COMPENSATION, RESERVATION)  # read on the stock side

# worst first: a cell shows the worst thing its run did
MESSAGE_STATES = ("lost", "double-grant", "ghost", "orphan", "duplicate", "ok", "n/a")
STOCK_STATES = ("over-credit", "leak", "restored", "reused", "conserved", "n/a")

# pattern -> (write_pattern, reconcile, stock_strategy); the reservation row reads the outbox runs
_WORLD_PATTERN: dict[str, tuple[str, bool, str]] = {
    "db-then-publish": ("db-then-publish", False, "redis-lua"),
    "publish-then-db": ("publish-then-db", False, "redis-lua"),
    "outbox": ("outbox", False, "redis-lua"),
    "db-then-publish+reconcile": ("db-then-publish", True, "redis-lua"),
    COMPENSATION: ("outbox", False, "redis-decr"),
    RESERVATION: ("outbox", False, "redis-lua"),
}
# who dies at each crash point ("producer" is any API server)
_VICTIM = {"api:after-save": "producer", "api:after-publish": "producer",
           "relay:after-publish": "relay", "consumer:after-stock": "consumer-1",
           "consumer:after-commit": "consumer-1"}
assert set(_VICTIM) == set(CRASH_POINTS), "a new crash point needs a victim here"


_split = split_commas  # tuple fields also accept "a,b", as the command line passes them


class OutboxConfig(StrictModel):
    seed: int = Field(default=7, ge=0, le=2**32 - 1)
    submissions: int = Field(default=100, ge=10, le=5000, description="per run (one run per cell)")
    stock: int = Field(default=150, ge=0, le=2**62,
                       description="vouchers; above demand by default so a missing one is an anomaly")
    arrival_rate: float = Field(default=200.0, gt=0, le=1e5, allow_inf_nan=False,
                                description="per second at the peak")
    consumers: int = Field(default=4, ge=1, le=64)
    patterns: tuple[Pattern, ...] = Field(default=PATTERNS, description="rows, comma separated")
    columns: tuple[Column, ...] = Field(default=COLUMNS,
                                        description="none, crash points, db-down; comma separated")
    restart_after_s: float = Field(default=1.0, gt=0, le=60, allow_inf_nan=False,
                                   description="a crashed process comes back after this long")
    outage_at_s: float = Field(default=0.3, ge=0, le=600, allow_inf_nan=False, description="db-down: when")
    outage_s: float = Field(default=0.3, gt=0, le=60, allow_inf_nan=False, description="db-down: how long")

    @field_validator("patterns", "columns", mode="before")
    @classmethod
    def _from_text(cls, v: Any) -> Any:
        return _split(v)

    @model_validator(mode="after")
    def _distinct(self) -> "OutboxConfig":
        for name in ("patterns", "columns"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name}: give at least one")
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: each at most once, got {', '.join(values)}")
        return self


def make_config(**values: Any) -> OutboxConfig:
    """``OutboxConfig(**values)``, a bad value reported as an ``InputError`` naming the field."""
    from simulator.config_errors import input_error_from

    try:
        return OutboxConfig.model_validate(values)
    except pydantic.ValidationError as exc:
        raise input_error_from(exc) from None


# --------------------------------------------------------------------------- one run

@dataclass(frozen=True)
class Run:
    """What one world run leaves behind, independent of which row reads it."""

    reached: bool
    counts: dict[str, int]   # checker counts plus absorbed / resent / compensations
    stock: dict[str, int]    # offered, redis, issued, balance (0 = conserved)
    lag: list[tuple[float, float]]  # outbox rows: (saved at, seconds until the relay published)
    history_sha256: str


def _faults(cfg: OutboxConfig, column: str) -> tuple[Fault, ...]:
    if column == "none":
        return ()
    if column == "db-down":
        return (Fault(target="db", at=cfg.outage_at_s, restart_after=cfg.outage_s),)
    return (Fault(target=_VICTIM[column], point=column, restart_after=cfg.restart_after_s),)


def _world_config(cfg: OutboxConfig, pattern: str, column: str) -> FlashSaleConfig:
    write_pattern, reconcile, strategy = _WORLD_PATTERN[pattern]
    return FlashSaleConfig(seed=cfg.seed, submissions=cfg.submissions, stock=cfg.stock,
                           arrival_rate=cfg.arrival_rate, consumers=cfg.consumers,
                           write_pattern=write_pattern, reconcile=reconcile, stock_strategy=strategy,
                           faults=_faults(cfg, column), keep_history=None)


def _relay_lag(world: "World") -> list[tuple[float, float]]:
    saved: dict[str, float] = {}
    lag: list[tuple[float, float]] = []
    for op in world.history.ops:
        if op.f == "save" and op.type == "ok" and op.msg_id is not None:
            saved.setdefault(op.msg_id, op.time)
        elif op.f == "enqueue" and op.type == "ok" and op.process == "relay" and op.msg_id in saved:
            lag.append((round(saved[op.msg_id], 6), round(op.time - saved.pop(op.msg_id), 6)))
    return lag


def _run_world(cfg: OutboxConfig, pattern: str, column: str) -> Run:
    from simulator.sim.world import World  # builds the SimPy world: load it late

    world = World(_world_config(cfg, pattern, column))
    world.run()
    check = world.checker.result().counts
    ops = world.history.ops
    pending = world.crash_points.pending if world.crash_points is not None else []
    counts = {k: int(check[k]) for k in ("lost", "duplicated", "ghost", "orphan", "double_granted",
                                           "oversold", "granted")}
    counts["absorbed"] = sum(1 for op in ops if op.f == "dequeue" and isinstance(op.value, dict)
                             and op.value.get("outcome") == "duplicate")
    counts["resent"] = sum(1 for op in ops if op.f == "enqueue" and op.type == "ok"
                           and op.process == "reconciler")
    counts["compensations"] = sum(1 for op in ops if op.f == "compensate" and op.type == "ok")
    counts["reused"] = sum(1 for op in ops if op.f == "stock" and op.value.get("reused"))
    offered = world.config.offered_stock
    left = world.redis.peek(STOCK_KEY)
    redis = int(left) if left is not None else 0
    issued = world.db.ledger_count()  # the ledger is the truth of what was given out
    stock = {"offered": offered, "redis": redis, "issued": issued, "balance": redis + issued - offered}
    lag = _relay_lag(world) if world.config.write_pattern == "outbox" else []
    return Run(not pending, counts, stock, lag, world.history.sha256())


# --------------------------------------------------------------------------- reading a run

@dataclass(frozen=True)
class Cell:
    pattern: str
    column: str
    state: str
    reason: str
    reached: bool
    counts: dict[str, int]
    stock: dict[str, int]
    history_sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _message_state(run: Run) -> tuple[str, str]:
    c = run.counts
    if c["lost"]:
        return "lost", f"{_plural(c['lost'], 'promised submission')} never processed"
    if c["double_granted"] or c["oversold"]:
        return "double-grant", f"{c['double_granted']} extra grants, {c['oversold']} oversold"
    if c["ghost"]:
        return "ghost", f"{_plural(c['ghost'], 'event')} published with no committed row"
    if c["orphan"]:
        return "orphan", f"{_plural(c['orphan'], 'row')} committed, never published"
    if c["duplicated"] or c["absorbed"]:
        # a crash before the first dequeue was recorded hides it from the checker's count;
        # the dedupe's "duplicate" answers count every copy it absorbed
        return "duplicate", (f"{c['absorbed']} repeat deliveries answered 'duplicate' by dedupe "
                             f"({c['duplicated']} dequeued twice), no double grant")
    if c["resent"]:
        return "ok", f"{_plural(c['resent'], 'row')} re-sent by the reconciliation batch, then processed"
    return "ok", "no anomaly"


def _stock_state(run: Run, column: str) -> tuple[str, str]:
    s, k = run.stock, run.counts["compensations"]
    ledger = f"redis {s['redis']} + issued {s['issued']} vs offered {s['offered']}"
    if s["balance"] > 0:
        return "over-credit", f"{s['balance']} more given back than taken ({ledger})"
    if s["balance"] < 0:
        why = (": the consumer died between its DECR and the INCR that would give it back, and "
               "plain DECR records no hold per message for its redelivery to find"
               if column == "consumer:after-stock" else "")
        return "leak", f"{_plural(-s['balance'], 'voucher')} taken and never given back{why} ({ledger})"
    if k:
        return "restored", f"{_plural(k, 'compensating action')}, each unit given back once ({ledger})"
    if run.counts["reused"]:
        return "reused", (f"{_plural(run.counts['reused'], 'repeat delivery', 'repeat deliveries')} "
                          f"reused the hold of its message, taking no second unit ({ledger})")
    return "conserved", f"nothing to give back ({ledger})"


def _cell(pattern: str, column: str, run: Run) -> Cell:
    if not run.reached:
        state, reason = "n/a", f"the {pattern} flow never reaches {column}: the run is the baseline"
    elif pattern in STOCK_ROWS:
        state, reason = _stock_state(run, column)
    else:
        state, reason = _message_state(run)
    return Cell(pattern, column, state, reason, run.reached, dict(run.counts), dict(run.stock),
                run.history_sha256)


# --------------------------------------------------------------------------- the result

@dataclass
class OutboxResult:
    config: OutboxConfig
    cells: list[Cell]
    metrics: dict[str, Any]
    lag: dict[str, list[tuple[float, float]]] = field(repr=False)

    def cell(self, pattern: str, column: str) -> Cell:
        for c in self.cells:
            if c.pattern == pattern and c.column == column:
                return c
        raise KeyError((pattern, column))

    @property
    def matrix(self) -> dict[str, dict[str, str]]:
        table: dict[str, dict[str, str]] = {p: {} for p in self.config.patterns}
        for c in self.cells:
            table[c.pattern][c.column] = c.state
        return table

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": "outbox", "seed": self.config.seed,
                "config": self.config.model_dump(mode="json"), "metrics": self.metrics,
                "matrix": self.matrix, "cells": [c.to_dict() for c in self.cells],
                "lag": {k: [list(p) for p in v] for k, v in self.lag.items()}}

    def report(self) -> str:
        cfg = self.config
        width = max(len(c) for c in cfg.columns) + 2
        lines = [f"outbox  seed={cfg.seed}  {cfg.submissions} submissions per run, stock {cfg.stock}, "
                 f"{cfg.consumers} consumers, {self.metrics['runs']} runs",
                 f"  {'':<26}" + "".join(f"{c:>{width}}" for c in cfg.columns)]
        for pattern, row in self.matrix.items():
            lines.append(f"  {pattern:<26}" + "".join(f"{row[c]:>{width}}" for c in cfg.columns))
        lines.append("  notes:")
        for c in self.cells:
            if c.state not in ("ok", "conserved", "n/a"):
                lines.append(f"    {c.pattern} @ {c.column}: {c.state} - {c.reason}")
        for label, points in self.lag.items():
            if points:
                worst = max(lag for _, lag in points)
                lines.append(f"  relay lag ({label}): {len(points)} rows, max {worst * 1000:.0f} ms")
        return "\n".join(lines)


def _metrics(cfg: OutboxConfig, cells: list[Cell], runs: int) -> dict[str, Any]:
    by_pattern = {p: [c for c in cells if c.pattern == p] for p in cfg.patterns}

    def total(pattern: str, key: str) -> int:
        return sum(c.counts[key] for c in by_pattern.get(pattern, []) if c.reached)

    return {
        "runs": runs,
        "states": dict(sorted(Counter(c.state for c in cells).items())),
        "per_pattern": {p: {k: total(p, k) for k in ("orphan", "ghost", "lost", "double_granted",
                                                      "absorbed", "resent", "compensations",
                                                      "reused")}
                        for p in cfg.patterns},
        "stock_balance": {f"{c.pattern} @ {c.column}": c.stock["balance"] for c in cells
                          if c.reached and c.stock["balance"] != 0},
    }


def run_outbox(config: OutboxConfig | Mapping[str, Any] | None = None) -> OutboxResult:
    cfg = config if isinstance(config, OutboxConfig) else make_config(**dict(config or {}))
    runs: dict[tuple[str, bool, str, str], Run] = {}  # the reservation row reuses the outbox runs
    cells: list[Cell] = []
    for pattern in cfg.patterns:
        for column in cfg.columns:
            key = (*_WORLD_PATTERN[pattern], column)
            if key not in runs:
                runs[key] = _run_world(cfg, pattern, column)
            cells.append(_cell(pattern, column, runs[key]))
    outbox = _WORLD_PATTERN["outbox"]
    lag = {column: runs[(*outbox, column)].lag
           for column in ("none", "relay:after-publish", "db-down") if (*outbox, column) in runs}
    return OutboxResult(cfg, cells, _metrics(cfg, cells, len(runs)), lag)
