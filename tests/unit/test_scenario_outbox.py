"""The ``outbox`` scenario (lesson 07, curriculum C7, reference §3 invariants 14-16): each test
checks one claim on a seeded run; every cell's verdict is the checker's count."""

from __future__ import annotations

import argparse
import io
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simulator.checker import check  # noqa: E402
from simulator.config import Fault, FlashSaleConfig  # noqa: E402
from simulator.errors import InputError  # noqa: E402
from simulator.flow import CRASH_POINTS  # noqa: E402
from simulator.history import Op  # noqa: E402
from simulator.plots_outbox import plot_crash_matrix, plot_outbox, plot_outbox_lag  # noqa: E402
from simulator.scenarios.flash_sale import run_flash_sale  # noqa: E402
from simulator.scenarios.outbox import (COLUMNS, PATTERNS, OutboxConfig, make_config,  # noqa: E402
                                        run_outbox)

NAIVE_DB, NAIVE_PUB, OUTBOX, RECONCILE, COMPENSATION, RESERVATION = PATTERNS


@pytest.fixture(scope="module")
def default():
    return run_outbox()


def test_the_matrix_covers_every_pattern_and_crash_point(default):
    assert set(CRASH_POINTS) <= set(default.config.columns)
    assert {(c.pattern, c.column) for c in default.cells} == {(p, c) for p in PATTERNS for c in COLUMNS}
    # the compensation row reads the outbox runs: one world run per distinct (pattern, fault)
    assert default.metrics["runs"] == (len(PATTERNS) - 1) * len(COLUMNS)


def test_no_fault_is_clean_everywhere(default):
    for pattern in PATTERNS:
        cell = default.cell(pattern, "none")
        assert cell.state in ("ok", "conserved"), cell
        assert cell.counts["granted"] == default.config.submissions  # stock above demand


# --------------------------------------------------------------------------- naive dual write
def test_db_then_publish_crash_after_save_leaves_an_orphan(default):
    cell = default.cell(NAIVE_DB, "api:after-save")
    assert cell.state == "orphan" and cell.counts["orphan"] >= 1
    assert cell.counts["granted"] < default.config.submissions  # the orphan never got its voucher


def test_publish_then_db_crash_after_publish_leaves_a_ghost(default):
    cell = default.cell(NAIVE_PUB, "api:after-publish")
    assert cell.state == "ghost" and cell.counts["ghost"] >= 1 and cell.counts["orphan"] == 0


def test_publish_then_db_with_the_db_down_leaves_ghosts(default):
    cell = default.cell(NAIVE_PUB, "db-down")
    assert cell.state == "ghost" and cell.counts["ghost"] > 10
    assert default.cell(NAIVE_DB, "db-down").counts["ghost"] == 0  # its save fails first: 503, no event


def test_a_crash_point_off_the_patterns_path_is_not_applicable(default):
    for pattern, column in [(NAIVE_DB, "api:after-publish"), (NAIVE_PUB, "api:after-save"),
                            (OUTBOX, "api:after-save"), (OUTBOX, "api:after-publish"),
                            (NAIVE_DB, "relay:after-publish"), (RECONCILE, "relay:after-publish")]:
        cell = default.cell(pattern, column)
        assert cell.state == "n/a" and not cell.reached and column in cell.reason
    for column in ("consumer:after-stock", "consumer:after-commit"):
        assert all(default.cell(p, column).reached for p in PATTERNS)  # every flow has a consumer


# --------------------------------------------------------------------------- outbox
def test_outbox_has_neither_ghosts_nor_orphans_under_any_fault(default):
    for column in COLUMNS:
        c = default.cell(OUTBOX, column).counts
        assert c["ghost"] == 0 and c["orphan"] == 0 and c["lost"] == 0, column
        assert c["double_granted"] == 0 and c["oversold"] == 0, column


def test_relay_crash_after_publish_is_one_duplicate_absorbed_by_dedupe(default):
    cell = default.cell(OUTBOX, "relay:after-publish")
    assert cell.state == "duplicate"
    assert cell.counts["absorbed"] == 1 and cell.counts["duplicated"] == 1  # only the row in flight
    assert cell.counts["double_granted"] == 0
    assert cell.counts["granted"] == default.config.submissions


