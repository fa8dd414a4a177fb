"""Settings from the environment, URL checks, password masking, the message codec, the
gateway stand-in and the composition root - all without any service."""

from __future__ import annotations

import numpy as np
import pytest

from real_adapters import bootstrap
from real_adapters.codec import message_from_json, message_to_json
from real_adapters.gateway import VoucherGateway
from real_adapters.settings import DEFAULT_AMQP_URL, DEFAULT_DATABASE_URL, Settings, mask
from simulator.errors import InputError
from simulator.history import History
from simulator.messages import Message, submission_body
from simulator.ports import Done


def test_defaults_are_loopback_and_sqlite():
    s = Settings.from_env({})
    assert s.amqp_url == DEFAULT_AMQP_URL and "127.0.0.1" in s.redis_url
    assert s.database_url == DEFAULT_DATABASE_URL and s.database_kind == "sqlite"
    assert not s.fake_redis


def test_environment_overrides():
    s = Settings.from_env({"MQLAB_AMQP_URL": "amqps://u:p@mq.local:5671/vh",
                           "MQLAB_REDIS_URL": "fake://", "MQLAB_DATABASE_URL": "postgresql://postgres@db/test",
                           "MQLAB_CONNECT_TIMEOUT_S": "0.5"})
    assert s.fake_redis and s.database_kind == "postgresql" and s.connect_timeout_s == 0.5
    assert Settings.from_env({"MQLAB_OFFLINE": "1"}).fake_redis


@pytest.mark.parametrize("env, field", [
    ({"MQLAB_AMQP_URL": "http://guest:guest@127.0.0.1/"}, "MQLAB_AMQP_URL"),
    ({"MQLAB_AMQP_URL": "amqp://guest:guest@127.0.0.1:99999/"}, "MQLAB_AMQP_URL"),
    ({"MQLAB_AMQP_URL": "amqp:///%2F"}, "MQLAB_AMQP_URL"),
    ({"MQLAB_REDIS_URL": "redis://127.0.0.1:6379/zero"}, "MQLAB_REDIS_URL"),
    ({"MQLAB_REDIS_URL": "memcached://127.0.0.1"}, "MQLAB_REDIS_URL"),
    ({"MQLAB_DATABASE_URL": "sqlite://relative.db"}, "MQLAB_DATABASE_URL"),
    ({"MQLAB_DATABASE_URL": "mysql://root:pw@127.0.0.1/db"}, "MQLAB_DATABASE_URL"),
    ({"MQLAB_DATABASE_URL": "postgresql://127.0.0.1"}, "MQLAB_DATABASE_URL"),
    ({"MQLAB_OFFLINE": "perhaps"}, "MQLAB_OFFLINE"),
    ({"MQLAB_CONNECT_TIMEOUT_S": "-1"}, "MQLAB_CONNECT_TIMEOUT_S"),
])
def test_bad_values_name_the_variable(env, field):
    with pytest.raises(InputError) as err:
        Settings.from_env(env)
    assert err.value.field == field
    assert "pw" not in str(err.value) and "guest:guest" not in str(err.value)


def test_mask_hides_passwords_only():
    assert mask("amqp://guest:s3cret@h:5672/%2F") == "amqp://guest:***@h:5672/%2F"
    assert mask("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert mask("postgresql://u@h/db?password=s3cret&sslmode=off") == \
        "postgresql://u@h/db?password=***&sslmode=off"
    assert mask("sqlite:////tmp/x.sqlite") == "sqlite:////tmp/x.sqlite"
    assert "s3cret" not in mask("amqp://u:s3cret@[::1")


def test_repr_never_shows_a_password():
    s = Settings(amqp_url="amqp://u:s3cret@h/%2F", redis_url="redis://:s3cret@h/0",
                 database_url="postgresql://u:s3cret@h/db")
    assert "s3cret" not in repr(s) and "s3cret" not in str(s)


def test_outbox_payload_round_trips_every_field():
    m = Message("m1", "c1", "rk", submission_body("s", "u", seq=3), headers={"a": [1, 2]},
                persistent=False, priority=9, expiration=1.5, timestamp=12.25, exchange="gift")
    assert message_from_json(message_to_json(m)) == m


def test_gateway_fails_at_its_rate_and_is_seeded():
    def outcomes(seed: int) -> list[bool]:
        gw = VoucherGateway(np.random.default_rng(seed), failure_rate=0.3)
        return [gw.send("u", str(i)).value for i in range(2000)]

    a, b = outcomes(5), outcomes(5)
    assert a == b
    assert 0.25 < 1 - sum(a) / len(a) < 0.35
    slept: list[float] = []
    gw = VoucherGateway(np.random.default_rng(0), latency_s=0.02, sleep=slept.append)
    assert gw.send("u", "v") == Done(True) and slept == [0.02]
    with pytest.raises(InputError):
        VoucherGateway(np.random.default_rng(0), failure_rate=1.5)


def test_build_ports_offline_uses_fakeredis_and_sqlite(tmp_path):
    settings = Settings(redis_url="fake://", database_url=f"sqlite:///{tmp_path / 'x.sqlite'}")
    ports = bootstrap.build_ports(settings, history=History(lambda: 0.0), process_name="api",
                                  namespace="unit")
    try:
        assert type(ports.redis.client).__module__.startswith("fakeredis")
        assert ports.redis.check_and_decr("stock:gift") == Done(-1)
        assert ports.db.kind == "sqlite" and ports.db.prefix == "unit_"
        assert ports.broker.topology.physical("gift") == "unit.gift"
        assert not ports.broker.connected  # nothing connects until used
        assert ports.clock.sleep(0) == Done(None)
    finally:
        bootstrap.close_ports(ports)


def test_namespace_is_validated():
    with pytest.raises(InputError):
        bootstrap.build_ports(Settings(redis_url="fake://"), history=History(lambda: 0.0),
                              process_name="api", namespace="Bad Name!")
