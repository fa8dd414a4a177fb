"""Random fault schedules for the flash-sale world, and the command that replays one.

A *schedule* is a whole ``FlashSaleConfig``: a seed (which fixes arrivals, handler times and
ack losses), a small load, persistence settings and a list of crashes at random times.  The
design under test (ack mode, dedupe, stock strategy, write pattern, reseed...) is passed in
as ``design`` and never drawn, so one strategy serves both "this must always hold" and "this
must break on some schedule".

Every drawn value is chosen so that hypothesis shrinks towards the simplest schedule: fewer
faults, earlier times, smaller loads, the first choice of each list.  Crash times are whole
hundredths of a second so the printed command is short and parses back to the same float.

``reproducer(config)`` prints ``mqlab run flash-sale ...`` with every non-default option;
running it gives the same ``history_sha256`` as the config (tests check both the parse and
the replay).  ``command_for`` does the same for any scenario's config.

Needs ``hypothesis`` (a dev dependency); nothing in the simulator imports this module.
"""

from __future__ import annotations

import shlex
from typing import Any, Mapping, Sequence

from hypothesis import strategies as st
from pydantic import BaseModel

from simulator.config import FlashSaleConfig, Fault

__all__ = ["ALL_TARGETS", "PERSISTENCE", "fault_schedules", "reproducer", "command_for", "horizon_s"]

# What a time-based crash can hit.  "producer" is server-1; "consumer" becomes consumer-N
# for an N the schedule has.
ALL_TARGETS = ("consumer", "broker", "redis", "db", "relay", "producer", "server-2")
PERSISTENCE = ("aof-always", "aof-everysec", "rdb", "none")

_RESTARTS = (0.05, 0.2, 0.5, 1.0, 2.0)  # seconds down; short first so shrinking prefers them
_ACK_LOSS = (0.0, 0.02, 0.1, 0.3)
_GATEWAY_FAILURE = (0.0, 0.1, 0.5)
_FSYNC = (0.02, 0.005, 0.1, 0.3)


def horizon_s(submissions: int, arrival_rate: float) -> float:
    """Roughly when the last submission arrives (spike arrivals finish sooner); crashes land
    in [0, horizon] so that most of them hit work in progress."""
    return 1.2 * submissions / arrival_rate + 0.3


@st.composite
def _fault(draw: st.DrawFn, targets: Sequence[str], consumers: int, horizon: float,
           may_stay_down: bool) -> Fault:
    target = draw(st.sampled_from(targets))
    if target == "consumer":
        target = f"consumer-{draw(st.integers(1, consumers))}"
    at = draw(st.integers(0, max(1, int(horizon * 100)))) / 100
    restarts: list[float | None] = list(_RESTARTS)
    if may_stay_down:
        restarts.append(None)
    return Fault(target=target, at=at, restart_after=draw(st.sampled_from(restarts)))


