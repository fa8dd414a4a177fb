"""The flash-sale flow, written once for every world.

Each step is a generator that ``yield``s port operations (see ``simulator.ports``) and
records what happened in the history.  The SimPy world runs these generators as SimPy
processes; the real world runs them with ``simulator.ports.drive``.  Nothing in this module
knows which world it is in.

Steps, in the order a submission meets them::

    accept (API) -> publish -> deliver (consumer) -> schema gate -> dedupe -> take stock
                 -> ledger (+ processed id, one transaction) -> send voucher -> ack
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulator.config import DB_STRATEGIES, REDIS_STRATEGIES
from simulator.errors import ServiceDown
from simulator.messages import Delivery, Message, payload_error
from simulator.ports import Ports, Step

EXCHANGE = "gift"
QUEUE = "gift.submissions"
DEAD_LETTER_EXCHANGE = "gift.dlx"
DEAD_LETTER_QUEUE = "gift.dead"
ROUTING_KEY = "survey.submitted"
STOCK_KEY = "stock:gift"

# Named places where a process can die mid-flow (the crash-point explorer of the outbox lesson).
CRASH_POINTS = (
    "api:after-save",         # db-then-publish: the row is committed, the event not yet sent
    "api:after-publish",      # publish-then-db: the event is out, the row not yet committed
    "consumer:after-stock",   # a voucher was taken from stock, the ledger not yet written
    "consumer:after-commit",  # the ledger row is committed, the ack not yet sent
    "relay:after-publish",    # the relay published an outbox row but did not mark it
)
WRITE_PATTERNS = ("publish", "db-then-publish", "publish-then-db", "outbox")


@dataclass(frozen=True, slots=True)
class Policy:
    """The design decisions a lesson switches; see ``FlashSaleConfig`` for their meaning."""

    mode: str = "async"
    stock_strategy: str = "redis-lua"
    dedupe: str = "db"
    ack: str = "manual"
    confirms: bool = True
    mandatory: bool = True
    write_pattern: str = "publish"
    publish_retries: int = 3
    retry_backoff_s: float = 0.5

    @classmethod
    def from_config(cls, cfg: Any) -> "Policy":
        return cls(mode=cfg.mode, stock_strategy=cfg.stock_strategy, dedupe=cfg.dedupe,
                   ack=cfg.ack, confirms=cfg.confirms, mandatory=cfg.mandatory,
                   write_pattern=cfg.write_pattern, publish_retries=cfg.publish_retries)


def checkpoint(ports: Ports, point: str, process: str) -> Step:
    """A named crash point: the world's fault hook may kill ``process`` here."""
    if ports.faults is not None:
        yield ports.faults.point(point, process)


def _order(msg: Message) -> dict[str, Any]:
    body = msg.body if isinstance(msg.body, dict) else {}
    return {"key": msg.key, "seq": body["seq"]} if "seq" in body else {}


# --------------------------------------------------------------------------- producer side

def publish(ports: Ports, policy: Policy, msg: Message, process: str,
            exchange: str = EXCHANGE) -> Step:
    """Publish with the policy's confirms/mandatory; retry unconfirmed publishes.

    Returns True once the broker took responsibility (or, with confirms off, once the
    publish call returned - which promises nothing).  A retry after a lost confirm is how a
    safe producer turns loss into a possible duplicate.
    """
    rec = ports.history.record
    for attempt in range(policy.publish_retries + 1):
        rec("invoke", "enqueue", process, _order(msg) or None, msg_id=msg.message_id,
            corr_id=msg.correlation_id)
        try:
            answer = yield ports.broker.publish(exchange, msg.routing_key, msg,
                                                mandatory=policy.mandatory, confirm=policy.confirms)
        except ServiceDown as exc:
            rec("info", "enqueue", process, {"error": str(exc)}, msg_id=msg.message_id,
                corr_id=msg.correlation_id)
            if attempt < policy.publish_retries:
                yield ports.clock.sleep(policy.retry_backoff_s * (attempt + 1))
            continue
        if answer in ("ack", "sent"):
            rec("ok", "enqueue", process, _order(msg) or None, msg_id=msg.message_id,
                corr_id=msg.correlation_id)
            return True
        rec("fail", "enqueue", process, {"answer": answer}, msg_id=msg.message_id,
            corr_id=msg.correlation_id)
        return False  # returned (unroutable) or nacked (queue full): retrying will not help
    return False