def test_the_relay_lag_shows_the_restart(default):
    calm = max(lag for _, lag in default.lag["none"])
    crashed = max(lag for _, lag in default.lag["relay:after-publish"])
    assert len(default.lag["none"]) == default.config.submissions  # every row published once
    assert crashed >= calm + 0.5 * default.config.restart_after_s


# --------------------------------------------------------------------------- repairs
def test_reconciliation_re_sends_the_orphan(default):
    naive = default.cell(NAIVE_DB, "api:after-save")
    repaired = default.cell(RECONCILE, "api:after-save")
    assert naive.counts["orphan"] >= 1
    assert repaired.state == "ok" and repaired.counts["orphan"] == 0
    assert repaired.counts["resent"] == naive.counts["orphan"]
    assert repaired.counts["granted"] == default.config.submissions


def test_compensation_restores_the_stock_exactly_once(default):
    for column in ("db-down", "consumer:after-commit", "relay:after-publish"):
        cell = default.cell(COMPENSATION, column)
        assert cell.state == "restored", (column, cell.reason)
        assert cell.counts["compensations"] >= 1 and cell.stock["balance"] == 0, column
    down = default.cell(COMPENSATION, "db-down")
    assert down.stock["redis"] + down.stock["issued"] == down.stock["offered"]
    # a redelivered copy takes stock again and gives it back: one INCR per absorbed copy
    again = default.cell(COMPENSATION, "consumer:after-commit")
    assert again.counts["compensations"] == again.counts["absorbed"]


def test_a_crash_between_decrement_and_commit_leaks_one_voucher_with_plain_decr(default):
    # the process dies before its compensating INCR can run, and plain DECR records nothing
    # per message: the cell says so instead of hiding it
    cell = default.cell(COMPENSATION, "consumer:after-stock")
    assert cell.state == "leak" and cell.stock["balance"] == -1
    assert "hold" in cell.reason


def test_the_reservation_reuses_the_hold_and_leaks_nothing(default):
    # the same crashes with the Lua reservation: the repeat delivery finds its message's hold
    for column in ("consumer:after-stock", "consumer:after-commit", "relay:after-publish", "db-down"):
        cell = default.cell(RESERVATION, column)
        assert cell.state == "reused", (column, cell.reason)
        assert cell.counts["reused"] >= 1 and cell.counts["compensations"] == 0, column
        assert cell.stock["balance"] == 0, (column, cell.stock)
    assert default.cell(RESERVATION, "none").state == "conserved"
    assert default.cell(RESERVATION, "none").counts["reused"] == 0


def test_stock_is_conserved_in_every_other_reached_run(default):
    for cell in default.cells:
        if cell.reached and (cell.pattern, cell.column) != (COMPENSATION, "consumer:after-stock"):
            assert cell.stock["balance"] == 0, (cell.pattern, cell.column, cell.stock)


# --------------------------------------------------------------------------- the checker's ghost
def test_checker_ghost_needs_no_begun_save_in_a_run_that_saves():
    def op(i, t, type_, f, process, msg_id):
        return Op(i, t, type_, f, process, None, msg_id, None, None)

    saved = [op(0, 0.1, "invoke", "save", "server-1", "m1"), op(1, 0.2, "ok", "save", "server-1", "m1"),
             op(2, 0.3, "invoke", "enqueue", "server-1", "m1"), op(3, 0.4, "ok", "enqueue", "server-1", "m1")]
    ghost = [op(4, 0.5, "invoke", "enqueue", "server-2", "m2"), op(5, 0.6, "ok", "enqueue", "server-2", "m2"),
             op(6, 0.7, "info", "crash", "server-2", None)]
    result = check(saved + ghost)
    assert result.counts["ghost"] == 1 and result.counts["orphan"] == 0
    [anomaly] = [a for a in result.anomalies if a.kind == "ghost"]
    assert "server-2 crash" in anomaly.chain and anomaly.chain.endswith("never committed")
    # a run that writes no rows at all (the plain publish pattern) has no ghosts
    plain = [Op(o.index - 4, o.time, o.type, o.f, o.process, None, o.msg_id, None, None) for o in ghost]
    assert check(plain).counts["ghost"] == 0


