"""Profiles behind a missed target: cProfile grouped by area, and tracemalloc grouped by file.

cProfile's per-call overhead inflates cheap functions, so its shares are approximate; they
are used to say *where* the time goes, never as the measurement itself.  Time spent in
built-ins (heapq, hashing, the C JSON encoder) is charged to the area of whoever called them,
using the per-caller split cProfile records.
"""

from __future__ import annotations

import cProfile
import pstats
import tracemalloc
from collections import defaultdict
from typing import Any, Callable

# (substring of a profiled file name, area); first match wins
_AREAS = (
    ("/simpy/", "SimPy engine (event loop, events, processes)"),
    ("simulator/history.py", "history: canonical JSON + SHA-256 per op"),
    ("/json/", "history: canonical JSON + SHA-256 per op"),
    ("simulator/checker.py", "checker (streaming)"),
    ("simulator/chains.py", "checker (streaming)"),
    ("/jsonschema/", "payload schema validation"),
    ("/referencing/", "payload schema validation"),
    ("simulator/messages.py", "payload schema validation"),
    ("simulator/flow.py", "shared flow (generators)"),
    ("simulator/sim/servicepool.py", "ServicePool"),
    ("simulator/sim/", "component models (broker, redis, db, servers...)"),
    ("simulator/stats.py", "statistics (Summary, TimeSeries)"),
    ("simulator/scenarios/", "scenario code (callbacks, bookkeeping)"),
    ("simulator/", "other simulator code"),
    ("/numpy/", "numpy random draws"),
    ("/benchmarks/", "reference program"),
)


# the real-service rows: where an adapter's time goes next to the raw client's
REAL_AREAS = (
    ("/real_adapters/", "MQ Lab adapters (real_adapters/)"),
    ("/simulator/", "MQ Lab adapters (real_adapters/)"),  # Message, Delivery, Done
    ("/pika/", "pika"),
    ("/redis/", "redis-py"),
    ("/benchmarks/", "benchmark and raw reference code"),
)

Areas = tuple[tuple[str, str], ...]


def _area(filename: str, areas: Areas = _AREAS) -> str:
    for part, area in areas:
        if part in filename:
            return area
    return "other"


def _label(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name  # a built-in: "{built-in method _heapq.heappush}"
    short = filename
    for marker in ("/site-packages/", "/work/main/", "/lib/python3"):
        if marker in short:
            short = short.split(marker, 1)[1]
            break
    return f"{short}:{line}({name})"


def profile_call(fn: Callable[[], Any], top: int = 14, areas_map: Areas = _AREAS) -> dict[str, Any]:
    """Run ``fn`` under cProfile; returns the area breakdown, the top functions and call counts."""
    prof = cProfile.Profile()
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
    stats = pstats.Stats(prof)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, dict]] = stats.stats  # type: ignore[attr-defined]
    areas: dict[str, float] = defaultdict(float)
    total = 0.0
    for func, (_cc, _nc, tt, _ct, callers) in raw.items():
        total += tt
        if func[0] == "~" and callers:
            # a built-in: split its time over its callers' areas
            shares = {caller: c[2] for caller, c in callers.items()}
            whole = sum(shares.values()) or 1.0
            for caller, share in shares.items():
                area = _area(caller[0], areas_map) if caller[0] != "~" else "other"
                areas[area] += tt * share / whole
        else:
            areas[_area(func[0], areas_map)] += tt
    by_tt = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    functions = [{"function": _label(func), "ncalls": nc, "tottime": tt, "cumtime": ct}
                 for func, (_cc, nc, tt, ct, _callers) in by_tt]
    counts = {_label(func): nc for func, (_cc, nc, *_rest) in raw.items()}
    functions_all = {_label(func): [tt, nc] for func, (_cc, nc, tt, *_rest) in raw.items() if tt >= 0.0005}
    return {"total_s": total,
            "areas": sorted(((a, s, s / total if total else 0.0) for a, s in areas.items()),
                            key=lambda x: x[1], reverse=True),
            "top": functions,
            "simpy_steps": sum(nc for func, (_cc, nc, *_r) in raw.items()
                               if func[0].endswith("simpy/core.py") and func[2] == "step"),
            "counts": counts, "functions": functions_all}


def format_profile(p: dict[str, Any], title: str, top: int = 12) -> str:
    """A text excerpt for RESULTS.md: the area shares, then the hottest functions by own time."""
    lines = [f"{title} (cProfile, {p['total_s']:.2f} s profiled; shares are approximate)", "",
             "  share   own s  area"]
    for area, seconds, share in p["areas"]:
        if share >= 0.005:
            lines.append(f"  {share:5.1%}  {seconds:6.2f}  {area}")
    lines += ["", "   own s    cum s     calls  function"]
    for f in p["top"][:top]:
        lines.append(f"  {f['tottime']:6.3f}  {f['cumtime']:7.3f}  {f['ncalls']:8d}  {f['function']}")
    return "\n".join(lines)


def area_share(p: dict[str, Any], prefix: str) -> float:
    return sum(share for area, _s, share in p["areas"] if area.startswith(prefix))


def memory_by_line(fn: Callable[[], Any], top: int = 12) -> dict[str, Any]:
    """Run ``fn`` under tracemalloc; what is still allocated when it returns, by source line.

    ``fn`` should return while the run's state is still alive (for example return the world),
    so the snapshot shows what the run keeps per submission.  An allocation made in generated
    code (a namedtuple's ``__new__`` lives in ``<string>``) is charged to the line that called it.
    """
    tracemalloc.start(2)
    try:
        keep = fn()
        snapshot = tracemalloc.take_snapshot()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del keep
    lines: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for stat in snapshot.statistics("traceback"):
        frames = list(stat.traceback)  # oldest call first: the allocation is in frames[-1]
        frame, via = frames[-1], ""
        if frame.filename.startswith("<") and len(frames) > 1:
            frame, via = frames[-2], " (in generated code, e.g. a namedtuple)"
        key = _label((frame.filename, frame.lineno, "")).removesuffix("()") + via
        lines[key][0] += stat.size
        lines[key][1] += stat.count
    ranked = sorted(lines.items(), key=lambda kv: kv[1][0], reverse=True)[:top]
    return {"current": current, "peak": peak,
            "lines": [{"where": k, "bytes": b, "blocks": c} for k, (b, c) in ranked]}


def growth(a: dict[str, Any], b: dict[str, Any], top: int = 8) -> list[tuple[str, float, int, int]]:
    """Functions whose own time grew most from profile ``a`` to ``b``: (name, +s, calls a, calls b)."""
    fa, fb = a["functions"], b["functions"]
    rows = [(name, tt - fa.get(name, [0.0, 0])[0], fa.get(name, [0.0, 0])[1], nc)
            for name, (tt, nc) in fb.items()]
    return sorted(rows, key=lambda r: r[1], reverse=True)[:top]
