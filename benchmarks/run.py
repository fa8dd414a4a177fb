"""Run MQ Lab's benchmarks and write RESULTS.md (+ results.json).

    .venv/bin/python -m benchmarks.run                    # full, writes benchmarks/RESULTS.md (~25 min on 2 busy cores)
    .venv/bin/python -m benchmarks.run --large-repeats 1  # the same with one 1M run (~16 min)
    .venv/bin/python -m benchmarks.run --quick            # CI: small sizes, 1 repeat, under a minute
    .venv/bin/python -m benchmarks.run --only real        # re-measure one section, keep the others

--quick writes to build/benchmarks-quick/ unless --out says otherwise, so CI never overwrites
the committed full results.  --only keeps the other sections of the results.json already in the
output folder (each section says when it was measured); --render-only rewrites RESULTS.md from it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import timeit
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # before numpy loads: see common.QUIET_THREADS

from benchmarks import engine, interactive, real, scale  # noqa: E402
from benchmarks.common import ROOT, Section, Stat, load_now, machine_facts  # noqa: E402
from benchmarks.report import render  # noqa: E402

SECTIONS = ("engine", "scale", "interactivity", "real", "hotspots")

# Changes made to simulator/ because a profile named them; each kept results byte-identical.
HOTSPOT_FIXES = [
    {"where": "simulator/messages.py `payload_error`",
     "what": "a hand-written check of a strict subset of the submission schema answers 'valid' "
             "for ordinary payloads; anything else still goes through jsonschema, so the answer "
             "and the error text never change. jsonschema's best_match(iter_errors) was 16% of "
             "a cProfile of the 10k flash sale (3.6 of 22.6 s): every consumer validates every delivery.",
     "check": "`mqlab run flash-sale --seed 7 --json` history_sha256 b8b485a2… before and after; "
              "every registered scenario's JSON identical with the old and the new function in one "
              "process (except `loss`, whose output differed between two runs of the very same code when checked); 200,000 "
              "mutated payloads: the fast path never accepts one jsonschema rejects; "
              "`pytest tests/unit` passes."},
    {"where": "simulator/history.py `Op.to_json`",
     "what": "the canonical JSON of every op (hashed for history_sha256) is produced by the C "
             "encoder `json.dumps` builds, built once and reused, instead of a new encoder per "
             "call; same arguments, so the same bytes. Op.to_json was 13% of the same profile (2.9 of "
             "22.6 s), most of it building the encoder.",
     "check": "428,000 ops from every scenario compared with `json.dumps(op.to_dict(), sort_keys=True, "
              "separators=(',', ':'))`: identical; NaN, non-ASCII, nested values identical; "
              "unserialisable and circular values raise the same errors; the flash-sale sha above "
              "unchanged; `pytest tests/unit` passes."},
    {"where": "simulator/checker_store.py, simulator/compact.py, simulator/sim/database.py",
     "what": "the checker moves a message it has settled (one dequeue, at most one grant, at most "
             "four chain steps, an id of the form prefix + counter) into flat typed arrays indexed "
             "by the id's counter, and rebuilds the exact record if a later op touches it; the "
             "per-key order state is kept the same way and the DB model's processed ids are a "
             "bitmap. tracemalloc had named the checker's Step namedtuples and message maps as "
             "658 of the 1,132 B held per submission.",
     "check": "25 outputs (flash-sale seeds 7 and 8 as JSON and text, fault variants with chains, "
              "every scenario's JSON) byte-identical before and after, also with every settled "
              "message stored at once; 1,000 random histories checked by the old and the new "
              "checker, with mid-stream results: 0 differences; history_sha256 at 10k, 100k and 1M "
              "unchanged; retained memory 1,132 -> 202 B per submission (20k run)."},
]


def expected_row_ids(quick: bool) -> list[str]:
    """Every row a complete run produces (the quick-mode test checks each one is there)."""
    from simulator.lessons.table import LESSONS

    ids = [f"engine.{n}" for n in ("simpy_idiomatic", "heapq", "simpy_bare", "mqlab")]
    ids += ["engine.ratio.mqlab_vs_idiomatic", "engine.ratio.mqlab_vs_bare_simpy_events",
            "engine.ratio.mqlab_vs_heapq", "engine.ratio.bare_simpy_vs_heapq"]
    ids += ["scale.flash_sale.s1", "scale.flash_sale.s2", "scale.flash_sale.s3", "scale.linearity"]
    ids += [f"scale.consumers.{k}" for k in scale._consumer_counts(quick)]
    ids += ["scale.store.1", "scale.store.1000"]
    ids += [f"interactive.panel.{les.filename.removesuffix('.ipynb')}" for les in LESSONS]
    ids += ["interactive.nbval"]
    ids += list(real.BROKER_ROWS)
    ids += ["real.redis.decr", "real.redis.decr_pipelined", "real.redis.check_and_decr"]
    ids += [f"real.workers.{k}" for k in (1, 2, 4)] + ["real.fidelity"]
    ids += ["hotspot.payload_error", "hotspot.history_json"]
    return ids


def _hotspots(repeats: int) -> Section:
    """The two fixed functions against what they replaced, per call, measured now."""
    import jsonschema

    from simulator.history import Op
    from simulator.messages import _validator, payload_error, submission_body

    sec = Section("hotspots")
    body = submission_body("m1", "user-1", seq=3)
    op = Op(123_456, 12.345678901, "ok", "dequeue", "consumer-3",
            {"outcome": "granted", "key": "user-1", "seq": 3}, "m123456", "c123456")

    def per_call_us(fn: Any, number: int) -> list[float]:
        return [t / number * 1e6 for t in timeit.repeat(fn, number=number, repeat=max(repeats, 3))]

    now = per_call_us(lambda: payload_error(body), 20_000)
    before = per_call_us(lambda: jsonschema.exceptions.best_match(_validator().iter_errors(body)), 2_000)
    sec.row("hotspot.payload_error", "payload_error on a valid submission",
            **{"now us/call": Stat.of(now), "jsonschema us/call": Stat.of(before),
               "speed-up": Stat.of(before).median / Stat.of(now).median})
    now = per_call_us(op.to_json, 20_000)
    before = per_call_us(lambda: json.dumps(op.to_dict(), sort_keys=True, separators=(",", ":")), 20_000)
    sec.row("hotspot.history_json", "canonical JSON of one history op",
            **{"now us/call": Stat.of(now), "json.dumps us/call": Stat.of(before),
               "speed-up": Stat.of(before).median / Stat.of(now).median})
    sec.rows[-1].note = "identical bytes: " + str(op.to_json() == json.dumps(
        op.to_dict(), sort_keys=True, separators=(",", ":")))
    return sec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repeat (what CI runs)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per measurement (default 3; --quick 1)")
    parser.add_argument("--large-repeats", type=int, default=None,
                        help="repeats of the largest flash-sale size (default: --repeats)")
    parser.add_argument("--only", default="", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: rewrite RESULTS.md from the results.json already in --out")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for RESULTS.md and results.json (default benchmarks/; --quick "
                             "build/benchmarks-quick/)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    large_repeats = args.large_repeats or repeats
    if repeats < 1 or large_repeats < 1:
        parser.error("--repeats and --large-repeats must be at least 1")
    only = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    out = args.out or (ROOT / "build" / "benchmarks-quick" if args.quick else ROOT / "benchmarks")
    out.mkdir(parents=True, exist_ok=True)
    if args.render_only:
        (out / "RESULTS.md").write_text(render(json.loads((out / "results.json").read_text(encoding="utf-8"))),
                                        encoding="utf-8")
        return 0

    started = time.perf_counter()
    command = "python -m benchmarks.run" + (" --quick" if args.quick else "") + \
        (f" --repeats {args.repeats}" if args.repeats else "") + \
        (f" --large-repeats {args.large_repeats}" if args.large_repeats else "") + \
        (f" --only {args.only}" if args.only else "")
    mode = "quick" if args.quick else "full"
    results: dict[str, Any] = {
        "mode": mode, "command": command, "repeats": repeats, "large_repeats": large_repeats,
        "elapsed_s": 0.0, "complete": False,
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_facts(), "load_at_end": [], "services": {}, "sections": [],
        "hotspot_fixes": HOTSPOT_FIXES, "skipped": [], "expected_rows": expected_row_ids(args.quick),
    }
    earlier = _earlier_sections(out, mode) if args.only else {}
    engine_facts: dict[str, Any] = {}

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {msg}", file=sys.stderr, flush=True)

    def measure(name: str) -> Section:
        nonlocal engine_facts
        if name == "engine":
            sec, engine_facts = engine.run(args.quick, repeats)
            return sec
        if name == "scale":
            if not engine_facts:  # the time cause quotes the bare SimPy rate; measure it briefly
                _sec, engine_facts = engine.run(True, 1)
            return scale.run(args.quick, repeats, large_repeats, engine_facts)
        if name == "interactivity":
            return interactive.run(args.quick, repeats)
        if name == "real":
            sec, results["services"] = real.run(args.quick, repeats)
            return sec
        return _hotspots(repeats)

    for name in SECTIONS:
        if name not in only:
            if name in earlier:
                results["sections"].append(earlier[name])  # kept from the run that measured it
                if name == "real":
                    results["services"] = earlier[name].get("services", {})
            else:
                results["skipped"].append(name)
            continue
        log(name)
        try:
            sec = measure(name)
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
            sec = _failed(name, exc, results["expected_rows"])
            log(f"{name} FAILED: {type(exc).__name__}: {exc}")
        results["sections"].append(_section_dict(sec, results["generated"], command))
        if name == "real":
            results["sections"][-1]["services"] = results["services"]
        _write(out, results, started)  # partial results survive a crash of a later section
    results["complete"] = True
    _write(out, results, started)
    log(f"wrote {out / 'RESULTS.md'}")
    return 0


_PREFIX = {"engine": "engine.", "scale": "scale.", "interactivity": "interactive.", "real": "real.",
           "hotspots": "hotspot."}


def _failed(name: str, exc: BaseException, expected: list[str]) -> Section:
    sec = Section(name)
    why = f"n/a: the {name} section failed ({type(exc).__name__}: {str(exc)[:200]})"
    sec.notes.append(why)
    for id in expected:
        if id.startswith(_PREFIX[name]):
            sec.row(id, id).na = why
    return sec


def _section_dict(sec: Section, generated: str, command: str) -> dict[str, Any]:
    return {"name": sec.name, "notes": sec.notes, "rows": [r.to_dict() for r in sec.rows],
            "targets": [t.to_dict() for t in sec.targets], "generated": generated, "command": command}


def _earlier_sections(out: Path, mode: str) -> dict[str, dict[str, Any]]:
    """Sections of the results already in ``out`` (same mode), for an --only re-run to keep."""
    try:
        old = json.loads((out / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if old.get("mode") != mode:
        return {}
    return {s["name"]: s for s in old.get("sections", [])}


def _write(out: Path, results: dict[str, Any], started: float) -> None:
    results["elapsed_s"] = time.perf_counter() - started
    results["load_at_end"] = load_now()
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (out / "RESULTS.md").write_text(render(results), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