def test_ghost_chain_in_a_world_run_names_the_crashed_server():
    crash = Fault(target="producer", point="api:after-publish", restart_after=1.0)
    result = run_flash_sale(FlashSaleConfig(seed=7, submissions=60, stock=100, arrival_rate=200.0,
                                            write_pattern="publish-then-db", faults=(crash,)))
    [ghost] = [a for a in result.checker.anomalies if a.kind == "ghost"]
    assert "server-" in ghost.chain and "crash" in ghost.chain


# --------------------------------------------------------------------------- determinism, output
SMALL = dict(submissions=40, patterns=("db-then-publish", "outbox"),
             columns=("none", "api:after-save", "relay:after-publish"))


def test_same_seed_same_result_and_json_ready():
    a, b = run_outbox(OutboxConfig(**SMALL)), run_outbox(SMALL)
    assert a.to_dict() == b.to_dict()
    text = json.dumps(a.to_dict(), sort_keys=True)
    assert json.loads(text)["matrix"] == {"db-then-publish": {"none": "ok", "api:after-save": "orphan",
                                                               "relay:after-publish": "n/a"},
                                          "outbox": {"none": "ok", "api:after-save": "n/a",
                                                     "relay:after-publish": "duplicate"}}
    d = a.to_dict()
    assert (d["scenario"], d["seed"]) == ("outbox", 7) and d["config"]["submissions"] == 40
    other = run_outbox({**SMALL, "seed": 8})
    assert [c.history_sha256 for c in other.cells] != [c.history_sha256 for c in a.cells]


def test_report_names_each_pattern_and_the_anomalies(default):
    text = default.report()
    for pattern in PATTERNS:
        assert pattern in text
    assert "orphan" in text and "ghost" in text and "leak" in text


@pytest.mark.parametrize("values, field", [
    ({"patterns": ("naive",)}, "patterns.0"),
    ({"columns": ("consumer:after-lunch",)}, "columns.0"),
    ({"columns": ()}, "columns"),
    ({"patterns": "outbox,outbox"}, "patterns"),
    ({"consumers": 0}, "consumers"),
    ({"submissions": 5}, "submissions"),
    ({"restart_after_s": float("nan")}, "restart_after_s"),
    ({"crash": "relay"}, "crash"),
])
def test_bad_config_is_an_input_error_naming_the_field(values, field):
    with pytest.raises(InputError) as err:
        make_config(**values)
    assert err.value.field == field
    with pytest.raises(InputError):
        run_outbox(values)


def test_cli_strings_become_tuples():
    from simulator.cli import _add_config_options, _config_from_args

    parser = argparse.ArgumentParser()
    _add_config_options(parser, OutboxConfig)
    args = parser.parse_args(["--patterns", "outbox,db-then-publish", "--columns", "none",
                              "--consumers", "2"])
    cfg = _config_from_args(OutboxConfig, args)
    assert cfg.patterns == ("outbox", "db-then-publish") and cfg.columns == ("none",) and cfg.consumers == 2


# --------------------------------------------------------------------------- plots
def test_crash_matrix_plot_has_a_coloured_cell_per_run(default):
    fig = plot_crash_matrix(default)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(PATTERNS)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(COLUMNS)
    assert len(ax.patches) == len(default.cells)
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("orphan") for t in texts) and any(t.startswith("ghost") for t in texts)
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {"ok", "orphan", "ghost", "duplicate", "n/a", "restored", "leak", "reused"} <= legend
    plt.close(fig)


def test_lag_plot_and_report_figure_render(default):
    fig = plot_outbox_lag(default)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "relay lag (s)"
    assert len(ax.collections) == len([v for v in default.lag.values() if v])
    assert {t.get_text() for t in ax.get_legend().get_texts()} == set(default.lag)
    plt.close(fig)
    fig = plot_outbox(default)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)
