"""Run one flash-sale schedule in the SimPy world and check §3's invariants on what happened.

Each ``inv_*`` function returns a list of problems (empty: the invariant held), so a test can
report every broken invariant of a schedule at once, together with the command that replays
it.  The checks read the Jepsen-style history (``world.history.ops``), the checker's counts,
and, where the history cannot say, the world's own state at quiescence.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from simulator.checker import CheckResult
from simulator.config import FlashSaleConfig
from simulator.errors import InputError
from simulator.flow import QUEUE, STOCK_KEY
from simulator.history import Op
from simulator.schedules import reproducer
from simulator.sim.world import World

Check = Callable[["Observed"], list[str]]

# The safe architecture of the lessons: every knob that trades safety away is on its safe side.
SAFE: dict[str, Any] = dict(ack="manual", dedupe="db", confirms=True, mandatory=True, durable=True,
                            persistent=True, write_pattern="publish", reseed="ledger")

@dataclass
class Observed:
    config: FlashSaleConfig
    world: World
    result: CheckResult
    ops: list[Op]
    peak_window: dict[str, int] = field(default_factory=dict)   # consumer -> most held at once
    depth_at_restart: list[int] = field(default_factory=list)   # main queue depth at each broker restart

    @property
    def counts(self) -> dict[str, Any]:
        return self.result.counts

    def crashes(self, process: str | None = None) -> list[Op]:
        return [op for op in self.ops if op.f == "crash" and (process is None or op.process == process)]

    def command(self) -> str:
        return reproducer(self.config)


def observe(config: FlashSaleConfig) -> Observed:
    """Run ``config`` to quiescence (and the final drain), watching the consumers' windows."""
    world = World(config)
    peak: dict[str, int] = defaultdict(int)
    depths: list[int] = []

    def watch(op: Op) -> None:
        # a History sink sees every op as it is recorded; it changes nothing in the run
        for consumer in world.consumers:
            ch = consumer.channel
            if ch is None or not ch.open:
                continue
            # auto-ack deliveries are in no unacked count: what waits in the buffer is the window
            held = ch.unacked_count if not ch.auto_ack else ch.buffered
            peak[consumer.name] = max(peak[consumer.name], held)
        if op.f == "restart" and op.process == "broker":
            try:
                depths.append(world.broker.depth(QUEUE) + world.broker.unacked(QUEUE))
            except InputError:
                depths.append(0)  # a transient queue is gone until the world redeclares it

    world.history.add_sink(watch)
    world.run()
    return Observed(config, world, world.checker.result(), list(world.history.ops), dict(peak), depths)


def assert_holds(obs: Observed, *checks: Check) -> None:
    problems = [f"{check.__name__}: {p}" for check in checks for p in check(obs)]
    assert not problems, ("invariant violated on this schedule:\n  " + "\n  ".join(problems[:12])
                          + f"\nreproduce with:\n  {obs.command()}")


# --------------------------------------------------------------------------- helpers

def _by(ops: list[Op], f: str, type_: str | None = "ok") -> list[Op]:
    return [op for op in ops if op.f == f and (type_ is None or op.type == type_)]


