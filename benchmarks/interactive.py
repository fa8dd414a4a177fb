"""Interactivity rows: one panel update per lesson (its first preset, as the notebook opens
with), and the time of the notebook suite under nbval.  Both are wall-clock: that is what a
student waits for.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from benchmarks.common import ROOT, Section, Stat, run_child

QUICK_LESSONS = [0]  # --quick times one panel: enough to keep the code path alive


def run(quick: bool, repeats: int) -> Section:
    sec = Section("interactivity")
    sec.notes.append("Panel update: build the lesson's panel (which runs its first preset once, a "
                     "warm-up), then time Run clicks on that preset (simulation + summary + PNG "
                     "render), in a fresh process. nbval: `pytest --nbval-lax notebooks/`, wall time.")
    _panels(sec, quick, repeats)
    _nbval(sec, quick, repeats)
    return sec


def _panels(sec: Section, quick: bool, repeats: int) -> None:
    spec = {"mode": "panels", "repeats": 1 if quick else max(repeats, 3)}
    if quick:
        spec["only"] = QUICK_LESSONS
    try:
        found = run_child("benchmarks.child", spec, 900)
    except Exception as exc:  # noqa: BLE001 - the section reports why it has no numbers
        r = sec.row("interactive.panels", "lesson panels")
        r.na = f"panel measurement failed: {exc}"[:300]
        return
    for name, res in found.items():
        r = sec.row(f"interactive.panel.{name}", f"panel update, {name}")
        r.group = "panels"
        if "na" in res:
            r.na = res["na"]
            continue
        r.values = {"median s": res["median_s"], "first build s": res["build_s"]}
        r.note = f"preset '{res['preset']}' ({res['scenario']})"


def _nbval(sec: Section, quick: bool, repeats: int) -> None:
    r = sec.row("interactive.nbval", "nbval suite: pytest --nbval-lax notebooks/")
    r.group = "nbval"
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if not notebooks:
        r.na = "notebooks not built yet"
        return
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
    # the project's pytest options already say -q; a second -q would hide the summary line
    base = [sys.executable, "-m", "pytest", "--nbval-lax", "notebooks/", "-p", "no:cacheprovider"]
    if quick:
        # executing every notebook takes minutes; collecting them proves the plumbing still works
        proc = subprocess.run([*base, "--collect-only"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        found = re.search(r"(\d+) tests? collected", proc.stdout)
        cells = int(found.group(1)) if found else sum(int(n) for n in re.findall(r"\.ipynb: (\d+)", proc.stdout))
        r.na = (f"--quick collects only ({cells} cells in {len(notebooks)} notebooks, not executed; "
                f"pytest exit {proc.returncode}); the full mode times the suite")
        return
    walls, summary = [], ""
    for _ in range(min(repeats, 3)):
        t = time.perf_counter()
        proc = subprocess.run(base, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
        walls.append(time.perf_counter() - t)
        summary = _summary_line(proc.stdout)
    r.values = {"wall s": Stat.of(walls), "notebooks": len(notebooks)}
    r.note = summary


def _summary_line(out: str) -> str:
    lines = [ln.strip("= ").strip() for ln in out.strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.search(r"\d+ (passed|failed|error)", ln):
            return ln
    return lines[-1] if lines else ""
