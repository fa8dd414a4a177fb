"""Invariants 8, 10 and 11 (unroutable publishes, per-key order, hash stickiness) as
properties, each next to a case built to break it.

Unroutable publishes and stickiness are checked on the broker model and the routing function
directly (the flash-sale topology always routes); per-key order on the ordering scenario,
which runs the same events through competing consumers, consistent-hash partitions and a
partitioned log.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simpy
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from reliability_checks import profile_name
from simulator.history import History
from simulator.messages import Message, submission_body
from simulator.routing import Binding, route
from simulator.scenarios.ordering import make_config, run_ordering
from simulator.schedules import command_for
from simulator.sim.broker import Broker

words = st.text("abcxyz.", min_size=0, max_size=6)


def _publish_once(keys: list[str], routing_key: str, mandatory: bool) -> tuple[Any, Broker, History]:
    env = simpy.Environment()
    history = History(lambda: env.now, keep=None)
    broker = Broker(env, np.random.default_rng(0), history=history)
    broker.declare_exchange("ex", "direct")
    broker.declare_queue("q")
    for key in keys:
        broker.bind("q", "ex", key)
    msg = Message("m1", "c1", routing_key, submission_body("m1", "u1"))
    done = broker.publish("ex", routing_key, msg, mandatory=mandatory, confirm=True)
    env.run()
    return done.value, broker, history


@given(st.lists(words, max_size=4), words, st.booleans())
def test_no_silent_unroutable_loss(tally: Any, keys: list[str], routing_key: str, mandatory: bool) -> None:
    answer, broker, history = _publish_once(keys, routing_key, mandatory)
    routed = routing_key in keys
    dropped = [op for op in history.ops if op.f == "drop" and op.value == {"reason": "unroutable"}]
    if routed:
        ok = answer == "ack" and broker.depth("q") == 1 and not dropped
    elif mandatory:
        ok = answer == "returned" and broker.stats["returned"] == 1 and broker.depth("q") == 0
    else:  # acked all the same (a confirm is not "routed"), but counted, never 0-by-omission
        ok = answer == "ack" and broker.stats["unroutable_dropped"] == 1 and len(dropped) == 1
    tally.add("inv8_unroutable_counted", "holds", not ok)
    assert ok, (keys, routing_key, mandatory, answer, broker.stats)


def test_a_confirm_alone_does_not_mean_routed(tally: Any) -> None:
    """Built to break 'confirmed => routed': without mandatory the broker acks a message it
    dropped, so a producer trusting the confirm alone loses it silently."""
    def acked_yet_unrouted(case: tuple[list[str], str]) -> bool:
        answer, broker, _ = _publish_once(case[0], case[1], mandatory=False)
        hit = answer == "ack" and broker.depth("q") == 0
        tally.add("inv8_confirm_is_not_routing", "breaks", hit)
        return hit

    keys, key = find(st.tuples(st.lists(words, max_size=3), words), acked_yet_unrouted,
                     settings=settings(database=None, max_examples=200))
    assert key not in keys


weights = st.lists(st.integers(1, 10), min_size=1, max_size=5)


@given(weights, st.lists(st.text(max_size=8), min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_hash_exchange_is_sticky_while_bindings_stay(tally: Any, ws: list[int], keys: list[str], rnd: Any) -> None:
    bindings = [Binding(f"q{i}", str(w)) for i, w in enumerate(ws)]
    first = {k: route("x-consistent-hash", bindings, k) for k in keys}
    shuffled = list(keys)
    rnd.shuffle(shuffled)  # order and interleaving of publishes must not matter
    again = {k: route("x-consistent-hash", bindings, k) for k in shuffled}
    missing = {tuple(route("x-consistent-hash", bindings, k, headers={"other": k},
                           exchange_arguments={"hash-header": "user"})) for k in keys}
    ok = first == again and all(len(q) == 1 for q in first.values()) and len(missing) == 1
    tally.add("inv11_hash_stickiness", "holds", not ok)
    assert ok, (ws, first, again, missing)


def test_changing_the_bindings_moves_some_keys(tally: Any) -> None:
    """Stickiness holds only while bindings are unchanged: adding a queue moves some keys."""
    keys = [f"user-{i}" for i in range(200)]

    def moves(ws: list[int]) -> bool:
        before = [Binding(f"q{i}", str(w)) for i, w in enumerate(ws)]
        after = [*before, Binding("q-new", "5")]
        hit = any(route("x-consistent-hash", before, k) != route("x-consistent-hash", after, k) for k in keys)
        tally.add("inv11_rebinding_moves_keys", "breaks", hit)
        return hit

    find(weights, moves, settings=settings(database=None, max_examples=50))


orderings = st.builds(
    lambda seed, users, per_user, consumers, partitions, prefetch, requeue, hot: make_config(
        seed=seed, users=users, events_per_user=per_user, consumers=consumers, partitions=partitions,
        prefetch=prefetch, partition_prefetch=1, requeue_rate=requeue, hot_key_share=hot),
    st.integers(0, 2**32 - 1), st.integers(2, 40), st.integers(2, 5), st.integers(1, 6), st.integers(1, 6),
    st.integers(0, 20), st.sampled_from([0.0, 0.05, 0.3]), st.sampled_from([0.0, 0.3]))


@given(orderings)
def test_partitions_keep_each_users_order(tally: Any, config: Any) -> None:
    variants = run_ordering(config).metrics["variants"]
    for name in ("consistent-hash", "partitioned-log"):
        v = variants[name]
        ok = v["inversions"] == 0 and v["lost"] == 0
        tally.add("inv10_per_key_fifo", "holds", not ok)
        assert ok, f"{name}: {v['inversions']} inversions, {v['lost']} lost with {config!r}"


def test_competing_consumers_with_requeue_reorder_a_user(tally: Any) -> None:
    def inverted(config: Any) -> bool:
        hit = run_ordering(config).metrics["variants"]["competing-consumers"]["inversions"] > 0
        tally.add("inv10_competing_consumers_keep_order", "breaks", hit)
        return hit

    long = profile_name() == "long"
    found = find(orderings, inverted, settings=settings(
        database=None, max_examples=1000 if long else 100, derandomize=not long,
        phases=(Phase.generate, Phase.shrink) if long else (Phase.generate,),
        suppress_health_check=list(HealthCheck)))
    print(f"\ninv10 broken by: {command_for('ordering', found)}")
