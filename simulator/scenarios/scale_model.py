"""The model behind the ``scale`` scenario: its config, the two architectures, their price, and
one seeded run of one architecture.

Scale-out (수평 확장) is ``servers`` machines of ``cores_per_server`` cores behind a load
balancer; scale-up (수직 확장) is one machine with all those cores (each ``scale_up_core_speed``
times as fast).  Both runs draw arrivals, sessions and CPU demands from the same named streams
in arrival order, so the two architectures serve exactly the same requests (common random
numbers) and any difference comes from the architecture alone.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

import numpy as np
import simpy
from pydantic import Field, model_validator

from simulator.config import StrictModel
from simulator.rng import Streams
from simulator.sim.loadgen import arrival_times
from simulator.sim.servers import ApiServer, LoadBalancer
from simulator.stats import Summary

SCALE_OUT, SCALE_UP = "scale-out", "scale-up"
VARIANTS = (SCALE_OUT, SCALE_UP)


class ScaleConfig(StrictModel):
    seed: int = Field(default=7, ge=0, le=2**32 - 1)
    # --- load
    requests: int = Field(default=12_000, ge=1, le=2_000_000)
    arrival_profile: Literal["flat", "spike"] = "flat"
    arrival_rate: float = Field(default=480.0, gt=0, le=1e6, allow_inf_nan=False,
                                description="requests per second (the opening peak for spike)")
    spike_decay_s: float = Field(default=5.0, gt=0, le=1e6, allow_inf_nan=False)
    spike_base_fraction: float = Field(default=0.3, gt=0, le=1, allow_inf_nan=False,
                                       description="the rate the spike settles at, as a share of the peak")
    request_cpu_ms: float = Field(default=10.0, gt=0, le=60_000, allow_inf_nan=False,
                                  description="mean CPU per request on one ordinary core (exponential)")
    timeout_s: float = Field(default=2.0, gt=0, le=3600, allow_inf_nan=False,
                             description="the client gives up after this long")
    sessions: int = Field(default=2000, ge=1, le=10_000_000, description="distinct logged-in users")
    # --- the two architectures
    servers: int = Field(default=4, ge=1, le=1024, description="scale-out: number of servers")
    cores_per_server: int = Field(default=2, ge=1, le=1024)
    threads_per_core: int = Field(default=16, ge=1, le=10_000)
    scale_up_core_speed: float = Field(default=1.0, gt=0, le=100, allow_inf_nan=False,
                                       description="scale-up: speed of one big-box core vs an ordinary one")
    core_ceiling: int = Field(default=128, ge=1, le=100_000,
                              description="scale-up: the most cores one machine can have")
    balancer: Literal["round-robin", "least-connections", "sticky"] = "sticky"
    # --- failure
    failure_at_s: float | None = Field(default=10.0, ge=0, le=1e7, allow_inf_nan=False,
                                       description="when one machine dies (None: never)")
    replacement_downtime_s: float = Field(default=8.0, ge=0, le=1e7, allow_inf_nan=False,
                                          description="how long the dead machine stays out")
    # --- sessions
    session_store: Literal["local", "redis"] = "local"
    session_hop_ms: float = Field(default=1.0, ge=0, le=10_000, allow_inf_nan=False,
                                  description="round trip to the shared session store")
    # --- price
    price_per_core_hour: float = Field(default=0.04, gt=0, le=1e6, allow_inf_nan=False)
    price_exponent: float = Field(default=1.3, ge=1, le=3, allow_inf_nan=False,
                                  description="one machine's price grows as capacity**exponent")
    ops_cost_per_server_hour: float = Field(default=0.05, ge=0, le=1e6, allow_inf_nan=False,
                                            description="running one more machine (people, monitoring)")
    # --- the utilisation knee
    knee_cores: int = Field(default=1, ge=1, le=1024,
                            description="cores of the queue in the utilisation sweep")
    knee_requests: int = Field(default=60_000, ge=1000, le=5_000_000,
                               description="requests per point of the utilisation sweep")

    @model_validator(mode="after")
    def _fits_one_machine(self) -> "ScaleConfig":
        total = self.servers * self.cores_per_server
        if total > self.core_ceiling:
            raise ValueError(f"core_ceiling: scale-up needs servers x cores_per_server = {total} cores "
                             f"on one machine, above core_ceiling ({self.core_ceiling})")
        return self

    @property
    def total_cores(self) -> int:
        return self.servers * self.cores_per_server


@dataclass(frozen=True)
class Architecture:
    name: str
    servers: int
    cores: int  # per server
    speed: float  # per-core speed factor
    threads: int  # per server


def architectures(cfg: ScaleConfig) -> tuple[Architecture, Architecture]:
    total = cfg.total_cores
    return (Architecture(SCALE_OUT, cfg.servers, cfg.cores_per_server, 1.0,
                         cfg.cores_per_server * cfg.threads_per_core),
            Architecture(SCALE_UP, 1, total, cfg.scale_up_core_speed, total * cfg.threads_per_core))


def machine_price(cfg: ScaleConfig, cores: int, speed: float = 1.0) -> float:
    """Hourly price of one machine: super-linear in its capacity (big boxes carry a premium)."""
    return cfg.price_per_core_hour * (cores * speed) ** cfg.price_exponent + cfg.ops_cost_per_server_hour


def cost_per_hour(cfg: ScaleConfig, arch: Architecture) -> float:
    return arch.servers * machine_price(cfg, arch.cores, arch.speed)


def cost_curve(cfg: ScaleConfig) -> dict[str, list[Any]]:
    """Hourly cost against total cores: N small machines (linear) vs one machine (super-linear,
    and nothing at all past the ceiling)."""
    step = cfg.cores_per_server
    top = max(cfg.core_ceiling, 2 * cfg.total_cores)
    cores = list(range(step, top + 1, step))
    if len(cores) > 200:  # keep the curve small whatever the knobs
        cores = sorted({cores[round(i * (len(cores) - 1) / 199)] for i in range(200)})
    out = [round(k // step * machine_price(cfg, step), 6) for k in cores]
    up = [round(machine_price(cfg, k, cfg.scale_up_core_speed), 6) if k <= cfg.core_ceiling else None
          for k in cores]
    return {"total_cores": cores, "scale_out_per_hour": out, "scale_up_per_hour": up,
            "core_ceiling": cfg.core_ceiling}


def _blocks(draw: Any, size: int = 4096) -> Iterator[float]:
    """Numbers drawn a block at a time (fast), consumed one at a time in arrival order."""
    while True:
        yield from draw(size).tolist()


@dataclass
class VariantRun:
    """What one architecture did with the shared requests."""

    arch: Architecture
    latency_ms: Summary = field(default_factory=Summary)
    ok: int = 0
    timeouts: int = 0
    refused: int = 0  # 503: no server up
    killed: int = 0  # 502: the server died under the request
    window_requests: int = 0  # arrived while the failed machine was out
    window_failed: int = 0
    sessions_lost: int = 0
    relogins: int = 0
    busy_core_s: float = 0.0
    makespan_s: float = 0.0
    ok_times: array = field(default_factory=lambda: array("d"))
    failed_times: array = field(default_factory=lambda: array("d"))


class _World:
    """One architecture's SimPy run; built fresh for every variant."""

    def __init__(self, cfg: ScaleConfig, arch: Architecture):
        self.cfg, self.arch = cfg, arch
        self.env = env = simpy.Environment()
        self.run = VariantRun(arch)
        # ApiServer asks for the CPU time when a core is free; looking the demand up by the
        # handling process keeps each request's demand its own, whatever order cores free up in.
        self._demand: dict[simpy.Process, float] = {}
        self.servers = [ApiServer(env, f"server-{i + 1}", cores=arch.cores, threads=arch.threads,
                                  cpu_time=self._cpu_time, speed=arch.speed)
                        for i in range(arch.servers)]
        self.balancer = LoadBalancer(self.servers, cfg.balancer)
        self.shared_sessions = cfg.session_store == "redis"
        self.hop_s = cfg.session_hop_ms / 1000.0
        self._home: dict[int, str] = {}  # session -> server whose memory holds it (local store)
        self._seen: set[int] = set()
        self.window = ((cfg.failure_at_s, cfg.failure_at_s + cfg.replacement_downtime_s)
                       if cfg.failure_at_s is not None else None)

    def _cpu_time(self) -> float:
        return self._demand.pop(self.env.active_process)

    # ------------------------------------------------------------------ requests
    def _arrivals(self):
        cfg, env = self.cfg, self.env
        streams = Streams(cfg.seed)  # fresh per variant: the same names give the same numbers
        times = arrival_times(streams["arrivals"], cfg.requests,
                              profile="constant" if cfg.arrival_profile == "flat" else "spike",
                              rate=cfg.arrival_rate, decay_s=cfg.spike_decay_s,
                              base_fraction=cfg.spike_base_fraction)
        sessions = _blocks(lambda n: streams["sessions"].integers(0, cfg.sessions, n))
        mean_cpu = cfg.request_cpu_ms / 1000.0
        demands = _blocks(lambda n: streams["cpu"].exponential(mean_cpu, n))
        last = 0.0
        for t, session, demand in zip(times, sessions, demands):
            yield env.timeout(t - last)
            last = t
            self._send(t, session, demand)

    def _send(self, arrived: float, session: int, demand: float) -> None:
        server = self.balancer.pick(str(session))
        if server is None:
            self._resolve(arrived, 503)
            return
        request = server.handle(lambda: self._work(server, session))
        self._demand[request] = demand
        timer = self.env.timeout(self.cfg.timeout_s)
        done = [False]

        def answered(event: simpy.Event) -> None:
            self._demand.pop(request, None)
            if not done[0]:
                done[0] = True
                self._resolve(arrived, event.value if event.ok else 502)

        def gave_up(_event: simpy.Event) -> None:
            if not done[0]:
                done[0] = True
                self._resolve(arrived, None)

        request.callbacks.append(answered)
        timer.callbacks.append(gave_up)

    def _work(self, server: ApiServer, session: int):
        if self.shared_sessions:
            yield self.env.timeout(self.hop_s)  # the extra hop to the shared store
        elif self._home.get(session) != server.name:
            # local memory: the session is not here, so the user logs in again on this server
            if session in self._seen:
                self.run.relogins += 1
            self._home[session] = server.name
        self._seen.add(session)
        return 200

    def _resolve(self, arrived: float, status: int | None) -> None:
        run, now = self.run, self.env.now
        run.makespan_s = max(run.makespan_s, now)
        if status == 200:
            run.ok += 1
            run.latency_ms.add((now - arrived) * 1000.0)
            run.ok_times.append(now)
        else:
            if status is None:
                run.timeouts += 1
            elif status == 503:
                run.refused += 1
            else:
                run.killed += 1
            run.failed_times.append(now)
        if self.window is not None and (self.window[0] <= arrived < self.window[1] or status == 502):
            run.window_requests += 1  # a 502 was in flight when the machine died
            run.window_failed += status != 200

    # ------------------------------------------------------------------ the failure
    def _failure(self):
        start, end = self.window  # type: ignore[misc]
        yield self.env.timeout(start)
        victim = self.servers[0]
        victim.crash()
        # a dead machine's run queue dies with it (the interrupted requests no longer wait on it)
        victim.cpu.fail_all(lambda: RuntimeError(f"{victim.name} crashed"))
        if not self.shared_sessions:
            gone = [s for s, home in self._home.items() if home == victim.name]
            for s in gone:
                del self._home[s]
            self.run.sessions_lost += len(gone)
        yield self.env.timeout(end - start)
        victim.restart()  # the replacement machine: empty memory, back in the pool

    def simulate(self) -> VariantRun:
        self.env.process(self._arrivals())
        if self.window is not None:
            self.env.process(self._failure())
        self.env.run()
        self.run.busy_core_s = sum(s.cpu.busy_time for s in self.servers)
        return self.run


