"""The ``ordering`` scenario (lesson 06, curriculum C4, D5): each test checks one claim of the
lesson on a seeded run; inversions are always the checker's count."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import simpy  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simulator.errors import InputError  # noqa: E402
from simulator.plots_ordering import (plot_inversions, plot_ordering, plot_partition_skew,  # noqa: E402
                                      plot_throughput)
from simulator.scenarios.ordering import (HOT_KEY, VARIANTS, OrderingConfig, make_config,  # noqa: E402
                                          make_events, run_ordering)
from simulator.sim.partitioned_log import PartitionedLog, partition_for  # noqa: E402

COMPETING, HASHED, LOG = VARIANTS


@pytest.fixture(scope="module")
def default():
    return run_ordering(OrderingConfig())


@pytest.fixture(scope="module")
def hot():
    return run_ordering(OrderingConfig(hot_key_share=0.6))


def _v(result, name: str) -> dict:
    return result.metrics["variants"][name]


# --------------------------------------------------------------------------- C4: inversions
def test_competing_consumers_reorder_partitioning_does_not(default):
    assert _v(default, COMPETING)["inversions"] > 0
    assert _v(default, HASHED)["inversions"] == 0
    assert _v(default, LOG)["inversions"] == 0
    for name in VARIANTS:  # nothing lost or done twice: only the order differs
        v = _v(default, name)
        assert v["processed"] == default.metrics["events"] and v["lost"] == 0 and v["duplicated"] == 0


def test_requeue_alone_reorders_competing_consumers():
    # prefetch 1 and equal handler times: consumers finish in delivery order ...
    calm = run_ordering(OrderingConfig(prefetch=1, handler_jitter=0, requeue_rate=0))
    assert _v(calm, COMPETING)["inversions"] == 0
    # ... until a nack-requeue lets the next event of the same user overtake
    requeued = run_ordering(OrderingConfig(prefetch=1, handler_jitter=0, requeue_rate=0.2))
    assert _v(requeued, COMPETING)["inversions"] > 0
    assert _v(requeued, HASHED)["inversions"] == 0 and _v(requeued, LOG)["inversions"] == 0


def test_partition_queue_with_a_wide_prefetch_reorders_on_requeue():
    # why partition_prefetch defaults to 1: a requeued message is overtaken by those behind it
    r = run_ordering(OrderingConfig(partition_prefetch=10, requeue_rate=0.3))
    assert _v(r, HASHED)["inversions"] > 0
    assert _v(r, LOG)["inversions"] == 0  # the log retries in place


def test_checker_examples_name_an_inversion(default):
    chain = default.examples[COMPETING][0]
    assert "processed after seq" in chain
    assert default.examples[HASHED] == [] and default.examples[LOG] == []


# --------------------------------------------------------------------------- D5: the log
def test_log_replay_from_offset_zero_gives_the_identical_order(default):
    cfg, log = default.config, default.log
    assert _v(default, LOG)["replay_identical"] == 1 and _v(default, LOG)["replay_inversions"] == 0
    processed = default.processed_order[LOG]
    for p in range(cfg.partitions):
        replayed = [f"{r.key}#{r.value.seq}" for r in log.replay(p, 0)]
        assert replayed == [m for m in processed if partition_for(m.split("#")[0], cfg.partitions) == p]
        assert [r.offset for r in log.replay(p, 0)] == list(range(len(replayed)))
        assert log.committed("survey-handlers", p) == len(replayed)
    # per key, the replay is the publish order
    seqs: dict[str, list[int]] = {}
    for p in range(cfg.partitions):
        for r in log.replay(p):
            seqs.setdefault(r.key, []).append(r.value.seq)
    assert all(s == list(range(len(s))) for s in seqs.values())


def test_log_fetch_waits_for_appends_and_never_reorders():
    env = simpy.Environment()
    log = PartitionedLog(env, 3)
    got = []

    def reader():
        offset = 0
        while offset < 4:
            batch = yield log.fetch(partition_for("k", 3), offset)
            got.extend(r.value for r in batch)
            offset = batch[-1].offset + 1

    env.process(reader())
    for i in range(4):
        env.timeout(0.01 * (i + 1)).callbacks.append(lambda _e, i=i: log.append("k", i))
    env.run()
    assert got == [0, 1, 2, 3]
    assert sum(log.loads()) == 4 and max(log.loads()) == 4


# --------------------------------------------------------------------------- hot keys
def test_hot_key_skews_partitions_and_costs_throughput(hot):
    assert hot.metrics["hot_key_events"] > 0
    assert _v(hot, HASHED)["skew"] > 2 and _v(hot, LOG)["skew"] > 2
    assert _v(hot, COMPETING)["skew"] < 1.2  # competing consumers share the hot key's events
    assert _v(hot, HASHED)["throughput_eps"] < 0.7 * _v(hot, COMPETING)["throughput_eps"]
    assert _v(hot, HASHED)["p99_delay_ms"] > 10 * _v(hot, COMPETING)["p99_delay_ms"]
    assert _v(hot, HASHED)["inversions"] == 0 and _v(hot, COMPETING)["inversions"] > 0


def test_hot_key_share_is_what_was_asked():
    cfg = OrderingConfig(hot_key_share=0.5, users=100)
    events = make_events(cfg)
    assert sum(e.key == HOT_KEY for e in events) == pytest.approx(len(events) / 2, abs=1)
    assert [e.kind for e in events if e.key == "user-3"] == ["submit", "amend", "cancel"]


# --------------------------------------------------------------------------- common random numbers
def test_all_variants_see_the_same_arrivals(default):
    events = make_events(default.config)
    # the design knobs do not touch the arrivals or the per-event draws
    assert make_events(OrderingConfig(consumers=9, partitions=7, prefetch=1, partition_prefetch=3)) == events
    assert [e.time for e in events] == sorted(e.time for e in events)
    retries = {_v(default, name)["retries"] for name in VARIANTS}
    assert len(retries) == 1 and retries.pop() == sum(e.failures for e in events)


def test_same_seed_same_dict_other_seed_differs(default):
    again = run_ordering(OrderingConfig()).to_dict()
    assert again == default.to_dict()
    assert json.loads(json.dumps(again)) == again
    assert again["scenario"] == "ordering" and again["seed"] == 7
    other = run_ordering(OrderingConfig(seed=8)).to_dict()
    assert other["metrics"] != again["metrics"] and other["histories"] != again["histories"]


def test_report_has_one_column_per_design(default):
    text = default.report()
    assert all(name in text for name in VARIANTS)
    assert "replay of the log from offset 0: same order" in text


@pytest.mark.parametrize("values, field", [
    ({"requeue_rate": 1.0}, "requeue_rate"), ({"partitions": 0}, "partitions"),
    ({"hot_key_share": 0.95}, "hot_key_share"), ({"arrival_rate": float("nan")}, "arrival_rate"),
    ({"users": 0}, "users"), ({"consumers": "many"}, "consumers"), ({"bogus": 1}, "bogus"),
    ({"users": 1_000_000, "events_per_user": 1000}, "users"),
])
def test_bad_config_raises_input_error_naming_the_field(values, field):
    with pytest.raises(InputError) as err:
        make_config(**values)
    assert field in str(err.value)
    with pytest.raises(InputError):
        run_ordering(values)


# --------------------------------------------------------------------------- plots
def test_plots_render_with_labels_and_series(hot):
    fig = plot_inversions(hot)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "per-key inversions" and len(ax.patches) == len(VARIANTS)
    assert [p.get_height() for p in ax.patches] == [_v(hot, n)["inversions"] for n in VARIANTS]

    fig2 = plot_partition_skew(hot)
    ax = fig2.axes[0]
    assert ax.get_xlabel() == "consumer or partition" and ax.get_ylabel() == "events handled"
    assert len(ax.containers) == len(VARIANTS) and len(ax.get_legend().get_texts()) == len(VARIANTS)

    fig3, axes = plt.subplots(1, 2)
    assert plot_throughput(hot, ax=axes[0]) is fig3
    assert axes[0].get_ylabel() == "throughput (events/s)" and len(axes[0].patches) == len(VARIANTS)

    combined = plot_ordering(hot)
    assert isinstance(combined, Figure) and len(combined.axes) == 3
    for f in (fig, fig2, fig3, combined):
        plt.close(f)
