"""Lesson 02: sync vs async (동기 vs 비동기 처리) - curriculum B1-B3, C1."""

from __future__ import annotations

from typing import Any, Mapping

from simulator.lessons import cells as c
from simulator.lessons.claims import assert_claims
from simulator.lessons.panel import Panel, build_panel, dropdown, float_slider, slider
from simulator.lessons.table import lesson

LESSON = lesson(2)


def available() -> tuple[bool, str]:
    try:
        import simulator.plots_sync  # noqa: F401
        from simulator.scenarios.sync_async import run_sync_async, run_variant  # noqa: F401
    except ImportError as exc:
        return False, f"sync-vs-async scenario not importable ({exc})"
    return True, ""


def run(seed: int, **knobs: Any) -> Any:
    from simulator.scenarios.sync_async import make_config, run_sync_async

    return run_sync_async(make_config(seed=seed, **knobs))


def report(result: Any) -> str:
    """The four runs side by side (the scenario's own report, without the theory lines)."""
    lines = result.report().splitlines()
    return "\n".join(line for line in lines[1:12])


def sweep_lines(result: Any) -> str:
    return "\n".join(f"{r['consumers']:>3} consumers: {r['throughput_per_s'] or 0:6.1f} vouchers/s "
                     f"(theory {r['predicted_per_s']:.1f})" for r in result.sweep)


# ------------------------------------------------------------------ the panel: one mode at a time
def one_run(values: dict[str, Any]) -> Any:
    from simulator.scenarios.sync_async import make_config, run_variant

    values = dict(values)
    mode, event_db = values.pop("mode"), values.pop("event_db")
    return run_variant(make_config(**values), mode, event_db)


def one_summary(run: Any) -> str:
    m = run.metrics
    return "\n".join([
        f"{run.mode} / event table on a {run.event_db} database",
        f"response p50 {m['response_ms']['p50']:.1f} ms, p99 {m['response_ms']['p99']:.1f} ms, "
        f"timeouts {m['timeouts']}",
        f"member login p99 {m['login_ms']['p99']:.1f} ms; DB pool max waiting {m['db_pool']['max_waiting']}",
        f"peak queue depth {m['peak_queue_depth']}, drained at {m['drain_s'] or 0:.1f} s; "
        f"time to voucher p99 {m['time_to_voucher_s']['p99'] or 0:.2f} s",
    ])


def one_plot(run: Any) -> Any:
    import matplotlib.pyplot as plt

    m = run.metrics
    labels = ["response p50", "response p99", "login p99"]
    values = [m["response_ms"]["p50"] or 0, m["response_ms"]["p99"] or 0, m["login_ms"]["p99"] or 0]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(labels, values, color=["tab:blue", "tab:blue", "tab:orange"])
    for x, v in enumerate(values):
        ax.text(x, v, f"{v:.0f}", ha="center", va="bottom")
    ax.set_yscale("log")
    ax.set_ylim(1, 5000)
    ax.set_ylabel("ms")
    ax.set_title(f"{run.mode}, {run.event_db} DB: peak queue {m['peak_queue_depth']}")
    return fig


PANEL_BASE = {"submissions": 200}
PRESETS: dict[str, dict[str, Any]] = {
    "async: 200 at once, 16 consumers": {},
    "async, 4 consumers: a longer queue": {"consumers": 4},
    "sync: every request waits for the SMS": {"mode": "sync"},
    "sync, dedicated event DB": {"mode": "sync", "event_db": "dedicated"},
    "sync, fast SMS (20 ms)": {"mode": "sync", "gateway_latency_ms": 20.0},
}


def panel(seed: int = 7) -> Panel:
    controls = {
        "mode": dropdown("mode", ["async", "sync"], "async"),
        "event_db": dropdown("event table", ["shared", "dedicated"], "shared"),
        "consumers": slider("consumers", 16, 1, 32),
        "db_pool": slider("DB pool", 10, 1, 50),
        "gateway_latency_ms": float_slider("SMS latency (ms)", 200.0, 0.0, 500.0, 10.0),
        "arrival_rate": float_slider("peak arrivals / s", 2000.0, 100.0, 4000.0, 100.0),
        "seed": dropdown("seed", [seed, 1, 2, 3], seed),
    }
    return build_panel("sync-vs-async", controls, PRESETS, one_summary, one_plot, base=PANEL_BASE,
                       runner=one_run, title="Sync vs async under the opening spike")


def key_numbers(result: Any) -> dict[str, Any]:
    v = {k: r.metrics for k, r in result.variants.items()}
    tput = [r["throughput_per_s"] or 0.0 for r in result.sweep]
    return {
        "sync_p99_ms": round(v["sync/shared"]["response_ms"]["p99"], 1),
        "async_p99_ms": round(v["async/shared"]["response_ms"]["p99"], 1),
        "async_peak_queue": v["async/shared"]["peak_queue_depth"],
        "async_final_queue": v["async/shared"]["final_queue_depth"],
        "async_drain_s": round(v["async/shared"]["drain_s"], 1),
        "login_p99_sync_shared_ms": round(v["sync/shared"]["login_ms"]["p99"], 1),
        "login_p99_sync_dedicated_ms": round(v["sync/dedicated"]["login_ms"]["p99"], 1),
        "vouchers_per_s_1_consumer": round(tput[0], 1),
        "vouchers_per_s_2_consumers": round(tput[1], 1),
        "vouchers_per_s_second_last": round(tput[-2], 1),
        "vouchers_per_s_last": round(tput[-1], 1),
        "all_checkers_valid": all(m["checker_valid"] for m in v.values()),
    }


