"""Synchronous vs asynchronous handling of the gift event: lesson 02, curriculum rows B1-B3, C1.

``run_sync_async(config)`` serves the same seeded opening spike twice:

* ``sync``: the API does everything inside the request - member lookup, stock, ledger, SMS -
  so every request holds a server thread for the SMS gateway's latency;
* ``async``: the API publishes the submission and answers 200 at once; consumers do the work.

Each mode runs with unrelated member logins on the event's database (``shared``) and on a
database of their own (``dedicated``, the seed's separate event table).  A sweep over the number
of consumers shows throughput growing until the next bottleneck (the SMS gateway's rate limit).
Queueing theory sits beside the simulated figures wherever it gives a prediction.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import pydantic
from pydantic import Field, field_validator

from simulator.analysis import mmc_mean_response
from simulator.config import FlashSaleConfig, StrictModel, split_commas
from simulator.history import Op
from simulator.sim.database import Database
from simulator.sim.world import World

__all__ = ["SyncAsyncConfig", "SyncAsyncResult", "VariantRun", "make_config", "run_sync_async",
           "run_world", "analytic", "VARIANTS"]

VARIANTS = (("sync", "shared"), ("sync", "dedicated"), ("async", "shared"), ("async", "dedicated"))
# the world keeps the database's default commit time; read it rather than copy the number
_COMMIT_S = inspect.signature(Database.__init__).parameters["commit_time"].default


class SyncAsyncConfig(StrictModel):
    seed: int = Field(default=7, ge=0, le=2**32 - 1)
    # --- the opening spike (the same arrivals for every variant)
    submissions: int = Field(default=2000, ge=1, le=200_000)
    stock: int = Field(default=500, ge=0, le=2**62)
    arrival_rate: float = Field(default=2000.0, gt=0, le=1e6, allow_inf_nan=False,
                                description="submissions per second at the opening")
    spike_decay_s: float = Field(default=5.0, gt=0, le=1e6, allow_inf_nan=False)
    # --- the API tier and the stores
    servers: int = Field(default=2, ge=1, le=1000)
    threads_per_server: int = Field(default=50, ge=1, le=10_000)
    request_timeout_s: float = Field(default=3.0, gt=0, le=3600, allow_inf_nan=False)
    consumers: int = Field(default=4, ge=1, le=10_000)
    db_pool: int = Field(default=10, ge=1, le=10_000)
    db_query_ms: float = Field(default=1.0, gt=0, le=60_000, allow_inf_nan=False)
    gateway_latency_ms: float = Field(default=200.0, ge=0, le=600_000, allow_inf_nan=False,
                                      description="the SMS gateway's mean answer time")
    login_rate: float = Field(default=200.0, gt=0, le=100_000, allow_inf_nan=False,
                              description="logins per second by members outside the event")
    # --- the consumer sweep (C1)
    sweep_consumers: tuple[int, ...] = Field(default=(1, 2, 4, 8, 16, 32),
                                             description="consumer counts to try, increasing")
    sweep_submissions: int = Field(default=400, ge=10, le=100_000)
    sweep_rate_limit: float | None = Field(default=50.0, gt=0, le=1e6, allow_inf_nan=False,
                                           description="SMS sends per second in the sweep (the next bottleneck)")
    sample_interval_s: float = Field(default=0.1, gt=0, le=60, allow_inf_nan=False)

    @field_validator("sweep_consumers", mode="before")
    @classmethod
    def _csv(cls, v: Any) -> Any:
        return split_commas(v)  # the command line passes "1,2,4"

    @field_validator("sweep_consumers")
    @classmethod
    def _increasing(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(c < 1 or c > 10_000 for c in v) or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("must be consumer counts from 1 to 10000, strictly increasing, at least one")
        return v

    def flash_sale(self, mode: str, event_db: str) -> FlashSaleConfig:
        return FlashSaleConfig(
            seed=self.seed, submissions=self.submissions, stock=self.stock, arrival_profile="spike",
            arrival_rate=self.arrival_rate, spike_decay_s=self.spike_decay_s, mode=mode,
            servers=self.servers, threads_per_server=self.threads_per_server,
            request_timeout_s=self.request_timeout_s, consumers=self.consumers, db_pool=self.db_pool,
            db_query_ms=self.db_query_ms, gateway_latency_ms=self.gateway_latency_ms,
            login_rate=self.login_rate, event_db=event_db, keep_history=0)

    def sweep_run(self, consumers: int) -> FlashSaleConfig:
        # stock for everyone: every message is a full grant, so one service time applies
        return FlashSaleConfig(
            seed=self.seed, submissions=self.sweep_submissions, stock=self.sweep_submissions,
            arrival_rate=self.arrival_rate, spike_decay_s=self.spike_decay_s, consumers=consumers,
            db_pool=self.db_pool, db_query_ms=self.db_query_ms,
            gateway_latency_ms=self.gateway_latency_ms, gateway_rate_limit=self.sweep_rate_limit,
            keep_history=0)


def make_config(**values: Any) -> SyncAsyncConfig:
    """``SyncAsyncConfig(**values)``; a bad value becomes an ``InputError`` naming the field."""
    from simulator.config_errors import input_error_from

    try:
        return SyncAsyncConfig.model_validate(values)
    except pydantic.ValidationError as exc:
        raise input_error_from(exc) from None


# --------------------------------------------------------------------------- one run

class Tally:
    """History sink: time each message spent in the broker (publish to dequeue) and the
    consumers' busy window, in memory proportional to the messages in flight."""

    def __init__(self) -> None:
        self._entered: dict[str, float] = {}
        self.in_broker_s = 0.0   # sum over messages of (dequeue - publish): Little's W * N
        self.passed = 0
        self.first_deliver: float | None = None
        self.last_dequeue: float | None = None
        self.granted = 0
        self.last_grant: float | None = None

    def __call__(self, op: Op) -> None:
        if op.f == "enqueue" and op.type == "invoke":
            self._entered.setdefault(str(op.msg_id), op.time)  # a retry keeps the first entry
        elif op.f == "deliver" and self.first_deliver is None:
            self.first_deliver = op.time
        elif op.f == "dequeue" and op.type == "ok":
            start = self._entered.pop(str(op.msg_id), None)
            if start is not None:
                self.in_broker_s += op.time - start
                self.passed += 1
            self.last_dequeue = op.time
            if isinstance(op.value, dict) and op.value.get("outcome") == "granted":
                self.granted += 1
                self.last_grant = op.time