def accept(ports: Ports, policy: Policy, msg: Message, process: str) -> Step:
    """The API's handling of one submission; returns the HTTP status it answers with.

    async: save (outbox) or publish, then 200 at once.  sync: the whole grant inside the
    request, the seed's "before" picture.
    """
    user = msg.key
    if policy.mode == "sync":
        if payload_error(msg.body) is not None:
            return 400
        try:
            outcome = yield from grant_voucher(ports, policy, msg, process)
        except ServiceDown:
            return 503
        # the request itself was the unit of work: record it as handled, as a consumer would
        ports.history.record("ok", "dequeue", process, {"outcome": outcome, **_order(msg)},
                             msg_id=msg.message_id, corr_id=msg.correlation_id)
        return 200
    pattern = policy.write_pattern
    if pattern == "outbox":
        # the row and its event in ONE transaction; the relay publishes later
        saved = yield from save(ports, msg, process, with_outbox=True)
        return 200 if saved else 503
    if pattern == "db-then-publish":
        if not (yield from save(ports, msg, process)):
            return 503
        yield from checkpoint(ports, "api:after-save", process)
        ok = yield from publish(ports, policy, msg, process)
        return 200 if ok else 503
    if pattern == "publish-then-db":
        if not (yield from publish(ports, policy, msg, process)):
            return 503
        yield from checkpoint(ports, "api:after-publish", process)
        saved = yield from save(ports, msg, process)
        return 200 if saved else 503
    ok = yield from publish(ports, policy, msg, process)
    return 200 if ok else 503


def save(ports: Ports, msg: Message, process: str, *, with_outbox: bool = False) -> Step:
    """Commit the submission row (and, for the outbox pattern, its event row with it)."""
    rec = ports.history.record
    mid, corr = msg.message_id, msg.correlation_id
    rec("invoke", "save", process, {"user": msg.key}, msg_id=mid, corr_id=corr)
    try:
        tx = yield ports.db.begin()
        yield tx.insert_submission(mid, msg.key)
        if with_outbox:
            yield tx.insert_outbox(mid, msg)
        yield tx.commit()
    except ServiceDown:
        rec("fail", "save", process, None, msg_id=mid, corr_id=corr)
        return False
    rec("ok", "save", process, None, msg_id=mid, corr_id=corr)
    return True


# --------------------------------------------------------------------------- consumer side

def take_stock(ports: Ports, policy: Policy, tx: Any = None) -> Step:
    """Take one voucher from stock with the policy's strategy; the new level, or None if none."""
    strategy = policy.stock_strategy  # redis-lua reserves per message: _take_redis_stock
    if strategy == "redis-decr":
        left = yield ports.redis.decr(STOCK_KEY)
        return left if left >= 0 else None  # DECR below zero is a refusal, not a grant
    if strategy == "redis-get-set":
        # the race the lesson shows: another consumer can run between GET and SET
        current = yield ports.redis.get(STOCK_KEY)
        if current is None or int(current) <= 0:
            return None
        yield ports.redis.set(STOCK_KEY, int(current) - 1)
        return int(current) - 1
    if strategy == "db-update":
        return (yield tx.decrement_stock())  # UPDATE ... WHERE stock > 0 under the row lock
    if strategy == "db-read-then-write":
        current = yield tx.read_stock()
        if current <= 0:
            return None
        yield tx.write_stock(current - 1)
        return current - 1
    raise ValueError(f"stock_strategy: unknown {strategy!r}")


def grant_voucher(ports: Ports, policy: Policy, msg: Message, process: str) -> Step:
    """Dedupe, take stock, commit the ledger row, send the voucher.

    Returns ``granted``, ``sold_out`` or ``duplicate``.  Raises ``ServiceDown`` when a store
    is down; the caller then leaves the message unacked so it comes back.
    """
    rec = ports.history.record
    mid, corr, user = msg.message_id, msg.correlation_id, msg.key
    yield ports.db.login(user)  # authenticate: the member lookup the seed says drags down logins
    if policy.dedupe == "redis" and not (yield ports.redis.set_nx(f"seen:{mid}", 1)):
        return "duplicate"
    redis_left, fresh = None, False
    if policy.stock_strategy in REDIS_STRATEGIES:
        redis_left, fresh = yield from _take_redis_stock(ports, policy, mid, process)
        if redis_left is None:
            # an earlier delivery may have answered this message already (its ack was lost):
            # then this is a duplicate, not a sold-out answer
            if policy.dedupe == "db" and not (yield from _record_outcome(ports, mid)):
                return "duplicate"
            return "sold_out"
        rec("ok", "stock", process, {"left": redis_left} if fresh else
            {"left": redis_left, "reused": True}, msg_id=mid, corr_id=corr)
        yield from checkpoint(ports, "consumer:after-stock", process)
    began = False
    try:
        # begin() is inside the try: a DB that drops before BEGIN must give the stock back too
        tx = yield ports.db.begin()
        began = True
        if policy.dedupe == "db" and not (yield tx.insert_processed(mid)):
            yield tx.rollback()
            # another delivery answered this message (the unique key waited for its commit).
            # A plain decrement made here is extra: give it back.  The Lua hold goes back only
            # if no ledger row holds it (and only by its current owner; see compensate).
            if policy.stock_strategy == "redis-lua":
                if not (yield ports.db.has_voucher(mid)):
                    yield from compensate(ports, policy, msg, process)
            elif fresh:
                yield from compensate(ports, policy, msg, process)
            return "duplicate"
        if policy.stock_strategy in DB_STRATEGIES:
            left = yield from take_stock(ports, policy, tx)
            if left is None:
                yield tx.commit()  # keeps the processed row: a sold-out answer is an outcome too
                return "sold_out"
            rec("ok", "stock", process, {"left": left}, msg_id=mid, corr_id=corr)
        yield tx.insert_ledger(mid, user)
        yield tx.commit()
    except ServiceDown:
        # Give the unit back only if no transaction began.  After BEGIN a failed COMMIT may
        # still have been applied, so the Lua hold stays for the redelivery to take over; a
        # taken-over hold always stays (its ledger row may exist).  Plain DECR has no hold.
        if fresh and (not began or policy.stock_strategy != "redis-lua"):
            yield from compensate(ports, policy, msg, process)
        raise
    rec("ok", "grant", process, {"user": user}, msg_id=mid, corr_id=corr)
    sent = yield ports.gateway.send(user, mid)
    rec("ok" if sent else "fail", "send", process, None, msg_id=mid, corr_id=corr)
    return "granted"


