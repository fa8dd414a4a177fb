"""A plain M/M/c queue in MQ Lab's own engine, printed beside Erlang C's prediction.

This is the engine's validation: the same ``ServicePool`` every component uses, fed Poisson
arrivals and exponential service times, must reproduce queueing theory (see
``tests/validation/test_queueing_theory.py``).  It is also the smallest place to see the
engine's shape: ONE chain of arrival timeouts creates every customer, a customer is a few
numbers handed to the pool (no SimPy process each), and its wait is recorded when its
service starts.

The queue starts empty, which makes early customers wait less than in steady state, so
the first ``warmup`` customers are not measured.  The standard error of the mean wait is
estimated with batch means: consecutive waits are strongly correlated (one long wait makes
the next long too), so the spread of ``BATCHES`` batch averages is used instead of the
spread of single waits, which would claim far more precision than the run has.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Iterator

import numpy as np
import pydantic
import simpy
from pydantic import BaseModel, ConfigDict, Field, model_validator
from simpy.core import EmptySchedule

from simulator.analysis import (erlang_c, littles_law_L, mmc_mean_response, mmc_mean_wait,
                                mmc_wait_quantile, utilisation)
from simulator.config_errors import input_error_from
from simulator.rng import Streams
from simulator.sim.servicepool import ServicePool
from simulator.stats import Summary, TimeSeries, sig6

__all__ = ["MMcConfig", "MMcResult", "make_config", "run_mmc", "BATCHES"]

BATCHES = 30            # batch means: enough batches for a stable spread, each still long
BLOCK = 8192            # random numbers drawn per numpy call
SERIES_POINTS = 2000    # samples of "customers in the system" over the arrivals


class MMcConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    servers: int = Field(default=4, ge=1, le=1000, description="c: servers taking from the one line")
    arrival_rate: float = Field(default=3.2, gt=0, allow_inf_nan=False,
                                description="lambda: customers per unit of time (Poisson)")
    service_rate: float = Field(default=1.0, gt=0, allow_inf_nan=False,
                                description="mu: customers one server finishes per unit of time")
    customers: int = Field(default=200_000, ge=1, le=100_000_000, description="customers to simulate")
    warmup: int | None = Field(default=None, ge=0,
                               description="first customers not measured; unset means a tenth of customers")
    seed: int = Field(default=7, ge=0, le=2**32 - 1)

    @model_validator(mode="after")
    def _settles(self) -> "MMcConfig":
        capacity = self.servers * self.service_rate
        if self.arrival_rate >= capacity:
            raise ValueError(
                f"arrival_rate: less than servers x service_rate = {capacity:g}; at "
                f"rho = {self.arrival_rate / capacity:.4g} >= 1 the line grows for as long as the "
                "run lasts and never settles, so there is no steady state to compare with")
        if self.warmup is not None and self.warmup >= self.customers:
            raise ValueError(f"warmup: fewer than customers ({self.customers}), "
                             "or no customer is left to measure")
        return self

    @property
    def rho(self) -> float:
        return self.arrival_rate / (self.servers * self.service_rate)

    @property
    def discarded(self) -> int:
        """Customers dropped from the measurements (``warmup``, by default 10%)."""
        return self.customers // 10 if self.warmup is None else self.warmup


def make_config(**values: Any) -> MMcConfig:
    """``MMcConfig(**values)``, with a bad value reported as an ``InputError`` naming the field."""
    try:
        return MMcConfig.model_validate(values)
    except pydantic.ValidationError as exc:
        raise input_error_from(exc) from None


@dataclass
class MMcResult:
    config: MMcConfig
    metrics: dict[str, Any]
    analytic: dict[str, Any]
    series: dict[str, list[float]] = field(repr=False, default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        cfg = self.config.model_dump()
        cfg["warmup"] = self.config.discarded  # as run, so the dict replays the same run
        return {"scenario": "mmc", "seed": self.config.seed, "config": cfg,
                "metrics": dict(self.metrics), "analytic": dict(self.analytic)}

    def report(self) -> str:
        c, m, a = self.config, self.metrics, self.analytic
        lines = [f"M/M/{c.servers}: lambda {c.arrival_rate:g}, mu {c.service_rate:g}, rho {c.rho:.4g}, "
                 f"{m['customers']} customers measured after {c.discarded} warm-up, seed {c.seed}",
                 f"  {'':<22}{'simulated':>14}{'theory':>14}"]
        rows = [("mean wait (Wq)", "mean_wait", "mean_wait"), ("p50 wait", "p50_wait", "p50_wait"),
                ("p99 wait", "p99_wait", "p99_wait"), ("mean response (W)", "mean_response", "mean_response"),
                ("in system (L)", "mean_in_system", "mean_in_system"),
                ("P(wait > 0)", "waited_share", "erlang_c"), ("utilisation", "utilisation", "utilisation")]
        for label, sim_key, theory_key in rows:
            lines.append(f"  {label:<22}{_fmt(m[sim_key]):>14}{_fmt(a[theory_key]):>14}")
        se = m["mean_wait_stderr"]
        lines.append(f"  mean wait +- 3 s.e.   {m['mean_wait']:.6g} +- "
                     f"{'?' if se is None else format(3 * se, '.3g')} ({BATCHES} batch means)")
        lines.append(f"  engine: {m['events']} events in {m['sim_time']:.6g} units of simulated time")
        return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def _draws(rng: np.random.Generator, scale: float) -> Iterator[float]:
    """Exponential numbers drawn a block at a time (fast) but kept in flat memory."""
    while True:
        yield from (rng.standard_exponential(BLOCK) * scale).tolist()


def _run_counting(env: simpy.Environment) -> int:
    """``env.run()`` to the end, returning how many events the engine processed.

    The same loop as SimPy's own ``run``; counting here costs less than overriding ``step``.
    """
    step, processed = env.step, 0
    try:
        while True:
            step()
            processed += 1
    except EmptySchedule:
        return processed


def run_mmc(config: MMcConfig | None = None) -> MMcResult:
    """Simulate ``config.customers`` customers through one ``ServicePool`` of ``servers``."""
    cfg = config or MMcConfig()
    lam, mu, c, n = cfg.arrival_rate, cfg.service_rate, cfg.servers, cfg.customers
    skip = cfg.discarded
    measured = n - skip
    env = simpy.Environment()
    pool = ServicePool(env, c, name="mmc.servers")
    streams = Streams(cfg.seed)
    gaps, work = _draws(streams["arrivals"], 1.0 / lam), _draws(streams["service"], 1.0 / mu)

    waits = Summary()
    batch = max(1, measured // BATCHES)
    batch_sums = [0.0] * (measured // batch + 1)  # the last slot takes the remainder
    served_work, waited = 0.0, 0  # of measured customers: service time, how many waited
    horizon = n / lam  # expected time of the last arrival
    series = TimeSeries(env, horizon / SERIES_POINTS, horizon_hint=horizon)
    series.track("in_system", lambda: pool.busy + pool.queued)
    # L is the exact time average of the number in the system between the first measured
    # arrival and the last arrival: the area under N(t), brought up to date at each change
    arrived, inside, area, changed = 0, 0, 0.0, 0.0
    window = [0.0, 0.0, 0.0, 0.0]  # time and area at the first measured and at the last arrival

    def start(i: int, came: float, service: float) -> None:
        # runs when service begins (ServicePool's action): the wait is known now
        nonlocal served_work, waited
        if i >= skip:
            wait = env.now - came
            waits.add(wait)
            batch_sums[(i - skip) // batch] += wait
            served_work += service
            waited += wait > 0

    def depart(_event: simpy.Event) -> None:
        nonlocal inside, area, changed
        now = env.now
        area += inside * (now - changed)
        changed, inside = now, inside - 1

    def arrive(_event: simpy.Event) -> None:
        nonlocal arrived, inside, area, changed
        i, now = arrived, env.now
        arrived = i + 1
        area += inside * (now - changed)
        changed, inside = now, inside + 1
        if i == skip:
            window[0:2] = now, area
        service = next(work)
        pool.submit(service, partial(start, i, now, service)).callbacks.append(depart)
        if arrived < n:
            env.timeout(next(gaps)).callbacks.append(arrive)
        else:
            window[2:4] = now, area
            series.stop()  # the series shows the arrivals, not the final drain

    env.timeout(next(gaps)).callbacks.append(arrive)
    events = _run_counting(env)  # ends when the last customer has left: nothing else is scheduled

    full = [s / batch for s in batch_sums[:measured // batch]]
    span = window[2] - window[0]
    mean_wait = waits.mean or 0.0
    metrics: dict[str, Any] = {
        "customers": measured,
        "mean_wait": mean_wait,
        # None when there are too few customers for two batches
        "mean_wait_stderr": statistics.stdev(full) / math.sqrt(len(full)) if len(full) > 1 else None,
        "p50_wait": waits.p50,
        "p90_wait": waits.p90,
        "p99_wait": waits.p99,
        "max_wait": waits.max,
        "waited_share": waited / measured,
        "mean_response": mean_wait + served_work / measured,
        "mean_in_system": (window[3] - window[1]) / span if span > 0 else None,
        "utilisation": pool.utilisation(env.now),
        "throughput": pool.served / env.now,
        "sim_time": env.now,
    }
    metrics = {k: sig6(v) if isinstance(v, float) else v for k, v in metrics.items()}
    metrics["events"] = events
    return MMcResult(cfg, metrics, _analytic(lam, mu, c), series.to_dict())


def _analytic(lam: float, mu: float, c: int) -> dict[str, float]:
    response = mmc_mean_response(lam, mu, c)
    return {k: sig6(v) for k, v in {
        "mean_wait": mmc_mean_wait(lam, mu, c),
        "erlang_c": erlang_c(c, lam / mu),
        "utilisation": utilisation(lam, mu, c),
        "mean_response": response,
        "mean_in_system": littles_law_L(lam, response),
        "p50_wait": mmc_wait_quantile(lam, mu, c, 0.50),
        "p99_wait": mmc_wait_quantile(lam, mu, c, 0.99),
    }.items()}
