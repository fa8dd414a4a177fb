"""Queueing formulas against values worked out by hand and against each other."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.analysis import (erlang_b, erlang_c, littles_law_L, mm1_mean_wait, mmc_latency_curve,
                                mmc_mean_response, mmc_mean_wait, mmc_wait_quantile, utilisation)
from simulator.errors import InputError


def erlang_c_textbook(c: int, a: float) -> float:
    """The sum-of-terms formula, fine for small c: the reference for the recursion."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


# ------------------------------------------------------------------------- known values
@pytest.mark.parametrize("lam,mu", [(0.5, 1.0), (0.8, 1.0), (3.0, 5.0), (9.0, 10.0)])
def test_mm1_wait_is_rho_over_mu_minus_lambda(lam, mu):
    expected = (lam / mu) / (mu - lam)
    assert mm1_mean_wait(lam, mu) == pytest.approx(expected, rel=1e-12)
    assert mmc_mean_wait(lam, mu, 1) == pytest.approx(expected, rel=1e-12)
    assert mmc_mean_response(lam, mu, 1) == pytest.approx(1 / (mu - lam), rel=1e-12)


def test_erlang_c_two_servers_one_erlang_is_a_third():
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3, rel=1e-12)


def test_erlang_b_known_value():
    # B(2, 1) = (1/2) / (1 + 1 + 1/2) = 1/5
    assert erlang_b(2, 1.0) == pytest.approx(0.2, rel=1e-12)


@pytest.mark.parametrize("rho", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_one_server_waits_with_probability_rho(rho):
    assert erlang_c(1, rho) == pytest.approx(rho, abs=1e-12)


@pytest.mark.parametrize("c,a", [(2, 1.5), (4, 3.2), (10, 7.0), (25, 20.0), (50, 49.0)])
def test_recursion_matches_the_textbook_sum(c, a):
    assert erlang_c(c, a) == pytest.approx(erlang_c_textbook(c, a), rel=1e-9)


def test_mmc_wait_known_value():
    # M/M/2, lam 1, mu 1: C = 1/3, Wq = C / (c mu - lam) = 1/3
    assert mmc_mean_wait(1.0, 1.0, 2) == pytest.approx(1 / 3, rel=1e-12)
    assert mmc_mean_response(1.0, 1.0, 2) == pytest.approx(4 / 3, rel=1e-12)


def test_large_c_is_finite_and_sensible():
    # the textbook sum overflows here (a**1000); the recursion must not
    for c, rho in [(1000, 0.5), (1000, 0.95), (1000, 0.999), (5000, 0.99)]:
        p = erlang_c(c, rho * c)
        assert math.isfinite(p) and 0.0 <= p <= 1.0
    # a big pool at moderate load almost never makes anyone wait (economy of scale) ...
    assert erlang_c(1000, 500.0) < 1e-12
    # ... while close to saturation waiting comes back
    assert 0.1 < erlang_c(1000, 999.0) < 1.0
    assert math.isfinite(mmc_mean_wait(990.0, 1.0, 1000))


@given(c=st.integers(1, 300), rho=st.floats(0.01, 0.99))
def test_more_load_more_waiting(c, rho):
    a = rho * c
    lower, higher = erlang_c(c, a), erlang_c(c, min(a * 1.01, c * 0.999))
    assert 0.0 <= lower <= higher + 1e-12 <= 1.0 + 1e-12
    assert erlang_b(c, a) <= lower + 1e-15  # waiting is always likelier than blocking


def test_wait_quantile():
    lam, mu = 0.8, 1.0  # M/M/1: P(Wq > t) = rho exp(-(mu - lam) t)
    assert mmc_wait_quantile(lam, mu, 1, 0.1) == 0.0  # 20% never wait, so p10 is 0
    assert mmc_wait_quantile(lam, mu, 1, 0.99) == pytest.approx(math.log(0.8 / 0.01) / 0.2)
    assert mmc_wait_quantile(lam, mu, 1, 0.2) == pytest.approx(0.0, abs=1e-12)


def test_utilisation_and_littles_law():
    assert utilisation(3.2, 1.0, 4) == pytest.approx(0.8)
    assert utilisation(2.0, 1.0, 1) == 2.0  # overloaded is reported, not refused
    assert littles_law_L(3.0, 2.0) == 6.0
    assert littles_law_L(0.0, math.inf) == 0.0
    assert littles_law_L(1.0, math.inf) == math.inf


# ------------------------------------------------------------------------- overload
@pytest.mark.parametrize("lam", [1.0, 1.5])
def test_rho_at_or_above_one_means_infinite_waits(lam):
    assert mm1_mean_wait(lam, 1.0) == math.inf
    assert mmc_mean_wait(2 * lam, 1.0, 2) == math.inf
    assert mmc_mean_response(2 * lam, 1.0, 2) == math.inf
    assert erlang_c(2, 2 * lam) == 1.0


def test_latency_curve_has_a_knee():
    rhos = np.array([0.0, 0.5, 0.8, 0.9, 0.99, 1.0, 1.2])
    curve = mmc_latency_curve(2.0, 4, rhos)
    assert curve.shape == rhos.shape and curve.dtype == float
    assert curve[0] == pytest.approx(0.5)  # no load: just the service time 1/mu
    assert np.all(np.diff(curve[:5]) > 0)
    # the knee: the step from 0.9 to 0.99 dwarfs the one from 0 to 0.5
    assert curve[4] - curve[3] > 10 * (curve[1] - curve[0])
    assert np.isinf(curve[5:]).all()
    for r, w in zip(rhos[:5], curve[:5]):
        assert w == pytest.approx(mmc_mean_response(r * 4 * 2.0, 2.0, 4))
    assert mmc_latency_curve(1.0, 1, [[0.5]]).shape == (1, 1)


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call,field", [
    (lambda: erlang_c(0, 1.0), "c"),
    (lambda: erlang_c(-3, 1.0), "c"),
    (lambda: erlang_c(2.5, 1.0), "c"),
    (lambda: erlang_c(True, 1.0), "c"),
    (lambda: erlang_c(2, -1.0), "a"),
    (lambda: erlang_c(2, math.nan), "a"),
    (lambda: mmc_mean_wait(-1.0, 1.0, 2), "lam"),
    (lambda: mmc_mean_wait(1.0, 0.0, 2), "mu"),
    (lambda: mmc_mean_wait(1.0, -2.0, 2), "mu"),
    (lambda: mmc_mean_response(1.0, 1.0, 0), "c"),
    (lambda: mm1_mean_wait(1.0, math.inf), "mu"),
    (lambda: utilisation("fast", 1.0, 1), "lam"),
    (lambda: littles_law_L(-1.0, 1.0), "lam"),
    (lambda: littles_law_L(1.0, -1.0), "W"),
    (lambda: littles_law_L(1.0, math.nan), "W"),
    (lambda: mmc_wait_quantile(0.5, 1.0, 1, 1.0), "q"),
    (lambda: mmc_latency_curve(1.0, 2, [0.5, -0.1]), "rhos"),
    (lambda: mmc_latency_curve(1.0, 0, [0.5]), "c"),
])
def test_invalid_arguments_raise_input_error(call, field):
    with pytest.raises(InputError) as info:
        call()
    assert info.value.field == field
    assert "allowed" in str(info.value)
