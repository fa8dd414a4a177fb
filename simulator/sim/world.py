"""The SimPy world of the flash sale: builds the components, runs the shared flow, injects
faults, and ends with the Jepsen-style final drain.

This is the composition root of the simulated world (the real world has its own in
``real_adapters.bootstrap``).  It owns no business logic: every business step is in
``simulator.flow``.
"""

from __future__ import annotations

from typing import Any

import simpy

from simulator.checker import Checker
from simulator.config import FlashSaleConfig
from simulator.errors import ServiceDown
from simulator.flow import (DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, EXCHANGE, QUEUE, ROUTING_KEY,
                            STOCK_KEY, Policy, accept, publish, relay_once)
from simulator.history import History
from simulator.messages import Message, submission_body
from simulator.ports import Ports, hold_key
from simulator.rng import Streams
from simulator.sim.adapters import BrokerPort, DbSession, SimClock
from simulator.sim.broker import Broker
from simulator.sim.consumers import Consumer
from simulator.sim.crashpoints import CrashPoints
from simulator.sim.database import Database
from simulator.sim.gateway import VoucherGateway
from simulator.sim.loadgen import arrival_times
from simulator.sim.redis import Redis
from simulator.sim.servers import ApiServer, LoadBalancer
from simulator.stats import Summary, TimeSeries

MONITOR_INTERVAL = 0.25  # seconds of simulated time between "are we done?" checks
IDLE_LIMIT = 120.0       # stop when nothing has moved for this long after the last arrival


