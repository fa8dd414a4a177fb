"""Following one submission through the system by its correlation id (curriculum C5).

Every history operation of a message carries the ``corr_id`` the client gave it, so one
submission's path can be pulled out of the whole run and shown three ways:

* ``trace(ops, corr_id)``: its operations, in time order;
* ``spans(ops, corr_id)``: OpenTelemetry-shaped spans (an ``invoke`` and its ``ok``/``fail``/
  ``info`` become one span; consumer steps nest inside the consumer's ``process`` span);
* ``swimlanes(ops, corr_id)``: ``(lane, start, end, label)`` bars, one lane per component.

``export_jsonl`` writes a history as canonical JSON Lines (``read_jsonl`` reads it back), and
``correlation_report`` checks invariant 18 of the reliability reference: every voucher traces
back to exactly one submission and no correlation id appears downstream that was never submitted.

Span attributes follow the OpenTelemetry messaging semantic conventions and their RabbitMQ page:
https://opentelemetry.io/docs/specs/semconv/messaging/messaging-spans/ (span name
``{messaging.operation.name} {destination}``; operation types create/send/receive/process/settle,
``send`` being the newer name of ``publish``; PRODUCER for the publish whose context is the
creation context, CONSUMER for push-based ``process``) and
https://opentelemetry.io/docs/specs/semconv/messaging/rabbitmq/ (``messaging.system="rabbitmq"``,
``messaging.destination.name`` is the exchange, ``messaging.rabbitmq.destination.routing_key``).
The correlation id goes in ``messaging.message.conversation_id`` ("sometimes called correlation ID").
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence, TextIO

from simulator.flow import DEAD_LETTER_QUEUE, EXCHANGE, QUEUE, ROUTING_KEY
from simulator.history import Op, read_jsonl

__all__ = ["export_jsonl", "load_jsonl", "read_jsonl", "to_jsonl", "trace", "trace_id", "span_id", "spans",
           "swimlanes", "lanes", "otlp_json", "correlation_report", "CorrelationReport",
           "DEFAULT_LANES"]

# Which component a consumer-side step waits on: its bar goes in that component's lane.
# ``stock`` sits in the DB lane when the stock strategy is a DB one (pass ``lanes={"stock": "db"}``).
DEFAULT_LANES: dict[str, str] = {"save": "db", "stock": "redis", "compensate": "redis",
                                 "grant": "db", "send": "gateway", "ack": "broker"}

# f values that happen downstream of the API: the "corr ids out" of invariant 18
DOWNSTREAM = frozenset({"save", "enqueue", "deliver", "stock", "grant", "send", "ack",
                        "compensate", "dequeue", "dead-letter", "drop"})
HANDLER_STEPS = frozenset({"stock", "grant", "send", "compensate", "ack"})


# --------------------------------------------------------------------------- JSON Lines

def export_jsonl(ops: Iterable[Op], path_or_file: str | os.PathLike[str] | TextIO) -> int:
    """Write one canonical ``Op.to_json()`` line per operation; returns the number written.

    The bytes are exactly what ``History`` hashes, so exporting a complete history gives a
    file whose SHA-256 is the run's ``history_sha256``.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        # newline="\n": the same bytes on every platform, or the hash would not match
        with open(path_or_file, "w", encoding="utf-8", newline="\n") as out:
            return _write_lines(ops, out)
    return _write_lines(ops, path_or_file)


def _write_lines(ops: Iterable[Op], out: TextIO) -> int:
    count = 0
    for op in ops:
        out.write(op.to_json())
        out.write("\n")
        count += 1
    return count


def load_jsonl(path_or_file: str | os.PathLike[str] | TextIO) -> list[Op]:
    """``read_jsonl`` on a path or an open text file."""
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, encoding="utf-8") as src:
            return read_jsonl(src)
    return read_jsonl(path_or_file)


