"""What every section of the harness shares: repeated measurements, rows, targets, machine facts.

A *row* is one line of a results table.  Each of its columns holds a number, a ``Stat``
(median with min-max over repeats) or ``None``; a ``None`` column always carries a reason in
``na_columns``, and a row that could not run at all carries one in ``na``.  That is the
structure the quick-mode test checks, so a row can never silently go missing or blank.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]

# numpy's OpenBLAS worker threads can busy-wait for a while after they start, billing CPU
# time to a short run; nothing measured here uses BLAS, so one thread each
QUIET_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Stat:
    """Median with min-max of repeated samples (the median resists a noisy neighbour)."""

    median: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, samples: Iterable[float]) -> "Stat":
        values = [float(v) for v in samples]
        if not values:
            raise ValueError("Stat.of: no samples")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.lo, "max": self.hi, "n": self.n}


Value = Stat | float | int | str | None


@dataclass
class Row:
    id: str
    section: str
    label: str
    values: dict[str, Value] = field(default_factory=dict)
    na: str | None = None  # the whole row did not run, and why
    na_columns: dict[str, str] = field(default_factory=dict)  # column -> why it is empty
    note: str = ""
    group: str = ""  # rows of one group share a table in RESULTS.md

    def set_na(self, column: str, reason: str) -> None:
        self.values[column] = None
        self.na_columns[column] = reason

    def has_number(self) -> bool:
        return any(isinstance(v, (Stat, int, float)) and not isinstance(v, bool)
                   for v in self.values.values())

    def to_dict(self) -> dict[str, Any]:
        values = {k: v.to_dict() if isinstance(v, Stat) else v for k, v in self.values.items()}
        return {"id": self.id, "section": self.section, "label": self.label, "values": values,
                "na": self.na, "na_columns": dict(self.na_columns), "note": self.note, "group": self.group}


@dataclass
class Target:
    """One goal of the issue: ``measured <op> threshold``; ``met`` is None when not evaluated."""

    id: str
    text: str
    op: str  # ">=" or "<="
    threshold: float
    unit: str = "x"
    measured: float | None = None
    na: str | None = None
    cause: str = ""  # filled in for a miss: what the profile says
    profile: str = ""  # the profile excerpt backing the cause

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured >= self.threshold if self.op == ">=" else self.measured <= self.threshold

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["met"] = self.met
        return d


@dataclass
class Section:
    name: str
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    group: str = ""  # the group new rows join (see Row.group)

    def row(self, id: str, label: str, **values: Value) -> Row:
        r = Row(id, self.name, label, dict(values), group=self.group)
        self.rows.append(r)
        return r


# ---------------------------------------------------------------------------- timing

@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float  # this process's CPU seconds: less disturbed than wall time on a shared machine


def timed(fn: Callable[[], Any]) -> tuple[Any, Timing]:
    """Run ``fn`` once after a full collection, so garbage left by the previous run is not billed."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, Timing(time.perf_counter() - wall, time.process_time() - cpu)


def run_child(module: str, spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """``python -m module '<spec json>'`` in a fresh interpreter; its last stdout line is JSON."""
    env = {**os.environ, **QUIET_THREADS, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", module, json.dumps(spec)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{module} {spec} exited {proc.returncode}: " + " | ".join(tail))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss_mib() -> float | None:
    """This process's peak resident set (VmHWM), or ru_maxrss where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    except (ImportError, OSError):
        return None


def rss_mib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


# ---------------------------------------------------------------------------- machine facts

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed: say so in the table
        return "not installed"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_facts() -> dict[str, Any]:
    import sqlite3

    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": _mem_total_gib(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load_at_start": [round(x, 2) for x in load],
        "commit": commit + (" + uncommitted changes" if dirty else ""),
        "versions": {name: _version(name) for name in
                     ("mqlab", "simpy", "numpy", "pydantic", "jsonschema", "pika", "redis", "ipywidgets", "nbval")}
                    | {"sqlite": sqlite3.sqlite_version},
    }


def load_now() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def median_of(values: Sequence[float]) -> float:
    return statistics.median(values)
