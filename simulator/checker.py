"""One streaming checker for histories from either world (Jepsen's ``total-queue`` and more).

Feed it every ``Op`` as it happens (it is a ``History`` sink) or call ``check(ops)`` on a
finished history.  Per message it keeps a few flags, two counters and a handful of recent
*steps* (see ``simulator.chains``); counts are updated as each op arrives, so ``result()``
only has to pick examples.  A message settled a while ago (first dequeued ``SETTLE_LAG``
settles back) is kept as numbers in flat arrays (``simulator.checker_store``) and brought
back exactly as it was if anything else happens to it.  ``result()`` can be called at any time; before the final drain
every message still in flight counts as ``lost`` (Jepsen's definition only holds after a
complete drain).

Counts (per ``msg_id`` unless said):

* ``attempted``: has an ``enqueue`` invoke.  ``promised``: ``enqueue`` ok or ``submit`` ok.
  ``dequeued``: has a ``dequeue`` ok (any outcome, including ``drained`` and ``invalid``).
* ``lost`` = promised − dequeued.  ``unexpected`` = dequeued, never attempted nor submitted.
  ``duplicated`` = dequeued more than once.  ``recovered`` = dequeued ∩ attempted − promised.
* ``granted`` = number of ``grant`` ok ops; ``double_granted`` = Σ (grants − 1) over messages
  with more than one; ``oversold`` = max(0, granted − stock) where ``stock`` comes from
  ``stock-init``.
* ``out_of_order``: first dequeues whose ``seq`` is below the highest already seen for its key.
* ``ghost``: published (``enqueue`` ok) but its row never committed, in a run that writes
  submission rows (some ``save`` was begun); a crash between the publish and the save leaves
  no ``save`` op for that message at all, so a begun save cannot be required.
  ``orphan``: ``save`` ok but never published.

``valid`` needs lost, unexpected, oversold, double_granted, ghost and orphan all zero;
duplicates and inversions are reported but, as in Jepsen, do not invalidate a run.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

from .chains import FAULTS, FaultLog, Step, StepMaker, holder_of, last_of, render
from .checker_store import BestByKey, ColdMessages, _Msg
from .compact import StepCodec
from .history import Op

KINDS = ("lost", "duplicated", "unexpected", "oversold", "double_granted", "out_of_order",
         "ghost", "orphan")
TOTALS = ("attempted", "promised", "dequeued", "recovered", "granted", "stock")
_INVALIDATING = ("lost", "unexpected", "oversold", "double_granted", "ghost", "orphan")

# Per-message flags.
ATTEMPTED, SUBMITTED, PROMISED, PUBLISHED, SAVE_BEGUN, SAVED = 1, 2, 4, 8, 16, 32

# Classes a message can be in, counted incrementally by diffing its class bits before and
# after each op (the order here is the bit order).
_CLASSES = ("attempted", "promised", "dequeued", "lost", "unexpected", "recovered", "ghost",
            "orphan")
_BIT = {name: 1 << i for i, name in enumerate(_CLASSES)}
_FINAL_KINDS = ("lost", "unexpected", "ghost", "orphan")  # examples picked in result()

# Ops that say nothing about one message's path (the global stock ring or nothing at all).
_NOT_PER_MESSAGE = frozenset({"stock", "reseed", "compensate", "stock-init"})
# Messages first dequeued this many settles ago move to the dense store.  Waiting avoids
# bringing most of them back at once: a publisher confirm and the client's 200 often arrive
# after the dequeue.  Any lag gives the same results; it only trades memory against time.
SETTLE_LAG = 1024

_DELIVERY_PATH = frozenset({"enqueue", "deliver", "dequeue", "ack", "drop"})


@dataclass
class Anomaly:
    kind: str
    msg_id: str | None
    key: str | None
    chain: str


@dataclass
class CheckResult:
    counts: dict[str, Any]  # ints, except ``stock`` which is None when there was no stock-init
    valid: bool
    anomalies: list[Anomaly] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, **self.counts,
                "examples": [asdict(a) for a in self.anomalies]}


def _classes(m: _Msg) -> int:
    fl, bits = m.flags, 0
    if fl & ATTEMPTED:
        bits |= _BIT["attempted"]
    if fl & PROMISED:
        bits |= _BIT["promised"]
        if not m.dq:
            bits |= _BIT["lost"]
    if m.dq:
        bits |= _BIT["dequeued"]
        if not fl & (ATTEMPTED | SUBMITTED):
            bits |= _BIT["unexpected"]
        elif fl & ATTEMPTED and not fl & PROMISED:
            bits |= _BIT["recovered"]
    if fl & PUBLISHED and not fl & SAVED:
        bits |= _BIT["ghost"]  # a candidate; only reported once the run is seen to save rows
    if fl & SAVED and not fl & PUBLISHED:
        bits |= _BIT["orphan"]
    return bits


@dataclass
class _Online:
    """An example found while streaming; its closing phrase is written in ``result()``."""

    kind: str
    msg_id: str | None
    key: str | None
    steps: list[Step]
    terminal: str | None = None


class Checker:
    """A ``History`` sink that checks a history as it streams past."""

    def __init__(self, max_examples: int = 20, *, recent: int = 6, settle_lag: int = SETTLE_LAG):
        self.max_examples = max_examples
        self.settle_lag = settle_lag  # see SETTLE_LAG
        # Steps kept per message besides the ones pinned at its first dequeue; recent=0 drops
        # chains' per-message steps.  A settled message with at most four steps costs about
        # 75 bytes in the dense store (checker_store); one with more stays an object (~0.5 KB).
        self.recent = recent
        self._msgs: dict[str, _Msg] = {}  # messages still in flight (or not settled densely)
        self._seen = 0  # messages first seen so far: each one's ``order``
        codec = StepCodec()
        # Settled messages and the per-key order state, kept as numbers (see checker_store):
        # a million-message run would otherwise hold a kilobyte of objects per message.
        self._cold = ColdMessages(codec)
        self._settling: deque[str] = deque()  # first dequeued recently, oldest first
        self._counts = {name: 0 for name in (*KINDS, *TOTALS)}
        self._stock: int | None = None
        self._stock_init: Step | None = None
        self._stock_ops: deque[Step] = deque(maxlen=3)  # latest stock/reseed/compensate steps
        self._keys = BestByKey(codec)  # key -> (highest seq, its dequeue step)
        self._online: dict[str, list[_Online]] = {k: [] for k in KINDS}
        self._faults = FaultLog()
        self._saving = False  # some save began: every published message then needs its row
        self._step = StepMaker()

    # -- streaming -------------------------------------------------------------------------

    def __call__(self, op: Op) -> None:
        f = op.f
        if f in FAULTS and (f != "drop" or op.msg_id is None):
            self._faults.add(self._step(op))
            return
        if f == "stock-init":
            if self._stock is None and isinstance(op.value, dict) and op.value.get("stock") is not None:
                self._stock = int(op.value["stock"])
                self._stock_init = self._step(op)
            return
        if f in ("stock", "reseed", "compensate"):
            self._stock_ops.append(self._step(op))
            return
        if f == "send":
            return  # the gateway call explains no anomaly the checker reports
        step = self._step(op)
        if f == "grant" and op.type == "ok":
            self._counts["granted"] += 1
            self._note_oversold(step)
        if op.msg_id is None:
            return
        msg = self._msgs.get(op.msg_id)
        if msg is None:
            msg = self._cold.pop(op.msg_id)  # settled earlier: something happened to it again
            if msg is None:
                msg = _Msg(self._seen)
                self._seen += 1
            self._msgs[op.msg_id] = msg
        before = _classes(msg)
        if f == "save" and op.type == "invoke":
            self._saving = True  # a reconciler's backfill records only "ok": it does not count
        self._set_flags(msg, op)
        self._remember(msg, step)
        if f == "dequeue" and op.type == "ok":
            msg.dq += 1
            if msg.dq == 1:
                self._settle(msg)
                self._note_order(op, step)
            elif msg.dq == 2:
                self._counts["duplicated"] += 1
                self._note_duplicate(msg, op.msg_id)
        elif f == "grant" and op.type == "ok":
            msg.grants += 1
            if msg.grants > 1:
                self._counts["double_granted"] += 1
                if msg.grants == 2:
                    self._note_double_grant(msg, op.msg_id)
        after = _classes(msg)
        if after != before:
            self._recount(before, after)
        if msg.dq == 1 and f == "dequeue" and op.type == "ok":
            self._settling.append(op.msg_id)
            if len(self._settling) > self.settle_lag:
                self._freeze(self._settling.popleft())

    def _freeze(self, msg_id: str) -> None:
        """Move a message settled a while ago to the dense store, if it fits there exactly."""
        msg = self._msgs.get(msg_id)
        if msg is not None and self._cold.put(msg_id, msg):
            del self._msgs[msg_id]  # brought back by ``_cold.pop`` if anything happens to it

    @staticmethod
    def _set_flags(msg: _Msg, op: Op) -> None:
        f, t = op.f, op.type
        if f == "enqueue":
            if t == "invoke":
                msg.flags |= ATTEMPTED
            elif t == "ok":
                msg.flags |= PROMISED | PUBLISHED
        elif f == "submit":
            msg.flags |= SUBMITTED | (PROMISED if t == "ok" else 0)
        elif f == "save":
            msg.flags |= SAVE_BEGUN | (SAVED if t == "ok" else 0)

    def _remember(self, msg: _Msg, step: Step) -> None:
        if self.recent <= 0 or step.f in _NOT_PER_MESSAGE or (step.f == "ack" and step.type == "ok"):
            return  # recent=0 keeps no steps (smallest footprint); a good ack explains nothing
        steps = msg.steps
        if step.type == "ok" and len(steps) > msg.pinned:
            last = steps[-1]
            if last.type == "invoke" and last.f == step.f and last.process == step.process:
                steps[-1] = step  # "enqueue invoke" + "enqueue ok" reads as one step; a fail
                return  # or info keeps its invoke, since a fault in between may explain it
        steps.append(step)
        if len(steps) > msg.pinned + self.recent:
            del steps[msg.pinned]

    def _settle(self, msg: _Msg) -> None:
        """First dequeue: keep only what later chains can still need (duplicate, double grant)."""
        steps = msg.steps
        if msg.flags & SAVE_BEGUN or (self._saving and not msg.flags & SAVED) or not steps:
            return  # a ghost/orphan chain may need the publish and save steps; keep them all
        deliver = last_of(steps, "deliver")
        enqueues = [s for s in steps if s.f == "enqueue"]
        # A later duplicate chain shows this delivery, a lost ack (only failed acks are kept)
        # and a republish, if any; the dequeue's outcome already says whether it granted.
        keep = [s for s in steps[:-1]
                if s is deliver or s.f == "ack" or (len(enqueues) > 1 and s.f == "enqueue")]
        keep.append(steps[-1])  # the dequeue itself
        msg.steps = keep
        msg.pinned = len(keep)

    def _recount(self, before: int, after: int) -> None:
        changed = before ^ after
        for name, bit in _BIT.items():
            if changed & bit:
                self._counts[name] += 1 if after & bit else -1

    # -- examples found while streaming ----------------------------------------------------

    def _keep(self, kind: str) -> bool:
        return len(self._online[kind]) < self.max_examples

    def _note_oversold(self, grant: Step) -> None:
        if self._stock is None or self._counts["granted"] <= self._stock or not self._keep("oversold"):
            return
        steps = [s for s in (self._stock_init, *self._stock_ops) if s is not None]
        steps += self._faults.recent(grant.index)
        self._online["oversold"].append(_Online(
            "oversold", grant.msg_id, None, [*steps, grant],
            f"voucher #{self._counts['granted']} granted from a stock of {self._stock}"))

    def _note_order(self, op: Op, step: Step) -> None:
        value = op.value
        if not isinstance(value, dict) or "key" not in value or "seq" not in value:
            return
        key, seq = value["key"], value["seq"]
        best = self._keys.get(key)
        if best is None or seq > best[0]:
            self._keys.put(key, seq, step)
            return
        if seq == best[0]:
            return
        self._counts["out_of_order"] += 1
        if self._keep("out_of_order"):
            msg = self._msgs[op.msg_id] if op.msg_id else None
            deliver = last_of(msg.steps, "deliver") if msg else None
            steps = [s for s in (best[1], deliver, step) if s is not None]
            self._online["out_of_order"].append(_Online(
                "out_of_order", op.msg_id, str(key), steps,
                f"key {key}: seq {seq} processed after seq {best[0]}"))

    def _note_duplicate(self, msg: _Msg, msg_id: str) -> None:
        if not self._keep("duplicated"):
            return
        path = [s for s in msg.steps if s.f in _DELIVERY_PATH]
        first = next((s for s in path if s.f == "dequeue" and s.type == "ok"), None)
        if first is None:  # evicted; show what is left
            self._online["duplicated"].append(_Online("duplicated", msg_id, None, path))
            return
        first_deliver = last_of((s for s in path if s.index < first.index), "deliver")
        later = [s for s in path if s.index > first.index]
        second = last_of(later, "deliver") or (later[-1] if later else first)
        names = {"broker"} | holder_of(first) | (holder_of(first_deliver) if first_deliver else set())
        # From the first delivery on: a broker restart that closed the channel (and so lost
        # the ack) happens before the first dequeue is recorded.
        start = first_deliver.index if first_deliver else first.index
        between = self._faults.between(start, second.index, names)
        self._online["duplicated"].append(_Online("duplicated", msg_id, None, [*path, *between]))

    def _note_double_grant(self, msg: _Msg, msg_id: str) -> None:
        if not self._keep("double_granted"):
            return
        grants = [s for s in msg.steps if s.f == "grant"]
        shown = [s for s in msg.steps if s.f in ("grant", "deliver", "dequeue", "ack")]
        if len(grants) >= 2:
            names = {"broker"} | holder_of(grants[0])
            shown += self._faults.between(grants[0].index, grants[-1].index, names)
        self._online["double_granted"].append(_Online("double_granted", msg_id, None, shown))

    # -- results ---------------------------------------------------------------------------

    def _final_chain(self, kind: str, msg_id: str, msg: _Msg) -> str:
        steps: list[Step] = list(msg.steps)
        if kind == "unexpected":
            return render(steps, f"{msg_id} dequeued but never enqueued or submitted")
        if kind == "lost":
            closing = (f"{msg_id} never processed" if msg.flags & PUBLISHED
                       else f"{msg_id} accepted but never published")
            if not steps:
                return closing
            last = steps[-1]
            if last.f == "drop":  # the broker discarded it; show the fault that made it do so
                cause = self._faults.last_before(last.index, holder_of(last) | {"broker"})
            else:
                cause = self._faults.first_after(last.index, holder_of(last))
            return render([*steps, cause] if cause else steps, closing)
        closing = (f"{msg_id} published but its DB row never committed" if kind == "ghost"
                   else f"{msg_id} committed but never published")
        if not steps:
            return closing
        saves = [s for s in steps if s.f == "save"]
        begun = [s for s in saves if s.type == "invoke"]
        # A ghost's cause lies after its save began (or, with none begun, after its publish);
        # an orphan's after its row committed.
        published = [s for s in steps if s.f == "enqueue" and s.type == "ok"]
        anchor = (begun or saves or published or steps)[-1] if kind == "ghost" else (saves or steps)[-1]
        cause = self._faults.first_after(anchor.index, holder_of(anchor))
        return render([*steps, cause] if cause else steps, closing)

    def _final_examples(self, counts: dict[str, Any]) -> dict[str, list[Anomaly]]:
        want = {k: min(self.max_examples, counts[k]) for k in _FINAL_KINDS}
        found: dict[str, list[Anomaly]] = {k: [] for k in _FINAL_KINDS}
        if not any(want.values()):
            return found
        for _order, msg_id, msg in self._in_order():
            bits = _classes(msg)
            for kind in _FINAL_KINDS:
                if bits & _BIT[kind] and len(found[kind]) < want[kind]:
                    found[kind].append(Anomaly(kind, msg_id, None, self._final_chain(kind, msg_id, msg)))
            if all(len(found[k]) >= want[k] for k in _FINAL_KINDS):
                break
        return found

    def _in_order(self) -> Iterator[tuple[int, str, _Msg]]:
        """Every message, in the order first seen, wherever it is kept."""
        hot = sorted(((m.order, msg_id, m) for msg_id, m in self._msgs.items()), key=lambda t: t[0])
        return heapq.merge(hot, self._cold.ordered(), key=lambda t: t[0])

    def _online_terminal(self, ex: _Online) -> str | None:
        msg = self._msgs.get(ex.msg_id) if ex.msg_id else None
        if ex.kind == "duplicated" and msg:
            return f"{ex.msg_id} dequeued {msg.dq} times"
        if ex.kind == "double_granted" and msg:
            return f"{ex.msg_id} granted {msg.grants} vouchers"
        return ex.terminal

    def result(self) -> CheckResult:
        counts: dict[str, Any] = {k: self._counts[k] for k in (*KINDS, *TOTALS)}
        stock = self._stock
        counts["stock"] = stock
        counts["oversold"] = max(0, counts["granted"] - stock) if stock is not None else 0
        if not self._saving:
            counts["ghost"] = 0  # nothing writes rows (the plain publish pattern): no row is missing
        valid = all(counts[k] == 0 for k in _INVALIDATING)
        final = self._final_examples(counts)
        anomalies: list[Anomaly] = []
        for kind in KINDS:
            if kind in final:
                anomalies += final[kind]
            else:
                anomalies += [Anomaly(ex.kind, ex.msg_id, ex.key,
                                      render(ex.steps, self._online_terminal(ex)))
                              for ex in self._online[kind]]
        return CheckResult(counts, valid, anomalies)


def check(ops: Iterable[Op], max_examples: int = 20) -> CheckResult:
    """Check a finished history (any iterable of ops, in the order they happened)."""
    checker = Checker(max_examples)
    for op in ops:
        checker(op)
    return checker.result()
