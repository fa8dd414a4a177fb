"""Lesson 01: scale-up vs scale-out (수직 확장 vs 수평 확장) - curriculum A1-A3."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from simulator.lessons import cells as c
from simulator.lessons.claims import assert_claims
from simulator.lessons.panel import Panel, build_panel, dropdown, float_slider, slider
from simulator.lessons.table import lesson

LESSON = lesson(1)
OUT, UP = "scale-out", "scale-up"


def available() -> tuple[bool, str]:
    try:
        import simulator.plots_scale  # noqa: F401
        import simulator.scenarios.scale  # noqa: F401
    except ImportError as exc:
        return False, f"scale scenario not importable ({exc})"
    return True, ""


def run(seed: int, **knobs: Any) -> Any:
    from simulator.scenarios.scale import make_config, run_scale

    return run_scale(make_config(seed=seed, **knobs))


def comparison(result: Any) -> str:
    """The two architectures side by side, from the full result."""
    rows = [("machines", lambda v: f"{v['servers']} x {v['cores_per_server']} cores"),
            ("p50 response (ms)", lambda v: f"{v['p50_ms']:.1f}"), ("p99 response (ms)", lambda v: f"{v['p99_ms']:.1f}"),
            ("throughput (ok/s)", lambda v: f"{v['throughput_rps']:.1f}"),
            ("errors + timeouts", lambda v: f"{v['error_rate']:.1%}"),
            ("cost per hour", lambda v: f"{v['cost_per_hour']:.2f}"),
            ("dropped while a machine is out", lambda v: str(v["dropped_during_failure"])),
            ("sessions lost", lambda v: str(v["sessions_lost"]))]
    out, up = result.variants[OUT], result.variants[UP]
    lines = [f"{'':<32}{OUT:>12}{UP:>12}"]
    lines += [f"{label:<32}{fmt(out):>12}{fmt(up):>12}" for label, fmt in rows]
    return "\n".join(lines)


def knee_lines(result: Any) -> str:
    k = result.metrics["knee"]
    lines = [f"{'utilisation':>11}{'simulated ms':>14}{'M/M/c ms':>10}"]
    lines += [f"{r:>11.0%}{s:>14.1f}{m:>10.1f}" for r, s, m in zip(k["rho"], k["simulated_mean_ms"], k["mmc_mean_ms"])]
    return "\n".join(lines)


# ------------------------------------------------------------------ the panel: a lighter run
@dataclass
class Quick:
    """Both architectures on the panel's requests, without the utilisation sweep."""
    config: Any
    runs: dict[str, Any]
    metrics: dict[str, Any]


def quick(values: dict[str, Any]) -> Quick:
    from simulator.scenarios.scale import make_config
    from simulator.scenarios.scale_model import architectures, simulate_variant, timeline

    cfg = make_config(**values)
    runs = {arch.name: simulate_variant(cfg, arch) for arch in architectures(cfg)}
    return Quick(cfg, runs, {"timeline": timeline(runs)})


def quick_summary(q: Quick) -> str:
    n = q.config.requests
    lines = [f"{'':<28}{OUT:>12}{UP:>12}"]

    def row(label: str, fn: Any) -> None:
        lines.append(f"{label:<28}" + "".join(f"{fn(q.runs[v]):>12}" for v in (OUT, UP)))

    row("machines", lambda r: f"{r.arch.servers} x {r.arch.cores}")
    row("p99 response (ms)", lambda r: f"{r.latency_ms.to_dict().get('p99') or 0:.1f}")
    row("answered ok", lambda r: f"{r.ok / n:.1%}")
    row("dropped while one is out", lambda r: str(r.window_failed))
    row("sessions lost", lambda r: str(r.sessions_lost))
    row("forced re-logins", lambda r: str(r.relogins))
    return "\n".join(lines)


def plot_quick(q: Quick) -> Any:
    from simulator.plots_scale import plot_failure_timeline

    return plot_failure_timeline(q)


