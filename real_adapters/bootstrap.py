"""The real world's one composition root: settings in, ``simulator.ports.Ports`` out.

Here and only here are the concrete adapters named: pika for the broker, redis-py (or the
in-process fakeredis when ``redis_url="fake://"`` or ``offline``) for Redis, SQLite or
PostgreSQL by the database URL, the gateway stand-in, and a wall clock.

``namespace`` isolates a run on shared servers: it prefixes the AMQP names
(``<ns>.gift``), the Redis keys (``<ns>:stock:gift``) and the SQL tables (``<ns>_ledger``).
Nothing connects until a port is used, except that ``declare=True`` declares the broker's
topology at once.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache
from typing import Any

from simulator.errors import InputError
from simulator.history import History
from simulator.ports import Done, Ports
from simulator.rng import stream

from .broker import BrokerPort
from .gateway import VoucherGateway
from .redis_store import RedisPort
from .settings import Settings
from .sql import SqlDatabase

_NAMESPACE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
MAX_SLEEP_S = 60.0


class WallClock:
    """``now()`` is wall-clock seconds (comparable across processes); ``sleep`` -> ``Done``."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> Done:
        # the flow only sleeps for short backoffs; a long or negative one is a bug upstream
        if not 0 <= seconds <= MAX_SLEEP_S:
            raise ValueError(f"sleep: {seconds!r} s is outside 0..{MAX_SLEEP_S}")
        time.sleep(seconds)
        return Done(None)


@lru_cache(maxsize=1)
def fake_redis_server() -> Any:
    """One in-process fake server, so every port built in this process sees the same data."""
    import fakeredis

    return fakeredis.FakeServer()


def make_redis_client(settings: Settings) -> Any:
    if settings.fake_redis:
        import fakeredis

        return fakeredis.FakeRedis(server=fake_redis_server())
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No silent retries (redis-py 8 retries 10 times by default): a DECR retried after its reply
    # was lost can apply twice, and a down server should be reported at once.  The port answers
    # ServiceDown and the flow decides; the next command opens a fresh connection.
    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=settings.connect_timeout_s,
                                socket_timeout=max(5.0, settings.connect_timeout_s),
                                retry=Retry(NoBackoff(), 0))


def check_namespace(namespace: str) -> str:
    if namespace and not _NAMESPACE.match(namespace):
        raise InputError("namespace", namespace, "a lower-case letter, then letters, digits or _ (<= 31)")
    return namespace


def build_ports(settings: Settings, *, history: History, process_name: str, namespace: str = "",
                redis_client: Any = None, seed: int = 0, gateway_latency_s: float = 0.0,
                gateway_failure_rate: float = 0.0, faults: Any = None, declare: bool = False,
                heartbeat_s: int | None = None) -> Ports:
    """The ports one process (API, consumer, relay) uses, each with its own connections.

    ``redis_client`` overrides the client the settings would make (a test's fakeredis).
    ``seed`` seeds the gateway's failure draws, per ``process_name``.
    """
    check_namespace(namespace)
    broker = BrokerPort(settings.amqp_url, namespace=namespace, process_name=process_name,
                        connect_timeout_s=settings.connect_timeout_s, heartbeat_s=heartbeat_s)
    client = redis_client if redis_client is not None else make_redis_client(settings)
    redis_port = RedisPort(client, key_prefix=f"{namespace}:" if namespace else "")
    db = SqlDatabase(settings.database_url, table_prefix=f"{namespace}_" if namespace else "",
                     connect_timeout_s=settings.connect_timeout_s)
    gateway = VoucherGateway(stream(seed, f"gateway.{process_name}"), latency_s=gateway_latency_s,
                             failure_rate=gateway_failure_rate)
    if declare:
        broker.declare_topology()
    return Ports(broker=broker, redis=redis_port, db=db, gateway=gateway, clock=WallClock(),
                 history=history, faults=faults)


def close_ports(ports: Ports) -> None:
    """Close the connections one ``build_ports`` opened (errors while closing are ignored)."""
    for closer in (getattr(ports.broker, "close", None), getattr(ports.db, "close", None),
                   getattr(ports.redis, "close", None)):
        if closer is None:
            continue
        try:
            closer()
        except Exception:  # noqa: BLE001 - a port whose service is down cannot close cleanly
            pass


def wall_history(*, keep: int | None = None, sinks: tuple = ()) -> History:
    """A history stamped with wall-clock seconds (the real world's clock)."""
    return History(time.time, keep=keep, sinks=sinks)


__all__ = ["WallClock", "build_ports", "close_ports", "wall_history", "make_redis_client",
           "fake_redis_server", "check_namespace"]
