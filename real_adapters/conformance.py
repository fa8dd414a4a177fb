"""Sim vs real: the same seeded scenario in the SimPy world, and where the outcomes differ.

The model gets the real run's configuration and seed (so the same submissions arrive in the
same pattern), optionally calibrated from a measured profile, and the real run's faults at
the times they actually fired.  Both histories are read with the same functions
(``real_adapters.audit``) and the same checker.

Safety counts (lost, double granted, oversold) should agree on whether the anomaly happens
at all (``DIFFERS`` when one world has it and the other not); how many, like duplicates and
redeliveries, depends on timing (what was in flight when the fault hit) and is reported as a
difference, not a failure; throughput agrees when within ``TOLERANCE``.
"""

from __future__ import annotations

from typing import Any

from simulator.config import Fault, FlashSaleConfig

from .audit import redeliveries, throughput
from .faults import parse_fault
from .runner import POINT_RESTART_S, RealResult

TOLERANCE = 0.20
EXACT = ("lost", "double_granted", "oversold", "unexpected")
TIMING = ("duplicated", "granted")


def model_faults(result: RealResult, relay_restart_s: float = 0.5) -> tuple[tuple[Fault, ...], list[str]]:
    """The real run's fired faults as the model's ``Fault`` list, with what could not be mapped."""
    faults: list[Fault] = []
    notes: list[str] = []
    for fired in result.faults:
        if "skipped" in fired:
            continue
        spec = parse_fault(fired["fault"])
        # a replacement process takes its start-up time too: the measured downtime, when known
        back = fired.get("back_after_s")
        if spec.kind == "kill":
            faults.append(Fault(target=spec.target, at=fired["at_s"],
                                restart_after=None if spec.seconds is None else back or spec.seconds))
            if spec.sending:
                notes.append(f"{spec.text}: the model kills at {fired['at_s']} s whatever the "
                             "consumer is doing, not mid-send")
        elif spec.kind == "broker-restart":
            faults.append(Fault(target="broker", at=fired["at_s"], restart_after=fired.get("down_s", 1.0)))
        elif spec.kind == "point":
            restart = back or (relay_restart_s if spec.target == "relay" else POINT_RESTART_S)
            if spec.nth == 1 or spec.target == "relay":
                # the relay's point is the whole story (a re-publish); its timing matters little
                faults.append(Fault(target=spec.target, point=spec.point, restart_after=restart))
                if spec.nth != 1:
                    notes.append(f"{spec.text}: the model's relay dies the first time it reaches "
                                 f"the point, the real one the {spec.nth}th time")
            else:
                # a consumer's downtime shapes throughput: match when it really happened (the
                # model's crash point fires on the first arrival, not the N-th)
                faults.append(Fault(target=spec.target, at=fired["at_s"], restart_after=restart))
                notes.append(f"{spec.text}: modelled as a crash at {fired['at_s']} s (when the real "
                             f"worker reached it the {spec.nth}th time), wherever the model's worker is")
        else:
            notes.append(f"{spec.text}: a SIGSTOP pause has no model equivalent (the channel stays "
                         "open, nothing is requeued); the model runs without it")
    return tuple(faults), notes


def model_config(result: RealResult, profile: dict[str, Any] | None = None) -> tuple[FlashSaleConfig, list[str]]:
    cfg = result.config
    if profile is not None:
        from .calibrate import calibrated_config

        cfg = calibrated_config(profile, cfg)
    faults, notes = model_faults(result)
    return cfg.model_copy(update={"faults": faults, "keep_history": None}), notes


def _row(figure: str, real: Any, model: Any, verdict: str) -> dict[str, Any]:
    return {"figure": figure, "real": real, "model": model, "verdict": verdict}


def compare(real: RealResult, model_counts: dict[str, Any], model_ops: list) -> list[dict[str, Any]]:
    rc = real.checker.counts
    rows = []
    for name in EXACT:
        real_n, model_n = rc[name], model_counts[name]
        # whether the anomaly happens at all must agree; how many depends on what was in flight
        verdict = "same" if real_n == model_n else "both > 0, count differs (timing)" \
            if real_n and model_n else "DIFFERS"
        rows.append(_row(name, real_n, model_n, verdict))
    for name in TIMING:
        same = rc[name] == model_counts[name]
        rows.append(_row(name, rc[name], model_counts[name], "same" if same else "differs (timing)"))
    real_re, model_re = real.metrics["redeliveries"], redeliveries(model_ops)
    rows.append(_row("redeliveries", real_re, model_re,
                     "same" if real_re == model_re else "differs (timing)"))
    real_rate, model_rate = real.metrics["throughput_per_s"], throughput(model_ops)
    if real_rate and model_rate:
        error = (model_rate - real_rate) / real_rate
        verdict = f"{error:+.0%} " + ("(within 20%)" if abs(error) <= TOLERANCE else "(OUTSIDE 20%)")
    else:
        verdict = "not enough messages to measure"
    rows.append(_row("throughput_per_s", real_rate, None if model_rate is None else round(model_rate, 3),
                     verdict))
    rows.append(_row("valid", real.checker.valid, model_counts.get("valid"),
                     "same" if real.checker.valid == model_counts.get("valid") else "DIFFERS"))
    return rows


def compare_with_model(real: RealResult, profile: dict[str, Any] | None = None,
                       profile_name: str | None = None) -> dict[str, Any]:
    """Run the model on the real run's scenario and faults; the conformance report."""
    from simulator.scenarios.flash_sale import run_flash_sale

    cfg, notes = model_config(real, profile)
    model = run_flash_sale(cfg)
    counts = {**model.checker.counts, "valid": model.checker.valid}
    if profile is None:
        notes.append("the model runs on its default service times; pass --profile for calibrated ones")
    return {"profile": profile_name or (profile or {}).get("source"),
            "model_config": {k: v for k, v in cfg.model_dump(mode="json").items()
                             if k in ("handler_ms", "db_query_ms", "gateway_latency_ms",
                                      "fsync_interval_s", "consumers", "faults")},
            "rows": compare(real, counts, model.ops), "notes": notes,
            "model_history_sha256": model.history_sha256}
