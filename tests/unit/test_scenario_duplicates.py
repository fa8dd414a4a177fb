"""The ``duplicates`` scenario (lesson 05, curriculum C3): each test checks one claim of the
lesson on a seeded run; double grants and duplicates are the checker's counts."""

from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simulator.errors import InputError  # noqa: E402
from simulator.history import Op  # noqa: E402
from simulator.plots_loss import plot_crash_duplicates, plot_duplicates, plot_duplicates_report  # noqa: E402
from simulator.scenarios.duplicates import (CRASH_POINTS, DEDUPE_MODES, DuplicatesConfig,  # noqa: E402
                                            delivery_counts, make_config, marked_seen_never_granted,
                                            run_duplicates)

AFTER_COMMIT, AFTER_STOCK = CRASH_POINTS
SMALL = {"submissions": 40, "ack_loss_rates": (0.0, 0.2), "dedupe": ("off", "db"),
         "crash_points": (AFTER_COMMIT,), "crashes": 1}


@pytest.fixture(scope="module")
def default():
    return run_duplicates(DuplicatesConfig())


# --------------------------------------------------------------------------- ack loss
def test_without_dedupe_a_lost_ack_grants_twice(default):
    for rate in default.config.ack_loss_rates:
        run = default.sweep_run("off", rate)
        if rate == 0:
            assert run["duplicate_deliveries"] == 0 and run["double_granted"] == 0
        else:
            assert run["double_granted"] > 0 and not run["valid"]
            assert "ack m" in run["example"] and "lost by" in run["example"]


def test_db_dedupe_is_exactly_once_although_deliveries_repeat(default):
    for rate in default.config.ack_loss_rates[1:]:
        run = default.sweep_run("db", rate)
        assert run["duplicate_deliveries"] > 0 and run["duplicated"] > 0  # at-least-once delivery ...
        assert run["double_granted"] == 0 and run["granted"] == default.config.submissions  # ... once in effect
        assert run["valid"]


def test_redis_set_nx_also_stops_double_grants_from_lost_acks(default):
    for rate in default.config.ack_loss_rates:
        run = default.sweep_run("redis", rate)
        assert run["double_granted"] == 0 and run["marked_seen_never_granted"] == 0


def test_more_ack_loss_means_more_duplicate_deliveries(default):
    for mode in DEDUPE_MODES:
        counts = [default.sweep_run(mode, r)["duplicate_deliveries"] for r in default.config.ack_loss_rates]
        assert counts == sorted(counts) and counts[-1] > counts[0]


def test_a_repeat_delivery_is_always_flagged_redelivered(default):
    # invariant 9: redelivered=False only on a message's first delivery
    for run in default.sweep + default.crash_runs:
        assert run["unflagged_repeats"] == 0
        assert run["redelivered_flagged"] >= run["duplicate_deliveries"]


# --------------------------------------------------------------------------- crashes
def test_crash_after_commit_before_ack(default):
    crashes = default.config.crashes
    off = default.crash_run(AFTER_COMMIT, "off")
    assert off["double_granted"] == crashes  # each crash: one committed grant redelivered and granted again
    assert "granted 2 vouchers" in off["example"]
    for mode in ("redis", "db"):
        run = default.crash_run(AFTER_COMMIT, mode)
        assert run["duplicate_deliveries"] >= crashes and run["double_granted"] == 0
        assert run["granted"] == default.config.submissions


def test_redis_set_nx_outside_the_transaction_marks_seen_what_it_never_granted(default):
    crashes, n = default.config.crashes, default.config.submissions
    redis = default.crash_run(AFTER_STOCK, "redis")
    assert redis["marked_seen_never_granted"] == crashes
    assert redis["granted"] == n - crashes
    assert redis["valid"]  # the checker sees nothing wrong: nothing lost, nothing granted twice
    assert "marked seen in Redis" in redis["seen_example"] and "crash" in redis["seen_example"]
    db = default.crash_run(AFTER_STOCK, "db")  # the unique key in the same transaction
    assert db["marked_seen_never_granted"] == 0 and db["granted"] == n and db["double_granted"] == 0


def test_only_db_dedupe_is_exactly_once_overall(default):
    assert default.metrics["exactly_once_modes"] == ["db"]
    totals = default.metrics["totals"]
    assert totals["off"]["double_granted"] > 0 and totals["redis"]["marked_seen_never_granted"] > 0
    assert totals["db"]["duplicate_deliveries"] > 0