PANEL_BASE = {"requests": 1500, "knee_requests": 1000}
PRESETS: dict[str, dict[str, Any]] = {
    "one machine dies: scale-out degrades, scale-up stops": {},
    "shared session store (Redis): no sessions lost": {"session_store": "redis"},
    "round robin instead of sticky": {"balancer": "round-robin"},
    "opening spike": {"arrival_profile": "spike"},
    "2 big servers instead of 4": {"servers": 2, "cores_per_server": 4},
    "short replacement downtime": {"replacement_downtime_s": 0.5},
}


def panel(seed: int = 7) -> Panel:
    controls = {
        "servers": slider("servers (scale-out)", 4, 1, 8),
        "cores_per_server": slider("cores per server", 2, 1, 8),
        "balancer": dropdown("balancer", ["sticky", "round-robin", "least-connections"], "sticky"),
        "arrival_profile": dropdown("traffic", ["flat", "spike"], "flat"),
        "session_store": dropdown("sessions", ["local", "redis"], "local"),
        "failure_at_s": float_slider("a machine dies at (s)", 1.0, 0.0, 3.0, 0.25),
        "replacement_downtime_s": float_slider("downtime (s)", 1.5, 0.0, 3.0, 0.25),
        "seed": dropdown("seed", [seed, 1, 2, 3], seed),
    }
    return build_panel("scale", controls, PRESETS, quick_summary, plot_quick, base=PANEL_BASE, runner=quick,
                       title="Scale-out vs scale-up through a machine failure")


def key_numbers(local: Any, shared: Any) -> dict[str, Any]:
    out, up = local.variants[OUT], local.variants[UP]
    s_out, s_up = shared.variants[OUT], shared.variants[UP]
    return {
        "out_dropped_share_in_failure": out["failure"]["dropped_share"],
        "up_dropped_share_in_failure": up["failure"]["dropped_share"],
        "out_error_rate": out["error_rate"], "up_error_rate": up["error_rate"],
        "sessions_lost_local_out": out["sessions_lost"], "sessions_lost_shared_out": s_out["sessions_lost"],
        "sessions_lost_shared_up": s_up["sessions_lost"],
        "p50_ms_local_out": round(out["p50_ms"], 1), "p50_ms_shared_out": round(s_out["p50_ms"], 1),
        "knee_growth_60_to_90": round(local.metrics["knee_growth_60_to_90"], 2),
        "cost_out_per_hour": round(out["cost_per_hour"], 3), "cost_up_per_hour": round(up["cost_per_hour"], 3),
    }


CHECKS = {
    "failure": lambda n: n["out_dropped_share_in_failure"] < 0.1 and n["up_dropped_share_in_failure"] == 1.0,
    "sessions": lambda n: n["sessions_lost_local_out"] > 0 and n["sessions_lost_shared_out"] == 0
    and n["sessions_lost_shared_up"] == 0 and n["p50_ms_shared_out"] > n["p50_ms_local_out"],
    "knee": lambda n: n["knee_growth_60_to_90"] >= 3 and n["cost_up_per_hour"] > n["cost_out_per_hour"],
}


def check_claims(numbers: Mapping[str, Any]) -> None:
    assert_claims(LESSON, CHECKS, numbers)


