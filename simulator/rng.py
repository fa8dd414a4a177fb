"""Seeded random streams, one per named component.

Every component gets its own ``numpy.random.Generator`` derived from the run's seed and the
component's *name* (through SHA-256, never Python's salted ``hash``), so adding a component or
drawing more numbers in one place does not shift the numbers another component sees.  That
is what lets variants of a scenario share the same arrivals (common random numbers).
"""

from __future__ import annotations

import hashlib

import numpy as np


def stream(seed: int, name: str) -> np.random.Generator:
    digest = hashlib.sha256(name.encode()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed & 0xFFFFFFFF, *words])))


class Streams:
    """``Streams(seed)["redis"]`` is the stream of the component named ``redis``."""

    def __init__(self, seed: int):
        self.seed = seed
        self._made: dict[str, np.random.Generator] = {}

    def __getitem__(self, name: str) -> np.random.Generator:
        gen = self._made.get(name)
        if gen is None:
            gen = self._made[name] = stream(self.seed, name)
        return gen
