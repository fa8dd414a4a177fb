"""Real-service rows, part two: worker scale-out and the calibrated model's fidelity.

``mqlab real calibrate`` runs in a process of its own (it starts one ``mqlab worker`` process
per worker); this module turns its JSON report into rows and into the issue's targets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from benchmarks import real_targets
from benchmarks.common import ROOT, Section, Stat

GATEWAY_MS = 20

WORKER_COUNTS = (1, 2, 4)


def _worker_command_exists() -> bool:
    from simulator.cli import build_parser

    parser = build_parser()
    actions = parser._subparsers._group_actions if parser._subparsers else []  # noqa: SLF001
    return any("worker" in (getattr(a, "choices", None) or {}) for a in actions)


def _calibrate(workers: tuple[int, ...], per_worker: int, timeout_s: float) -> dict[str, Any]:
    """``mqlab real calibrate`` in its own process, on a fresh SQLite file; its JSON report."""
    with tempfile.TemporaryDirectory(prefix="mqlab-bench-cal-") as tmp:
        cmd = [sys.executable, "-m", "simulator.cli", "real", "calibrate",
               "--workers", ",".join(map(str, workers)), "--per-worker", str(per_worker),
               "--gateway-latency-ms", str(GATEWAY_MS), "--database-url", f"sqlite:///{tmp}/calibrate.sqlite",
               "--json"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, "MPLBACKEND": "Agg"})
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"mqlab real calibrate exited {proc.returncode}: " + " | ".join(tail))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker_rows(sec: Section, problem: str, quick: bool, repeats: int) -> None:
    rows = {k: sec.row(f"real.workers.{k}", f"worker scale-out, {k} process(es), {GATEWAY_MS} ms gateway")
            for k in WORKER_COUNTS}
    fidelity = sec.row("real.fidelity", "fidelity: calibrated simulation vs measured")
    everything = [*rows.values(), fidelity]
    if problem:
        for r in everything:
            r.na = problem
        real_targets.worker_targets(sec, {}, {}, problem)
        return
    if not _worker_command_exists():
        for r in rows.values():
            r.na = "n/a: `mqlab worker` does not exist yet"
        fidelity.na = "n/a: no calibration yet"
        real_targets.worker_targets(sec, {}, {}, "`mqlab worker` does not exist yet")
        return
    workers = (1,) if quick else WORKER_COUNTS
    per_worker = 20 if quick else 120
    reports: list[dict[str, Any]] = []
    try:
        for _ in range(1 if quick else repeats):
            reports.append(_calibrate(workers, per_worker, 600 + 60 * per_worker))
    except Exception as exc:  # noqa: BLE001 - a broken calibration is a reported n/a, not a crash
        for r in everything:
            r.na = f"n/a: calibration failed: {exc}"[:300]
        real_targets.worker_targets(sec, {}, {}, f"calibration failed: {exc}"[:300])
        return
    sec.notes.append(
        f"Workers and fidelity: `mqlab real calibrate --workers {','.join(map(str, workers))} "
        f"--per-worker {per_worker} --gateway-latency-ms {GATEWAY_MS}` (one profiling run, then one "
        "measured run per worker count on a backlog, each worker its own `mqlab worker` process; the "
        "calibrated model predicts each count from the profile alone).")
    by_k: dict[int, list[dict[str, Any]]] = {k: [] for k in workers}
    for rep in reports:
        for entry in rep["rows"]:
            by_k[int(entry["workers"])].append(entry)
    one = Stat.of(e["measured"] for e in by_k[1]).median
    errors: list[float] = []
    vs_one: dict[int, float] = {}
    errors_by_k: dict[int, list[float]] = {}
    for k, r in rows.items():
        found = by_k.get(k)
        if not found:
            r.na = f"--quick measures 1 worker ({per_worker} submissions) only"
            continue
        measured = Stat.of(e["measured"] for e in found)
        r.values = {"measured msg/s": measured, "vs 1 worker": measured.median / one,
                    "model msg/s": Stat.of(e["predicted"] for e in found),
                    "model error %": Stat.of(e["error_pct"] for e in found)}
        errors += [abs(e["error_pct"]) for e in found]
        vs_one[k] = measured.median / one
        errors_by_k[k] = [e["error_pct"] for e in found]
    fidelity.values = {"mean abs error %": sum(errors) / len(errors), "worst abs error %": max(errors)}
    fidelity.note = "calibrated fields: " + ", ".join(
        f"{k} {v:.3g}" for k, v in sorted(reports[-1]["calibrated"].items()))
    real_targets.worker_targets(sec, vs_one, errors_by_k)
