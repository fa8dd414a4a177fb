"""Is a real service there?  One short connection attempt each to RabbitMQ, Redis and PostgreSQL.

Used by the test suite's service fixtures (tests/conftest.py) and by lesson 10's ``detect()``.
A probe returns nothing when the service answered and raises whatever the client library
raised when it did not; the client library is imported only when its probe runs.
"""

from __future__ import annotations

import os
from typing import Callable

__all__ = ["PROBE_TIMEOUT_S", "DEFAULT_PG_URL", "PROBES", "pg_url", "probe_rabbitmq", "probe_redis",
           "probe_postgresql"]

PROBE_TIMEOUT_S = 1.5
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def pg_url() -> str:
    """The PostgreSQL to try: ``MQLAB_PG_URL``, else ``MQLAB_DATABASE_URL`` when it is a PostgreSQL
    URL, else ``DEFAULT_PG_URL``."""
    if os.environ.get("MQLAB_PG_URL"):
        return os.environ["MQLAB_PG_URL"]
    db = os.environ.get("MQLAB_DATABASE_URL", "")
    return db if db.startswith(("postgresql:", "postgres:")) else DEFAULT_PG_URL


def probe_rabbitmq(url: str) -> None:
    import pika

    params = pika.URLParameters(url)
    params.connection_attempts, params.socket_timeout = 1, PROBE_TIMEOUT_S
    params.stack_timeout = PROBE_TIMEOUT_S * 2
    pika.BlockingConnection(params).close()


def probe_redis(url: str) -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT_S, socket_timeout=PROBE_TIMEOUT_S,
                                  retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    finally:
        client.close()


def probe_postgresql(url: str) -> None:
    import psycopg

    psycopg.connect(url, connect_timeout=2).close()


PROBES: dict[str, Callable[[str], None]] = {
    "rabbitmq": probe_rabbitmq, "redis": probe_redis, "postgresql": probe_postgresql}
