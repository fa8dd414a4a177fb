"""The schedule generator and the reproducer: every drawn schedule is a valid config, and the
printed ``mqlab run ...`` command parses back to exactly that config."""

from __future__ import annotations

import importlib
import io
import shlex
from contextlib import redirect_stderr, redirect_stdout
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.cli import main
from simulator.config import FlashSaleConfig, Fault
from simulator.scenarios.registry import SCENARIOS
from simulator.schedules import ALL_TARGETS, command_for, fault_schedules, reproducer


class _Parsed(Exception):
    def __init__(self, config: Any):
        self.config = config


def _capture(config: Any) -> Any:
    raise _Parsed(config)


def parsed(command: str, scenario: str) -> Any:
    """The config ``mqlab`` builds from ``command`` (the run itself is stubbed out)."""
    module, _, name = SCENARIOS[scenario].runner.rpartition(":")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(importlib.import_module(module), name, _capture)
        err = io.StringIO()
        with redirect_stdout(io.StringIO()), redirect_stderr(err):
            try:
                status = main(shlex.split(command)[1:])
            except _Parsed as got:
                return got.config
    raise AssertionError(f"{command} did not parse (status {status}): {err.getvalue()}")


everything = fault_schedules(
    targets=ALL_TARGETS, max_faults=4, may_stay_down=True,
    vary={"ack": ("manual", "auto"), "dedupe": ("db", "redis", "off"), "durable": (True, False),
          "stock_strategy": ("redis-lua", "redis-get-set", "db-update"), "reconcile": (False, True),
          "write_pattern": ("publish", "outbox", "db-then-publish", "publish-then-db"),
          "invalid_fraction": (0.0, 0.15, 1 / 3), "request_timeout_s": (3.0, 0.7, 1e-3)})


@given(everything)
def test_the_reproducer_parses_back_to_the_same_schedule(config: FlashSaleConfig) -> None:
    command = reproducer(config)
    assert command.startswith(f"mqlab run flash-sale --seed {config.seed} ")
    assert parsed(command, "flash-sale") == config


def test_never_down_crashes_and_defaults_print_compactly() -> None:
    config = FlashSaleConfig(seed=4, faults=(Fault(target="relay", at=1.5, restart_after=None),
                                             Fault(target="broker", at=2.0),
                                             Fault(target="db", at=0.25, restart_after=0.5)))
    assert reproducer(config) == ("mqlab run flash-sale --seed 4 --crash relay@1.5+never "
                                  "--crash broker@2 --crash db@0.25+0.5 --json")
    assert reproducer(FlashSaleConfig(), json_output=False) == "mqlab run flash-sale --seed 7"


def test_a_crash_point_has_no_command_line_form() -> None:
    config = FlashSaleConfig(faults=(Fault(target="relay", point="relay:after-publish"),))
    with pytest.raises(ValueError, match="crash point"):
        reproducer(config)


@given(st.integers(0, 2**32 - 1), st.integers(2, 50), st.floats(0, 0.9), st.integers(0, 100))
def test_command_for_other_scenarios_round_trips(seed: int, users: int, requeue: float, prefetch: int) -> None:
    from simulator.scenarios.ordering import make_config

    config = make_config(seed=seed, users=users, requeue_rate=requeue, prefetch=prefetch)
    assert parsed(command_for("ordering", config), "ordering") == config
