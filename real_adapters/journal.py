"""Per-process histories on disk, their merge, and per-operation timings.

Each worker process writes its own operations as JSON Lines into the run directory
(``<name>.<pid>.jsonl``), one line per op, flushed at once: a ``kill -9`` then loses nothing
the process had recorded, only what it was about to record.  The runner merges the files by
time (each file keeps its own order), renumbers, and hands the result to the one checker.

``Timings`` / ``timed_ports`` measure how long each real port call takes, for calibration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from simulator.history import History, Op
from simulator.ports import Done, Ports
from simulator.stats import Summary

MERGED = "history.jsonl"


class JsonlSink:
    """A ``History`` sink: one canonical JSON line per op, line-buffered (flushed per op)."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives with the process

    def __call__(self, op: Op) -> None:
        self._file.write(op.to_json() + "\n")

    def close(self) -> None:
        self._file.close()


def process_history(run_dir: Path, name: str) -> tuple[History, JsonlSink]:
    """A wall-clock history for one process, written to ``<name>.<pid>.jsonl``."""
    sink = JsonlSink(Path(run_dir) / f"{name}.{os.getpid()}.jsonl")
    return History(time.time, keep=0, sinks=[sink]), sink


def history_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in Path(run_dir).glob("*.jsonl") if p.name != MERGED)


def _read(path: Path) -> Iterator[Op]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.endswith("\n") and line.strip():  # a torn last line (killed mid-write) is skipped
                yield Op.from_dict(json.loads(line))


def merge(run_dir: Path) -> list[Op]:
    """Every process's ops in one list ordered by time (stable per file), renumbered from 0."""
    streams = [_read(p) for p in history_files(run_dir)]
    merged = heapq.merge(*streams, key=lambda op: op.time)
    return [dataclasses.replace(op, index=i) for i, op in enumerate(merged)]


def sha256(ops: Iterable[Op]) -> str:
    """The same digest ``History.sha256`` computes: canonical lines, newline-terminated."""
    digest = hashlib.sha256()
    for op in ops:
        digest.update(op.to_json().encode())
        digest.update(b"\n")
    return digest.hexdigest()


def write_merged(run_dir: Path, ops: Iterable[Op]) -> Path:
    path = Path(run_dir) / MERGED
    with open(path, "w", encoding="utf-8") as fh:
        for op in ops:
            fh.write(op.to_json() + "\n")
    return path


class Tail:
    """Reads the complete lines appended to one file since the last call (the runner's view of
    a worker's progress while it runs)."""

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0
        self._partial = ""
        self.last: dict[str, Any] | None = None

    def new_ops(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
                self._offset = fh.tell()
        except FileNotFoundError:
            return []
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()  # "" when the chunk ended on a newline
        ops = [json.loads(line) for line in lines if line.strip()]
        if ops:
            self.last = ops[-1]
        return ops


# --------------------------------------------------------------------------- timings

class Timings:
    """Named streaming summaries of durations, in milliseconds.

    The first call of each name is kept apart as ``warmup.<name>``: it pays for opening the
    connection (and, for the DB, creating the schema), which a steady stream of messages does
    not, so it would only skew the steady-state mean calibration needs.
    """

    def __init__(self) -> None:
        self.summaries: dict[str, Summary] = {}

    def add(self, name: str, seconds: float) -> None:
        if name not in self.summaries and not name.startswith("warmup."):
            self.summaries[name] = Summary()
            name = "warmup." + name
        summary = self.summaries.get(name)
        if summary is None:
            summary = self.summaries[name] = Summary()
        summary.add(seconds * 1000.0)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: s.to_dict() for name, s in sorted(self.summaries.items())}

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), sort_keys=True), encoding="utf-8")


class _Timed:
    """A proxy that times every call of the named methods; a ``Done`` holding a transaction
    gets its transaction wrapped too (so ``tx.commit`` is timed as ``tx.commit``)."""

    def __init__(self, target: Any, prefix: str, timings: Timings, names: frozenset[str]):
        self._target, self._prefix, self._timings, self._names = target, prefix, timings, names

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name not in self._names or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = attr(*args, **kwargs)
            self._timings.add(self._prefix + name, time.perf_counter() - started)
            if name == "begin" and isinstance(result, Done) and result.value is not None:
                return Done(_Timed(result.value, "tx.", self._timings, _TX_OPS), result.error)
            return result

        return call


_BROKER_OPS = frozenset({"publish", "ack", "nack", "reject"})
_REDIS_OPS = frozenset({"get", "set", "set_nx", "decr", "incr", "check_and_decr", "reserve",
                        "release", "expire", "ttl"})
_DB_OPS = frozenset({"begin", "login", "mark_published", "has_voucher"})
_TX_OPS = frozenset({"insert_processed", "insert_ledger", "insert_submission", "insert_outbox",
                     "decrement_stock", "read_stock", "write_stock", "commit", "rollback"})


def timed_ports(ports: Ports, timings: Timings) -> Ports:
    """The same ports, each flow-facing call timed (``broker.ack``, ``tx.commit`` ...)."""
    return dataclasses.replace(
        ports,
        broker=_Timed(ports.broker, "broker.", timings, _BROKER_OPS),
        redis=_Timed(ports.redis, "redis.", timings, _REDIS_OPS),
        db=_Timed(ports.db, "db.", timings, _DB_OPS),
        gateway=_Timed(ports.gateway, "gateway.", timings, frozenset({"send"})),
    )


def read_timings(run_dir: Path, pattern: str = "*.timings.json") -> dict[str, dict[str, dict[str, Any]]]:
    """Every process's timings file: ``{file stem: {op: summary}}``."""
    return {p.name[: -len(".timings.json")]: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(Path(run_dir).glob(pattern))}