def run_world(config: FlashSaleConfig, *, sinks: Iterable[Any] = (),
              sample_interval: float = 0.5) -> World:
    """Build the flash-sale world, attach extra history sinks, run it to the final drain."""
    world = World(config, sample_interval=sample_interval)
    for sink in sinks:
        world.history.add_sink(sink)
    world.run()
    return world


def _integral(t: list[float], y: list[float]) -> float:
    """Area under a sampled gauge (each sample holds until the next: the sampler's view)."""
    return sum(v * (b - a) for a, b, v in zip(t, t[1:], y) if not math.isnan(v))


@dataclass
class VariantRun:
    mode: str
    event_db: str
    metrics: dict[str, Any]
    series: dict[str, list[float]] = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.mode}/{self.event_db}"


def run_variant(cfg: SyncAsyncConfig, mode: str, event_db: str) -> VariantRun:
    tally = Tally()
    world = run_world(cfg.flash_sale(mode, event_db), sinks=[tally], sample_interval=cfg.sample_interval_s)
    series = world.series.to_dict()
    depth = series["queue_depth"]
    in_broker = [d + u for d, u in zip(depth, series["unacked"])]
    peak_at = series["t"][depth.index(max(depth))] if depth else 0.0
    db = world.db.stats
    span = series["t"][-1] - series["t"][0] if len(series["t"]) > 1 else 0.0
    metrics: dict[str, Any] = {
        "response_ms": world.response.to_dict(),
        "time_to_voucher_s": world.time_to_voucher.to_dict(),
        "timeouts": world.timeouts,
        "statuses": {str(k): v for k, v in sorted(world.statuses.items())},
        "vouchers_granted": world.checker_granted,
        "checker_valid": world.checker.result().valid,
        "db_pool": {"size": cfg.db_pool, "waits": int(db["pool_waits"]), "max_waiting": int(db["max_waiting"]),
                    "wait_time_s": round(db["pool_wait_time"], 6),
                    "mean_wait_ms": round(1000.0 * db["pool_wait_time"] / db["pool_waits"], 6)
                    if db["pool_waits"] else 0.0},
        "login_ms": world.login_ms.to_dict(),
        "login_errors": world.login_errors,
        "peak_queue_depth": int(max(depth, default=0)),
        "peak_at_s": round(peak_at, 6),
        "final_queue_depth": int(depth[-1]) if depth else 0,
        "drain_s": round(tally.last_dequeue, 6) if tally.last_dequeue is not None else None,
        "sim_seconds": round(world.env.now, 6),
        "history_sha256": world.history.sha256(),
    }
    if mode == "async" and tally.passed and span > 0:
        # Little's law over a window that starts and ends empty: mean L = (N / T) * mean W
        lam = tally.passed / span
        mean_w = tally.in_broker_s / tally.passed
        metrics["little"] = {"L_time_avg": round(_integral(series["t"], in_broker) / span, 6),
                             "lambda_per_s": round(lam, 6), "W_mean_s": round(mean_w, 6),
                             "lambda_W": round(lam * mean_w, 6)}
    return VariantRun(mode, event_db, metrics, series)


