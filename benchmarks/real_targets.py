"""The issue's targets for the real-service rows, and the profile behind a missed one.

A ratio target is the row's adapter/raw wall-rate ratio (median over the interleaved
repeats).  When one is missed, the adapter and the raw runner are each run once more under
cProfile, on the same services with the same preparation, and the functions whose own time
differs most per operation are listed: that names where the adapter spends what the raw
client does not (or shows the difference is waiting, not work).
"""

from __future__ import annotations

from typing import Any, Callable

from benchmarks.common import Row, Section, Stat, Target
from benchmarks.profiles import REAL_AREAS, format_profile, profile_call

# row id -> (target id, text, minimum adapter/raw)
RATIO_TARGETS: dict[str, tuple[str, str, float]] = {
    "real.publish.sync_confirms": ("real.publish_sync", "publish, sync confirms: adapter vs raw pika", 0.9),
    "real.publish.async_w100": ("real.publish_async_w100",
                                "publish, async confirms, window 100: adapter vs raw pika", 0.7),
    "real.publish.no_confirms": ("real.publish_plain", "publish, no confirms: adapter vs raw pika", 0.8),
    "real.consume.prefetch100": ("real.consume_p100",
                                 "consume + manual ack, prefetch 100: adapter vs raw pika", 0.85),
    "real.consume.decr_ledger_ack": ("real.flow", "consume + Redis DECR + ledger insert + ack, "
                                     "prefetch 10: adapter vs raw clients", 0.85),
    "real.redis.decr": ("real.redis_decr", "Redis DECR, one round trip each: adapter vs raw redis-py", 0.85),
    "real.redis.decr_pipelined": ("real.redis_pipelined",
                                  "Redis DECR, pipelined 100 per round trip: adapter vs raw redis-py", 0.85),
}
SCALE_OUT = ("real.workers_scale", "worker scale-out, 1 -> 4 processes: throughput", 3.0)
FIDELITY = ("real.fidelity", "calibrated simulation vs measured, worst abs error over worker counts", 20.0)

Runner = Callable[[str], Any]


def ratio_target(sec: Section, row: Row, n: int, adapter: Runner | None, reference: Runner,
                 prepare: Callable[[str], None] | None) -> None:
    """Add the row's target, if it has one; profile both sides if it is missed."""
    spec = RATIO_TARGETS.get(row.id)
    if spec is None:
        return
    id, text, threshold = spec
    t = Target(id, text, ">=", threshold)
    sec.targets.append(t)
    ratio = row.values.get("adapter/raw")
    if adapter is None or not isinstance(ratio, (int, float)):
        t.na = row.na_columns.get("adapter/raw") or "the adapter side did not run"
        return
    t.measured = float(ratio)
    if t.met is False:
        explain(t, row, n, adapter, reference, prepare)


def missing(sec: Section, row_id: str, why: str) -> None:
    """A row that could not run at all: its target says why."""
    spec = RATIO_TARGETS.get(row_id)
    if spec is not None and not any(t.id == spec[0] for t in sec.targets):
        sec.targets.append(Target(spec[0], spec[1], ">=", spec[2], na=why))


