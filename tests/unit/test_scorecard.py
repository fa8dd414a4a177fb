"""The flash-sale scorecard: architectures side by side under one crash schedule, fairness and
"refused while stock remained" computed from the history, determinism and config errors."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest

from simulator.errors import InputError
from simulator.history import Op
from simulator.scenarios.scorecard import (ARCHITECTURES, DEFAULT_FAULTS, ScorecardConfig, fairness,
                                           make_config, rejected_while_stock_remained, run_scorecard)

SMALL = dict(submissions=800, stock=200)


def _ops(*steps: tuple[float, str, str, str, dict | None]) -> list[Op]:
    """(time, type, f, msg_id, value) -> Ops in history order."""
    return [Op(i, t, typ, f, "p", value, msg_id=mid) for i, (t, typ, f, mid, value) in enumerate(steps)]


def _submits(*mids: str) -> list[tuple]:
    return [(0.01 * i, "invoke", "submit", mid, None) for i, mid in enumerate(mids)]


# ----------------------------------------------------------------------- scoring, on hand-made histories

def test_first_come_first_served_history_has_no_violation():
    ops = _ops(*_submits("m1", "m2", "m3"),
               (1.0, "ok", "grant", "m1", None), (1.1, "ok", "dequeue", "m2", {"outcome": "sold_out"}),
               (1.2, "ok", "dequeue", "m3", {"outcome": "sold_out"}))
    assert fairness(ops) == {"violations": 0, "pairs": 0}


def test_a_later_grant_over_an_earlier_refusal_is_a_violation():
    ops = _ops(*_submits("m1", "m2", "m3", "m4"),
               (1.0, "ok", "dequeue", "m1", {"outcome": "sold_out"}),
               (1.1, "ok", "grant", "m2", None),
               (1.2, "fail", "submit", "m3", {"status": 503}),  # refused at the API, never granted
               (1.3, "ok", "grant", "m4", None))
    # m1 was passed over by m2 and m4, m3 by m4
    assert fairness(ops) == {"violations": 2, "pairs": 3}


def test_invalid_and_lost_submissions():
    ops = _ops(*_submits("m1", "m2", "m3"),
               (1.0, "ok", "dequeue", "m1", {"outcome": "invalid"}),  # not a valid entry: no claim
               (1.1, "ok", "grant", "m3", None))                      # m2 vanished: passed over
    assert fairness(ops) == {"violations": 1, "pairs": 1}


def test_refused_while_stock_remained_counts_only_refusals_before_the_stock_was_claimed():
    ops = _ops(*_submits("m1", "m2", "m3", "m4"),
               (0.5, "fail", "submit", "m1", {"status": 503}),       # 0 of 2 claimed: counts
               (0.6, "ok", "stock", "m2", {"left": 1}), (0.7, "ok", "grant", "m2", None),
               (0.8, "ok", "stock", "m3", {"left": 0}),
               (0.9, "ok", "dequeue", "m4", {"outcome": "sold_out"}),  # m3 holds the last one
               (1.0, "ok", "grant", "m3", None))
    assert rejected_while_stock_remained(ops, offered=2) == 1
    assert rejected_while_stock_remained(ops, offered=3) == 2  # with a third voucher m4 was wronged too


def test_a_decrement_lost_to_a_crash_still_counts_as_remaining_stock():
    ops = _ops(*_submits("m1", "m2"),
               (0.5, "ok", "stock", "m1", {"left": 0}),                # m1 never granted: leaked
               (0.6, "ok", "dequeue", "m2", {"outcome": "sold_out"}))
    assert rejected_while_stock_remained(ops, offered=1) == 1


# ----------------------------------------------------------------------- the default scorecard

@pytest.fixture(scope="module")
def card():
    return run_scorecard(SMALL)


def test_every_architecture_runs_on_the_same_arrivals_and_crashes():
    cfg = ScorecardConfig(**SMALL)
    runs = {name: cfg.flash_sale(name) for name in ARCHITECTURES}
    base = runs["async-safe"].model_dump()
    for name, flash in runs.items():
        changed = {k for k, v in flash.model_dump().items() if base[k] != v}
        assert changed == set(ARCHITECTURES[name][1]), name
        assert flash.faults == DEFAULT_FAULTS
    assert all(f.faults == () for f in (ScorecardConfig(crashes=False).flash_sale(n) for n in ARCHITECTURES))


def test_safe_architectures_lose_nothing_and_never_oversell(card):
    for name in ("async-safe", "async-outbox"):
        row = card.rows[name]
        assert row["lost"] == row["oversold"] == row["double_granted"] == 0, name
        assert row["vouchers_granted"] == SMALL["stock"]
        assert row["rejected_while_stock_remained"] == 0


def test_naive_sync_oversells_and_turns_people_away_while_stock_remains(card):
    naive, safe = card.rows["naive-sync"], card.rows["async-safe"]
    assert naive["oversold"] > 0
    assert naive["rejected_while_stock_remained"] > 0
    assert naive["fcfs_violations"] > 10 * max(safe["fcfs_violations"], 1)
    assert naive["time_to_voucher_p99_s"] < safe["time_to_voucher_p99_s"]  # when it works, it is quick


def test_auto_ack_loses_what_the_crashed_consumer_held(card):
    auto, safe = card.rows["async-auto-ack"], card.rows["async-safe"]
    assert auto["lost"] > 0 and safe["lost"] == 0
    assert auto["fcfs_violations"] > safe["fcfs_violations"]  # the lost ones were passed over


def test_without_crashes_only_the_stock_race_remains():
    card = run_scorecard({**SMALL, "crashes": False, "architectures": ("naive-sync", "async-auto-ack")})
    assert card.rows["async-auto-ack"]["lost"] == 0
    assert card.rows["naive-sync"]["oversold"] > 0  # GET then SET races with or without crashes
    assert card.rows["naive-sync"]["rejected_while_stock_remained"] == 0


def test_report_table_and_json(card):
    text = card.report()
    for name in ARCHITECTURES:
        assert name in text
    doc = json.loads(json.dumps(card.to_dict()))
    assert doc["scenario"] == "scorecard" and doc["order"] == list(ARCHITECTURES)


def test_plot_scorecard(card):
    from simulator.plots_sync import plot_scorecard

    fig = plot_scorecard(card)
    texts = {cell.get_text().get_text() for cell in fig.axes[0].tables[0].get_celld().values()}
    assert {"naive-sync", "FCFS violations"} <= texts
    plt.close(fig)


def test_deterministic():
    values = dict(submissions=300, stock=80, architectures=("naive-sync", "async-safe"))
    assert run_scorecard(values).to_dict() == run_scorecard(ScorecardConfig(**values)).to_dict()
    assert run_scorecard({**values, "seed": 9}).to_dict() != run_scorecard(values).to_dict()


# ----------------------------------------------------------------------- bad input and the CLI

@pytest.mark.parametrize("values, field", [
    ({"architectures": ("nope",)}, "architectures"),
    ({"architectures": ()}, "architectures"),
    ({"architectures": ("async-safe", "async-safe")}, "architectures"),
    ({"stock": -1}, "stock"),
    ({"faults": [{"target": "mainframe", "at": 1.0}]}, "faults.0.target"),
])
def test_bad_config_is_an_input_error_naming_the_field(values, field):
    with pytest.raises(InputError) as err:
        make_config(**values)
    assert err.value.field.split(".")[0] == field.split(".")[0]  # a bad name is architectures.<index>
    assert err.value.field == field or field == "architectures"
    with pytest.raises(InputError):
        run_scorecard(values)


def test_cli_runs_the_scorecard(capsys, monkeypatch):
    from simulator.cli import main
    from simulator.scenarios.registry import SCENARIOS, Scenario

    monkeypatch.setitem(SCENARIOS, "scorecard", SCENARIOS.get("scorecard") or Scenario(
        "scorecard", "architectures side by side", "simulator.scenarios.scorecard",
        "simulator.scenarios.scorecard:ScorecardConfig", "simulator.scenarios.scorecard:run_scorecard",
        "simulator.plots_sync:plot_scorecard"))
    code = main(["run", "scorecard", "--submissions", "200", "--stock", "50",
                 "--architectures", "naive-sync,async-safe", "--crash", "consumer-1@0.2", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    doc = json.loads(out)
    assert doc["order"] == ["naive-sync", "async-safe"] and set(doc["architectures"]) == set(doc["order"])
    assert doc["config"]["faults"][0]["target"] == "consumer-1"
    assert main(["run", "scorecard", "--architectures", "async-fast"]) == 2
    assert "--architectures" in capsys.readouterr().err
