"""AMQP routing and queue features on the SimPy broker: lesson 08, curriculum rows B8, D2-D4.

``run_routing(config)`` runs six small experiments, each on a fresh broker:

* the routing table: messages published to direct, fanout, topic, headers and
  x-consistent-hash exchanges, and which queues got a copy of each (checked row by row
  against ``simulator.routing.route``, the rules the real broker is tested against);
* consistent hash: many users' messages, each user sticking to one shard, shares ~ weights;
* priority under backlog: high-priority messages overtake a queue of normal ones (and do
  not in a queue declared without ``x-max-priority``, on the same arrivals);
* TTL, max-length and rejection dead-lettering into a DLQ, counted by ``x-death`` reason;
* max-length overflow: ``drop-head`` silently loses the oldest, ``reject-publish`` nacks the
  newest so the publisher knows;
* a fanout with one slow subscriber: its queue grows, the other queues' latency does not move.
  Each queue is its own process here and shares nothing with the others; a real node couples
  them only through its memory and disk alarms (which block every publisher), not modelled.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pydantic
import simpy
from pydantic import Field

from simulator.config import StrictModel
from simulator.messages import Delivery, Message
from simulator.rng import Streams
from simulator.routing import Binding, route
from simulator.sim.broker import Broker
from simulator.stats import Summary, TimeSeries

__all__ = ["RoutingConfig", "RoutingResult", "make_config", "run_routing", "TOPOLOGY", "PUBLISHED",
           "FANOUT_QUEUES", "SLOW_QUEUE", "DEATH_REASONS", "OVERFLOW_MODES", "hash_bindings"]

FANOUT_QUEUES = ("stock", "ledger", "voucher")  # B8: the services a "survey submitted" reaches
SLOW_QUEUE = "voucher"  # the voucher sender calls a slow gateway
DEATH_REASONS = ("rejected", "expired", "maxlen")
OVERFLOW_MODES = ("drop-head", "reject-publish")

# exchange -> (type, bindings as (queue, binding key, arguments))
TOPOLOGY: dict[str, tuple[str, tuple[tuple[str, str, dict[str, Any]], ...]]] = {
    "survey.direct": ("direct", (("direct.submitted", "survey.submitted", {}),
                                 ("direct.cancelled", "survey.cancelled", {}))),
    "survey.events": ("fanout", tuple((q, "", {}) for q in FANOUT_QUEUES)),
    "survey.topic": ("topic", (("topic.one-word", "survey.*", {}), ("topic.any-depth", "survey.#", {}),
                               ("topic.gifts", "#.gift", {}))),
    "survey.headers": ("headers", (("headers.gift-kr", "", {"x-match": "all", "type": "gift", "region": "kr"}),
                                   ("headers.gift-or-vip", "", {"x-match": "any", "type": "gift", "tier": "vip"}))),
}
HASH_EXCHANGE = "users.hash"
# (exchange, routing key, headers); the hash rows repeat user-1 to show it sticks
PUBLISHED: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("survey.direct", "survey.submitted", {}), ("survey.direct", "survey.cancelled", {}),
    ("survey.direct", "survey.amended", {}),
    ("survey.events", "survey.submitted", {}), ("survey.events", "anything.at.all", {}),
    ("survey.topic", "survey.submitted", {}), ("survey.topic", "survey.submitted.gift", {}),
    ("survey.topic", "survey", {}), ("survey.topic", "order.gift", {}), ("survey.topic", "gift", {}),
    ("survey.headers", "", {"type": "gift", "region": "kr"}), ("survey.headers", "", {"type": "gift", "region": "us"}),
    ("survey.headers", "", {"tier": "vip"}), ("survey.headers", "", {"type": "survey", "region": "kr"}),
    (HASH_EXCHANGE, "user-1", {}), (HASH_EXCHANGE, "user-2", {}), (HASH_EXCHANGE, "user-3", {}),
    (HASH_EXCHANGE, "user-1", {}),
)


class RoutingConfig(StrictModel):
    seed: int = Field(default=7, ge=0, le=2**32 - 1)
    # consistent hash
    hash_users: int = Field(default=1000, ge=1, le=1_000_000)
    hash_messages: int = Field(default=5000, ge=1, le=1_000_000)
    hash_shards: int = Field(default=3, ge=2, le=64)
    hash_heavy_weight: int = Field(default=2, ge=1, le=100, description="weight of the last shard; others 1")
    # priority under backlog
    priority_backlog: int = Field(default=400, ge=0, le=1_000_000, description="normal messages waiting at t=0")
    priority_arrivals: int = Field(default=1000, ge=2, le=1_000_000)
    priority_rate: float = Field(default=180.0, gt=0, le=1e6, allow_inf_nan=False, description="per second")
    high_share: float = Field(default=0.1, gt=0, le=0.5, allow_inf_nan=False,
                              description="share of the arrivals sent with high priority")
    max_priority: int = Field(default=10, ge=1, le=255, description="x-max-priority (high messages use it)")
    priority_prefetch: int = Field(default=1, ge=0, le=65535, description="0 = unlimited")
    handler_ms: float = Field(default=5.0, gt=0, le=60_000, allow_inf_nan=False, description="mean, exponential")
    # TTL, max length, rejection -> DLQ
    dl_messages: int = Field(default=1500, ge=1, le=1_000_000)
    dl_rate: float = Field(default=300.0, gt=0, le=1e6, allow_inf_nan=False, description="per second")
    ttl_ms: int = Field(default=150, ge=0, le=86_400_000, description="x-message-ttl of the orders queue")
    max_length: int = Field(default=40, ge=0, le=1_000_000, description="x-max-length of the orders queue")
    reject_rate: float = Field(default=0.05, ge=0, le=1, allow_inf_nan=False)
    # overflow modes
    overflow_messages: int = Field(default=100, ge=1, le=1_000_000)
    overflow_max_length: int = Field(default=20, ge=0, le=1_000_000)
    # fanout with a slow subscriber
    fanout_events: int = Field(default=1000, ge=1, le=1_000_000)
    fanout_rate: float = Field(default=100.0, gt=0, le=1e6, allow_inf_nan=False, description="per second")
    subscriber_ms: float = Field(default=3.0, gt=0, le=60_000, allow_inf_nan=False)
    slow_subscriber_ms: float = Field(default=25.0, gt=0, le=60_000, allow_inf_nan=False,
                                      description="mean handler time of the voucher service in the slow run")


def make_config(**values: Any) -> RoutingConfig:
    """``RoutingConfig(**values)``, a bad value reported as an ``InputError`` naming the field."""
    from simulator.config_errors import input_error_from

    try:
        return RoutingConfig.model_validate(values)
    except pydantic.ValidationError as exc:
        raise input_error_from(exc) from None


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


def _summary(s: Summary) -> dict[str, Any]:
    return {k: _r(v) if isinstance(v, float) else v for k, v in s.to_dict().items()}


def _msg(mid: str, *, headers: dict[str, Any] | None = None, priority: int = 0, at: float = 0.0) -> Message:
    return Message(mid, mid, "", {"id": mid}, headers=dict(headers or {}), persistent=False,
                   priority=priority, timestamp=at)


def _at(env: simpy.Environment, times: Any, action: Callable[[int], None]) -> None:
    # one callback per arrival, scheduled in order: equal times fire in that order too
    for i, t in enumerate(times):
        env.timeout(float(t)).callbacks.append(lambda _e, i=i: action(i))


def _serve(env: simpy.Environment, broker: Broker, queue: str, *, prefetch: int,
           handle: Callable[[Any, Delivery], Any]) -> None:
    """One consumer: take a delivery, run ``handle`` (a generator: its time and its settle)."""
    def loop():
        ch = broker.consume(queue, consumer_tag=f"{queue}-consumer", prefetch=prefetch)
        while True:
            delivery = yield ch.get()
            yield from handle(ch, delivery)
    env.process(loop())


def _poisson_times(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    return np.cumsum(rng.exponential(1.0 / rate, n))


# --------------------------------------------------------------------------- routing table

def hash_bindings(shards: int, heavy: int) -> list[Binding]:
    return [Binding(f"hash.shard-{i}", str(heavy if i == shards - 1 else 1)) for i in range(shards)]


def _declare(broker: Broker, cfg: RoutingConfig) -> dict[str, tuple[str, list[Binding]]]:
    topo = {name: (kind, [Binding(q, k, a) for q, k, a in binds]) for name, (kind, binds) in TOPOLOGY.items()}
    topo[HASH_EXCHANGE] = ("x-consistent-hash", hash_bindings(cfg.hash_shards, cfg.hash_heavy_weight))
    for name, (kind, binds) in topo.items():
        broker.declare_exchange(name, kind, durable=False)
        for b in binds:
            broker.declare_queue(b.queue, durable=False)
            broker.bind(b.queue, name, b.binding_key, b.arguments)
    return topo


def _label(exchange: str, key: str, headers: dict[str, Any]) -> str:
    kind = TOPOLOGY.get(exchange, ("x-consistent-hash",))[0]
    if kind == "headers":
        return "headers " + ", ".join(f"{k}={v}" for k, v in headers.items())
    return f"{kind} {key!r}" if kind != "x-consistent-hash" else f"hash {key!r}"


def _routing_table(cfg: RoutingConfig) -> dict[str, Any]:
    env = simpy.Environment()
    broker = Broker(env, Streams(cfg.seed)["routing.table.broker"])
    topo = _declare(broker, cfg)
    for i, (exchange, key, headers) in enumerate(PUBLISHED):
        broker.publish(exchange, key, _msg(f"r{i}", headers=headers), confirm=False)
    env.run()
    columns = broker.queue_names()
    got: dict[str, set[str]] = {}
    for q in columns:
        for m in broker.drain(q):
            got.setdefault(m.message_id, set()).add(q)
    rows = []
    for i, (exchange, key, headers) in enumerate(PUBLISHED):
        kind, binds = topo[exchange]
        expected = set(route(kind, binds, key, headers))
        queues = [q for q in columns if q in got.get(f"r{i}", set())]
        rows.append({"exchange": exchange, "type": kind, "routing_key": key, "headers": headers,
                     "label": _label(exchange, key, headers), "queues": queues,
                     "expected": [q for q in columns if q in expected], "matches": int(set(queues) == expected)})
    matrix = [[int(q in row["queues"]) for q in columns] for row in rows]
    return {"queues": columns, "rows": rows, "matrix": matrix}


def _hash_shares(cfg: RoutingConfig) -> dict[str, Any]:
    env = simpy.Environment()
    broker = Broker(env, Streams(cfg.seed)["routing.hash.broker"])
    binds = hash_bindings(cfg.hash_shards, cfg.hash_heavy_weight)
    broker.declare_exchange(HASH_EXCHANGE, "x-consistent-hash", durable=False)
    for b in binds:
        broker.declare_queue(b.queue, durable=False)
        broker.bind(b.queue, HASH_EXCHANGE, b.binding_key)
    users = Streams(cfg.seed)["routing.hash.users"].integers(0, cfg.hash_users, cfg.hash_messages)
    for i, u in enumerate(users.tolist()):
        broker.publish(HASH_EXCHANGE, f"user-{u}", _msg(f"h{i}"), confirm=False)
    env.run()
    counts, shards_of = [], {}
    for b in binds:
        got = broker.drain(b.queue)
        counts.append(len(got))
        for m in got:
            shards_of.setdefault(m.routing_key, set()).add(b.queue)
    total_w = sum(int(b.binding_key) for b in binds)
    weight_share = [int(b.binding_key) / total_w for b in binds]
    user_counts = Counter(next(iter(s)) for s in shards_of.values() if len(s) == 1)
    return {"shards": [b.queue for b in binds], "weights": [int(b.binding_key) for b in binds],
            "messages": counts, "message_share": [_r(c / cfg.hash_messages) for c in counts],
            "user_share": [_r(user_counts[b.queue] / len(shards_of)) for b in binds],
            "weight_share": [_r(w) for w in weight_share],
            "sticky_violations": sum(len(s) > 1 for s in shards_of.values()), "users_seen": len(shards_of)}


# --------------------------------------------------------------------------- priority

def _priority(cfg: RoutingConfig, with_priority: bool) -> dict[str, Summary]:
    s = Streams(cfg.seed)  # the same draws in both runs: only the queue declaration differs
    n = cfg.priority_backlog + cfg.priority_arrivals
    times = np.concatenate([np.zeros(cfg.priority_backlog),
                            _poisson_times(s["routing.priority.arrivals"], cfg.priority_arrivals, cfg.priority_rate)])
    n_high = max(1, round(cfg.high_share * cfg.priority_arrivals))
    high = set((cfg.priority_backlog + s["routing.priority.high"].choice(cfg.priority_arrivals, n_high,
                                                                         replace=False)).tolist())
    work = (s["routing.priority.handler"].exponential(1.0, n) * cfg.handler_ms / 1000.0).tolist()
    env = simpy.Environment()
    broker = Broker(env, s["routing.priority.broker"])
    broker.declare_queue("work", durable=False,
                         arguments={"x-max-priority": cfg.max_priority} if with_priority else None)
    waits = {"high": Summary(), "normal": Summary()}

    def publish(i: int) -> None:
        broker.publish("", "work", _msg(f"p{i}", priority=cfg.max_priority if i in high else 0, at=env.now),
                       confirm=False)

    def handle(ch, d: Delivery):
        i = int(d.message.message_id[1:])
        waits["high" if i in high else "normal"].add((env.now - d.message.timestamp) * 1000.0)
        yield env.timeout(work[i])
        ch.ack(d)

    _serve(env, broker, "work", prefetch=cfg.priority_prefetch, handle=handle)
    _at(env, times, publish)
    env.run()
    return waits


# --------------------------------------------------------------------------- dead letters

def _dlq_broker(env: simpy.Environment, rng: np.random.Generator, queue_args: dict[str, Any]) -> Broker:
    broker = Broker(env, rng)
    broker.declare_exchange("dlx", "fanout", durable=False)
    broker.declare_queue("dlq", durable=False)
    broker.bind("dlq", "dlx")
    broker.declare_queue("orders", durable=False, arguments={**queue_args, "x-dead-letter-exchange": "dlx"})
    return broker


def _reasons(broker: Broker) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {r: [] for r in DEATH_REASONS}
    for m in broker.drain("dlq"):
        out[m.headers["x-death"][0]["reason"]].append(m.message_id)
    return out


def _dead_letters(cfg: RoutingConfig) -> dict[str, Any]:
    s = Streams(cfg.seed)
    times = _poisson_times(s["routing.dl.arrivals"], cfg.dl_messages, cfg.dl_rate)
    work = (s["routing.dl.handler"].exponential(1.0, cfg.dl_messages) * cfg.handler_ms / 1000.0).tolist()
    reject = (s["routing.dl.reject"].random(cfg.dl_messages) < cfg.reject_rate).tolist()
    env = simpy.Environment()
    broker = _dlq_broker(env, s["routing.dl.broker"], {"x-message-ttl": cfg.ttl_ms, "x-max-length": cfg.max_length,
                                                       "x-overflow": "drop-head"})
    done: dict[str, list[str]] = {"processed": [], "rejected": []}

    def handle(ch, d: Delivery):
        i = int(d.message.message_id[1:])
        yield env.timeout(work[i])
        if reject[i]:
            ch.reject(d, requeue=False)  # a poison message: to the DLQ, not back to the queue
            done["rejected"].append(d.message.message_id)
        else:
            ch.ack(d)
            done["processed"].append(d.message.message_id)

    _serve(env, broker, "orders", prefetch=1, handle=handle)
    _at(env, times, lambda i: broker.publish("", "orders", _msg(f"d{i}", at=env.now), confirm=False))
    env.run()
    return {"dlq": _reasons(broker), "consumer": done, "stats": dict(broker.stats)}


def _overflow(cfg: RoutingConfig, mode: str) -> dict[str, Any]:
    env = simpy.Environment()
    broker = _dlq_broker(env, Streams(cfg.seed)["routing.overflow.broker"],
                         {"x-max-length": cfg.overflow_max_length, "x-overflow": mode})
    answers: list[simpy.Event] = []

    def publish(i: int) -> None:
        answers.append(broker.publish("", "orders", _msg(f"o{i}", at=env.now)))

    _at(env, [i * 0.001 for i in range(cfg.overflow_messages)], publish)  # a burst, no consumer yet
    env.run()
    kept = [int(m.message_id[1:]) for m in broker.drain("orders")]
    outcome = Counter(a.value for a in answers)
    return {"published": cfg.overflow_messages, "confirmed": outcome["ack"], "nacked": outcome["nack"],
            "kept": len(kept), "kept_first": min(kept, default=-1), "kept_last": max(kept, default=-1),
            "dead_lettered_maxlen": len(_reasons(broker)["maxlen"])}


# --------------------------------------------------------------------------- slow subscriber

def _fanout(cfg: RoutingConfig, slow: bool, sample_s: float = 0.1) -> dict[str, Any]:
    s = Streams(cfg.seed)
    n = cfg.fanout_events
    times = _poisson_times(s["routing.fanout.arrivals"], n, cfg.fanout_rate)
    env = simpy.Environment()
    broker = Broker(env, s["routing.fanout.broker"])
    broker.declare_exchange("survey.events", "fanout", durable=False)
    latency = {q: Summary() for q in FANOUT_QUEUES}
    left = [n * len(FANOUT_QUEUES)]
    finished = env.event()
    for q in FANOUT_QUEUES:
        broker.declare_queue(q, durable=False)
        broker.bind(q, "survey.events")
        mean = cfg.slow_subscriber_ms if slow and q == SLOW_QUEUE else cfg.subscriber_ms
        # unit draws per service: its own stream, the same numbers with or without the slow one
        work = (s[f"routing.fanout.{q}"].exponential(1.0, n) * mean / 1000.0).tolist()

        def handle(ch, d: Delivery, q: str = q, work: list[float] = work):
            yield env.timeout(work[int(d.message.message_id[1:])])
            ch.ack(d)
            latency[q].add((env.now - d.message.timestamp) * 1000.0)
            left[0] -= 1
            if not left[0]:
                finished.succeed()

        _serve(env, broker, q, prefetch=10, handle=handle)
    series = TimeSeries(env, sample_s, max_points=1024)  # bounded: a long backlog thins it
    for q in FANOUT_QUEUES:
        series.track(q, lambda q=q: broker.depth(q))
    _at(env, times, lambda i: broker.publish("survey.events", "survey.submitted", _msg(f"f{i}", at=env.now),
                                             confirm=False))
    env.run(until=finished)
    depth = series.to_dict()
    depth = {k: [_r(x) if k == "t" else int(x) for x in v] for k, v in depth.items()}
    return {"latency_ms": {q: _summary(latency[q]) for q in FANOUT_QUEUES}, "depth": depth,
            "max_depth": {q: max(depth[q]) for q in FANOUT_QUEUES}}


# --------------------------------------------------------------------------- result

@dataclass
class RoutingResult:
    config: RoutingConfig
    metrics: dict[str, float | int]
    routing_table: dict[str, Any]
    hash: dict[str, Any]
    priority: dict[str, dict[str, Any]]
    dead_letters: dict[str, Any]
    overflow: dict[str, dict[str, Any]]
    slow_subscriber: dict[str, Any]
    dlq_ids: dict[str, list[str]] = field(repr=False, default_factory=dict)
    consumer_ids: dict[str, list[str]] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": "routing", "seed": self.config.seed, "config": self.config.model_dump(mode="json"),
                "metrics": self.metrics, "routing_table": self.routing_table, "hash": self.hash,
                "priority": self.priority, "dead_letters": self.dead_letters, "overflow": self.overflow,
                "slow_subscriber": self.slow_subscriber}

    def report(self) -> str:
        m, cfg = self.metrics, self.config
        lines = [f"routing  seed={cfg.seed}", "  which queues get each message:"]
        lines += [f"    {row['label']:<34} -> {', '.join(row['queues']) or '(unroutable: dropped)'}"
                  for row in self.routing_table["rows"]]
        lines.append(f"    {m['table_mismatches']} of {m['table_rows']} rows differ from simulator.routing.route")
        h = self.hash
        lines.append(f"  consistent hash: {h['users_seen']} users, {h['sticky_violations']} on more than one "
                     f"shard; message shares {h['message_share']} for weights {h['weights']}")
        lines.append(f"  priority under backlog: wait mean high {m['priority_high_wait_mean_ms']:.1f} ms vs "
                     f"normal {m['priority_normal_wait_mean_ms']:.1f} ms (no x-max-priority: high waits "
                     f"{m['fifo_high_wait_mean_ms']:.1f} ms)")
        lines.append(f"  DLQ by reason: rejected {m['dlq_rejected']}, expired {m['dlq_expired']}, maxlen "
                     f"{m['dlq_maxlen']}; {m['dl_processed']} processed of {m['dl_published']} published")
        for mode, o in self.overflow.items():
            lines.append(f"  overflow {mode:<15}: {o['published']} into max-length {cfg.overflow_max_length}: "
                         f"kept #{o['kept_first']}..#{o['kept_last']}, {o['confirmed']} confirmed, "
                         f"{o['nacked']} nacked, {o['dead_lettered_maxlen']} dropped from the head")
        lat = self.slow_subscriber
        for q in FANOUT_QUEUES:
            base, slow = lat["baseline"]["latency_ms"][q], lat["slow"]["latency_ms"][q]
            lines.append(f"  fanout {q:<8} p99 {base['p99']:.1f} ms -> {slow['p99']:.1f} ms with a slow {SLOW_QUEUE}, "
                         f"max depth {lat['baseline']['max_depth'][q]} -> {lat['slow']['max_depth'][q]}")
        return "\n".join(lines)


def run_routing(config: RoutingConfig | Mapping[str, Any] | None = None) -> RoutingResult:
    cfg = config if isinstance(config, RoutingConfig) else make_config(**dict(config or {}))
    table, shares = _routing_table(cfg), _hash_shares(cfg)
    prio, fifo = _priority(cfg, True), _priority(cfg, False)
    dl = _dead_letters(cfg)
    overflow = {mode: _overflow(cfg, mode) for mode in OVERFLOW_MODES}
    fan = {"baseline": _fanout(cfg, slow=False), "slow": _fanout(cfg, slow=True)}
    priority = {name: {k: _summary(v) for k, v in waits.items()} for name, waits in (("priority", prio),
                                                                                    ("fifo", fifo))}
    fanout_rows = [r for r in table["rows"] if r["type"] == "fanout"]
    others = [q for q in FANOUT_QUEUES if q != SLOW_QUEUE]
    change = max(abs(fan["slow"]["latency_ms"][q][k] / fan["baseline"]["latency_ms"][q][k] - 1)
                 for q in others for k in ("mean", "p99"))
    counts = {r: len(ids) for r, ids in dl["dlq"].items()}
    metrics: dict[str, float | int] = {
        "table_rows": len(table["rows"]), "table_mismatches": sum(1 - r["matches"] for r in table["rows"]),
        "unroutable_rows": sum(not r["queues"] for r in table["rows"]),
        "fanout_copies_min": min(len(r["queues"]) for r in fanout_rows), "fanout_subscribers": len(FANOUT_QUEUES),
        "hash_sticky_violations": shares["sticky_violations"],
        "hash_max_share_error": _r(max(abs(a - b) for a, b in zip(shares["message_share"], shares["weight_share"]))),
        "priority_high_wait_mean_ms": priority["priority"]["high"]["mean"],
        "priority_high_wait_p99_ms": priority["priority"]["high"]["p99"],
        "priority_normal_wait_mean_ms": priority["priority"]["normal"]["mean"],
        "priority_normal_wait_p99_ms": priority["priority"]["normal"]["p99"],
        "fifo_high_wait_mean_ms": priority["fifo"]["high"]["mean"],
        "fifo_normal_wait_mean_ms": priority["fifo"]["normal"]["mean"],
        "dl_published": cfg.dl_messages, "dl_processed": len(dl["consumer"]["processed"]),
        "consumer_rejected": len(dl["consumer"]["rejected"]),
        **{f"dlq_{r}": counts[r] for r in DEATH_REASONS},
        "broker_expired": dl["stats"]["expired"], "broker_maxlen_dropped": dl["stats"]["maxlen_dropped"],
        **{f"{mode.replace('-', '_')}_{k}": overflow[mode][k] for mode in OVERFLOW_MODES
           for k in ("confirmed", "nacked", "kept_first", "kept_last", "dead_lettered_maxlen")},
        "slow_queue_max_depth": fan["slow"]["max_depth"][SLOW_QUEUE],
        "slow_queue_max_depth_baseline": fan["baseline"]["max_depth"][SLOW_QUEUE],
        "others_latency_change": _r(change),
    }
    dead = {"counts": counts, "consumer": {k: len(v) for k, v in dl["consumer"].items()},
            "broker_stats": {k: dl["stats"][k] for k in ("expired", "maxlen_dropped", "rejected", "dead_lettered")}}
    return RoutingResult(cfg, metrics, table, shares, priority, dead, overflow, fan, dl["dlq"], dl["consumer"])