def explain(t: Target, row: Row, n: int, adapter: Runner, reference: Runner,
            prepare: Callable[[str], None] | None) -> None:
    profiles: dict[str, dict[str, Any]] = {}
    for side, fn in (("adapter", adapter), ("raw", reference)):
        tag = f"prof{side[0]}"
        if prepare is not None:
            prepare(tag)
        profiles[side] = profile_call(lambda fn=fn, tag=tag: fn(tag), top=10, areas_map=REAL_AREAS)
    a, r = profiles["adapter"], profiles["raw"]
    names = set(a["functions"]) | set(r["functions"])
    diff = sorted(((name, (a["functions"].get(name, [0.0, 0])[0] - r["functions"].get(name, [0.0, 0])[0]) / n * 1e6,
                    a["functions"].get(name, [0.0, 0])[1], r["functions"].get(name, [0.0, 0])[1])
                   for name in names), key=lambda x: abs(x[1]), reverse=True)[:10]
    # Python functions in the adapters only: the areas also charge built-ins (sqlite3's
    # execute, socket calls) to their caller, which would bill the database's time to us
    own = sum(tt for name, (tt, _nc) in a["functions"].items()
              if "real_adapters/" in name or "simulator/" in name) / n * 1e6
    table = [f"functions whose own time differs most, per operation ({n:,} operations each)", "",
             "  adapter-raw us/op   calls adapter     calls raw  function"]
    table += [f"  {d:+17.1f}  {ca:14,d}  {cr:12,d}  {name}" for name, d, ca, cr in diff]
    t.profile = "\n".join(table) + "\n\n" + format_profile(a, f"adapter, {row.label}", top=8) + "\n\n" + \
        format_profile(r, f"raw, {row.label}", top=8)
    cpu_a, cpu_r = row.values.get("adapter CPU us/op"), row.values.get("raw CPU us/op")
    cpu = ""
    if isinstance(cpu_a, Stat) and isinstance(cpu_r, Stat):
        cpu = (f" CPU per operation: adapter {cpu_a.median:.0f} us, raw {cpu_r.median:.0f} us "
               f"({cpu_a.median - cpu_r.median:+.0f} us);")
    top = diff[0] if diff else ("-", 0.0, 0, 0)
    t.cause = (f"adapter/raw {t.measured:.3f} against {t.threshold:g}.{cpu} under cProfile the adapters' own "
               f"Python code (real_adapters/ and the Message/Delivery/Done types, built-ins they call "
               f"not counted) took {own:.1f} us per operation, "
               f"and the largest single difference is {top[1]:+.1f} us/op in {top[0]}. A difference "
               "that sits in socket calls (send/recv/poll) or in sqlite3's execute (whose COMMIT waits "
               "for fsync) rather than in adapter code is waiting on the services or the disk, which "
               "on this shared machine varies between runs (compare the min-max ranges in the row).")


def worker_targets(sec: Section, vs_one: dict[int, float], errors: dict[int, list[float]], why: str = "") -> None:
    """Scale-out 1 -> 4 and the calibrated model's fidelity, from the worker rows."""
    scale = Target(SCALE_OUT[0], SCALE_OUT[1], ">=", SCALE_OUT[2])
    fidelity = Target(FIDELITY[0], FIDELITY[1], "<=", FIDELITY[2], unit="%")
    sec.targets += [scale, fidelity]
    if why:
        scale.na = fidelity.na = why
        return
    if 4 in vs_one:
        scale.measured = vs_one[4]
    else:
        scale.na = "--quick measures 1 worker only; the full mode measures 1, 2 and 4"
    flat = [abs(e) for errs in errors.values() for e in errs]
    if flat:
        fidelity.measured = max(flat)
    else:
        fidelity.na = "no calibrated prediction was measured"
    table = ["  workers   vs 1 worker   model errors %"]
    table += [f"  {k:7d}   {vs_one.get(k, float('nan')):11.2f}   "
              + ", ".join(f"{e:+.1f}" for e in errors.get(k, [])) for k in sorted(errors)]
    if scale.met is False:
        scale.profile = "\n".join(table)
        scale.cause = (f"4 worker processes gave {scale.measured:.2f}x one worker. Each worker is a process "
                       "of its own waiting mostly on the gateway, so the shortfall is contention for the "
                       "two shared cores and the shared services (see the per-count rows).")
    if fidelity.met is False:
        fidelity.profile = "\n".join(table)
        fidelity.cause = (f"the calibrated model was off by up to {fidelity.measured:.1f}% for a worker "
                          "count; the model takes its service times from the one profiling run, so a "
                          "run disturbed by other load on the machine moves the measured side only.")
