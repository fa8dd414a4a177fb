"""Random junk at the command line and at every config loader: never a traceback.

Whatever is thrown at ``mqlab``, the outcome is one of: it runs (the run itself is stubbed
out here, so a valid config costs nothing), it prints help, or it exits 2 with exactly one
``mqlab: error: ...`` line.  The Python loaders (scenario configs, settings, topology,
payloads) either accept the input or raise ``InputError`` with one line - nothing else.
"""

from __future__ import annotations

import importlib
import io
import string
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from typing import Any, Iterator

import numpy as np
import pydantic
import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

from simulator.cli import main
from simulator.config_errors import input_error_from
from simulator.errors import InputError, one_line
from simulator.messages import payload_error
from simulator.scenarios.registry import SCENARIOS
from simulator.sim.broker import Broker


class _Ran(Exception):
    """A config passed every check and the run would start now (stubbed out)."""


def _stub(*_args: Any, **_kwargs: Any) -> Any:
    raise _Ran()


@contextmanager
def runs_stubbed() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for scenario in SCENARIOS.values():
            module, _, name = scenario.runner.rpartition(":")
            mp.setattr(importlib.import_module(module or scenario.module), name, _stub)
        try:  # the real-services commands: parse them, never connect
            import real_adapters.cli as real_cli
            mp.setattr(real_cli, "dispatch", _stub)
        except ImportError:
            pass
        yield


SPECIAL = ["nan", "inf", "-inf", "-1", "0", "1", "1e309", "1e-320", "0x10", "١٢", "", " ", "--", "-",
           "@", "broker@", "broker@1+", "consumer-0@1", "consumer-99999999999999999999@1", "x@1@2",
           "redis@1+never", "0:0,", "1:2,1:3", "0:5", "true", "None", "null", "[]", "{}", "\x00",
           "\u202e", "😀", "out/x.png", "/proc/x.png", "x.svg", "a" * 300, "--json", "-h"]
junk = st.one_of(st.sampled_from(SPECIAL), st.text(max_size=12), st.integers().map(str),
                 st.floats().map(repr))


def _options(name: str) -> list[str]:
    scenario = SCENARIOS.get(name)
    if scenario is None:
        return ["--seed"]
    flags = ["--json", "--plot", "--crash"]
    for field, info in scenario.config_model.model_fields.items():
        flags.append("--" + field.replace("_", "-"))
        if info.annotation is bool:
            flags.append("--no-" + field.replace("_", "-"))
    return flags


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    head = draw(st.sampled_from(["run", "run", "run", "scenarios", "real", "worker", "", "bogus"]))
    if head != "run":
        return [head, *draw(st.lists(junk, max_size=4))] if head else draw(st.lists(junk, max_size=4))
    name = draw(st.sampled_from([*SCENARIOS, "no-such-scenario"]))
    argv = ["run", name]
    for _ in range(draw(st.integers(0, 5))):
        argv.append(draw(st.one_of(st.sampled_from(_options(name)), junk)))
        if draw(st.booleans()):
            argv.append(draw(junk))
    return argv


@given(command_lines())
def test_the_command_line_never_shows_a_traceback(argv: list[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    with runs_stubbed(), redirect_stdout(out), redirect_stderr(err):
        try:
            status = main(argv)
        except _Ran:
            return  # a valid command line: it would run
        except SystemExit as exit_:  # --help / -h
            assert exit_.code in (0, None), f"{argv!r}: SystemExit({exit_.code!r})"
            return
    if status == 0:
        assert argv[:1] == ["scenarios"], f"{argv!r} exited 0 without running"
        return
    text = err.getvalue()
    assert status == 2, f"{argv!r}: status {status}, stderr {text!r}"
    assert text.startswith("mqlab: error: ") and "Traceback" not in text, f"{argv!r}: {text!r}"
    assert text.count("\n") == 1 and text.endswith("\n"), f"{argv!r}: {text!r}"  # one terminal line


leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10),
                   st.sampled_from(SPECIAL))
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


@st.composite
def raw_configs(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(SCENARIOS)))
    fields = list(SCENARIOS[name].config_model.model_fields)
    keys = st.one_of(st.sampled_from(fields), st.text(max_size=8))
    raw = draw(st.dictionaries(keys, values, max_size=5))
    if "faults" in fields and draw(st.booleans()):
        fault = st.dictionaries(st.sampled_from(["target", "at", "point", "restart_after", "x"]), values)
        raw["faults"] = draw(st.lists(fault, max_size=3))
    return name, raw


