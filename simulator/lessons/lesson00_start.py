"""Notebook 00: what MQ Lab is, how to run it, the map of lessons (generated), a first run."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from simulator.lessons import cells as c
from simulator.lessons.claims import assert_claims
from simulator.lessons.panel import Panel, build_panel, checkbox, dropdown, float_slider, slider
from simulator.lessons.table import LESSONS, coverage_markdown, lesson, map_markdown

LESSON = lesson(0)
ANOMALIES = ("lost", "duplicated", "oversold", "double_granted")


def available() -> tuple[bool, str]:
    return True, ""


def built(folder: str | Path = ".") -> set[int]:
    here = Path(folder)
    return {les.number for les in LESSONS if (here / les.filename).exists()}


def lesson_map(folder: str | Path = ".") -> str:
    """The lesson table as Markdown, linking the notebooks present in ``folder``."""
    return map_markdown(built(folder))


def coverage(folder: str | Path = ".") -> str:
    return coverage_markdown(built(folder))


def run(seed: int, **knobs: Any) -> Any:
    from simulator.config import FlashSaleConfig
    from simulator.scenarios.flash_sale import run_flash_sale

    return run_flash_sale(FlashSaleConfig(seed=seed, keep_history=0, **knobs))


def summary(result: Any) -> str:
    m, counts = result.metrics, result.checker.counts
    return "\n".join([
        f"{m['submissions']} submissions, stock {result.config.stock}: {m['vouchers_granted']} vouchers granted",
        f"HTTP response p99 {m['response_ms']['p99']:.1f} ms, time to voucher p99 "
        f"{m['time_to_voucher_s']['p99']:.2f} s, peak queue depth {m['peak_queue_depth']}",
        "checker: " + ("VALID" if result.checker.valid else "INVALID") + "  "
        + "  ".join(f"{k}={counts[k]}" for k in ANOMALIES),
    ])


def plot_panel(result: Any) -> Any:
    from simulator.plots import plot_stock

    return plot_stock(result)


PANEL_BASE = {"submissions": 400}
PRESETS: dict[str, dict[str, Any]] = {
    "the safe architecture": {},
    "stock with GET then SET: oversold": {"stock_strategy": "redis-get-set", "consumers": 8},
    "acks get lost, no dedupe: double vouchers": {"dedupe": "off", "ack_loss": 0.1},
    "synchronous handling": {"mode": "sync"},
}


def _runner(values: dict[str, Any]) -> Any:
    values = dict(values)
    return run(values.pop("seed"), **values)


def panel(seed: int = 7) -> Panel:
    controls = {
        "stock": slider("stock", 150, 0, 400, 10),
        "consumers": slider("consumers", 4, 1, 16),
        "mode": dropdown("mode", ["async", "sync"], "async"),
        "stock_strategy": dropdown("stock strategy", ["redis-lua", "redis-decr", "redis-get-set", "db-update",
                                                      "db-read-then-write"], "redis-lua"),
        "dedupe": dropdown("dedupe", ["db", "redis", "off"], "db"),
        "ack_loss": float_slider("ack loss", 0.0, 0.0, 0.5, 0.05),
        "durable": checkbox("durable queue", True),
        "seed": dropdown("seed", [seed, 1, 2, 3], seed),
    }
    return build_panel("flash-sale", controls, PRESETS, summary, plot_panel, base=PANEL_BASE, runner=_runner,
                       title="The flash sale, end to end")


def key_numbers(result: Any) -> dict[str, Any]:
    m, counts = result.metrics, result.checker.counts
    return {"submissions": m["submissions"], "stock": result.config.stock,
            "vouchers_granted": m["vouchers_granted"], **{k: counts[k] for k in ANOMALIES},
            "response_p99_ms": round(m["response_ms"]["p99"], 1), "peak_queue_depth": m["peak_queue_depth"],
            "checker_valid": bool(result.checker.valid)}


CHECKS = {
    "safe_flow": lambda n: n["vouchers_granted"] == n["stock"] and n["checker_valid"]
    and all(n[k] == 0 for k in ANOMALIES) and n["peak_queue_depth"] > 0,
}


def check_claims(numbers: Mapping[str, Any]) -> None:
    assert_claims(LESSON, CHECKS, numbers)


def cells() -> list[c.Cell]:
    return [
        c.md("""
            # 00 · Start here: MQ Lab

            MQ Lab is a simulator for learning distributed-system design by **watching it happen**. A one-day
            gift event runs through load-balanced API servers, a message broker (AMQP, like RabbitMQ), consumers,
            Redis, a database and an SMS/voucher gateway. Everything is a seeded simulation: no servers, no
            network, the same numbers on every run. Each lesson turns one design question into knobs you can
            turn and a number the notebook checks.
            """),
        c.md("""
            ## The interview question (in our words)

            An online shop runs a one-day event: customers who bought a certain product fill in a short survey
            and automatically get a coffee voucher, until the planned number of vouchers is used up. The event
            opens at a fixed hour, so almost everyone arrives in the first few minutes. **What architecture do
            you propose?**

            The study notes this course follows answer with a chain of ideas, and each lesson tests one of them:
            answer `200` at once and put the work on a **message queue** (메시지 큐, 비동기 처리); keep the stock
            in **Redis** with an atomic decrement (원자 연산); plan for **message loss** (메시지 유실),
            **duplicates** (중복 처리) and **ordering** (순서 보장); keep the DB and the queue consistent with an
            **outbox** (Outbox 패턴); route events with AMQP **exchanges**; and be able to **trace** one request
            (추적 ID). Before all that: **scale-out vs scale-up** (수평 확장 vs 수직 확장).
            """),
        c.md("""
            ## How to run

            ```bash
            python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'
            .venv/bin/jupyter lab notebooks/          # or open the notebooks in VS Code
            ```

            Run a notebook top to bottom (*Run → Run All Cells*). Every lesson has the same shape: the question;
            parameters in UPPER_CASE with a `SEED`; **predict first** cells where you write a number before you
            see the result; short runs with a sentence after each; an interactive **panel** with instructor
            **presets**; exercises with hidden solutions (`show_solution(lesson, n)`); and a closing cell that
            prints the key numbers and asserts the lesson's claim.

            Maintainers: `python -m simulator.lessons.build` rewrites and re-executes every notebook;
            `pytest --nbval-lax notebooks/` re-runs them and compares the checked numbers.
            """),
        c.md("## The lessons\n\nThis map is generated from `simulator/lessons/table.py`:"),
        c.code("""
            from IPython.display import Markdown, display
            from simulator.lessons import lesson00_start as lesson
            from simulator.lessons.predict import compare
            from simulator.lessons.show import print_numbers, setup, show
            from simulator.lessons.solutions import show_solution

            setup()
            display(Markdown(lesson.lesson_map()))
            """),
        c.md("And each curriculum row with the notebook claim that checks it:"),
        c.code("display(Markdown(lesson.coverage()))"),
        c.md("## A first run"),
        *c.parameters({"SEED": 7, "SUBMISSIONS": 600, "STOCK": 200, "CONSUMERS": 4}),
        c.predict("MY_VOUCHERS", "600 people submit in the opening burst and the stock is 200. With the safe "
                                 "architecture (queue, consumers, atomic stock in Redis), how many vouchers "
                                 "are granted?"),
        c.guess("MY_VOUCHERS"),
        c.code("""
            result = lesson.run(SEED, submissions=SUBMISSIONS, stock=STOCK, consumers=CONSUMERS)
            print(lesson.summary(result))
            compare(MY_VOUCHERS, result.metrics["vouchers_granted"], what="vouchers granted")
            """, check=True),
        c.md("""
            Exactly the stock, and the checker (it reads the run's full history of operations) found nothing lost,
            duplicated or oversold. The HTTP answer stayed fast while the queue absorbed the burst.
            """),
        c.code("""
            from simulator.plots import plot_flash_sale
            show(plot_flash_sale(result))
            """),
        c.md("The queue fills in the first seconds and drains; the stock line falls to zero and grants stop there."),
        c.panel_intro("Break the safe architecture on purpose and watch the checker catch it."),
        c.panel(),
        *c.exercise(LESSON, 1, "Find a setting in the panel that makes the checker report `oversold > 0`. Which "
                               "lesson explains it?"),
        c.md("## Key numbers and the claim"),
        c.code("""
            numbers = lesson.key_numbers(result)
            print_numbers(numbers)
            lesson.check_claims(numbers)
            """, check=True),
    ]
