"""The benchmark harness's quick mode (what CI runs so the harness never rots).

It runs ``python -m benchmarks.run --quick`` once into a temporary folder and checks the
*structure* of what it wrote: every row the harness promises is there, each with a number or
an explicit n/a reason, every target is either evaluated or says why not, and RESULTS.md shows
them all.  No timing is asserted: the numbers depend on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ is not an installed package: import it from the checkout
    sys.path.insert(0, str(ROOT))
QUICK_TIMEOUT_S = 240  # generous bound for a loaded CI machine; the run itself takes well under a minute


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=QUICK_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return results, (out / "RESULTS.md").read_text(encoding="utf-8")


def _rows(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for s in results["sections"] for r in s["rows"]}


def _is_number(v: Any) -> bool:
    if isinstance(v, dict):
        return isinstance(v.get("median"), (int, float))
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def test_every_promised_row_is_present(quick):
    results, _md = quick
    from benchmarks.run import expected_row_ids

    assert results["expected_rows"] == expected_row_ids(quick=True)
    missing = [i for i in results["expected_rows"] if i not in _rows(results)]
    assert not missing, missing
    assert results["mode"] == "quick" and results["skipped"] == []


def test_every_row_has_a_number_or_says_why_not(quick):
    results, _md = quick
    for id, row in _rows(results).items():
        if row["na"]:
            assert row["na"].strip(), id
            continue
        assert any(_is_number(v) for v in row["values"].values()), (id, row)
        for column, value in row["values"].items():
            if value is None:
                assert row["na_columns"].get(column, "").strip(), (id, column)
            else:
                assert _is_number(value) or isinstance(value, str), (id, column, value)


def test_every_target_is_evaluated_or_explained(quick):
    results, _md = quick
    targets = [t for s in results["sections"] for t in s["targets"]]
    ids = {t["id"] for t in targets}
    assert {"engine.mqlab_vs_idiomatic", "engine.events_vs_bare_simpy", "scale.1m_wall", "scale.1m_rss",
            "scale.linear", "scale.consumers"} <= ids
    # the real-service targets are listed whether or not the services were reachable
    assert {"real.publish_sync", "real.publish_async_w100", "real.publish_plain", "real.consume_p100",
            "real.flow", "real.redis_decr", "real.redis_pipelined", "real.workers_scale",
            "real.fidelity"} <= ids
    for t in targets:
        if t["met"] is None:
            assert t["na"], t["id"]
        else:
            assert isinstance(t["measured"], (int, float)), t["id"]
            if t["met"] is False:  # a miss carries its profile-backed cause
                assert t["cause"] and t["profile"], t["id"]


def test_the_markdown_shows_every_row_and_target(quick):
    results, md = quick
    for heading in ("## Machine and versions", "## Targets", "## Missed targets", "## Changes made to simulator/"):
        assert heading in md
    for row in _rows(results).values():
        assert row["label"] in md, row["id"]
    for s in results["sections"]:
        for t in s["targets"]:
            assert t["text"] in md, t["id"]


def test_the_engine_references_simulate_the_same_queue():
    # every implementation is the same M/M/4 at rho 0.8: its mean wait must be near Erlang C's
    from benchmarks.references import MMC_REFERENCES
    from simulator.analysis import mmc_mean_wait

    theory = mmc_mean_wait(3.2, 1.0, 4)
    for name, fn in MMC_REFERENCES.items():
        run = fn(4, 3.2, 1.0, 40_000, seed=3)
        assert run.customers == 40_000
        assert abs(run.mean_wait - theory) / theory < 0.25, (name, run.mean_wait, theory)
