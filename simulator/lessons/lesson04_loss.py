"""Lesson 04: message loss (메시지 유실) - curriculum C2 and the Redis part of B7."""

from __future__ import annotations

from typing import Any, Mapping

from simulator.lessons import cells as c
from simulator.lessons.claims import assert_claims
from simulator.lessons.panel import Panel, build_panel, checkbox, dropdown, float_slider
from simulator.lessons.table import lesson

LESSON = lesson(4)
SAFE = "durable+persistent / confirms / manual-ack"


def available() -> tuple[bool, str]:
    try:
        import simulator.plots_loss  # noqa: F401
        from simulator.scenarios.loss import run_loss  # noqa: F401
    except ImportError as exc:
        return False, f"loss scenario not importable ({exc})"
    return True, ""


def run(seed: int, **knobs: Any) -> Any:
    from simulator.scenarios.loss import make_config, run_loss

    return run_loss(make_config(seed=seed, **knobs))


def matrix_lines(result: Any) -> str:
    """Lost messages per design (rows) and crash target (columns)."""
    lost = result.metrics["lost"]
    targets = list(next(iter(lost.values())))
    lines = [f"{'design':<44}" + "".join(f"{t:>10}" for t in targets if not t.startswith("redis:"))]
    for design, row in lost.items():
        lines.append(f"{design:<44}" + "".join(f"{row[t]:>10}" for t in targets if not t.startswith("redis:")))
    return "\n".join(lines)


def redis_lines(result: Any) -> str:
    m = result.metrics
    lines = [f"stock key lost, naive reseed to full stock: oversold {m['reseed_oversold']['full']}",
             f"stock key lost, reseed from the DB ledger:  oversold {m['reseed_oversold']['ledger']}"]
    lines += [f"AOF everysec rollback, safety stock {s:>3}: oversold {n}" for s, n in m["safety_oversold"].items()]
    return "\n".join(lines)


# ------------------------------------------------------------------ the panel: one crash, one design
def one_run(values: dict[str, Any]) -> Any:
    from simulator.config import Fault, FlashSaleConfig
    from simulator.scenarios.flash_sale import run_flash_sale

    v = dict(values)
    target, at = v.pop("crash"), v.pop("crash_at")
    durable = v.pop("durable")
    faults = () if target == "none" else (Fault(target=target, at=at, restart_after=0.5),)
    cfg = FlashSaleConfig(seed=v.pop("seed"), submissions=100, arrival_profile="piecewise",
                          piecewise=((0.0, 100.0), (0.7, 5.0)), stock=100, servers=1, consumers=2,
                          fsync_interval_s=0.2, durable=durable, persistent=durable, faults=faults,
                          keep_history=None, **v)
    return run_flash_sale(cfg)


def one_summary(result: Any) -> str:
    counts, cfg = result.checker.counts, result.config
    design = (f"{'durable+persistent' if cfg.durable else 'transient'} / "
              f"{'confirms' if cfg.confirms else 'no confirms'} / {cfg.ack}-ack")
    crash = ", ".join(f"{f.target} at {f.at:g} s" for f in cfg.faults) or "no crash"
    lines = [f"{design}; {crash}", f"lost {counts['lost']}, duplicated {counts['duplicated']}, "
                                   f"vouchers {counts['granted']} of {cfg.submissions}"]
    lost = [a.chain for a in result.checker.anomalies if a.kind == "lost"]
    if lost:
        lines.append("why: " + lost[0])
    return "\n".join(lines)


def one_plot(result: Any) -> Any:
    from simulator.plots import plot_queue_depth

    fig = plot_queue_depth(result)
    for f in result.config.faults:
        fig.axes[0].axvline(f.at, color="red", linestyle="--")
    return fig


PRESETS: dict[str, dict[str, Any]] = {
    "broker crash, transient queue, auto-ack: lost": {"durable": False, "confirms": False, "ack": "auto"},
    "broker crash, the safe design: nothing lost": {},
    "broker crash, durable but no confirms": {"confirms": False},
    "consumer crash with auto-ack: lost": {"crash": "consumer-1", "ack": "auto"},
    "consumer crash with manual ack: redelivered": {"crash": "consumer-1"},
}


def panel(seed: int = 7) -> Panel:
    controls = {
        "durable": checkbox("durable queue + persistent messages", True),
        "confirms": checkbox("publisher confirms", True),
        "ack": dropdown("consumer ack", ["manual", "auto"], "manual"),
        "crash": dropdown("crash", ["broker", "consumer-1", "producer", "none"], "broker"),
        "crash_at": float_slider("crash at (s)", 0.5, 0.1, 2.0, 0.1),
        "seed": dropdown("seed", [seed, 1, 2, 3], seed),
    }
    return build_panel("loss", controls, PRESETS, one_summary, one_plot, runner=one_run,
                       title="Message loss: crash something")


