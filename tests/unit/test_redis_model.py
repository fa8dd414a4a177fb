"""The SimPy Redis model against reliability-reference.md §1 P15-P18 and §5 "Redis model"."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import simpy

from simulator.errors import InputError, ServiceDown
from simulator.history import History
from simulator.sim.redis import Redis


def make(**kw: Any) -> tuple[simpy.Environment, Redis, History]:
    env = simpy.Environment()
    history = History(lambda: env.now, keep=None)
    redis = Redis(env, np.random.default_rng(kw.pop("seed", 1)), history=history, **kw)
    return env, redis, history


def exact(**kw: Any) -> tuple[simpy.Environment, Redis, History]:
    """No jitter and no network: every command takes effect at the instant it is sent."""
    kw = {"jitter": False, "rtt": 0.0, "command_time": 0.0, "script_time": 0.0, **kw}
    return make(**kw)


def at(env: simpy.Environment, when: float, call) -> simpy.Process:
    """Run ``call()`` (a port call) at ``when``; the process's value is its result."""
    def proc():
        yield env.timeout(when - env.now)
        return (yield call())
    return env.process(proc())


def outcome(env: simpy.Environment, event: simpy.Event) -> Any:
    return env.run(until=event)


# -- atomicity (P15, P16) ---------------------------------------------------------------------

def test_decr_is_atomic_under_50_concurrent_clients():
    env, r, _ = make()
    r.data_set("stock", 1000)
    seen: list[int] = []

    def client():
        for _ in range(10):
            seen.append((yield r.decr("stock")))

    for _ in range(50):
        env.process(client())
    env.run()
    assert r.peek("stock") == 500
    assert sorted(seen) == list(range(500, 1000))  # every decrement got its own value


def test_get_then_set_from_concurrent_clients_loses_updates():
    env, r, _ = make()
    r.data_set("stock", 1000)

    def client():
        for _ in range(10):
            current = yield r.get("stock")
            yield r.set("stock", int(current) - 1)

    for _ in range(50):
        env.process(client())
    env.run()
    lost = r.peek("stock") - 500
    # 500 decrements were made, but most SETs overwrote a value others had already changed
    assert lost > 250, f"only {lost} updates lost"


def test_check_and_decr_hands_out_exactly_the_stock_and_never_goes_below_zero():
    env, r, _ = make()
    r.data_set("stock", 10)
    answers = [env.process(_once(r.check_and_decr, "stock")) for _ in range(50)]
    env.run()
    values = [p.value for p in answers]
    assert sorted(v for v in values if v >= 0) == list(range(10))
    assert values.count(-1) == 40
    assert r.peek("stock") == 0


def _once(call, *args):
    return (yield call(*args))


def test_check_and_decr_on_missing_or_negative_values_writes_nothing():
    env, r, _ = exact()
    assert outcome(env, r.check_and_decr("nokey")) == -1
    assert r.peek("nokey") is None
    r.data_set("neg", -3)
    assert outcome(env, r.check_and_decr("neg")) == -1
    assert r.peek("neg") == -3


def test_reserve_takes_one_unit_per_message_and_a_repeat_takes_the_hold_over():
    env, r, _ = exact()
    r.data_set("stock", 2)
    assert outcome(env, r.reserve("stock", "m1", "consumer-1")) == (1, True)
    assert outcome(env, r.reserve("stock", "m1", "consumer-2")) == (1, False)
    assert r.peek("stock") == 1 and r.peek("stock:hold:m1") == "consumer-2"
    assert outcome(env, r.reserve("stock", "m2", "consumer-1")) == (0, True)
    assert outcome(env, r.reserve("stock", "m3", "consumer-1")) == (-1, False)
    assert r.peek("stock:hold:m3") is None


def test_release_gives_the_unit_back_once_and_only_to_the_holds_owner():
    env, r, _ = exact()
    r.data_set("stock", 5)
    outcome(env, r.reserve("stock", "m1", "consumer-1"))
    outcome(env, r.reserve("stock", "m1", "consumer-2"))
    assert outcome(env, r.release("stock", "m1", "consumer-1")) is False
    assert r.peek("stock") == 4
    assert outcome(env, r.release("stock", "m1", "consumer-2")) is True
    assert r.peek("stock") == 5 and r.peek("stock:hold:m1") is None
    assert outcome(env, r.release("stock", "m1", "consumer-2")) is False
    assert r.peek("stock") == 5


def test_reserve_hands_out_exactly_the_stock_under_concurrent_callers():
    env, r, _ = make()
    r.data_set("stock", 10)
    answers = [env.process(_once(r.reserve, "stock", f"m{i}", "c")) for i in range(30)]
    env.run()
    fresh = [p.value for p in answers if p.value[1]]
    assert sorted(left for left, _ in fresh) == list(range(10))
    assert r.peek("stock") == 0 and len([k for k in r.keys() if ":hold:" in k]) == 10


