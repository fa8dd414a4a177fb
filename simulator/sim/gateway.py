"""A SimPy model of the third-party voucher gateway: a latency, an optional rate limit and a
chance that a send fails.

The rate limit is a token bucket (``burst`` tokens, refilled at ``rate_limit`` per second)
computed as GCRA ("virtual scheduling"): one number, the theoretical arrival time of the
next send, replaces the bucket and the FIFO line of waiters.  A call that finds no token
waits for its turn, callers keep their order, and each call costs O(1) with no process.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import simpy

from simulator.errors import InputError
from simulator.history import History

__all__ = ["VoucherGateway"]


def _check_number(field: str, value: Any, allowed: str, low: float, *, strict: bool = False,
                  high: float = math.inf) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low) or value > high:
        raise InputError(field, value, allowed)
    return float(value)


class VoucherGateway:
    def __init__(self, env: simpy.Environment, rng: np.random.Generator, *, name: str = "gateway",
                 latency: float = 0.05, rate_limit: float | None = None, burst: int = 1,
                 failure_probability: float = 0.0, jitter: bool = True,
                 history: History | None = None):
        self.env = env
        self.rng = rng
        self.name = name
        self.latency = _check_number(f"{name}.latency", latency, "a finite number of seconds >= 0", 0.0)
        self.rate_limit = None if rate_limit is None else _check_number(
            f"{name}.rate_limit", rate_limit, "None or sends per second > 0", 0.0, strict=True)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise InputError(f"{name}.burst", burst, "a whole number of sends >= 1")
        self.burst = burst
        self.failure_probability = _check_number(f"{name}.failure_probability", failure_probability,
                                                 "a probability from 0 to 1", 0.0, high=1.0)
        self.jitter = bool(jitter)
        self.history = history  # the flow records the send; kept for symmetry with the stores
        self.up = True
        self._spacing = 1.0 / self.rate_limit if self.rate_limit else 0.0
        self._next_at = env.now  # GCRA's theoretical arrival time: the bucket starts full
        self.sent = 0
        self.failed = 0
        self.throttled = 0
        self.max_wait = 0.0
        self.wait_time = 0.0

    def send(self, user: str, voucher_id: str) -> simpy.Event:
        """-> an event whose value is True (sent) or False (the gateway answered an error)."""
        wait = self._take_token()
        latency = float(self.rng.exponential(self.latency)) if self.jitter and self.latency > 0 \
            else self.latency
        # drawn only when failures are possible, so p=0 leaves the stream untouched
        ok = not (self.failure_probability > 0 and self.rng.random() < self.failure_probability)
        answer = self.env.timeout(wait + latency, ok)
        answer.callbacks.append(self._count)
        return answer

    def _take_token(self) -> float:
        if self.rate_limit is None:
            return 0.0
        now = self.env.now
        start = max(now, self._next_at - (self.burst - 1) * self._spacing)
        self._next_at = max(self._next_at, now) + self._spacing
        wait = start - now
        if wait < 1e-12:
            return 0.0  # float noise from summing the spacing, not a real wait
        self.throttled += 1
        self.wait_time += wait
        self.max_wait = max(self.max_wait, wait)
        return wait

    def _count(self, answer: simpy.Event) -> None:
        if answer.value:
            self.sent += 1
        else:
            self.failed += 1

    @property
    def stats(self) -> dict[str, float]:
        return {"sent": self.sent, "failed": self.failed, "throttled": self.throttled,
                "max_wait": self.max_wait, "wait_time": self.wait_time}
