"""Lesson 06: ordering (처리 순서 보장) - curriculum C4 and D5."""

from __future__ import annotations

from typing import Any, Mapping

from simulator.lessons import cells as c
from simulator.lessons.claims import assert_claims
from simulator.lessons.panel import Panel, build_panel, dropdown, float_slider, slider
from simulator.lessons.table import lesson

LESSON = lesson(6)
DESIGNS = ("competing-consumers", "consistent-hash", "partitioned-log")
SHORT = {"competing-consumers": "competing", "consistent-hash": "hash queues", "partitioned-log": "log"}


def available() -> tuple[bool, str]:
    return True, ""


def run(seed: int, **knobs: Any) -> Any:
    from simulator.scenarios.ordering import make_config, run_ordering

    return run_ordering(make_config(seed=seed, **knobs))


def table(result: Any) -> str:
    """Inversions, throughput, p99 delay and skew per design, one line each."""
    v = result.metrics["variants"]
    lines = [f"{result.metrics['events']} events published in order per user",
             f"{'design':<20}{'inversions':>11}{'events/s':>10}{'p99 ms':>9}{'skew':>7}"]
    for name in DESIGNS:
        m = v[name]
        lines.append(f"{name:<20}{m['inversions']:>11d}{m['throughput_eps']:>10.1f}{m['p99_delay_ms']:>9.1f}"
                     f"{m['skew']:>7.2f}")
    return "\n".join(lines)


def first_inversion(result: Any) -> str:
    chains = result.examples.get("competing-consumers") or []
    return chains[0] if chains else "no inversion"


def plot_panel(result: Any) -> Any:
    import matplotlib.pyplot as plt

    from simulator.plots_ordering import plot_inversions, plot_partition_skew

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.6))
    plot_inversions(result, ax=left)
    plot_partition_skew(result, ax=right)
    fig.tight_layout()
    return fig


PANEL_BASE = {"users": 150, "events_per_user": 3}
PRESETS: dict[str, dict[str, Any]] = {
    "competing consumers reorder": {},
    "one consumer, prefetch 10: requeue still reorders": {"consumers": 1},
    "one consumer, prefetch 1: in order but slow": {"consumers": 1, "prefetch": 1},
    "no retries: parallelism alone reorders": {"requeue_rate": 0.0},
    "hot user (30 %): one partition carries it": {"hot_key_share": 0.3},
    "8 consumers, 8 partitions": {"consumers": 8, "partitions": 8},
}


def panel(seed: int = 7) -> Panel:
    controls = {
        "consumers": slider("competing consumers", 4, 1, 16),
        "partitions": slider("partitions", 4, 1, 16),
        "prefetch": slider("prefetch (0 = unlimited)", 10, 0, 50),
        "requeue_rate": float_slider("nack-requeue rate", 0.05, 0.0, 0.3, 0.01),
        "hot_key_share": float_slider("hot user share", 0.0, 0.0, 0.8, 0.05),
        "handler_jitter": float_slider("handler jitter", 0.5, 0.0, 1.0, 0.05),
        "seed": dropdown("seed", [seed, 1, 2, 3], seed),
    }
    return build_panel("ordering", controls, PRESETS, table, plot_panel, base=PANEL_BASE,
                       title="Ordering: competing consumers vs partitions")


def key_numbers(result: Any, hot: Any) -> dict[str, Any]:
    v, h = result.metrics["variants"], hot.metrics["variants"]
    log = v["partitioned-log"]
    return {
        "events": result.metrics["events"],
        **{f"inversions_{SHORT[d].replace(' ', '_')}": v[d]["inversions"] for d in DESIGNS},
        **{f"throughput_{SHORT[d].replace(' ', '_')}_eps": round(v[d]["throughput_eps"], 1) for d in DESIGNS},
        "hot_skew_competing": round(h["competing-consumers"]["skew"], 2),
        "hot_skew_hash": round(h["consistent-hash"]["skew"], 2),
        "hot_skew_log": round(h["partitioned-log"]["skew"], 2),
        "hot_inversions_partitioned": h["consistent-hash"]["inversions"] + h["partitioned-log"]["inversions"],
        "replay_identical": bool(log["replay_identical"]),
        "replay_inversions": log["replay_inversions"],
    }


CHECKS = {
    "inversions": lambda n: n["inversions_competing"] > 0 and n["inversions_hash_queues"] == 0
    and n["inversions_log"] == 0,
    "hot_key": lambda n: min(n["hot_skew_hash"], n["hot_skew_log"]) > n["hot_skew_competing"] + 0.3
    and n["hot_inversions_partitioned"] == 0,
    "replay": lambda n: n["replay_identical"] and n["replay_inversions"] == 0,
}


def check_claims(numbers: Mapping[str, Any]) -> None:
    return assert_claims(LESSON, CHECKS, numbers)


