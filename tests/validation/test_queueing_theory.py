"""The engine against queueing theory, in the way Ciw validates its simulator.

Fixed seeds, a long horizon, the warm-up (an empty queue at the start) discarded, several
seeds per case.  The simulated mean wait must be within max(2%, 3 standard errors) of Erlang
C's, with the standard error estimated by batch means inside ``run_mmc``; the same bound
applies to the average over the seeds, which is tighter.  Little's law is checked with L
measured independently (the exact time average of the number in the system).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Literal

import pydantic
import pytest

from simulator.analysis import mmc_wait_quantile
from simulator.config_errors import input_error_from
from simulator.errors import InputError
from simulator.scenarios.mmc import MMcConfig, MMcResult, make_config, run_mmc

SEEDS = (1, 2, 3)
CUSTOMERS = 500_000  # ~3 runs of 2-3 s each per case on one core

# (servers, arrival rate, service rate): M/M/1 at rho 0.5 and 0.8, M/M/4 at 0.8, M/M/10 at 0.7
CASES = {"mm1-rho0.5": (1, 0.5, 1.0), "mm1-rho0.8": (1, 0.8, 1.0),
         "mm4-rho0.8": (4, 3.2, 1.0), "mm10-rho0.7": (10, 7.0, 1.0)}


@lru_cache(maxsize=None)
def runs(case: str) -> tuple[MMcResult, ...]:
    """Each case simulated once per seed and shared by the tests below."""
    c, lam, mu = CASES[case]
    return tuple(run_mmc(MMcConfig(servers=c, arrival_rate=lam, service_rate=mu,
                                   customers=CUSTOMERS, seed=seed)) for seed in SEEDS)


def tolerance(expected: float, stderr: float) -> float:
    return max(0.02 * expected, 3.0 * stderr)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_mean_wait_matches_erlang_c(case):
    results = runs(case)
    expected = results[0].analytic["mean_wait"]
    for r in results:
        m = r.metrics
        assert m["customers"] == CUSTOMERS - CUSTOMERS // 10  # the warm-up was left out
        se = m["mean_wait_stderr"]
        # the bound is only a test if the standard error is small: not 0, not huge
        assert 0 < 3 * se < 0.12 * expected, (case, r.config.seed, se)
        assert abs(m["mean_wait"] - expected) <= tolerance(expected, se), (
            f"{case} seed {r.config.seed}: simulated {m['mean_wait']} vs {expected} "
            f"(3 s.e. = {3 * se:.4g})")
    pooled = sum(r.metrics["mean_wait"] for r in results) / len(results)
    pooled_se = math.sqrt(sum(r.metrics["mean_wait_stderr"] ** 2 for r in results)) / len(results)
    assert abs(pooled - expected) <= tolerance(expected, pooled_se), (case, pooled, expected)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_waiting_share_quantiles_and_utilisation(case):
    for r in runs(case):
        m, a = r.metrics, r.analytic
        assert m["waited_share"] == pytest.approx(a["erlang_c"], rel=0.05)  # P(wait > 0) = C
        assert m["utilisation"] == pytest.approx(a["utilisation"], rel=0.01)
        assert m["throughput"] == pytest.approx(r.config.arrival_rate, rel=0.01)
        # p99 has no standard error of its own here: a coarse bound that still catches a
        # wrong service order or distribution (LIFO, for one, stretches the tail several-fold)
        assert m["p99_wait"] == pytest.approx(a["p99_wait"], rel=0.10)
        c, lam, mu = CASES[case]
        assert m["p90_wait"] == pytest.approx(mmc_wait_quantile(lam, mu, c, 0.9), rel=0.10)
        # the median is 0 when fewer than half wait; skip it where C is too close to 1/2 to tell
        if a["erlang_c"] > 0.55:
            assert m["p50_wait"] == pytest.approx(a["p50_wait"], rel=0.15)
        elif a["erlang_c"] < 0.45:
            assert m["p50_wait"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_littles_law(case):
    for r in runs(case):
        m, lam = r.metrics, r.config.arrival_rate
        # L from the area under N(t), W from each customer's own times: two measurements
        assert m["mean_in_system"] == pytest.approx(lam * m["mean_response"], rel=0.01)
        # and both against theory, with the wait's standard error carried over to L
        expected = r.analytic["mean_in_system"]
        assert abs(m["mean_in_system"] - expected) <= tolerance(expected, lam * m["mean_wait_stderr"]) \
            + 0.01 * expected


def test_same_seed_same_output_different_seed_different_output():
    cfg = MMcConfig(servers=3, arrival_rate=2.4, service_rate=1.0, customers=20_000, seed=11)
    first, again = run_mmc(cfg).to_dict(), run_mmc(cfg).to_dict()
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    other = run_mmc(cfg.model_copy(update={"seed": 12})).to_dict()
    assert other["metrics"]["mean_wait"] != first["metrics"]["mean_wait"]
    assert other["analytic"] == first["analytic"]


def test_result_shape_and_engine_work():
    r = run_mmc(MMcConfig(servers=2, arrival_rate=1.0, service_rate=1.0, customers=10_000, seed=3))
    d = r.to_dict()
    assert d["scenario"] == "mmc" and d["seed"] == 3
    assert d["config"]["warmup"] == 1000  # the default, as run
    assert {"mean_wait", "mean_response", "p50_wait", "p99_wait", "utilisation", "throughput",
            "customers", "events"} <= d["metrics"].keys()
    assert {"mean_wait", "erlang_c", "utilisation"} <= d["analytic"].keys()
    assert d["analytic"]["erlang_c"] == pytest.approx(1 / 3, rel=1e-5)
    # one arrival timeout, one service timeout and one "done" event per customer, plus the
    # samples of the time series: no SimPy process per customer
    assert 3 * 10_000 <= d["metrics"]["events"] <= 3 * 10_000 + 5000
    assert "theory" in r.report() and "M/M/2" in r.report()
    json.dumps(d, allow_nan=False)  # strict JSON: no NaN or Infinity anywhere


def test_tiny_runs_still_report():
    d = run_mmc(MMcConfig(customers=1, warmup=0)).to_dict()
    assert d["metrics"]["customers"] == 1 and d["metrics"]["mean_wait_stderr"] is None
    json.dumps(d, allow_nan=False)


# --------------------------------------------------------------------------- bad config
@pytest.mark.parametrize("values,field,value,words", [
    ({"servers": 1, "arrival_rate": 2, "service_rate": 1}, "arrival_rate", 2, "never settles"),
    ({"servers": 2, "arrival_rate": 2, "service_rate": 1}, "arrival_rate", 2, "rho = 1 "),
    ({"servers": 0}, "servers", 0, "greater than or equal to 1"),
    ({"service_rate": -1.0}, "service_rate", -1.0, "greater than 0"),
    ({"arrival_rate": float("nan")}, "arrival_rate", float("nan"), "finite"),
    ({"customers": 100, "warmup": 100}, "warmup", 100, "fewer than customers"),
    ({"warmup": -1}, "warmup", -1, "greater than or equal to 0"),
    ({"bogus": 1}, "bogus", 1, "not permitted"),
])
def test_bad_config_is_an_input_error_naming_field_value_and_rule(values, field, value, words):
    with pytest.raises(InputError) as info:
        make_config(**values)
    err = info.value
    assert err.field == field
    assert err.value == value or (value != value and err.value != err.value)  # NaN != NaN
    assert words in err.allowed
    assert "\n" not in str(err)


def test_cli_spelling_and_a_field_left_at_its_default():
    with pytest.raises(pydantic.ValidationError) as info:
        MMcConfig.model_validate({"arrival_rate": "9", "service_rate": "1"})  # servers default 4
    err = input_error_from(info.value, flags=True)
    assert err.field == "--arrival-rate" and err.value == "9"
    assert str(err).startswith("--arrival-rate: got '9'; allowed: less than servers x service_rate = 4")


class _Inner(pydantic.BaseModel):
    at: float = pydantic.Field(ge=0)


class _Outer(pydantic.BaseModel):
    pick: int | Literal["first", "last"] = 1
    faults: list[_Inner] = []
    low: int = 0
    high: int = 1

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> "_Outer":
        if self.low > self.high:
            raise ValueError(f"high ({self.high}) must not be below low ({self.low})")
        return self


def _error(values: dict, **kwargs) -> InputError:
    with pytest.raises(pydantic.ValidationError) as info:
        _Outer.model_validate(values)
    return input_error_from(info.value, **kwargs)


def test_input_error_from_paths_unions_prefix_and_model_checks():
    nested = _error({"faults": [{"at": 1}, {"at": -2}]})
    assert (nested.field, nested.value) == ("faults.1.at", -2)
    assert _error({"faults": [{"at": -2}]}, flags=True).field == "--crash[0].at"
    assert _error({"faults": [{"at": -2}]}, prefix="world.").field == "world.faults.0.at"
    union = _error({"pick": "middle"})
    assert union.field == "pick"  # not "pick.int": the branches are one field to the user
    assert "integer" in union.allowed and "'first' or 'last'" in union.allowed
    model = _error({"low": 5, "high": 2})
    assert model.field == "high" and model.value == 2 and "must not be below" in model.allowed