def test_decr_of_a_missing_key_counts_from_zero_and_a_string_integer_works():
    env, r, _ = exact()
    assert outcome(env, r.decr("fresh")) == -1
    r.data_set("s", "7")
    assert outcome(env, r.decr("s")) == 6
    assert outcome(env, r.incr("s")) == 7
    assert outcome(env, r.decrby("s", 5)) == 2


@pytest.mark.parametrize("value", ["abc", "1.5", " 3", "+3", "007"])
def test_decr_of_a_non_integer_fails_like_redis(value):
    env, r, _ = exact()
    r.data_set("k", value)
    with pytest.raises(ValueError, match="ERR value is not an integer"):
        outcome(env, r.decr("k"))
    assert r.peek("k") == value


def test_decr_cannot_leave_the_64_bit_range():
    env, r, _ = exact()
    r.data_set("k", -(2 ** 63))
    with pytest.raises(ValueError, match="overflow"):
        outcome(env, r.decr("k"))


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_decrby_needs_a_positive_whole_number(n):
    _, r, _ = exact()
    with pytest.raises(InputError) as err:
        r.decrby("k", n)
    assert err.value.field == "redis.decrby"


def test_set_nx_only_sets_a_missing_key():
    env, r, _ = exact()
    assert outcome(env, r.set_nx("seen:m1", 1)) is True
    assert outcome(env, r.set_nx("seen:m1", 2)) is False
    assert r.peek("seen:m1") == 1


# -- TTL on the simulation clock ----------------------------------------------------------------

def test_ttl_counts_down_and_the_key_expires_on_the_sim_clock():
    env, r, _ = exact()
    outcome(env, r.set("k", 5, ex=10))
    assert outcome(env, at(env, 4.5, lambda: r.ttl("k"))) == 5   # 5.5 s left, rounded down
    assert outcome(env, at(env, 9.99, lambda: r.get("k"))) == 5
    assert outcome(env, at(env, 10.0, lambda: r.get("k"))) is None
    assert outcome(env, r.ttl("k")) == -2


def test_ttl_codes_and_expire_and_set_clearing_the_ttl():
    env, r, _ = exact()
    outcome(env, r.set("plain", 1))
    assert outcome(env, r.ttl("plain")) == -1
    assert outcome(env, r.ttl("missing")) == -2
    assert outcome(env, r.expire("missing", 5)) is False
    assert outcome(env, r.expire("plain", 3)) is True
    assert outcome(env, r.ttl("plain")) == 3
    outcome(env, r.set("plain", 2))  # SET without a TTL removes the old one
    assert outcome(env, r.ttl("plain")) == -1
    outcome(env, r.set_nx("lock", 1, ex=2))
    outcome(env, r.incr("lock"))     # INCR keeps it
    assert outcome(env, r.ttl("lock")) == 2
    assert outcome(env, r.expire("lock", 0)) is True  # a non-positive TTL deletes
    assert r.peek("lock") is None


def test_expired_keys_are_not_listed_even_if_never_touched():
    env, r, _ = exact()
    outcome(env, r.set("a", 1, ex=1))
    outcome(env, r.set("b", 1))
    assert r.dbsize == 2
    env.run(until=1.5)
    assert r.keys() == ["b"] and r.dbsize == 1


def test_delete():
    env, r, _ = exact()
    r.data_set("k", 1)
    assert outcome(env, r.delete("k")) == 1
    assert outcome(env, r.delete("k")) == 0


# -- the single command thread ------------------------------------------------------------------

def saturate(r: Redis, env: simpy.Environment, clients: int, until: float) -> list[float]:
    done: list[float] = []

    def client():
        while True:
            yield r.incr("n")
            done.append(env.now)

    for _ in range(clients):
        env.process(client())
    env.run(until=until)
    return done


def test_throughput_under_saturation_is_one_over_the_command_time():
    env, r, _ = make(command_time=0.00005, rtt=0.0002)
    done = saturate(r, env, clients=50, until=1.1)
    throughput = sum(1 for t in done if 0.1 <= t < 1.1) / 1.0
    assert throughput == pytest.approx(1 / 0.00005, rel=0.05)
    assert r.utilisation(env.now) > 0.95
    assert r.stats["max_queue"] >= 40  # the line is where the extra clients wait


def test_one_client_is_bound_by_the_round_trip_not_the_thread():
    env, r, _ = make(command_time=0.00005, rtt=0.0002, jitter=False)
    done = saturate(r, env, clients=1, until=1.0)
    assert len(done) == pytest.approx(1 / 0.00025, rel=0.01)
    assert r.utilisation(env.now) == pytest.approx(0.2, rel=0.02)


def test_a_script_takes_script_time_on_the_thread():
    env, r, _ = make(command_time=0.001, script_time=0.004, rtt=0.0, jitter=False)
    r.data_set("s", 5)
    outcome(env, r.check_and_decr("s"))
    assert env.now == pytest.approx(0.004)
    outcome(env, r.get("s"))
    assert env.now == pytest.approx(0.005)


# -- persistence and crash (P17, P18) ------------------------------------------------------------

