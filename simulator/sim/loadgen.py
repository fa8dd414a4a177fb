"""The load generator: when submissions arrive, and from which user.

Arrival profiles (rates are submissions per second of simulated time):

* ``constant``: a Poisson stream at ``rate``;
* ``spike``: the event opens at t=0 with ``rate`` and decays towards ``base_fraction * rate``
  with time constant ``decay_s`` (the opening-hour rush of the seed's flash sale);
* ``piecewise``: a list of ``(start_s, rate)`` steps.

Non-constant profiles are drawn by thinning (Lewis and Shedler): draw at the peak rate and
keep each point with probability rate(t) / peak.  Times are produced lazily, so a run with
a million submissions never holds a million timestamps.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np


def rate_at(profile: str, t: float, rate: float, decay_s: float, base_fraction: float,
            steps: Sequence[tuple[float, float]]) -> float:
    if profile == "constant":
        return rate
    if profile == "spike":
        base = base_fraction * rate
        return base + (rate - base) * math.exp(-t / decay_s)
    current = 0.0
    for start, r in steps:
        if t >= start:
            current = r
        else:
            break
    return current


def arrival_times(rng: np.random.Generator, count: int, *, profile: str = "spike",
                  rate: float = 400.0, decay_s: float = 20.0, base_fraction: float = 0.05,
                  steps: Sequence[tuple[float, float]] = ()) -> Iterator[float]:
    """Yield ``count`` increasing arrival times."""
    peak = max((r for _, r in steps), default=0.0) if profile == "piecewise" else rate
    if peak <= 0:
        return
    t = 0.0
    made = 0
    # draw in blocks: numpy is fast per block and the stream stays identical for a given seed
    while made < count:
        gaps = rng.exponential(1.0 / peak, 1024)
        keeps = rng.random(1024)
        for gap, keep in zip(gaps.tolist(), keeps.tolist()):
            t += gap
            if profile == "constant" or keep * peak <= rate_at(profile, t, rate, decay_s,
                                                               base_fraction, steps):
                yield t
                made += 1
                if made == count:
                    return
        if profile == "piecewise" and steps and t > steps[-1][0] and steps[-1][1] == 0:
            return  # the last step switched arrivals off: nothing more will come
