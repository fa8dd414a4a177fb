"""``mqlab worker consumer|relay|loadgen``: one OS process per worker, so it can be killed,
paused or run on another host pointed at the same service URLs.

A worker reads the service URLs from the environment (``MQLAB_AMQP_URL`` ...; never from its
command line, where ``ps`` would show a password), the scenario from ``--config`` (a
``FlashSaleConfig`` as JSON; defaults otherwise), and writes into ``--run-dir``:

* ``<name>.<pid>.jsonl``        its history, one op per line, flushed per op
* ``<name>.<pid>.ready``        once it is connected and about to consume
* ``<name>.<pid>.timings.json`` per-operation service times, on a clean exit
* ``<name>.<pid>.proc.json``    its peak RSS, on a clean exit

It stops on SIGTERM/SIGINT (after the message in hand), after ``--idle-exit-s`` with nothing
to do, or at ``--max-seconds``.  ``--crash-point POINT#N`` makes it SIGKILL itself the N-th
time the shared flow reaches POINT.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.config import FlashSaleConfig
from simulator.errors import InputError, ServiceDown
from simulator.flow import QUEUE, Policy, handle_delivery
from simulator.history import History
from simulator.ports import Ports, drive

from .bootstrap import build_ports, check_namespace, close_ports
from .faults import CrashPoints
from .journal import JsonlSink, Timings, process_history, timed_ports
from .settings import Settings

ROLES = ("consumer", "relay", "loadgen")
POLL_S = 0.2          # how long a consumer waits for a delivery before looking at its flags
STARTUP_S = 20.0      # how long a worker tries to reach the broker before giving up
MAX_BACKOFF_S = 1.0


@dataclass
class WorkerOptions:
    role: str
    name: str
    run_dir: Path
    namespace: str = ""
    config: FlashSaleConfig = field(default_factory=FlashSaleConfig)
    crash_point: tuple[str, int] | None = None
    idle_exit_s: float = 0.0          # 0: only a signal or max_seconds stops it
    max_seconds: float = 600.0
    heartbeat_s: int | None = None
    start_file: Path | None = None    # loadgen: wait (bounded) for this file before the first arrival

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InputError("role", self.role, ", ".join(ROLES))
        check_namespace(self.namespace)
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise InputError("--name", self.name, "a process name such as consumer-1 (no '/')")
        if not 0 < self.max_seconds <= 24 * 3600:
            raise InputError("--max-seconds", self.max_seconds, "0 < seconds <= 86400")
        if not 0 <= self.idle_exit_s <= 3600:
            raise InputError("--idle-exit-s", self.idle_exit_s, "0 <= seconds <= 3600")


def peak_rss_mib() -> float | None:
    """This process's own peak RSS (VmHWM).  Not getrusage's ru_maxrss: Linux carries that over
    from the parent across fork and exec, so a worker would report its launcher's size."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return None


def load_config(path: str | None) -> FlashSaleConfig:
    """The scenario as JSON (``FlashSaleConfig.model_dump``); the defaults without a path."""
    from simulator.config_errors import input_error_from
    import pydantic

    if path is None:
        return FlashSaleConfig()
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError("--config", path, f"a readable JSON file ({type(exc).__name__})") from None
    try:
        return FlashSaleConfig.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise input_error_from(exc) from None


class StopFlag:
    """Set by SIGTERM / SIGINT; checked between messages, so the one in hand is finished."""

    def __init__(self) -> None:
        self.set = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, _signum: int, _frame: Any) -> None:
        self.set = True


@dataclass
class Context:
    opts: WorkerOptions
    policy: Policy
    history: History
    sink: JsonlSink
    ports: Ports          # the raw ports (the worker's own calls)
    flow_ports: Ports     # the same, timed (what the shared flow is given)
    timings: Timings
    stop: StopFlag
    deadline: float

    @property
    def stem(self) -> str:
        return f"{self.opts.name}.{os.getpid()}"

    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline

    def mark_ready(self) -> None:
        (self.opts.run_dir / f"{self.stem}.ready").write_text(str(time.time()), encoding="utf-8")

    def close(self) -> None:
        self.timings.write(self.opts.run_dir / f"{self.stem}.timings.json")
        # the process's memory high-water mark, so a run can show client memory stayed bounded
        (self.opts.run_dir / f"{self.stem}.proc.json").write_text(
            json.dumps({"peak_rss_mib": peak_rss_mib()}), encoding="utf-8")
        close_ports(self.ports)
        self.sink.close()


