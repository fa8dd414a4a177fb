"""Streaming statistics: quantile accuracy against numpy, merging, bounded time series."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.stats import MAX_BUCKETS, Summary, TimeSeries

QS = [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999]


@pytest.fixture(scope="module")
def lognormal() -> np.ndarray:
    return np.random.default_rng(2024).lognormal(mean=0.0, sigma=1.5, size=100_000)


def test_quantiles_within_one_percent_of_numpy(lognormal):
    s = Summary()
    s.extend(lognormal.tolist())
    for q in QS:
        exact = float(np.percentile(lognormal, q * 100))
        assert s.quantile(q) == pytest.approx(exact, rel=0.01), q
    assert s.count == lognormal.size
    assert s.mean == pytest.approx(float(lognormal.mean()), rel=1e-12)
    assert s.min == lognormal.min() and s.max == lognormal.max()
    assert s.quantile(0.0) == s.min and s.quantile(1.0) == s.max
    assert (s.p50, s.p90, s.p99, s.p999) == tuple(s.quantile(q) for q in (0.5, 0.9, 0.99, 0.999))


def test_memory_does_not_grow_with_the_count(lognormal):
    s = Summary()
    for _ in range(5):
        s.extend(lognormal.tolist())
    # values span about 10 decades here; buckets are bounded by that range, not by 500k values
    assert len(s._pos) < 5000


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1.0, 1e3, 1e9])
def test_accuracy_does_not_depend_on_the_unit(scale, lognormal):
    values = lognormal[:20_000] * scale
    s = Summary()
    s.extend(values.tolist())
    for q in (0.5, 0.99):
        assert s.quantile(q) == pytest.approx(float(np.percentile(values, q * 100)), rel=0.01)


def test_zeros_and_negatives():
    values = [0.0] * 600 + [-5.0] * 100 + [2.0] * 300
    s = Summary()
    s.extend(values)
    assert s.quantile(0.05) == pytest.approx(-5.0, rel=0.01)
    assert s.p50 == 0.0  # most waits in a lightly loaded queue are exactly zero
    assert s.p90 == pytest.approx(2.0, rel=0.01)
    assert s.mean == pytest.approx(np.mean(values))
    mixed = np.random.default_rng(5).normal(0.0, 10.0, 20_000)
    m = Summary()
    m.extend(mixed.tolist())
    for q in (0.05, 0.3, 0.7, 0.95):
        assert m.quantile(q) == pytest.approx(float(np.percentile(mixed, q * 100)), rel=0.01, abs=0.05)


def test_merge_equals_one_pass(lognormal):
    whole = Summary()
    whole.extend(lognormal.tolist())
    parts = [Summary() for _ in range(4)]
    for i, part in enumerate(parts):
        part.extend(lognormal[i::4].tolist())
    merged = parts[0]
    for part in parts[1:]:
        assert merged.merge(part) is merged
    assert merged.count == whole.count
    assert merged.min == whole.min and merged.max == whole.max
    for q in QS:
        assert merged.quantile(q) == whole.quantile(q)  # same buckets: identical, not just close
    assert merged.mean == pytest.approx(whole.mean, rel=1e-12)  # float sums in another order
    assert merged.to_dict() == whole.to_dict()


def test_merge_with_empty_both_ways():
    a, b = Summary(), Summary()
    a.extend([1.0, 2.0, 3.0])
    before = a.to_dict()
    assert a.merge(Summary()).to_dict() == before
    assert b.merge(a).to_dict() == before


def test_to_dict_is_json_ready_and_rounded():
    s = Summary()
    s.extend([1.0 / 3.0, 2.0 / 3.0, 1.0])
    d = s.to_dict()
    assert list(d) == ["count", "mean", "p50", "p90", "p99", "max"]
    assert d["mean"] == 0.666667 and d["max"] == 1.0
    assert json.loads(json.dumps(d)) == d
    assert Summary().to_dict() == {"count": 0, "mean": None, "p50": None, "p90": None,
                                   "p99": None, "max": None}
    assert Summary().quantile(0.5) is None and Summary().mean is None


def test_same_values_same_output():
    values = np.random.default_rng(9).exponential(3.0, 10_000).tolist()
    a, b = Summary(), Summary()
    a.extend(values)
    b.extend(values)
    assert a.to_dict() == b.to_dict()


def test_rejects_bad_input():
    s = Summary()
    with pytest.raises(ValueError):
        s.add(math.nan)
    with pytest.raises(ValueError):
        s.add(math.inf)
    with pytest.raises(ValueError):
        s.quantile(1.5)
    assert s.count == 0


def test_very_wide_range_folds_the_smallest_buckets_only():
    # 60 decades of values: more buckets than allowed, so the tiny ones are folded
    values = np.logspace(-30, 30, 200_001).tolist()
    s = Summary()
    s.extend(values)
    assert len(s._pos) <= MAX_BUCKETS
    for q in (0.9, 0.99, 0.999):  # the tail keeps its accuracy
        assert s.quantile(q) == pytest.approx(float(np.percentile(values, q * 100, method="lower")),
                                              rel=0.01)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1e-6, 1e6), min_size=1, max_size=300), st.floats(0.0, 1.0))
def test_any_quantile_is_close_to_a_real_sample(values, q):
    s = Summary()
    s.extend(values)
    got = s.quantile(q)
    ordered = sorted(values)
    exact = ordered[math.floor(q * (len(values) - 1))]
    assert got == pytest.approx(exact, rel=0.006)
    assert ordered[0] <= got <= ordered[-1]


# --------------------------------------------------------------------------- TimeSeries
def test_time_series_samples_each_interval():
    env = simpy.Environment()
    ts = TimeSeries(env, 0.5)
    ts.track("now_squared", lambda: env.now ** 2)
    env.run(until=3.1)
    d = ts.to_dict()
    assert d["t"] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert d["now_squared"] == [t * t for t in d["t"]]


def test_time_series_stays_bounded_and_keeps_a_regular_grid():
    env = simpy.Environment()
    ts = TimeSeries(env, 1.0, max_points=64)
    ts.track("t_copy", lambda: env.now)
    env.run(until=10_000)  # 10x to 150x longer than 64 points of 1.0 allow
    assert len(ts) <= 64
    assert len(ts) >= 32  # thinned by half, not emptied
    t = ts.to_dict()["t"]
    gaps = set(np.diff(t).tolist())
    assert gaps == {ts.interval}  # one spacing throughout, a power of two of the original
    assert math.log2(ts.interval).is_integer()
    assert t[0] == 0.0 and t[-1] > 10_000 - 2 * ts.interval
    assert ts.to_dict()["t_copy"] == t


def test_horizon_hint_starts_coarse_enough():
    env = simpy.Environment()
    ts = TimeSeries(env, 0.001, horizon_hint=100.0, max_points=1000)
    assert ts.interval == pytest.approx(0.128)  # 0.001 doubled until 100 s fit in 1000 points
    ts.track("x", lambda: 1.0)
    env.run(until=100.0)
    assert ts.interval == pytest.approx(0.128)  # the planned run was never thinned
    assert len(ts) == math.floor(100 / 0.128) + 1


def test_late_gauges_read_nan_before_they_existed_and_stop_stops():
    env = simpy.Environment()
    ts = TimeSeries(env, 1.0)
    ts.track("a", lambda: 1.0)
    env.run(until=2.5)
    ts.track("b", lambda: 2.0)
    env.run(until=4.5)
    ts.stop()
    env.run(until=10)
    d = ts.to_dict()
    assert d["t"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [math.isnan(v) for v in d["b"]] == [True, True, True, False, False]
    with pytest.raises(ValueError):
        ts.track("a", lambda: 0.0)
    with pytest.raises(ValueError):
        TimeSeries(env, 0.0)
