"""Real-service rows: MQ Lab's adapters against raw pika / redis-py / sqlite3 scripts doing the
same work on the same RabbitMQ and Redis, interleaved in the same run.

Rates are per wall second (the work is round trips; the client's CPU is reported beside it
as CPU microseconds per operation, which is where an adapter's own overhead shows).  Every run
uses fresh names (an AMQP namespace, a Redis key prefix, SQLite files in a temporary folder)
and removes them afterwards.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from benchmarks import real_redis, real_workers
from benchmarks import references_real as raw
from benchmarks.common import Section
from benchmarks.real_pairs import STEADY_REPEATS, STOCK, Runner, guard as _guard, pair_row as _pair_row, \
    raw_redis, steady
from simulator.flow import ROUTING_KEY
from simulator.messages import Message, submission_body

WINDOWS = (10, 100, 1000)
PREFETCHES = (1, 10, 100)


def _sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"sync": 100, "async": 200, "plain": 200, "consume": 200, "flow": 100, "redis": 300,
                "pipelined": 2_000}
    return {"sync": 2_000, "async": 10_000, "plain": 10_000, "consume": 5_000, "flow": 2_000,
            "redis": 10_000, "pipelined": 100_000}


class _Probe:
    def __init__(self) -> None:
        from real_adapters.settings import Settings, mask

        self.settings = Settings.from_env()
        self.amqp_url, self.redis_url = self.settings.amqp_url, self.settings.redis_url
        self.rabbit_version: str | None = None
        self.redis_version: str | None = None
        self.rabbit_problem = self.redis_problem = ""
        try:
            import pika

            params = pika.URLParameters(self.amqp_url)
            params.connection_attempts, params.socket_timeout = 1, 1.5
            conn = pika.BlockingConnection(params)
            self.rabbit_version = str(conn._impl.server_properties.get("version", "?"))
            conn.close()
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            self.rabbit_problem = (f"RabbitMQ not reachable at {mask(self.amqp_url)} "
                                   f"({type(exc).__name__})")
        if self.settings.fake_redis:
            self.redis_problem = "MQLAB_REDIS_URL / MQLAB_OFFLINE ask for fakeredis, not a real Redis"
        else:
            try:
                import redis

                client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1.5, socket_timeout=1.5)
                self.redis_version = str(client.info("server").get("redis_version", "?"))
                client.close()
            except Exception as exc:  # noqa: BLE001
                self.redis_problem = f"Redis not reachable at {mask(self.redis_url)} ({type(exc).__name__})"


def _message(tag: str, i: int) -> Message:
    return Message(f"{tag}-{i}", f"c-{tag}-{i}", ROUTING_KEY, submission_body(f"{tag}-{i}", f"user-{i}", seq=i),
                   persistent=True, timestamp=time.time())


def _raw_factory(tag: str) -> Callable[[int], Any]:
    return lambda i: raw.body_and_properties(submission_body(f"{tag}-{i}", f"user-{i}", seq=i),
                                             f"{tag}-{i}", f"c-{tag}-{i}")


def run(quick: bool, repeats: int) -> tuple[Section, dict[str, str]]:
    sec = Section("real")
    probe = _Probe()
    versions = {"RabbitMQ": probe.rabbit_version or "unreachable", "Redis": probe.redis_version or "unreachable"}
    sizes = _sizes(quick)
    sec.notes.append("Adapter = MQ Lab's real_adapters (BrokerPort over pika BlockingConnection; its "
                     "publish_many, for windowed confirms, over a SelectConnection of its own; RedisPort, "
                     "SqlDatabase on SQLite with WAL + synchronous=FULL); raw = the same calls written "
                     "directly on pika / redis-py / sqlite3 (benchmarks/references_real.py). Messages are "
                     "persistent, on a durable queue, mandatory off. Sizes: "
                     + ", ".join(f"{k} {v:,}" for k, v in sizes.items()) + ". "
                     + ("" if repeats == 1 else
                        f"Sync confirms, consume + DECR + ledger + ack (both wait on fsync) and the Redis rows "
                        f"(each run lasts about a second) take at least {STEADY_REPEATS} interleaved repeats: "
                        "their runs swing most on a shared disk and CPU."))
    if probe.rabbit_problem:
        sec.notes.append(probe.rabbit_problem + ": broker rows skipped.")
    if probe.redis_problem:
        sec.notes.append(probe.redis_problem + ": Redis rows skipped.")
    tmp = tempfile.TemporaryDirectory(prefix="mqlab-bench-")
    try:
        _broker_rows(sec, probe, sizes, repeats, Path(tmp.name))
        real_redis.redis_rows(sec, probe.redis_problem, probe.redis_url, sizes, repeats)
    finally:
        tmp.cleanup()
    sec.group = "workers"
    real_workers.worker_rows(sec, probe.rabbit_problem or probe.redis_problem, quick, repeats)
    from benchmarks import real_targets

    for row in sec.rows:  # a row that could not run at all: its target says why
        real_targets.missing(sec, row.id, row.na or "the row did not run")
    return sec, versions


# ---------------------------------------------------------------------------- broker rows

FLOW_ROW = "real.consume.decr_ledger_ack"
FLOW_LABEL = "consume + Redis DECR + ledger insert (SQLite) + ack, prefetch 10"
BROKER_ROWS = (["real.publish.sync_confirms"] + [f"real.publish.async_w{w}" for w in WINDOWS]
               + ["real.publish.no_confirms"] + [f"real.consume.prefetch{p}" for p in PREFETCHES]
               + ["real.consume.decr_ledger_ack"])


def _broker_rows(sec: Section, probe: _Probe, sizes: dict[str, int], repeats: int, tmp: Path) -> None:
    if probe.rabbit_problem:
        for id in BROKER_ROWS:
            sec.row(id, id.removeprefix("real.")).na = probe.rabbit_problem
        return
    from real_adapters.bootstrap import make_redis_client
    from real_adapters.broker import BrokerPort
    from real_adapters.redis_store import RedisPort
    from real_adapters.settings import Settings
    from real_adapters.sql import SqlDatabase
    from simulator.flow import EXCHANGE, QUEUE

    url = probe.amqp_url
    ns = "bench" + uuid.uuid4().hex[:10]
    port = BrokerPort(url, namespace=ns, process_name=f"{ns}-adapter")
    admin = BrokerPort(url, namespace=ns, process_name=f"{ns}-admin")
    topo = admin.declare_topology(durable=True)
    exchange, queue = topo.exchange, topo.queue
    rb = raw.RawBroker(url)

    def recover() -> None:
        # the broker restarted (or a channel broke): wait for it, redeclare, start clean
        deadline = time.monotonic() + 90
        while True:
            try:
                admin.declare_topology(durable=True)
                break
            except Exception:  # noqa: BLE001 - still down
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        admin.purge(QUEUE)
        port.close()
        rb.close()

    def settle_queue(expected: int) -> None:
        # unconfirmed publishes may still be on their way: wait for them, then empty the queue
        deadline = time.monotonic() + 30
        while admin.queue_depth(QUEUE) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        admin.purge(QUEUE)

    def adapter_publish(n: int, confirm: bool) -> Runner:
        def go(tag: str) -> int:
            for i in range(n):
                done = port.publish(EXCHANGE, ROUTING_KEY, _message(tag, i), mandatory=False, confirm=confirm)
                if done.error is not None or done.value not in ("ack", "sent"):
                    raise RuntimeError(f"adapter publish: {done}")
            return n
        return go

    def warm(confirm: bool) -> None:
        # open both sides' channels before the clock runs (each caches its channel per kind)
        adapter_publish(1, confirm)("warm")
        rb.publish(exchange, ROUTING_KEY, _raw_factory("warm"), 1, confirms=confirm)
        settle_queue(2)

    def prefill(tag: str, n: int) -> None:
        raw.publish_windowed(url, exchange, ROUTING_KEY, _raw_factory(tag), n, 1000)

    def adapter_consume(n: int, prefetch: int, work: Callable[[Any], None] | None = None) -> int:
        count = 0
        for d in port.deliveries(QUEUE, prefetch=prefetch, inactivity_timeout=5.0, max_deliveries=n,
                                 max_seconds=900):
            if work is not None:
                work(d)
            done = port.ack(d)
            if done.error is not None or done.value is not True:
                raise RuntimeError(f"adapter ack: {done}")
            count += 1
        return count

    def sync_row() -> None:
        n = sizes["sync"]
        warm(True)
        # each publish waits for the broker's fsync of a persistent message: see steady()
        _pair_row(sec, "real.publish.sync_confirms", "publish, sync confirms (one at a time)", n, steady(repeats),
                  adapter_publish(n, True),
                  lambda tag: rb.publish(exchange, ROUTING_KEY, _raw_factory(tag), n, confirms=True))
        settle_queue(0)

    def adapter_windowed(n: int, w: int) -> Runner:
        def go(tag: str) -> int:
            # building the messages is on the clock, as the raw side builds each as it publishes
            done = port.publish_many(EXCHANGE, ROUTING_KEY, [_message(tag, i) for i in range(n)],
                                     window=w, mandatory=False, timeout_s=300.0)
            if done.error is not None or not done.value.ok:
                raise RuntimeError(f"adapter publish_many: {done.error or done.value.error}")
            return done.value.acked
        return go

    def window_row(w: int) -> None:
        n = sizes["async"]
        # open the adapter's confirm connection off the clock: the raw side's timing starts
        # once its channel is ready, too
        adapter_windowed(1, w)("warm")
        settle_queue(1)
        _pair_row(sec, f"real.publish.async_w{w}", f"publish, async confirms, window {w}", n, repeats,
                  adapter_windowed(n, w),
                  lambda tag: raw.publish_windowed(url, exchange, ROUTING_KEY, _raw_factory(tag), n, w))
        settle_queue(0)

    def plain_row() -> None:
        n = sizes["plain"]
        warm(False)
        _pair_row(sec, "real.publish.no_confirms", "publish, no confirms", n, repeats,
                  adapter_publish(n, False),
                  lambda tag: rb.publish(exchange, ROUTING_KEY, _raw_factory(tag), n, confirms=False))
        settle_queue(2 * n * repeats)

    def consume_row(p: int) -> None:
        n = sizes["consume"]
        _pair_row(sec, f"real.consume.prefetch{p}", f"consume + manual ack, prefetch {p}", n, repeats,
                  lambda tag: adapter_consume(n, p), lambda tag: rb.consume(queue, n, p),
                  prepare=lambda tag: prefill(tag, n))
        admin.purge(QUEUE)

    def flow_row() -> None:
        n = sizes["flow"]
        prefix = f"mqlab-bench:{ns}:"
        redis_port = RedisPort(make_redis_client(Settings(redis_url=probe.redis_url)), key_prefix=prefix)
        client = raw_redis(probe.redis_url)
        db = SqlDatabase(f"sqlite:///{tmp / 'adapter.sqlite'}")
        ledger = raw.RawLedger(str(tmp / "raw.sqlite"))

        def adapter_work(d: Any) -> None:
            left = redis_port.decr(STOCK)
            began = db.begin()
            if left.error is not None or began.error is not None:
                raise RuntimeError(f"adapter work: {left} {began}")
            tx = began.value
            tx.insert_ledger(d.message.message_id, d.message.key)
            if tx.commit().error is not None:
                raise RuntimeError("adapter commit failed")

        try:
            redis_port.set(STOCK, 10**12)
            # open the adapter's SQLite connection and create its schema off the clock, as the
            # raw side's constructor does (otherwise the first adapter run pays for both)
            db.ledger_count()
            # every operation waits for SQLite's fsync (and the broker's disk): see steady()
            row = _pair_row(sec, FLOW_ROW, FLOW_LABEL, n, steady(repeats),
                            lambda tag: adapter_consume(n, 10, adapter_work),
                            lambda tag: raw.consume_decr_ledger_ack(rb, queue, n, 10, client, prefix + STOCK, ledger),
                            prepare=lambda tag: prefill(tag, n))
            row.note = "; ".join(x for x in (row.note, f"ledger rows written: "
                                             f"{db.ledger_count() + ledger.count():,} (both sides)") if x)
        finally:
            try:
                redis_port.clear()
            finally:
                db.close()
                ledger.close()
                client.close()
        admin.purge(QUEUE)

    try:
        _guard(sec, "real.publish.sync_confirms", "publish, sync confirms (one at a time)", sync_row, recover)
        for w in WINDOWS:
            _guard(sec, f"real.publish.async_w{w}", f"publish, async confirms, window {w}",
                   lambda w=w: window_row(w), recover)
        _guard(sec, "real.publish.no_confirms", "publish, no confirms", plain_row, recover)
        for p in PREFETCHES:
            _guard(sec, f"real.consume.prefetch{p}", f"consume + manual ack, prefetch {p}",
                   lambda p=p: consume_row(p), recover)
        if probe.redis_problem:
            sec.row(FLOW_ROW, FLOW_LABEL).na = probe.redis_problem
        else:
            _guard(sec, FLOW_ROW, FLOW_LABEL, flow_row, recover)
    finally:
        for cleanup in (admin.delete_topology, admin.close, port.close, rb.close):
            try:
                cleanup()
            except Exception:  # noqa: BLE001 - a broker that went away cannot be cleaned up
                pass