def key_numbers(result: Any) -> dict[str, Any]:
    m = result.metrics
    crashes = ("broker", "consumer")
    return {
        "designs": len(m["lost"]), "zero_loss_designs": len(m["zero_loss_designs"]),
        "safe_design_lost": sum(m["lost"][SAFE][t] for t in crashes),
        "transient_auto_broker_lost": m["lost"]["transient / no confirms / auto-ack"]["broker"],
        "auto_ack_consumer_lost": m["lost"]["durable+persistent / confirms / auto-ack"]["consumer"],
        "no_confirms_broker_lost": m["lost"]["durable+persistent / no confirms / manual-ack"]["broker"],
        "reseed_full_oversold": m["reseed_oversold"]["full"], "reseed_ledger_oversold": m["reseed_oversold"]["ledger"],
        **{f"aof_oversold_safety_{s}": n for s, n in m["safety_oversold"].items()},
    }


CHECKS = {
    "only_safe_design": lambda n: n["zero_loss_designs"] == 1 and n["safe_design_lost"] == 0
    and n["transient_auto_broker_lost"] > 0 and n["auto_ack_consumer_lost"] > 0 and n["no_confirms_broker_lost"] > 0,
    "reseed": lambda n: n["reseed_full_oversold"] > 0 and n["reseed_ledger_oversold"] == 0
    and n["aof_oversold_safety_0"] > 0
    and any(v == 0 for k, v in n.items() if k.startswith("aof_oversold_safety_") and k != "aof_oversold_safety_0"),
}


def check_claims(numbers: Mapping[str, Any]) -> None:
    assert_claims(LESSON, CHECKS, numbers)


def cells() -> list[c.Cell]:
    L = LESSON
    return [
        c.title(L, "a matrix of tiny flash sales: every combination of durable queue + persistent messages, "
                   "publisher confirms and manual ack, against a crash of the producer, the broker, a consumer "
                   "or Redis; then what happens to the stock when Redis loses it."),
        c.imports("lesson04_loss"),
        *c.parameters({"SEED": 7, "SUBMISSIONS": 100, "CRASH_AT": 0.5, "SAFETY_STOCKS": (0, 10, 20, 30)}),
        c.md("""
            ## Where a message can vanish (메시지 유실)

            Between the API and the voucher a submission lives in the broker's memory, on its disk, in a
            consumer's buffer. The fixes the notes list: a **durable queue with persistent messages** (영속성,
            written to disk), **publisher confirms** (the broker says "stored"), and **manual acks** (ack only
            after the work is committed; no ack means redelivery).
            """),
        c.predict("MY_SAFE_DESIGNS", "Eight designs (2 x 2 x 2 switches) face a broker crash and a consumer "
                                     "crash. How many of them lose nothing in both?"),
        c.guess("MY_SAFE_DESIGNS"),
        c.code("""
            result = lesson.run(SEED, submissions=SUBMISSIONS, crash_at=CRASH_AT, safety_stocks=SAFETY_STOCKS)
            print(lesson.matrix_lines(result))
            compare(MY_SAFE_DESIGNS, len(result.metrics["zero_loss_designs"]), what="designs that lose nothing")
            """, check=True),
        c.md("""
            Only one: durable + persistent + confirms + manual ack. A transient queue loses what was in memory;
            without confirms the API answered 200 for messages still in the broker's unflushed batch; auto-ack
            loses what sat in the dead consumer's buffer.
            """),
        c.code("""
            from simulator.plots_loss import plot_loss_matrix
            show(plot_loss_matrix(result))
            """),
        c.md("The bold row is the design the lessons use by default. The Redis columns are next."),
        c.md("""
            ## When Redis loses the stock

            Redis keeps the stock in memory. If the key is lost, refilling it to the full stock forgets what was
            already granted; the notes' fix is to keep the total and the granted count in the database and
            rebuild from that ledger. With AOF `everysec`, up to one second of decrements can come back after a
            crash, and a **safety stock** (안전 재고) sized to that window absorbs it.
            """),
        c.code("print(lesson.redis_lines(result))", check=True),
        c.code("""
            from simulator.plots_loss import plot_reseed, plot_safety_stock
            show(plot_reseed(result))
            show(plot_safety_stock(result))
            """),
        c.md("The oversell shrinks as the safety stock grows, and is gone once it covers the lost window."),
        c.panel_intro("Switch durability, confirms and ack mode, choose what crashes and when."),
        c.panel(),
        *c.exercise(L, 1, "With the safe design, crash the producer (the API server) instead. Is anything lost, "
                          "and what did the clients see?"),
        *c.exercise(L, 2, "Why does a durable queue without publisher confirms still lose messages to a broker "
                          "crash?"),
        c.md("## Key numbers and the lesson's claims"),
        c.code("""
            numbers = lesson.key_numbers(result)
            print_numbers(numbers)
            lesson.check_claims(numbers)
            """, check=True),
    ]
