"""A counting semaphore with a FIFO ``deque`` of waiters (O(1) acquire and release).

Used where a holder keeps a slot for a time nobody knows in advance: an API server's worker
threads held for a whole request, a consumer's connection.  (``ServicePool`` covers the case
where the service time is known when the job joins the line.)
"""

from __future__ import annotations

from collections import deque

import simpy


class Semaphore:
    def __init__(self, env: simpy.Environment, capacity: int, name: str = "semaphore"):
        if capacity < 1:
            raise ValueError(f"{name}.capacity must be >= 1, got {capacity}")
        self.env = env
        self.capacity = capacity
        self.name = name
        self.held = 0
        self._waiters: deque[simpy.Event] = deque()
        self.max_waiting = 0

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def acquire(self) -> simpy.Event:
        event = self.env.event()
        if self.held < self.capacity:
            self.held += 1
            event.succeed()
        else:
            self._waiters.append(event)
            self.max_waiting = max(self.max_waiting, len(self._waiters))
        return event

    def release(self) -> None:
        while self._waiters:
            event = self._waiters.popleft()
            if not event.triggered:  # a waiter that gave up (timed out) is skipped
                event.succeed()
                return
        self.held -= 1

    def cancel(self, event: simpy.Event) -> None:
        """Give up a pending acquire (the caller timed out); a granted one must be released."""
        if not event.triggered:
            event.succeed()  # mark it so ``release`` skips it; nobody waits on it any more
            event.defused = True
        else:
            self.release()
