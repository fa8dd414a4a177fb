"""The scenarios ``mqlab`` knows: name -> config model, runner, plot, one-line description.

Imports are lazy so that ``mqlab scenarios`` and ``--help`` stay fast.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    module: str
    config: str
    runner: str
    plot: str | None = None

    def load(self, attr: str) -> Any:
        module_name, _, name = attr.rpartition(":")
        return getattr(importlib.import_module(module_name or self.module), name)

    @property
    def config_model(self) -> Any:
        return self.load(self.config)

    @property
    def run(self) -> Callable[[Any], Any]:
        return self.load(self.runner)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("flash-sale", "the gift event end to end: API, queue, consumers, Redis stock, ledger, "
             "vouchers; checked for loss, duplicates and oversell",
             "simulator.scenarios.flash_sale", "simulator.config:FlashSaleConfig",
             "simulator.scenarios.flash_sale:run_flash_sale", "simulator.plots:plot_flash_sale"),
    Scenario("mmc", "a plain M/M/c queue in MQ Lab's engine, beside Erlang C's prediction "
             "(the engine's validation)",
             "simulator.scenarios.mmc", "simulator.scenarios.mmc:MMcConfig",
             "simulator.scenarios.mmc:run_mmc"),
    Scenario("tracing", "one submission followed by its correlation id through every component "
             "(swimlanes, OpenTelemetry spans, JSON Lines); drifted payloads rejected to the "
             "dead-letter queue, never reaching the handler",
             "simulator.scenarios.tracing", "simulator.scenarios.tracing:TracingConfig",
             "simulator.scenarios.tracing:run_tracing", "simulator.plots_tracing:plot_tracing"),
    Scenario("routing", "AMQP routing on the broker model: direct, fanout, topic, headers and "
             "consistent-hash tables; priority under backlog, TTL/DLQ reasons, max-length overflow, "
             "a slow fanout subscriber",
             "simulator.scenarios.routing", "simulator.scenarios.routing:RoutingConfig",
             "simulator.scenarios.routing:run_routing", "simulator.plots_routing:plot_routing"),
    Scenario("ordering", "per-user event order through competing consumers, consistent-hash "
             "partitions and a Kafka-style log: inversions, throughput, hot-key skew, replay",
             "simulator.scenarios.ordering", "simulator.scenarios.ordering:OrderingConfig",
             "simulator.scenarios.ordering:run_ordering", "simulator.plots_ordering:plot_ordering"),
    Scenario("scale", "scale-up vs scale-out: the same requests on N small machines and on one "
             "big one; a machine failure, sticky vs shared sessions, the utilisation knee and the price",
             "simulator.scenarios.scale", "simulator.scenarios.scale:ScaleConfig",
             "simulator.scenarios.scale:run_scale", "simulator.plots_scale:plot_scale"),
    Scenario("loss", "lost messages per design (transient/durable+persistent, confirms, auto/manual "
             "ack) and crash target (producer, broker, consumer, Redis per persistence mode); naive "
             "vs ledger reseed of the Redis stock; safety stock against the AOF everysec window",
             "simulator.scenarios.loss", "simulator.scenarios.loss:LossConfig",
             "simulator.scenarios.loss:run_loss", "simulator.plots_loss:plot_loss"),
    Scenario("duplicates", "lost acks and crashes between commit and ack redeliver; dedupe off / "
             "Redis SET NX / DB unique key in the same transaction: duplicate deliveries vs "
             "double-granted vouchers",
             "simulator.scenarios.duplicates", "simulator.scenarios.duplicates:DuplicatesConfig",
             "simulator.scenarios.duplicates:run_duplicates",
             "simulator.plots_loss:plot_duplicates_report"),
    Scenario("sync-vs-async", "the gift event handled inside the request vs through a queue, on the "
             "same opening spike: response p50/p99, timeouts, DB pool saturation, logins on a shared "
             "vs dedicated event DB, queue rise and drain, throughput vs consumers",
             "simulator.scenarios.sync_async", "simulator.scenarios.sync_async:SyncAsyncConfig",
             "simulator.scenarios.sync_async:run_sync_async", "simulator.plots_sync:plot_sync_async"),
    Scenario("scorecard", "flash-sale architectures side by side on the same arrivals and crash "
             "schedule: FCFS fairness, time to voucher, refused while stock remained, oversell, "
             "lost, duplicated",
             "simulator.scenarios.scorecard", "simulator.scenarios.scorecard:ScorecardConfig",
             "simulator.scenarios.scorecard:run_scorecard", "simulator.plots_sync:plot_scorecard"),
    Scenario("outbox", "crash-point explorer: dual-write patterns (db-then-publish, publish-then-db, "
             "outbox + relay, + reconciliation, + compensation) x crash points -> ok / duplicate / "
             "ghost / orphan / leak",
             "simulator.scenarios.outbox", "simulator.scenarios.outbox:OutboxConfig",
             "simulator.scenarios.outbox:run_outbox", "simulator.plots_outbox:plot_outbox"),
    Scenario("stock", "where the stock lives: DB UPDATE (row lock), DB read-then-write, Redis GET+SET, "
             "DECR, Lua at 1/4/16 consumers; oversell, lock wait, Redis single-thread ceiling, TTL "
             "end, safety stock",
             "simulator.scenarios.stock", "simulator.scenarios.stock:StockConfig",
             "simulator.scenarios.stock:run_stock", "simulator.plots_stock:plot_stock_lesson"),
]}
