"""Property-based fault schedules: where an invariant must hold, no schedule breaks it.

Each test draws whole flash sales (random seed, arrivals, load, persistence settings, ack
losses, gateway failures and up to three crashes of consumers, broker, Redis, database,
relay or API servers at random times) for one *design*, runs each in the SimPy world and
checks the invariants of reliability-reference.md §3 that the design promises.  A failure
is shrunk by hypothesis to a minimal schedule and reported with the ``mqlab run flash-sale``
command that replays it.

The profile (``MQLAB_HYPOTHESIS_PROFILE=ci|long``, see conftest.py) sets how many schedules.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given

from reliability_checks import (SAFE, Check, Observed, assert_holds, inv1_conservation,
                                inv2_exactly_once, inv3_no_oversell, inv4_stock_bounded,
                                inv4_stock_conserved, inv5_confirmed_survives,
                                inv6_auto_ack_loss_needs_a_consumer_crash, inv6_loss_window,
                                inv7_transient_vanish, inv9_redelivered_flag, inv13_schema_gate,
                                inv14_outbox_atomic, inv15_relay_liveness, inv16_compensation,
                                inv17_terminal_closure, inv18_correlation,
                                inv19_aof_always_loses_nothing, inv20_safety_stock,
                                inv21_prefetch_bound, observe)
from simulator.config import FlashSaleConfig
from simulator.schedules import fault_schedules

ATOMIC = ("redis-lua", "redis-decr", "db-update")
# Redis crashes here keep nothing (reseeded from the ledger) or lose nothing; the windows of
# everysec/RDB are the subject of test_redis_losses_stay_in_their_window_and_safety_stock_absorbs_them.
NO_WINDOW = ("aof-always", "none")


def run(config: FlashSaleConfig) -> Observed:
    # shown by --hypothesis-show-statistics: how much of each fault the schedules exercised
    event(f"crashes: {len(config.faults)}")
    for fault in config.faults:
        event(f"crash of {fault.target.split('-')[0]}")
    return observe(config)


def check(tally: Any, obs: Observed, *checks: Check) -> None:
    for c in checks:
        tally.add(c.__name__, "holds", bool(c(obs)))
    assert_holds(obs, *checks)


safe_schedules = fault_schedules(
    SAFE, targets=("consumer", "broker", "redis", "db", "producer", "server-2"),
    persistence=NO_WINDOW, vary={"stock_strategy": ATOMIC, "invalid_fraction": (0.0, 0.1)})


@given(safe_schedules)
def test_safe_design_keeps_its_promises_under_any_crash_schedule(tally: Any, config: FlashSaleConfig) -> None:
    obs = run(config)
    check(tally, obs, inv1_conservation, inv2_exactly_once, inv3_no_oversell, inv4_stock_bounded,
          inv5_confirmed_survives, inv7_transient_vanish, inv9_redelivered_flag, inv13_schema_gate,
          inv16_compensation, inv17_terminal_closure, inv18_correlation,
          inv19_aof_always_loses_nothing, inv21_prefetch_bound)


outbox_schedules = fault_schedules(
    {**SAFE, "write_pattern": "outbox"}, targets=("consumer", "broker", "db", "relay", "redis", "producer"),
    persistence=NO_WINDOW, vary={"stock_strategy": ATOMIC})


@given(outbox_schedules)
def test_outbox_is_atomic_and_its_relay_live(tally: Any, config: FlashSaleConfig) -> None:
    obs = run(config)
    check(tally, obs, inv14_outbox_atomic, inv15_relay_liveness, inv1_conservation,
          inv2_exactly_once, inv3_no_oversell, inv5_confirmed_survives, inv9_redelivered_flag,
          inv17_terminal_closure, inv18_correlation)


# Consumer crashes included: the Lua strategy's per-message hold is found again by the
# redelivery, whether the consumer died after the decrement or while its reply was on the
# wire (so a Redis that kept the decrement, aof-always, is fine too).  Plain DECR is left
# out: it keeps no hold, and an INCR on a counter already below zero gives nothing back.
exact_stock_schedules = fault_schedules(
    SAFE, targets=("consumer", "broker", "db", "producer", "server-2", "redis"),
    persistence=NO_WINDOW, vary={"stock_strategy": ("redis-lua", "db-update")})


@given(exact_stock_schedules)
def test_stock_is_conserved_at_quiescence(tally: Any, config: FlashSaleConfig) -> None:
    obs = run(config)
    check(tally, obs, inv4_stock_conserved, inv16_compensation, inv3_no_oversell)


confirms_off_schedules = fault_schedules(
    {**SAFE, "confirms": False}, targets=("broker", "consumer"), persistence=NO_WINDOW)


@given(confirms_off_schedules)
def test_without_confirms_loss_stays_inside_the_fsync_window(tally: Any, config: FlashSaleConfig) -> None:
    obs = run(config)
    # no inv17 here: a message lost in the window was answered 200 and has no terminal state;
    # that is the hazard of confirms off, measured by inv6
    check(tally, obs, inv6_loss_window, inv9_redelivered_flag, inv18_correlation)


transient_schedules = fault_schedules(
    {**SAFE, "persistent": False}, targets=("broker", "consumer"), persistence=NO_WINDOW,
    vary={"confirms": (True, False)})


@given(transient_schedules)
def test_transient_messages_vanish_on_restart(tally: Any, config: FlashSaleConfig) -> None:
    obs = run(config)
    check(tally, obs, inv7_transient_vanish, inv9_redelivered_flag, inv18_correlation)


# A stock of 100 with up to 90 of it held back: most sales sell out, and an everysec crash
# (which forgets about a second of decrements) is often within the safety stock.
persistence_schedules = fault_schedules(
    {**SAFE, "stock_strategy": "redis-lua", "stock": 100}, targets=("redis", "redis", "consumer"),
    persistence=("aof-always", "aof-everysec", "rdb", "none"),
    vary={"safety_stock": (0, 10, 40, 70, 90)})


@given(persistence_schedules)
def test_redis_losses_stay_in_their_window_and_safety_stock_absorbs_them(
        tally: Any, config: FlashSaleConfig) -> None:
    obs = run(config)
    check(tally, obs, inv19_aof_always_loses_nothing, inv20_safety_stock, inv18_correlation)


auto_ack_schedules = fault_schedules(
    {**SAFE, "ack": "auto"}, targets=("consumer", "redis", "db"), persistence=NO_WINDOW,
    ack_loss=False)


@given(auto_ack_schedules)
def test_auto_ack_loses_only_what_a_dead_consumer_held(tally: Any, config: FlashSaleConfig) -> None:
    obs = run(config)
    check(tally, obs, inv6_auto_ack_loss_needs_a_consumer_crash, inv3_no_oversell, inv18_correlation)
