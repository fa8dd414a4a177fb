"""The ``stock`` scenario (lesson 03, curriculum B5-B7, reference §3 invariants 3, 4, 20): each
test checks one claim of the lesson on a seeded run."""

from __future__ import annotations

import argparse
import io
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simulator.errors import InputError  # noqa: E402
from simulator.plots_stock import (plot_lock_wait, plot_oversell, plot_redis_ceiling,  # noqa: E402
                                   plot_stock_lesson, plot_ttl)
from simulator.scenarios.stock import (ATOMIC, READ_THEN_WRITE, STRATEGIES, StockConfig,  # noqa: E402
                                       make_config, run_stock)


@pytest.fixture(scope="module")
def default():
    return run_stock()


# --------------------------------------------------------------------------- B5: oversell
def test_read_then_write_oversells_with_concurrency_only(default):
    for strategy in READ_THEN_WRITE:
        assert default.point(strategy, 1).oversold == 0, strategy  # one consumer: no race
        for n in (4, 16):
            assert default.point(strategy, n).oversold > 0, (strategy, n)
    # the DB variant loses whole transactions of updates: past the safety stock, past the stock
    assert default.point("db-read-then-write", 16).oversold_physical > 0


def test_atomic_strategies_never_oversell_and_hold_the_safety_stock_back(default):
    cfg = default.config
    for strategy in ATOMIC:
        for n in cfg.consumer_levels:
            p = default.point(strategy, n)
            assert p.oversold == 0 and p.oversold_physical == 0, (strategy, n)
            assert p.granted == cfg.offered and p.held_back == cfg.safety_stock, (strategy, n)


def test_lua_never_goes_below_zero_decr_does(default):
    for n in default.config.consumer_levels:
        assert default.point("redis-lua", n).redis_final == 0
        assert default.point("redis-decr", n).redis_final < 0  # refusals still decrement
        assert default.point("db-update", n).redis_final is None  # the Redis key is not used


def test_db_update_lock_wait_grows_with_consumers(default):
    waits = [default.point("db-update", n) for n in default.config.consumer_levels]
    assert waits[0].lock_wait_s == 0  # one consumer never meets a holder
    assert waits[0].lock_wait_s < waits[1].lock_wait_s < waits[2].lock_wait_s
    assert waits[0].lock_share < waits[1].lock_share < waits[2].lock_share
    assert waits[-1].lock_share > 0.3  # at 16 consumers, waiting is a big share of handling
    for strategy in ("redis-decr", "redis-lua"):
        assert all(default.point(strategy, n).lock_wait_s == 0 for n in default.config.consumer_levels)


def test_safety_stock_is_what_is_left_with_an_atomic_strategy():
    for held in (0, 35):
        cfg = StockConfig(strategies=("redis-lua",), consumer_levels=(4,), safety_stock=held,
                          event_ttl_s=None, redis_clients=(1,), submissions=300)
        point = run_stock(cfg).point("redis-lua", 4)
        assert point.held_back == held and point.granted == cfg.stock - held


# --------------------------------------------------------------------------- B6
def test_redis_single_thread_ceiling(default):
    bench = default.bench
    ceiling = bench[0].ceiling_per_s
    assert ceiling == pytest.approx(20_000)  # 1 / 50 µs
    rates = [b.commands_per_s for b in bench]
    assert rates == sorted(rates) or max(rates) - rates[-1] < 0.01 * ceiling
    top = bench[-1]
    assert top.commands_per_s == pytest.approx(ceiling, rel=0.05) and top.commands_per_s <= ceiling * 1.02
    assert top.utilisation > 0.95
    # one client waits a whole round trip per command: far below the ceiling
    assert bench[0].commands_per_s == pytest.approx(bench[0].predicted_per_s, rel=0.1)
    assert bench[0].commands_per_s < 0.3 * ceiling


def test_ttl_ends_the_event_on_time_with_decr_and_lua(default):
    ttl = default.config.event_ttl_s
    for strategy in ("redis-decr", "redis-lua"):
        run = default.ttl_run(strategy)
        assert run.late == 0 and run.ends_on_time, strategy
        assert run.last_take_s <= ttl + 0.005
        assert 0 < run.granted < default.config.submissions  # demand remained: the TTL ended it