def cells() -> list[c.Cell]:
    L = LESSON
    return [
        c.title(L, "the same events, published in order per user, go through three designs: one queue with "
                   "competing consumers, a consistent-hash exchange with one queue per partition, and a "
                   "Kafka-style partitioned log. You count per-user inversions, then pay for order with a hot "
                   "user's skew, then replay the log."),
        c.imports("lesson06_ordering"),
        *c.parameters({"SEED": 7, "USERS": 300, "EVENTS_PER_USER": 3, "CONSUMERS": 4, "PARTITIONS": 4,
                       "REQUEUE_RATE": 0.05, "HOT_KEY_SHARE": 0.3}),
        c.md("""
            ## The story

            Each user sends *submit*, then *amend*, then *cancel*, in that order, on one channel. A handler that
            sees *cancel* before *submit* does the wrong thing. **Competing consumers** (경쟁 소비자) share one
            queue to go fast; **partitioning by key** (파티션, 같은 user_id는 같은 파티션) sends all of one
            user's events to one worker so their order survives (순서 보장).
            """),
        c.predict("MY_INVERSIONS", "Four competing consumers, prefetch 10, 5 % of handling attempts fail and "
                                   "are requeued. Out of 900 events, how many per-user inversions (a later "
                                   "event processed before an earlier one of the same user)?"),
        c.guess("MY_INVERSIONS"),
        c.code("""
            result = lesson.run(SEED, users=USERS, events_per_user=EVENTS_PER_USER, consumers=CONSUMERS,
                                partitions=PARTITIONS, requeue_rate=REQUEUE_RATE)
            print(lesson.table(result))
            compare(MY_INVERSIONS, result.metrics["variants"]["competing-consumers"]["inversions"],
                    what="inversions with competing consumers")
            """, check=True),
        c.md("""
            Competing consumers reorder: two events of one user land on two consumers and the faster one wins.
            Both partitioned designs show zero, because one worker handles all of a user's events one at a time.
            """),
        c.code("show(lesson.plot_panel(result))"),
        c.md("The checker found each inversion from the history alone. Here is one, as the chain of events "
             "that caused it:"),
        c.code("print(lesson.first_inversion(result))", check=True),
        c.md("""
            Two deliveries of the same user were in flight at once, on different consumers. Nothing in the
            queue is wrong: competing consumers simply promise no order between messages they handle in
            parallel.
            """),
        c.predict("MY_HOT_SKEW", f"Now one user produces {0.3:.0%} of all events. With four log partitions, "
                                 "how busy is the busiest partition compared with the average (max / mean)?"),
        c.guess("MY_HOT_SKEW"),
        c.code("""
            hot = lesson.run(SEED, users=USERS, events_per_user=EVENTS_PER_USER, consumers=CONSUMERS,
                             partitions=PARTITIONS, requeue_rate=REQUEUE_RATE, hot_key_share=HOT_KEY_SHARE)
            print(lesson.table(hot))
            compare(MY_HOT_SKEW, hot.metrics["variants"]["partitioned-log"]["skew"], what="log partition skew")
            """, check=True),
        c.md("""
            Order by key costs parallelism: every event of the hot user must go through one partition, so that
            partition's consumer works far more than the others and the p99 delay grows. Competing consumers
            spread the hot user evenly (and reorder it).
            """),
        c.code("""
            from simulator.plots_ordering import plot_partition_skew
            show(plot_partition_skew(hot))
            """),
        c.md("""
            ## Queue or log? (RabbitMQ vs Kafka)

            A queue forgets a message once it is acked. A log keeps the records and each reader keeps an
            offset, so a new reader can replay from offset 0 and see the same order again.
            """),
        c.code("""
            log = result.metrics["variants"]["partitioned-log"]
            print("replay gives the same order:", bool(log["replay_identical"]),
                  "| inversions in the replay:", log["replay_inversions"])
            """, check=True),
        c.md("""
            This is the seed's rule of thumb in numbers: RabbitMQ for distributing work and notifications,
            Kafka when you need ordered, replayable event streams.
            """),
        c.panel_intro("Turn consumers, partitions, prefetch, the requeue rate and the hot user's share."),
        c.panel(),
        *c.exercise(L, 1, "With one competing consumer and prefetch 10 there are still inversions. Find "
                          "the setting that removes them with a single consumer, and say what it costs."),
        *c.exercise(L, 2, "How many partitions does the hot-user run need before the log's throughput "
                          "matches the competing consumers'? Try 4, 8 and 16."),
        c.md("## Key numbers and the lesson's claims"),
        c.code("""
            numbers = lesson.key_numbers(result, hot)
            print_numbers(numbers)
            lesson.check_claims(numbers)
            """, check=True),
    ]