def to_jsonl(ops: Iterable[Op]) -> str:
    buffer = io.StringIO()
    _write_lines(ops, buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------- trace

def trace(ops: Iterable[Op], corr_id: str) -> list[Op]:
    """Every operation carrying ``corr_id``, in time order (record order breaks ties)."""
    return sorted((op for op in ops if op.corr_id == corr_id), key=lambda op: (op.time, op.index))


def trace_id(corr_id: str, namespace: str = "") -> str:
    """32 hex digits derived from the correlation id: the same id always gives the same trace.

    ``namespace`` keeps runs apart (every seed has a ``c1``) when traces are loaded together.
    """
    return hashlib.sha256(f"{namespace}/{corr_id}".encode()).hexdigest()[:32]


def span_id(corr_id: str, key: int | str, namespace: str = "") -> str:
    """16 hex digits from the trace and the index of the operation that opened the span."""
    return hashlib.sha256(f"{namespace}/{corr_id}/{key}".encode()).hexdigest()[:16]


@dataclass
class _Step:
    """A span under construction; ``key`` is the index of the operation that opened it
    (with a suffix for spans derived from one, so ids never collide)."""

    key: str
    name: str
    lane: str
    process: str
    kind: str
    start: float
    end: float
    parent: str | None
    op_type: str
    label: str
    attributes: dict[str, Any] = field(default_factory=dict)
    status: str = "UNSET"
    message: str | None = None
    complete: bool = True


def _messaging(op: Op, operation_type: str, operation_name: str,
               destination: str = EXCHANGE) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": operation_type,
        "messaging.operation.name": operation_name,
        "messaging.destination.name": destination,
        "messaging.rabbitmq.destination.routing_key": ROUTING_KEY,
    }
    if op.msg_id is not None:
        attrs["messaging.message.id"] = op.msg_id
    if op.corr_id is not None:
        attrs["messaging.message.conversation_id"] = op.corr_id
    return attrs


def _close(step: _Step, op: Op) -> None:
    """Finish an invoke's span with its completion: ok, fail (error) or info (unknown)."""
    step.end = op.time
    step.op_type = op.type
    value = op.value if isinstance(op.value, dict) else {}
    if op.type == "ok":
        step.status = "OK"
    else:
        step.status = "ERROR"
        step.message = "indeterminate: no answer" if op.type == "info" else "failed"
        if "error" in value:
            step.attributes["error.type"] = str(value["error"])
        elif "answer" in value:
            step.attributes["error.type"] = str(value["answer"])
    if "status" in value:
        status = value["status"]
        if isinstance(status, int):
            step.attributes["http.response.status_code"] = status
        step.label = f"{step.label} -> {status}"
    elif op.type != "ok":
        step.label = f"{step.label} ({op.type})"


