"""The ``loss`` scenario (lesson 04, curriculum C2 and B7): each test checks one claim of the
lesson on a seeded run; lost counts are always the checker's."""

from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simulator.errors import InputError  # noqa: E402
from simulator.plots_loss import plot_loss, plot_loss_matrix, plot_reseed, plot_safety_stock  # noqa: E402
from simulator.scenarios.loss import (REDIS_TARGETS, TARGETS, LossConfig, designs, make_config,  # noqa: E402
                                      run_loss)

SAFE = "durable+persistent / confirms / manual-ack"
# a small matrix for the tests that are not about the default run
SMALL = {"submissions": 40, "durability": ("durable",), "confirms": (True,), "acks": ("manual",),
         "targets": ("broker",), "safety_stocks": (0, 10), "redis_stock": 30}


@pytest.fixture(scope="module")
def default():
    return run_loss(LossConfig())


def _row(result, label: str) -> dict[str, int]:
    return result.metrics["lost"][label]


# --------------------------------------------------------------------------- C2: the matrix
def test_default_runs_the_full_matrix(default):
    assert len(default.cells) == 8 * len(TARGETS) == default.metrics["cells"]
    assert len(default.rows) == 8 and default.targets == list(TARGETS)
    assert default.metrics["runs"] == len(default.cells) + 2 + len(default.config.safety_stocks)


def test_only_durable_persistent_confirms_manual_ack_loses_nothing_to_broker_or_consumer(default):
    assert default.metrics["zero_loss_designs"] == [SAFE]
    for label, row in default.metrics["lost"].items():
        if label == SAFE:
            assert row["broker"] == 0 and row["consumer"] == 0
        else:
            assert row["broker"] + row["consumer"] > 0, label
    # every submission still got its voucher after the broker came back
    assert default.cell(SAFE, "broker").granted == default.config.submissions


def test_without_a_crash_nothing_is_lost_in_any_design(default):
    # the control column; with auto-ack it also shows the run did not stop with work in the buffers
    assert all(_row(default, label)["none"] == 0 for label in default.rows)
    assert all(default.cell(label, "none").granted == default.config.submissions for label in default.rows)


def test_a_broker_crash_deletes_transient_queues(default):
    for label in default.rows:
        if label.startswith("transient"):
            cell = default.cell(label, "broker")
            assert cell.lost > 0 and "broker crash" in cell.example


def test_unconfirmed_persistent_loss_lies_in_the_fsync_window(default):
    # invariant 6: with confirms off, only messages published since the last flush are lost
    cell = default.cell("durable+persistent / no confirms / manual-ack", "broker")
    assert cell.lost > 0 and cell.lost <= cell.broker_dropped
    assert 0 <= cell.oldest_lost_s <= default.config.fsync_interval_s
    # invariant 5: with confirms the same crash drops unflushed copies, but none was confirmed
    safe = default.cell(SAFE, "broker")
    assert safe.broker_dropped > 0 and safe.lost == 0


def test_auto_ack_loses_what_the_crashed_consumer_held(default):
    for label in default.rows:
        cell = default.cell(label, "consumer")
        if label.endswith("auto-ack"):
            assert cell.lost > 0
            assert "consumer-1 crash" in cell.example and "(auto-ack)" in cell.example
        else:
            assert cell.lost == 0  # unacked deliveries go back to the queue


def test_a_producer_crash_is_refused_not_silently_lost_with_confirms(default):
    for label in default.rows:
        cell = default.cell(label, "producer")
        assert cell.refused > 0  # the clients are told (502/503)
        if "/ confirms /" in label:
            assert cell.lost == 0


def test_redis_persistence_modes(default):
    for label in default.rows:
        cells = {t: default.cell(label, t) for t in REDIS_TARGETS}
        # invariant 19: AOF always loses nothing; everysec a bounded window; none/RDB the key
        assert cells["redis:aof-always"].redis_lost_writes == 0
        assert cells["redis:aof-always"].reseeded_to is None
        assert 0 < cells["redis:aof-everysec"].redis_lost_writes < cells["redis:none"].redis_lost_writes
        assert cells["redis:aof-everysec"].reseeded_to is None  # rolled back, not lost
        for t in ("redis:none", "redis:rdb"):  # the key was never saved: rebuilt from the ledger
            assert cells[t].reseeded_to is not None and cells[t].reseeded_to >= 0
        for cell in cells.values():
            # a handler failing while Redis is down loses its message only under auto-ack
            assert (cell.lost > 0) == label.endswith("auto-ack")


# --------------------------------------------------------------------------- B7: Redis stock
def test_naive_reseed_oversells_and_the_ledger_reseed_does_not(default):
    full, ledger = default.reseed["full"], default.reseed["ledger"]
    assert full["reseeded_to"] == full["stock"] and full["oversold"] > 0
    assert ledger["oversold"] == 0 and ledger["granted"] == ledger["stock"]
    assert ledger["reseeded_to"] < ledger["stock"]
    assert "redis crash" in full["example"] and f"from a stock of {full['stock']}" in full["example"]
    assert default.metrics["reseed_oversold"] == {"full": full["oversold"], "ledger": 0}


