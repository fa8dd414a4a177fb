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

import pytest

from real_adapters.probe import PROBES, pg_url

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
                PROBES[name](url)
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