WRITES = (0.5, 3.2, 9.9, 10.4, 11.7, 12.2)


def scripted(persistence: str, crash_at: float) -> tuple[Redis, History]:
    env, r, history = exact(persistence=persistence, rdb_interval=10.0)
    for t in WRITES:
        at(env, t, lambda: r.incr("n"))
    env.run(until=crash_at)
    r.crash()
    return r, history


@pytest.mark.parametrize("persistence, crash_at, lost, left", [
    ("none", 12.5, 6, None),          # nothing on disk: the dataset is gone
    ("rdb", 12.5, 3, 3),              # snapshot at t=10 holds the first three writes
    ("rdb", 20.5, 0, 6),              # the t=20 snapshot took them all
    ("aof-everysec", 12.5, 1, 5),     # the t=12.2 write waits for the t=13 fsync
    ("aof-everysec", 13.0, 0, 6),     # the t=13 tick has passed
    ("aof-always", 12.5, 0, 6),       # fsync before every reply
])
def test_crash_loses_exactly_the_writes_persistence_had_not_saved(persistence, crash_at, lost, left):
    r, history = scripted(persistence, crash_at)
    assert r.peek("n") == left
    crash = [op for op in history.ops if op.f == "crash"]
    assert len(crash) == 1 and crash[0].type == "info" and crash[0].process == "redis"
    expected = {"persistence": persistence, "lost_writes": lost}
    if left is not None and left != len(WRITES):
        # the counter survives with an older value: the crash record says by how much it moved
        expected["counters_rolled_back"] = {"n": left - len(WRITES)}
    assert crash[0].value == expected
    assert r.stats["lost_writes"] == lost


def test_restart_restarts_the_fsync_clock_and_records_it():
    env, r, history = exact(persistence="aof-everysec")
    r.data_set("n", 1)
    env.run(until=2.0)
    r.crash()
    env.run(until=2.4)
    r.restart()  # ticks now at 3.4, 4.4, ...
    assert history.ops[-1].f == "restart" and history.ops[-1].type == "info"
    at(env, 3.0, lambda: r.incr("n"))
    env.run(until=3.3)
    r.crash()
    assert r.peek("n") == 1 and history.ops[-1].value["lost_writes"] == 1
    r.restart()
    at(env, 3.5, lambda: r.incr("n"))
    env.run(until=4.6)  # the tick at 4.3 (1 s after the restart) saved it
    r.crash()
    assert r.peek("n") == 2 and history.ops[-1].value["lost_writes"] == 0


def test_a_crash_fails_unanswered_commands_even_the_one_that_already_ran():
    env, r, _ = make(persistence="aof-always", command_time=0.01, rtt=0.0002, jitter=False)
    calls = [r.incr("n") for _ in range(10)]
    env.run(until=0.015)  # the first answered at 0.0102; the second is on the thread
    r.crash()
    env.run()
    assert calls[0].ok and calls[0].value == 1
    assert all(not c.ok and isinstance(c.value, ServiceDown) for c in calls[1:])
    assert r.peek("n") == 2  # the second INCR happened although its client heard "down"


def test_commands_fail_while_down_and_work_after_restart():
    env, r, _ = exact()
    r.crash()
    with pytest.raises(ServiceDown):
        outcome(env, r.get("k"))
    r.restart()
    assert outcome(env, r.incr("k")) == 1


def test_a_restored_key_keeps_its_absolute_expiry():
    env, r, _ = exact(persistence="rdb", rdb_interval=1.0)
    outcome(env, r.set("k", 1, ex=3))
    at(env, 1.5, lambda: r.incr("k"))
    env.run(until=1.8)
    r.crash()
    r.restart()
    assert r.peek("k") == 1
    assert outcome(env, r.ttl("k")) == 1  # expiry at t=3 still holds
    env.run(until=3.0)
    assert r.peek("k") is None


# -- validation (§5) -----------------------------------------------------------------------------

@pytest.mark.parametrize("kw, field", [
    ({"command_time": -0.1}, "redis.command_time"),
    ({"rtt": float("nan")}, "redis.rtt"),
    ({"script_time": -1}, "redis.script_time"),
    ({"rdb_interval": 0}, "redis.rdb_interval"),
    ({"persistence": "appendfsync-no"}, "redis.persistence"),
])
def test_bad_settings_are_refused_with_the_field_named(kw, field):
    with pytest.raises(InputError) as err:
        Redis(simpy.Environment(), np.random.default_rng(0), **kw)
    assert err.value.field == field


def test_bad_command_arguments_are_refused():
    _, r, _ = exact()
    with pytest.raises(InputError):
        r.set("k", 1, ex=0)
    with pytest.raises(InputError):
        r.set("k", 1.5)
    with pytest.raises(InputError):
        r.get(3)


def test_same_seed_same_timeline():
    def timeline(seed: int) -> list[float]:
        env, r, _ = make(seed=seed)
        return saturate(r, env, clients=5, until=0.01)
    assert timeline(3) == timeline(3)
    assert timeline(3) != timeline(4)
