"""Validated configuration of the flash-sale scenario.

Every value is checked before anything runs; a bad one becomes an ``InputError`` naming the
field, the value and what is allowed (see ``simulator.config_errors``).  Defaults are the
safe architecture from the lessons: durable queue, persistent messages, publisher confirms,
manual ack after the commit, dedupe in the DB transaction, atomic stock decrement in Redis.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

StockStrategy = Literal["redis-lua", "redis-decr", "redis-get-set", "db-update", "db-read-then-write"]
REDIS_STRATEGIES = ("redis-lua", "redis-decr", "redis-get-set")
DB_STRATEGIES = ("db-update", "db-read-then-write")

_TARGET = re.compile(r"^(broker|redis|db|relay|producer|consumer-\d+|server-\d+)$")


class Fault(BaseModel):
    """Kill ``target`` at simulated time ``at``; bring it back ``restart_after`` seconds later."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    target: str = Field(description="broker, redis, db, relay, producer, consumer-N or server-N")
    at: float | None = Field(default=None, ge=0, allow_inf_nan=False, description="simulated seconds")
    point: str | None = Field(default=None, description="or: die on reaching this crash point")
    restart_after: float | None = Field(default=1.0, ge=0, allow_inf_nan=False)

    @field_validator("target")
    @classmethod
    def _known_target(cls, v: str) -> str:
        if not _TARGET.match(v):
            raise ValueError("must be broker, redis, db, relay, producer, consumer-N or server-N")
        return v

    @field_validator("point")
    @classmethod
    def _known_point(cls, v: str | None) -> str | None:
        from simulator.flow import CRASH_POINTS

        if v is not None and v not in CRASH_POINTS:
            raise ValueError("must be one of " + ", ".join(CRASH_POINTS))
        return v

    @model_validator(mode="after")
    def _when(self) -> "Fault":
        if (self.at is None) == (self.point is None):
            raise ValueError("a fault needs exactly one of 'at' (a time) or 'point' (a crash point)")
        return self


def split_commas(value: object) -> object:
    """The command line hands a tuple field over as one string: ``a,b`` means ``("a", "b")``."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class FlashSaleConfig(StrictModel):
    seed: int = Field(default=7, ge=0, le=2**32 - 1)
    # --- load
    submissions: int = Field(default=2000, ge=1, le=10_000_000)
    arrival_profile: Literal["constant", "spike", "piecewise"] = "spike"
    arrival_rate: float = Field(default=400.0, gt=0, allow_inf_nan=False, description="per second (peak for spike)")
    spike_decay_s: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    piecewise: tuple[tuple[float, float], ...] = ()
    invalid_fraction: float = Field(default=0.0, ge=0, le=1, description="share of payloads failing the schema")
    # --- the event
    stock: int = Field(default=500, ge=0, le=2**62)
    safety_stock: int = Field(default=0, ge=0)
    event_ttl_s: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="EXPIRE on the stock key")
    # --- API tier
    mode: Literal["async", "sync"] = "async"
    servers: int = Field(default=2, ge=1, le=1000)
    cores: int = Field(default=4, ge=1, le=512)
    threads_per_server: int = Field(default=50, ge=1, le=10_000)
    request_cpu_ms: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    request_timeout_s: float = Field(default=3.0, gt=0, allow_inf_nan=False)
    balancer: Literal["round-robin", "least-connections"] = "round-robin"
    # --- broker
    durable: bool = True
    persistent: bool = True
    confirms: bool = True
    mandatory: bool = True
    publish_retries: int = Field(default=3, ge=0, le=100)
    fsync_interval_s: float = Field(default=0.02, gt=0, allow_inf_nan=False)
    # --- consumers
    consumers: int = Field(default=4, ge=1, le=10_000,
                           description="at least 1: with 0 consumers the queue only grows")
    prefetch: int = Field(default=10, ge=0, le=65535, description="0 means unlimited")
    ack: Literal["manual", "auto"] = "manual"
    handler_ms: float = Field(default=2.0, ge=0, allow_inf_nan=False)
    ack_loss: float = Field(default=0.0, ge=0, le=1, description="chance the connection drops before an ack")
    reconnect_s: float = Field(default=0.5, gt=0, allow_inf_nan=False)
    # --- stores and gateway
    stock_strategy: StockStrategy = "redis-lua"
    dedupe: Literal["off", "redis", "db"] = "db"
    write_pattern: Literal["publish", "db-then-publish", "publish-then-db", "outbox"] = "publish"
    reconcile: bool = Field(default=False, description="a batch re-sends saved rows never processed")
    redis_persistence: Literal["none", "rdb", "aof-everysec", "aof-always"] = "aof-everysec"
    reseed: Literal["ledger", "full"] = "ledger"
    db_pool: int = Field(default=10, ge=1, le=10_000)
    db_query_ms: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    gateway_latency_ms: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    gateway_rate_limit: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    gateway_failure: float = Field(default=0.0, ge=0, le=1)
    # --- unrelated traffic on the same database (the seed: member lookups drag logins down)
    login_rate: float = Field(default=0.0, ge=0, le=1_000_000, allow_inf_nan=False,
                              description="logins per second by members outside the event (0: none)")
    event_db: Literal["shared", "dedicated"] = Field(
        default="shared", description="dedicated: logins get a database of their own, so the "
                                      "event's transactions never compete with them")
    # --- faults and bounds
    faults: tuple[Fault, ...] = ()
    max_sim_s: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600, allow_inf_nan=False)
    keep_history: int | None = Field(default=200_000, ge=0)

    @field_validator("piecewise")
    @classmethod
    def _steps(cls, v: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        last = -1.0
        for start, rate in v:
            if start < 0 or rate < 0 or start <= last:
                raise ValueError("steps must be (start_s, rate) with start_s increasing from 0 and rate >= 0")
            last = start
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "FlashSaleConfig":
        if self.safety_stock > self.stock:
            raise ValueError(f"safety_stock ({self.safety_stock}) must not exceed stock ({self.stock})")
        if self.arrival_profile == "piecewise" and not any(r > 0 for _, r in self.piecewise):
            raise ValueError("piecewise: the piecewise profile needs at least one step with a rate > 0")
        return self

    @property
    def offered_stock(self) -> int:
        """Vouchers put on sale: the safety stock is held back."""
        return self.stock - self.safety_stock
