"""A stand-in for the voucher gateway (the SMS/e-mail provider): it takes ``latency_s`` of wall
time per call and fails with probability ``failure_rate``, drawn from an injected numpy
``Generator`` so a seeded run fails the same calls.  ``send`` -> ``Done(bool)``.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from simulator.errors import InputError
from simulator.ports import Done

MAX_LATENCY_S = 10.0  # a stand-in that sleeps longer than this is a mistake, not a lesson


class VoucherGateway:
    def __init__(self, rng: np.random.Generator, *, latency_s: float = 0.0, failure_rate: float = 0.0,
                 sleep: Callable[[float], None] = time.sleep):
        if not 0 <= latency_s <= MAX_LATENCY_S:
            raise InputError("gateway latency_s", latency_s, f"0 <= seconds <= {MAX_LATENCY_S}")
        if not 0 <= failure_rate <= 1:
            raise InputError("gateway failure_rate", failure_rate, "a probability, 0 <= p <= 1")
        self.rng = rng
        self.latency_s = latency_s
        self.failure_rate = failure_rate
        self._sleep = sleep
        self.sent = 0
        self.failed = 0

    def send(self, user: str, voucher_id: str) -> Done:
        if self.latency_s:
            self._sleep(self.latency_s)
        # draw even when failure_rate is 0 so changing the rate does not shift later draws
        ok = bool(self.rng.random() >= self.failure_rate)
        if ok:
            self.sent += 1
        else:
            self.failed += 1
        return Done(ok)
