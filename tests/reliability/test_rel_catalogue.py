"""Every entry of the bad-input catalogue is refused before anything runs, in one line.

One test per entry (``simulator.catalogue.CATALOGUE``): the command line exits with status 2
and prints exactly ``mqlab: error: FIELD: got VALUE; allowed: ...``; the Python API raises
``InputError`` naming the field; a bad payload is refused by the schema gate in one line; a
bad URL comes back with its password masked.  No entry may produce a traceback.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pydantic
import pytest
import simpy

from simulator.catalogue import CATALOGUE, KINDS, SECRET, BadInput, markdown_table
from simulator.cli import main
from simulator.config_errors import input_error_from
from simulator.errors import InputError
from simulator.history import History
from simulator.messages import Message, payload_error, submission_body
from simulator.scenarios.registry import SCENARIOS
from simulator.sim.broker import Broker
from simulator.sim.redis import Redis


def _one_line_input_error(exc: InputError, entry: BadInput) -> None:
    text = str(exc)
    assert "\n" not in text, f"{entry.id}: more than one line: {text!r}"
    assert entry.field in exc.field, f"{entry.id}: field {exc.field!r} does not name {entry.field!r}"
    assert text.startswith(f"{exc.field}: got "), f"{entry.id}: {text!r}"
    assert "; allowed: " in text and exc.allowed, f"{entry.id}: says nothing about what is allowed: {text!r}"
    assert SECRET not in text, f"{entry.id}: password echoed: {text!r}"


def _cli(entry: BadInput, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(list(entry.input))
    out, err = capsys.readouterr()
    assert status == 2, f"{entry.id}: exit status {status}, stderr {err!r}"
    assert out == "", f"{entry.id}: something ran and printed {out[:200]!r}"
    lines = err.splitlines()
    assert len(lines) == 1, f"{entry.id}: expected one line, got {err!r}"
    line = lines[0]
    assert line.startswith("mqlab: error: "), line
    assert "Traceback" not in err
    assert entry.field in line, f"{entry.id}: {line!r} does not name {entry.field!r}"
    # a value error names the value given and what is allowed; a usage error says how to get help
    assert "; allowed: " in line or "--help" in line, line


def _config(entry: BadInput) -> None:
    model = SCENARIOS[entry.input["scenario"]].config_model
    # the API path of every scenario: pydantic's error turned into MQ Lab's one line
    with pytest.raises(pydantic.ValidationError) as caught:
        model.model_validate(entry.input["values"])
    _one_line_input_error(input_error_from(caught.value), entry)


def _broker() -> tuple[simpy.Environment, Broker, History]:
    env = simpy.Environment()
    history = History(lambda: env.now, keep=None)
    return env, Broker(env, np.random.default_rng(0), history=history), history


def _call(broker: Broker, method: str, kwargs: dict[str, Any]) -> Any:
    if method == "publish":
        msg = Message("m1", "c1", kwargs["routing_key"], submission_body("m1", "u1"))
        return broker.publish(kwargs["exchange"], kwargs["routing_key"], msg)
    return getattr(broker, method)(**kwargs)


def _topology(entry: BadInput) -> None:
    env, broker, history = _broker()
    *setup, (method, kwargs) = entry.input["steps"]
    for step, args in setup:
        _call(broker, step, args)
    with pytest.raises(InputError) as caught:
        _call(broker, method, kwargs)
    _one_line_input_error(caught.value, entry)
    assert env.now == 0 and history.count == 0, "refused after something had run"


def _message(entry: BadInput) -> None:
    env, broker, _history = _broker()
    broker.declare_exchange("ex", "direct")
    base = Message("m1", "c1", "k", submission_body("m1", "u1"))
    bad = Message(**{**{f: getattr(base, f) for f in base.__slots__}, **entry.input})
    with pytest.raises(InputError) as caught:
        broker.publish("ex", "k", bad)
    _one_line_input_error(caught.value, entry)
    assert broker.stats["published"] == 0 and env.now == 0


def _payload(entry: BadInput) -> None:
    problem = payload_error(entry.input)
    assert problem is not None, f"{entry.id}: the schema accepted {entry.input!r}"
    assert "\n" not in problem and entry.field in problem, f"{entry.id}: {problem!r}"


def _settings(entry: BadInput) -> None:
    from real_adapters.settings import Settings

    with pytest.raises(InputError) as caught:
        Settings.from_env(entry.input)
    _one_line_input_error(caught.value, entry)


def _store(entry: BadInput) -> None:
    env = simpy.Environment()
    redis = Redis(env, np.random.default_rng(0))
    method, kwargs = entry.input
    with pytest.raises(InputError) as caught:
        getattr(redis, method)(**kwargs)
    _one_line_input_error(caught.value, entry)
    assert redis.commands == 0 and env.now == 0


CHECKS = {"config": _config, "topology": _topology, "message": _message, "payload": _payload,
          "settings": _settings, "store": _store}


# Entries refused today but not in the required form; strict, so a fix shows up at once.
KNOWN_BUGS: dict[str, str] = {}  # entry id -> why it is expected to fail (none today)
ENTRIES = [pytest.param(e, id=e.id, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[e.id]))
           if e.id in KNOWN_BUGS else pytest.param(e, id=e.id) for e in CATALOGUE]


@pytest.mark.parametrize("entry", ENTRIES)
def test_bad_input_is_refused_in_one_line(entry: BadInput, capsys: pytest.CaptureFixture[str]) -> None:
    if entry.kind == "cli":
        _cli(entry, capsys)
    else:
        CHECKS[entry.kind](entry)


def test_catalogue_is_big_enough_and_well_formed() -> None:
    ids = [e.id for e in CATALOGUE]
    assert len(ids) == len(set(ids)), "duplicate ids"
    assert len(CATALOGUE) >= 40
    assert {e.kind for e in CATALOGUE} == set(KINDS)
    table = markdown_table()
    assert table.count("\n") == len(CATALOGUE) + 1


def test_invalid_payload_never_reaches_the_handler() -> None:
    """The schema gate end to end: a drifted payload is rejected to the dead-letter queue."""
    from simulator.config import FlashSaleConfig
    from simulator.sim.world import World

    world = World(FlashSaleConfig(seed=3, submissions=60, stock=30, arrival_rate=200.0, invalid_fraction=0.3))
    world.run()
    ops = world.history.ops
    invalid = {op.msg_id for op in ops if op.f == "dequeue" and op.value.get("outcome") == "invalid"}
    touched = {op.msg_id for op in ops if op.f in ("grant", "stock")}
    dead = [op.msg_id for op in ops if op.f == "dead-letter"]
    assert invalid and not invalid & touched
    assert sorted(dead) == sorted(op.msg_id for op in ops
                                  if op.f == "dequeue" and op.value.get("outcome") == "invalid")


@pytest.mark.parametrize("entry_id", ["cli-crash-target", "cli-unknown-option", "cli-rate-nan"])
def test_a_real_process_prints_one_line_and_exits_2(entry_id: str) -> None:
    """In a fresh interpreter too: no warning, log line or traceback joins the error line."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    entry = next(e for e in CATALOGUE if e.id == entry_id)
    done = subprocess.run([sys.executable, "-m", "simulator.cli", *entry.input], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
                          env={**os.environ, "PYTHONWARNINGS": "default", "MPLBACKEND": "Agg"})
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("mqlab: error: "), done.stderr
    assert entry.field in done.stderr
