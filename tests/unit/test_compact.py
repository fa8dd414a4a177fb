"""Dense per-id storage: id parsing, the processed-id set, and the checker's settled messages.

The dense store must never change an answer, so the checker tests compare a checker that
moves every settled message to the arrays at once (``settle_lag=0``) with one that never does.
"""

from __future__ import annotations

import random
from typing import Any

from simulator.checker import Checker
from simulator.compact import IdSet, split_id
from simulator.history import Op

NEVER = 10**9  # a settle lag no test reaches: every message stays a plain object


def test_split_id_only_accepts_exact_round_trips() -> None:
    assert split_id("m17") == ("m", 17)
    assert split_id("user-17") == ("user-", 17)
    assert split_id("ab9c12") == ("ab9c", 12)
    for bad in ("m0", "m017", "m", "", "17x", "m1\u0662", "m" + "9" * 16, 17, None, b"m1"):
        assert split_id(bad) is None, bad


def test_id_set_matches_a_set() -> None:
    for seed in range(60):
        rng = random.Random(seed)
        dense, plain = IdSet(), set()
        for _ in range(300):
            item = rng.choice([f"m{rng.randint(0, 60)}", f"m0{rng.randint(1, 9)}", rng.randint(0, 4),
                               f"u-{rng.randint(1, 200_000)}", "m", f"m{rng.randint(1, 10**15)}"])
            dense.add(item)
            plain.add(item)
            probe = rng.choice([item, f"m{rng.randint(0, 60)}", "m07", 3])
            assert (probe in dense) == (probe in plain)
            assert len(dense) == len(plain)
        assert sorted(map(str, dense)) == sorted(map(str, plain))


def _flow(rng: random.Random, n: int) -> list[Op]:
    """Message flows with confirms after the dequeue, faults, saves and late redeliveries."""
    ops: list[Op] = []

    def add(type_: str, f: str, process: str, value: Any, msg_id: str | None) -> None:
        ops.append(Op(len(ops), len(ops) * 0.001 + 0.0005, type_, f, process, value, msg_id))

    add("ok", "stock-init", "world", {"stock": rng.randint(1, n)}, None)
    saves = rng.random() < 0.3
    for k in range(1, n + 1):
        m, user = f"m{k}", f"user-{rng.randint(1, n)}"
        if rng.random() < 0.9:
            add("invoke", "submit", "client", {"user": user}, m)
        if saves and rng.random() < 0.1:
            add("invoke", "save", "server-1", None, m)
        published = rng.random() < 0.93
        if published:
            add("invoke", "enqueue", "server-1", {"key": user, "seq": rng.randint(0, 3)}, m)
        if rng.random() < 0.05:
            add("info", "crash", "broker", None, None)
        if rng.random() < 0.9:
            consumer = f"consumer-{rng.randint(1, 3)}"
            add("ok", "deliver", consumer, {"redelivered": False, "ack": "manual"}, m)
            if rng.random() < 0.6:
                add("ok", "grant", consumer, {"user": user}, m)
            add("ok", "dequeue", consumer, {"outcome": "granted", "key": user, "seq": rng.randint(0, 3)}, m)
        if published and rng.random() < 0.95:  # the confirm and the 200 after the dequeue
            add("ok", "enqueue", "server-1", {"key": user, "seq": 0}, m)
            add("ok", "submit", "client", {"status": 200}, m)
    for _ in range(n // 3):  # later ops on earlier messages bring them back from the arrays
        m, r = f"m{rng.randint(1, n)}", rng.random()
        if r < 0.4:
            add("ok", "deliver", "consumer-9", {"redelivered": True, "ack": "manual"}, m)
            add("ok", "dequeue", "consumer-9", {"outcome": "duplicate", "key": "user-1", "seq": 9}, m)
        elif r < 0.6:
            add("ok", "grant", "consumer-9", {"user": "u"}, m)
        elif r < 0.8:
            add("fail", "ack", "consumer-9", None, m)
        else:
            add("ok", "save" if saves else "submit", "server-1", None, m)
    return ops


def test_dense_settled_messages_give_the_same_result() -> None:
    for seed in range(40):
        ops = _flow(random.Random(seed), random.Random(seed).randint(1, 120))
        for kwargs in ({}, {"recent": 0}, {"max_examples": 3}):
            dense, plain = Checker(settle_lag=seed % 3, **kwargs), Checker(settle_lag=NEVER, **kwargs)
            for i, op in enumerate(ops):
                dense(op)
                plain(op)
                if i % 100 == 0:  # result() mid-stream too: examples in first-seen order
                    assert dense.result().to_dict() == plain.result().to_dict(), seed
            assert dense.result().to_dict() == plain.result().to_dict(), seed


def test_settled_messages_leave_the_object_map() -> None:
    ops = _flow(random.Random(1), 200)
    checker = Checker(settle_lag=2)  # past its confirm and 200, so most stay in the arrays
    for op in ops:
        checker(op)
    assert checker._cold.count > 50
    assert len(checker._msgs) + checker._cold.count == checker._seen
