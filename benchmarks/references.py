"""Reference simulations the project's engine is measured against.

Each M/M/c reference simulates the same queue (Poisson arrivals at ``lam``, ``servers`` servers
of rate ``mu``, one FIFO line) on the same numpy block draws MQ Lab uses, and returns the mean
wait of the customers after the first tenth, so a reader can see that every implementation
simulates the same thing (all agree with Erlang C within noise).  They record only that one
statistic: what they measure is the cost of the event machinery, which is the point.

* ``mmc_simpy_idiomatic``: the textbook SimPy program, a ``Resource`` and one process per customer;
* ``mmc_simpy_bare``: SimPy with no processes at all, timeouts and callbacks only: the cheapest
  way SimPy can run this model, hence the events/s ceiling MQ Lab's engine is compared with;
* ``mmc_heapq``: no SimPy, a hand-written ``heapq`` event loop: the CPython limit.

``store_consumers`` is the SimPy ``Store`` pattern (N consumer processes taking from one store)
for the consumer-scaling row.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import simpy
from simpy.core import EmptySchedule

BLOCK = 8192  # numbers per numpy call, as in simulator.scenarios.mmc


@dataclass(frozen=True)
class MMcRun:
    customers: int
    events: int  # events the loop processed (SimPy steps or heap pops)
    mean_wait: float  # of the customers after the first tenth
    sim_time: float


def exp_draws(rng: np.random.Generator, mean: float) -> Iterator[float]:
    """Exponential numbers, a block per numpy call (the same drawing cost MQ Lab pays)."""
    while True:
        yield from (rng.standard_exponential(BLOCK) * mean).tolist()


def _streams(seed: int, lam: float, mu: float) -> tuple[Iterator[float], Iterator[float]]:
    arrivals, service = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    return exp_draws(arrivals, 1.0 / lam), exp_draws(service, 1.0 / mu)


def run_counting(env: simpy.Environment) -> int:
    """``env.run()`` to the end, counting processed events (the loop ``mmc.py`` uses)."""
    step, processed = env.step, 0
    try:
        while True:
            step()
            processed += 1
    except EmptySchedule:
        return processed


def mmc_simpy_idiomatic(servers: int, lam: float, mu: float, customers: int, seed: int = 7) -> MMcRun:
    env = simpy.Environment()
    counter = simpy.Resource(env, capacity=servers)
    gaps, work = _streams(seed, lam, mu)
    skip = customers // 10
    waited = [0.0]

    def customer(i: int, service: float):
        arrived = env.now
        with counter.request() as request:
            yield request
            if i >= skip:
                waited[0] += env.now - arrived
            yield env.timeout(service)

    def source():
        for i in range(customers):
            yield env.timeout(next(gaps))
            env.process(customer(i, next(work)))

    env.process(source())
    events = run_counting(env)
    return MMcRun(customers, events, waited[0] / (customers - skip), env.now)


def mmc_simpy_bare(servers: int, lam: float, mu: float, customers: int, seed: int = 7) -> MMcRun:
    env = simpy.Environment()
    timeout = env.timeout
    gaps, work = _streams(seed, lam, mu)
    skip = customers // 10
    line: deque[tuple[int, float, float]] = deque()
    arrived = busy = 0
    waited = 0.0

    def arrive(_event: simpy.Event) -> None:
        nonlocal arrived, busy
        i, service = arrived, next(work)
        arrived += 1
        if busy < servers:
            busy += 1
            timeout(service).callbacks.append(depart)
        else:
            line.append((i, env.now, service))
        if arrived < customers:
            timeout(next(gaps)).callbacks.append(arrive)

    def depart(_event: simpy.Event) -> None:
        nonlocal busy, waited
        if line:
            i, came, service = line.popleft()
            if i >= skip:
                waited += env.now - came
            timeout(service).callbacks.append(depart)
        else:
            busy -= 1

    timeout(next(gaps)).callbacks.append(arrive)
    events = run_counting(env)
    return MMcRun(customers, events, waited / (customers - skip), env.now)


def mmc_heapq(servers: int, lam: float, mu: float, customers: int, seed: int = 7) -> MMcRun:
    gaps, work = _streams(seed, lam, mu)
    skip = customers // 10
    push, pop = heapq.heappush, heapq.heappop
    # (time, tie-break, kind, service); kind 0 = arrival, 1 = departure
    heap: list[tuple[float, int, int, float]] = [(next(gaps), 0, 0, 0.0)]
    line: deque[tuple[int, float, float]] = deque()
    seq = 1
    arrived = busy = events = 0
    waited = now = 0.0
    while heap:
        now, _, kind, service = pop(heap)
        events += 1
        if kind == 0:
            i, service = arrived, next(work)
            arrived += 1
            if busy < servers:
                busy += 1
                push(heap, (now + service, seq, 1, 0.0))
                seq += 1
            else:
                line.append((i, now, service))
            if arrived < customers:
                push(heap, (now + next(gaps), seq, 0, 0.0))
                seq += 1
        elif line:
            i, came, service = line.popleft()
            if i >= skip:
                waited += now - came
            push(heap, (now + service, seq, 1, 0.0))
            seq += 1
        else:
            busy -= 1
    return MMcRun(customers, events, waited / (customers - skip), now)


MMC_REFERENCES: dict[str, Callable[..., MMcRun]] = {
    "simpy_idiomatic": mmc_simpy_idiomatic,
    "simpy_bare": mmc_simpy_bare,
    "heapq": mmc_heapq,
}


def store_consumers(consumers: int, items: int, rate: float, service_mean: float,
                    seed: int = 7) -> int:
    """N consumer processes on one ``simpy.Store`` fed Poisson arrivals; returns the events.

    The load is fixed (``items`` arrivals at ``rate``); only the number of consumers waiting
    on the store changes, so the cost growth is what idle consumers cost the engine.
    """
    env = simpy.Environment()
    store = simpy.Store(env)
    gaps, work = _streams(seed, rate, 1.0 / service_mean)
    handled = [0]
    finished = env.event()

    def producer():
        for i in range(items):
            yield env.timeout(next(gaps))
            yield store.put(i)

    def consumer():
        while True:
            yield store.get()
            yield env.timeout(next(work))
            handled[0] += 1
            if handled[0] == items:
                finished.succeed()

    for _ in range(consumers):
        env.process(consumer())
    env.process(producer())
    step, processed = env.step, 0
    while not finished.processed:
        step()
        processed += 1
    return processed