# --------------------------------------------------------------------------- from the history
def _op(i: int, f: str, msg: str, value=None, process: str = "consumer-1") -> Op:
    return Op(i, i * 0.01, "ok", f, process, value, msg)


def test_delivery_counts_and_marked_seen_on_a_hand_made_history():
    ops = [_op(0, "deliver", "m1", {"redelivered": False}),
           _op(1, "grant", "m1"),
           _op(2, "deliver", "m1", {"redelivered": True}),
           _op(3, "dequeue", "m1", {"outcome": "duplicate"}),
           _op(4, "deliver", "m2", {"redelivered": False}),
           _op(5, "deliver", "m2", {"redelivered": False}),  # a repeat not flagged: invariant 9 broken
           _op(6, "dequeue", "m2", {"outcome": "duplicate"})]
    assert delivery_counts(ops) == {"deliveries": 4, "delivered_messages": 2, "duplicate_deliveries": 2,
                                    "redelivered_flagged": 1, "unflagged_repeats": 1}
    assert marked_seen_never_granted(ops) == ["m2"]  # m1 was granted before it was skipped


# --------------------------------------------------------------------------- result and config
def test_to_dict_is_json_ready_and_deterministic():
    a, b = run_duplicates(SMALL), run_duplicates(dict(SMALL))
    d = a.to_dict()
    assert {"scenario", "seed", "config", "metrics", "sweep", "crash_runs"} <= set(d)
    assert d["scenario"] == "duplicates" and d["seed"] == 7 and len(d["sweep"]) == 4
    json.dumps(d, allow_nan=False)
    assert d == b.to_dict()
    other = run_duplicates({**SMALL, "seed": 8}).to_dict()
    assert other["sweep"][1]["history_sha256"] != d["sweep"][1]["history_sha256"]


def test_report_shows_the_sweep_and_the_flaw(default):
    text = default.report()
    assert "ack-loss sweep" in text and "the SET NX flaw" in text and "why (no dedupe" in text


@pytest.mark.parametrize("values, field", [
    ({"submissions": 5}, "submissions"),
    ({"ack_loss_rates": (0.0, 0.7)}, "ack_loss_rates"),
    ({"ack_loss_rates": (math.nan,)}, "ack_loss_rates"),
    ({"ack_loss_rates": (0.2, 0.1)}, "ack_loss_rates"),
    ({"dedupe": "off,memcached"}, "dedupe.1"),
    ({"crash_points": ("consumer:before-ack",)}, "crash_points.0"),
    ({"crashes": 0}, "crashes"),
    ({"dedupe": ()}, "dedupe"),
    ({"ack_los": 0.1}, "ack_los"),
])
def test_bad_config_is_an_input_error_naming_the_field(values, field):
    with pytest.raises(InputError) as err:
        make_config(**values)
    assert err.value.field == field
    with pytest.raises(InputError):
        run_duplicates(values)


# --------------------------------------------------------------------------- plots
def test_plot_duplicates_has_one_line_per_dedupe_mode(default):
    fig, ax = plt.subplots()
    assert plot_duplicates(default, ax=ax) is fig
    assert len(ax.lines) == len(default.config.dedupe)
    assert ax.get_xlabel() == "ack-loss probability" and ax.get_ylabel() == "double-granted vouchers"
    off = ax.lines[0]
    assert list(off.get_xdata()) == list(default.config.ack_loss_rates)
    assert list(off.get_ydata()) == [default.sweep_run("off", r)["double_granted"]
                                     for r in default.config.ack_loss_rates]
    assert all(max(line.get_ydata()) == 0 for line in ax.lines[1:])
    assert len(ax.get_legend().get_texts()) == 3
    plt.close(fig)


def test_plot_crash_duplicates_and_the_report_figure(default):
    fig = plot_crash_duplicates(default)
    ax = fig.axes[0]
    assert isinstance(fig, Figure)
    assert len(ax.patches) == 2 * len(default.crash_runs)
    assert ax.get_ylabel() == "submissions" and "crash point" in ax.get_xlabel()
    plt.close(fig)
    fig = plot_duplicates_report(default)
    assert len(fig.axes) == 2
    plt.close(fig)
