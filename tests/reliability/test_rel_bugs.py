"""Bugs the fault schedules found, each pinned by its reproducer.

Each test is a fixed bug kept as a regression test.  An open bug would be pinned here with
``xfail(strict=True)``: the test states what must be true and fails until the fix, which turns
it into a failure ("XPASS(strict)"), so whoever fixes the bug removes the marker.
"""

from __future__ import annotations

import io
import shlex
from contextlib import redirect_stderr, redirect_stdout

import pytest
import simpy

from reliability_checks import (inv4_stock_conserved, inv15_relay_liveness, observe,
                                sold_out_after_grant)
from simulator.cli import main
from simulator.config import FlashSaleConfig, Fault
from simulator.scenarios.flash_sale import run_flash_sale

INTERRUPT_CMD = ("mqlab run flash-sale --seed 0 --submissions 50 --arrival-profile constant "
                 "--arrival-rate 50 --stock 5 --consumers 1 --prefetch 0 --handler-ms 0 "
                 "--ack-loss 0.1 --crash consumer-1@0.13+0.05 --json")


def test_consumer_crash_during_reconnect_backoff_is_survived() -> None:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(shlex.split(INTERRUPT_CMD)[1:])
    assert status == 0 and "Traceback" not in err.getvalue()


SERVER_CRASH_CMD = ("mqlab run flash-sale --seed 1 --submissions 100 --arrival-rate 400 "
                    "--crash broker@0.1+0.5 --crash producer@0.3 --json")


def test_a_server_crash_replays_byte_for_byte() -> None:
    cfg = FlashSaleConfig(seed=1, submissions=100, arrival_rate=400.0,
                          faults=(Fault(target="broker", at=0.1, restart_after=0.5),
                                  Fault(target="producer", at=0.3)))
    digests = {run_flash_sale(cfg).history_sha256 for _ in range(4)}
    assert len(digests) == 1


RELAY_CMD = ("mqlab run flash-sale --seed 0 --submissions 50 --arrival-profile constant "
             "--arrival-rate 50 --stock 5 --consumers 1 --prefetch 0 --handler-ms 0 "
             "--write-pattern outbox --crash relay@0+0.05 --crash relay@0+0.05 --json")


def test_overlapping_relay_crashes_leave_one_relay() -> None:
    cfg = FlashSaleConfig(seed=0, submissions=50, arrival_profile="constant", arrival_rate=50.0,
                          stock=5, consumers=1, prefetch=0, handler_ms=0.0, write_pattern="outbox",
                          faults=(Fault(target="relay", at=0.0, restart_after=0.05),) * 2)
    obs = observe(cfg)
    assert not inv15_relay_liveness(obs), inv15_relay_liveness(obs)


# Was: a consumer killed between its Redis decrement and its DB commit leaked the unit, since
# nothing recorded it (invariants 4 and 16: Redis 49 + 50 issued = 99 of 100).  Now the Lua
# strategy reserves per message and the redelivery reuses the hold.
def test_a_consumer_crash_after_the_decrement_leaks_no_stock() -> None:
    cfg = FlashSaleConfig(seed=1, submissions=50, stock=100,
                          faults=(Fault(target="consumer-1", point="consumer:after-stock", restart_after=0.5),))
    obs = observe(cfg)
    assert not inv4_stock_conserved(obs), inv4_stock_conserved(obs)


LABEL_CMD = ("mqlab run flash-sale --seed 27 --submissions 50 --arrival-profile constant "
             "--arrival-rate 50 --stock 5 --consumers 3 --prefetch 0 --handler-ms 0 "
             "--ack-loss 0.02 --json")


# Was: once stock was gone, the redelivery of a granted message whose ack was lost met the
# stock gate before the dedupe check and was answered 'sold_out' (invariant 17), in LABEL_CMD.
def test_a_redelivered_granted_message_is_a_duplicate_not_sold_out() -> None:
    cfg = FlashSaleConfig(seed=27, submissions=50, arrival_profile="constant", arrival_rate=50.0,
                          stock=5, consumers=3, prefetch=0, handler_ms=0.0, ack_loss=0.02)
    assert sold_out_after_grant(observe(cfg).ops) == []


def test_an_unknown_argument_is_reported_on_one_line() -> None:
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        status = main(["run", "flash-sale", "--turbo\nmode"])
    assert status == 2
    assert err.getvalue().count("\n") == 1, err.getvalue()


def test_an_unknown_field_is_reported_on_one_line() -> None:
    from simulator.errors import InputError
    from simulator.scenarios.mmc import make_config

    with pytest.raises(InputError) as caught:
        make_config(**{"a\nb": 1})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("url", ["guest:s3cret@127.0.0.1:5672/", "amqp:/guest:s3cret@host/",
                                 "amqp//guest:s3cret@host"])
def test_a_malformed_url_never_shows_its_password(url: str) -> None:
    from real_adapters.settings import Settings
    from simulator.errors import InputError

    with pytest.raises(InputError) as caught:
        Settings.from_env({"MQLAB_AMQP_URL": url})
    assert "s3cret" not in str(caught.value)


ACK_GAP_CMD = ("mqlab run flash-sale --seed 1 --submissions 60 --arrival-profile constant "
               "--arrival-rate 100 --stock 20 --consumers 2 --crash consumer-1@0.174736+0.2 --json")


# Was: the dequeue was recorded only when the ack's reply came back, so a consumer killed in
# that gap had consumed the message at the broker but the checker called it lost (invariant 1),
# in ACK_GAP_CMD; found by the long profile.
def test_an_acked_message_is_never_reported_lost() -> None:
    cfg = FlashSaleConfig(seed=1, submissions=60, arrival_profile="constant", arrival_rate=100.0,
                          stock=20, consumers=2,
                          faults=(Fault(target="consumer-1", at=0.174736, restart_after=0.2),))
    obs = observe(cfg)
    assert obs.counts["lost"] == 0, obs.result.anomalies[:1]
