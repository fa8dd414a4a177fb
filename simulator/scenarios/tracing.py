"""Tracing and schema validation: lesson 09, curriculum rows C5 and C6.

``run_tracing(config)`` runs a seeded flash sale keeping its whole history, picks one
submission, and follows its correlation id through every component: the operations, the
OpenTelemetry-shaped spans and the swimlane bars.  The same run injects payloads a drifted
producer wrote (``schema_version: 2``) and counts what the consumers' schema gate did with
them: every one rejected to the dead-letter queue, none reaching the handler.

Only the kind of drift the flash-sale world produces is offered: a schema-version mismatch.
The world has no missing-field variant, so ``schema_drift`` has one value for now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from simulator.config import FlashSaleConfig, StrictModel
from simulator.errors import InputError
from simulator.history import Op
from simulator.rng import Streams
from simulator.tracing import (HANDLER_STEPS, CorrelationReport, correlation_report, export_jsonl,
                               lanes, otlp_json, spans, swimlanes, trace)

if TYPE_CHECKING:
    from simulator.scenarios.flash_sale import FlashSaleResult

Pick = int | Literal["first-granted", "first-invalid"]


class TracingConfig(StrictModel):
    seed: int = Field(default=7, ge=0, le=2**32 - 1)
    # the whole history is kept in memory for tracing: about ten operations a submission
    submissions: int = Field(default=1000, ge=1, le=100_000)
    stock: int = Field(default=300, ge=0, le=2**62)
    arrival_rate: float = Field(default=400.0, gt=0, allow_inf_nan=False, description="per second at the peak")
    consumers: int = Field(default=4, ge=1, le=10_000)
    invalid_fraction: float = Field(default=0.05, ge=0, le=1,
                                    description="share of payloads written with a drifted schema")
    schema_drift: Literal["version"] = Field(
        default="version", description="how invalid payloads differ: schema_version 2 instead of 1 "
                                       "(the only drift the flash-sale world produces)")
    pick: Pick = Field(default="first-granted",
                       description="which submission to trace: its arrival number (1 = first), "
                                   "first-granted or first-invalid")

    @model_validator(mode="after")
    def _pick_exists(self) -> "TracingConfig":
        if isinstance(self.pick, int) and not 1 <= self.pick <= self.submissions:
            raise ValueError(f"pick: {self.pick} is not an arrival number from 1 to {self.submissions}")
        if self.pick == "first-invalid" and self.invalid_fraction == 0:
            raise ValueError("pick: first-invalid needs invalid_fraction > 0")
        return self

    def flash_sale(self) -> FlashSaleConfig:
        # keep_history=None keeps every operation: a trace with holes would prove nothing
        return FlashSaleConfig(seed=self.seed, submissions=self.submissions, stock=self.stock,
                               arrival_rate=self.arrival_rate, consumers=self.consumers,
                               invalid_fraction=self.invalid_fraction, keep_history=None)


# --------------------------------------------------------------------------- invalid payloads

def injected_invalid(seed: int, submissions: int, fraction: float) -> list[int]:
    """Arrival numbers (1-based) whose payload the world made invalid.

    The world draws one number per arrival from its ``payloads`` stream; replaying that
    stream tells which payloads were drifted without looking at what the consumers did.
    """
    if not fraction:
        return []
    rng = Streams(seed)["payloads"]
    return [i + 1 for i in range(submissions) if rng.random() < fraction]


def submissions_in_order(ops: list[Op]) -> list[Op]:
    """The ``submit`` invokes in arrival order: arrival number n is element n - 1."""
    return [op for op in ops if op.f == "submit" and op.type == "invoke"]


def invalid_flow(ops: list[Op], injected_msg_ids: set[str]) -> dict[str, int]:
    """What happened to the drifted payloads, counted from the history alone."""
    rejected: set[str] = set()
    rejected_ops = 0
    dead_lettered: set[str] = set()
    reached: set[str] = set()
    for op in ops:
        if op.msg_id is None:
            continue
        outcome = op.value.get("outcome") if op.f == "dequeue" and isinstance(op.value, dict) else None
        if outcome == "invalid":
            rejected.add(op.msg_id)
            rejected_ops += 1
        elif op.f == "dead-letter":
            dead_lettered.add(op.msg_id)
        if op.msg_id in injected_msg_ids and (
                op.f in HANDLER_STEPS or outcome not in (None, "invalid", "drained")):
            reached.add(op.msg_id)  # a business step ran for a payload the gate should stop
    return {
        "injected": len(injected_msg_ids),
        "rejected": len(rejected),
        "rejected_ops": rejected_ops,
        "dead_lettered": len(dead_lettered & rejected),
        "reached_handler": len(reached),
        "valid_rejected": len(rejected - injected_msg_ids),
        "not_rejected": len(injected_msg_ids - rejected),
    }


# --------------------------------------------------------------------------- the run

@dataclass
class TracingResult:
    config: TracingConfig
    corr_id: str
    trace: list[Op]
    spans: list[dict[str, Any]]
    swimlanes: list[tuple[str, float, float, str]]
    correlation: CorrelationReport
    invalid: dict[str, int]
    metrics: dict[str, Any]
    flash: "FlashSaleResult" = field(repr=False)

    @property
    def ops(self) -> list[Op]:
        return self.flash.ops

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": "tracing",
            "seed": self.config.seed,
            "config": self.config.model_dump(mode="json"),
            "corr_id": self.corr_id,
            "metrics": self.metrics,
            "invalid": self.invalid,
            "correlation": self.correlation.to_dict(),
            "trace": [op.to_dict() for op in self.trace],
            "spans": self.spans,
            "swimlanes": [list(bar) for bar in self.swimlanes],
            "history_sha256": self.flash.history_sha256,
        }

    def export(self, directory: str | Path) -> dict[str, Path]:
        """Write the history and this trace as JSON Lines, and the spans as OTLP/JSON."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"history": out / "history.jsonl", "trace": out / f"trace-{self.corr_id}.jsonl",
                 "spans": out / f"spans-{self.corr_id}.otlp.json"}
        export_jsonl(self.ops, paths["history"])
        export_jsonl(self.trace, paths["trace"])
        paths["spans"].write_text(json.dumps(otlp_json(self.spans), sort_keys=True, indent=1) + "\n",
                                  encoding="utf-8")
        return paths

    def report(self) -> str:
        m, inv = self.metrics, self.invalid
        lines = [
            f"tracing  seed={self.config.seed}  submissions={self.config.submissions}  "
            f"stock={self.config.stock}  invalid_fraction={self.config.invalid_fraction}",
            f"  traced             {self.corr_id} ({m['outcome']}): {m['trace_ops']} operations, "
            f"{m['hops']} hops over {m['components']} components, {m['trace_ms']:.1f} ms",
        ]
        for lane, start, end, label in self.swimlanes:
            lines.append(f"    {lane:<12} {start * 1000:9.2f} .. {end * 1000:9.2f} ms  {label}")
        lines += [
            f"  invalid payloads   injected {inv['injected']}, rejected to the DLQ {inv['rejected']} "
            f"(dead-lettered {inv['dead_lettered']}), reached the handler {inv['reached_handler']}",
            "  correlation        " + ("OK" if self.correlation.ok else "BROKEN") +
            f"  ({self.correlation.submitted} submitted, {self.correlation.grants} grants, "
            f"{len(self.correlation.unknown_out)} unknown downstream, "
            f"{len(self.correlation.orphan_grants)} orphan grants)",
            f"  history sha256     {self.flash.history_sha256}",
        ]
        return "\n".join(lines)


