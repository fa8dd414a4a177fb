"""Lesson 08: routing (AMQP exchange, queue, binding) - curriculum B8, D1-D4."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from simulator.lessons import cells as c
from simulator.lessons.claims import assert_claims
from simulator.lessons.panel import Panel, build_panel, dropdown, float_slider, slider
from simulator.lessons.table import lesson

LESSON = lesson(8)
VIEWS = ("fanout", "priority", "dead letters", "routing table")


def available() -> tuple[bool, str]:
    return True, ""


def run(seed: int, **knobs: Any) -> Any:
    from simulator.scenarios.routing import make_config, run_routing

    return run_routing(make_config(seed=seed, **knobs))


def routing_lines(result: Any, exchange_type: str | None = None) -> str:
    rows = [r for r in result.routing_table["rows"] if exchange_type in (None, r["type"])]
    return "\n".join(f"{r['label']:<34} -> {', '.join(r['queues']) or '(unroutable: dropped)'}" for r in rows)


def queues_for(result: Any, routing_key: str) -> int:
    """How many topic queues got the message published with ``routing_key``."""
    for r in result.routing_table["rows"]:
        if r["type"] == "topic" and r["routing_key"] == routing_key:
            return len(r["queues"])
    raise KeyError(routing_key)


def fanout_lines(result: Any) -> str:
    from simulator.scenarios.routing import FANOUT_QUEUES

    lat = result.slow_subscriber
    return "\n".join(f"{q:<8} p99 {lat['baseline']['latency_ms'][q]['p99']:8.1f} ms -> "
                     f"{lat['slow']['latency_ms'][q]['p99']:8.1f} ms, max depth "
                     f"{lat['baseline']['max_depth'][q]} -> {lat['slow']['max_depth'][q]}" for q in FANOUT_QUEUES)


def feature_lines(result: Any) -> str:
    m = result.metrics
    lines = [f"priority: high waits {m['priority_high_wait_mean_ms']:.1f} ms, normal {m['priority_normal_wait_mean_ms']:.1f}"
             f" ms; without x-max-priority high waits {m['fifo_high_wait_mean_ms']:.1f} ms",
             f"DLQ by reason: rejected {m['dlq_rejected']}, expired {m['dlq_expired']}, maxlen {m['dlq_maxlen']}"
             f" ({m['dl_processed']} of {m['dl_published']} processed)"]
    for mode, o in result.overflow.items():
        lines.append(f"overflow {mode:<15} kept #{o['kept_first']}..#{o['kept_last']}, {o['confirmed']} confirmed,"
                     f" {o['nacked']} nacked")
    return "\n".join(lines)


@dataclass
class Shown:
    """A routing result and which of its experiments the panel draws."""
    result: Any
    view: str


def summary(shown: Shown) -> str:
    r = shown.result
    if shown.view == "fanout":
        return fanout_lines(r)
    if shown.view == "routing table":
        m = r.metrics
        return f"{m['table_rows'] - m['table_mismatches']} of {m['table_rows']} rows match the AMQP rules\n" + \
            routing_lines(r)
    return feature_lines(r)


def plot_view(shown: Shown) -> Any:
    from simulator import plots_routing as p

    draw = {"fanout": p.plot_slow_subscriber, "priority": p.plot_priority_wait,
            "dead letters": p.plot_dead_letters, "routing table": p.plot_routing_table}[shown.view]
    return draw(shown.result)


PANEL_BASE = {"hash_messages": 2000, "priority_backlog": 200, "priority_arrivals": 400, "dl_messages": 600,
              "fanout_events": 400}
PRESETS: dict[str, dict[str, Any]] = {
    "fanout: a slow voucher service": {},
    "fanout: voucher 4x slower still": {"slow_subscriber_ms": 100.0},
    "priority overtakes a backlog": {"view": "priority"},
    "priority with prefetch 50: overtaking blunted": {"view": "priority", "priority_prefetch": 50},
    "dead letters: short TTL": {"view": "dead letters", "ttl_ms": 40},
    "dead letters: poison messages": {"view": "dead letters", "reject_rate": 0.3},
    "routing table": {"view": "routing table"},
}


def _runner(values: dict[str, Any]) -> Shown:
    values = dict(values)
    view = values.pop("view")
    seed = values.pop("seed")
    return Shown(run(seed, **values), view)


def panel(seed: int = 7) -> Panel:
    controls = {
        "view": dropdown("show", VIEWS, "fanout"),
        "slow_subscriber_ms": float_slider("voucher handler ms (slow run)", 25.0, 3.0, 150.0, 1.0),
        "fanout_rate": float_slider("events per second", 100.0, 20.0, 300.0, 10.0),
        "priority_prefetch": slider("priority consumer prefetch", 1, 0, 100),
        "high_share": float_slider("high-priority share", 0.1, 0.01, 0.5, 0.01),
        "ttl_ms": slider("orders TTL (ms)", 150, 0, 2000, 10),
        "max_length": slider("orders max-length", 40, 0, 500, 5),
        "reject_rate": float_slider("consumer reject rate", 0.05, 0.0, 1.0, 0.05),
        "seed": dropdown("seed", [seed, 1, 2, 3], seed),
    }
    return build_panel("routing", controls, PRESETS, summary, plot_view, base=PANEL_BASE, runner=_runner,
                       title="Routing: fanout, priority, dead letters")


def key_numbers(result: Any) -> dict[str, Any]:
    m = result.metrics
    return {
        "table_rows": m["table_rows"], "table_mismatches": m["table_mismatches"],
        "unroutable_rows": m["unroutable_rows"], "fanout_copies_min": m["fanout_copies_min"],
        "fanout_subscribers": m["fanout_subscribers"], "hash_sticky_violations": m["hash_sticky_violations"],
        "slow_queue_max_depth": m["slow_queue_max_depth"],
        "others_latency_change_pct": round(100 * m["others_latency_change"], 2),
        "high_wait_ms_with_priority": round(m["priority_high_wait_mean_ms"], 1),
        "high_wait_ms_without_priority": round(m["fifo_high_wait_mean_ms"], 1),
        "normal_wait_ms_with_priority": round(m["priority_normal_wait_mean_ms"], 1),
        "dlq_rejected": m["dlq_rejected"], "dlq_expired": m["dlq_expired"], "dlq_maxlen": m["dlq_maxlen"],
        "consumer_rejected": m["consumer_rejected"], "broker_expired": m["broker_expired"],
        "broker_maxlen_dropped": m["broker_maxlen_dropped"],
        "reject_publish_nacked": m["reject_publish_nacked"],
    }


CHECKS = {
    "table": lambda n: n["table_mismatches"] == 0 and n["hash_sticky_violations"] == 0,
    "fanout": lambda n: n["fanout_copies_min"] == n["fanout_subscribers"] and n["slow_queue_max_depth"] > 0
    and n["others_latency_change_pct"] == 0,
    "features": lambda n: n["high_wait_ms_with_priority"] * 10 < n["normal_wait_ms_with_priority"]
    and n["high_wait_ms_without_priority"] > 10 * n["high_wait_ms_with_priority"]
    and min(n["dlq_rejected"], n["dlq_expired"], n["dlq_maxlen"]) > 0
    and (n["dlq_rejected"], n["dlq_expired"], n["dlq_maxlen"])
    == (n["consumer_rejected"], n["broker_expired"], n["broker_maxlen_dropped"]),
}


def check_claims(numbers: Mapping[str, Any]) -> None:
    assert_claims(LESSON, CHECKS, numbers)


def cells() -> list[c.Cell]:
    L = LESSON
    return [
        c.title(L, "messages published to direct, fanout, topic, headers and consistent-hash exchanges and "
                   "which queues got a copy of each; a fanout where one subscriber is slow; priority under a "
                   "backlog; and messages dead-lettered with their reason."),
        c.imports("lesson08_routing"),
        *c.parameters({"SEED": 7, "SLOW_SUBSCRIBER_MS": 25.0, "TTL_MS": 150, "MAX_LENGTH": 40,
                       "REJECT_RATE": 0.05}),
        c.md("""
            ## Three words

            A publisher never writes to a queue. It sends a message with a **routing key** (발신 주소, the
            sender's address) to an **exchange** (교환기), and the exchange copies it into every **queue** whose
            **binding** (바인딩) matches; the binding's **binding key** (수신 조건) is the receiver's condition.
            The exchange type decides what "matches" means: *direct* (exact key), *fanout* (every bound queue),
            *topic* (`.`-separated words, `*` one word, `#` zero or more), *headers* (`x-match` all/any on header
            values).
            """),
        c.predict("MY_TOPIC_QUEUES", "The topic exchange has three queues bound with `survey.*`, `survey.#` and "
                                     "`#.gift`. How many of them receive a message published with routing key "
                                     "`survey.submitted.gift`?"),
        c.guess("MY_TOPIC_QUEUES"),
        c.code("""
            result = lesson.run(SEED, slow_subscriber_ms=SLOW_SUBSCRIBER_MS, ttl_ms=TTL_MS, max_length=MAX_LENGTH,
                                reject_rate=REJECT_RATE)
            print(lesson.routing_lines(result))
            compare(MY_TOPIC_QUEUES, lesson.queues_for(result, "survey.submitted.gift"),
                    what="queues receiving survey.submitted.gift")
            """, check=True),
        c.md("""
            `survey.*` wants exactly two words, so the three-word key misses it; `survey.#` and `#.gift` both
            match. A key no binding matches is dropped (or returned to a publisher that set `mandatory`).
            """),
        c.code("""
            from simulator.plots_routing import plot_routing_table
            show(plot_routing_table(result))
            """),
        c.md("""
            Each row was routed by the SimPy broker and compared with `simulator.routing.route`, the rule function
            the differential test also runs against a real RabbitMQ: AMQP is an open protocol, so the same rules
            hold in any broker and any client language.
            """),
        c.md("""
            ## Broadcasting one event (이벤트 브로드캐스팅)

            The seed's fix for "stock, ledger and voucher all need the submission" is one *survey submitted*
            event on a fanout exchange, one queue per service.
            """),
        c.predict("MY_STOCK_P99_CHANGE_PCT", f"The voucher service becomes slow (it calls an SMS gateway): its "
                                             f"handler goes from 3 ms to {25.0:g} ms. By what percentage does "
                                             "the *stock* service's p99 latency change?"),
        c.guess("MY_STOCK_P99_CHANGE_PCT"),
        c.code("""
            print(lesson.fanout_lines(result))
            compare(MY_STOCK_P99_CHANGE_PCT, 100 * result.metrics["others_latency_change"],
                    what="change of the other services' latency (%)")
            """, check=True),
        c.md("""
            Every subscriber got its own copy in its own queue: the voucher queue grows while the others stay
            empty and their latency does not move at all. (On a real node they would only be coupled through the
            broker's memory and disk alarms, which this model leaves out.)
            """),
        c.code("""
            from simulator.plots_routing import plot_slow_subscriber
            show(plot_slow_subscriber(result))
            """),
        c.md("""
            ## RabbitMQ features: priority, TTL, dead-letter queue, max length

            A priority queue (우선순위 큐) is declared with `x-max-priority`; expired (TTL), rejected and
            overflowed messages go to a dead-letter exchange with an `x-death` header naming the reason.
            """),
        c.code("print(lesson.feature_lines(result))", check=True),
        c.md("""
            High-priority messages jump the backlog only on a queue declared with `x-max-priority`; on a plain
            queue the same message waits like everyone else. The DLQ counts match what the consumer rejected
            and what the broker expired or dropped, one for one. `reject-publish` tells the publisher (nack)
            instead of silently dropping the oldest.
            """),
        c.code("""
            from simulator.plots_routing import plot_dead_letters, plot_priority_wait
            show(plot_priority_wait(result))
            show(plot_dead_letters(result))
            """),
        c.md("The log scale matters: high-priority waits are milliseconds, normal ones are seconds."),
        c.panel_intro("Choose what to show, then slow the voucher service, change the priority consumer's "
                      "prefetch, or shorten the TTL."),
        c.panel(),
        *c.exercise(L, 1, "Priority only helps when messages wait in the broker. Raise the priority "
                          "consumer's prefetch and watch the high-priority wait: why does it grow?"),
        *c.exercise(L, 2, "Using `lesson.run`, find the TTL (ms) at which no message expires any more with "
                          "the default max-length of 40."),
        c.md("## Key numbers and the lesson's claims"),
        c.code("""
            numbers = lesson.key_numbers(result)
            print_numbers(numbers)
            lesson.check_claims(numbers)
            """, check=True),
    ]
