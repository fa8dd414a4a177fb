"""One measurement in a fresh interpreter: ``python -m benchmarks.child '<spec json>'``.

A fresh process per size is what makes the peak resident set (VmHWM) a fact about that size
alone.  The last line printed is a JSON object.

Specs: ``{"mode": "flash", "submissions": n, "consumers": c, "rate": r}``,
``{"mode": "store", "consumers": c, "items": n, "rate": r, "service": s}``,
``{"mode": "flash-profile", ...}`` (cProfile) and ``{"mode": "flash-memory", ...}`` (tracemalloc).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from typing import Any

from benchmarks.common import peak_rss_mib, rss_mib

MAX_SIM_S = 7 * 24 * 3600  # the config's upper bound; the runs end long before it


def flash_config(submissions: int, consumers: int, rate: float) -> Any:
    """The scale benchmark's flash sale: constant arrivals (the default spike decays to 5%
    of its peak, so a million submissions would not arrive within the time bound), and no
    history kept in memory (only hashed and checked), as a long run would be configured."""
    from simulator.config import FlashSaleConfig

    return FlashSaleConfig(submissions=submissions, consumers=consumers, arrival_profile="constant",
                           arrival_rate=rate, keep_history=0,
                           max_sim_s=min(MAX_SIM_S, submissions / rate + 3600))


class _GcClock:
    """Seconds the cyclic garbage collector ran (it walks every live container object)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._t = 0.0
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t
            self.collections[info["generation"]] += 1


def _capture_environments() -> list[Any]:
    """Remember every SimPy Environment made from now on (to count its scheduled events).

    A subclass with only ``__init__`` adds nothing per event; this runs in the child only.
    """
    import simpy

    made: list[Any] = []
    base = simpy.Environment

    class Counted(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    simpy.Environment = Counted  # type: ignore[misc]
    return made


def _flash(spec: dict[str, Any]) -> dict[str, Any]:
    from simulator.scenarios.flash_sale import run_flash_sale

    cfg = flash_config(spec["submissions"], spec["consumers"], spec["rate"])
    envs = _capture_environments()
    gc.collect()
    before = rss_mib()
    clock = _GcClock()
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_flash_sale(cfg)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    env = envs[0] if envs else None
    eid = getattr(env, "_eid", None)  # SimPy's event counter (private; None if it moves)
    m, c = result.metrics, result.checker.counts
    return {"wall": wall, "cpu": cpu, "gc_s": clock.seconds, "gc_collections": clock.collections,
            "rss_before_mib": before, "peak_rss_mib": peak_rss_mib(),
            "events": next(eid) if eid is not None else None,
            "sim_seconds": m["sim_seconds"], "history_ops": m["history_ops"],
            "peak_queue_depth": m["peak_queue_depth"], "accepted": m["accepted"],
            "granted": c["granted"], "lost": c["lost"], "valid": result.checker.valid,
            "history_sha256": result.history_sha256}


def _store(spec: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.references import store_consumers

    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    events = store_consumers(spec["consumers"], spec["items"], spec["rate"], spec["service"])
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "events": events,
            "peak_rss_mib": peak_rss_mib()}


def _world(spec: dict[str, Any]) -> Any:
    from simulator.sim.world import World

    world = World(flash_config(spec["submissions"], spec["consumers"], spec["rate"]))
    world.run()
    return world


def _flash_profile(spec: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.profiles import profile_call

    _world({**spec, "submissions": 20, "consumers": 1})  # imports stay out of the profile
    p = profile_call(lambda: _world(spec), top=spec.get("top", 16))
    p.pop("counts")
    return p


def _flash_memory(spec: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.profiles import memory_by_line

    _world({**spec, "submissions": 50})  # imports and first-use caches happen outside the trace
    return memory_by_line(lambda: _world(spec), top=spec.get("top", 12))


def _panels(spec: dict[str, Any]) -> dict[str, Any]:
    """Each lesson's panel: build it (that runs its first preset once, a warm-up), then the
    median of ``repeats`` Run clicks on that preset, as ``measure_panel`` times them."""
    import importlib

    from simulator.lessons.table import LESSONS

    out: dict[str, Any] = {}
    only = spec.get("only")
    for les in LESSONS:
        name = les.filename.removesuffix(".ipynb")
        if only is not None and les.number not in only:
            out[name] = {"na": "--quick times lesson " + ", ".join(f"{n:02d}" for n in only) + " only"}
            continue
        try:
            module = importlib.import_module(f"simulator.lessons.{les.module}")
        except ModuleNotFoundError:
            out[name] = {"na": "panels not built yet"}
            continue
        available = getattr(module, "available", None)
        ok, why = available() if available else (True, "")
        if not ok or not hasattr(module, "panel"):
            out[name] = {"na": "panels not built yet" + (f" ({why})" if why else "")}
            continue
        from simulator.lessons.panel import measure_panel

        try:
            wall = time.perf_counter()
            panel = module.panel()
            build = time.perf_counter() - wall
            preset = next(iter(panel.preset_values), None)
            if preset is None:
                out[name] = {"na": "panel has no preset"}
                continue
            seconds = measure_panel(panel, preset, repeats=spec["repeats"])
        except Exception as exc:  # noqa: BLE001 - a broken lesson is reported, not fatal here
            out[name] = {"na": f"panel failed: {type(exc).__name__}: {str(exc)[:120]}"}
            continue
        out[name] = {"median_s": seconds, "build_s": build, "preset": preset, "scenario": les.scenario}
    return out


MODES = {"panels": _panels, "flash": _flash, "store": _store, "flash-profile": _flash_profile, "flash-memory": _flash_memory}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    print(json.dumps(MODES[spec["mode"]](spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