def _pick(ops: list[Op], submits: list[Op], pick: Pick, injected: list[int]) -> str:
    if isinstance(pick, int):
        return str(submits[pick - 1].corr_id)
    if pick == "first-invalid":
        if not injected:
            raise InputError("pick", pick, "first-granted or an arrival number: "
                                           "this run drew no invalid payloads")
        return str(submits[injected[0] - 1].corr_id)
    for op in ops:  # history order is time order: the first grant committed
        if op.f == "grant" and op.type == "ok" and op.corr_id is not None:
            return op.corr_id
    raise InputError("pick", pick, "an arrival number: this run granted no vouchers (stock 0?)")


def _hops(bars: list[tuple[str, float, float, str]]) -> int:
    """Hand-offs between components, walking the steps in the order they began."""
    return sum(1 for a, b in zip(bars, bars[1:]) if a[0] != b[0])


def run_tracing(config: TracingConfig | None = None) -> TracingResult:
    from simulator.scenarios.flash_sale import run_flash_sale  # builds the SimPy world: load it late

    cfg = config or TracingConfig()
    flash = run_flash_sale(cfg.flash_sale())
    ops = flash.ops
    if len(ops) != flash.metrics["history_ops"]:
        raise RuntimeError(f"the history kept {len(ops)} of {flash.metrics['history_ops']} operations")
    submits = submissions_in_order(ops)
    injected = injected_invalid(cfg.seed, len(submits), cfg.invalid_fraction)
    corr_id = _pick(ops, submits, cfg.pick, injected)

    namespace = f"mqlab-seed-{cfg.seed}"  # every seed has a c1; keep their traces apart
    trace_ops = trace(ops, corr_id)
    span_list = spans(trace_ops, corr_id, namespace=namespace)
    bars = swimlanes(trace_ops, corr_id)
    report = correlation_report(ops)
    invalid = invalid_flow(ops, {str(submits[n - 1].msg_id) for n in injected})
    outcomes = [op.value.get("outcome") for op in trace_ops
                if op.f == "dequeue" and isinstance(op.value, dict)]
    metrics = {
        "hops": _hops(bars),
        "components": len(lanes(bars)),
        "trace_ops": len(trace_ops),
        "trace_ms": round((trace_ops[-1].time - trace_ops[0].time) * 1000.0, 6) if trace_ops else 0.0,
        "outcome": outcomes[-1] if outcomes else None,
        "invalid_injected": invalid["injected"],
        "invalid_rejected": invalid["rejected"],
        "invalid_reached_handler": invalid["reached_handler"],
        "correlation_ok": report.ok,
        "vouchers_granted": flash.metrics["vouchers_granted"],
        "checker_valid": flash.checker.valid,
        "history_ops": len(ops),
    }
    return TracingResult(cfg, corr_id, trace_ops, span_list, bars, report, invalid, metrics, flash)