@st.composite
def fault_schedules(draw: st.DrawFn, design: Mapping[str, Any] | None = None, *,
                    targets: Sequence[str] = ALL_TARGETS, max_faults: int = 3,
                    persistence: Sequence[str] = PERSISTENCE,
                    ack_loss: bool = True, gateway_failure: bool = True,
                    may_stay_down: bool = False,
                    submissions: tuple[int, int] = (50, 150),
                    vary: Mapping[str, Sequence[Any]] | None = None) -> FlashSaleConfig:
    """A flash-sale config with random load, persistence and crashes, and ``design`` fixed.

    ``may_stay_down`` allows a crash with no restart (``+never``); invariants that need the
    system to recover (liveness, relay) leave it off.  A key of ``design`` always wins over
    the drawn value, so a test can pin, say, ``redis_persistence`` or ``faults``.  ``vary``
    draws further fields from the choices given (first choice = what shrinking prefers),
    e.g. ``{"stock_strategy": ("redis-lua", "db-update")}``.
    """
    fixed = dict(design or {})
    for name, choices in (vary or {}).items():
        if name not in fixed:
            fixed[name] = draw(st.sampled_from(tuple(choices)))

    def pick(name: str, strategy: st.SearchStrategy[Any]) -> Any:
        return fixed[name] if name in fixed else draw(strategy)

    n = pick("submissions", st.integers(*submissions))
    rate = float(pick("arrival_rate", st.integers(50, 400).map(float)))
    consumers = pick("consumers", st.integers(1, 6))
    drawn: dict[str, Any] = {
        "seed": pick("seed", st.integers(0, 2**32 - 1)),
        "submissions": n,
        "arrival_rate": rate,
        "arrival_profile": pick("arrival_profile", st.sampled_from(["constant", "spike"])),
        "stock": pick("stock", st.integers(5, 250)),
        "consumers": consumers,
        "prefetch": pick("prefetch", st.integers(0, 20)),
        "handler_ms": float(pick("handler_ms", st.integers(0, 10).map(float))),
        "ack_loss": pick("ack_loss", st.sampled_from(_ACK_LOSS if ack_loss else (0.0,))),
        "gateway_failure": pick("gateway_failure",
                                st.sampled_from(_GATEWAY_FAILURE if gateway_failure else (0.0,))),
        "redis_persistence": pick("redis_persistence", st.sampled_from(tuple(persistence))),
        "fsync_interval_s": pick("fsync_interval_s", st.sampled_from(_FSYNC)),
    }
    if "faults" in fixed:
        faults = tuple(fixed["faults"])
    else:
        # the count first, so about as many schedules have three crashes as have none
        # (a bare list strategy leans heavily towards empty lists)
        count = draw(st.integers(0, max_faults))
        one = _fault(targets, consumers, horizon_s(n, rate), may_stay_down)
        faults = tuple(draw(st.lists(one, min_size=count, max_size=count)))
    rest = {k: v for k, v in fixed.items() if k not in drawn and k != "faults"}
    return FlashSaleConfig(**drawn, **rest, faults=faults)


# --------------------------------------------------------------------------- reproducer

def _number(value: float) -> str:
    # repr round-trips exactly; 2.0 prints as "2" because the CLI accepts either
    return str(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)


def _crash(fault: Fault) -> str:
    if fault.at is None:
        raise ValueError(f"crash point {fault.point!r} has no command-line form (only TARGET@AT)")
    text = f"{fault.target}@{_number(fault.at)}"
    if fault.restart_after is None:
        return text + "+never"
    if fault.restart_after != Fault.model_fields["restart_after"].default:
        text += f"+{_number(fault.restart_after)}"
    return text


def command_for(scenario: str, config: BaseModel, *, json_output: bool = True) -> str:
    """``mqlab run SCENARIO`` with every option of ``config`` that differs from its default.

    ``--seed`` is always printed (when the config has one), so the command says which run it
    is even when every other option is a default.
    """
    words = ["mqlab", "run", scenario]
    fields = type(config).model_fields
    if "seed" in fields:
        words += ["--seed", str(getattr(config, "seed"))]
    for name, info in fields.items():
        value = getattr(config, name)
        if name == "seed" or value == info.default:
            continue
        flag = "--" + name.replace("_", "-")
        if name == "faults":
            for fault in value:
                words += ["--crash", _crash(fault)]
        elif name == "piecewise":
            words += [flag, ",".join(f"{_number(s)}:{_number(r)}" for s, r in value)]
        elif isinstance(value, bool):
            words.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, float):
            words += [flag, _number(value)]
        else:
            words += [flag, str(value)]
    if json_output:
        words.append("--json")
    return " ".join(shlex.quote(w) for w in words)


def reproducer(config: FlashSaleConfig, *, json_output: bool = True) -> str:
    """The ``mqlab run flash-sale`` command that replays ``config``."""
    return command_for("flash-sale", config, json_output=json_output)
