"""The ``routing`` scenario (lesson 08, curriculum B8, D2-D4): each test checks one claim of the
lesson on a seeded run of the SimPy broker."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simulator.errors import InputError  # noqa: E402
from simulator.plots_routing import (plot_dead_letters, plot_priority_wait, plot_routing,  # noqa: E402
                                     plot_routing_table, plot_slow_subscriber)
from simulator.routing import Binding, route  # noqa: E402
from simulator.scenarios.routing import (FANOUT_QUEUES, OVERFLOW_MODES, SLOW_QUEUE, TOPOLOGY,  # noqa: E402
                                         RoutingConfig, make_config, run_routing)


@pytest.fixture(scope="module")
def default():
    return run_routing(RoutingConfig())


def _rows(result, kind: str) -> list[dict]:
    return [r for r in result.routing_table["rows"] if r["type"] == kind]


# --------------------------------------------------------------------------- B8, D2, D3: routing
def test_fanout_gives_each_subscriber_queue_its_own_copy(default):
    rows = _rows(default, "fanout")
    assert rows
    for row in rows:  # whatever the routing key says
        assert row["queues"] == list(FANOUT_QUEUES)
    # and in the fanout run every service handled every event once
    for run in default.slow_subscriber.values():
        for q in FANOUT_QUEUES:
            assert run["latency_ms"][q]["count"] == default.config.fanout_events
    # a direct exchange, by contrast, hands a key to its one bound queue
    direct = {r["routing_key"]: r["queues"] for r in _rows(default, "direct")}
    assert direct == {"survey.submitted": ["direct.submitted"], "survey.cancelled": ["direct.cancelled"],
                      "survey.amended": []}


# what the lesson says each pattern matches, written out by hand
TOPIC_EXPECTED = {
    "survey.submitted": {"topic.one-word", "topic.any-depth"},
    "survey.submitted.gift": {"topic.any-depth", "topic.gifts"},  # '*' is exactly one word
    "survey": {"topic.any-depth"},  # '#' may be zero words
    "order.gift": {"topic.gifts"},
    "gift": {"topic.gifts"},
}
HEADERS_EXPECTED = {
    (("region", "kr"), ("type", "gift")): {"headers.gift-kr", "headers.gift-or-vip"},  # all and any
    (("region", "us"), ("type", "gift")): {"headers.gift-or-vip"},  # any: one header is enough
    (("tier", "vip"),): {"headers.gift-or-vip"},
    (("region", "kr"), ("type", "survey")): set(),
}


@pytest.mark.parametrize("kind", ["topic", "headers", "direct", "x-consistent-hash"])
def test_table_rows_match_simulator_routing_route(default, kind):
    rows = _rows(default, kind)
    assert rows
    for row in rows:
        if kind == "x-consistent-hash":
            binds = [Binding(f"hash.shard-{i}", "2" if i == default.config.hash_shards - 1 else "1")
                     for i in range(default.config.hash_shards)]
        else:
            binds = [Binding(q, k, a) for q, k, a in TOPOLOGY[row["exchange"]][1]]
        assert set(row["queues"]) == set(route(kind, binds, row["routing_key"], row["headers"]))
        assert row["matches"] == 1
    assert default.metrics["table_mismatches"] == 0


def test_topic_and_headers_tables_say_what_the_lesson_says(default):
    assert {r["routing_key"]: set(r["queues"]) for r in _rows(default, "topic")} == TOPIC_EXPECTED
    got = {tuple(sorted(r["headers"].items())): set(r["queues"]) for r in _rows(default, "headers")}
    assert got == HEADERS_EXPECTED


def test_matrix_is_the_table(default):
    table = default.routing_table
    assert len(table["matrix"]) == len(table["rows"])
    for row, cells in zip(table["rows"], table["matrix"]):
        assert [q for q, c in zip(table["queues"], cells) if c] == row["queues"]


def test_consistent_hash_sticks_per_user_and_shares_by_weight(default):
    h = default.hash
    assert h["sticky_violations"] == 0
    assert h["users_seen"] > 0.95 * default.config.hash_users
    assert h["weights"] == [1, 1, 2]
    for got, want in zip(h["message_share"], h["weight_share"]):
        assert got == pytest.approx(want, abs=0.05)
    # user-1 published twice lands twice on the same shard
    user1 = [r["queues"] for r in _rows(default, "x-consistent-hash") if r["routing_key"] == "user-1"]
    assert len(user1) == 2 and user1[0] == user1[1] and len(user1[0]) == 1


# --------------------------------------------------------------------------- D4: priority
def test_priority_lets_high_messages_overtake_a_backlog(default):
    m = default.metrics
    assert m["priority_high_wait_mean_ms"] * 20 < m["priority_normal_wait_mean_ms"]
    assert m["priority_high_wait_p99_ms"] < default.priority["priority"]["normal"]["p50"]
    # on the same arrivals a queue without x-max-priority makes them wait like everyone else
    assert m["fifo_high_wait_mean_ms"] > 0.5 * m["fifo_normal_wait_mean_ms"]
    assert m["fifo_high_wait_mean_ms"] > 20 * m["priority_high_wait_mean_ms"]


def test_priority_does_nothing_for_messages_already_prefetched():
    # unlimited prefetch: the backlog sits in the consumer's buffer, where priority cannot reach
    m = run_routing(RoutingConfig(priority_prefetch=0)).metrics
    assert m["priority_high_wait_mean_ms"] > 0.5 * m["priority_normal_wait_mean_ms"]


# --------------------------------------------------------------------------- D4: TTL, DLX, max length
def test_dlq_reasons_counted_exactly(default):
    m, dlq, consumer = default.metrics, default.dlq_ids, default.consumer_ids
    assert m["dlq_rejected"] > 0 and m["dlq_expired"] > 0 and m["dlq_maxlen"] > 0
    # every reason counted against an independent tally
    assert set(dlq["rejected"]) == set(consumer["rejected"]) and m["dlq_rejected"] == m["consumer_rejected"]
    assert m["dlq_expired"] == m["broker_expired"]
    assert m["dlq_maxlen"] == m["broker_maxlen_dropped"]
    # and every message is in exactly one place: processed or in the DLQ under one reason
    places = consumer["processed"] + dlq["rejected"] + dlq["expired"] + dlq["maxlen"]
    assert len(places) == len(set(places)) == m["dl_published"]


def test_dlq_all_rejected_and_all_dropped_for_length():
    m = run_routing(RoutingConfig(reject_rate=1.0, max_length=1_000_000, ttl_ms=86_400_000)).metrics
    assert (m["dlq_rejected"], m["dlq_expired"], m["dlq_maxlen"], m["dl_processed"]) == (1500, 0, 0, 0)
    m = run_routing(RoutingConfig(max_length=0)).metrics
    assert (m["dlq_rejected"], m["dlq_expired"], m["dlq_maxlen"], m["dl_processed"]) == (0, 0, 1500, 0)


def test_drop_head_loses_the_oldest_silently_reject_publish_nacks_the_newest(default):
    n, limit = default.config.overflow_messages, default.config.overflow_max_length
    drop, reject = (default.overflow[mode] for mode in OVERFLOW_MODES)
    # drop-head: the publisher is told yes every time; the oldest are gone (to the DLQ)
    assert drop["confirmed"] == n and drop["nacked"] == 0
    assert (drop["kept_first"], drop["kept_last"]) == (n - limit, n - 1)
    assert drop["dead_lettered_maxlen"] == n - limit
    # reject-publish: the queue keeps the oldest and says no to the rest
    assert reject["confirmed"] == limit and reject["nacked"] == n - limit
    assert (reject["kept_first"], reject["kept_last"]) == (0, limit - 1)
    assert reject["dead_lettered_maxlen"] == 0


# --------------------------------------------------------------------------- B8: slow subscriber
def test_a_slow_subscriber_does_not_slow_the_others(default):
    base, slow = default.slow_subscriber["baseline"], default.slow_subscriber["slow"]
    assert slow["max_depth"][SLOW_QUEUE] > 100 and base["max_depth"][SLOW_QUEUE] < 20
    assert slow["latency_ms"][SLOW_QUEUE]["p99"] > 10 * base["latency_ms"][SLOW_QUEUE]["p99"]
    for q in FANOUT_QUEUES:
        if q == SLOW_QUEUE:
            continue
        for stat in ("mean", "p99"):
            assert slow["latency_ms"][q][stat] == pytest.approx(base["latency_ms"][q][stat], rel=0.10)
        assert slow["max_depth"][q] < 20
    assert default.metrics["others_latency_change"] <= 0.10


# --------------------------------------------------------------------------- result shape
def test_same_seed_same_dict_other_seed_differs(default):
    again = run_routing(RoutingConfig()).to_dict()
    assert again == default.to_dict()
    assert json.loads(json.dumps(again)) == again
    other = run_routing(RoutingConfig(seed=8)).to_dict()
    assert other["metrics"] != again["metrics"]
    assert set(again) >= {"scenario", "seed", "config", "metrics"} and again["scenario"] == "routing"


def test_metrics_are_all_numbers(default):
    for key, value in default.metrics.items():
        assert isinstance(value, int | float) and not isinstance(value, bool), key


def test_report_names_each_lesson(default):
    text = default.report()
    for phrase in ("which queues get each message", "consistent hash", "priority", "DLQ", "drop-head",
                   "reject-publish", "fanout stock"):
        assert phrase in text


@pytest.mark.parametrize("values, field", [
    ({"ttl_ms": -1}, "ttl_ms"), ({"high_share": 0.9}, "high_share"), ({"hash_shards": 1}, "hash_shards"),
    ({"fanout_rate": float("inf")}, "fanout_rate"), ({"reject_rate": 1.5}, "reject_rate"),
    ({"no_such_knob": 1}, "no_such_knob"),
])
def test_bad_config_raises_input_error_naming_the_field(values, field):
    with pytest.raises(InputError) as err:
        make_config(**values)
    assert field in str(err.value)
    with pytest.raises(InputError):
        run_routing(values)


# --------------------------------------------------------------------------- plots
def _lines(ax) -> int:
    return len(ax.get_lines())


def test_plots_render_with_labels_and_series(default):
    fig = plot_routing_table(default)
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("queue", "published message")
    table = default.routing_table
    assert ax.images[0].get_array().shape == (len(table["rows"]), len(table["queues"]))
    assert [t.get_text() for t in ax.get_xticklabels()] == table["queues"]

    fig2 = plot_priority_wait(default)
    ax = fig2.axes[0]
    assert ax.get_ylabel() == "wait before delivery (ms)"
    assert len(ax.patches) == 8 and len(ax.get_legend().get_texts()) == 4  # 2 classes x 2 stats x 2 setups

    fig3 = plot_dead_letters(default)
    ax = fig3.axes[0]
    assert ax.get_xlabel() == "dead-letter reason" and len(ax.patches) == 6
    assert [p.get_height() for p in ax.patches[:3]] == [default.metrics[f"dlq_{r}"]
                                                        for r in ("rejected", "expired", "maxlen")]

    fig4 = plot_slow_subscriber(default)
    ax = fig4.axes[0]
    assert ax.get_xlabel() == "simulated time (s)" and ax.get_ylabel() == "ready messages in queue"
    assert _lines(ax) == len(FANOUT_QUEUES)

    fig5, axes = plt.subplots(1, 2)
    assert plot_slow_subscriber(default, ax=axes[1]) is fig5 and _lines(axes[1]) == 3
    combined = plot_routing(default)
    assert isinstance(combined, Figure) and len(combined.axes) == 4
    for f in (fig, fig2, fig3, fig4, fig5, combined):
        plt.close(f)
