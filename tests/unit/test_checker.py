"""The streaming checker: every anomaly kind, its clean twin, total-queue semantics, streaming."""

from __future__ import annotations

import json
from typing import Any

from simulator.checker import KINDS, Checker, check
from simulator.history import History, Op


class H:
    """A tiny history builder: ``h(t, type, f, process, msg_id, value)`` appends one op."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def __call__(self, t: float, type: str, f: str, process: str, msg_id: str | None = None,
                 value: Any = None, component: str | None = None) -> "H":
        self.ops.append(Op(len(self.ops), t, type, f, process, value, msg_id, None, component))
        return self

    def publish(self, t: float, m: str, producer: str = "api-1", **value: Any) -> "H":
        self(t, "invoke", "enqueue", producer, m, value or None)
        return self(t, "ok", "enqueue", producer, m, value or None)

    def deliver(self, t: float, m: str, consumer: str, ack: str = "manual",
                redelivered: bool = False) -> "H":
        return self(t, "ok", "deliver", consumer, m, {"redelivered": redelivered, "ack": ack})

    def done(self, t: float, m: str, consumer: str, outcome: str = "granted", **value: Any) -> "H":
        return self(t, "ok", "dequeue", consumer, m, {"outcome": outcome, **value})

    def crash(self, t: float, process: str, component: str | None = None) -> "H":
        return self(t, "info", "crash", process, component=component)


def examples(result, kind: str) -> list:
    return [a for a in result.anomalies if a.kind == kind]


def only_anomaly(result, kind: str) -> None:
    """Every anomaly count other than ``kind`` is zero."""
    for other in KINDS:
        if other != kind:
            assert result.counts[other] == 0, (other, result.counts)


# -- lost / total queue -----------------------------------------------------------------------

def test_clean_total_queue_is_valid():
    h = H().publish(1.0, "m1").publish(1.1, "m2")
    h.deliver(2.0, "m1", "consumer-1").done(2.1, "m1", "consumer-1")
    h.deliver(2.0, "m2", "consumer-2").done(2.2, "m2", "consumer-2")
    r = check(h.ops)
    assert r.valid
    assert r.anomalies == []
    assert {k: r.counts[k] for k in ("attempted", "promised", "dequeued", "lost", "recovered")} == \
        {"attempted": 2, "promised": 2, "dequeued": 2, "lost": 0, "recovered": 0}


def test_lost_to_auto_ack_consumer_crash_names_that_consumer():
    h = H().publish(1.0, "m5")
    h.deliver(3.2, "m5", "consumer-2", ack="auto")
    h.crash(3.3, "consumer-1", "consumer")  # another consumer's crash must not be blamed
    h.crash(3.41, "consumer-2", "consumer")
    r = check(h.ops)
    assert not r.valid
    assert r.counts["lost"] == 1 and r.counts["promised"] == 1 and r.counts["dequeued"] == 0
    only_anomaly(r, "lost")
    [a] = r.anomalies
    assert (a.kind, a.msg_id) == ("lost", "m5")
    assert a.chain == ("enqueue m5 ok by api-1 at t=1.000 → deliver m5 to consumer-2 (auto-ack) "
                       "at t=3.200 → consumer-2 crash at t=3.410 → m5 never processed")


def test_lost_in_broker_blames_broker_crash_then_falls_back_to_any_crash():
    h = H().publish(1.0, "m1").publish(1.0, "m2", producer="api-2")
    h.crash(2.0, "consumer-9").crash(2.5, "broker")
    r = check(h.ops)
    assert r.counts["lost"] == 2
    for a in examples(r, "lost"):
        assert "broker crash at t=2.500" in a.chain and "consumer-9" not in a.chain
    # With no crash of the holder, the first crash after the message is shown.
    r2 = check(H().publish(1.0, "m1").crash(2.0, "consumer-9").ops)
    assert "consumer-9 crash at t=2.000" in r2.anomalies[0].chain
    # A broker process with another name is matched by its component.
    r3 = check(H().publish(1.0, "m1").crash(1.5, "consumer-9").crash(2.0, "rabbit@lab", "broker").ops)
    assert "rabbit@lab crash at t=2.000" in r3.anomalies[0].chain and "consumer-9" not in r3.anomalies[0].chain


def test_lost_by_broker_drop_shows_the_drop_and_its_cause():
    h = H().publish(1.0, "m3").crash(2.0, "broker")
    h(2.0, "info", "drop", "broker", "m3", {"reason": "unflushed on crash"})
    r = check(h.ops)
    assert r.counts["lost"] == 1
    assert r.anomalies[0].chain == ("enqueue m3 ok by api-1 at t=1.000 → broker crash at t=2.000 → "
                                    "broker dropped m3 (unflushed on crash) at t=2.000 → m3 never processed")


def test_submit_ok_counts_as_promised_and_is_lost_if_never_published():
    h = H()(1.0, "invoke", "submit", "api-1", "m9")(1.1, "ok", "submit", "api-1", "m9")
    h(1.2, "invoke", "enqueue", "api-1", "m9").crash(1.3, "api-1")
    r = check(h.ops)
    assert r.counts["promised"] == 1 and r.counts["attempted"] == 1 and r.counts["lost"] == 1
    chain = r.anomalies[0].chain
    assert "submit m9 ok by api-1 at t=1.100" in chain
    assert "api-1 crash at t=1.300" in chain and chain.endswith("m9 accepted but never published")


def test_final_drain_counts_as_dequeue():
    h = H().publish(1.0, "m1").crash(2.0, "consumer-1")
    assert check(h.ops).counts["lost"] == 1
    h.done(9.0, "m1", "drain", outcome="drained")
    r = check(h.ops)
    assert r.valid and r.counts["lost"] == 0 and r.counts["dequeued"] == 1


def test_dead_lettered_invalid_counts_as_dequeued():
    h = H().publish(1.0, "m1").deliver(1.5, "m1", "consumer-1").done(1.6, "m1", "consumer-1", "invalid")
    assert check(h.ops).valid


def test_recovered_indeterminate_publish_that_got_through():
    h = H()(1.0, "invoke", "enqueue", "api-1", "m1")(2.0, "info", "enqueue", "api-1", "m1", "timeout")
    h(1.0, "invoke", "enqueue", "api-1", "m2")(2.0, "fail", "enqueue", "api-1", "m2", "nack")
    h.deliver(3.0, "m1", "consumer-1").done(3.1, "m1", "consumer-1")
    r = check(h.ops)
    assert r.valid
    assert (r.counts["attempted"], r.counts["promised"], r.counts["recovered"], r.counts["lost"]) == (2, 0, 1, 0)


# -- duplicated ---------------------------------------------------------------------------------

def dup_history() -> H:
    h = H().publish(1.0, "m1")
    h.deliver(2.0, "m1", "consumer-1").done(2.1, "m1", "consumer-1")
    h.crash(2.2, "consumer-1")  # crashed after processing, before its ack
    h.deliver(2.5, "m1", "consumer-2", redelivered=True).done(2.6, "m1", "consumer-2", "duplicate")
    return h


def test_duplicates_are_counted_but_do_not_invalidate():
    r = check(dup_history().ops)
    assert r.valid
    assert r.counts["duplicated"] == 1 and r.counts["dequeued"] == 1 and r.counts["lost"] == 0
    only_anomaly(r, "duplicated")
    [a] = r.anomalies
    assert a.chain == ("deliver m1 to consumer-1 (manual-ack) at t=2.000 → dequeue m1 by consumer-1 "
                       "(granted) at t=2.100 → consumer-1 crash at t=2.200 → deliver m1 to consumer-2 "
                       "(manual-ack, redelivered) at t=2.500 → dequeue m1 by consumer-2 (duplicate) "
                       "at t=2.600 → m1 dequeued 2 times")


def test_duplicated_counts_messages_not_deliveries():
    h = dup_history().deliver(3.0, "m1", "consumer-3", redelivered=True).done(3.1, "m1", "consumer-3")
    r = check(h.ops)
    assert r.counts["duplicated"] == 1
    assert r.anomalies[0].chain.endswith("m1 dequeued 3 times")


def test_duplicate_from_lost_ack_shows_the_lost_ack():
    h = H().publish(1.0, "m1").deliver(2.0, "m1", "consumer-1").done(2.1, "m1", "consumer-1")
    h(2.2, "fail", "ack", "consumer-1", "m1")
    h(2.3, "info", "restart", "broker")
    h.deliver(2.5, "m1", "consumer-1", redelivered=True).done(2.6, "m1", "consumer-1")
    chain = check(h.ops).anomalies[0].chain
    assert "ack m1 lost by consumer-1 at t=2.200" in chain
    assert "broker restart at t=2.300" in chain


def test_duplicate_chain_keeps_a_lost_ack_recorded_before_the_dequeue():
    # The shared flow records deliver, grant, ack, then dequeue.
    h = H().publish(1.0, "m1").deliver(2.0, "m1", "consumer-1")(2.1, "ok", "grant", "consumer-1", "m1")
    h(2.15, "info", "crash", "broker")(2.2, "fail", "ack", "consumer-1", "m1").done(2.3, "m1", "consumer-1")
    h.deliver(3.0, "m1", "consumer-2", redelivered=True).done(3.1, "m1", "consumer-2", "duplicate")
    chain = check(h.ops).anomalies[0].chain
    assert chain == ("deliver m1 to consumer-1 (manual-ack) at t=2.000 → broker crash at t=2.150 → "
                     "ack m1 lost by consumer-1 at t=2.200 → dequeue m1 by consumer-1 (granted) at t=2.300 → deliver m1 to "
                     "consumer-2 (manual-ack, redelivered) at t=3.000 → dequeue m1 by consumer-2 "
                     "(duplicate) at t=3.100 → m1 dequeued 2 times")


def test_republished_message_duplicate_shows_both_publishes():
    h = H()(1.0, "invoke", "enqueue", "api-1", "m1")(1.5, "info", "enqueue", "api-1", "m1", "timeout")
    h.publish(2.0, "m1")
    h.deliver(3.0, "m1", "c1").done(3.1, "m1", "c1").deliver(3.2, "m1", "c2").done(3.3, "m1", "c2")
    r = check(h.ops)
    assert r.valid and r.counts["duplicated"] == 1 and r.counts["recovered"] == 0
    chain = r.anomalies[0].chain
    assert "enqueue m1 info (timeout) by api-1 at t=1.500" in chain
    assert "enqueue m1 ok by api-1 at t=2.000" in chain


def test_no_duplicate_for_a_single_dequeue():
    h = H().publish(1.0, "m1").deliver(2.0, "m1", "consumer-1").done(2.1, "m1", "consumer-1")
    h(2.2, "ok", "ack", "consumer-1", "m1")
    assert check(h.ops).counts["duplicated"] == 0


# -- unexpected -------------------------------------------------------------------------------

def test_unexpected_message_invalidates():
    h = H().publish(1.0, "m1").deliver(2.0, "m1", "c").done(2.1, "m1", "c")
    h.deliver(2.0, "m77", "c").done(2.2, "m77", "c")
    r = check(h.ops)
    assert not r.valid and r.counts["unexpected"] == 1
    only_anomaly(r, "unexpected")
    assert r.anomalies[0].msg_id == "m77"
    assert r.anomalies[0].chain.endswith("m77 dequeued but never enqueued or submitted")


def test_submitted_but_never_enqueued_is_not_unexpected():
    h = H()(1.0, "invoke", "submit", "api-1", "m1").deliver(2.0, "m1", "c").done(2.1, "m1", "c")
    r = check(h.ops)
    assert r.counts["unexpected"] == 0 and r.valid


# -- oversold ---------------------------------------------------------------------------------

def grants(h: H, n: int, start: int = 0) -> H:
    for i in range(start, start + n):
        h(1.0 + i / 10, "ok", "grant", "consumer-1", f"m{i}", {"user": f"u{i}"})
    return h


def test_oversold_counts_grants_past_the_stock():
    h = H()(0.0, "ok", "stock-init", "setup", None, {"stock": 2})
    grants(h, 2)
    h.crash(1.25, "redis")(1.3, "ok", "reseed", "consumer-1", None, {"stock": 2, "from": "full"})
    grants(h, 2, start=2)
    r = check(h.ops)
    assert not r.valid
    assert (r.counts["granted"], r.counts["stock"], r.counts["oversold"]) == (4, 2, 2)
    only_anomaly(r, "oversold")
    ex = examples(r, "oversold")
    assert [a.msg_id for a in ex] == ["m2", "m3"]
    assert ex[0].chain.startswith("stock-init 2 at t=0.000")
    assert "redis crash at t=1.250" in ex[0].chain
    assert "consumer-1 reseeds stock to 2 from full at t=1.300" in ex[0].chain
    assert ex[0].chain.endswith("voucher #3 granted from a stock of 2")


def test_not_oversold_at_exactly_the_stock_or_without_a_stock():
    h = grants(H()(0.0, "ok", "stock-init", "setup", None, {"stock": 3}), 3)
    r = check(h.ops)
    assert r.valid and r.counts["oversold"] == 0 and r.counts["granted"] == 3
    r2 = check(grants(H(), 5).ops)
    assert r2.counts["stock"] is None and r2.counts["oversold"] == 0 and r2.valid


# -- double granted ---------------------------------------------------------------------------

def test_double_grant_sums_extra_vouchers_and_shows_both_grants():
    h = H().publish(1.0, "m1").deliver(2.0, "m1", "consumer-1")
    h(2.1, "ok", "grant", "consumer-1", "m1", {"user": "u1"}).crash(2.2, "consumer-1")
    h.deliver(2.5, "m1", "consumer-2", redelivered=True)
    h(2.6, "ok", "grant", "consumer-2", "m1", {"user": "u1"})
    h(2.7, "ok", "grant", "consumer-2", "m1", {"user": "u1"})
    h.done(2.8, "m1", "consumer-2")
    r = check(h.ops)
    assert not r.valid and r.counts["double_granted"] == 2 and r.counts["granted"] == 3
    only_anomaly(r, "double_granted")
    chain = r.anomalies[0].chain
    assert "grant voucher for m1 by consumer-1 at t=2.100" in chain
    assert "consumer-1 crash at t=2.200" in chain
    assert "grant voucher for m1 by consumer-2 at t=2.600" in chain
    assert chain.endswith("m1 granted 3 vouchers")


def test_one_grant_per_message_is_clean():
    h = H()
    for m in ("m1", "m2"):
        h.publish(1.0, m).deliver(2.0, m, "c")(2.1, "ok", "grant", "c", m).done(2.2, m, "c")
    h(2.3, "fail", "grant", "c", "m1")  # a failed grant is not a voucher
    r = check(h.ops)
    assert r.valid and r.counts["double_granted"] == 0 and r.counts["granted"] == 2


# -- out of order -----------------------------------------------------------------------------

def keyed(h: H, order: list[int], key: str = "k") -> H:
    for s in (1, 2, 3):
        h.publish(1.0 + s / 10, f"m{s}", key=key, seq=s)
    for i, s in enumerate(order):
        h.done(2.0 + i / 10, f"m{s}", f"consumer-{s}", key=key, seq=s)
    return h


def test_out_of_order_counts_inversions_per_key_and_stays_valid():
    r = check(keyed(H(), [1, 3, 2]).ops)
    assert r.valid and r.counts["out_of_order"] == 1
    only_anomaly(r, "out_of_order")
    [a] = r.anomalies
    assert (a.msg_id, a.key) == ("m2", "k")
    assert a.chain == ("dequeue m3 by consumer-3 (granted) at t=2.100 → dequeue m2 by consumer-2 "
                       "(granted) at t=2.200 → key k: seq 2 processed after seq 3")


def test_in_order_and_redelivered_duplicates_are_not_inversions():
    assert check(keyed(H(), [1, 2, 3]).ops).counts["out_of_order"] == 0
    h = keyed(H(), [1, 2, 3]).done(3.0, "m1", "consumer-9", key="k", seq=1)
    r = check(h.ops)
    assert r.counts["out_of_order"] == 0 and r.counts["duplicated"] == 1
    # Keys are independent.
    h2 = keyed(keyed(H(), [3], key="a"), [1], key="b")
    assert check(h2.ops).counts["out_of_order"] == 0


# -- ghost / orphan ---------------------------------------------------------------------------

def test_ghost_event_published_without_committed_row():
    h = H().publish(1.0, "m1")(1.1, "invoke", "save", "api-1", "m1", component="db")
    h.crash(1.2, "db")(1.3, "fail", "save", "api-1", "m1", "db down", component="db")
    h.deliver(2.0, "m1", "c").done(2.1, "m1", "c")
    r = check(h.ops)
    assert not r.valid and r.counts["ghost"] == 1
    only_anomaly(r, "ghost")
    chain = r.anomalies[0].chain
    assert "enqueue m1 ok by api-1 at t=1.000" in chain and "db crash at t=1.200" in chain
    assert chain.endswith("m1 published but its DB row never committed")


def test_orphan_row_committed_but_never_published():
    h = H()(1.0, "invoke", "save", "api-1", "m2")(1.1, "ok", "save", "api-1", "m2")
    h(1.2, "invoke", "enqueue", "api-1", "m2").crash(1.3, "api-1")
    r = check(h.ops)
    assert not r.valid and r.counts["orphan"] == 1 and r.counts["lost"] == 0
    only_anomaly(r, "orphan")
    chain = r.anomalies[0].chain
    assert "save m2 ok by api-1 at t=1.100" in chain and "api-1 crash at t=1.300" in chain
    assert chain.endswith("m2 committed but never published")


def test_outbox_save_then_publish_is_clean():
    h = H()(1.0, "invoke", "save", "api-1", "m1")(1.1, "ok", "save", "api-1", "m1")
    h.publish(2.0, "m1", producer="relay").deliver(2.5, "m1", "c").done(2.6, "m1", "c")
    r = check(h.ops)
    assert r.valid and r.counts["ghost"] == 0 and r.counts["orphan"] == 0


# -- streaming, examples, output --------------------------------------------------------------

def test_result_mid_stream_then_later():
    h = dup_history()
    checker = Checker()
    for op in h.ops[:2]:
        checker(op)
    mid = checker.result()
    assert mid.counts["lost"] == 1 and not mid.valid  # in flight until dequeued
    assert checker.result().to_dict() == mid.to_dict()  # result() does not change state
    for op in h.ops[2:]:
        checker(op)
    assert checker.result().to_dict() == check(h.ops).to_dict()
    assert checker.result().valid


def test_history_sink_streaming_equals_check_of_the_list():
    now = [0.0]
    checker = Checker()
    history = History(lambda: now[0], keep=None, sinks=[checker])
    for op in dup_history().ops + H().publish(0, "m8").ops:
        now[0] = op.time
        history.record(op.type, op.f, op.process, op.value, msg_id=op.msg_id,
                       component=op.component)
    streamed = checker.result()
    assert streamed.to_dict() == check(history.ops).to_dict()
    assert streamed.counts["duplicated"] == 1 and streamed.counts["lost"] == 1


def test_examples_are_capped_but_counts_stay_exact():
    h = H()
    for i in range(30):
        h.publish(1.0, f"m{i}")
    r = check(h.ops, max_examples=5)
    assert r.counts["lost"] == 30 and len(examples(r, "lost")) == 5
    assert [a.msg_id for a in r.anomalies] == [f"m{i}" for i in range(5)]


def test_to_dict_is_json_ready():
    d = check(dup_history().ops).to_dict()
    assert set(d) == {"valid", *KINDS, "attempted", "promised", "dequeued", "recovered", "granted",
                      "stock", "examples"}
    assert d["examples"][0] == {"kind": "duplicated", "msg_id": "m1", "key": None,
                                "chain": check(dup_history().ops).anomalies[0].chain}
    json.dumps(d)


def test_per_message_state_stays_bounded_under_endless_redelivery():
    checker = Checker(recent=6)
    h = H().publish(0.0, "m1")
    for i in range(200):
        h.deliver(1.0 + i, "m1", f"c{i % 3}", redelivered=i > 0)
        h(1.1 + i, "fail", "ack", f"c{i % 3}", "m1")
        if i % 2:
            h.done(1.2 + i, "m1", f"c{i % 3}")
    for op in h.ops:
        checker(op)
    assert len(checker._msgs["m1"].steps) <= checker._msgs["m1"].pinned + 6
    assert checker.result().counts["duplicated"] == 1


def test_recent_zero_keeps_counts_exact():
    h = dup_history().publish(5.0, "m8").crash(6.0, "broker")
    h(7.0, "ok", "grant", "c", "m8")(7.1, "ok", "grant", "c", "m8")
    full, lean = Checker(), Checker(recent=0)
    for op in h.ops:
        full(op)
        lean(op)
    assert lean.result().counts == full.result().counts
    assert [a.kind for a in lean.result().anomalies] == [a.kind for a in full.result().anomalies]
    assert "m8 never processed" in lean.result().anomalies[0].chain
