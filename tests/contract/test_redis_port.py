"""The Redis port's contract, one body for fakeredis and a real Redis."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from real_adapters.bootstrap import make_redis_client
from real_adapters.redis_store import RedisPort
from real_adapters.settings import Settings
from simulator.errors import ServiceDown
from simulator.ports import Done


def value(done: Done):
    assert isinstance(done, Done), done
    assert done.error is None, done.error
    return done.value


def test_decr_on_a_missing_key_goes_to_minus_one(redis_port: RedisPort):
    # Redis treats a missing key as 0: a bare DECR "grants" from nothing, which is the lesson
    assert value(redis_port.decr("stock")) == -1
    assert value(redis_port.get("stock")) == -1
    assert value(redis_port.incr("stock")) == 0


def test_check_and_decr_never_goes_below_zero(redis_port: RedisPort):
    assert value(redis_port.check_and_decr("stock")) == -1
    assert value(redis_port.get("stock")) is None  # the script does not create the key
    value(redis_port.set("stock", 3))
    assert [value(redis_port.check_and_decr("stock")) for _ in range(5)] == [2, 1, 0, -1, -1]
    assert value(redis_port.get("stock")) == 0


def test_check_and_decr_refuses_a_negative_or_non_numeric_value(redis_port: RedisPort):
    value(redis_port.set("stock", -4))
    assert value(redis_port.check_and_decr("stock")) == -1
    assert value(redis_port.get("stock")) == -4
    value(redis_port.set("stock", "lots"))
    assert value(redis_port.check_and_decr("stock")) == -1
    assert value(redis_port.get("stock")) == "lots"


def test_reserve_takes_one_unit_per_message_and_a_repeat_takes_the_hold_over(redis_port: RedisPort):
    value(redis_port.set("stock", 2))
    assert value(redis_port.reserve("stock", "m1", "consumer-1")) == (1, True)
    # the same message again (a redelivery after a crash): no second unit
    assert value(redis_port.reserve("stock", "m1", "consumer-2")) == (1, False)
    assert value(redis_port.get("stock")) == 1
    assert value(redis_port.get("stock:hold:m1")) == "consumer-2"  # taken over
    assert value(redis_port.reserve("stock", "m2", "consumer-1")) == (0, True)
    assert value(redis_port.reserve("stock", "m3", "consumer-1")) == (-1, False)
    assert value(redis_port.get("stock:hold:m3")) is None  # a refusal holds nothing
    assert value(redis_port.reserve("stock", "m2", "consumer-3")) == (0, False)


def test_release_gives_the_unit_back_once_and_only_to_the_holds_owner(redis_port: RedisPort):
    value(redis_port.set("stock", 5))
    value(redis_port.reserve("stock", "m1", "consumer-1"))
    value(redis_port.reserve("stock", "m1", "consumer-2"))  # a concurrent copy took it over
    assert value(redis_port.release("stock", "m1", "consumer-1")) is False
    assert value(redis_port.get("stock")) == 4  # the copy may grant with it: not given back
    assert value(redis_port.release("stock", "m1", "consumer-2")) is True
    assert value(redis_port.get("stock")) == 5 and value(redis_port.get("stock:hold:m1")) is None
    assert value(redis_port.release("stock", "m1", "consumer-2")) is False  # twice gives once
    assert value(redis_port.get("stock")) == 5


def test_check_and_decr_is_atomic_under_concurrent_callers(redis_port: RedisPort):
    stock, threads, calls = 50, 8, 25
    value(redis_port.set("stock", stock))
    results: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(calls):
            left = value(redis_port.check_and_decr("stock"))
            with lock:
                results.append(left)

    workers = [threading.Thread(target=take) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    assert not any(w.is_alive() for w in workers)
    granted = sorted(r for r in results if r >= 0)
    assert granted == list(range(stock))  # every level from 49 down to 0 handed out exactly once
    assert results.count(-1) == threads * calls - stock
    assert value(redis_port.get("stock")) == 0


def test_pipelined_decr_gives_what_sequential_decr_gives(redis_port: RedisPort):
    keys = ["a", "b", "a", "missing", "a", "b"]
    value(redis_port.set("a", 10))
    value(redis_port.set("b", 3))
    piped = value(redis_port.decr_many(keys))
    after_pipe = [value(redis_port.get(k)) for k in ("a", "b", "missing")]
    # the same from the same start, one round trip per key
    value(redis_port.set("a", 10))
    value(redis_port.set("b", 3))
    redis_port.delete("missing")
    sequential = [value(redis_port.decr(k)) for k in keys]
    assert piped == sequential == [9, 2, 8, -1, 7, 1]
    assert after_pipe == [value(redis_port.get(k)) for k in ("a", "b", "missing")] == [7, 1, -1]
    assert all(isinstance(v, int) for v in piped)


def test_pipelined_decr_of_many_counts_down_once_each(redis_port: RedisPort):
    value(redis_port.set("stock", 1000))
    results: list[int] = []
    for _ in range(5):
        results += value(redis_port.decr_many(["stock"] * 100))
    assert results == list(range(999, 499, -1))
    assert value(redis_port.get("stock")) == 500
    assert value(redis_port.decr_many([])) == []
    # the prefix applies to every key of the batch
    assert redis_port.client.get(redis_port.prefix + "stock") in (b"500", "500")


def test_pipelined_decr_is_not_a_transaction(redis_port: RedisPort):
    # one bad key fails loudly (as a lone DECR does) but the rest of the batch still ran
    value(redis_port.set("a", 5))
    value(redis_port.set("text", "lots"))
    with pytest.raises(redis.exceptions.ResponseError):
        redis_port.decr_many(["a", "text", "a"])
    assert value(redis_port.get("a")) == 3


def test_set_nx_only_creates(redis_port: RedisPort):
    assert value(redis_port.set_nx("seen:m1", 1)) is True
    assert value(redis_port.set_nx("seen:m1", 2)) is False
    assert value(redis_port.get("seen:m1")) == 1
    assert value(redis_port.set_nx("seen:m2", 1, ex=30)) is True
    assert 0 < value(redis_port.ttl("seen:m2")) <= 30


def test_expire_and_ttl(redis_port: RedisPort):
    assert value(redis_port.ttl("nothing")) == -2
    assert value(redis_port.expire("nothing", 10)) is False
    value(redis_port.set("stock", 5))
    assert value(redis_port.ttl("stock")) == -1
    assert value(redis_port.expire("stock", 10)) is True
    assert 0 < value(redis_port.ttl("stock")) <= 10


def test_get_gives_ints_and_text(redis_port: RedisPort):
    value(redis_port.set("n", 42))
    value(redis_port.set("s", "hello"))
    assert value(redis_port.get("n")) == 42 and isinstance(value(redis_port.get("n")), int)
    assert value(redis_port.get("s")) == "hello"
    assert value(redis_port.get("missing")) is None


def test_keys_live_under_the_prefix(redis_port: RedisPort):
    value(redis_port.set("stock", 1))
    assert redis_port.prefix
    assert redis_port.client.get(redis_port.prefix + "stock") in (b"1", "1")


def test_a_fake_server_that_is_down_gives_service_down():
    import fakeredis

    server = fakeredis.FakeServer()
    port = RedisPort(fakeredis.FakeRedis(server=server))
    assert value(port.set("stock", 1)) is True
    server.connected = False
    for done in (port.get("stock"), port.decr("stock"), port.check_and_decr("stock"),
                 port.set_nx("k", 1), port.ttl("stock"), port.expire("stock", 1),
                 port.decr_many(["stock", "stock"])):
        assert isinstance(done.error, ServiceDown) and done.error.component == "redis"
    server.connected = True
    assert value(port.get("stock")) == 1


def test_an_unreachable_server_gives_service_down_at_once():
    client = make_redis_client(Settings(redis_url="redis://127.0.0.1:1/0", connect_timeout_s=0.5))
    port = RedisPort(client)
    started = time.monotonic()
    for done in (port.check_and_decr("stock"), port.get("x"), port.incr("x"), port.decr_many(["x"] * 3)):
        assert isinstance(done.error, ServiceDown) and done.value is None
    assert port.ping() is False
    assert time.monotonic() - started < 2.0  # no hidden retries with backoff


def test_clear_needs_a_prefix():
    import fakeredis

    with pytest.raises(ValueError):
        RedisPort(fakeredis.FakeRedis(server=fakeredis.FakeServer())).clear()