def _outcomes(ops: list[Op]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for op in _by(ops, "dequeue"):
        if isinstance(op.value, dict):
            out[op.msg_id].add(op.value.get("outcome"))
    return out


def _first(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (" ..." if len(items) > n else "")


# --------------------------------------------------------------------------- §3 invariants

def inv1_conservation(obs: Observed) -> list[str]:
    """total-queue after the final drain: nothing promised is lost, nothing unexpected."""
    c = obs.counts
    return [f"{k}={c[k]}" for k in ("lost", "unexpected") if c[k]]


def inv2_exactly_once(obs: Observed) -> list[str]:
    """At most one voucher per message, and one processed row per distinct delivered message."""
    problems = []
    grants = Counter(op.msg_id for op in _by(obs.ops, "grant"))
    twice = sorted(m for m, n in grants.items() if n > 1)
    if twice or obs.counts["double_granted"]:
        problems.append(f"double grants for {_first(twice)} (checker: {obs.counts['double_granted']})")
    if obs.config.dedupe == "db":
        outcomes = _outcomes(obs.ops)
        delivered = {op.msg_id for op in _by(obs.ops, "deliver")}
        valid = {m for m in delivered if "invalid" not in outcomes.get(m, set())}
        # a delivered message whose publish was never confirmed may die with its consumer and
        # a broker crash before anyone processed it (the producer was told it failed): it need
        # not have a row, but every confirmed or dequeued one must
        promised = ({op.msg_id for op in _by(obs.ops, "enqueue")}
                    | {op.msg_id for op in _by(obs.ops, "dequeue")})
        must = valid & promised
        rows = obs.world.db.processed_count()
        if not len(must) <= rows <= len(valid):
            problems.append(f"|PROCESSED|={rows} but {len(must)} to {len(valid)} distinct valid "
                            f"messages were delivered and must have a row")
    return problems


def inv3_no_oversell(obs: Observed) -> list[str]:
    """Never more vouchers than stock; the Lua gate never goes below zero."""
    problems = []
    stock = obs.config.stock
    issued = obs.world.db.ledger_count()
    if obs.counts["oversold"] or issued > stock:
        problems.append(f"oversold: {issued} vouchers from a stock of {stock} "
                        f"(checker oversold={obs.counts['oversold']})")
    negative = [op for op in _by(obs.ops, "stock") if op.value["left"] < 0]
    if negative:
        problems.append(f"stock gate went below zero: {negative[0]}")
    return problems


def _stock_sides(obs: Observed) -> tuple[int, int, int] | None:
    cfg, world = obs.config, obs.world
    if cfg.stock_strategy in ("db-update", "db-read-then-write"):
        left = world.db.stock_value()
    else:
        value = world.redis.peek(STOCK_KEY)
        if value is None and not world.redis.up:
            # The run went quiet while Redis was still down (its restart not yet due), and the
            # final drain heals only the broker.  Read the state the pending restart would
            # give: the world reseeds a missing key from the ledger, or naively to the full offer.
            value = cfg.offered_stock - (world.db.ledger_count() if cfg.reseed == "ledger" else 0)
        if value is None:
            return None
        left = max(int(value), 0)  # DECR keeps counting refusals below zero (redis-decr)
    return left, world.db.ledger_count(), cfg.offered_stock


def inv4_stock_bounded(obs: Observed) -> list[str]:
    """At quiescence the stock still on sale plus what was issued never exceeds the offer."""
    sides = _stock_sides(obs)
    if sides is None:
        return ["the stock key is missing at quiescence"]
    left, issued, offered = sides
    return [] if left + issued <= offered else [f"stock {left} + issued {issued} > offered {offered}"]


def inv4_stock_conserved(obs: Observed) -> list[str]:
    """At quiescence stock + issued == offered: no reservation leaked or was counted twice."""
    sides = _stock_sides(obs)
    if sides is None:
        return ["the stock key is missing at quiescence"]
    left, issued, offered = sides
    return [] if left + issued == offered else [f"stock {left} + issued {issued} != offered {offered}"]


def inv5_confirmed_survives(obs: Observed) -> list[str]:
    """Every confirmed publish is dequeued (by a consumer or the final drain)."""
    if not obs.config.confirms:
        return []
    confirmed = {op.msg_id for op in _by(obs.ops, "enqueue")}
    dequeued = {op.msg_id for op in _by(obs.ops, "dequeue")}
    gone = sorted(confirmed - dequeued)
    return [f"confirmed but lost: {_first(gone)}"] if gone else []


def inv6_loss_window(obs: Observed) -> list[str]:
    """Confirms off: each lost message was published within the fsync window before a crash."""
    broker = obs.world.broker
    window = broker.fsync_interval + broker.publish_latency + 1e-9
    sent: dict[str, float] = {}
    drops: dict[str, Op] = {}
    problems = []
    for op in obs.ops:
        if op.f == "enqueue" and op.type == "ok":
            sent[op.msg_id] = op.time
        elif op.f == "drop" and op.msg_id is not None:
            drops[op.msg_id] = op
            reason = op.value.get("reason") if isinstance(op.value, dict) else None
            if reason not in ("unflushed", "in-flight"):
                problems.append(f"{op.msg_id} dropped for {reason!r}, outside any fsync window")
            elif op.msg_id in sent and op.time - sent[op.msg_id] > window:
                problems.append(f"{op.msg_id} published at t={sent[op.msg_id]:.3f}, lost at "
                                f"t={op.time:.3f}: older than the {window:.3f} s window")
    dequeued = {op.msg_id for op in _by(obs.ops, "dequeue")}
    silent = sorted(m for m in sent if m not in dequeued and m not in drops)
    if silent:
        problems.append(f"lost with no broker drop to explain it: {_first(silent)}")
    return problems


def inv6_auto_ack_loss_needs_a_consumer_crash(obs: Observed) -> list[str]:
    """Auto-ack, broker untouched: a lost message was in a consumer's hands - handed to its
    handler (which then failed: nothing brings an auto-acked message back) or waiting in the
    consumer's buffer when it died."""
    if not obs.counts["lost"]:
        return []
    crashes = [op.time for op in obs.ops if op.f == "crash" and op.process.startswith("consumer-")]
    last_crash = max(crashes, default=float("-inf"))
    dequeued = {op.msg_id for op in _by(obs.ops, "dequeue")}
    handed = {op.msg_id for op in _by(obs.ops, "deliver")}
    # the publish attempt, not its confirm: the copy may reach a consumer's buffer before the
    # broker's fsync tick confirms it
    unexplained = sorted(op.msg_id for op in _by(obs.ops, "enqueue", "invoke")
                         if op.msg_id not in dequeued and op.msg_id not in handed
                         and op.time > last_crash)
    return [f"lost but never in a consumer's hands: {_first(unexplained)}"] if unexplained else []


def inv7_transient_vanish(obs: Observed) -> list[str]:
    """Transient messages do not come back after a broker restart; persistent ones are not
    dropped as transient."""
    problems = []
    if obs.config.persistent:
        transient = [op for op in obs.ops if op.f == "drop" and isinstance(op.value, dict)
                     and op.value.get("reason") == "transient"]
        if transient:
            problems.append(f"a persistent message dropped as transient: {transient[0]}")
        return problems
    if any(obs.depth_at_restart):
        problems.append(f"queue not empty right after a restart: {obs.depth_at_restart}")
    # A copy already in a consumer's buffer may still be handled after the crash (its ack
    # will fail); what must not happen is the broker handing it out again after restarting.
    dropped: dict[str, float] = {}
    gone: dict[str, float] = {}  # dropped, and the broker has restarted since
    for op in obs.ops:
        if op.f == "drop" and op.msg_id and isinstance(op.value, dict) and op.value.get("reason") == "transient":
            dropped[op.msg_id] = op.time
        elif op.f == "restart" and op.process == "broker":
            gone.update(dropped)
            dropped.clear()
        elif op.f == "enqueue" and op.type == "invoke":
            dropped.pop(op.msg_id, None)  # published again: a new copy may legitimately arrive
            gone.pop(op.msg_id, None)
        elif op.f == "deliver" and op.msg_id in gone:
            problems.append(f"{op.msg_id} dropped as transient at t={gone[op.msg_id]:.3f} "
                            f"but delivered again at t={op.time:.3f}, after the restart")
    return problems


def inv9_redelivered_flag(obs: Observed) -> list[str]:
    """redelivered=False only on a copy's first delivery: never more fresh deliveries of a
    msg_id than copies published so far."""
    return redelivered_flag_problems(obs.ops)


def redelivered_flag_problems(ops: list[Op]) -> list[str]:
    copies: Counter[str] = Counter()
    fresh: Counter[str] = Counter()
    problems = []
    for op in ops:
        if op.f == "enqueue" and op.type == "invoke":
            copies[op.msg_id] += 1
        elif op.f == "deliver" and isinstance(op.value, dict) and not op.value.get("redelivered"):
            fresh[op.msg_id] += 1
            if fresh[op.msg_id] > copies[op.msg_id]:
                problems.append(f"{op.msg_id} delivered with redelivered=False at t={op.time:.3f} "
                                f"after an earlier delivery of its only copy")
    return problems


def inv13_schema_gate(obs: Observed) -> list[str]:
    """Invalid payloads never reach the business handler, and (manual ack, broker never
    crashed) each rejection lands in the dead-letter queue."""
    ops = obs.ops
    invalid_dq = [op.msg_id for op in _by(ops, "dequeue") if op.value.get("outcome") == "invalid"]
    invalid = set(invalid_dq)
    touched = {op.msg_id for op in ops if op.f in ("grant", "stock", "compensate")}
    problems = []
    if invalid & touched:
        problems.append(f"invalid payloads reached the handler: {_first(sorted(invalid & touched))}")
    if obs.config.ack == "manual" and not obs.crashes("broker"):
        dead = Counter(op.msg_id for op in ops if op.f == "dead-letter")
        if dead != Counter(invalid_dq):
            problems.append(f"dead-letter queue holds {sum(dead.values())} copies, "
                            f"{len(invalid_dq)} rejections were recorded")
    return problems


def inv14_outbox_atomic(obs: Observed) -> list[str]:
    """No ghost (event without its row) and no orphan (row never published)."""
    c = obs.counts
    return [f"{k}={c[k]}" for k in ("ghost", "orphan") if c[k]]


def inv15_relay_liveness(obs: Observed) -> list[str]:
    """Every outbox row gets published; relay duplicates only for rows in flight at a crash."""
    problems = []
    left = obs.world.db.outbox_unpublished(5)
    if left:
        problems.append(f"outbox rows never published: {[m for m, _ in left]}")
    relay_ok = Counter(op.msg_id for op in _by(obs.ops, "enqueue") if op.process == "relay")
    repeated = sum(1 for n in relay_ok.values() if n > 1)
    allowance = len(obs.crashes("relay")) + len(obs.crashes("db"))
    if repeated > allowance:
        problems.append(f"{repeated} rows published twice by the relay with only {allowance} "
                        f"relay/db crashes to explain them")
    return problems


def inv16_compensation(obs: Observed) -> list[str]:
    """A message is never given back more decrements than it took."""
    # a redelivery that reuses its message's hold took nothing new
    taken = Counter(op.msg_id for op in _by(obs.ops, "stock") if not op.value.get("reused"))
    given = Counter(op.msg_id for op in _by(obs.ops, "compensate"))
    extra = sorted(m for m, n in given.items() if n > taken[m])
    return [f"compensated more than decremented: {_first(extra)}"] if extra else []


TERMINAL = ("issued", "sold_out", "rejected_invalid", "duplicate_only", "drained",
            "publish_failed", "indeterminate")


def terminal_states(ops: list[Op]) -> tuple[dict[str, str], list[str]]:
    """Each submission's one terminal state, and what contradicts 'exactly one'."""
    completions: Counter[str] = Counter()
    submitted: dict[str, str] = {}
    for op in ops:
        if op.f == "submit":
            if op.type == "invoke":
                submitted[op.msg_id] = ""
            else:
                completions[op.msg_id] += 1
                submitted[op.msg_id] = op.type
    granted = {op.msg_id for op in _by(ops, "grant")}
    outcomes = _outcomes(ops)
    problems = [f"{m}: {n} answers to one submission" for m, n in completions.items() if n != 1]
    problems += [f"{m}: never answered" for m in submitted if completions[m] == 0]
    first_grant = {}
    for op in _by(ops, "grant"):
        first_grant.setdefault(op.msg_id, op.index)
    for op in _by(ops, "dequeue"):
        outcome = op.value.get("outcome") if isinstance(op.value, dict) else None
        if outcome == "invalid" and op.msg_id in granted:
            problems.append(f"{op.msg_id}: granted and also rejected as invalid")
        elif outcome == "sold_out" and op.index < first_grant.get(op.msg_id, -1):
            problems.append(f"{op.msg_id}: answered sold_out, then granted a voucher")
    states: dict[str, str] = {}
    for m, answer in submitted.items():
        seen = outcomes.get(m, set())
        if m in granted:
            states[m] = "issued"
        elif "sold_out" in seen:
            states[m] = "sold_out"
        elif "invalid" in seen:
            states[m] = "rejected_invalid"
        elif "duplicate" in seen:
            states[m] = "duplicate_only"
        elif "drained" in seen:
            states[m] = "drained"
        elif answer == "fail":
            states[m] = "publish_failed"
        elif answer == "info":
            states[m] = "indeterminate"
        else:
            problems.append(f"{m}: accepted ({answer or 'no answer'}) but in no terminal state")
    return states, problems


def inv17_terminal_closure(obs: Observed) -> list[str]:
    """Every submission gets one answer and ends in exactly one terminal state."""
    return terminal_states(obs.ops)[1]


def sold_out_after_grant(ops: list[Op]) -> list[str]:
    """Redeliveries of an already granted message labelled ``sold_out`` instead of ``duplicate``
    (kept apart from inv17: the request's state is right, the delivery's label is not)."""
    granted_at: dict[str, int] = {}
    for op in _by(ops, "grant"):
        granted_at.setdefault(op.msg_id, op.index)
    return [op.msg_id for op in _by(ops, "dequeue")
            if isinstance(op.value, dict) and op.value.get("outcome") == "sold_out"
            and op.index > granted_at.get(op.msg_id, 1 << 62)]


def correlation_problems(ops: list[Op]) -> list[str]:
    corr: dict[str, str] = {}
    problems = []
    for op in ops:
        if op.f == "submit" and op.type == "invoke":
            corr[op.msg_id] = op.corr_id
    for op in ops:
        if op.msg_id is None:
            continue
        if op.msg_id not in corr:
            problems.append(f"op {op.index} ({op.f}) carries {op.msg_id}, which nobody submitted")
        elif op.corr_id is not None and op.corr_id != corr[op.msg_id]:
            problems.append(f"op {op.index} ({op.f}) of {op.msg_id} carries corr_id {op.corr_id}, "
                            f"submitted as {corr[op.msg_id]}")
        elif op.corr_id is None and op.f in ("grant", "enqueue", "deliver", "dequeue", "save"):
            problems.append(f"op {op.index} ({op.f}) of {op.msg_id} lost its corr_id")
    return problems


def inv18_correlation(obs: Observed) -> list[str]:
    """Every op about a message carries the corr_id it was submitted with."""
    return correlation_problems(obs.ops)


def inv19_aof_always_loses_nothing(obs: Observed) -> list[str]:
    if obs.config.redis_persistence != "aof-always":
        return []
    lost = [op.value["lost_writes"] for op in obs.crashes("redis") if op.value.get("lost_writes")]
    return [f"appendfsync always lost {lost} writes"] if lost else []


def redis_lost_writes(obs: Observed) -> int:
    return sum(int(op.value.get("lost_writes", 0)) for op in obs.crashes("redis"))


def redis_lost_decrements(obs: Observed) -> int:
    """Units Redis crashes put back on the stock key (a reservation also writes a hold)."""
    return sum(int(op.value.get("counters_rolled_back", {}).get(STOCK_KEY, 0))
               for op in obs.crashes("redis"))


def inv20_safety_stock(obs: Observed) -> list[str]:
    """A Redis loss of at most safety_stock decrements cannot oversell."""
    if redis_lost_decrements(obs) > obs.config.safety_stock:
        return []
    return inv3_no_oversell(obs)


def inv21_prefetch_bound(obs: Observed) -> list[str]:
    """Manual ack: a consumer never holds more unacked deliveries than its prefetch."""
    limit = obs.config.prefetch
    if obs.config.ack != "manual" or limit == 0:
        return []
    over = {name: n for name, n in obs.peak_window.items() if n > limit}
    return [f"unacked above prefetch {limit}: {over}"] if over else []


def window_exceeds_prefetch(obs: Observed) -> bool:
    limit = obs.config.prefetch or 1
    return any(n > limit for n in obs.peak_window.values())


# --------------------------------------------------------------------------- profiles

def profile_name() -> str:
    import os

    return os.environ.get("MQLAB_HYPOTHESIS_PROFILE", "ci").strip() or "ci"
