"""How busy the host was during a run, and with what (Linux ``/proc``; elsewhere: nothing).

A run on a shared machine competes for CPU with whatever else runs there; the model has no
host CPU, so calibration needs to know (a) how much CPU one message costs us - the worker
processes and the local RabbitMQ, PostgreSQL and Redis - and (b) how much of the machine
other work was using.  Both are read from ``/proc/stat`` and ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SERVICES = ("beam.smp", "postgres", "redis-server")  # the local service processes, by comm
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _host() -> tuple[int, int] | None:
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields]
    return sum(values[:8]), values[3] + values[4]  # total (no guest double count), idle + iowait


def _services() -> int:
    """CPU ticks used so far by every local service process (the ones alive now)."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm not in SERVICES:
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it exited while we looked
        rest = stat[stat.rindex(")") + 2:].split()
        ticks += int(rest[11]) + int(rest[12])  # utime, stime
    return ticks


def snapshot() -> dict[str, int] | None:
    host = _host()
    if host is None:
        return None
    return {"total": host[0], "idle": host[1], "services": _services()}


def usage(before: dict[str, int] | None, after: dict[str, int] | None, *,
          workers_cpu_s: float, seconds: float, messages: int) -> dict[str, Any] | None:
    """Host figures over one window: utilisation, our CPU per message, and the background
    (everything that is neither our workers nor the local services) as busy CPUs."""
    if before is None or after is None or seconds <= 0 or messages <= 0:
        return None
    cpus = os.cpu_count() or 1
    total = after["total"] - before["total"]
    if total <= 0:
        return None
    busy = 1.0 - (after["idle"] - before["idle"]) / total          # share of all CPUs
    services_s = (after["services"] - before["services"]) / _TICK
    busy_cpus = busy * cpus
    ours_cpus = (workers_cpu_s + services_s) / seconds
    return {"cpus": cpus, "busy": round(busy, 4), "window_s": round(seconds, 3),
            "workers_cpu_s": round(workers_cpu_s, 4), "services_cpu_s": round(services_s, 4),
            "demand_ms_per_msg": round(1000.0 * (workers_cpu_s + services_s) / messages, 4),
            "background_cpus": round(max(0.0, busy_cpus - ours_cpus), 4)}
