"""The topology diagram: every component labelled, the queue depth read from the series at t."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from simulator.config import FlashSaleConfig
from simulator.errors import InputError
from simulator.plots_topology import COMPONENTS, plot_topology
from simulator.scenarios.flash_sale import run_flash_sale
from simulator.sim.world import World


@pytest.fixture(scope="module")
def run():
    # a slow gateway so the queue stays deep for a while
    return run_flash_sale(FlashSaleConfig(seed=5, submissions=400, stock=120, arrival_rate=800.0,
                                          gateway_latency_ms=100.0))


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def _depth_shown(fig) -> int:
    shown = [t for t in _texts(fig) if t.startswith("depth ")]
    assert len(shown) == 1
    return int(shown[0].split()[1])


def test_every_component_is_labelled(run):
    fig = plot_topology(run)
    texts = _texts(fig)
    for label in COMPONENTS:
        assert label in texts, label
    assert "x2" in texts and "x4" in texts  # two servers, four consumers by default
    plt.close(fig)


@pytest.mark.parametrize("pick", [0.3, 0.5, 1.0, 2.0])
def test_depth_matches_the_series_at_t(run, pick):
    t, depth = run.series["t"], run.series["queue_depth"]
    at = t[-1] * pick if pick <= 1 else t[-1] + 10  # past the end: the last sample
    i = max(k for k in range(len(t)) if t[k] <= at)
    fig = plot_topology(run, t=at)
    assert _depth_shown(fig) == int(depth[i])
    assert f"unacked {int(run.series['unacked'][i])}" in _texts(fig)
    plt.close(fig)


def test_default_time_is_the_peak(run):
    fig = plot_topology(run)
    peak = int(max(run.series["queue_depth"]))
    assert peak > 50 and _depth_shown(fig) == peak
    plt.close(fig)


def test_a_live_world_shows_its_broker_now():
    world = World(FlashSaleConfig(seed=2, submissions=300, stock=100, arrival_rate=600.0,
                                  gateway_latency_ms=100.0))
    world.env.run(until=0.4)
    depth = world.broker.depth("gift.submissions")
    assert depth > 0
    fig, ax = plt.subplots()
    assert plot_topology(world, ax=ax) is fig
    assert _depth_shown(fig) == depth
    plt.close(fig)


def test_a_sync_snapshot_marks_the_queue_unused():
    fig = plot_topology({"queue_depth": 0, "servers": 3, "consumers": 0, "mode": "sync", "t": 1.5})
    texts = _texts(fig)
    assert "unused (sync)" in texts and "x3" in texts and _depth_shown(fig) == 0
    assert "t = 1.50 s" in fig.axes[0].get_title()
    plt.close(fig)


def test_sync_async_result_is_drawn_from_its_async_series():
    from simulator.scenarios.sync_async import run_sync_async

    result = run_sync_async(dict(submissions=200, stock=50, sweep_consumers=(1,), sweep_submissions=20,
                                 login_rate=20.0))
    fig = plot_topology(result, t=0.5)
    i = max(k for k, v in enumerate(result.series["t"]) if v <= 0.5)
    assert _depth_shown(fig) == int(result.async_.series["queue_depth"][i])
    plt.close(fig)


@pytest.mark.parametrize("source", [object(), {"servers": 2}])
def test_unusable_source_is_an_input_error(source):
    with pytest.raises(InputError) as err:
        plot_topology(source)
    assert err.value.field == "source"