class World:
    def __init__(self, config: FlashSaleConfig, *, sample_interval: float = 0.5):
        self.config = cfg = config
        self.env = env = simpy.Environment()
        self.streams = Streams(cfg.seed)
        self.policy = Policy.from_config(cfg)
        self.checker = Checker()
        self.history = History(lambda: env.now, keep=cfg.keep_history, sinks=[self.checker])
        self.finished = False
        self.response = Summary()
        self.time_to_voucher = Summary()
        self.statuses: dict[int, int] = {}
        self.timeouts = 0
        self._submitted_at: dict[str, float] = {}
        self.history.add_sink(self._measure)
        self.clients_done = 0
        self.stop = env.event()

        self.broker = Broker(env, self.rng("broker"), fsync_interval=cfg.fsync_interval_s,
                             history=self.history)
        self.redis = Redis(env, self.rng("redis"), persistence=cfg.redis_persistence,
                           history=self.history)
        self.db = Database(env, self.rng("db"), pool_size=cfg.db_pool,
                           query_time=cfg.db_query_ms / 1000.0, stock=cfg.offered_stock,
                           history=self.history)
        self.gateway = VoucherGateway(env, self.rng("gateway"), latency=cfg.gateway_latency_ms / 1000.0,
                                      rate_limit=cfg.gateway_rate_limit,
                                      failure_probability=cfg.gateway_failure, history=self.history)
        self._declare_topology()
        self.redis.data_set(STOCK_KEY, cfg.offered_stock)
        if cfg.event_ttl_s is not None:
            self.redis.expire_now(STOCK_KEY, cfg.event_ttl_s)
        self.history.record("ok", "stock-init", "world", {"stock": cfg.stock,
                                                          "offered": cfg.offered_stock})

        cpu_rng = self.rng("api.cpu")
        mean_cpu = cfg.request_cpu_ms / 1000.0
        self.servers = [ApiServer(env, f"server-{i + 1}", cores=cfg.cores,
                                  threads=cfg.threads_per_server,
                                  cpu_time=lambda: float(cpu_rng.exponential(mean_cpu)))
                        for i in range(cfg.servers)]
        self.balancer = LoadBalancer(self.servers, cfg.balancer)
        point_faults = [f for f in cfg.faults if f.point is not None]
        self.crash_points = CrashPoints(self, point_faults) if point_faults else None
        # one set of ports per server, so a server's death rolls back only its own transactions
        self.server_ports = {server.name: self.make_ports(server.name) for server in self.servers}
        self.consumers = [Consumer(self, f"consumer-{i + 1}", self.make_ports(f"consumer-{i + 1}"))
                          for i in range(cfg.consumers)] if cfg.mode == "async" else []
        outbox = cfg.write_pattern == "outbox"
        self.relay_ports = self.make_ports("relay") if outbox else None
        self.relay = env.process(self._relay()) if outbox else None
        self._resent: set[str] = set()  # rows the reconciler already re-sent (once each)
        if cfg.reconcile:
            self.reconciler_ports = self.make_ports("reconciler")
            env.process(self._reconcile())
        self.arrivals_done = False
        env.process(self._arrivals())
        for fault in cfg.faults:
            if fault.at is not None:
                env.process(self._fault(fault))
        self.series = TimeSeries(env, sample_interval)
        self.series.track("queue_depth", lambda: self.broker.depth(QUEUE) if self.broker.up else 0)
        self.series.track("unacked", lambda: self.broker.unacked(QUEUE) if self.broker.up else 0)
        self.series.track("redis_stock", self._stock_level)
        self.series.track("vouchers", lambda: self.checker_granted)
        self.checker_granted = 0
        # unrelated member logins: on the event's database ("shared") or on their own
        # ("dedicated", the seed's separate event table); with login_rate 0 nothing runs
        self.login_ms = Summary()
        self.login_errors = 0
        self.login_db = self.db
        if cfg.event_db == "dedicated":
            self.login_db = Database(env, self.rng("db.login"), name="login-db", pool_size=cfg.db_pool,
                                     query_time=cfg.db_query_ms / 1000.0)
        if cfg.login_rate > 0:
            env.process(self._logins())

    # ------------------------------------------------------------------ building blocks
    def rng(self, name: str):
        return self.streams[name]

    def make_ports(self, name: str) -> Ports:
        cfg = self.config
        broker = BrokerPort(self.env, self.broker, ack_loss=cfg.ack_loss, rng=self.rng(f"{name}.ack"))
        return Ports(broker=broker, redis=self.redis, db=DbSession(self.db), gateway=self.gateway,
                     clock=SimClock(self.env), history=self.history, faults=self.crash_points)

    def _declare_topology(self) -> None:
        cfg = self.config
        b = self.broker
        b.declare_exchange(EXCHANGE, "direct", durable=cfg.durable)
        b.declare_exchange(DEAD_LETTER_EXCHANGE, "fanout", durable=cfg.durable)
        b.declare_queue(DEAD_LETTER_QUEUE, durable=cfg.durable)
        b.bind(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE)
        b.declare_queue(QUEUE, durable=cfg.durable,
                        arguments={"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE})
        b.bind(QUEUE, EXCHANGE, ROUTING_KEY)

    def _stock_level(self) -> float:
        value = self.redis.peek(STOCK_KEY)
        return float(value) if value is not None else float("nan")

    def _measure(self, op: Any) -> None:
        """History sink for the latency figures (kept as streaming summaries).

        A start time is kept only while its submission is in flight, so the map stays as
        small as the work in progress.
        """
        f, started = op.f, self._submitted_at
        if f == "submit":
            if op.type == "invoke":
                started[op.msg_id] = op.time
                return
            start = started.get(op.msg_id)
            if start is not None:
                self.response.add((op.time - start) * 1000.0)
            if self.config.mode == "sync" or op.type != "ok":
                started.pop(op.msg_id, None)
        elif f == "grant" and op.type == "ok":
            self.checker_granted += 1
            start = started.get(op.msg_id)
            if start is not None:
                self.time_to_voucher.add(op.time - start)
        elif f == "dequeue" and self.config.mode == "async":
            started.pop(op.msg_id, None)

    # ------------------------------------------------------------------ processes
    def _arrivals(self):
        cfg = self.config
        rng = self.rng("arrivals")
        invalid_rng = self.rng("payloads")
        last = 0.0
        for i, t in enumerate(arrival_times(rng, cfg.submissions, profile=cfg.arrival_profile,
                                            rate=cfg.arrival_rate, decay_s=cfg.spike_decay_s,
                                            steps=cfg.piecewise)):
            yield self.env.timeout(t - last)
            last = t
            mid = f"m{i + 1}"
            body = submission_body(mid, f"user-{i + 1}")
            if cfg.invalid_fraction and invalid_rng.random() < cfg.invalid_fraction:
                body = {**body, "schema_version": 2}  # a producer that drifted to a new schema
            msg = Message(message_id=mid, correlation_id=f"c{i + 1}", routing_key=ROUTING_KEY,
                          body=body, persistent=cfg.persistent, timestamp=t)
            self.env.process(self._client(msg))
        self.arrivals_done = True
        self.env.process(self._monitor())

    def _client(self, msg: Message):
        rec = self.history.record
        rec("invoke", "submit", "client", {"user": msg.key}, msg_id=msg.message_id,
            corr_id=msg.correlation_id)
        server = self.balancer.pick()
        if server is None:
            status = 503
        else:
            ports = self.server_ports[server.name]
            request = server.handle(lambda: accept(ports, self.policy, msg, server.name))
            timer = self.env.timeout(self.config.request_timeout_s)
            yield request | timer
            status = request.value if request.triggered and request.ok else None
        if status is None:
            self.timeouts += 1
            rec("info", "submit", "client", {"status": "timeout"}, msg_id=msg.message_id,
                corr_id=msg.correlation_id)
        else:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            rec("ok" if status == 200 else "fail", "submit", "client", {"status": status},
                msg_id=msg.message_id, corr_id=msg.correlation_id)
        self.clients_done += 1

    def _logins(self):
        """Poisson logins, one query each; they are not part of the event, so not in the history."""
        rng = self.rng("logins")
        mean_gap = 1.0 / self.config.login_rate
        n = 0
        while not self.finished:
            yield self.env.timeout(float(rng.exponential(mean_gap)))
            n += 1
            started = self.env.now
            self.login_db.login(f"member-{n}").callbacks.append(
                lambda event, started=started: self._logged_in(event, started))

    def _logged_in(self, event: Any, started: float) -> None:
        if event.ok:
            self.login_ms.add((self.env.now - started) * 1000.0)
        else:
            event.defused = True  # the DB was down: a failed login, not a crash of the world
            self.login_errors += 1

    def _relay(self):
        try:
            while not self.finished:
                batch = self.db.outbox_unpublished(100) if self.db.up else []
                if not batch:
                    yield self.env.timeout(0.05)
                    continue
                try:
                    yield from relay_once(self.relay_ports, self.policy, batch)
                except ServiceDown:
                    yield self.env.timeout(0.5)  # DB or broker down: rows stay, try again later
        except simpy.Interrupt:
            return  # killed; a restart starts a fresh relay that re-reads the outbox

    RECONCILE_EVERY = 2.0  # seconds between reconciliation passes
    RECONCILE_GRACE = 2.0  # a saved row younger than this may still be on its way

    def _reconcile(self):
        """The double-check batch: re-send what was saved but never processed, and record
        (backfill) what was processed but never saved."""
        ports = self.reconciler_ports
        while not self.finished:
            yield self.env.timeout(self.RECONCILE_EVERY)
            if not (self.db.up and self.broker.up):
                continue
            for msg in self.db.saved_unprocessed(older_than=self.env.now - self.RECONCILE_GRACE):
                # once per row: a row that stays unprocessed after its re-send (say an
                # invalid payload) would otherwise be re-sent on every pass, for ever
                if msg.message_id not in self._resent and (
                        yield from publish(ports, self.policy, msg, "reconciler")):
                    self._resent.add(msg.message_id)
            for msg_id, corr_id, user in self.db.processed_unsaved():
                self.db.backfill_submission(msg_id, user)
                self.history.record("ok", "save", "reconciler", {"backfill": True},
                                    msg_id=msg_id, corr_id=corr_id)

    def _fault(self, fault: Any):
        yield self.env.timeout(fault.at)
        self.crash(fault.target, fault.restart_after)
        if fault.restart_after is not None and not fault.target.startswith("consumer-"):
            yield self.env.timeout(fault.restart_after)
            self.restart(fault.target)

    def crash(self, target: str, restart_after: float | None = None) -> None:
        if target.startswith("consumer-"):
            index = int(target.split("-")[1]) - 1
            if 0 <= index < len(self.consumers):
                self.consumers[index].crash(restart_after)
            return
        if target in ("producer", ) or target.startswith("server-"):
            index = 0 if target == "producer" else int(target.split("-")[1]) - 1
            if 0 <= index < len(self.servers):
                self.servers[index].crash(spare=self.env.active_process)
                self.server_ports[self.servers[index].name].db.abort_all()
                self.history.record("info", "crash", self.servers[index].name, component="server")
            return
        if target == "relay":
            self._crash_relay()
            return
        self._stores()[target].crash()

    def _stores(self) -> dict[str, Any]:
        return {"broker": self.broker, "redis": self.redis, "db": self.db}

    def _crash_relay(self) -> None:
        if self.relay is not None and self.relay.is_alive:
            self.history.record("info", "crash", "relay", component="relay")
            if self.relay is self.env.active_process:
                return  # a crash point: the relay's own wait fails instead
            if self.relay.target is not None:
                self.relay.target.defused = True
            self.relay.interrupt()

    def restart(self, target: str) -> None:
        if target in ("producer",) or target.startswith("server-"):
            index = 0 if target == "producer" else int(target.split("-")[1]) - 1
            if 0 <= index < len(self.servers):
                self.servers[index].restart()
                self.history.record("info", "restart", self.servers[index].name, component="server")
            return
        if target == "relay":
            if self.relay is not None and self.relay.is_alive:
                return  # an earlier restart already brought it back: never two relays
            self.history.record("info", "restart", "relay", component="relay")
            self.relay = self.env.process(self._relay())
            return
        self._stores()[target].restart()
        if target == "broker":
            self._declare_topology()  # clients redeclare what they use; transient queues come back empty
        if target == "redis" and self.redis.peek(STOCK_KEY) is None:
            self._reseed()

    def _reseed(self) -> None:
        """Rebuild the Redis stock key after it was lost: from the DB ledger, or naively to full."""
        cfg = self.config
        if cfg.reseed == "ledger":
            stock = cfg.offered_stock - self.db.ledger_count()
        else:
            stock = cfg.offered_stock
        self.redis.data_set(STOCK_KEY, max(stock, 0))
        if cfg.reseed == "ledger" and cfg.stock_strategy == "redis-lua":
            # the holds went with the key: give each granted message its hold back, or its
            # redelivery would reserve a second unit the ledger already counted
            for msg_id in self.db.ledger():
                self.redis.data_set(hold_key(STOCK_KEY, msg_id), "reseed")
        self.history.record("info", "reseed", "world", {"stock": max(stock, 0), "from": cfg.reseed})

    def _quiet(self) -> bool:
        if not self.broker.up:
            return False
        if self.broker.depth(QUEUE) or self.broker.unacked(QUEUE) or self.broker.on_the_wire(QUEUE):
            return False
        if not all(c.idle for c in self.consumers):
            return False  # auto-ack deliveries sit in consumer buffers, invisible to the broker
        if self.config.write_pattern == "outbox" and self.db.outbox_unpublished(1):
            return False
        if self.config.reconcile and self._reconcile_pending():
            return False
        return True

    def _reconcile_pending(self) -> bool:
        """Work the next reconciliation pass would do: without this the run could end before
        the batch ever ran, and the orphans it exists to repair would stay orphans."""
        if any(m.message_id not in self._resent for m in self.db.saved_unprocessed(float("inf"))):
            return True
        return bool(self.db.processed_unsaved())

    def _monitor(self):
        cfg = self.config
        idle_since = self.env.now
        last_count = self.history.count
        while self.env.now < cfg.max_sim_s:
            yield self.env.timeout(MONITOR_INTERVAL)
            if self.clients_done >= cfg.submissions and self._quiet():
                break
            if self.history.count != last_count:
                last_count, idle_since = self.history.count, self.env.now
            elif self.env.now - idle_since > IDLE_LIMIT:
                break
        self.finished = True
        self.stop.succeed()

    def final_drain(self) -> None:
        """Jepsen's final read: heal, close every channel, take what is left in the queues."""
        if not self.broker.up:
            self.broker.restart()
            self._declare_topology()
        for consumer in self.consumers:
            if consumer.channel is not None:
                consumer.channel.close()
        for msg in self.broker.drain(QUEUE):
            self.history.record("ok", "dequeue", "drain", {"outcome": "drained"},
                                msg_id=msg.message_id, corr_id=msg.correlation_id)
        # the dead-letter queue is where the schema gate and expiry put messages on purpose;
        # its contents are shown, not counted as delivered work
        for msg in self.broker.drain(DEAD_LETTER_QUEUE):
            self.history.record("info", "dead-letter", "drain", None,
                                msg_id=msg.message_id, corr_id=msg.correlation_id)

    def run(self) -> None:
        self.env.run(until=self.stop)
        self.final_drain()
