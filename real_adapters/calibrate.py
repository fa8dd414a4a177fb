"""Calibration: measure service times on the real services, map them onto the model, and put
the calibrated model's predicted throughput next to the measured one.

1. A profiling run (one worker, a backlog of submissions, stock for every one so each message
   takes the same path) times each port call inside the workers (``journal.Timings``), the
   per-message cycle (from its throughput) and the host's CPU (``hostload``: the CPU one
   message costs us, workers plus local services, and what other work was using).
2. ``calibrated_config(profile, base)`` maps it onto ``FlashSaleConfig``:
   ``gateway_latency_ms`` = the gateway stand-in's measured call, ``db_query_ms`` = the mean
   SQL statement, ``fsync_interval_s`` = twice the mean publish-confirm wait (the model
   confirms at the next flush tick, half an interval away on average), and ``handler_ms`` =
   what the measured cycle has beyond everything the model already charges per message
   (Python, pika, history writes...), found by running the model once with ``handler_ms=0``.
3. The host's CPU.  The model has none: its workers never wait for a processor.  On a real
   machine the part of a message that needs a CPU (everything but the gateway's sleep and the
   commit's fsync: ``cpu_bound_ms``) waits for one, more so the busier the host.  With the
   usual M/M/c approximation R = S / (1 - rho^c) for c CPUs, that part at K workers is
   ``cpu_bound_ms * (1 - rho_1^c) / (1 - rho_K^c)``, where rho_1 is the host's utilisation
   measured during the profiling run and rho_K adds our extra load, (X_K - X_1) times the CPU
   one message costs (workers and local services, measured).  X_K is the model's own
   throughput, so this is a fixed point, solved by re-running the model.  The plain mapping
   without this term is reported beside it.
4. Separate real runs at each worker count measure throughput; the model predicts each from
   the profile alone.  The profiling run is not one of them, so even the 1-worker figure is a
   prediction, not a fit of itself.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any

from simulator.config import FlashSaleConfig
from simulator.errors import InputError

from .audit import throughput
from .journal import read_timings
from .runner import RealOptions, RealResult, remove_run_dir, run_real

KIND, VERSION = "mqlab-service-profile", 1
STATEMENTS = ("db.login", "tx.insert_processed", "tx.insert_ledger")  # what db_query_ms stands for
MODEL_SUBMISSIONS = 800    # messages per model run: a steady mean in a fraction of a second
BACKLOG_RATE = 5000.0      # arrivals per second: faster than any worker count drains them


def base_config(workers: int, per_worker: int, gateway_latency_ms: float, seed: int = 7) -> FlashSaleConfig:
    """A backlog every worker drains flat out; stock for all, so every message is a grant."""
    n = workers * per_worker
    return FlashSaleConfig(seed=seed, submissions=n, stock=n, consumers=workers, arrival_profile="constant",
                           arrival_rate=BACKLOG_RATE, gateway_latency_ms=gateway_latency_ms)


def _merge(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    count = sum(s["count"] for s in summaries)
    mean = sum(s["mean"] * s["count"] for s in summaries) / count
    return {"count": count, "mean": round(mean, 4), "p50": max(s["p50"] for s in summaries),
            "p99": max(s["p99"] for s in summaries)}


def profile_from_run(result: RealResult, gateway_latency_ms: float) -> dict[str, Any]:
    """The measured profile of one real run (its workers' timings files, throughput, host)."""
    per_op: dict[str, list[dict[str, Any]]] = {}
    for stem, ops in read_timings(result.run["run_dir"]).items():
        role = "consumer" if stem.startswith("consumer-") else stem.split(".")[0]
        for name, summary in ops.items():
            if summary["count"] and not name.startswith("warmup."):
                key = name if role == "consumer" else f"{role}:{name}"
                per_op.setdefault(key, []).append(summary)
    ops_ms = {name: _merge(parts) for name, parts in per_op.items()}
    rate = result.metrics["throughput_per_s"]
    if not rate or "consumer.handle" not in ops_ms:
        raise RuntimeError("the profiling run finished too few messages to measure")
    handle = ops_ms["consumer.handle"]
    port_ms = sum(s["mean"] * s["count"] for name, s in ops_ms.items()
                  if name.split(".")[0] in ("broker", "redis", "db", "tx", "gateway")) / handle["count"]
    waits = sum(ops_ms[n]["mean"] for n in ("gateway.send", "tx.commit") if n in ops_ms)
    return {"kind": KIND, "version": VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(), "cpus": os.cpu_count(), "database": result.run["database"],
            "gateway_latency_ms": gateway_latency_ms, "workers": result.config.consumers,
            "submissions": result.config.submissions, "ops_ms": ops_ms,
            "throughput_per_s": rate, "cycle_ms": round(1000.0 / rate, 4),
            "handle_ms": handle["mean"], "unattributed_ms": round(handle["mean"] - port_ms, 4),
            "cpu_bound_ms": round(handle["mean"] - waits, 4), "host_cpu": result.run.get("host"),
            "measured_throughput": {}}


def check_profile(profile: Any, source: str = "profile") -> dict[str, Any]:
    need = ("ops_ms", "cycle_ms", "gateway_latency_ms")
    if not isinstance(profile, dict) or profile.get("kind") != KIND or any(k not in profile for k in need):
        raise InputError("--profile", source, f"a {KIND} JSON file (from `mqlab real calibrate --profile-out`)")
    ops = profile["ops_ms"]
    if not any(name in ops for name in STATEMENTS) or not isinstance(profile["cycle_ms"], (int, float)) \
            or profile["cycle_ms"] <= 0:
        raise InputError("--profile", source, "a profile with statement times and a positive cycle_ms")
    return {**profile, "source": profile.get("source", source)}


def _mean(profile: dict[str, Any], *names: str) -> float | None:
    found = [profile["ops_ms"][n] for n in names if n in profile["ops_ms"]]
    return _merge(found)["mean"] if found else None


def model_rate(cfg: FlashSaleConfig) -> float:
    from simulator.scenarios.flash_sale import run_flash_sale

    rate = throughput(run_flash_sale(cfg.model_copy(update={"keep_history": None})).ops)
    if rate is None:
        raise RuntimeError("the model finished too few messages to measure its throughput")
    return rate


def _per_op_fields(profile: dict[str, Any]) -> dict[str, float]:
    mapped: dict[str, float] = {}
    gateway = _mean(profile, "gateway.send")
    mapped["gateway_latency_ms"] = gateway if gateway is not None else profile["gateway_latency_ms"]
    query = _mean(profile, *STATEMENTS)
    if query is not None:
        mapped["db_query_ms"] = max(query, 0.001)
    publish = _mean(profile, "loadgen:broker.publish")
    if publish is not None:
        mapped["fsync_interval_s"] = max(2 * publish / 1000.0, 0.0005)
    return mapped


def _cpu_term(profile: dict[str, Any]) -> tuple[float, float, int, float] | None:
    """``(CPU ms per message, cpu-bound ms, CPUs, utilisation at one worker)``, or None when the
    profile has no host figures (not Linux)."""
    host, bound = profile.get("host_cpu"), profile.get("cpu_bound_ms")
    if not host or not bound or not host.get("demand_ms_per_msg") or host.get("busy") is None:
        return None
    return float(host["demand_ms_per_msg"]), float(bound), int(host["cpus"]), min(0.9, float(host["busy"]))


def _stretch(rho: float, cpus: int) -> float:
    return 1.0 / (1.0 - min(rho, 0.95) ** cpus)  # response time over service time, M/M/c approx.


def _plain(profile: dict[str, Any], base: FlashSaleConfig) -> FlashSaleConfig:
    """``base`` with the per-operation mapping and the residual ``handler_ms`` (module doc, 2)."""
    mapped = _per_op_fields(profile)
    # the model's own per-message time with no handler cost, at one consumer on a backlog
    probe = base_config(1, MODEL_SUBMISSIONS, mapped["gateway_latency_ms"], base.seed)
    probe = probe.model_copy(update={**mapped, "handler_ms": 0.0, "prefetch": base.prefetch})
    handler = max(0.0, profile["cycle_ms"] - 1000.0 / model_rate(probe))
    return FlashSaleConfig.model_validate({**base.model_dump(), **mapped, "handler_ms": handler})


def _stretched(profile: dict[str, Any], cfg: FlashSaleConfig, rounds: int = 6) -> tuple[FlashSaleConfig, float]:
    """``cfg`` with the host-CPU stretch at ``cfg.consumers`` added to ``handler_ms`` (module
    doc, 3), and the model's backlog throughput with it."""
    term = _cpu_term(profile)
    if term is None:
        return cfg, model_rate(_probe_of(cfg))
    demand, bound, cpus, rho1 = term
    base_rate = profile["throughput_per_s"]
    rate = cfg.consumers * base_rate  # start: linear scaling
    stretched, new_rate = cfg, rate
    for _ in range(rounds):
        rho = rho1 + max(0.0, rate - base_rate) * demand / 1000.0 / cpus
        extra = bound * (_stretch(rho, cpus) / _stretch(rho1, cpus) - 1.0)
        stretched = cfg.model_copy(update={"handler_ms": cfg.handler_ms + extra})
        new_rate = model_rate(_probe_of(stretched))
        if abs(new_rate - rate) <= 0.01 * rate:
            break
        rate = (rate + new_rate) / 2  # damped: the stretch and the rate pull against each other
    return stretched, new_rate


def calibrated_config(profile: dict[str, Any], base: FlashSaleConfig, *, cpu: bool = True) -> FlashSaleConfig:
    """``base`` with the measured service times mapped onto the model's fields (module doc);
    with ``cpu``, ``handler_ms`` also carries the host-CPU stretch at ``base.consumers``."""
    plain = _plain(profile, base)
    return _stretched(profile, plain)[0] if cpu else plain


def _probe_of(cfg: FlashSaleConfig) -> FlashSaleConfig:
    """The same service times on a backlog large enough to measure (the base may be small)."""
    n = max(cfg.submissions, MODEL_SUBMISSIONS)
    return base_config(cfg.consumers, n // cfg.consumers + 1, cfg.gateway_latency_ms, cfg.seed).model_copy(
        update={k: getattr(cfg, k) for k in ("handler_ms", "db_query_ms", "fsync_interval_s", "prefetch")})


def mapped_fields(cfg: FlashSaleConfig) -> dict[str, float]:
    return {k: getattr(cfg, k) for k in ("handler_ms", "db_query_ms", "gateway_latency_ms", "fsync_interval_s")}


def predict(profile: dict[str, Any], workers: tuple[int, ...], seed: int = 7) -> list[dict[str, Any]]:
    """The calibrated model's throughput at each worker count, with and without the host-CPU
    term, beside the measured figure when the profile has one."""
    latency = profile["gateway_latency_ms"]
    plain1 = _plain(profile, base_config(1, MODEL_SUBMISSIONS, latency, seed))
    rows = []
    for k in workers:
        plain = plain1.model_copy(update={"consumers": k})
        stretched, predicted = _stretched(profile, plain)
        no_cpu = model_rate(_probe_of(plain))
        measured = profile.get("measured_throughput", {}).get(str(k))
        rows.append({"workers": k, "predicted": round(predicted, 3), "measured": measured,
                     "error_pct": _error(predicted, measured), "predicted_no_cpu": round(no_cpu, 3),
                     "error_no_cpu_pct": _error(no_cpu, measured),
                     "handler_ms": round(stretched.handler_ms, 4)})
    return rows


def _error(predicted: float, measured: float | None) -> float | None:
    return None if not measured else round(100.0 * (predicted - measured) / measured, 2)


def measure(settings: Any, workers: int, per_worker: int, gateway_latency_ms: float, seed: int) -> RealResult:
    cfg = base_config(workers, per_worker, gateway_latency_ms, seed)
    result = run_real(RealOptions(config=cfg, settings=settings, max_seconds=60 + cfg.submissions * 0.2))
    if not result.checker.valid or result.run["errors"]:
        raise RuntimeError(f"calibration run with {workers} workers was not clean: "
                           f"{result.run['errors'] or result.checker.counts}")
    return result


def calibrate(settings: Any, *, workers: tuple[int, ...] = (1, 2, 4), per_worker: int = 120,
              gateway_latency_ms: float = 20.0, seed: int = 7, repeats: int = 1) -> dict[str, Any]:
    """Profile, measure each worker count (``repeats`` times, interleaved; the median), predict
    each from the profile; the report."""
    profiling = measure(settings, 1, 2 * per_worker, gateway_latency_ms, seed)
    profile = profile_from_run(profiling, gateway_latency_ms)
    remove_run_dir(profiling)
    runs: dict[int, list[float]] = {k: [] for k in workers}
    hosts: dict[int, list[Any]] = {k: [] for k in workers}
    for _ in range(repeats):
        for k in workers:  # interleaved, so a change in the machine's other load hits every count
            result = measure(settings, k, per_worker, gateway_latency_ms, seed)
            runs[k].append(result.metrics["throughput_per_s"])
            hosts[k].append(result.run.get("host"))
            remove_run_dir(result)
    for k, rates in runs.items():
        profile["measured_throughput"][str(k)] = round(statistics.median(rates), 3)
    rows = predict(profile, workers, seed)
    for row in rows:
        row["measured_runs"] = runs[row["workers"]]
        row["host_background_cpus"] = [h and h["background_cpus"] for h in hosts[row["workers"]]]
    calibrated = calibrated_config(profile, base_config(1, MODEL_SUBMISSIONS, gateway_latency_ms, seed))
    return {"profile": profile, "calibrated": mapped_fields(calibrated), "rows": rows}
