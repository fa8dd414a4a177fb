"""Scale-up vs scale-out (수직 확장 vs 수평 확장): lesson 01, curriculum rows A1-A3.

``run_scale(config)`` serves the same seeded requests twice - with ``servers`` machines behind a
load balancer, and with one machine holding all their cores - and lets one machine die part way
through.  It reports each architecture's latency, throughput, errors, utilisation, price, what
the failure cost and how many logged-in sessions died with the machine.

``utilisation_sweep(...)`` runs a plain queue at utilisations from 10 % to 95 % beside the
M/M/c (Erlang C) prediction: waiting grows like 1/(1-rho), which is why ~60-70 % CPU is the
usual signal to add capacity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pydantic
import simpy

from simulator.errors import InputError
from simulator.rng import Streams
from simulator.scenarios.scale_model import (SCALE_OUT, SCALE_UP, VARIANTS, Architecture, ScaleConfig,
                                             VariantRun, analytic_variant, architectures, cost_curve,
                                             cost_per_hour, simulate_variant, timeline)
from simulator.sim.servicepool import ServicePool

__all__ = ["ScaleConfig", "ScaleResult", "make_config", "run_scale", "utilisation_sweep", "knee_growth",
           "knee_curve", "KNEE_RHOS", "SCALE_OUT", "SCALE_UP", "VARIANTS"]

KNEE_RHOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def make_config(**values: Any) -> ScaleConfig:
    """``ScaleConfig(**values)``, with a bad value reported as an ``InputError`` naming the field."""
    from simulator.config_errors import input_error_from

    try:
        return ScaleConfig.model_validate(values)
    except pydantic.ValidationError as exc:
        raise input_error_from(exc) from None


# ---------------------------------------------------------------------- the utilisation knee
def _mmc_mean_response(seed: int, cores: int, mu: float, rho: float, requests: int,
                       warmup_fraction: float) -> float:
    """Mean time in system of a FIFO queue with ``cores`` servers in MQ Lab's engine."""
    env = simpy.Environment()
    pool = ServicePool(env, cores, name="knee.cpu")
    streams = Streams(seed)
    lam = rho * cores * mu
    # unit draws scaled per point: every utilisation replays the same customers (common random
    # numbers), so the curve's shape is not blurred by a fresh sample at each point
    gaps = (streams["knee.arrivals"].standard_exponential(requests) / lam).tolist()
    work = (streams["knee.cpu"].standard_exponential(requests) / mu).tolist()
    skip = int(requests * warmup_fraction)  # the queue starts empty: drop its first customers
    total = [0.0, 0]

    def arrive(i: int) -> None:
        started = env.now
        done = pool.submit(work[i])
        if i >= skip:
            def finished(_e: simpy.Event) -> None:
                total[0] += env.now - started
                total[1] += 1
            done.callbacks.append(finished)
        if i + 1 < requests:
            env.timeout(gaps[i + 1]).callbacks.append(lambda _e: arrive(i + 1))

    # callbacks rather than one process per customer: about three events each, so 10^5 is cheap
    env.timeout(gaps[0]).callbacks.append(lambda _e: arrive(0))
    env.run()
    return total[0] / total[1]


