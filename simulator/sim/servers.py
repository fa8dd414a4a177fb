"""API servers behind a load balancer.

A server has worker threads (held for a whole request) and CPU cores (held only for the
request's CPU cost).  Waiting on the broker, Redis or the DB holds a thread but not a core -
that is why synchronous handling runs out of threads long before it runs out of CPU.

``speed`` scales every core of one server (2.0 = each core does the work in half the time), so a
scale-up box with faster or slower cores can be compared with several ordinary ones.
"""

from __future__ import annotations

from typing import Any, Callable, Generator

import simpy

from simulator.sim.semaphore import Semaphore
from simulator.sim.servicepool import ServicePool


class ApiServer:
    def __init__(self, env: simpy.Environment, name: str, *, cores: int, threads: int,
                 cpu_time: Callable[[], float], speed: float = 1.0):
        if not speed > 0:
            raise ValueError(f"{name}.speed must be > 0, got {speed}")
        self.env = env
        self.name = name
        self.speed = speed
        self.cpu = ServicePool(env, cores, name=f"{name}.cpu")
        self.threads = Semaphore(env, threads, name=f"{name}.threads")
        self._cpu_time = cpu_time
        self.up = True
        # a dict keeps arrival order: a crash interrupts requests in the same order every run
        self.active: dict[simpy.Process, None] = {}

    @property
    def connections(self) -> int:
        return len(self.active)

    def handle(self, work: Callable[[], Generator[Any, Any, int]]) -> simpy.Process:
        """Start handling one request; the process's value is the HTTP status."""
        proc = self.env.process(self._handle(work))
        self.active[proc] = None
        proc.callbacks.append(lambda _e: self.active.pop(proc, None))
        return proc

    def _handle(self, work: Callable[[], Generator[Any, Any, int]]):
        if not self.up:
            return 502
        grant = self.threads.acquire()
        try:
            yield grant
            # dividing by the default 1.0 is exact, so existing runs are unchanged
            yield self.cpu.submit(self._cpu_time() / self.speed)
            status = yield from work()
        except simpy.Interrupt:
            return 502  # the server died under the request
        finally:
            if grant.triggered:
                self.threads.release()
            else:
                self.threads.cancel(grant)
        return status

    def crash(self, spare: simpy.Process | None = None) -> None:
        """Down, and every request in flight dies (``spare``: the caller, which dies by its own
        failed wait, since a SimPy process may not interrupt itself)."""
        self.up = False
        for proc in list(self.active):
            if proc.is_alive and proc is not spare:
                if proc.target is not None:
                    proc.target.defused = True
                proc.interrupt("crash")

    def restart(self) -> None:
        self.up = True


class LoadBalancer:
    """Round robin, least connections or sticky sessions over the servers that are up.

    ``sticky`` pins a session to the server that first served it (round robin for new ones) for
    as long as that server stays up; when it goes down the session is pinned afresh to a live
    one.  A pick without a session falls back to round robin.
    """

    def __init__(self, servers: list[ApiServer], policy: str = "round-robin"):
        self.servers = servers
        self.policy = policy
        self._next = 0
        self._pins: dict[str, ApiServer] = {}
        self.repinned = 0  # sticky sessions moved because their server was down

    def pick(self, session: str | None = None) -> ApiServer | None:
        live = [s for s in self.servers if s.up]
        if not live:
            return None
        if self.policy == "least-connections":
            return min(live, key=lambda s: (s.connections, s.name))
        if self.policy == "sticky" and session is not None:
            pinned = self._pins.get(session)
            if pinned is not None and pinned.up:
                return pinned
            if pinned is not None:
                self.repinned += 1
            server = self._pins[session] = self._round_robin(live)
            return server
        return self._round_robin(live)

    def _round_robin(self, live: list[ApiServer]) -> ApiServer:
        server = live[self._next % len(live)]
        self._next += 1
        return server
