"""Causal chains for the checker: compact steps, a log of fault operations, and rendering.

The checker keeps a few *steps* per message instead of whole ``Op`` objects: a step is a
small tuple holding only what a chain sentence needs (the op's value dict is reduced to one
short ``detail`` string), so a run with a million messages stays within a bounded footprint.
Fault operations (``crash``, ``restart``, and ``drop`` without a message id) go to one
shared ``FaultLog`` that chains look into by op index ("the first crash after ...").
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any, Iterable, NamedTuple

from .history import Op

ARROW = " → "
FAULTS = ("crash", "restart", "drop")


class Step(NamedTuple):
    index: int
    time: float
    type: str
    f: str
    process: str
    where: str | None  # the op's component: lets a crash of e.g. "rabbit@host" match "broker"
    msg_id: str | None
    detail: str | None


def _ack_word(mode: Any) -> str:
    text = str(mode)
    return text if text.endswith("ack") else f"{text}-ack"


def _reason(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for name in ("reason", "result", "error", "outcome"):
            if name in value:
                return str(value[name])
    return None


class StepMaker:
    """Turns ops into steps, sharing equal detail strings so they cost memory only once."""

    def __init__(self) -> None:
        self._interned: dict[str, str] = {}

    def _share(self, text: str | None) -> str | None:
        if text is None:
            return None
        return self._interned.setdefault(text, text)

    def _detail(self, op: Op) -> str | None:
        value = op.value
        if op.f == "deliver":
            if not isinstance(value, dict):
                return None
            parts = [_ack_word(value["ack"])] if "ack" in value else []
            if value.get("redelivered"):
                parts.append("redelivered")
            return ", ".join(parts) or None
        if op.f == "stock" and isinstance(value, dict) and "left" in value:
            return f"{value['left']} left"
        if op.f in ("stock-init", "reseed") and isinstance(value, dict) and "stock" in value:
            origin = value.get("from")
            return f"{value['stock']}" + (f" from {origin}" if origin else "")
        if op.f in ("grant", "crash", "restart", "ack"):
            return None  # the sentence says it all; skip the value (e.g. the user id)
        return _reason(value)

    def __call__(self, op: Op) -> Step:
        return Step(op.index, op.time, op.type, op.f, op.process, op.component, op.msg_id,
                    self._share(self._detail(op)))


def holder_of(step: Step) -> set[str]:
    """Names of whoever held the message after ``step``: a crash of one of them can lose it.

    Only process names: a component is a role ("consumer", "server"), so matching on it would
    blame any consumer's crash for a message one particular consumer held.
    """
    if step.f == "enqueue" and step.type in ("ok", "info"):
        return {step.process, "broker"}  # published: it now sits in the broker
    return {step.process}


def matches(fault: Step, names: set[str]) -> bool:
    """A fault by one of ``names``; a fault's component may name the role ("broker") too."""
    return fault.process in names or (fault.where is not None and fault.where in names)


class FaultLog:
    """Fault steps in op-index order, bounded so a chaos run cannot grow it forever."""

    def __init__(self, limit: int = 100_000, scan: int = 500):
        self._steps: list[Step] = []
        self._index: list[int] = []
        self.limit = limit
        self.scan = scan  # how many faults one lookup may look through (bounds result() time)
        self.dropped = 0

    def add(self, step: Step) -> None:
        if len(self._steps) >= self.limit:
            self.dropped += 1
            return
        if self._index and step.index < self._index[-1]:
            pos = bisect_right(self._index, step.index)  # ops fed slightly out of order
            self._index.insert(pos, step.index)
            self._steps.insert(pos, step)
        else:
            self._index.append(step.index)
            self._steps.append(step)

    def first_after(self, index: int, names: set[str], f: str = "crash") -> Step | None:
        """The first ``f`` fault after op ``index`` by one of ``names``, else by anyone."""
        start = bisect_right(self._index, index)
        fallback = None
        for step in self._steps[start:start + self.scan]:
            if step.f != f:
                continue
            if matches(step, names):
                return step
            fallback = fallback or step
        return fallback

    def last_before(self, index: int, names: set[str]) -> Step | None:
        """The latest crash/restart before op ``index`` by one of ``names``."""
        end = bisect_left(self._index, index)
        for step in reversed(self._steps[max(0, end - self.scan):end]):
            if step.f in ("crash", "restart") and matches(step, names):
                return step
        return None

    def between(self, lo: int, hi: int, names: set[str], limit: int = 3) -> list[Step]:
        """Faults strictly between two op indexes: those by ``names``; if none, the latest few."""
        start, end = bisect_right(self._index, lo), bisect_left(self._index, hi)
        window = self._steps[start:min(end, start + self.scan)]
        related = [s for s in window if matches(s, names)]
        return related[:limit] if related else window[-min(limit, 2):] if window else []

    def recent(self, index: int, limit: int = 2) -> list[Step]:
        end = bisect_left(self._index, index)
        return self._steps[max(0, end - limit):end]


def describe(step: Step) -> str:
    """One step of a chain, in words, with the time to 3 decimals."""
    m, p, d, at = step.msg_id or "?", step.process, step.detail, f"at t={step.time:.3f}"
    paren = f" ({d})" if d else ""
    if step.f == "deliver":
        return f"deliver {m} to {p}{paren} {at}"
    if step.f == "dequeue":
        return f"dequeue {m} by {p}{paren} {at}" if step.type == "ok" else \
            f"dequeue {m} {step.type} by {p}{paren} {at}"
    if step.f == "ack":
        return f"ack {m} lost by {p} {at}" if step.type == "fail" else f"ack {m} {step.type} by {p} {at}"
    if step.f == "drop":
        return f"{p} dropped {step.msg_id + ' ' if step.msg_id else ''}({d or 'unknown reason'}) {at}"
    if step.f in ("crash", "restart"):
        return f"{p} {step.f} {at}"
    if step.f == "grant":
        return f"grant voucher for {m} by {p} {at}" if step.type == "ok" else \
            f"grant {m} {step.type} by {p} {at}"
    if step.f == "stock":
        return f"stock decrement by {p}{f' leaves {d}' if d else ''} {at}"
    if step.f == "reseed":
        return f"{p} reseeds stock to {d} {at}"
    if step.f == "stock-init":
        return f"stock-init {d} {at}"
    if step.f == "compensate":
        return f"compensate stock for {m} by {p} {at}"
    subject = f" {step.msg_id}" if step.msg_id else ""
    return f"{step.f}{subject} {step.type}{paren} by {p} {at}"


def render(steps: Iterable[Step], terminal: str | None = None) -> str:
    """Join steps (sorted by op index, without repeats) and an optional closing phrase."""
    seen: set[int] = set()
    parts = []
    for step in sorted(steps, key=lambda s: s.index):
        if step.index not in seen:
            seen.add(step.index)
            parts.append(describe(step))
    if terminal:
        parts.append(terminal)
    return ARROW.join(parts)


def last_of(steps: Iterable[Step], f: str) -> Step | None:
    found = None
    for step in steps:
        if step.f == f:
            found = step
    return found
