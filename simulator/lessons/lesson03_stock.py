"""Lesson 03: stock (재고 관리) - curriculum B5, B6 and the safety-stock part of B7."""

from __future__ import annotations

from typing import Any, Mapping

from simulator.lessons import cells as c
from simulator.lessons.claims import assert_claims
from simulator.lessons.panel import Panel, build_panel, dropdown, slider
from simulator.lessons.table import lesson

LESSON = lesson(3)
ATOMIC_REDIS = ("redis-decr", "redis-lua")


def available() -> tuple[bool, str]:
    try:
        import simulator.plots_stock  # noqa: F401
        from simulator.scenarios.stock import run_stock  # noqa: F401
    except ImportError as exc:
        return False, f"stock scenario not importable ({exc})"
    return True, ""


def run(seed: int, **knobs: Any) -> Any:
    from simulator.scenarios.stock import make_config, run_stock

    return run_stock(make_config(seed=seed, **knobs))


def grid_lines(result: Any) -> str:
    """The strategy x consumers table of the scenario's report."""
    lines = result.report().splitlines()
    end = next((i for i, line in enumerate(lines) if line.startswith("  event end") or
                line.startswith("  Redis ceiling")), len(lines))
    return "\n".join(lines[1:end])


def ttl_lines(result: Any) -> str:
    lines = result.report().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  event end"))
    end = next(i for i, line in enumerate(lines) if line.startswith("  Redis ceiling"))
    return "\n".join(line.split(" - ")[0] for line in lines[start:end])


def ceiling_lines(result: Any) -> str:
    lines = result.report().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  Redis ceiling"))
    return "\n".join(lines[start:])


def _grid(result: Any) -> dict[tuple[str, int], dict[str, Any]]:
    return {(g["strategy"], g["consumers"]): g for g in result.to_dict()["grid"]}


# ------------------------------------------------------------------ the panel
def _runner(values: dict[str, Any]) -> Any:
    values = dict(values)
    chosen = values.pop("strategy")
    values["strategies"] = "db-update,db-read-then-write,redis-get-set,redis-decr,redis-lua" \
        if chosen == "all" else chosen
    values["consumer_levels"] = str(values.pop("consumers"))
    return run(values.pop("seed"), **values)


def summary(result: Any) -> str:
    return grid_lines(result)


def plot_panel(result: Any) -> Any:
    from simulator.plots_stock import plot_oversell

    return plot_oversell(result)


PANEL_BASE = {"submissions": 80, "event_ttl_s": None, "redis_clients": "16", "redis_bench_s": 0.01}
PRESETS: dict[str, dict[str, Any]] = {
    "every strategy, 8 consumers": {},
    "one consumer: no race, nothing oversold": {"consumers": 1},
    "32 consumers: longer lock waits": {"consumers": 32},
    "DB row UPDATE: correct, but lock waits": {"strategy": "db-update", "consumers": 32},
    "no safety stock": {"safety_stock": 0},
}


def panel(seed: int = 7) -> Panel:
    controls = {
        "strategy": dropdown("strategy", ["all", "db-update", "db-read-then-write", "redis-get-set", "redis-decr",
                                          "redis-lua"], "all"),
        "consumers": slider("consumers", 8, 1, 64),
        "stock": slider("stock", 40, 0, 80, 5),
        "safety_stock": slider("safety stock", 4, 0, 20),
        "seed": dropdown("seed", [seed, 1, 2, 3], seed),
    }
    return build_panel("stock", controls, PRESETS, summary, plot_panel, base=PANEL_BASE, runner=_runner,
                       title="Stock: where it lives and how it is taken")


def key_numbers(result: Any) -> dict[str, Any]:
    m, g = result.metrics, _grid(result)
    top = max(result.config.consumer_levels)
    return {
        "offered": m["offered"], "safety_stock": result.config.safety_stock, "top_consumers": top,
        **{f"oversold_{s}_{top}": m["oversold"][s][str(top)] for s in m["oversold"]},
        "lock_share_db_update_1": m["lock_share"]["db-update"]["1"],
        f"lock_share_db_update_{top}": m["lock_share"]["db-update"][str(top)],
        "redis_end_decr": g[("redis-decr", top)]["redis_final"], "redis_end_lua": g[("redis-lua", top)]["redis_final"],
        **{f"held_back_{s}": m["held_back_at_top"][s] for s in ("redis-decr", "redis-lua", "redis-get-set")},
        **{f"late_after_ttl_{s}": m["late_after_ttl"][s] for s in ("redis-decr", "redis-lua", "redis-get-set")},
        "redis_saturation_share": round(m["redis_saturation_per_s"] / m["redis_ceiling_per_s"], 3),
    }


def _top(n: Mapping[str, Any], strategy: str) -> int:
    return n[f"oversold_{strategy}_{n['top_consumers']}"]


