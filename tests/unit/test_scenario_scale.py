"""The ``scale`` scenario (lesson 01, curriculum A1-A3): each test checks one claim of the lesson
on a seeded run."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import simpy  # noqa: E402

from simulator.errors import InputError  # noqa: E402
from simulator.plots_scale import (plot_cost, plot_failure_timeline, plot_scale,  # noqa: E402
                                   plot_scale_latency, plot_utilisation_knee)
from simulator.scenarios.scale import (ScaleConfig, make_config, run_scale,  # noqa: E402
                                       utilisation_sweep)
from simulator.sim.servers import ApiServer, LoadBalancer  # noqa: E402

FAST = {"knee_requests": 1000}  # the sweep is not what these runs are about


@pytest.fixture(scope="module")
def default():
    return run_scale(ScaleConfig())


@pytest.fixture(scope="module")
def sessions_pair():
    base = {**FAST, "balancer": "sticky"}
    return (run_scale(ScaleConfig(**base, session_store="local")),
            run_scale(ScaleConfig(**base, session_store="redis")))


# ---------------------------------------------------------------------- A1: failure
def test_scale_out_keeps_serving_while_the_big_server_drops_its_downtime(default):
    out, up = default.variants["scale-out"], default.variants["scale-up"]
    assert out["failure"]["requests"] > 1000 and up["failure"]["requests"] > 1000
    assert out["failure"]["dropped_share"] < 0.5
    assert out["error_rate"] < 0.5
    # the single machine answers nobody who arrives while it is being replaced
    assert up["failure"]["dropped"] == up["failure"]["requests"]
    assert up["dropped_during_failure"] > 100 * max(out["dropped_during_failure"], 1)
    # and the timeline shows it: no successes at all in bins wholly inside the window
    tl, start = default.metrics["timeline"], default.config.failure_at_s
    end = start + default.config.replacement_downtime_s
    inside = [i for i, t in enumerate(tl["t"]) if t >= start + 0.5 and t + tl["bin_s"] <= end]
    assert inside
    assert all(tl["scale-up"]["ok_per_s"][i] == 0 for i in inside)
    assert all(tl["scale-out"]["ok_per_s"][i] > 0 for i in inside)
    # and once the replacement is in, the big machine serves again
    after = [i for i, t in enumerate(tl["t"]) if end + 0.5 <= t < end + 4]
    assert after and all(tl["scale-up"]["ok_per_s"][i] > 0 for i in after)


def test_without_a_failure_both_serve_everything_and_one_pool_waits_less():
    r = run_scale(ScaleConfig(**FAST, failure_at_s=None))
    out, up = r.variants["scale-out"], r.variants["scale-up"]
    assert out["ok"] == up["ok"] == r.config.requests
    assert out["failure"] is None and out["sessions_lost"] == up["sessions_lost"] == 0
    # one queue in front of 8 cores beats 4 queues in front of 2 each (pooling)
    assert up["p99_ms"] < out["p99_ms"]


def test_same_arrivals_for_both_variants_whatever_the_other_does():
    # common random numbers: the scale-up run does not depend on the scale-out knobs
    a = run_scale(ScaleConfig(**FAST, balancer="round-robin")).to_dict()["variants"]["scale-up"]
    b = run_scale(ScaleConfig(**FAST, balancer="least-connections")).to_dict()["variants"]["scale-up"]
    assert a.pop("balancer") == b.pop("balancer")
    assert a == b


def test_scale_out_after_failure_analytic_load(default):
    a = default.analytic
    assert a["scale-out"]["rho"] == pytest.approx(0.6)
    assert a["scale-out"]["after_failure"]["rho"] == pytest.approx(0.8)  # 3 machines left
    assert a["scale-out"]["after_failure"]["mean_response_ms"] > a["scale-out"]["mean_response_ms"]


# ---------------------------------------------------------------------- A2: sessions
def test_sticky_local_sessions_die_with_the_server_shared_store_keeps_them(sessions_pair):
    local, shared = sessions_pair
    lo, sh = local.variants["scale-out"], shared.variants["scale-out"]
    assert lo["sessions_lost"] > 0 and lo["relogins"] > 0
    # only the dead machine's share (about one in four), not everybody's
    assert lo["sessions_lost"] < 0.5 * local.config.sessions
    assert local.variants["scale-up"]["sessions_lost"] > lo["sessions_lost"]
    for v in shared.variants.values():
        assert v["sessions_lost"] == 0 and v["relogins"] == 0
    # the price of the shared store is one more hop on every request
    hop = shared.config.session_hop_ms
    assert sh["p50_ms"] > lo["p50_ms"]
    assert sh["p50_ms"] - lo["p50_ms"] == pytest.approx(hop, rel=0.2)


def test_round_robin_with_local_sessions_logs_users_in_again_and_again():
    rr = run_scale(ScaleConfig(**FAST, balancer="round-robin", failure_at_s=None))
    sticky = run_scale(ScaleConfig(**FAST, balancer="sticky", failure_at_s=None))
    assert sticky.variants["scale-out"]["relogins"] == 0
    assert rr.variants["scale-out"]["relogins"] > 0.5 * rr.config.requests


# ---------------------------------------------------------------------- A3: the knee and the price
def test_knee_matches_mmc_at_half_load_and_grows_past_the_trigger(default):
    knee = default.metrics["knee"]
    i = knee["rho"].index(0.5)
    assert knee["simulated_mean_ms"][i] == pytest.approx(knee["mmc_mean_ms"][i], rel=0.10)
    sim = dict(zip(knee["rho"], knee["simulated_mean_ms"]))
    assert sim[0.9] > 3 * sim[0.6]
    assert default.metrics["knee_growth_60_to_90"] == pytest.approx(sim[0.9] / sim[0.6])


def test_more_cores_push_the_knee_right():
    one = utilisation_sweep(cores=1, rhos=(0.6, 0.9), requests=20_000, seed=3)
    eight = utilisation_sweep(cores=8, rhos=(0.6, 0.9), requests=20_000, seed=3)
    growth = [s["simulated_mean_ms"][1] / s["simulated_mean_ms"][0] for s in (one, eight)]
    assert growth[1] < growth[0]


def test_scale_up_price_is_super_linear_scale_out_linear(default):
    cc = default.analytic["cost_curve"]
    cores, up, out = cc["total_cores"], cc["scale_up_per_hour"], cc["scale_out_per_hour"]
    pairs = [(u, o) for k, u, o in zip(cores, up, out) if u is not None]
    ups = [u for u, _ in pairs]
    steps_up = [b - a for a, b in zip(ups, ups[1:])]
    assert all(b > a for a, b in zip(steps_up, steps_up[1:]))  # each core dearer than the last
    steps_out = [b - a for a, b in zip(out, out[1:])]
    assert max(steps_out) - min(steps_out) < 1e-5  # one more machine always costs the same
    k = cores.index(64)
    assert up[k] > 2 * up[cores.index(32)]
    assert up[k] > out[k]
    assert all(u is None for kk, u in zip(cores, up) if kk > cc["core_ceiling"])


# ---------------------------------------------------------------------- determinism
def test_same_seed_same_dict_other_seed_other_dict():
    a = run_scale(ScaleConfig(**FAST, seed=11)).to_dict()
    b = run_scale(ScaleConfig(**FAST, seed=11)).to_dict()
    c = run_scale(ScaleConfig(**FAST, seed=12)).to_dict()
    assert a == b
    assert a["variants"] != c["variants"]
    assert a["scenario"] == "scale" and a["seed"] == 11
    assert set(a) == {"scenario", "seed", "config", "metrics", "analytic", "variants"}


def test_spike_at_opening_hurts_the_tail():
    flat = run_scale(ScaleConfig(**FAST, failure_at_s=None, arrival_rate=480))
    spike = run_scale(ScaleConfig(**FAST, failure_at_s=None, arrival_profile="spike",
                                  arrival_rate=1200, spike_decay_s=5))
    for v in ("scale-out", "scale-up"):
        assert spike.variants[v]["p99_ms"] > 3 * flat.variants[v]["p99_ms"]


def test_report_names_both_architectures(default):
    text = default.report()
    for needle in ("scale-out", "scale-up", "p99 response", "sessions lost", "knee", "cost per hour"):
        assert needle in text


# ---------------------------------------------------------------------- plots
def test_plots_draw_the_expected_things(default):
    fig = plot_scale_latency(default)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "response time (ms)"
    assert len(ax.patches) == 4  # p50 and p99 for each architecture
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights[-1] == pytest.approx(max(default.variants[v]["p99_ms"] for v in default.variants))
    plt.close(fig)

    fig = plot_utilisation_knee(default)
    ax = fig.axes[0]
    assert "utilisation" in ax.get_xlabel() and ax.get_ylabel() == "mean response (ms)"
    lines = ax.get_lines()
    assert len(lines) == 2
    assert len(lines[1].get_xdata()) == len(default.metrics["knee"]["rho"])
    plt.close(fig)

    fig = plot_failure_timeline(default)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "simulated time (s)" and ax.get_ylabel() == "successful requests / s"
    lines = ax.get_lines()
    assert len(lines) == 3  # two architectures and the failure marker
    assert list(lines[2].get_xdata()) == [default.config.failure_at_s] * 2
    plt.close(fig)

    fig = plot_cost(default)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "total cores" and ax.get_ylabel() == "cost per hour"
    assert len(ax.get_lines()) == 3
    plt.close(fig)

    fig, given = plt.subplots()
    assert plot_cost(default, ax=given) is fig
    plt.close(fig)
    fig = plot_scale(default)
    assert len(fig.axes) == 4
    plt.close(fig)


# ---------------------------------------------------------------------- config errors
@pytest.mark.parametrize("field, value", [
    ("servers", 0),
    ("request_cpu_ms", math.nan),
    ("arrival_rate", -5.0),
    ("balancer", "random"),
    ("session_store", "disk"),
    ("replacement_downtime_s", math.inf),
])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(InputError) as info:
        make_config(**{field: value})
    assert info.value.field == field
    with pytest.raises(InputError):
        run_scale({field: value})


@pytest.mark.parametrize("kwargs, field", [({"rhos": (0.5, 1.0)}, "rhos"), ({"cores": 0}, "cores"),
                                            ({"cpu_ms": math.nan}, "cpu_ms")])
def test_bad_sweep_arguments_name_the_argument(kwargs, field):
    with pytest.raises(InputError) as info:
        utilisation_sweep(**kwargs, requests=100)
    assert info.value.field == field


def test_a_machine_past_the_ceiling_is_refused():
    with pytest.raises(InputError) as info:
        make_config(servers=40, cores_per_server=4, core_ceiling=128)
    assert "core_ceiling" in str(info.value)


# ---------------------------------------------------------------------- the balancer and servers
def _servers(env: simpy.Environment, n: int, speed: float = 1.0, prefix: str = "s") -> list[ApiServer]:
    return [ApiServer(env, f"{prefix}{i}", cores=1, threads=4, cpu_time=lambda: 1.0, speed=speed)
            for i in range(n)]


def test_sticky_pins_a_session_while_its_server_is_up():
    env = simpy.Environment()
    servers = _servers(env, 3)
    lb = LoadBalancer(servers, "sticky")
    first = {s: lb.pick(s) for s in ("a", "b", "c")}
    assert len({srv.name for srv in first.values()}) == 3
    assert all(lb.pick(s) is first[s] for s in ("a", "b", "c") for _ in range(3))
    first["a"].crash()
    moved = lb.pick("a")
    assert moved is not first["a"] and moved.up and lb.repinned == 1
    first["a"].restart()
    assert lb.pick("a") is moved  # it stays where it went
    # without a session (or with another policy) it is plain round robin, as before
    rr = LoadBalancer(_servers(env, 2), "round-robin")
    assert [rr.pick().name for _ in range(4)] == ["s0", "s1", "s0", "s1"]


def test_speed_factor_shortens_cpu_time():
    env = simpy.Environment()
    fast = _servers(env, 1, speed=2.0, prefix="fast")[0]
    plain = _servers(env, 1, prefix="plain")[0]

    def work():
        return 200
        yield  # pragma: no cover - makes this a generator

    done = {}
    for srv in (fast, plain):
        proc = srv.handle(work)
        proc.callbacks.append(lambda _e, name=srv.name, p=proc: done.setdefault(name, (env.now, p.value)))
    env.run()
    assert done[fast.name] == (0.5, 200) and done[plain.name] == (1.0, 200)
    with pytest.raises(ValueError):
        ApiServer(env, "bad", cores=1, threads=1, cpu_time=lambda: 1.0, speed=0.0)
