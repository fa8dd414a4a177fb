"""Figures read from a history (either world), and the independent audit of the real state.

The history figures use one definition for both worlds, so a simulated run and a real one
can be put side by side: throughput is the consumers' finished messages per second over the
middle 80% of them (start-up and the drained tail left out), redeliveries are ``deliver`` ops
flagged ``redelivered``.

The audit does not read the history at all: it counts ledger rows, reads the stock counter
and the queues, and checks that they add up (``offered - stock left == ledger rows``).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from simulator.config import DB_STRATEGIES, FlashSaleConfig
from simulator.errors import ServiceDown
from simulator.flow import DEAD_LETTER_QUEUE, QUEUE, STOCK_KEY
from simulator.history import Op
from simulator.ports import Ports
from simulator.stats import Summary

DRAIN = "drain"


def _consumer_done_times(ops: Iterable[Op]) -> list[float]:
    return sorted(op.time for op in ops
                  if op.f == "dequeue" and op.type == "ok" and op.process.startswith("consumer-"))


def throughput(ops: Iterable[Op], lo: float = 0.1, hi: float = 0.9) -> float | None:
    """Messages finished per second between the ``lo`` and ``hi`` quantiles of finish times."""
    times = _consumer_done_times(ops)
    if len(times) < 10:
        return None
    i, j = math.floor(lo * (len(times) - 1)), math.ceil(hi * (len(times) - 1))
    span = times[j] - times[i]
    return (j - i) / span if span > 0 else None


def redeliveries(ops: Iterable[Op]) -> int:
    return sum(1 for op in ops if op.f == "deliver" and isinstance(op.value, dict)
               and op.value.get("redelivered"))


def latencies(ops: Iterable[Op]) -> tuple[Summary, Summary, dict[int, int]]:
    """Response time (ms, submit invoke to answer), time to voucher (s, submit to the first
    grant) and the count of each answered status."""
    started: dict[str, float] = {}
    granted: set[str] = set()
    response, to_voucher = Summary(), Summary()
    statuses: dict[int, int] = {}
    for op in ops:
        if op.f == "submit" and op.msg_id is not None:
            if op.type == "invoke":
                started[op.msg_id] = op.time
                continue
            if op.msg_id in started:
                response.add((op.time - started[op.msg_id]) * 1000.0)
            status = op.value.get("status") if isinstance(op.value, dict) else None
            if isinstance(status, int):
                statuses[status] = statuses.get(status, 0) + 1
        elif op.f == "grant" and op.type == "ok" and op.msg_id in started and op.msg_id not in granted:
            granted.add(op.msg_id)
            to_voucher.add(op.time - started[op.msg_id])
    return response, to_voucher, statuses


def history_metrics(ops: list[Op], cfg: FlashSaleConfig, granted: int) -> dict[str, Any]:
    """The metrics both worlds report the same way (the ``mqlab run`` keys where they exist)."""
    response, to_voucher, statuses = latencies(ops)
    rate = throughput(ops)
    valid_share = 1.0 - cfg.invalid_fraction
    return {
        "submissions": cfg.submissions,
        "accepted": statuses.get(200, 0),
        "refused": sum(n for s, n in statuses.items() if s != 200),
        "timeouts": 0,
        "vouchers_granted": granted,
        "expected_vouchers": min(cfg.offered_stock, round(cfg.submissions * valid_share))
        if not cfg.invalid_fraction else None,
        "response_ms": response.to_dict(),
        "time_to_voucher_s": to_voucher.to_dict(),
        "throughput_per_s": None if rate is None else round(rate, 3),
        "redeliveries": redeliveries(ops),
        "history_ops": len(ops),
    }


# --------------------------------------------------------------------------- the final drain

def final_drain(admin: Ports, limit: int = 1_000_000) -> tuple[int, int]:
    """Jepsen's final read: take (and ack) what is left in the queue and the dead-letter queue.

    Leftovers of the main queue are recorded as ``dequeue`` with outcome ``drained`` (they were
    not lost: the broker still had them); dead-lettered copies as ``info dead-letter``.
    """
    rec = admin.history.record
    counts = []
    for queue, f, kind in ((QUEUE, "dequeue", "ok"), (DEAD_LETTER_QUEUE, "dead-letter", "info")):
        n = 0
        while n < limit:
            delivery = admin.broker.get(queue)
            if delivery is None:
                break
            msg = delivery.message
            rec(kind, f, DRAIN, {"outcome": "drained"} if f == "dequeue" else None,
                msg_id=msg.message_id, corr_id=msg.correlation_id)
            admin.broker.ack(delivery)
            n += 1
        counts.append(n)
    return counts[0], counts[1]


# --------------------------------------------------------------------------- the audit

def audit_state(admin: Ports, cfg: FlashSaleConfig, *, drained: int, dead_lettered: int,
                history_granted: int) -> dict[str, Any]:
    """Count the real state and check it adds up; independent of the history."""
    db = admin.db
    offered = cfg.offered_stock
    ledger = db.ledger_count()
    if cfg.stock_strategy in DB_STRATEGIES:
        left, counter = db.stock_value(), "db"
    else:
        done = admin.redis.get(STOCK_KEY)
        if done.error is not None:
            raise done.error
        left, counter = done.value, "redis"
    left = int(left) if left is not None else None
    try:
        ready = admin.broker.queue_depth(QUEUE)
        dead = admin.broker.queue_depth(DEAD_LETTER_QUEUE)
    except ServiceDown:
        ready = dead = None
    taken = None if left is None else offered - left
    return {
        "ledger_rows": ledger,
        "processed_rows": db.processed_count(),
        "submission_rows": db.submission_count(),
        "outbox_unpublished": len(db.outbox_unpublished(10_000)),
        "stock_counter": counter,
        "stock_left": left,
        "offered_stock": offered,
        "taken_from_stock": taken,
        # vouchers taken from the counter with no ledger row (a process died between the two)
        "stock_leaked": None if taken is None else taken - ledger,
        "reconciled": taken == ledger,
        "oversold": max(0, ledger - offered),
        "ledger_matches_history": ledger == history_granted,
        "drained_at_end": drained,
        "dead_lettered": dead_lettered,
        "queue_ready_after_drain": ready,
        "dead_letter_ready_after_drain": dead,
    }