def _take_redis_stock(ports: Ports, policy: Policy, msg_id: str, process: str) -> Step:
    """``(left, fresh)``: the level after taking a unit (None when sold out), and whether this
    call took it.  The Lua strategy reserves per message, so a redelivery after a crash takes
    over its earlier unit (fresh False) instead of taking another."""
    if policy.stock_strategy == "redis-lua":
        left, fresh = yield ports.redis.reserve(STOCK_KEY, msg_id, process)
        return (left if left >= 0 else None), fresh
    left = yield from take_stock(ports, policy)
    return left, left is not None


def _record_outcome(ports: Ports, msg_id: str) -> Step:
    """Remember that a message was answered (sold out), so redeliveries and the
    reconciliation batch treat it as handled; False if it had been answered before."""
    tx = yield ports.db.begin()
    if (yield tx.insert_processed(msg_id)):
        yield tx.commit()
        return True
    yield tx.rollback()
    return False


def compensate(ports: Ports, policy: Policy, msg: Message, process: str) -> Step:
    """Give back the unit this delivery took when its DB step did not happen (a compensating
    action): the Lua strategy releases the message's hold if it still owns it, the others INCR."""
    try:
        if policy.stock_strategy == "redis-lua":
            # False when a concurrent copy of the message took the hold over: it is theirs now
            if not (yield ports.redis.release(STOCK_KEY, msg.message_id, process)):
                return False
        else:
            yield ports.redis.incr(STOCK_KEY)
    except ServiceDown:
        return False
    ports.history.record("ok", "compensate", process, None, msg_id=msg.message_id,
                         corr_id=msg.correlation_id)
    return True


def handle_delivery(ports: Ports, policy: Policy, delivery: Delivery, process: str) -> Step:
    """A consumer's handling of one delivery, ack included; returns the outcome."""
    rec = ports.history.record
    msg = delivery.message
    mid, corr = msg.message_id, msg.correlation_id
    rec("ok", "deliver", process, {"redelivered": delivery.redelivered, "ack": policy.ack},
        msg_id=mid, corr_id=corr)
    problem = payload_error(msg.body)
    if problem is not None:
        # the schema gate: an invalid payload never reaches the business handler
        rejected = ports.broker.reject(delivery, requeue=False) if policy.ack == "manual" else None
        rec("ok", "dequeue", process, {"outcome": "invalid", "error": problem},
            msg_id=mid, corr_id=corr)
        if rejected is not None:
            yield rejected
        return "invalid"
    outcome = yield from grant_voucher(ports, policy, msg, process)
    yield from checkpoint(ports, "consumer:after-commit", process)
    # basic.ack has no reply in AMQP: the broker forgets the message as the ack goes out, so
    # the dequeue is recorded then, not after the round trip (a consumer killed in between
    # has still consumed it)
    acking = ports.broker.ack(delivery) if policy.ack == "manual" else None
    rec("ok", "dequeue", process, {"outcome": outcome, **_order(msg)}, msg_id=mid, corr_id=corr)
    if acking is not None:
        acked = yield acking
        rec("ok" if acked else "fail", "ack", process, None, msg_id=mid, corr_id=corr)
    return outcome


def relay_once(ports: Ports, policy: Policy, batch: list[tuple[str, Message]],
               process: str = "relay") -> Step:
    """The outbox relay: publish each saved row, then mark it published.

    A crash between the publish and the mark makes the next pass publish it again: the
    relay is at-least-once, and the consumer's dedupe absorbs the copy.
    """
    published = 0
    for msg_id, msg in batch:
        # the row is in the outbox table, so its transaction committed: say so, because the
        # API that committed it may have died before recording its own "save ok"
        ports.history.record("ok", "save", process, {"observed": "outbox"}, msg_id=msg_id,
                             corr_id=msg.correlation_id)
        if (yield from publish(ports, policy, msg, process)):
            yield from checkpoint(ports, "relay:after-publish", process)
            yield ports.db.mark_published(msg_id)
            published += 1
    return published
