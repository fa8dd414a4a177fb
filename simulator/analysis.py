"""Queueing theory the simulator is checked against: M/M/1 and M/M/c (Erlang C), Little's law.

Conventions: ``lam`` is the arrival rate, ``mu`` the service rate of ONE server, ``c`` the
number of servers, ``a = lam / mu`` the offered load in Erlangs and ``rho = a / c`` the
utilisation.  Every function is pure and checks its arguments: ``c < 1``, a negative or
non-finite rate, or ``mu == 0`` raises ``InputError``.

An overloaded queue (``rho >= 1``) has no steady state: the line grows for as long as the
run lasts, so the mean wait and response time are reported as ``float('inf')`` rather than
raising - a latency curve can then run up to (and past) the wall at ``rho = 1``.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from simulator.errors import InputError

__all__ = ["erlang_b", "erlang_c", "mm1_mean_wait", "mmc_mean_wait", "mmc_mean_response",
           "mmc_wait_quantile", "utilisation", "littles_law_L", "mmc_latency_curve"]

INF = float("inf")


# ---------------------------------------------------------------------------- checks
def _servers(c: object) -> int:
    # bool is an int in Python; True servers is surely a mistake
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
        raise InputError("c", c, "a whole number of servers >= 1")
    return int(c)


def _rate(name: str, value: object, *, positive: bool = False) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(name, value, "a finite number") from None
    if not math.isfinite(x) or x < 0 or (positive and x == 0):
        raise InputError(name, value, "a finite number > 0" if positive else "a finite number >= 0")
    return x


# ---------------------------------------------------------------------------- Erlang
def erlang_b(c: int, a: float) -> float:
    """Blocking probability of ``c`` servers offered ``a`` Erlangs with no waiting room.

    The recursion ``B(k) = a B(k-1) / (k + a B(k-1))`` never forms ``a**c`` or ``c!``, so it
    stays finite and accurate for thousands of servers where the textbook sum overflows.
    """
    c, a = _servers(c), _rate("a", a)
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    """Probability that an arriving customer has to wait (M/M/c, offered load ``a = lam/mu``).

    Derived from Erlang B: ``C = c B / (c - a (1 - B))``.  With ``a >= c`` every server is
    busy forever, so the answer is 1.
    """
    c, a = _servers(c), _rate("a", a)
    if a >= c:
        return 1.0
    b = erlang_b(c, a)
    return c * b / (c - a * (1.0 - b))


# ---------------------------------------------------------------------------- waits
def utilisation(lam: float, mu: float, c: int = 1) -> float:
    """``rho = lam / (c mu)``: the share of time each server is busy (>= 1 means overloaded)."""
    c, lam, mu = _servers(c), _rate("lam", lam), _rate("mu", mu, positive=True)
    return lam / (c * mu)


def mmc_mean_wait(lam: float, mu: float, c: int) -> float:
    """Mean time in the line before service starts (Wq) of M/M/c; ``inf`` when rho >= 1."""
    c, lam, mu = _servers(c), _rate("lam", lam), _rate("mu", mu, positive=True)
    if lam >= c * mu:
        return INF
    return erlang_c(c, lam / mu) / (c * mu - lam)


def mmc_mean_response(lam: float, mu: float, c: int) -> float:
    """Mean time in the system (W = Wq + 1/mu) of M/M/c; ``inf`` when rho >= 1."""
    return mmc_mean_wait(lam, mu, c) + 1.0 / _rate("mu", mu, positive=True)


def mm1_mean_wait(lam: float, mu: float) -> float:
    """Wq of M/M/1: ``rho / (mu - lam)``; ``inf`` when rho >= 1.

    Written out on its own (rather than as ``mmc_mean_wait(lam, mu, 1)``) so the tests can
    check the general formula against the closed form.
    """
    lam, mu = _rate("lam", lam), _rate("mu", mu, positive=True)
    if lam >= mu:
        return INF
    return (lam / mu) / (mu - lam)


def mmc_wait_quantile(lam: float, mu: float, c: int, q: float) -> float:
    """The ``q``-quantile of the wait in M/M/c.

    ``P(Wq > t) = C exp(-(c mu - lam) t)``: a share ``1 - C`` of customers do not wait at
    all, so every quantile below ``1 - C`` is 0.
    """
    c, lam, mu = _servers(c), _rate("lam", lam), _rate("mu", mu, positive=True)
    q = _rate("q", q)
    if q >= 1:
        raise InputError("q", q, "a probability in [0, 1)")
    if lam >= c * mu:
        return INF
    waiting = erlang_c(c, lam / mu)
    if 1.0 - q >= waiting:
        return 0.0
    return math.log(waiting / (1.0 - q)) / (c * mu - lam)


def littles_law_L(lam: float, W: float) -> float:
    """Mean number in the system (or the line) from Little's law: ``L = lam W``."""
    lam = _rate("lam", lam)
    if not (isinstance(W, (int, float, np.floating)) and W >= 0):  # inf is allowed here
        raise InputError("W", W, "a time >= 0 (inf for an overloaded queue)")
    return lam * float(W) if lam > 0 else 0.0


def mmc_latency_curve(mu: float, c: int, rhos: Iterable[float] | np.ndarray) -> np.ndarray:
    """Mean response time at each utilisation in ``rhos``: the "knee" of a latency plot.

    Flat at ``1/mu`` for light load, then bending up and heading to infinity as rho -> 1;
    points at rho >= 1 are ``inf``.  Returns an array of the same shape as ``rhos``.
    """
    c, mu = _servers(c), _rate("mu", mu, positive=True)
    grid = np.asarray(rhos, dtype=float)
    if grid.size and (not np.all(np.isfinite(grid)) or np.any(grid < 0)):
        bad = grid[~np.isfinite(grid) | (grid < 0)].flat[0]
        raise InputError("rhos", float(bad), "utilisations >= 0 (and finite)")
    flat = [mmc_mean_response(r * c * mu, mu, c) for r in grid.ravel().tolist()]
    return np.array(flat, dtype=float).reshape(grid.shape)
