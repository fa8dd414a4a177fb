"""Sync vs async handling of the gift event (lesson 02): the claims, theory beside simulation,
login traffic on a shared vs dedicated database, determinism and config errors."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest

from simulator.config import FlashSaleConfig
from simulator.errors import InputError
from simulator.scenarios.flash_sale import run_flash_sale
from simulator.scenarios.sync_async import (SyncAsyncConfig, make_config, run_sync_async, run_world)

SMALL = dict(submissions=300, stock=80, sweep_consumers=(1, 2), sweep_submissions=40, login_rate=50.0)


@pytest.fixture(scope="module")
def result():
    return run_sync_async()  # the defaults: spike from 2000/s, SMS gateway 200 ms


def test_sync_p99_is_over_five_times_the_async_p99_under_the_spike(result):
    sync, asyn = result.sync.metrics["response_ms"], result.async_.metrics["response_ms"]
    assert sync["count"] == asyn["count"] == result.config.submissions
    assert sync["p99"] > 5 * asyn["p99"]
    assert sync["p99"] > 300 and asyn["p99"] < 50  # hundreds of ms against tens
    assert result.claims["sync_p99_over_5x_async"]


def test_the_voucher_itself_comes_later_in_async(result):
    # the work left the request path; it did not vanish
    assert result.async_.metrics["time_to_voucher_s"]["p99"] > result.sync.metrics["time_to_voucher_s"]["p99"]
    for run in result.variants.values():
        assert run.metrics["vouchers_granted"] == result.config.stock
        assert run.metrics["checker_valid"]


def test_sync_saturates_the_db_pool_and_async_does_not(result):
    sync, asyn = result.sync.metrics["db_pool"], result.async_.metrics["db_pool"]
    assert sync["max_waiting"] > result.config.db_pool
    assert sync["wait_time_s"] > 1.0
    assert asyn["max_waiting"] < sync["max_waiting"] and asyn["wait_time_s"] < 0.1 * sync["wait_time_s"]


def test_logins_suffer_on_a_shared_db_and_not_on_a_dedicated_one(result):
    shared = result.variants["sync/shared"].metrics["login_ms"]
    dedicated = result.variants["sync/dedicated"].metrics["login_ms"]
    assert shared["count"] > 100 and dedicated["count"] > 100
    assert shared["p99"] > 2 * dedicated["p99"]
    assert result.claims["login_worse_on_shared_db"]
    # async paces the DB: logins on the shared DB stay close to the isolated ones
    assert result.variants["async/shared"].metrics["login_ms"]["p99"] < 0.5 * shared["p99"]


def test_async_queue_rises_then_drains_to_zero(result):
    m, s = result.async_.metrics, result.async_.series
    assert m["peak_queue_depth"] > result.config.submissions // 2
    assert s["queue_depth"][-1] == 0 and m["final_queue_depth"] == 0
    assert m["peak_at_s"] < m["drain_s"]
    assert result.sync.metrics["peak_queue_depth"] == 0  # the sync path never touches the queue
    assert result.claims["queue_rises_then_drains"]


def test_throughput_grows_with_consumers_then_flattens_at_the_rate_limit(result):
    tput = [row["throughput_per_s"] for row in result.sweep]
    assert tput[1] > 1.6 * tput[0] and tput[2] > 1.6 * tput[1]
    assert tput[-1] < 1.15 * tput[-2]
    assert max(tput) <= 1.02 * result.config.sweep_rate_limit
    assert result.sweep[-1]["bottleneck"] == "SMS rate limit"
    for row in result.sweep[:3]:  # consumer-bound: c / S predicts it
        assert row["bottleneck"] == "consumers"
        assert abs(row["throughput_per_s"] - row["predicted_per_s"]) < 0.15 * row["predicted_per_s"]
    assert result.claims["throughput_grows_then_flattens"]


def test_theory_beside_the_simulation(result):
    a, m = result.analytic, result.async_.metrics
    assert a["async_consumer_utilisation"] > 1  # why a backlog forms at all
    assert abs(m["drain_s"] - a["async_drain_s"]) < 0.1 * a["async_drain_s"]
    login = result.variants["sync/dedicated"].metrics["login_ms"]["mean"]
    assert abs(login - a["login_dedicated_mean_ms"]) < 0.15 * a["login_dedicated_mean_ms"]
    little = m["little"]
    assert abs(little["L_time_avg"] - little["lambda_W"]) < 0.05 * little["lambda_W"]
    assert result.claims["littles_law_holds"]


def test_result_serialises_and_reports(result):
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["scenario"] == "sync-vs-async"
    assert set(doc["variants"]) == {"sync/shared", "sync/dedicated", "async/shared", "async/dedicated"}
    text = result.report()
    assert "response p99" in text and "Little's law" in text


def test_plots_draw(result):
    from simulator.plots_sync import (plot_consumers_scaling, plot_login_impact, plot_queue_drain,
                                      plot_response, plot_sync_async)

    for plot in (plot_response, plot_queue_drain, plot_login_impact, plot_consumers_scaling):
        fig = plot(result)
        assert fig.axes and fig.axes[0].has_data()
        plt.close(fig)
    fig, ax = plt.subplots()
    assert plot_response(result, ax=ax) is fig
    plt.close(fig)
    plt.close(plot_sync_async(result))


def test_same_seed_same_result_other_seed_differs():
    a, b = run_sync_async(SMALL), run_sync_async(SyncAsyncConfig(**SMALL))
    assert a.to_dict() == b.to_dict()
    other = run_sync_async({**SMALL, "seed": 8})
    assert (other.sync.metrics["history_sha256"] != a.sync.metrics["history_sha256"])


# ----------------------------------------------------------------------- the world's login traffic

def test_no_logins_leaves_the_flash_sale_unchanged():
    base = dict(submissions=200, stock=60, seed=3)
    plain = run_flash_sale(FlashSaleConfig(**base))
    dedicated = run_flash_sale(FlashSaleConfig(event_db="dedicated", **base))
    assert dedicated.history_sha256 == plain.history_sha256
    assert dedicated.metrics == plain.metrics


def test_a_dedicated_db_isolates_the_event_from_logins():
    base = dict(submissions=200, stock=60, seed=3, mode="sync", arrival_rate=1000.0)
    alone = run_world(FlashSaleConfig(**base))
    isolated = run_world(FlashSaleConfig(login_rate=300.0, event_db="dedicated", **base))
    shared = run_world(FlashSaleConfig(login_rate=300.0, event_db="shared", **base))
    assert isolated.history.sha256() == alone.history.sha256()  # not one event step moved
    assert shared.history.sha256() != alone.history.sha256()    # logins took connections
    assert alone.login_ms.count == 0
    assert isolated.login_ms.count > 50 and shared.login_ms.count > 50
    assert isolated.login_db is not isolated.db and shared.login_db is shared.db


# ----------------------------------------------------------------------- bad input

@pytest.mark.parametrize("values, field", [
    ({"sweep_consumers": (4, 2)}, "sweep_consumers"),
    ({"sweep_consumers": ()}, "sweep_consumers"),
    ({"login_rate": -1}, "login_rate"),
    ({"arrival_rate": 0}, "arrival_rate"),
    ({"submissions": "many"}, "submissions"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_config_is_an_input_error_naming_the_field(values, field):
    with pytest.raises(InputError) as err:
        make_config(**values)
    assert err.value.field == field
    with pytest.raises(InputError) as err:
        run_sync_async(values)
    assert err.value.field == field


def test_sweep_consumers_accepts_the_cli_spelling():
    assert make_config(sweep_consumers="1, 3,9").sweep_consumers == (1, 3, 9)


def test_flash_sale_config_checks_the_new_fields():
    from simulator.config_errors import input_error_from
    import pydantic

    for values, field in (({"login_rate": -0.5}, "login_rate"), ({"event_db": "separate"}, "event_db")):
        with pytest.raises(pydantic.ValidationError) as err:
            FlashSaleConfig(**values)
        assert input_error_from(err.value).field == field


def test_cli_runs_the_scenario(capsys, monkeypatch):
    from simulator.cli import main
    from simulator.scenarios.registry import SCENARIOS, Scenario

    monkeypatch.setitem(SCENARIOS, "sync-vs-async", SCENARIOS.get("sync-vs-async") or Scenario(
        "sync-vs-async", "sync vs async", "simulator.scenarios.sync_async",
        "simulator.scenarios.sync_async:SyncAsyncConfig", "simulator.scenarios.sync_async:run_sync_async",
        "simulator.plots_sync:plot_sync_async"))
    code = main(["run", "sync-vs-async", "--submissions", "200", "--stock", "50", "--sweep-consumers",
                 "1,2", "--sweep-submissions", "30", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    doc = json.loads(out)
    assert doc["config"]["sweep_consumers"] == [1, 2] and len(doc["sweep"]) == 2
    assert main(["run", "sync-vs-async", "--sweep-consumers", "3,1"]) == 2
    assert "sweep-consumers" in capsys.readouterr().err