def open_context(opts: WorkerOptions, settings: Settings | None = None) -> Context:
    settings = settings or Settings.from_env()
    cfg = opts.config
    opts.run_dir.mkdir(parents=True, exist_ok=True)
    history, sink = process_history(opts.run_dir, opts.name)
    faults = None
    if opts.crash_point is not None:
        faults = CrashPoints(opts.crash_point[0], opts.crash_point[1], history)
    ports = build_ports(settings, history=history, process_name=opts.name, namespace=opts.namespace,
                        seed=cfg.seed, gateway_latency_s=cfg.gateway_latency_ms / 1000.0,
                        gateway_failure_rate=cfg.gateway_failure, faults=faults,
                        heartbeat_s=opts.heartbeat_s)
    timings = Timings()
    policy = Policy.from_config(cfg)
    return Context(opts, policy, history, sink, ports, timed_ports(ports, timings), timings,
                   StopFlag(), time.monotonic() + opts.max_seconds)


def connect_first(ctx: Context) -> None:
    """Reach the broker, the database and Redis (bounded), so ``ready`` means ready and the
    first message does not pay for opening connections."""
    limit = time.monotonic() + STARTUP_S
    while True:
        try:
            ctx.ports.broker.connect()
            for done in (ctx.ports.db.login("warm-up"), ctx.ports.redis.get("warm-up")):
                if done.error is not None:
                    raise done.error
            return
        except ServiceDown:
            if time.monotonic() >= limit or ctx.stop.set:
                raise
            time.sleep(0.25)


def run_consumer(ctx: Context) -> int:
    """Consume until stopped: the shared ``handle_delivery`` for each message, timed."""
    opts = ctx.opts
    connect_first(ctx)
    ctx.mark_ready()
    last_work = time.monotonic()
    backoff = 0.2
    while not ctx.stop.set and not ctx.out_of_time():
        try:
            handled = _consume(ctx)
        except BrokerGone:
            # the broker went away (restart, network): reconnect with a bounded backoff
            time.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)
            continue
        if handled:
            last_work, backoff = time.monotonic(), 0.2
        if opts.idle_exit_s and time.monotonic() - last_work >= opts.idle_exit_s:
            break
    return 0


class BrokerGone(Exception):
    """The consuming connection is unusable; the caller reconnects."""


def _consume(ctx: Context) -> int:
    """One consuming session: until the queue is quiet for ``POLL_S``, a stop, or the broker
    going away.  Returns how many deliveries it handled."""
    import pika.exceptions

    cfg = ctx.opts.config
    stream = ctx.ports.broker.deliveries(
        QUEUE, prefetch=cfg.prefetch, auto_ack=cfg.ack == "auto", inactivity_timeout=POLL_S,
        max_seconds=max(0.1, ctx.deadline - time.monotonic()))
    handled = 0
    try:
        while True:
            waited_from = time.perf_counter()
            try:
                delivery = next(stream)
            except StopIteration:
                return handled
            except ServiceDown:
                raise BrokerGone() from None
            except (ValueError, AssertionError, pika.exceptions.AMQPError):
                # pika's BlockingConnection can fail like this on a connection the broker closed
                # under it (seen on stop_app); only the delivery stream is guarded, not the flow
                ctx.ports.broker.close()
                raise BrokerGone() from None
            started, cpu = time.perf_counter(), time.process_time()
            ctx.timings.add("consumer.wait", started - waited_from)
            _handle(ctx, delivery)
            ctx.timings.add("consumer.handle", time.perf_counter() - started)
            ctx.timings.add("consumer.cpu", time.process_time() - cpu)  # this process's own CPU
            handled += 1
            if ctx.stop.set or ctx.out_of_time():
                return handled  # closing the stream closes the channel: unacked messages go back
    finally:
        try:
            stream.close()
        except Exception:  # noqa: BLE001 - the connection may already be gone; nothing to give back
            ctx.ports.broker.close()


def _handle(ctx: Context, delivery: Any) -> None:
    try:
        drive(handle_delivery(ctx.flow_ports, ctx.policy, delivery, ctx.opts.name))
    except ServiceDown as exc:
        if exc.component == "broker":
            raise BrokerGone() from None
        # Redis or the DB is down: give the message back for a later try, as the model does
        time.sleep(ctx.opts.config.reconnect_s)
        if ctx.policy.ack == "manual":
            ctx.ports.broker.nack(delivery, requeue=True)


def run(opts: WorkerOptions, settings: Settings | None = None) -> int:
    """Run one worker process to its end; the exit status."""
    ctx = open_context(opts, settings)
    try:
        if opts.role == "consumer":
            return run_consumer(ctx)
        if opts.role == "relay":
            from .relay import run_relay

            return run_relay(ctx)
        from .loadgen import run_loadgen

        return run_loadgen(ctx)
    finally:
        ctx.close()
