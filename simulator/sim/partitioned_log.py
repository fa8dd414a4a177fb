"""A Kafka-style partitioned log in SimPy: append-only partitions read by offset.

What it keeps from Kafka: a record's partition is ``hash(key) % partitions`` (so one key
always lands in one partition and keeps its order there), records are never removed or
reordered, and a consumer owns a position (offset) per partition that it moves forward
only after it has processed a record.  Reading does not consume anything: replaying from
offset 0 returns exactly the records, in exactly the order, the first reader saw.

Not modelled: replication, retention, consumer-group rebalancing, compaction.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import simpy

from simulator.errors import InputError


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    key: str
    value: Any
    appended_at: float


def partition_for(key: str, partitions: int) -> int:
    """Kafka's default partitioner in spirit: a stable hash of the key, modulo the count.

    BLAKE2b rather than murmur2 or Python's salted ``hash()``: stable across processes, so a
    seed gives the same placement everywhere (the placement differs from a real Kafka's).
    """
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


class PartitionedLog:
    """One topic: ``partitions`` append-only lists and the readers waiting at their ends."""

    def __init__(self, env: simpy.Environment, partitions: int, *, fetch_latency: float = 0.0002):
        if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
            raise InputError("partitions", partitions, "a whole number >= 1")
        if not isinstance(fetch_latency, int | float) or not math.isfinite(fetch_latency) or fetch_latency < 0:
            raise InputError("fetch_latency", fetch_latency, "a finite number of seconds >= 0")
        self.env = env
        self.partitions = partitions
        self.fetch_latency = float(fetch_latency)
        self._logs: list[list[Record]] = [[] for _ in range(partitions)]
        self._waiting: list[list[tuple[int, int, simpy.Event]]] = [[] for _ in range(partitions)]
        self._committed: dict[tuple[str, int], int] = {}

    def append(self, key: str, value: Any) -> Record:
        """Append at the end of the key's partition; returns the record with its offset."""
        p = partition_for(key, self.partitions)
        log = self._logs[p]
        record = Record(p, len(log), key, value, self.env.now)
        log.append(record)
        waiting, self._waiting[p] = self._waiting[p], []
        for offset, limit, event in waiting:
            if offset < len(log):
                self._answer(p, offset, limit, event)
            else:
                self._waiting[p].append((offset, limit, event))  # reading further ahead
        return record

    def end_offset(self, partition: int) -> int:
        return len(self._logs[partition])

    def loads(self) -> list[int]:
        """Records per partition: the skew a hot key causes."""
        return [len(log) for log in self._logs]

    def fetch(self, partition: int, offset: int, max_records: int = 100) -> simpy.Event:
        """Records from ``offset`` on (at most ``max_records``); waits while there are none.

        Like a Kafka fetch with a long poll: the answer comes ``fetch_latency`` after there
        is something to return.
        """
        if not 0 <= partition < self.partitions:
            raise InputError("partition", partition, f"0 to {self.partitions - 1}")
        if offset < 0 or max_records < 1:
            raise InputError("offset", offset, "an offset >= 0 and max_records >= 1")
        event = self.env.event()
        if offset < len(self._logs[partition]):
            self._answer(partition, offset, max_records, event)
        else:
            self._waiting[partition].append((offset, max_records, event))
        return event

    def _answer(self, partition: int, offset: int, limit: int, event: simpy.Event) -> None:
        def send(_e: simpy.Event) -> None:
            # read at answer time: records appended during the latency ride along too
            event.succeed(self._logs[partition][offset:offset + limit])

        self.env.timeout(self.fetch_latency).callbacks.append(send)

    def commit(self, group: str, partition: int, offset: int) -> None:
        """Record the next offset ``group`` will read; it never moves backwards."""
        key = (group, partition)
        self._committed[key] = max(offset, self._committed.get(key, 0))

    def committed(self, group: str, partition: int) -> int:
        return self._committed.get((group, partition), 0)

    def replay(self, partition: int, from_offset: int = 0) -> list[Record]:
        """Every record from ``from_offset`` on, in log order: what a new reader would get."""
        return list(self._logs[partition][from_offset:])