def _build(ops: Sequence[Op], lanes: Mapping[str, str]) -> list[_Step]:
    """Turn one trace's operations into steps; see the module docstring for the shape."""
    steps: list[_Step] = []
    by_key: dict[str, _Step] = {}
    root: _Step | None = None
    open_invokes: dict[tuple[str, str], _Step] = {}
    open_process: dict[str, _Step] = {}
    last_mark: dict[str, float] = {}   # when each process last did something for this message
    last_publish: _Step | None = None  # the creation context consumers hang under
    handoff: float | None = None       # since when the broker (may) hold the message

    def add(key: str, name: str, lane: str, process: str, kind: str, start: float, end: float,
            parent: str | None, label: str, attributes: dict[str, Any] | None = None,
            status: str = "UNSET") -> _Step:
        step = _Step(key, name, lane, process, kind, start, end, parent, "ok", label,
                     dict(attributes or {}), status)
        steps.append(step)
        by_key[key] = step
        return step

    def parent_of(process: str) -> str | None:
        held = open_process.get(process)
        if held is not None:
            return held.key
        return root.key if root is not None else None

    for op in ops:
        value = op.value if isinstance(op.value, dict) else {}
        key = str(op.index)
        if op.type == "invoke":
            stale = open_invokes.pop((op.process, op.f), None)
            if stale is not None:  # a second invoke before an answer: the first never finished
                stale.complete = False
            if op.f == "submit":
                step = add(key, "submit", "client", op.process, "CLIENT", op.time, op.time, None,
                           "submit", {"mqlab.user": value.get("user")})
                root = root or step
            elif op.f == "enqueue":
                step = add(key, f"publish {EXCHANGE}", op.process, op.process, "PRODUCER", op.time,
                           op.time, root.key if root else None, "publish",
                           _messaging(op, "send", "publish"))
                # the broker may deliver before it confirms (the confirm waits for the fsync),
                # so the message is the broker's from the moment it left the producer; after a
                # retry the latest attempt is the best guess at the copy that got delivered
                last_publish = step
                handoff = op.time if handoff is None else handoff
            else:
                step = add(key, op.f, lanes.get(op.f, op.process), op.process, "CLIENT", op.time,
                           op.time, parent_of(op.process), op.f)
            step.op_type = "invoke"
            open_invokes[(op.process, op.f)] = step
        elif (op.process, op.f) in open_invokes:
            step = open_invokes.pop((op.process, op.f))
            _close(step, op)
        elif op.f == "deliver":
            for held in open_process.values():
                # a new delivery while another is unfinished: that consumer died holding it
                held.end, held.complete = last_mark.get(held.process, held.start), False
                handoff = held.end if handoff is None else max(handoff, held.end)
            open_process.clear()
            creation = last_publish.key if last_publish else (root.key if root else None)
            if handoff is not None:
                add(key + "q", f"queued {QUEUE}", "broker", "broker", "INTERNAL", handoff, op.time,
                    creation, "queued", {"mqlab.derived": True}, "OK")
            attrs = _messaging(op, "process", "process")
            attrs["mqlab.queue"] = QUEUE
            attrs["mqlab.redelivered"] = bool(value.get("redelivered", False))
            open_process[op.process] = add(key, f"process {EXCHANGE}", op.process, op.process,
                                           "CONSUMER", op.time, op.time, creation, "process", attrs)
            handoff = None
        elif op.f == "dequeue" and op.process in open_process:
            step = open_process.pop(op.process)
            outcome = value.get("outcome")
            step.end = op.time
            step.attributes["mqlab.outcome"] = outcome
            step.label = f"process ({outcome})"
            if outcome in ("invalid", "failed"):
                step.status, step.message = "ERROR", str(value.get("error", outcome))
                step.attributes["error.type"] = "invalid_payload" if outcome == "invalid" else "failed"
            else:
                step.status = "OK"
            # a reject leaves the message in the dead-letter queue and a lost ack brings it
            # back, so from here on the broker is the one holding it
            handoff = op.time
        elif op.f in ("dequeue", "dead-letter", "drop"):
            # the final drain and the broker's own records: the broker is the one acting
            name = {"dequeue": f"drain {QUEUE}", "dead-letter": f"dead-letter {DEAD_LETTER_QUEUE}",
                    "drop": f"drop {QUEUE}"}[op.f]
            start = handoff if handoff is not None and op.f == "dead-letter" else op.time
            reason = value.get("reason")
            add(key, name, "broker", op.process, "INTERNAL", start, op.time,
                root.key if root else None, op.f, {"mqlab.reason": reason} if reason else None,
                "ERROR" if op.f == "drop" else "OK")
        else:
            # a step the flow records only when it finishes: it began at this process's last mark
            parent = parent_of(op.process)
            start = last_mark.get(op.process, by_key[parent].start if parent else op.time)
            attrs: dict[str, Any] = {}
            if op.f == "ack":
                attrs = _messaging(op, "settle", "ack")
            attrs.update({f"mqlab.{k}": v for k, v in sorted(value.items())
                          if isinstance(v, (str, int, float, bool))})
            step = add(key, f"ack {EXCHANGE}" if op.f == "ack" else op.f,
                       lanes.get(op.f, op.process), op.process,
                       "CLIENT" if op.f in DEFAULT_LANES else "INTERNAL", start, op.time, parent,
                       op.f, attrs, "OK" if op.type == "ok" else "ERROR")
            step.op_type = op.type
            if op.type != "ok":
                step.label, step.message = f"{op.f} ({op.type})", op.type
        last_mark[op.process] = op.time

    last = max((op.time for op in ops), default=0.0)
    for step in [*open_invokes.values(), *open_process.values()]:
        # never answered within the trace: it lasted at least until its process moved on
        step.end, step.complete = max(step.end, last_mark.get(step.process, step.end)), False
    for step in steps:
        step.end = min(max(step.end, step.start), max(last, step.start))
        if not step.complete:
            step.attributes["mqlab.incomplete"] = True
    return steps


