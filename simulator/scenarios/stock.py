"""Where the stock lives and how it is taken: lesson 03, curriculum rows B5, B6 and B7
(reference §3 invariants 3, 4 and 20).

The same seeded arrivals (common random numbers) meet five ways of taking one voucher, each
at several consumer counts:

* ``db-update``: ``UPDATE stock SET n = n - 1 WHERE n > 0`` - correct, but every taker queues
  on one row lock until the holder commits, so the lock wait grows with the consumers;
* ``db-read-then-write``: ``SELECT`` then ``UPDATE SET n = <read - 1>`` - lost updates oversell
  as soon as two consumers read the same value;
* ``redis-get-set``: ``GET`` then ``SET`` - the same race on Redis;
* ``redis-decr``: ``DECR`` is atomic on Redis's one command thread: never oversells (the key
  goes below zero, and a negative answer is a refusal);
* ``redis-lua``: a check-and-decrement script: never oversells and never goes below zero.

Three more measurements:

* the Redis single-thread ceiling: clients in a closed loop of ``DECR`` on the Redis model;
  commands/s levels off at ``1 / command_time`` however many clients push;
* the event's end by TTL (``EXPIRE`` on the stock key): no voucher is taken after it with
  DECR or Lua.  ``SET`` clears a key's TTL, so GET+SET keeps the event open; the DB
  strategies never read the Redis key, so a Redis TTL cannot end them;
* safety stock: ``safety_stock`` vouchers are held back from sale; the atomic strategies
  leave exactly that many, read-then-write eats into them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, get_args

import pydantic
from pydantic import Field, field_validator, model_validator

from simulator.config import REDIS_STRATEGIES, FlashSaleConfig, StockStrategy, StrictModel, split_commas
from simulator.flow import STOCK_KEY

if TYPE_CHECKING:
    from simulator.sim.world import World

__all__ = ["StockConfig", "StockResult", "GridPoint", "TtlRun", "BenchPoint", "make_config",
           "run_stock", "STRATEGIES", "ATOMIC", "READ_THEN_WRITE", "LATE_TOLERANCE_S"]

# lesson order: the database first, then Redis from the racy to the safe
STRATEGIES: tuple[str, ...] = ("db-update", "db-read-then-write", "redis-get-set", "redis-decr", "redis-lua")
assert set(STRATEGIES) == set(get_args(StockStrategy)), "a new strategy needs a place here"
ATOMIC = ("db-update", "redis-decr", "redis-lua")
READ_THEN_WRITE = ("db-read-then-write", "redis-get-set")
# a Redis answer reaches the consumer half a round trip after the command ran: a take
# recorded this soon after the TTL still ran before it
LATE_TOLERANCE_S = 0.005
BENCH_KEY = "bench:stock"


_split = split_commas  # tuple fields also accept "a,b", as the command line passes them


class StockConfig(StrictModel):
    seed: int = Field(default=7, ge=0, le=2**32 - 1)
    submissions: int = Field(default=500, ge=1, le=20_000,
                             description="per run; above the stock to show a sell-out")
    stock: int = Field(default=200, ge=0, le=10**9)
    safety_stock: int = Field(default=20, ge=0, description="held back from sale (offered = stock - safety)")
    arrival_rate: float = Field(default=300.0, gt=0, le=1e5, allow_inf_nan=False,
                                description="per second at the peak")
    strategies: tuple[StockStrategy, ...] = Field(default=STRATEGIES, description="comma separated")
    consumer_levels: tuple[int, ...] = Field(default=(1, 4, 16),
                                             description="consumer counts, comma separated")
    handler_ms: float = Field(default=2.0, ge=0, le=10_000, allow_inf_nan=False)
    gateway_latency_ms: float = Field(default=5.0, ge=0, le=10_000, allow_inf_nan=False,
                                      description="voucher send after the commit (outside the lock)")
    db_pool: int = Field(default=32, ge=1, le=10_000,
                         description="connections; above the consumers so the row lock, not the pool, queues")
    event_ttl_s: float | None = Field(default=1.0, gt=0, le=3600, allow_inf_nan=False,
                                      description="TTL runs: the stock key expires then (none: skip them)")
    ttl_consumers: int = Field(default=4, ge=1, le=256)
    redis_clients: tuple[int, ...] = Field(default=(1, 4, 16, 64), description="closed-loop DECR clients")
    redis_bench_s: float = Field(default=0.2, gt=0, le=60, allow_inf_nan=False,
                                 description="simulated seconds per Redis ceiling point")

    @field_validator("strategies", "consumer_levels", "redis_clients", mode="before")
    @classmethod
    def _from_text(cls, v: Any) -> Any:
        return _split(v)

    @field_validator("event_ttl_s", mode="before")
    @classmethod
    def _none_text(cls, v: Any) -> Any:
        return None if isinstance(v, str) and v.strip().lower() in ("none", "") else v

    @field_validator("consumer_levels", "redis_clients")
    @classmethod
    def _counts(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("give at least one count")
        if any(n < 1 or n > 256 for n in v) or len(set(v)) != len(v):
            raise ValueError("distinct whole numbers from 1 to 256")
        return tuple(sorted(v))

    @model_validator(mode="after")
    def _consistent(self) -> "StockConfig":
        if not self.strategies or len(set(self.strategies)) != len(self.strategies):
            raise ValueError("strategies: give each strategy at most once, at least one")
        if self.safety_stock > self.stock:
            raise ValueError(f"safety_stock: at most the stock ({self.stock})")
        return self

    @property
    def offered(self) -> int:
        return self.stock - self.safety_stock


def make_config(**values: Any) -> StockConfig:
    """``StockConfig(**values)``, a bad value reported as an ``InputError`` naming the field."""
    from simulator.config_errors import input_error_from

    try:
        return StockConfig.model_validate(values)
    except pydantic.ValidationError as exc:
        raise input_error_from(exc) from None


# --------------------------------------------------------------------------- flash-sale runs

def _world(cfg: StockConfig, strategy: str, consumers: int, **extra: Any) -> "World":
    from simulator.sim.world import World  # builds the SimPy world: load it late

    values: dict[str, Any] = dict(
        seed=cfg.seed, submissions=cfg.submissions, stock=cfg.stock, safety_stock=cfg.safety_stock,
        arrival_rate=cfg.arrival_rate, consumers=consumers, stock_strategy=strategy,
        handler_ms=cfg.handler_ms, gateway_latency_ms=cfg.gateway_latency_ms, db_pool=cfg.db_pool,
        keep_history=None)
    values.update(extra)
    world = World(FlashSaleConfig(**values))
    world.run()
    return world


def _r(x: float) -> float:
    return round(float(x), 6)


@dataclass(frozen=True)
class GridPoint:
    strategy: str
    consumers: int
    granted: int
    oversold: int            # granted beyond the offer (eats the safety stock first)
    oversold_physical: int   # granted beyond the whole stock (the checker's oversold)
    held_back: int           # stock - granted: the safety stock left
    redis_final: int | None  # the Redis key at the end (None: not used, or gone)
    lock_wait_s: float
    lock_waits: int
    handling_s: float        # summed deliver -> dequeue time of every handling
    lock_share: float        # lock_wait_s / handling_s
    mean_handling_ms: float
    redis_commands: int
    redis_utilisation: float
    sim_seconds: float
    history_sha256: str


def _grid_point(cfg: StockConfig, strategy: str, consumers: int) -> GridPoint:
    world = _world(cfg, strategy, consumers)
    check = world.checker.result().counts
    started: dict[str, float] = {}
    handling, handled = 0.0, 0
    for op in world.history.ops:
        if op.f == "deliver" and op.msg_id is not None:
            started[op.msg_id] = op.time
        elif op.f == "dequeue" and op.msg_id in started:
            handling += op.time - started.pop(op.msg_id)
            handled += 1
    granted = int(check["granted"])
    left = world.redis.peek(STOCK_KEY) if strategy in REDIS_STRATEGIES else None
    lock = float(world.db.stats["lock_wait_time"])
    now = world.env.now
    return GridPoint(
        strategy, consumers, granted, max(0, granted - cfg.offered), int(check["oversold"]),
        cfg.stock - granted, int(left) if left is not None else None, _r(lock),
        int(world.db.stats["lock_waits"]), _r(handling), _r(lock / handling) if handling else 0.0,
        _r(handling / handled * 1000.0) if handled else 0.0, int(world.redis.stats["commands"]),
        _r(world.redis.utilisation(now)) if now else 0.0, _r(now), world.history.sha256())


@dataclass(frozen=True)
class TtlRun:
    strategy: str
    ttl_s: float
    granted: int
    late: int              # vouchers taken after the TTL (beyond LATE_TOLERANCE_S)
    last_take_s: float | None
    ends_on_time: bool
    why: str
    takes: list[float] = field(repr=False)  # when each voucher was taken, in order


def _ttl_run(cfg: StockConfig, strategy: str, ttl: float) -> TtlRun:
    # stock for everyone and nothing held back: only the TTL can end this event
    world = _world(cfg, strategy, cfg.ttl_consumers, stock=cfg.submissions, safety_stock=0,
                   event_ttl_s=ttl)
    takes = sorted(_r(op.time) for op in world.history.ops if op.f == "stock" and op.type == "ok")
    late = sum(1 for t in takes if t > ttl + LATE_TOLERANCE_S)
    if strategy not in REDIS_STRATEGIES:
        why = "the stock is a DB row: a Redis TTL cannot end it (check an end time in the UPDATE)"
    elif strategy == "redis-get-set" and late:
        why = "SET writes the key afresh and clears its TTL: the first sale removed the event's end"
    elif late:
        why = "vouchers were taken after the key expired"
    else:
        why = "the key expired on time and every later take was refused"
    return TtlRun(strategy, ttl, len(takes), late, takes[-1] if takes else None, late == 0, why, takes)


# --------------------------------------------------------------------------- Redis ceiling

@dataclass(frozen=True)
class BenchPoint:
    clients: int
    commands_per_s: float
    utilisation: float
    predicted_per_s: float  # min(clients / (rtt + command_time), 1 / command_time)
    ceiling_per_s: float    # 1 / command_time: one thread, one command at a time


def _bench(cfg: StockConfig, clients: int) -> BenchPoint:
    import simpy

    from simulator.rng import Streams
    from simulator.sim.redis import Redis

    env = simpy.Environment()
    redis = Redis(env, Streams(cfg.seed)["redis.bench"])  # the world's defaults: same timings
    redis.data_set(BENCH_KEY, 10**15)

    def client():
        while True:
            yield redis.decr(BENCH_KEY)  # the next command only after the answer: a closed loop

    for _ in range(clients):
        env.process(client())
    warmup = cfg.redis_bench_s * 0.1
    env.run(until=warmup)
    commands, busy = redis.commands, redis.stats["busy_time"]
    env.run(until=cfg.redis_bench_s)
    window = cfg.redis_bench_s - warmup
    per_command = redis.rtt + redis.command_time
    ceiling = 1.0 / redis.command_time
    return BenchPoint(clients, _r((redis.commands - commands) / window),
                      _r((redis.stats["busy_time"] - busy) / window),
                      _r(min(clients / per_command, ceiling)), _r(ceiling))


# --------------------------------------------------------------------------- the result

@dataclass
class StockResult:
    config: StockConfig
    grid: list[GridPoint]
    ttl: list[TtlRun]
    bench: list[BenchPoint]
    metrics: dict[str, Any]

    def point(self, strategy: str, consumers: int) -> GridPoint:
        for p in self.grid:
            if p.strategy == strategy and p.consumers == consumers:
                return p
        raise KeyError((strategy, consumers))

    def ttl_run(self, strategy: str) -> TtlRun:
        for run in self.ttl:
            if run.strategy == strategy:
                return run
        raise KeyError(strategy)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": "stock", "seed": self.config.seed,
                "config": self.config.model_dump(mode="json"), "metrics": self.metrics,
                "grid": [asdict(p) for p in self.grid],
                "ttl": [asdict(t) for t in self.ttl],
                "redis_ceiling": [asdict(b) for b in self.bench]}

    def report(self) -> str:
        cfg = self.config
        lines = [f"stock  seed={cfg.seed}  {cfg.submissions} submissions, stock {cfg.stock} "
                 f"(safety {cfg.safety_stock}, offered {cfg.offered})",
                 f"  {'strategy':<20}{'consumers':>10}{'granted':>9}{'oversold':>10}{'held back':>11}"
                 f"{'lock wait s':>13}{'lock share':>12}{'redis end':>11}"]
        for p in self.grid:
            redis = "-" if p.redis_final is None else str(p.redis_final)
            lines.append(f"  {p.strategy:<20}{p.consumers:>10}{p.granted:>9}{p.oversold:>10}"
                         f"{p.held_back:>11}{p.lock_wait_s:>13.3f}{p.lock_share:>12.0%}{redis:>11}")
        if self.ttl:
            lines.append(f"  event end by TTL ({self.ttl[0].ttl_s:g} s, {cfg.ttl_consumers} consumers):")
            for t in self.ttl:
                lines.append(f"    {t.strategy:<20} {t.granted:>5} taken, {t.late:>4} after the TTL"
                             f" - {t.why}")
        if self.bench:
            lines.append(f"  Redis ceiling 1/command_time = {self.bench[0].ceiling_per_s:,.0f} commands/s:")
            for b in self.bench:
                lines.append(f"    {b.clients:>4} clients  {b.commands_per_s:>10,.0f} commands/s  "
                             f"thread busy {b.utilisation:.0%}")
        return "\n".join(lines)


def _metrics(cfg: StockConfig, grid: list[GridPoint], ttl: list[TtlRun],
             bench: list[BenchPoint]) -> dict[str, Any]:
    top = cfg.consumer_levels[-1]
    return {
        "runs": len(grid) + len(ttl),
        "offered": cfg.offered,
        "oversold": {s: {str(p.consumers): p.oversold for p in grid if p.strategy == s}
                     for s in cfg.strategies},
        "lock_share": {s: {str(p.consumers): p.lock_share for p in grid if p.strategy == s}
                       for s in cfg.strategies},
        "held_back_at_top": {p.strategy: p.held_back for p in grid if p.consumers == top},
        "late_after_ttl": {t.strategy: t.late for t in ttl},
        "redis_saturation_per_s": bench[-1].commands_per_s if bench else None,
        "redis_ceiling_per_s": bench[-1].ceiling_per_s if bench else None,
    }


def run_stock(config: StockConfig | Mapping[str, Any] | None = None) -> StockResult:
    cfg = config if isinstance(config, StockConfig) else make_config(**dict(config or {}))
    grid = [_grid_point(cfg, s, n) for s in cfg.strategies for n in cfg.consumer_levels]
    ttl = ([_ttl_run(cfg, s, cfg.event_ttl_s) for s in cfg.strategies]
           if cfg.event_ttl_s is not None else [])
    bench = [_bench(cfg, n) for n in cfg.redis_clients]
    return StockResult(cfg, grid, ttl, bench, _metrics(cfg, grid, ttl, bench))