CHECKS = {
    "row_lock": lambda n: _top(n, "db-update") == 0 and _top(n, "db-read-then-write") > 0
    and n[f"lock_share_db_update_{n['top_consumers']}"] > n["lock_share_db_update_1"] + 0.2,
    "atomic_redis": lambda n: all(_top(n, s) == 0 for s in ATOMIC_REDIS) and _top(n, "redis-get-set") > 0
    and n["redis_end_lua"] == 0 and n["redis_end_decr"] < 0
    and n["late_after_ttl_redis-decr"] == 0 and n["late_after_ttl_redis-lua"] == 0
    and n["late_after_ttl_redis-get-set"] > 0 and n["redis_saturation_share"] >= 0.95,
    "safety_stock": lambda n: n["held_back_redis-decr"] == n["safety_stock"] == n["held_back_redis-lua"]
    and n["held_back_redis-get-set"] < n["safety_stock"],
}


def check_claims(numbers: Mapping[str, Any]) -> None:
    assert_claims(LESSON, CHECKS, numbers)


def cells() -> list[c.Cell]:
    L = LESSON
    return [
        c.title(L, "five ways of taking one voucher from the stock (a DB row UPDATE, a DB read-then-write, Redis "
                   "GET+SET, Redis DECR, a Redis Lua check-and-decrement) at 1, 4 and 16 consumers: oversell, "
                   "row-lock waits, the event's end by TTL, Redis's one-thread ceiling and the safety stock."),
        c.imports("lesson03_stock"),
        *c.parameters({"SEED": 7, "SUBMISSIONS": 500, "STOCK": 200, "SAFETY_STOCK": 20,
                       "CONSUMER_LEVELS": (1, 4, 16), "EVENT_TTL_S": 1.0}),
        c.md("""
            ## The race (동시성 문제)

            Taking a voucher is *read the count, check it is positive, write count - 1*. If two consumers read
            the same count before either writes, both grant: an **oversell** (초과 지급). A DB `UPDATE ... WHERE
            n > 0` is correct but serialises every taker on one **row lock** (행 잠금). Redis runs one command at
            a time on **one thread** (싱글 스레드), so `DECR` (an **atomic operation**, 원자 연산) cannot race.
            A **safety stock** (안전 재고) of 20 out of 200 is held back.
            """),
        c.predict("MY_OVERSOLD", "With 16 consumers doing SELECT then UPDATE on the DB row, how many vouchers "
                                 "beyond the 180 offered will be granted?"),
        c.guess("MY_OVERSOLD"),
        c.code("""
            result = lesson.run(SEED, submissions=SUBMISSIONS, stock=STOCK, safety_stock=SAFETY_STOCK,
                                consumer_levels=CONSUMER_LEVELS, event_ttl_s=EVENT_TTL_S)
            print(lesson.grid_lines(result))
            compare(MY_OVERSOLD, result.metrics["oversold"]["db-read-then-write"]["16"],
                    what="oversold by read-then-write at 16 consumers")
            """, check=True),
        c.md("""
            One consumer never races. With more, read-then-write loses updates (on the DB and on Redis GET+SET
            alike), while `UPDATE ... WHERE n > 0`, `DECR` and Lua stay exact. The DB row's lock wait grows to
            about half of all handling time at 16 consumers. `DECR` drives the key below zero (a negative answer
            is a refusal); the Lua script checks first and stops at zero.
            """),
        c.code("""
            from simulator.plots_stock import plot_lock_wait, plot_oversell
            show(plot_oversell(result))
            show(plot_lock_wait(result))
            """),
        c.md("""
            ## Ending the event with a TTL

            An `EXPIRE` on the stock key ends the event by itself: after it, the key is gone and every take is
            refused.
            """),
        c.code("print(lesson.ttl_lines(result))", check=True),
        c.md("""
            DECR and Lua stop on time. `SET` writes the key afresh and clears its TTL, so GET+SET keeps the event
            open; the DB strategies never read the Redis key at all, so they need their own end time.
            """),
        c.md("## One thread's ceiling"),
        c.code("print(lesson.ceiling_lines(result))", check=True),
        c.md("""
            Commands per second rise with clients until the one command thread is busy all the time, then level
            off at 1 / command time. Plenty for a voucher event; the ceiling is why big systems shard Redis.
            """),
        c.code("""
            from simulator.plots_stock import plot_redis_ceiling, plot_ttl
            show(plot_ttl(result))
            show(plot_redis_ceiling(result))
            """),
        c.md("The TTL line marks the event's end; only the atomic Redis strategies stop there."),
        c.panel_intro("Pick a strategy (or all), the consumers, the stock and the safety stock."),
        c.panel(),
        *c.exercise(L, 1, "Does a safety stock fix read-then-write? Try holding back 20, 100 and 200 of the 200 "
                          "vouchers at 16 consumers."),
        *c.exercise(L, 2, "Why does `redis-decr` end with a negative key while `redis-lua` ends at zero, and "
                          "which one would you show on a live dashboard?"),
        c.md("## Key numbers and the lesson's claims"),
        c.code("""
            numbers = lesson.key_numbers(result)
            print_numbers(numbers)
            lesson.check_claims(numbers)
            """, check=True),
    ]