def _ns(seconds: float, epoch_ns: int) -> int:
    return epoch_ns + round(seconds * 1e9)


def spans(ops: Iterable[Op], corr_id: str | None = None, *, namespace: str = "",
          epoch_ns: int = 0, lanes: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """OpenTelemetry-shaped spans for one correlation id, or for every one if ``corr_id`` is None.

    Times are simulated seconds since the event opened, placed ``epoch_ns`` after the Unix
    epoch (0 by default, so the numbers stay deterministic).  The ``queued`` span is derived
    (the broker is not instrumented): from the broker taking the message to its delivery.
    """
    ops = list(ops)
    ids = [corr_id] if corr_id is not None else sorted({op.corr_id for op in ops if op.corr_id})
    lane_map = {**DEFAULT_LANES, **(lanes or {})}
    out: list[dict[str, Any]] = []
    for cid in ids:
        tid = trace_id(cid, namespace)
        for step in _build(trace(ops, cid), lane_map):
            span: dict[str, Any] = {
                "trace_id": tid,
                "span_id": span_id(cid, step.key, namespace),
                "parent_span_id": span_id(cid, step.parent, namespace) if step.parent is not None else None,
                "name": step.name,
                "kind": step.kind,
                "start_time_unix_nano": _ns(step.start, epoch_ns),
                "end_time_unix_nano": _ns(step.end, epoch_ns),
                "attributes": {"mqlab.component": step.lane,
                               **{k: v for k, v in step.attributes.items() if v is not None}},
                "status": {"code": step.status, **({"message": step.message} if step.message else {})},
            }
            out.append(span)
    return out


def swimlanes(ops: Iterable[Op], corr_id: str, *,
              lanes: Mapping[str, str] | None = None) -> list[tuple[str, float, float, str]]:
    """``(lane, start_s, end_s, label)`` for each step of one submission, sorted by start."""
    lane_map = {**DEFAULT_LANES, **(lanes or {})}
    bars = [(s.lane, s.start, s.end, s.label) for s in _build(trace(ops, corr_id), lane_map)]
    return sorted(bars, key=lambda b: b[1])  # stable: on a tie the causal (build) order stays


def lanes(bars: Iterable[tuple[str, float, float, str]]) -> list[str]:
    """The lanes of some bars in order of first appearance (the path the message took)."""
    seen: dict[str, None] = {}
    for lane, *_ in bars:
        seen.setdefault(lane, None)
    return list(seen)


_OTLP_KIND = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
_OTLP_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}


def _otlp_value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}  # OTLP/JSON carries 64-bit integers as strings
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": str(v)}