def utilisation_sweep(*, cores: int = 1, cpu_ms: float = 10.0, rhos: Sequence[float] = KNEE_RHOS,
                      requests: int = 60_000, seed: int = 7,
                      warmup_fraction: float = 0.1) -> dict[str, Any]:
    """Simulated mean response at each utilisation beside the M/M/c prediction (ms).

    ``requests`` is the count at the busy points (rho >= 0.6); the first ``warmup_fraction`` of
    each point's customers is left out of its mean.
    """
    from simulator.analysis import mmc_latency_curve

    for name, value, ok, allowed in (
            ("cores", cores, isinstance(cores, int) and cores >= 1, "a whole number >= 1"),
            ("cpu_ms", cpu_ms, isinstance(cpu_ms, (int, float)) and 0 < cpu_ms < math.inf, "a finite time > 0"),
            ("requests", requests, isinstance(requests, int) and requests >= 30, "a whole number >= 30"),
            ("warmup_fraction", warmup_fraction, 0 <= warmup_fraction < 0.9, "a share in [0, 0.9)"),
            ("rhos", list(rhos), bool(rhos) and all(0 < r < 1 for r in rhos), "utilisations in (0, 1)")):
        if not ok:
            raise InputError(name, value, allowed)
    mu = 1000.0 / cpu_ms
    # a quiet queue forgets its past within a few customers; a busy one needs many more for a
    # steady mean, so points below 60 % get a third of the requests (most of the run time goes
    # to the busy end)
    counts = [requests if r >= 0.6 else max(10, requests // 3) for r in rhos]
    sim = [_mmc_mean_response(seed, cores, mu, r, n, warmup_fraction) * 1000.0
           for r, n in zip(rhos, counts)]
    mmc = (mmc_latency_curve(mu, cores, list(rhos)) * 1000.0).tolist()
    return {"cores": cores, "cpu_ms": cpu_ms, "requests_per_point": counts,
            "rho": [round(r, 6) for r in rhos],
            "simulated_mean_ms": [round(x, 6) for x in sim],
            "mmc_mean_ms": [round(x, 6) for x in mmc]}


def knee_growth(sweep: Mapping[str, Any], low: float = 0.6, high: float = 0.9) -> float | None:
    """How many times the simulated mean response grows from ``low`` to ``high`` utilisation."""
    rho = list(sweep["rho"])
    if low not in rho or high not in rho:
        return None
    sim = sweep["simulated_mean_ms"]
    return round(sim[rho.index(high)] / sim[rho.index(low)], 6)


def knee_curve(cores: int, cpu_ms: float, points: int = 60) -> dict[str, list[float]]:
    """A dense analytic M/M/c curve for the plot, 0.02 .. 0.97."""
    from simulator.analysis import mmc_latency_curve

    rhos = [round(0.02 + i * (0.97 - 0.02) / (points - 1), 6) for i in range(points)]
    means = mmc_latency_curve(1000.0 / cpu_ms, cores, rhos) * 1000.0
    return {"rho": rhos, "mean_ms": [round(float(m), 6) for m in means]}


# ---------------------------------------------------------------------- the comparison
def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(x, digits)


def _variant_metrics(cfg: ScaleConfig, run: VariantRun) -> dict[str, Any]:
    arch: Architecture = run.arch
    n = cfg.requests
    latency = run.latency_ms.to_dict()
    failed = n - run.ok
    cost = cost_per_hour(cfg, arch)
    span = run.makespan_s
    throughput = run.ok / span if span > 0 else 0.0
    failure = None
    if cfg.failure_at_s is not None:
        failure = {"from_s": cfg.failure_at_s, "to_s": cfg.failure_at_s + cfg.replacement_downtime_s,
                   "requests": run.window_requests, "dropped": run.window_failed,
                   "dropped_share": (_r(run.window_failed / run.window_requests)
                                     if run.window_requests else 0.0)}
    return {
        "servers": arch.servers, "cores_per_server": arch.cores, "core_speed": arch.speed,
        "total_cores": arch.servers * arch.cores,
        "balancer": cfg.balancer if arch.servers > 1 else "none (one machine)",
        "requests": n, "ok": run.ok, "timeouts": run.timeouts, "refused": run.refused, "killed": run.killed,
        "error_rate": _r(failed / n), "timeout_rate": _r(run.timeouts / n),
        "latency_ms": {k: _r(v) if isinstance(v, float) else v for k, v in latency.items()},
        "p50_ms": _r(latency.get("p50")), "p99_ms": _r(latency.get("p99")),
        "throughput_rps": _r(throughput),
        "utilisation": _r(run.busy_core_s / (arch.servers * arch.cores * span)) if span > 0 else 0.0,
        "cost_per_hour": _r(cost),
        "cost_per_million_ok": _r(cost / (throughput * 3600.0) * 1e6) if throughput > 0 else None,
        "dropped_during_failure": run.window_failed,
        "failure": failure,
        "session_store": cfg.session_store,
        "sessions_lost": run.sessions_lost,
        "relogins": run.relogins,
        "makespan_s": _r(span),
    }


@dataclass
class ScaleResult:
    config: ScaleConfig
    variants: dict[str, dict[str, Any]]
    metrics: dict[str, Any]
    analytic: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": "scale", "seed": self.config.seed,
                "config": self.config.model_dump(mode="json"),
                "metrics": self.metrics, "analytic": self.analytic, "variants": self.variants}

    def report(self) -> str:
        cfg, out, up = self.config, self.variants[SCALE_OUT], self.variants[SCALE_UP]
        profile = (f"flat {cfg.arrival_rate:g}/s" if cfg.arrival_profile == "flat"
                   else f"spike from {cfg.arrival_rate:g}/s")

        def row(label: str, key: str, fmt: str) -> str:
            cells = [format(v[key], fmt) if v[key] is not None else "-" for v in (out, up)]
            return f"  {label:<26}{cells[0]:>14}{cells[1]:>14}"

        machines = [f"{v['servers']} x {v['cores_per_server']} cores" for v in (out, up)]

        lines = [
            f"scale  seed={cfg.seed}  {cfg.requests} requests, {profile}, CPU {cfg.request_cpu_ms:g} ms"
            f"  sessions in {cfg.session_store}",
            f"  {'':<26}{'scale-out':>14}{'scale-up':>14}",
            f"  {'machines':<26}{machines[0]:>14}{machines[1]:>14}",
            row("p50 response (ms)", "p50_ms", ".1f"),
            row("p99 response (ms)", "p99_ms", ".1f"),
            row("throughput (ok/s)", "throughput_rps", ".1f"),
            row("errors+timeouts", "error_rate", ".1%"),
            row("CPU utilisation", "utilisation", ".1%"),
            row("cost per hour", "cost_per_hour", ".2f"),
        ]
        if cfg.failure_at_s is not None:
            lines.append(f"  one machine dies at {cfg.failure_at_s:g} s, back after "
                         f"{cfg.replacement_downtime_s:g} s:")
            lines.append(row("  dropped in that window", "dropped_during_failure", "d"))
            share = [f"{v['failure']['dropped_share']:.0%}" for v in (out, up)]
            lines.append(f"  {'  share of the window':<26}{share[0]:>14}{share[1]:>14}")
            lines.append(row("  sessions lost", "sessions_lost", "d"))
            lines.append(row("  forced re-logins", "relogins", "d"))
        knee = self.metrics["knee"]
        i = knee["rho"].index(0.5) if 0.5 in knee["rho"] else None
        if i is not None:
            lines.append(f"  knee ({knee['cores']} core(s)): at 50 % mean response "
                         f"{knee['simulated_mean_ms'][i]:.1f} ms simulated vs {knee['mmc_mean_ms'][i]:.1f}"
                         f" ms M/M/c; 60 % -> 90 % grows x{self.metrics['knee_growth_60_to_90'] or 0:.1f}")
        return "\n".join(lines)


def run_scale(config: ScaleConfig | Mapping[str, Any] | None = None) -> ScaleResult:
    cfg = config if isinstance(config, ScaleConfig) else make_config(**dict(config or {}))
    runs = {arch.name: simulate_variant(cfg, arch) for arch in architectures(cfg)}
    variants = {name: _variant_metrics(cfg, run) for name, run in runs.items()}
    knee = utilisation_sweep(cores=cfg.knee_cores, cpu_ms=cfg.request_cpu_ms,
                             requests=cfg.knee_requests, seed=cfg.seed)
    metrics = {"knee": knee, "knee_growth_60_to_90": knee_growth(knee), "timeline": timeline(runs)}
    out_arch, up_arch = architectures(cfg)
    analytic = {
        "note": "M/M/c per machine at arrival_rate (the peak for spike), traffic split evenly",
        SCALE_OUT: {**analytic_variant(cfg, out_arch),
                    "after_failure": analytic_variant(cfg, out_arch, servers_up=max(cfg.servers - 1, 1))
                    if cfg.servers > 1 else None},
        SCALE_UP: analytic_variant(cfg, up_arch),
        "knee_curve": knee_curve(cfg.knee_cores, cfg.request_cpu_ms),
        "cost_curve": cost_curve(cfg),
    }
    return ScaleResult(cfg, variants, metrics, analytic)
