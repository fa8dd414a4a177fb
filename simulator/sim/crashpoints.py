"""Crash points: kill a process the moment it reaches a named place in the flow.

A time-based fault hits whatever a process happens to be doing; a crash point hits exactly
the gap a lesson is about ("the row is committed, the event not yet sent").  Only built when
some fault names a point, so the common run pays nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import simpy

if TYPE_CHECKING:
    from simulator.sim.world import World


def matches(target: str, process: str) -> bool:
    if target == "producer":
        return process.startswith("server-")
    return target == process


class CrashPoints:
    def __init__(self, world: "World", faults: list[Any]):
        self.world = world
        self.pending = list(faults)
        self._pass = world.env.event()
        self._pass.succeed()

    def point(self, name: str, process: str) -> simpy.Event:
        for fault in self.pending:
            if fault.point == name and matches(fault.target, process):
                self.pending.remove(fault)
                return self._kill(fault, process)
        return self._pass

    def _kill(self, fault: Any, process: str) -> simpy.Event:
        """Fail the caller's own wait with an interrupt (a process cannot interrupt itself),
        take the rest of its component down, and plan the restart."""
        world = self.world
        world.crash(process, fault.restart_after)
        if fault.restart_after is not None and not process.startswith("consumer-"):
            world.env.process(self._restart_later(process, fault.restart_after))
        dead = world.env.event()
        dead.fail(simpy.Interrupt(fault.restart_after))
        dead.defused = True
        return dead

    def _restart_later(self, target: str, delay: float):
        yield self.world.env.timeout(delay)
        self.world.restart(target)
