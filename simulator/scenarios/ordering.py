"""Message ordering: lesson 06, curriculum rows C4 and D5.

Every user publishes a short story in order on one channel: submit (seq 0), amend (1, 2,
...), cancel (last).  The same arrivals (common random numbers) go through three designs:

* ``competing-consumers``: one queue, several consumers with a prefetch window, handler
  times with jitter and a random nack-requeue.  Parallel handling and redelivery reorder a
  user's events.
* ``consistent-hash``: an x-consistent-hash exchange on the user id, one queue per partition
  and one consumer per queue (prefetch ``partition_prefetch``, 1 by default: with more in
  flight a requeued message would be overtaken by the ones behind it).
* ``partitioned-log``: a Kafka-style log, partition = hash(key) % P, one consumer per
  partition reading by offset; a failed record is retried in place before the offset moves.
  Replaying from offset 0 gives the same order again.

Inversions are counted by ``simulator.checker`` from the history (``enqueue``/``dequeue`` ops
with ``{"key", "seq"}``); a hot key (one user producing ``hot_key_share`` of the events)
shows what partitioning costs: one partition carries the hot user alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import pydantic
import simpy
from pydantic import Field, model_validator

from simulator.checker import Checker, CheckResult
from simulator.config import StrictModel
from simulator.history import History
from simulator.messages import Message, submission_body
from simulator.rng import Streams
from simulator.sim.broker import Broker
from simulator.sim.partitioned_log import PartitionedLog
from simulator.stats import Summary

__all__ = ["OrderingConfig", "OrderingResult", "Event", "make_config", "make_events", "run_ordering",
           "VARIANTS", "HOT_KEY"]

VARIANTS = ("competing-consumers", "consistent-hash", "partitioned-log")
HOT_KEY = "user-hot"
GROUP = "survey-handlers"  # the log consumer group
MAX_EVENTS = 2_000_000


class OrderingConfig(StrictModel):
    seed: int = Field(default=7, ge=0, le=2**32 - 1)
    users: int = Field(default=300, ge=1, le=1_000_000, description="ordinary users (the hot user is extra)")
    events_per_user: int = Field(default=3, ge=1, le=1000, description="submit, amend..., cancel")
    arrival_rate: float = Field(default=400.0, gt=0, le=1e6, allow_inf_nan=False,
                                description="events per second, all users together")
    event_gap_ms: float = Field(default=4.0, ge=0, allow_inf_nan=False,
                                description="mean time between one user's consecutive events")
    consumers: int = Field(default=4, ge=1, le=1000, description="competing consumers on the one queue")
    partitions: int = Field(default=4, ge=1, le=1000, description="hash partitions (queues or log partitions)")
    prefetch: int = Field(default=10, ge=0, le=65535, description="competing consumers' window; 0 = unlimited")
    partition_prefetch: int = Field(default=1, ge=0, le=65535,
                                    description="window of each partition queue's consumer")
    requeue_rate: float = Field(default=0.05, ge=0, le=0.9, allow_inf_nan=False,
                                description="chance one handling attempt fails (nack-requeue / retry)")
    handler_ms: float = Field(default=8.0, gt=0, le=60_000, allow_inf_nan=False)
    handler_jitter: float = Field(default=0.5, ge=0, le=1, allow_inf_nan=False,
                                  description="handler time is uniform in handler_ms * (1 +- jitter)")
    hot_key_share: float = Field(default=0.0, ge=0, le=0.9, allow_inf_nan=False,
                                 description="share of all events produced by one hot user")

    @model_validator(mode="after")
    def _bounded(self) -> "OrderingConfig":
        if self.total_events > MAX_EVENTS:
            raise ValueError(f"users: at most {MAX_EVENTS} events in all (users x events_per_user plus the "
                             f"hot user's), not {self.total_events}")
        return self

    @property
    def hot_events(self) -> int:
        normal = self.users * self.events_per_user
        return round(self.hot_key_share * normal / (1 - self.hot_key_share))

    @property
    def total_events(self) -> int:
        return self.users * self.events_per_user + self.hot_events


def make_config(**values: Any) -> OrderingConfig:
    """``OrderingConfig(**values)``, a bad value reported as an ``InputError`` naming the field."""
    from simulator.config_errors import input_error_from

    try:
        return OrderingConfig.model_validate(values)
    except pydantic.ValidationError as exc:
        raise input_error_from(exc) from None


# --------------------------------------------------------------------------- arrivals

@dataclass(frozen=True, slots=True)
class Event:
    time: float
    key: str
    seq: int
    kind: str
    handler_s: float  # every attempt at this event takes this long
    failures: int     # attempts that fail before one succeeds

    @property
    def msg_id(self) -> str:
        return f"{self.key}#{self.seq}"


def _kind(seq: int, count: int) -> str:
    if seq == 0:
        return "submit"
    return "cancel" if seq == count - 1 else "amend"


def make_events(cfg: OrderingConfig) -> list[Event]:
    """Every event in publish order; drawn only from knobs the variants share."""
    s = Streams(cfg.seed)
    epu, hot = cfg.events_per_user, cfg.hot_events
    span = cfg.total_events / cfg.arrival_rate
    starts = sorted(s["ordering.users"].uniform(0.0, span, cfg.users).tolist())
    gap_s = cfg.event_gap_ms / 1000.0
    gaps = s["ordering.gaps"].exponential(1.0, (cfg.users, max(epu - 1, 1))) * gap_s
    raw: list[tuple[float, str, int, int]] = []
    for u, start in enumerate(starts):
        t = start
        for k in range(epu):
            if k:
                t += float(gaps[u, k - 1])
            raw.append((t, f"user-{u}", k, epu))
    hot_times = sorted(s["ordering.hot"].uniform(0.0, span, hot).tolist())
    raw += [(t, HOT_KEY, k, hot) for k, t in enumerate(hot_times)]
    raw.sort(key=lambda r: (r[0], r[1], r[2]))
    n = len(raw)
    unit = s["ordering.handler"].random(n)
    # geometric(p) counts attempts up to the first success: minus one is the failures
    failures = s["ordering.requeue"].geometric(1.0 - cfg.requeue_rate, n) - 1
    base = cfg.handler_ms / 1000.0
    return [Event(t, key, seq, _kind(seq, count), base * (1 + cfg.handler_jitter * (2 * float(unit[i]) - 1)),
                  int(failures[i]))
            for i, (t, key, seq, count) in enumerate(raw)]


# --------------------------------------------------------------------------- one variant

@dataclass
class VariantRun:
    name: str
    check: CheckResult
    history_sha256: str
    delay_ms: Summary
    order: list[str]          # msg ids in the order they were processed
    loads: list[int]          # events per consumer (competing) or per partition
    retries: int
    first_publish: float
    last_done: float
    extra: dict[str, Any] = field(default_factory=dict)


class _Recorder:
    """The history (with the one checker as its sink) plus delays and processing order."""

    def __init__(self, env: simpy.Environment, total: int):
        self.env = env
        self.total = total
        self.checker = Checker(max_examples=5)
        self.history = History(lambda: env.now, keep=0, sinks=[self.checker])
        self.delay = Summary()
        self.order: list[str] = []
        self.retries = 0
        self.done = env.event()

    def published(self, ev: Event) -> None:
        self.history.record("ok", "enqueue", "publisher", {"key": ev.key, "seq": ev.seq}, msg_id=ev.msg_id)

    def processed(self, ev: Event, worker: str) -> None:
        self.history.record("ok", "dequeue", worker, {"outcome": "processed", "key": ev.key, "seq": ev.seq},
                            msg_id=ev.msg_id)
        self.delay.add((self.env.now - ev.time) * 1000.0)
        self.order.append(ev.msg_id)
        if len(self.order) == self.total:
            self.done.succeed()

    def finish(self, name: str, events: list[Event], loads: Callable[[], list[int]]) -> VariantRun:
        self.env.run(until=self.done)
        return VariantRun(name, self.checker.result(), self.history.sha256(), self.delay, self.order,
                          loads(), self.retries, events[0].time, self.env.now)


def _schedule(env: simpy.Environment, events: list[Event], publish) -> None:
    # scheduled in publish order: SimPy fires equal times first-scheduled first, so the one
    # channel's order holds even for a gap of 0
    for ev in events:
        env.timeout(ev.time).callbacks.append(lambda _e, ev=ev: publish(ev))


def _run_queues(cfg: OrderingConfig, events: list[Event], hashed: bool) -> VariantRun:
    env = simpy.Environment()
    rec = _Recorder(env, len(events))
    broker = Broker(env, Streams(cfg.seed)["ordering.broker"])
    if hashed:
        exchange, prefetch = "by-user", cfg.partition_prefetch
        broker.declare_exchange(exchange, "x-consistent-hash", durable=False)
        queues = [f"partition-{p}" for p in range(cfg.partitions)]
        for q in queues:
            broker.declare_queue(q, durable=False)
            broker.bind(q, exchange, "1")  # equal weights
        workers = [(q, f"partition-consumer-{p}") for p, q in enumerate(queues)]
    else:
        exchange, prefetch = "", cfg.prefetch
        broker.declare_queue("work", durable=False)
        workers = [("work", f"consumer-{i}") for i in range(cfg.consumers)]
    by_id = {ev.msg_id: ev for ev in events}
    attempts: Counter[str] = Counter()
    loads = Counter({name: 0 for _, name in workers})

    def publish(ev: Event) -> None:
        body = submission_body(ev.msg_id, ev.key, seq=ev.seq, kind=ev.kind)
        message = Message(ev.msg_id, ev.msg_id, "", body, persistent=False, timestamp=env.now)
        broker.publish(exchange, ev.key if hashed else "work", message, confirm=False)
        rec.published(ev)

    def consume(queue: str, name: str):
        ch = broker.consume(queue, consumer_tag=name, prefetch=prefetch)
        while True:
            delivery = yield ch.get()
            ev = by_id[delivery.message.message_id]
            yield env.timeout(ev.handler_s)
            if attempts[ev.msg_id] < ev.failures:
                attempts[ev.msg_id] += 1
                rec.retries += 1
                ch.nack(delivery, requeue=True)  # back to its old place; another consumer may get it
                continue
            rec.processed(ev, name)
            ch.ack(delivery)
            loads[name] += 1

    for queue, name in workers:
        env.process(consume(queue, name))
    _schedule(env, events, publish)
    return rec.finish(VARIANTS[1] if hashed else VARIANTS[0], events,
                      lambda: [loads[name] for _, name in workers])


def _run_log(cfg: OrderingConfig, events: list[Event]) -> tuple[VariantRun, PartitionedLog]:
    env = simpy.Environment()
    rec = _Recorder(env, len(events))
    log = PartitionedLog(env, cfg.partitions)
    consumed: list[list[str]] = [[] for _ in range(cfg.partitions)]

    def publish(ev: Event) -> None:
        log.append(ev.key, ev)
        rec.published(ev)

    def consume(p: int):
        name, offset = f"log-consumer-{p}", log.committed(GROUP, p)
        while True:
            for record in (yield log.fetch(p, offset)):
                ev: Event = record.value
                # a failure retries the same record: the offset only moves once it succeeded
                for _ in range(ev.failures + 1):
                    yield env.timeout(ev.handler_s)
                rec.retries += ev.failures
                rec.processed(ev, name)
                consumed[p].append(ev.msg_id)
                offset = record.offset + 1
                log.commit(GROUP, p, offset)

    for p in range(cfg.partitions):
        env.process(consume(p))
    _schedule(env, events, publish)
    run = rec.finish(VARIANTS[2], events, log.loads)
    run.extra = _replay(log, events, consumed)
    return run, log


def _replay(log: PartitionedLog, events: list[Event], consumed: list[list[str]]) -> dict[str, int]:
    """A new reader from offset 0 on every partition: same records, same order, no inversions."""
    checker = Checker(max_examples=1)
    history = History(lambda: 0.0, keep=0, sinks=[checker])
    for ev in events:
        history.record("ok", "enqueue", "publisher", {"key": ev.key, "seq": ev.seq}, msg_id=ev.msg_id)
    identical = True
    for p in range(log.partitions):
        replayed = log.replay(p, 0)
        identical &= [r.value.msg_id for r in replayed] == consumed[p]
        for r in replayed:
            ev = r.value
            history.record("ok", "dequeue", f"replay-{p}", {"outcome": "processed", "key": ev.key, "seq": ev.seq},
                           msg_id=ev.msg_id)
    return {"replay_identical": int(identical), "replay_inversions": checker.result().counts["out_of_order"]}


# --------------------------------------------------------------------------- result

def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


def _metrics(run: VariantRun) -> dict[str, Any]:
    c = run.check.counts
    span = run.last_done - run.first_publish
    delay = {k: _r(v) if isinstance(v, float) else v for k, v in run.delay_ms.to_dict().items()}
    mean_load = sum(run.loads) / len(run.loads)
    return {"processed": c["dequeued"], "inversions": c["out_of_order"], "lost": c["lost"],
            "duplicated": c["duplicated"], "retries": run.retries,
            "throughput_eps": _r(c["dequeued"] / span) if span > 0 else 0.0,
            "p99_delay_ms": delay.get("p99"), "delay_ms": delay,
            "workers": len(run.loads), "loads": run.loads,
            "skew": _r(max(run.loads) / mean_load) if mean_load else 0.0,
            "makespan_s": _r(span), **run.extra}


@dataclass
class OrderingResult:
    config: OrderingConfig
    metrics: dict[str, Any]
    histories: dict[str, str]            # variant -> history SHA-256
    examples: dict[str, list[str]]       # variant -> a few checker chains of inversions
    processed_order: dict[str, list[str]] = field(repr=False)
    log: PartitionedLog | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": "ordering", "seed": self.config.seed,
                "config": self.config.model_dump(mode="json"), "metrics": self.metrics,
                "histories": self.histories, "examples": self.examples}

    def report(self) -> str:
        cfg, v = self.config, self.metrics["variants"]
        hot = f", hot user {cfg.hot_key_share:.0%} of events" if cfg.hot_key_share else ""
        lines = [f"ordering  seed={cfg.seed}  {self.metrics['events']} events from {cfg.users} users{hot}",
                 f"  {'':<24}" + "".join(f"{name:>22}" for name in VARIANTS)]

        def row(label: str, key: str, fmt: str) -> None:
            cells = ["-" if v[n].get(key) is None else format(v[n][key], fmt) for n in VARIANTS]
            lines.append(f"  {label:<24}" + "".join(f"{c:>22}" for c in cells))

        row("workers", "workers", "d")
        row("per-key inversions", "inversions", "d")
        row("throughput (events/s)", "throughput_eps", ".1f")
        row("p99 delay (ms)", "p99_delay_ms", ".1f")
        row("max load / mean (skew)", "skew", ".2f")
        row("failed attempts", "retries", "d")
        log = v[VARIANTS[2]]
        lines.append(f"  replay of the log from offset 0: "
                     f"{'same order' if log['replay_identical'] else 'DIFFERENT order'}, "
                     f"{log['replay_inversions']} inversions")
        for name, chains in self.examples.items():
            if chains:
                lines.append(f"  an inversion ({name}):")
                lines += ["    " + line for line in chains[0].splitlines()]
        return "\n".join(lines)


def run_ordering(config: OrderingConfig | Mapping[str, Any] | None = None) -> OrderingResult:
    cfg = config if isinstance(config, OrderingConfig) else make_config(**dict(config or {}))
    events = make_events(cfg)
    log_run, log = _run_log(cfg, events)
    runs = [_run_queues(cfg, events, hashed=False), _run_queues(cfg, events, hashed=True), log_run]
    metrics = {"events": len(events), "hot_key_events": cfg.hot_events,
               "variants": {run.name: _metrics(run) for run in runs}}
    examples = {run.name: [a.chain for a in run.check.anomalies if a.kind == "out_of_order"][:3]
                for run in runs}
    return OrderingResult(cfg, metrics, {run.name: run.history_sha256 for run in runs}, examples,
                          {run.name: run.order for run in runs}, log)