def simulate_variant(cfg: ScaleConfig, arch: Architecture) -> VariantRun:
    return _World(cfg, arch).simulate()


def analytic_variant(cfg: ScaleConfig, arch: Architecture, *,
                     servers_up: int | None = None) -> dict[str, Any]:
    """M/M/c per machine at ``arrival_rate`` (the peak for spike), traffic split evenly."""
    from simulator.analysis import mmc_mean_response

    up = arch.servers if servers_up is None else servers_up
    mu = 1000.0 / cfg.request_cpu_ms * arch.speed
    lam = cfg.arrival_rate / up
    rho = lam / (arch.cores * mu)
    hop = cfg.session_hop_ms if cfg.session_store == "redis" else 0.0
    mean = mmc_mean_response(lam, mu, arch.cores) * 1000.0 + hop if rho < 1 else None
    return {"servers_up": up, "rho": round(rho, 6),
            "mean_response_ms": None if mean is None or not math.isfinite(mean) else round(mean, 6)}


def timeline(runs: dict[str, VariantRun], max_bins: int = 120) -> dict[str, Any]:
    """Successful and failed answers per second, on one set of bins for every variant."""
    span = max((r.makespan_s for r in runs.values()), default=0.0)
    width = max(0.5, math.ceil(span / max_bins * 2) / 2)  # a multiple of 0.5 s
    edges = np.arange(0.0, span + width, width)
    if len(edges) < 2:
        edges = np.array([0.0, width])
    out: dict[str, Any] = {"bin_s": width, "t": [round(float(e), 6) for e in edges[:-1]]}
    for name, r in runs.items():
        ok, _ = np.histogram(np.asarray(r.ok_times, dtype=float), bins=edges)
        bad, _ = np.histogram(np.asarray(r.failed_times, dtype=float), bins=edges)
        out[name] = {"ok_per_s": [round(float(x) / width, 6) for x in ok],
                     "failed_per_s": [round(float(x) / width, 6) for x in bad]}
    return out
