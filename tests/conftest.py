"""Shared fixtures: find the real services, or skip saying how to start them.

With ``MQLAB_REQUIRE_SERVICES=1`` (CI) a missing service FAILS the tests that need it instead.
Each probe uses a short connect timeout and runs once per session.  Nothing here connects
unless a test asks for a service fixture.

URLs: ``MQLAB_AMQP_URL``, ``MQLAB_REDIS_URL`` (see ``real_adapters.settings``); PostgreSQL
tests use ``MQLAB_PG_URL``, else ``MQLAB_DATABASE_URL`` when it is a PostgreSQL URL, else
postgresql://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import os
import uuid
from typing import Callable

import pytest

PROBE_TIMEOUT_S = 1.5
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

HOW_TO_START = {
    "rabbitmq": "start it with `rabbitmq-server -detached` (or `service rabbitmq-server start`), "
                "or point MQLAB_AMQP_URL at a running broker",
    "redis": "start it with `redis-server --daemonize yes --save '' --appendonly no`, "
             "or point MQLAB_REDIS_URL at a running server",
    "postgresql": "start it with `pg_ctlcluster 15 main start` (or `service postgresql start`), "
                  "or point MQLAB_PG_URL at a running server",
}


def require_services() -> bool:
    return os.environ.get("MQLAB_REQUIRE_SERVICES", "").strip() == "1"


def _settings():
    from real_adapters.settings import Settings

    return Settings.from_env()


def pg_url() -> str:
    if os.environ.get("MQLAB_PG_URL"):
        return os.environ["MQLAB_PG_URL"]
    db = os.environ.get("MQLAB_DATABASE_URL", "")
    return db if db.startswith(("postgresql:", "postgres:")) else DEFAULT_PG_URL


def _probe_rabbitmq(url: str) -> None:
    import pika

    params = pika.URLParameters(url)
    params.connection_attempts, params.socket_timeout = 1, PROBE_TIMEOUT_S
    params.stack_timeout = PROBE_TIMEOUT_S * 2
    pika.BlockingConnection(params).close()


def _probe_redis(url: str) -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT_S, socket_timeout=PROBE_TIMEOUT_S,
                                  retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    finally:
        client.close()


def _probe_postgresql(url: str) -> None:
    import psycopg

    psycopg.connect(url, connect_timeout=2).close()


_PROBES: dict[str, Callable[[str], None]] = {
    "rabbitmq": _probe_rabbitmq, "redis": _probe_redis, "postgresql": _probe_postgresql}
_seen: dict[str, str | None] = {}


def service_url(name: str) -> str:
    """The URL of a reachable service; otherwise skip (or fail under MQLAB_REQUIRE_SERVICES=1)."""
    from real_adapters.settings import mask

    settings = _settings()
    url = {"rabbitmq": settings.amqp_url, "redis": settings.redis_url, "postgresql": pg_url()}[name]
    if name == "redis" and settings.fake_redis:
        problem: str | None = "MQLAB_REDIS_URL/MQLAB_OFFLINE ask for fakeredis, not a real server"
    else:
        if url not in _seen:
            try:
                _PROBES[name](url)
                _seen[url] = None
            except Exception as exc:  # noqa: BLE001 - any failure to connect means "not there"
                _seen[url] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        problem = _seen[url]
    if problem is not None:
        message = f"{name} not reachable at {mask(url)} ({problem}); {HOW_TO_START[name]}"
        if require_services():
            pytest.fail(message + " [MQLAB_REQUIRE_SERVICES=1]", pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture
def amqp_url() -> str:
    return service_url("rabbitmq")


@pytest.fixture
def redis_url() -> str:
    return service_url("redis")


@pytest.fixture
def postgres_url() -> str:
    return service_url("postgresql")


@pytest.fixture
def namespace() -> str:
    """A name no other test run uses: prefix of queues, exchanges, keys and tables."""
    return "t" + uuid.uuid4().hex[:12]
