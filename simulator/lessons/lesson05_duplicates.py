"""Lesson 05: duplicates and idempotent handling (중복 처리, 멱등성) - curriculum C3."""

from __future__ import annotations

from typing import Any, Mapping

from simulator.lessons import cells as c
from simulator.lessons.claims import assert_claims
from simulator.lessons.panel import Panel, build_panel, dropdown, float_slider
from simulator.lessons.table import lesson

LESSON = lesson(5)


def available() -> tuple[bool, str]:
    try:
        import simulator.plots_loss  # noqa: F401
        from simulator.scenarios.duplicates import run_duplicates  # noqa: F401
    except ImportError as exc:
        return False, f"duplicates scenario not importable ({exc})"
    return True, ""


def run(seed: int, **knobs: Any) -> Any:
    from simulator.scenarios.duplicates import make_config, run_duplicates

    return run_duplicates(make_config(seed=seed, **knobs))


def sweep_lines(result: Any) -> str:
    lines = result.report().splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("  consumer-1 killed"))
    return "\n".join(lines[1:end])


def crash_lines(result: Any) -> str:
    lines = result.report().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  consumer-1 killed"))
    end = next((i for i, line in enumerate(lines) if line.startswith("  why")), len(lines))
    return "\n".join(lines[start:end])


# ------------------------------------------------------------------ the panel: one flash sale
def one_run(values: dict[str, Any]) -> Any:
    from simulator.config import Fault, FlashSaleConfig
    from simulator.scenarios.flash_sale import run_flash_sale

    v = dict(values)
    point = v.pop("crash")
    faults = () if point == "none" else (Fault(target="consumer-1", point=point, restart_after=0.5),)
    cfg = FlashSaleConfig(seed=v.pop("seed"), submissions=200, arrival_profile="constant", arrival_rate=100.0,
                          stock=400, consumers=2, prefetch=10, faults=faults, **v)
    return run_flash_sale(cfg)


def one_summary(result: Any) -> str:
    counts, cfg = result.checker.counts, result.config
    lines = [f"dedupe {cfg.dedupe}, ack loss {cfg.ack_loss:.0%}, crash "
             f"{', '.join(f.point or '' for f in cfg.faults) or 'none'}",
             f"duplicate deliveries {counts['duplicated']}, double-granted vouchers {counts['double_granted']}, "
             f"vouchers {counts['granted']} for {cfg.submissions} submissions"]
    doubles = [a.chain for a in result.checker.anomalies if a.kind == "double_granted"]
    if doubles:
        lines.append("why: " + doubles[0])
    return "\n".join(lines)


def one_plot(result: Any) -> Any:
    import matplotlib.pyplot as plt

    counts = result.checker.counts
    fig, ax = plt.subplots(figsize=(5, 2.8))
    values = [counts["duplicated"], counts["double_granted"]]
    ax.bar(["duplicate deliveries", "double-granted vouchers"], values, color=["tab:grey", "tab:red"])
    for x, v in enumerate(values):
        ax.text(x, v, str(v), ha="center", va="bottom")
    ax.set_ylim(0, max(10, max(values) * 1.2))
    ax.set_title(f"dedupe {result.config.dedupe}")
    return fig


PRESETS: dict[str, dict[str, Any]] = {
    "acks lost, no dedupe: double vouchers": {"dedupe": "off"},
    "acks lost, dedupe in the DB transaction": {},
    "acks lost, Redis SET NX": {"dedupe": "redis"},
    "crash after commit, before ack, no dedupe": {"dedupe": "off", "ack_loss": 0.0, "crash": "consumer:after-commit"},
    "crash after SET NX, before commit (Redis flaw)": {"dedupe": "redis", "ack_loss": 0.0,
                                                       "crash": "consumer:after-stock"},
}


def panel(seed: int = 7) -> Panel:
    controls = {
        "dedupe": dropdown("dedupe", ["db", "redis", "off"], "db"),
        "ack_loss": float_slider("ack loss", 0.1, 0.0, 0.5, 0.05),
        "crash": dropdown("consumer-1 dies", ["none", "consumer:after-commit", "consumer:after-stock"], "none"),
        "seed": dropdown("seed", [seed, 1, 2, 3], seed),
    }
    return build_panel("duplicates", controls, PRESETS, one_summary, one_plot, runner=one_run,
                       title="Duplicates: lose an ack, redeliver")


