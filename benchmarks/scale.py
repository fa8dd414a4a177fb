"""Scale rows: the flash sale at growing sizes (each in a fresh process, for its peak RSS), and
the cost of 1 -> 1,000 consumers at a fixed load beside SimPy's ``Store`` pattern.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import Section, Stat, Target, run_child
from benchmarks.profiles import area_share, format_profile, growth

SIZE_RATE, SIZE_CONSUMERS = 1000.0, 16  # keeps up: the queue stays short at every size
CONSUMER_RATE = 100.0                   # one consumer keeps up with this too (after the stock runs out)
STORE_SERVICE_S = 0.005                 # Store reference: 5 ms per item, so one consumer is half busy
LINEAR_TOLERANCE = 1.25                 # "linear": cost per submission within 25% across sizes
CHILD = "benchmarks.child"


def _sizes(quick: bool) -> list[int]:
    return [500, 1_000, 2_000] if quick else [10_000, 100_000, 1_000_000]


def _consumer_counts(quick: bool) -> list[int]:
    return [1, 1_000] if quick else [1, 10, 100, 1_000]


def _timeout(submissions: int) -> float:
    return 120 + submissions * 0.005  # 5 ms per submission is ~10x what a run needs


def run(quick: bool, repeats: int, large_repeats: int, facts: dict[str, Any]) -> Section:
    sec = Section("scale", group="sizes")
    sizes = _sizes(quick)
    sec.notes.append(
        f"Flash sale with defaults except: constant arrivals at {SIZE_RATE:g}/s, {SIZE_CONSUMERS} "
        "consumers, keep_history=0 (ops are hashed and checked, not kept). One fresh process per "
        "run; peak RSS is that process's VmHWM, which includes the interpreter and imports "
        "(the 'RSS before' column). CPU and wall are the run alone, imports excluded.")
    per_sub: dict[int, float] = {}
    by_size: dict[int, list[dict[str, Any]]] = {}
    for i, n in enumerate(sizes):
        reps = large_repeats if n == sizes[-1] else repeats
        runs = [run_child(CHILD, {"mode": "flash", "submissions": n, "consumers": SIZE_CONSUMERS,
                                  "rate": SIZE_RATE}, _timeout(n)) for _ in range(reps)]
        by_size[n] = runs
        cpu = Stat.of(r["cpu"] for r in runs)
        per_sub[n] = cpu.median / n * 1e6
        first = runs[0]
        row = sec.row(f"scale.flash_sale.s{i + 1}", f"flash sale, {n:,} submissions",
                      **{"wall s": Stat.of(r["wall"] for r in runs), "CPU s": cpu,
                         "CPU us/submission": Stat.of(r["cpu"] / n * 1e6 for r in runs),
                         "GC s": Stat.of(r["gc_s"] for r in runs),
                         "CPU us/submission without GC": Stat.of((r["cpu"] - r["gc_s"]) / n * 1e6 for r in runs),
                         "peak RSS MiB": Stat.of(r["peak_rss_mib"] for r in runs),
                         "RSS before MiB": first["rss_before_mib"],
                         "events/submission": first["events"] / n if first["events"] else None,
                         "history ops/submission": first["history_ops"] / n,
                         "sim s": first["sim_seconds"]})
        if first["events"] is None:
            row.na_columns["events/submission"] = "SimPy's event counter was not found"
        same = len({r["history_sha256"] for r in runs}) == 1
        row.note = ("valid, " if first["valid"] else "INVALID, ") + \
            ("same history sha256 every repeat" if same else "history sha256 DIFFERS between repeats")
    smallest, largest = sizes[0], sizes[-1]
    lin = per_sub[largest] / per_sub[smallest]

    def no_gc(n: int) -> float:
        return Stat.of((r["cpu"] - r["gc_s"]) / n for r in by_size[n]).median

    sec.row("scale.linearity", f"CPU per submission, {largest:,} vs {smallest:,}", ratio=lin,
            **{"ratio without GC": no_gc(largest) / no_gc(smallest)})

    big = by_size[largest]
    t_wall = Target("scale.1m_wall", "flash sale at 1M submissions: wall time", "<=", 60.0, unit="s")
    t_rss = Target("scale.1m_rss", "flash sale at 1M submissions: peak RSS", "<=", 200.0, unit="MiB")
    t_lin = Target("scale.linear", f"linear: CPU per submission at the largest size within "
                   f"{LINEAR_TOLERANCE:g}x of the smallest", "<=", LINEAR_TOLERANCE)
    if largest >= 1_000_000:
        t_wall.measured = Stat.of(r["wall"] for r in big).median
        t_rss.measured = Stat.of(r["peak_rss_mib"] for r in big).median
        t_lin.measured = lin
    else:
        why = f"--quick runs {largest:,} submissions at most; the full mode measures 1M"
        t_wall.na = t_rss.na = t_lin.na = why
    sec.targets += [t_wall, t_rss, t_lin]

    _consumers(sec, quick, repeats)

    # --quick cannot judge these targets, but still takes the profiles (tiny sizes) so that
    # the code writing the causes is exercised by CI and cannot rot unnoticed
    if t_wall.met is False or t_lin.met is False or quick:
        _explain_time(t_wall, t_lin, quick, by_size, facts)
    if t_rss.met is False or quick:
        _explain_memory(t_rss, quick, by_size)
    return sec


def _consumers(sec: Section, quick: bool, repeats: int) -> None:
    sec.group = "consumers"
    n = 500 if quick else 5_000
    counts = _consumer_counts(quick)
    sec.notes.append(
        f"Consumer scaling: {n:,} submissions at a constant {CONSUMER_RATE:g}/s with 1 to "
        f"{counts[-1]:,} consumers (prefetch 10 each). The SimPy Store reference feeds {n:,} items at "
        f"the same rate to N processes blocked on one simpy.Store, {STORE_SERVICE_S * 1000:g} ms each.")
    cpu: dict[int, Stat] = {}
    for k in counts:
        runs = [run_child(CHILD, {"mode": "flash", "submissions": n, "consumers": k,
                                  "rate": CONSUMER_RATE}, _timeout(n)) for _ in range(repeats)]
        cpu[k] = Stat.of(r["cpu"] for r in runs)
        sec.row(f"scale.consumers.{k}", f"flash sale, {k:,} consumer(s)",
                **{"CPU s": cpu[k], "wall s": Stat.of(r["wall"] for r in runs),
                   "vs 1 consumer": cpu[k].median / cpu[counts[0]].median,
                   "events": runs[0]["events"], "peak RSS MiB": Stat.of(r["peak_rss_mib"] for r in runs)})
    store: dict[int, Stat] = {}
    for k in (1, 1_000):
        runs = [run_child(CHILD, {"mode": "store", "consumers": k, "items": n, "rate": CONSUMER_RATE,
                                  "service": STORE_SERVICE_S}, 300) for _ in range(repeats)]
        store[k] = Stat.of(r["cpu"] for r in runs)
        sec.row(f"scale.store.{k}", f"SimPy Store reference, {k:,} consumer process(es)",
                **{"CPU s": store[k], "wall s": Stat.of(r["wall"] for r in runs),
                   "vs 1 consumer": store[k].median / store[1].median, "events": runs[0]["events"]})
    grown = cpu[counts[-1]].median / cpu[1].median
    ref = store[1_000].median / store[1].median
    growth_text = f"CPU {grown:.2f}x; the SimPy Store pattern in this run {ref:.2f}x"
    t = Target("scale.consumers", f"consumers 1 -> 1,000 at fixed load ({n:,} submissions): CPU time "
               f"growth (SimPy Store reference in this run: {ref:.2f}x)", "<=", 1.6, measured=grown)
    sec.targets.append(t)
    if t.met is False:
        a = run_child(CHILD, {"mode": "flash-profile", "submissions": n, "consumers": 1,
                              "rate": CONSUMER_RATE}, _timeout(n) * 3)
        b = run_child(CHILD, {"mode": "flash-profile", "submissions": n, "consumers": counts[-1],
                              "rate": CONSUMER_RATE}, _timeout(n) * 3)
        grew = growth(a, b)
        table = ["functions whose own time grew most (1 -> " + f"{counts[-1]:,} consumers)", "",
                 "   +own s    calls(1)  calls(N)  function"]
        table += [f"  {d:+7.3f}  {ca:9d}  {cb:8d}  {name}" for name, d, ca, cb in grew]
        t.profile = ("\n".join(table) + "\n\n" + format_profile(a, f"1 consumer, {n:,} submissions", top=8)
                     + "\n\n" + format_profile(b, f"{counts[-1]:,} consumers, {n:,} submissions", top=8))
        added = sum(d for _n, d, _a, _b in grew)
        t.cause = (
            f"{counts[-1]:,} consumers cost {b['total_s'] / a['total_s']:.2f}x the profiled time of one "
            f"({growth_text}). The {len(grew)} functions that grew most account for +{added:.2f} s; "
            "their call counts (table) tell a per-consumer cost (calls grow with the consumer count, "
            "e.g. building each consumer's random streams, ports and channel) from a per-message one "
            "(calls equal in both runs, each call dearer). The per-consumer part is fixed, so it "
            f"weighs less the more submissions a run has; this run has {n:,}.")


def _explain_time(t_wall: Target, t_lin: Target, quick: bool, by_size: dict[int, list[dict[str, Any]]],
                  facts: dict[str, Any]) -> None:
    n = 300 if quick else 20_000
    p = run_child(CHILD, {"mode": "flash-profile", "submissions": n, "consumers": SIZE_CONSUMERS,
                          "rate": SIZE_RATE}, _timeout(n) * 4)
    excerpt = format_profile(p, f"flash sale, {n:,} submissions")
    largest = max(by_size)
    first = by_size[largest][0]
    events_per_sub = (first["events"] or 0) / largest
    ops_per_sub = first["history_ops"] / largest
    bare = facts.get("bare_simpy_events_per_cpu_s")
    cpu_per_sub = Stat.of(r["cpu"] for r in by_size[largest]).median / largest
    floor = events_per_sub * 1_000_000 / bare if bare else None
    wall = Stat.of(r["wall"] for r in by_size[largest]).median
    gc_share = Stat.of(r["gc_s"] / r["wall"] for r in by_size[largest]).median
    biggest = p["top"][0] if p["top"] else None
    cause = (
        f"Each submission costs {cpu_per_sub * 1e6:.0f} CPU us ({cpu_per_sub * 1e6:.0f} s of CPU per "
        f"million; the {largest:,} run took {wall:.0f} s of wall time on this shared machine): "
        f"{events_per_sub:.1f} SimPy events (client process, API server, publish, confirm and fsync, "
        f"delivery, handler, DB and Redis calls, ack) and {ops_per_sub:.1f} history ops, each hashed "
        "as canonical JSON and fed to the checker. "
        + (f"At the bare SimPy rate measured in this run ({bare:,.0f} events per CPU second) those "
           f"events alone cost {floor:.0f} s per million submissions before any model code runs. "
           if floor else "")
        + f"Profile shares: SimPy engine {area_share(p, 'SimPy engine'):.0%}, component models "
        f"{area_share(p, 'component'):.0%}, history hashing {area_share(p, 'history'):.0%}, checker "
        f"{area_share(p, 'checker'):.0%}, flow generators {area_share(p, 'shared flow'):.0%}, schema "
        f"validation {area_share(p, 'payload schema'):.0%}; the garbage collector took {gc_share:.0%} "
        f"of the run's wall time. 60 s needs the cost per submission cut about "
        f"{cpu_per_sub * 1e6 / 60:.1f}x"
        + (f", and the single most expensive function is only {biggest['tottime'] / p['total_s']:.0%} "
           f"of the profile ({biggest['function']}): the cost is spread over the event machinery and "
           "the model, not concentrated in a hot spot left to fix." if biggest else ".")
        + (" (--quick: sizes too small to judge; profile taken to keep this code exercised.)" if quick else ""))
    if t_wall.met is not True:
        t_wall.cause, t_wall.profile = cause, excerpt
    if t_lin.met is not True:
        smallest = min(by_size)

        def per(n: int, key: str) -> float:
            return Stat.of(r[key] / n * 1e6 for r in by_size[n]).median

        rise = per(largest, "cpu") - per(smallest, "cpu")
        spreads = [(st.hi - st.lo) / st.median for st in
                   (Stat.of(r["cpu"] for r in runs) for runs in by_size.values() if len(runs) > 1)]
        spread = max(spreads) if spreads else 0.0
        gc_rise = per(largest, "gc_s") - per(smallest, "gc_s")
        t_lin.cause = (
            f"CPU per submission rose from {per(smallest, 'cpu'):.0f} us at {smallest:,} to "
            f"{per(largest, 'cpu'):.0f} us at {largest:,} (+{rise:.0f} us). The cyclic garbage "
            f"collector's time per submission rose from {per(smallest, 'gc_s'):.0f} to "
            f"{per(largest, 'gc_s'):.0f} us (+{gc_rise:.0f} us, "
            f"{gc_rise / rise:.0%} of the rise): its full collections walk every live object, and the "
            "checker keeps ~1.1 KB of objects per message for the whole run (see the peak RSS "
            "target). The rest of the rise is not attributed by this harness; the profile below "
            f"(a 20,000 run) shows no single function to blame. Repeats of one size spread by up "
            f"to {spread:.0%} (max-min over median) on this shared machine, so a ratio this close "
            "to the line is partly noise." if rise > 0 else
            f"CPU per submission did not rise ({per(smallest, 'cpu'):.0f} -> {per(largest, 'cpu'):.0f} us).")
        t_lin.profile = excerpt


def _explain_memory(t: Target, quick: bool, by_size: dict[int, list[dict[str, Any]]]) -> None:
    n = 300 if quick else 20_000
    mem = run_child(CHILD, {"mode": "flash-memory", "submissions": n, "consumers": SIZE_CONSUMERS,
                            "rate": SIZE_RATE}, _timeout(n) * 4)
    lines = [f"tracemalloc after a {n:,}-submission run: memory still held when the run ends, by the "
             f"line that allocated it (total {mem['current'] / n:.0f} B per submission)", "",
             "  B/submission  blocks/submission  line"]
    for f in mem["lines"]:
        lines.append(f"  {f['bytes'] / n:12.0f}  {f['blocks'] / n:17.1f}  {f['where']}")

    def held(*parts: str) -> float:
        return sum(f["bytes"] for f in mem["lines"] if any(p in f["where"] for p in parts)) / n

    sizes = sorted(by_size)
    lo, hi = sizes[0], sizes[-1]
    slope = (Stat.of(r["peak_rss_mib"] for r in by_size[hi]).median -
             Stat.of(r["peak_rss_mib"] for r in by_size[lo]).median) * 1024 * 1024 / (hi - lo)
    checker = held("simulator/checker.py", "simulator/chains.py")
    # with keep_history=0 no Op outlives its record() call: what history.py and SimPy's
    # scheduler still hold at the end are the op-index ints and timestamps the steps keep
    numbers = held("simulator/history.py", "simpy/core.py")
    ids = held("simulator/sim/world.py")
    database = held("simulator/sim/database.py")
    t.profile = "\n".join(lines)
    t.cause = (
        f"Peak RSS grows by {slope:.0f} B per submission between {lo:,} and {hi:,} submissions, "
        f"so 1M cannot fit in 200 MiB. The profile shows what stays alive per message: "
        f"{checker:.0f} B in the checker's per-message records and steps (chains.py's Step "
        "namedtuples, checker.py's message map and per-key order map), plus "
        f"{numbers:.0f} B of op-index ints and timestamps those steps hold (allocated in "
        f"history.py and SimPy's scheduler), {ids:.0f} B of message-id and user strings made in "
        f"world.py that the checker's maps keep as keys, and {database:.0f} B in the DB model's "
        "processed-id and ledger tables. The "
        "checker keeps every message id to the end by design: lost and duplicated are only known "
        "after the final drain. Fitting 1M in 200 MiB needs a denser checker representation "
        "(ids as integers in arrays, steps kept only for anomalies), not a hot-spot fix.")