def sweep(cfg: SyncAsyncConfig) -> list[dict[str, Any]]:
    """Throughput (vouchers per second while the backlog lasts) for each consumer count."""
    times = service_times(cfg)
    rows = []
    for c in cfg.sweep_consumers:
        tally = Tally()
        run_world(cfg.sweep_run(c), sinks=[tally])
        busy = (tally.last_grant or 0.0) - (tally.first_deliver or 0.0)
        consumer_cap = c / times["grant_s"]
        limit = cfg.sweep_rate_limit if cfg.sweep_rate_limit is not None else math.inf
        rows.append({"consumers": c, "granted": tally.granted,
                     "throughput_per_s": round(tally.granted / busy, 6) if busy > 0 else None,
                     "predicted_per_s": round(min(consumer_cap, limit), 6),
                     "bottleneck": "consumers" if consumer_cap < limit else "SMS rate limit"})
    return rows


# --------------------------------------------------------------------------- theory

def service_times(cfg: SyncAsyncConfig) -> dict[str, float]:
    """Mean busy time of one message, from the configured means (Redis's sub-ms ignored).

    A grant: member lookup, processed-id insert and ledger insert (three queries), a commit,
    the SMS.  A sold-out answer: the lookup, the processed-id insert, a commit.  Consumers
    also spend ``handler_ms``; a sync request spends ``request_cpu_ms`` instead.
    """
    base = FlashSaleConfig()
    q, gw = cfg.db_query_ms / 1000.0, cfg.gateway_latency_ms / 1000.0
    grant, sold = 3 * q + _COMMIT_S + gw, 2 * q + _COMMIT_S
    handler, cpu = base.handler_ms / 1000.0, base.request_cpu_ms / 1000.0
    return {"grant_s": handler + grant, "sold_out_s": handler + sold,
            "sync_grant_s": cpu + grant, "sync_sold_out_s": cpu + sold}


def analytic(cfg: SyncAsyncConfig) -> dict[str, Any]:
    s = service_times(cfg)
    n, grants = cfg.submissions, min(cfg.stock, cfg.submissions)
    threads = cfg.servers * cfg.threads_per_server
    work = grants * s["grant_s"] + (n - grants) * s["sold_out_s"]
    sync_mean = (grants * s["sync_grant_s"] + (n - grants) * s["sync_sold_out_s"]) / n
    q = cfg.db_query_ms / 1000.0
    return {
        "service_s": {k: round(v, 6) for k, v in s.items()},
        # rho = lambda S / c at the opening rate: above 1 the line grows for as long as it lasts
        "sync_thread_utilisation": round(cfg.arrival_rate * sync_mean / threads, 6),
        "async_consumer_utilisation": round(cfg.arrival_rate * (work / n) / cfg.consumers, 6),
        "async_consumer_capacity_per_s": round(cfg.consumers / s["grant_s"], 6),
        # the spike arrives far faster than it is served: the backlog ends when the work is done
        "async_drain_s": round(work / cfg.consumers, 6),
        # logins alone on a dedicated pool: M/M/c with exponential query times
        "login_dedicated_mean_ms": round(1000.0 * mmc_mean_response(cfg.login_rate, 1.0 / q, cfg.db_pool), 6),
    }


# --------------------------------------------------------------------------- the result

