"""Lesson 09: tracing and schemas (추적 ID, 메시지 스키마) - curriculum C5 and C6."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping

from simulator.lessons import cells as c
from simulator.lessons.claims import assert_claims
from simulator.lessons.panel import Panel, build_panel, dropdown, float_slider, slider
from simulator.lessons.table import lesson

LESSON = lesson(9)


def available() -> tuple[bool, str]:
    return True, ""


def run(seed: int, **knobs: Any) -> Any:
    from simulator.scenarios.tracing import TracingConfig, run_tracing

    return run_tracing(TracingConfig(seed=seed, **knobs))


def timeline(result: Any) -> str:
    """The traced submission, one line per step, times in ms from the start of the run."""
    m = result.metrics
    head = (f"{result.corr_id} ({m['outcome']}): {m['trace_ops']} operations, {m['hops']} hand-offs over "
            f"{m['components']} components, {m['trace_ms']:.1f} ms")
    bars = [f"  {lane:<11}{start * 1000:9.2f} .. {end * 1000:9.2f} ms  {label}"
            for lane, start, end, label in result.swimlanes]
    return "\n".join([head, *bars])


def export_summary(result: Any) -> str:
    """Export the history, the trace and its spans; list what was written."""
    with tempfile.TemporaryDirectory() as directory:
        paths = result.export(directory)
        lines = [f"{kind:<8} {Path(p).name:<24} {sum(1 for _ in open(p, encoding='utf-8')):>6} lines"
                 for kind, p in paths.items()]
    spans = ", ".join(s["name"] for s in result.spans)
    return "\n".join([*lines, f"spans: {spans}"])


def invalid_lines(result: Any) -> str:
    inv = result.invalid
    return (f"drifted payloads injected {inv['injected']}, rejected by the schema gate {inv['rejected']}, "
            f"dead-lettered {inv['dead_lettered']}, reached the handler {inv['reached_handler']}, "
            f"valid ones rejected {inv['valid_rejected']}")


def dashboard(result: Any) -> Any:
    """Queue depth and unacked over time: what a monitoring dashboard would plot."""
    from simulator.plots import plot_queue_depth

    return plot_queue_depth(result.flash)


def summary(result: Any) -> str:
    return timeline(result) + "\n" + invalid_lines(result)


def plot_panel(result: Any) -> Any:
    from simulator.plots_tracing import plot_swimlanes

    return plot_swimlanes(result)


PANEL_BASE = {"submissions": 300}
PRESETS: dict[str, dict[str, Any]] = {
    "first voucher granted": {},
    "first drifted payload: straight to the DLQ": {"pick": "first-invalid"},
    "a late arrival waits in the queue": {"pick": 250, "arrival_rate": 2000.0},
    "stock gone: no voucher": {"pick": 250, "stock": 20},
    "one consumer: long queue wait": {"consumers": 1, "pick": 150},
}


def _runner(values: dict[str, Any]) -> Any:
    values = dict(values)
    return run(values.pop("seed"), **values)


def panel(seed: int = 7) -> Panel:
    controls = {
        "pick": dropdown("trace", ["first-granted", "first-invalid", 1, 50, 150, 250], "first-granted"),
        "stock": slider("stock", 100, 0, 300, 10),
        "consumers": slider("consumers", 4, 1, 16),
        "arrival_rate": float_slider("arrivals per second", 400.0, 50.0, 2000.0, 50.0),
        "invalid_fraction": float_slider("drifted payload share", 0.05, 0.0, 0.5, 0.01),
        "seed": dropdown("seed", [seed, 1, 2, 3], seed),
    }
    return build_panel("tracing", controls, PRESETS, summary, plot_panel, base=PANEL_BASE, runner=_runner,
                       title="Tracing: follow one correlation id")


def key_numbers(result: Any, invalid: Any) -> dict[str, Any]:
    m, inv = result.metrics, result.invalid
    depth = result.flash.series
    return {
        "traced": result.corr_id, "outcome": m["outcome"], "components": m["components"], "hops": m["hops"],
        "trace_ops": m["trace_ops"], "invalid_trace_outcome": invalid.metrics["outcome"],
        "correlation_ok": bool(m["correlation_ok"]),
        "invalid_injected": inv["injected"], "invalid_dead_lettered": inv["dead_lettered"],
        "invalid_reached_handler": inv["reached_handler"], "valid_rejected": inv["valid_rejected"],
        "peak_queue_depth": int(max(depth["queue_depth"])), "peak_unacked": int(max(depth["unacked"])),
    }


CHECKS = {
    "trace": lambda n: n["correlation_ok"] and n["outcome"] == "granted" and n["components"] >= 5
    and n["trace_ops"] > n["components"],
    "schema": lambda n: n["invalid_injected"] > 0 and n["invalid_dead_lettered"] == n["invalid_injected"]
    and n["invalid_reached_handler"] == 0 and n["valid_rejected"] == 0 and n["invalid_trace_outcome"] == "invalid"
    and n["peak_queue_depth"] > 0 and n["peak_unacked"] > 0,
}


def check_claims(numbers: Mapping[str, Any]) -> None:
    assert_claims(LESSON, CHECKS, numbers)


def cells() -> list[c.Cell]:
    L = LESSON
    return [
        c.title(L, "one submission pulled out of a whole flash-sale run by its correlation id and drawn as a "
                   "timeline with a lane per component; the trace exported as JSON Lines and OpenTelemetry spans; "
                   "payloads from a producer with a drifted schema, every one sent to the dead-letter queue."),
        c.imports("lesson09_tracing"),
        *c.parameters({"SEED": 7, "SUBMISSIONS": 1000, "STOCK": 300, "INVALID_FRACTION": 0.05}),
        c.md("""
            ## Why tracing is hard here

            The API server, the broker and the consumers each log on their own, at different times, and a
            consumer cannot tell which HTTP request a message came from. The fix is a **correlation id**
            (추적 ID) that the client's request carries into every message and every log line; **distributed
            tracing** (분산 트레이싱: Jaeger, Zipkin) then draws one request's path as a timeline.
            """),
        c.predict("MY_COMPONENTS", "The first submission that gets a voucher: how many components (client, "
                                   "servers, broker, consumers, Redis, DB, gateway ...) does its path touch?"),
        c.guess("MY_COMPONENTS"),
        c.code("""
            result = lesson.run(SEED, submissions=SUBMISSIONS, stock=STOCK, invalid_fraction=INVALID_FRACTION)
            print(lesson.timeline(result))
            compare(MY_COMPONENTS, result.metrics["components"], what="components on the path")
            """, check=True),
        c.md("""
            The HTTP 200 went back at about 20 ms, long before the voucher was sent: the consumer did the work
            afterwards. Only the shared correlation id ties the two halves together.
            """),
        c.code("""
            from simulator.plots_tracing import plot_swimlanes
            show(plot_swimlanes(result))
            """),
        c.md("Each lane is one component, each bar one step; a gap between bars is waiting (mostly in the queue)."),
        c.code("print(lesson.export_summary(result))", check=True),
        c.md("""
            The whole history goes out as JSON Lines and the trace as OpenTelemetry spans (OTLP/JSON), which a
            tracing backend such as Jaeger can load.
            """),
        c.md("""
            ## Schemas against complexity (메시지 스키마 검증)

            A producer deployed with a new message format (`schema_version: 2`) while consumers still expect
            version 1 is the seed's "producer and consumer disagree on the format" failure. The consumers check
            every payload against a JSON Schema first.
            """),
        c.predict("MY_REACHED_HANDLER", f"{0.05:.0%} of the payloads are written in the drifted format. How many "
                                        "of them reach the voucher handler?"),
        c.guess("MY_REACHED_HANDLER"),
        c.code("""
            print(lesson.invalid_lines(result))
            compare(MY_REACHED_HANDLER, result.invalid["reached_handler"], what="drifted payloads in the handler")
            """, check=True),
        c.md("""
            The schema gate rejects them before any business step, and the broker moves them to the dead-letter
            queue where an operator can inspect them; no valid payload was rejected.
            """),
        c.code("""
            invalid = lesson.run(SEED, submissions=SUBMISSIONS, stock=STOCK, invalid_fraction=INVALID_FRACTION,
                                 pick="first-invalid")
            print(lesson.timeline(invalid))
            """, check=True),
        c.md("The trace of a drifted payload stops at the consumer's `process (invalid)` step and ends in the DLQ."),
        c.code("""
            from simulator.plots_tracing import plot_invalid_flow
            show(plot_invalid_flow(result))
            show(lesson.dashboard(result))
            """),
        c.md("""
            The second figure is what a monitoring dashboard (RabbitMQ management UI, Grafana) shows: ready
            messages and unacked deliveries over time. The queue absorbs the opening burst and drains.
            """),
        c.panel_intro("Pick which submission to trace and change stock, consumers, arrival rate and the drifted "
                      "share."),
        c.panel(),
        *c.exercise(L, 1, "Trace submission number 1000 (the last arrival). Where does it spend most of its time?"),
        *c.exercise(L, 2, "Raise the drifted share to 30 %. Does any drifted payload reach the handler? Does the "
                          "number of vouchers granted change, and why?"),
        c.md("## Key numbers and the lesson's claims"),
        c.code("""
            numbers = lesson.key_numbers(result, invalid)
            print_numbers(numbers)
            lesson.check_claims(numbers)
            """, check=True),
    ]
