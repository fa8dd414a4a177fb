"""One fixture per port, parametrized over its implementations: the same test body runs against
each (the fakeredis ``test/conftest.py`` pattern).  Real services are cleaned up after each test:
keys under a random prefix, tables under a random prefix, queues under a random namespace.
"""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from real_adapters.bootstrap import make_redis_client
from real_adapters.broker import BrokerPort
from real_adapters.redis_store import RedisPort
from real_adapters.settings import Settings
from real_adapters.sql import SqlDatabase


@pytest.fixture(params=[pytest.param("fake", id="fakeredis"),
                        pytest.param("real", id="redis", marks=pytest.mark.real)])
def redis_port(request: pytest.FixtureRequest) -> Iterator[RedisPort]:
    if request.param == "fake":
        import fakeredis

        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        port = RedisPort(client, key_prefix="t:")
        yield port
        client.close()
        return
    url = request.getfixturevalue("redis_url")
    client = make_redis_client(Settings(redis_url=url))
    port = RedisPort(client, key_prefix=f"mqlab-test:{uuid.uuid4().hex}:")
    yield port
    port.clear()
    client.close()


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"),
                        pytest.param("postgresql", id="postgresql", marks=pytest.mark.real)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'contract.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def make_db(db_url: str, namespace: str) -> Iterator:
    """Open ``SqlDatabase`` connections on one isolated schema; every table is dropped after."""
    opened: list[SqlDatabase] = []

    def make() -> SqlDatabase:
        db = SqlDatabase(db_url, table_prefix=f"{namespace}_")
        opened.append(db)
        return db

    yield make
    for db in opened:
        db.abort_open()
        db.close()
    cleaner = SqlDatabase(db_url, table_prefix=f"{namespace}_", create=False)
    cleaner.drop()
    cleaner.close()


@pytest.fixture
def db(make_db) -> SqlDatabase:
    return make_db()


@pytest.fixture
def broker(amqp_url: str, namespace: str) -> Iterator[BrokerPort]:
    port = BrokerPort(amqp_url, namespace=namespace, process_name=f"contract-{namespace}")
    port.declare_topology()
    yield port
    cleaner = BrokerPort(amqp_url, namespace=namespace, process_name=f"cleanup-{namespace}")
    try:
        cleaner.delete_topology()
    finally:
        cleaner.close()
        port.close()