def cells() -> list[c.Cell]:
    L = LESSON
    return [
        c.title(L, "the same requests served by four 2-core servers behind a load balancer and by one 8-core "
                   "machine; one machine dies part-way; sessions kept in local memory or in a shared Redis; "
                   "and the utilisation knee that explains the usual ~60 % rule."),
        c.imports("lesson01_scale"),
        *c.parameters({"SEED": 7, "REQUESTS": 12000, "SERVERS": 4, "CORES_PER_SERVER": 2, "FAILURE_AT_S": 10.0,
                       "REPLACEMENT_DOWNTIME_S": 8.0, "KNEE_REQUESTS": 20000}),
        c.md("""
            ## Two ways to grow

            **Scale-out** (수평 확장) adds machines behind a **load balancer** (로드 밸런서): good for a temporary
            spike and for availability, at the price of session and consistency headaches and more machines to
            run. **Scale-up** (수직 확장) buys a bigger machine: simpler to manage, but replacing it means
            **downtime** (다운타임) and there is a **hardware ceiling** (확장 한계).
            """),
        c.predict("MY_UP_DROPPED_SHARE", "The machine dies at 10 s and is out for 8 s. What share of the requests "
                                         "arriving in that window does the single big machine drop (0 to 1)?"),
        c.guess("MY_UP_DROPPED_SHARE"),
        c.code("""
            local = lesson.run(SEED, requests=REQUESTS, servers=SERVERS, cores_per_server=CORES_PER_SERVER,
                               failure_at_s=FAILURE_AT_S, replacement_downtime_s=REPLACEMENT_DOWNTIME_S,
                               knee_requests=KNEE_REQUESTS)
            print(lesson.comparison(local))
            compare(MY_UP_DROPPED_SHARE, local.variants["scale-up"]["failure"]["dropped_share"],
                    what="share dropped by scale-up while it is out")
            """, check=True),
        c.md("""
            With four machines, losing one leaves three serving; the balancer routes around it. With one machine
            there is nothing left: every request in the window fails, and the backlog after it shows in the
            error rate.
            """),
        c.code("""
            from simulator.plots_scale import plot_failure_timeline
            show(plot_failure_timeline(local))
            """),
        c.md("""
            ## Sessions (세션 관리)

            With sticky sessions each user's login lives in the memory of one server. When that server dies, its
            users are logged out. A shared session store (Redis) survives any one server, for one extra network
            hop per request.
            """),
        c.code("""
            shared = lesson.run(SEED, requests=REQUESTS, servers=SERVERS, cores_per_server=CORES_PER_SERVER,
                                failure_at_s=FAILURE_AT_S, replacement_downtime_s=REPLACEMENT_DOWNTIME_S,
                                knee_requests=KNEE_REQUESTS, session_store="redis")
            for name, r in (("local memory", local), ("shared Redis", shared)):
                v = r.variants["scale-out"]
                print(f"{name:<13} sessions lost {v['sessions_lost']:>4}, p50 {v['p50_ms']:.1f} ms")
            """, check=True),
        c.md("Nothing lost with the shared store; the median response pays the extra hop."),
        c.md("""
            ## Why scale at ~60 % CPU

            A queue's waiting time grows like 1/(1-ρ) as utilisation ρ rises. Here one core serves a queue at
            utilisations from 10 % to 95 %, beside the M/M/c formula.
            """),
        c.code("print(lesson.knee_lines(local))", check=True),
        c.md("""
            From 60 % to 90 % the mean response grows several times over: past 60-70 % a little more traffic
            costs a lot of latency, which is why that is the usual signal to add capacity.
            """),
        c.code("""
            from simulator.plots_scale import plot_cost, plot_utilisation_knee
            show(plot_utilisation_knee(local))
            show(plot_cost(local))
            """),
        c.md("One machine's price grows faster than its capacity and stops at the ceiling; N small ones grow in a line."),
        c.panel_intro("Change the number of servers, the balancer, the traffic shape and where sessions live; the "
                      "panel serves fewer requests so it answers quickly."),
        c.panel(),
        *c.exercise(L, 1, "With round-robin balancing and local sessions, what happens to sessions even without "
                          "a failure? (Hint: compare forced re-logins.)"),
        *c.exercise(L, 2, "Under the opening spike and with no failure (`failure_at_s=None`), give the big machine "
                          "faster cores (`scale_up_core_speed` 1, 1.5, 2). What does a faster box buy, and what "
                          "does it not?"),
        c.md("## Key numbers and the lesson's claims"),
        c.code("""
            numbers = lesson.key_numbers(local, shared)
            print_numbers(numbers)
            lesson.check_claims(numbers)
            """, check=True),
    ]