CHECKS = {
    "sync_collapse": lambda n: n["sync_p99_ms"] > 5 * n["async_p99_ms"],
    "queue_drains": lambda n: n["async_peak_queue"] > 0 and n["async_final_queue"] == 0 and n["async_p99_ms"] < 100,
    "dedicated_db": lambda n: n["login_p99_sync_shared_ms"] > n["login_p99_sync_dedicated_ms"],
    "consumers_scale": lambda n: n["vouchers_per_s_2_consumers"] > 1.5 * n["vouchers_per_s_1_consumer"]
    and n["vouchers_per_s_last"] < 1.15 * n["vouchers_per_s_second_last"],
}


def check_claims(numbers: Mapping[str, Any]) -> None:
    assert_claims(LESSON, CHECKS, numbers)


def cells() -> list[c.Cell]:
    L = LESSON
    return [
        c.title(L, "the same opening spike handled synchronously (the API calls the DB and the SMS gateway "
                   "inside the request) and asynchronously (the API queues the submission and answers 200); "
                   "member logins with and without a dedicated event database; and vouchers per second as "
                   "consumers are added."),
        c.imports("lesson02_async"),
        *c.parameters({"SEED": 7, "SUBMISSIONS": 1000, "GATEWAY_LATENCY_MS": 200.0,
                       "SWEEP_CONSUMERS": (1, 2, 4, 8, 16, 32), "SWEEP_RATE_LIMIT": 50.0}),
        c.md("""
            ## Synchronous (동기) vs asynchronous (비동기)

            Synchronously, each request holds a server thread while it looks up the member, decrements stock,
            writes the ledger and waits for the SMS gateway. Asynchronously, the API only publishes the
            submission to a **message queue** (메시지 큐) and answers `200`; **consumers** do the rest later.
            """),
        c.predict("MY_SYNC_P99_MS", f"The SMS gateway takes {200.0:g} ms. Under the spike, what p99 response time "
                                    "(ms) will the synchronous API show?"),
        c.guess("MY_SYNC_P99_MS"),
        c.code("""
            result = lesson.run(SEED, submissions=SUBMISSIONS, gateway_latency_ms=GATEWAY_LATENCY_MS,
                                sweep_consumers=SWEEP_CONSUMERS, sweep_rate_limit=SWEEP_RATE_LIMIT,
                                sweep_submissions=300)
            print(lesson.report(result))
            compare(MY_SYNC_P99_MS, result.variants["sync/shared"].metrics["response_ms"]["p99"],
                    what="sync p99 response (ms)")
            """, check=True),
        c.md("""
            Sync requests queue for threads and DB connections behind the slow gateway, so the p99 is close to a
            second; async answers in ~20 ms whatever the gateway does. The price: the voucher arrives later, once
            the consumers reach the submission in the queue.
            """),
        c.code("""
            from simulator.plots_sync import plot_queue_drain, plot_response
            show(plot_response(result))
            show(plot_queue_drain(result))
            """),
        c.md("The queue absorbs the spike (트래픽 완화) and drains at the consumers' pace, close to the predicted time."),
        c.md("""
            ## A dedicated event table (이벤트 응답 전용 테이블)

            Member logins use the same database as the event. In sync mode the event's requests hold the DB
            connections, and logins wait for them.
            """),
        c.code("""
            for name in ("sync/shared", "sync/dedicated"):
                m = result.variants[name].metrics
                print(f"{name:<15} login p99 {m['login_ms']['p99']:6.1f} ms, DB pool max waiting {m['db_pool']['max_waiting']}")
            """, check=True),
        c.md("With the event on its own database, logins keep their usual latency."),
        c.md("""
            ## More consumers (Consumer 수평 확장)

            Consumers scale out independently of the API. Throughput grows with them until the next bottleneck:
            here the SMS gateway's rate limit.
            """),
        c.code("print(lesson.sweep_lines(result))", check=True),
        c.code("""
            from simulator.plots_sync import plot_consumers_scaling
            show(plot_consumers_scaling(result))
            """),
        c.md("Past the gateway's limit, more consumers only wait on the gateway."),
        c.panel_intro("Switch mode and event database, change consumers, DB pool and SMS latency (the panel "
                      "serves 200 submissions and runs one mode at a time)."),
        c.panel(),
        *c.exercise(L, 1, "Make the synchronous API look fine. Which knob does it, and why is that not a fix for "
                          "the real event?"),
        *c.exercise(L, 2, "With async handling, how does the time to empty the queue change with 8, 16 and 32 "
                          "consumers? Why does doubling them not halve it?"),
        c.md("## Key numbers and the lesson's claims"),
        c.code("""
            numbers = lesson.key_numbers(result)
            print_numbers(numbers)
            lesson.check_claims(numbers)
            """, check=True),
    ]
