"""``c`` identical servers in front of one FIFO line, O(1) per customer.

SimPy's ``Resource`` keeps its waiters in a list and removes them from the front, which turns
quadratic once a backlog of 10^5 builds up.  This pool keeps waiters in a ``deque`` and uses
no SimPy process per customer: a job is a tuple, and service is one ``Timeout`` with a callback.

A job's ``action`` runs when its service *starts* (that is the moment a single-threaded server
such as Redis executes the command), and its return value becomes the job event's value once
the service time has passed.  An action may raise; the exception fails the job's event.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import simpy

Action = Callable[[], Any]


class ServicePool:
    def __init__(self, env: simpy.Environment, capacity: int = 1, name: str = "pool"):
        if capacity < 1:
            raise ValueError(f"{name}.capacity must be >= 1, got {capacity}")
        self.env = env
        self.capacity = capacity
        self.name = name
        self.busy = 0
        self._line: deque[tuple[simpy.Event, float, Action | None, float]] = deque()
        # running totals (streamed, never lists): for utilisation and mean wait
        self.served = 0
        self.busy_time = 0.0
        self.wait_time = 0.0

    @property
    def queued(self) -> int:
        return len(self._line)

    def submit(self, service_time: float, action: Action | None = None) -> simpy.Event:
        """Queue one job; the returned event fires when its service ends."""
        done = self.env.event()
        if self.busy < self.capacity:
            self._start(done, service_time, action, self.env.now)
        else:
            self._line.append((done, service_time, action, self.env.now))
        return done

    def _start(self, done: simpy.Event, service_time: float, action: Action | None,
               arrived: float) -> None:
        self.busy += 1
        self.wait_time += self.env.now - arrived
        try:
            value = action() if action is not None else None
            error = None
        except Exception as exc:  # noqa: BLE001 - handed to the waiting process
            value, error = None, exc
        timer = self.env.timeout(service_time)
        timer.callbacks.append(lambda _e: self._finish(done, value, error, service_time))

    def _finish(self, done: simpy.Event, value: Any, error: BaseException | None,
                service_time: float) -> None:
        self.busy -= 1
        self.served += 1
        self.busy_time += service_time
        if error is None:
            done.succeed(value)
        else:
            done.fail(error)
        if self._line and self.busy < self.capacity:
            self._start(*self._line.popleft())

    def fail_all(self, make_error: Callable[[], BaseException]) -> int:
        """Fail every waiting job (the server crashed); returns how many were waiting."""
        n = len(self._line)
        while self._line:
            done, *_ = self._line.popleft()
            done.fail(make_error())
        return n

    def utilisation(self, horizon: float) -> float:
        return self.busy_time / (horizon * self.capacity) if horizon > 0 else 0.0