def key_numbers(result: Any) -> dict[str, Any]:
    t = result.metrics["totals"]
    return {
        **{f"duplicate_deliveries_{m}": t[m]["duplicate_deliveries"] for m in t},
        **{f"double_granted_{m}": t[m]["double_granted"] for m in t},
        "redis_marked_seen_never_granted": t["redis"]["marked_seen_never_granted"],
        "db_marked_seen_never_granted": t["db"]["marked_seen_never_granted"],
        "exactly_once_modes": ",".join(result.metrics["exactly_once_modes"]),
    }


CHECKS = {
    "dedupe": lambda n: n["double_granted_off"] > 0 and n["double_granted_redis"] == 0 and n["double_granted_db"] == 0
    and n["duplicate_deliveries_db"] > 0 and n["exactly_once_modes"] == "db"
    and n["redis_marked_seen_never_granted"] > 0 and n["db_marked_seen_never_granted"] == 0,
}


def check_claims(numbers: Mapping[str, Any]) -> None:
    assert_claims(LESSON, CHECKS, numbers)


def cells() -> list[c.Cell]:
    L = LESSON
    return [
        c.title(L, "acks lost at increasing rates and consumers killed between commit and ack, with no dedupe, "
                   "with Redis SET NX and with a unique id in the DB transaction: duplicate deliveries always "
                   "happen, duplicate vouchers only without the right dedupe."),
        c.imports("lesson05_duplicates"),
        *c.parameters({"SEED": 7, "SUBMISSIONS": 200, "ACK_LOSS_RATES": (0.0, 0.05, 0.1, 0.2)}),
        c.md("""
            ## At-least-once delivery (중복 처리)

            A consumer grants the voucher, commits, and then its ack never reaches the broker. The broker cannot
            tell "done, ack lost" from "never done", so it delivers again. The fix is **idempotent** handling
            (멱등성): every message carries a `message_id`, the consumer records which ids it has processed, and a
            repeated id is skipped.
            """),
        c.predict("MY_DOUBLE_VOUCHERS", "200 submissions, 10 % of acks lost, no dedupe. How many vouchers are "
                                        "granted twice?"),
        c.guess("MY_DOUBLE_VOUCHERS"),
        c.code("""
            result = lesson.run(SEED, submissions=SUBMISSIONS, ack_loss_rates=ACK_LOSS_RATES)
            print(lesson.sweep_lines(result))
            compare(MY_DOUBLE_VOUCHERS, result.metrics["double_granted"]["off"]["0.1"],
                    what="double-granted vouchers at 10 % ack loss")
            """, check=True),
        c.md("""
            Each cell is *duplicate deliveries / double-granted vouchers*. Deliveries repeat the same way in every
            mode (the broker does not know about dedupe); only the consumer's check turns them into no-ops.
            """),
        c.code("""
            from simulator.plots_loss import plot_duplicates
            show(plot_duplicates(result))
            """),
        c.md("""
            ## Where to record the id

            Redis `SET NX seen:<id>` runs outside the DB transaction. A consumer that dies after the `SET NX` and
            before the commit leaves the id marked seen but the voucher never granted; the redelivery is then
            skipped. A unique processed-id row written *in the same transaction* as the voucher cannot split.
            """),
        c.code("print(lesson.crash_lines(result))", check=True),
        c.md("Columns: duplicate deliveries / double grants / marked seen but never granted."),
        c.code("""
            from simulator.plots_loss import plot_crash_duplicates
            show(plot_crash_duplicates(result))
            """),
        c.md("Only the DB-transaction dedupe gives an exactly-once *effect* on top of at-least-once delivery."),
        c.panel_intro("Choose the dedupe, the ack-loss rate and where consumer-1 dies."),
        c.panel(),
        *c.exercise(L, 1, "Raise the ack loss to 50 % with DB dedupe. Do double vouchers appear? What does the "
                          "extra redelivery cost instead?"),
        *c.exercise(L, 2, "Explain the 'marked seen, never granted' row in your own words: which submission "
                          "loses its voucher, and why does the checker not report it as lost?"),
        c.md("## Key numbers and the lesson's claims"),
        c.code("""
            numbers = lesson.key_numbers(result)
            print_numbers(numbers)
            lesson.check_claims(numbers)
            """, check=True),
    ]