def otlp_json(span_list: Sequence[Mapping[str, Any]], service_prefix: str = "mqlab") -> dict[str, Any]:
    """The spans as an OTLP/JSON ``ExportTraceServiceRequest``, one resource per component.

    Trace and span ids stay hex in OTLP/JSON (unlike other bytes fields), so a collector or
    Jaeger's OTLP import reads this file as it is.
    """
    by_service: dict[str, list[dict[str, Any]]] = {}
    for s in span_list:
        attrs = dict(s["attributes"])
        service = f"{service_prefix}-{attrs.get('mqlab.component', 'unknown')}"
        otlp: dict[str, Any] = {
            "traceId": s["trace_id"], "spanId": s["span_id"], "name": s["name"],
            "kind": _OTLP_KIND[s["kind"]],
            "startTimeUnixNano": str(s["start_time_unix_nano"]),
            "endTimeUnixNano": str(s["end_time_unix_nano"]),
            "attributes": [{"key": k, "value": _otlp_value(v)} for k, v in sorted(attrs.items())],
            "status": {"code": _OTLP_STATUS[s["status"]["code"]],
                       **({"message": s["status"]["message"]} if "message" in s["status"] else {})},
        }
        if s.get("parent_span_id"):
            otlp["parentSpanId"] = s["parent_span_id"]
        by_service.setdefault(service, []).append(otlp)
    return {"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": name}}]},
         "scopeSpans": [{"scope": {"name": "mqlab.tracing"}, "spans": group}]}
        for name, group in sorted(by_service.items())]}


# --------------------------------------------------------------------------- invariant 18

@dataclass
class CorrelationReport:
    """Invariant 18: ``set(corr ids out) <= set(corr ids in)``; each grant has one submission."""

    submitted: int                 # distinct correlation ids that came in through the API
    downstream: int                # distinct correlation ids seen after the API
    grants: int
    unknown_out: list[str]         # downstream ids that were never submitted
    orphan_grants: list[str]       # grants whose id was never submitted (or had no id)
    ambiguous_grants: list[str]    # grants whose id was submitted more than once
    mismatched: list[str]          # messages whose ops disagree about their correlation id
    double_granted: list[str]      # ids granted more than once: the checker's business, shown here

    @property
    def ok(self) -> bool:
        return not (self.unknown_out or self.orphan_grants or self.ambiguous_grants or self.mismatched)

    def to_dict(self, limit: int = 20) -> dict[str, Any]:
        return {"ok": self.ok, "submitted": self.submitted, "downstream": self.downstream,
                "grants": self.grants, "unknown_out": self.unknown_out[:limit],
                "orphan_grants": self.orphan_grants[:limit],
                "ambiguous_grants": self.ambiguous_grants[:limit],
                "mismatched": self.mismatched[:limit],
                "double_granted": len(self.double_granted)}


def correlation_report(ops: Iterable[Op]) -> CorrelationReport:
    submits: dict[str, set[str | None]] = {}   # corr id -> the msg ids submitted under it
    out: set[str] = set()
    grants: list[Op] = []
    corr_of_msg: dict[str, str | None] = {}
    mismatched: set[str] = set()
    for op in ops:
        if op.f == "submit" and op.type == "invoke" and op.corr_id is not None:
            submits.setdefault(op.corr_id, set()).add(op.msg_id)
        if op.f in DOWNSTREAM and op.corr_id is not None:
            out.add(op.corr_id)
        if op.f == "grant" and op.type == "ok":
            grants.append(op)
        if op.msg_id is not None and (op.f in DOWNSTREAM or op.f == "submit"):
            # every hop of one message must carry the id it started with
            first = corr_of_msg.setdefault(op.msg_id, op.corr_id)
            if op.corr_id != first:
                mismatched.add(op.msg_id)
    orphan = [str(g.corr_id) for g in grants if g.corr_id not in submits]
    ambiguous = [g.corr_id for g in grants
                 if g.corr_id in submits and len(submits[g.corr_id]) != 1]
    granted: dict[str, int] = {}
    for g in grants:
        if g.corr_id is not None:
            granted[g.corr_id] = granted.get(g.corr_id, 0) + 1
    return CorrelationReport(
        submitted=len(submits), downstream=len(out), grants=len(grants),
        unknown_out=sorted(out - submits.keys()), orphan_grants=sorted(orphan),
        ambiguous_grants=sorted(str(a) for a in ambiguous), mismatched=sorted(mismatched),
        double_granted=sorted(c for c, n in granted.items() if n > 1))