def test_set_clears_the_ttl_and_the_db_ignores_it(default):
    get_set = default.ttl_run("redis-get-set")
    assert get_set.late > 0 and not get_set.ends_on_time and "clears its TTL" in get_set.why
    for strategy in ("db-update", "db-read-then-write"):
        run = default.ttl_run(strategy)
        assert run.late > 0 and "DB row" in run.why


# --------------------------------------------------------------------------- determinism, output
SMALL = dict(submissions=150, stock=60, safety_stock=6, strategies=("redis-get-set", "db-update"),
             consumer_levels=(1, 8), redis_clients=(1, 8), redis_bench_s=0.05)


def test_same_seed_same_result_and_json_ready():
    a, b = run_stock(StockConfig(**SMALL)), run_stock(SMALL)
    assert a.to_dict() == b.to_dict()
    d = json.loads(json.dumps(a.to_dict(), sort_keys=True))
    assert (d["scenario"], d["seed"]) == ("stock", 7)
    assert d["config"]["consumer_levels"] == [1, 8] and len(d["grid"]) == 4 and len(d["ttl"]) == 2
    assert set(d["metrics"]["oversold"]) == {"redis-get-set", "db-update"}
    other = run_stock({**SMALL, "seed": 8})
    assert [p.history_sha256 for p in other.grid] != [p.history_sha256 for p in a.grid]


def test_report_lists_every_strategy(default):
    text = default.report()
    for strategy in STRATEGIES:
        assert strategy in text
    assert "Redis ceiling" in text and "after the TTL" in text


@pytest.mark.parametrize("values, field", [
    ({"strategies": ("redis-incr",)}, "strategies.0"),
    ({"strategies": ()}, "strategies"),
    ({"consumer_levels": (0, 4)}, "consumer_levels"),
    ({"consumer_levels": "1,x"}, "consumer_levels.1"),
    ({"safety_stock": 500}, "safety_stock"),
    ({"event_ttl_s": 0}, "event_ttl_s"),
    ({"redis_clients": (4, 4)}, "redis_clients"),
    ({"consumers": 4}, "consumers"),
])
def test_bad_config_is_an_input_error_naming_the_field(values, field):
    with pytest.raises(InputError) as err:
        make_config(**values)
    assert err.value.field == field
    with pytest.raises(InputError):
        run_stock(values)


def test_cli_strings_become_tuples_and_none():
    from simulator.cli import _add_config_options, _config_from_args

    parser = argparse.ArgumentParser()
    _add_config_options(parser, StockConfig)
    args = parser.parse_args(["--strategies", "redis-lua,db-update", "--consumer-levels", "16,1",
                              "--event-ttl-s", "none"])
    cfg = _config_from_args(StockConfig, args)
    assert cfg.strategies == ("redis-lua", "db-update") and cfg.consumer_levels == (1, 16)
    assert cfg.event_ttl_s is None


# --------------------------------------------------------------------------- plots
def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_oversell_plot(default):
    fig = plot_oversell(default)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "granted beyond the offer"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(STRATEGIES)
    assert len(ax.containers) == len(default.config.consumer_levels)
    heights = [bar.get_height() for bar in ax.containers[-1]]  # the 16-consumer bars
    assert heights == [default.point(s, 16).oversold for s in STRATEGIES]
    assert "16 consumers" in _legend(ax) and any("safety stock" in t for t in _legend(ax))
    plt.close(fig)


def test_lock_wait_plot(default):
    fig = plot_lock_wait(default)
    ax = fig.axes[0]
    assert _legend(ax) == list(STRATEGIES) and ax.get_xlabel() == "consumers"
    db_update = ax.get_lines()[STRATEGIES.index("db-update")]
    assert list(db_update.get_xdata()) == [1, 4, 16]
    assert list(db_update.get_ydata()) == [100 * default.point("db-update", n).lock_share for n in (1, 4, 16)]
    plt.close(fig)


def test_ttl_and_ceiling_plots_and_the_report_figure(default):
    fig = plot_ttl(default)
    ax = fig.axes[0]
    assert _legend(ax) == [*STRATEGIES, "TTL expires"]
    lua = ax.get_lines()[STRATEGIES.index("redis-lua")]
    assert max(lua.get_xdata()) <= default.config.event_ttl_s + 0.005
    plt.close(fig)
    fig = plot_redis_ceiling(default)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "commands/s" and "1 / command_time" in _legend(ax)
    assert list(ax.get_lines()[0].get_xdata()) == list(default.config.redis_clients)
    plt.close(fig)
    fig = plot_stock_lesson(default)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)