@dataclass
class SyncAsyncResult:
    config: SyncAsyncConfig
    variants: dict[str, VariantRun]
    sweep: list[dict[str, Any]]
    analytic: dict[str, Any]
    claims: dict[str, bool]

    @property
    def sync(self) -> VariantRun:
        return self.variants["sync/shared"]

    @property
    def async_(self) -> VariantRun:
        return self.variants["async/shared"]

    @property
    def series(self) -> dict[str, list[float]]:
        """The async run's gauges: what ``plot_topology`` reads its queue depth from."""
        return self.async_.series

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": "sync-vs-async", "seed": self.config.seed,
                "config": self.config.model_dump(mode="json"),
                "variants": {k: v.metrics for k, v in self.variants.items()},
                "sweep": self.sweep, "analytic": self.analytic, "claims": self.claims}

    def report(self) -> str:
        cfg, a = self.config, self.analytic
        names = list(self.variants)

        def row(label: str, pick: Any, fmt: str = ".1f") -> str:
            cells = []
            for name in names:
                value = pick(self.variants[name].metrics)
                cells.append("-" if value is None else format(value, fmt))
            return f"  {label:<24}" + "".join(f"{c:>17}" for c in cells)

        lines = [
            f"sync-vs-async  seed={cfg.seed}  {cfg.submissions} submissions, spike from "
            f"{cfg.arrival_rate:g}/s, stock {cfg.stock}, SMS {cfg.gateway_latency_ms:g} ms, "
            f"logins {cfg.login_rate:g}/s",
            f"  {'':<24}" + "".join(f"{n:>17}" for n in names),
            row("response p50 (ms)", lambda m: m["response_ms"]["p50"]),
            row("response p99 (ms)", lambda m: m["response_ms"]["p99"]),
            row("timeouts", lambda m: m["timeouts"], "d"),
            row("time to voucher p99 (s)", lambda m: m["time_to_voucher_s"]["p99"], ".2f"),
            row("DB pool max waiting", lambda m: m["db_pool"]["max_waiting"], "d"),
            row("DB pool wait (s)", lambda m: m["db_pool"]["wait_time_s"], ".2f"),
            row("login p99 (ms)", lambda m: m["login_ms"]["p99"]),
            row("peak queue depth", lambda m: m["peak_queue_depth"], "d"),
            row("queue drained at (s)", lambda m: m["drain_s"], ".1f"),
            f"  theory: sync thread utilisation {a['sync_thread_utilisation']:.2f}, async consumer "
            f"utilisation {a['async_consumer_utilisation']:.2f} (>1: a backlog forms)",
            f"          async drain predicted {a['async_drain_s']:.1f} s, simulated "
            f"{self.async_.metrics['drain_s']:.1f} s",
            f"          dedicated login mean predicted {a['login_dedicated_mean_ms']:.2f} ms (M/M/c), "
            f"simulated {self.variants['sync/dedicated'].metrics['login_ms']['mean']:.2f} ms",
        ]
        little = self.async_.metrics.get("little")
        if little:
            lines.append(f"          Little's law on the queue: L {little['L_time_avg']:.1f} "
                         f"vs lambda*W {little['lambda_W']:.1f}")
        lines.append("  consumers -> vouchers/s (predicted): " + ", ".join(
            f"{r['consumers']}: {r['throughput_per_s'] or 0:.1f} ({r['predicted_per_s']:.1f})"
            for r in self.sweep))
        lines.append("  claims: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in self.claims.items()))
        return "\n".join(lines)


def _claims(variants: Mapping[str, VariantRun], rows: list[dict[str, Any]]) -> dict[str, bool]:
    sync, asyn = variants["sync/shared"].metrics, variants["async/shared"].metrics
    tput = [r["throughput_per_s"] or 0.0 for r in rows]
    little = asyn.get("little")
    return {
        "sync_p99_over_5x_async": (sync["response_ms"]["p99"] or 0) > 5 * (asyn["response_ms"]["p99"] or math.inf),
        "login_worse_on_shared_db": (sync["login_ms"]["p99"] or 0)
        > (variants["sync/dedicated"].metrics["login_ms"]["p99"] or math.inf),
        "queue_rises_then_drains": asyn["peak_queue_depth"] > 0 and asyn["final_queue_depth"] == 0,
        "throughput_grows_then_flattens": len(tput) >= 3 and tput[1] > 1.5 * tput[0]
        and tput[-1] < 1.15 * tput[-2],
        "littles_law_holds": bool(little) and abs(little["L_time_avg"] - little["lambda_W"])
        <= 0.1 * little["lambda_W"],
    }


def run_sync_async(config: SyncAsyncConfig | Mapping[str, Any] | None = None) -> SyncAsyncResult:
    cfg = config if isinstance(config, SyncAsyncConfig) else make_config(**dict(config or {}))
    variants = {run.name: run for run in (run_variant(cfg, mode, db) for mode, db in VARIANTS)}
    rows = sweep(cfg)
    return SyncAsyncResult(cfg, variants, rows, analytic(cfg), _claims(variants, rows))
