"""Duplicates: lesson 05, curriculum row C3.

A consumer processes a submission, commits the voucher, and then the ack never reaches the
broker: the connection drops (``ack_loss``) or the consumer dies between the commit and the
ack (crash point ``consumer:after-commit``).  The broker redelivers - at-least-once delivery
means *duplicate deliveries* - and only the consumer can stop them from becoming duplicate
*vouchers* (reliability-reference.md §3 invariants 1, 2 and 9; P24).

``run_duplicates(config)`` runs tiny seeded flash sales, all with the same arrivals (common
random numbers), for every dedupe mode:

* ``off``: no dedupe - each redelivery grants again (``double_granted > 0``);
* ``redis``: ``SET NX seen:<id>`` before the work, outside the DB transaction;
* ``db``: a unique processed-id row inserted in the same transaction as the voucher.

over an ack-loss sweep and over consumer crashes at two points.  Redis SET NX stops double
grants but has its own flaw: a consumer killed after the SET NX and before the commit
(``consumer:after-stock``) leaves the submission *marked seen but never granted*; the
redelivery is then skipped as a duplicate.  The checker cannot see this (the message was
dequeued and nothing was granted twice), so it is counted here from the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping

import pydantic
from pydantic import Field, field_validator, model_validator

from simulator.chains import StepMaker, render
from simulator.config import FlashSaleConfig, Fault, StrictModel, split_commas
from simulator.history import Op

if TYPE_CHECKING:
    from simulator.scenarios.flash_sale import FlashSaleResult

__all__ = ["DuplicatesConfig", "DuplicatesResult", "make_config", "run_duplicates", "delivery_counts",
           "marked_seen_never_granted", "DEDUPE_MODES", "CRASH_POINTS"]

DEDUPE_MODES = ("off", "redis", "db")
CRASH_POINTS = ("consumer:after-commit", "consumer:after-stock")
CRASHED = "consumer-1"  # the consumer the crash experiments kill


_split = split_commas  # tuple fields also accept "a,b", as the command line passes them


class DuplicatesConfig(StrictModel):
    seed: int = Field(default=7, ge=0, le=2**32 - 1)
    # every point is its own run: keep them tiny (the default is 18 runs)
    submissions: int = Field(default=200, ge=10, le=5000, description="submissions per run")
    arrival_rate: float = Field(default=100.0, gt=0, le=10_000, allow_inf_nan=False,
                                description="per second, constant")
    consumers: int = Field(default=2, ge=1, le=64)
    prefetch: int = Field(default=10, ge=1, le=1000,
                          description="unacked deliveries per consumer: all come back when its connection drops")
    # an ack lost with probability 1 would redeliver forever
    ack_loss_rates: tuple[float, ...] = Field(default=(0.0, 0.05, 0.1, 0.2),
                                              description="ack-loss probabilities swept (each 0 to 0.5)")
    dedupe: tuple[Literal["off", "redis", "db"], ...] = DEDUPE_MODES
    crash_points: tuple[Literal["consumer:after-commit", "consumer:after-stock"], ...] = CRASH_POINTS
    crashes: int = Field(default=3, ge=1, le=20, description=f"times {CRASHED} dies at each crash point")
    restart_after: float = Field(default=0.5, gt=0, le=60, allow_inf_nan=False)

    @field_validator("ack_loss_rates", "dedupe", "crash_points", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        return _split(v)

    @model_validator(mode="after")
    def _sane(self) -> "DuplicatesConfig":
        for name in ("ack_loss_rates", "dedupe", "crash_points"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name}: give at least one value")
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: each value at most once, got {list(values)}")
        for rate in self.ack_loss_rates:
            if not 0 <= rate <= 0.5:  # also rejects NaN
                raise ValueError(f"ack_loss_rates: each must be a probability from 0 to 0.5, got {rate}")
        if list(self.ack_loss_rates) != sorted(self.ack_loss_rates):
            raise ValueError("ack_loss_rates: list them in increasing order")
        return self


def make_config(**values: Any) -> DuplicatesConfig:
    """``DuplicatesConfig(**values)``, a bad value reported as an ``InputError`` naming the field."""
    from simulator.config_errors import input_error_from

    try:
        return DuplicatesConfig.model_validate(values)
    except pydantic.ValidationError as exc:
        raise input_error_from(exc) from None


# --------------------------------------------------------------------------- from the history

def delivery_counts(ops: list[Op]) -> dict[str, int]:
    """Deliveries a consumer handled, distinct messages among them, the extra ones, those
    flagged ``redelivered``, and repeats *not* flagged (invariant 9 says: none)."""
    per_msg: dict[str, int] = {}
    flagged = unflagged_repeats = 0
    for op in ops:
        if op.f == "deliver" and op.type == "ok" and op.msg_id is not None:
            seen_before = op.msg_id in per_msg
            per_msg[op.msg_id] = per_msg.get(op.msg_id, 0) + 1
            redelivered = bool(isinstance(op.value, dict) and op.value.get("redelivered"))
            flagged += redelivered
            unflagged_repeats += seen_before and not redelivered
    total = sum(per_msg.values())
    return {"deliveries": total, "delivered_messages": len(per_msg),
            "duplicate_deliveries": total - len(per_msg), "redelivered_flagged": flagged,
            "unflagged_repeats": unflagged_repeats}


def marked_seen_never_granted(ops: list[Op]) -> list[str]:
    """Messages a consumer skipped as already seen although no voucher was ever granted for them."""
    granted = {op.msg_id for op in ops if op.f == "grant" and op.type == "ok"}
    skipped = [op.msg_id for op in ops if op.f == "dequeue" and op.type == "ok"
               and isinstance(op.value, dict) and op.value.get("outcome") == "duplicate"]
    return sorted({m for m in skipped if m is not None and m not in granted},
                  key=lambda m: (len(m), m))  # m2 before m10


def _seen_chain(ops: list[Op], msg_id: str) -> str:
    """Why a message was skipped: its deliveries and stock step, and the crash in between."""
    make = StepMaker()
    mine = [op for op in ops if op.msg_id == msg_id and op.f in ("deliver", "stock", "grant", "dequeue")]
    if not mine:
        return f"{msg_id} marked seen but never granted"
    holders = {op.process for op in mine if op.f == "deliver"}
    crashes = [op for op in ops if op.f == "crash" and op.process in holders
               and mine[0].index < op.index < mine[-1].index]
    return render([make(op) for op in (*mine, *crashes)],
                  f"{msg_id} marked seen in Redis (SET NX) but never granted")


# --------------------------------------------------------------------------- runs

def _flash(cfg: DuplicatesConfig, dedupe: str, **overrides: Any) -> FlashSaleConfig:
    # stock for every submission twice over: a double grant never turns into "sold out"
    values: dict[str, Any] = dict(
        seed=cfg.seed, submissions=cfg.submissions, arrival_profile="constant",
        arrival_rate=cfg.arrival_rate, stock=2 * cfg.submissions, servers=1,
        consumers=cfg.consumers, prefetch=cfg.prefetch, dedupe=dedupe,
        keep_history=None)  # ops are scanned for deliveries and skipped submissions
    values.update(overrides)
    return FlashSaleConfig(**values)


def _summary(run: "FlashSaleResult", **labels: Any) -> dict[str, Any]:
    c = run.checker.counts
    seen = marked_seen_never_granted(run.ops)
    example = next((a.chain for kind in ("double_granted", "duplicated")
                    for a in run.checker.anomalies if a.kind == kind), None)
    return {**labels, **delivery_counts(run.ops), "duplicated": c["duplicated"],
            "double_granted": c["double_granted"], "granted": c["granted"], "lost": c["lost"],
            "marked_seen_never_granted": len(seen), "valid": run.checker.valid,
            "example": example, "seen_example": _seen_chain(run.ops, seen[0]) if seen else None,
            "history_sha256": run.history_sha256}


def _sweep_run(cfg: DuplicatesConfig, dedupe: str, rate: float) -> dict[str, Any]:
    from simulator.scenarios.flash_sale import run_flash_sale  # builds the SimPy world: load it late

    return _summary(run_flash_sale(_flash(cfg, dedupe, ack_loss=rate)), dedupe=dedupe, ack_loss=rate)


def _crash_run(cfg: DuplicatesConfig, dedupe: str, point: str) -> dict[str, Any]:
    from simulator.scenarios.flash_sale import run_flash_sale

    # one fault per crash: each fires the next time the restarted consumer reaches the point
    faults = tuple(Fault(target=CRASHED, point=point, restart_after=cfg.restart_after)
                   for _ in range(cfg.crashes))
    return _summary(run_flash_sale(_flash(cfg, dedupe, faults=faults)), dedupe=dedupe, point=point)


# --------------------------------------------------------------------------- result

@dataclass
class DuplicatesResult:
    config: DuplicatesConfig
    sweep: list[dict[str, Any]]       # one per (dedupe, ack-loss rate)
    crash_runs: list[dict[str, Any]]  # one per (crash point, dedupe)
    metrics: dict[str, Any]

    def sweep_run(self, dedupe: str, rate: float) -> dict[str, Any]:
        return next(r for r in self.sweep if r["dedupe"] == dedupe and r["ack_loss"] == rate)

    def crash_run(self, point: str, dedupe: str) -> dict[str, Any]:
        return next(r for r in self.crash_runs if r["point"] == point and r["dedupe"] == dedupe)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": "duplicates", "seed": self.config.seed,
                "config": self.config.model_dump(mode="json"), "metrics": self.metrics,
                "sweep": self.sweep, "crash_runs": self.crash_runs}

    def report(self) -> str:
        cfg = self.config
        lines = [f"duplicates  seed={cfg.seed}  {cfg.submissions} submissions per run, "
                 f"{cfg.consumers} consumers, prefetch {cfg.prefetch}; {self.metrics['runs']} runs",
                 "  ack-loss sweep: duplicate deliveries / double-granted vouchers",
                 "  " + "dedupe".ljust(8) + "".join(f"{'p=' + format(r, 'g'):>14}" for r in cfg.ack_loss_rates)]
        for mode in cfg.dedupe:
            cells = [self.sweep_run(mode, r) for r in cfg.ack_loss_rates]
            lines.append("  " + mode.ljust(8) +
                         "".join(f"{str(c['duplicate_deliveries']) + ' / ' + str(c['double_granted']):>14}"
                                 for c in cells))
        lines.append(f"  {CRASHED} killed {cfg.crashes}x at a crash point: duplicate deliveries / double "
                     "grants / marked seen, never granted")
        for r in self.crash_runs:
            lines.append(f"    {r['point']:<24} {r['dedupe']:<6} {r['duplicate_deliveries']:>4} / "
                         f"{r['double_granted']:>3} / {r['marked_seen_never_granted']:>3}")
        first = next((r for r in self.sweep if r["dedupe"] == "off" and r["double_granted"]), None)
        if first is not None:
            lines.append(f"  why (no dedupe, ack loss {first['ack_loss']:g}): {first['example']}")
        flaw = next((r for r in self.crash_runs if r["seen_example"]), None)
        if flaw is not None:
            lines.append(f"  the SET NX flaw ({flaw['point']}): {flaw['seen_example']}")
        return "\n".join(lines)


def _metrics(sweep: list[dict[str, Any]], crash_runs: list[dict[str, Any]]) -> dict[str, Any]:
    every = sweep + crash_runs
    by_mode: dict[str, dict[str, int]] = {}
    for r in every:
        m = by_mode.setdefault(r["dedupe"], {"duplicate_deliveries": 0, "double_granted": 0,
                                             "marked_seen_never_granted": 0})
        for key in m:
            m[key] += r[key]
    table: dict[str, dict[str, int]] = {}  # dedupe -> ack-loss rate -> double grants
    for r in sweep:
        table.setdefault(r["dedupe"], {})[format(r["ack_loss"], "g")] = r["double_granted"]
    return {"runs": len(every), "totals": by_mode, "double_granted": table,
            # exactly one voucher per submission: none twice, and none skipped as "seen"
            "exactly_once_modes": [mode for mode, m in by_mode.items()
                                   if m["double_granted"] == 0 and m["marked_seen_never_granted"] == 0]}


def run_duplicates(config: DuplicatesConfig | Mapping[str, Any] | None = None) -> DuplicatesResult:
    cfg = config if isinstance(config, DuplicatesConfig) else make_config(**dict(config or {}))
    sweep = [_sweep_run(cfg, mode, rate) for mode in cfg.dedupe for rate in cfg.ack_loss_rates]
    crash_runs = [_crash_run(cfg, mode, point) for point in cfg.crash_points for mode in cfg.dedupe]
    return DuplicatesResult(cfg, sweep, crash_runs, _metrics(sweep, crash_runs))
