from __future__ import annotations

import itertools

import numpy as np
import pytest

from simulator.errors import ServiceDown
from simulator.ports import Done, drive
from simulator.rng import stream
from simulator.sim.loadgen import arrival_times


def test_constant_profile_has_the_asked_rate():
    times = list(arrival_times(stream(1, "a"), 20_000, profile="constant", rate=50.0))
    assert len(times) == 20_000 and times == sorted(times)
    assert abs(len(times) / times[-1] - 50.0) / 50.0 < 0.03


def test_spike_front_loads_arrivals():
    times = np.array(list(arrival_times(stream(1, "a"), 5000, profile="spike", rate=500.0, decay_s=5.0)))
    first, second = (times < 5).sum(), ((times >= 5) & (times < 10)).sum()
    assert first > 2 * second


def test_piecewise_steps_switch_rates():
    times = np.array(list(arrival_times(stream(2, "a"), 3000, profile="piecewise",
                                        steps=((0.0, 10.0), (10.0, 200.0)))))
    assert (times < 10).sum() < 200 and (times >= 10).sum() > 2500


def test_same_seed_same_arrivals_and_streams_are_independent_by_name():
    a = list(itertools.islice(arrival_times(stream(9, "arrivals"), 100), 100))
    b = list(itertools.islice(arrival_times(stream(9, "arrivals"), 100), 100))
    c = list(itertools.islice(arrival_times(stream(9, "other"), 100), 100))
    assert a == b and a != c


def test_drive_sends_values_and_throws_errors():
    def step():
        first = yield Done(2)
        try:
            yield Done(error=ServiceDown("redis"))
        except ServiceDown as exc:
            caught = exc.component
        return first, caught

    assert drive(step()) == (2, "redis")


def test_drive_propagates_an_uncaught_error():
    def step():
        yield Done(error=ServiceDown("db"))

    with pytest.raises(ServiceDown):
        drive(step())