def test_safety_stock_absorbs_a_bounded_loss_window(default):
    rows = default.safety
    assert [r["safety_stock"] for r in rows] == list(default.config.safety_stocks)
    for r in rows:
        # the rolled-back decrements come back as stock: all of them oversell, minus the buffer
        assert r["oversold"] == max(0, r["redis_lost_decrements"] - r["safety_stock"])
        assert r["redis_lost_writes"] >= r["redis_lost_decrements"]  # a hold is a write too
        assert r["reseeded_to"] is None  # the key survived (rolled back), so no reseed hid the loss
    assert rows[0]["oversold"] > 0
    absorbed = [r for r in rows if 0 < r["redis_lost_decrements"] <= r["safety_stock"]]
    assert absorbed and all(r["oversold"] == 0 for r in absorbed)


# --------------------------------------------------------------------------- result, subset, determinism
def test_to_dict_is_json_ready_and_complete(default):
    d = default.to_dict()
    assert {"scenario", "seed", "config", "metrics", "cells"} <= set(d)
    assert d["scenario"] == "loss" and d["seed"] == 7 and len(d["cells"]) == 64
    json.dumps(d, allow_nan=False)
    lost_cells = [c for c in d["cells"] if c["lost"]]
    assert lost_cells and all(c["example_kind"] == "lost" and "never processed" in c["example"]
                              for c in lost_cells)


def test_report_names_the_safe_design_and_the_reseed(default):
    text = default.report()
    assert "no loss to a broker or consumer crash: " + SAFE in text
    assert "naive reseed to full stock" in text and "safety stock" in text


def test_subset_and_determinism():
    a, b = run_loss(SMALL), run_loss(dict(SMALL))
    assert [c.target for c in a.cells] == ["broker"] and a.rows == [SAFE]
    assert a.to_dict() == b.to_dict()
    other = run_loss({**SMALL, "seed": 8})
    assert other.to_dict()["cells"][0]["history_sha256"] != a.to_dict()["cells"][0]["history_sha256"]


def test_comma_separated_values_as_from_the_command_line():
    cfg = make_config(durability="durable", confirms="false,true", acks="manual", targets="broker,consumer")
    assert [d.label for d in designs(cfg)] == ["durable+persistent / no confirms / manual-ack", SAFE]
    assert cfg.targets == ("broker", "consumer")


@pytest.mark.parametrize("values, field", [
    ({"submissions": 0}, "submissions"),
    ({"crash_at": math.nan}, "crash_at"),
    ({"restart_after": -1}, "restart_after"),
    ({"targets": ("broker", "disk")}, "targets.1"),
    ({"targets": ()}, "targets"),
    ({"acks": "auto,auto"}, "acks"),
    ({"safety_stocks": (0, 80)}, "safety_stocks"),
    ({"submissions": 50, "redis_stock": 50}, "redis_stock"),
    ({"durability": ("persistent",)}, "durability.0"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_config_is_an_input_error_naming_the_field(values, field):
    with pytest.raises(InputError) as err:
        run_loss(values)
    assert err.value.field == field


# --------------------------------------------------------------------------- plots
def test_plot_loss_matrix_has_one_annotated_cell_per_run(default):
    fig = plot_loss_matrix(default)
    ax = fig.axes[0]
    assert isinstance(fig, Figure)
    assert ax.get_xlabel() == "crash target" and "ack" in ax.get_ylabel()
    assert len(ax.texts) == len(default.cells)
    assert ax.images[0].get_array().shape == (8, len(TARGETS))
    assert [t.get_text() for t in ax.get_xticklabels()] == list(TARGETS)
    assert ax.texts[0].get_text() == str(default.cells[0].lost)
    plt.close(fig)


def test_plot_reseed_shows_both_policies_against_the_stock(default):
    fig, ax = plt.subplots()
    assert plot_reseed(default, ax=ax) is fig
    steps = [line for line in ax.lines if line.get_label().startswith(("naive", "reseed"))]
    assert len(steps) == 2
    # each curve ends at the vouchers granted under its policy
    assert [int(line.get_ydata()[-1]) for line in steps] == [default.reseed["full"]["granted"],
                                                             default.reseed["ledger"]["granted"]]
    assert ax.get_xlabel() == "simulated time (s)" and ax.get_ylabel() == "vouchers granted"
    assert len(ax.get_legend().get_texts()) == 4
    plt.close(fig)


def test_plot_safety_stock_and_the_report_figure(default):
    fig = plot_safety_stock(default)
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * len(default.safety)
    assert ax.get_xlabel() == "safety stock held back" and ax.get_ylabel() == "vouchers"
    plt.close(fig)
    fig = plot_loss(default)
    assert len(fig.axes) == 4  # matrix, its colour bar, reseed, safety stock
    plt.close(fig)
