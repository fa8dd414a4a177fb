"""The SimPy voucher gateway: latency, token-bucket rate limit, seeded failures."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import simpy

from simulator.errors import InputError
from simulator.sim.gateway import VoucherGateway


def make(seed: int = 42, **kw: Any) -> tuple[simpy.Environment, VoucherGateway]:
    env = simpy.Environment()
    return env, VoucherGateway(env, np.random.default_rng(seed), **kw)


def send_all(env: simpy.Environment, gw: VoucherGateway, n: int) -> list[tuple[float, bool]]:
    """n sends issued at t=0; -> (answer time, sent?) in the order the calls were made."""
    answers: list[tuple[float, bool]] = [(-1.0, False)] * n

    def one(i: int):
        ok = yield gw.send(f"user-{i}", f"m{i}")
        answers[i] = (env.now, ok)

    for i in range(n):
        env.process(one(i))
    env.run()
    return answers


def test_rate_limit_spaces_sends_first_come_first_served():
    env, gw = make(latency=0.05, rate_limit=10.0, jitter=False)
    answers = send_all(env, gw, 25)
    times = [t for t, _ in answers]
    assert times == pytest.approx([k * 0.1 + 0.05 for k in range(25)])
    assert all(ok for _, ok in answers)
    assert gw.stats["sent"] == 25 and gw.stats["throttled"] == 24
    assert gw.stats["max_wait"] == pytest.approx(2.4)


def test_a_burst_passes_at_once_then_the_rate_applies():
    env, gw = make(latency=0.0, rate_limit=5.0, burst=3, jitter=False)
    times = [t for t, _ in send_all(env, gw, 6)]
    assert times == pytest.approx([0.0, 0.0, 0.0, 0.2, 0.4, 0.6])


def test_an_idle_bucket_refills():
    env, gw = make(latency=0.0, rate_limit=2.0, jitter=False)
    send_all(env, gw, 2)            # second one waits 0.5 s
    env.run(until=10.0)
    start = env.now
    env.run(until=gw.send("u", "m"))
    assert env.now == start          # a token was waiting
    assert gw.stats["max_wait"] == pytest.approx(0.5)


def test_without_a_rate_limit_nobody_waits():
    env, gw = make(latency=0.03, jitter=False)
    times = [t for t, _ in send_all(env, gw, 100)]
    assert times == pytest.approx([0.03] * 100)
    assert gw.stats["max_wait"] == 0.0


def test_failures_follow_the_seeded_stream_exactly():
    env, gw = make(seed=42, latency=0.01, failure_probability=0.2, jitter=False)
    outcomes = [ok for _, ok in send_all(env, gw, 1000)]
    expected = list(np.random.default_rng(42).random(1000) >= 0.2)
    assert outcomes == expected
    assert gw.stats["failed"] == 1000 - sum(expected)
    assert gw.stats["sent"] == sum(expected)
    assert 150 < gw.stats["failed"] < 250


@pytest.mark.parametrize("p, failed", [(0.0, 0), (1.0, 50)])
def test_failure_probability_edges(p, failed):
    env, gw = make(failure_probability=p)
    send_all(env, gw, 50)
    assert gw.stats["failed"] == failed


def test_jittered_latency_has_the_configured_mean():
    env, gw = make(seed=7, latency=0.05)
    times = [t for t, _ in send_all(env, gw, 5_000)]
    assert np.mean(times) == pytest.approx(0.05, rel=0.06)
    assert min(times) < 0.01  # exponential, not fixed


def test_same_seed_same_answers():
    assert send_all(*make(seed=1, failure_probability=0.3), 200) == \
        send_all(*make(seed=1, failure_probability=0.3), 200)


@pytest.mark.parametrize("kw, field", [
    ({"latency": -0.01}, "gateway.latency"),
    ({"rate_limit": 0}, "gateway.rate_limit"),
    ({"rate_limit": -5.0}, "gateway.rate_limit"),
    ({"failure_probability": 1.5}, "gateway.failure_probability"),
    ({"failure_probability": -0.1}, "gateway.failure_probability"),
    ({"burst": 0}, "gateway.burst"),
])
def test_bad_settings_are_refused_with_the_field_named(kw, field):
    with pytest.raises(InputError) as err:
        make(**kw)
    assert err.value.field == field
