"""API servers behind a load balancer.

A server has worker threads (held for a whole request) and CPU cores (held only for the
request's CPU cost).  Waiting on the broker, Redis or the DB holds a thread but not a core -
that is why synchronous handling runs out of threads long before it runs out of CPU.
"""

from __future__ import annotations

from typing import Any, Callable, Generator

import simpy

from simulator.sim.semaphore import Semaphore
from simulator.sim.servicepool import ServicePool


class ApiServer:
    def __init__(self, env: simpy.Environment, name: str, *, cores: int, threads: int,
                 cpu_time: Callable[[], float]):
        self.env = env
        self.name = name
        self.cpu = ServicePool(env, cores, name=f"{name}.cpu")
        self.threads = Semaphore(env, threads, name=f"{name}.threads")
        self._cpu_time = cpu_time
        self.up = True
        self.active: set[simpy.Process] = set()

    @property
    def connections(self) -> int:
        return len(self.active)

    def handle(self, work: Callable[[], Generator[Any, Any, int]]) -> simpy.Process:
        """Start handling one request; the process's value is the HTTP status."""
        proc = self.env.process(self._handle(work))
        self.active.add(proc)
        proc.callbacks.append(lambda _e: self.active.discard(proc))
        return proc

    def _handle(self, work: Callable[[], Generator[Any, Any, int]]):
        if not self.up:
            return 502
        grant = self.threads.acquire()
        try:
            yield grant
            yield self.cpu.submit(self._cpu_time())
            status = yield from work()
        except simpy.Interrupt:
            return 502  # the server died under the request
        finally:
            if grant.triggered:
                self.threads.release()
            else:
                self.threads.cancel(grant)
        return status

    def crash(self) -> None:
        self.up = False
        for proc in list(self.active):
            if proc.is_alive:
                if proc.target is not None:
                    proc.target.defused = True
                proc.interrupt("crash")

    def restart(self) -> None:
        self.up = True


class LoadBalancer:
    """Round robin or least connections over the servers that are up."""

    def __init__(self, servers: list[ApiServer], policy: str = "round-robin"):
        self.servers = servers
        self.policy = policy
        self._next = 0

    def pick(self) -> ApiServer | None:
        live = [s for s in self.servers if s.up]
        if not live:
            return None
        if self.policy == "least-connections":
            return min(live, key=lambda s: (s.connections, s.name))
        server = live[self._next % len(live)]
        self._next += 1
        return server