def _one_line(error: InputError) -> None:
    text = str(error)
    # a field or value holding a line break is shown escaped, never as a second line
    assert "\n" not in text and "\r" not in text and text.startswith(one_line(f"{error.field}: got ")), repr(text)


@given(raw_configs())
def test_config_loading_accepts_or_raises_one_input_error(case: tuple[str, dict[str, Any]]) -> None:
    name, raw = case
    scenario = SCENARIOS[name]
    try:
        scenario.config_model.model_validate(raw)
    except pydantic.ValidationError as exc:
        _one_line(input_error_from(exc))
    make = getattr(importlib.import_module(scenario.module), "make_config", None)
    if make is not None and all(isinstance(k, str) for k in raw):
        try:
            make(**raw)
        except InputError as exc:
            _one_line(exc)


SAFE_CHARS = string.ascii_letters + string.digits
secret = st.text(SAFE_CHARS, min_size=6, max_size=10).map(lambda s: "pw" + s)
urlish = st.one_of(
    junk,
    st.builds(lambda scheme, user, pw, host, port, path: f"{scheme}://{user}:{pw}@{host}{port}/{path}",
              st.sampled_from(["amqp", "amqps", "redis", "rediss", "unix", "fake", "sqlite", "postgresql",
                               "http", "", "amqp:", "AMQP"]),
              st.text(SAFE_CHARS, max_size=5), secret, st.sampled_from(["", "h", "127.0.0.1", "[::1", "a b"]),
              st.sampled_from(["", ":5672", ":0", ":99999", ":x", ":-1"]), st.text(max_size=6)))
environments = st.dictionaries(
    st.sampled_from(["MQLAB_AMQP_URL", "MQLAB_REDIS_URL", "MQLAB_DATABASE_URL", "MQLAB_OFFLINE",
                     "MQLAB_CONNECT_TIMEOUT_S"]), urlish, max_size=5)


@given(environments)
def test_settings_accept_or_refuse_in_one_masked_line(env: dict[str, str]) -> None:
    from real_adapters.settings import Settings

    try:
        settings = Settings.from_env(env)
    except InputError as exc:
        _one_line(exc)
        # the URL variables mask passwords; a flag or a timeout is echoed as given (a URL
        # pasted into MQLAB_OFFLINE is the user's own typo, not a URL MQ Lab handles)
        value = env.get(exc.field, "")
        if exc.field.endswith("_URL") and ":pw" in value and "@" in value:
            password = value.split(":pw", 1)[1].split("@", 1)[0]
            assert "pw" + password not in str(exc), f"password echoed: {exc}"
        return
    for value in env.values():  # accepted: its repr must still hide any password
        if ":pw" in value and "@" in value:
            password = "pw" + value.split(":pw", 1)[1].split("@", 1)[0]
            assert password not in repr(settings)


names = st.one_of(st.text(max_size=8), st.sampled_from(["amq.x", "", "a" * 256, "é" * 128]), st.integers())
arguments = st.one_of(st.none(), st.dictionaries(
    st.one_of(st.sampled_from(["hash-header", "hash-property", "alternate-exchange", "x-max-priority",
                               "x-message-ttl", "x-overflow", "x-dead-letter-exchange",
                               "x-dead-letter-routing-key", "x-max-length", "x-match"]), st.text(max_size=6)),
    values, max_size=3))


@given(names, st.one_of(st.sampled_from(["direct", "fanout", "topic", "headers", "x-consistent-hash",
                                         "x-modulus-hash"]), st.text(max_size=8)),
       arguments, names, st.one_of(st.text(max_size=6), st.integers(), st.sampled_from(["0", "1", "-1", "7"])),
       arguments)
def test_topology_declarations_accept_or_raise_input_error(ex: Any, kind: Any, ex_args: Any, queue: Any,
                                                           key: Any, q_args: Any) -> None:
    env = simpy.Environment()
    broker = Broker(env, np.random.default_rng(0))
    for step in (lambda: broker.declare_exchange(ex, kind, arguments=ex_args),
                 lambda: broker.declare_queue(queue, arguments=q_args),
                 lambda: broker.bind(queue, ex, key, arguments=q_args)):
        try:
            step()
        except InputError as exc:
            _one_line(exc)
            return


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                     st.text(max_size=8)),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                               st.one_of(st.sampled_from(["schema_version", "submission_id", "user_id",
                                                          "answers", "seq", "kind"]), st.text(max_size=5)),
                               inner, max_size=6), max_leaves=12)


@given(json_values)
def test_payload_gate_answers_in_one_line(body: Any) -> None:
    problem = payload_error(body)
    assert problem is None or (isinstance(problem, str) and "\n" not in problem)
