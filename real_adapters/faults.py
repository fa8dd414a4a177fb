"""Real fault injection: what can go wrong with real processes and a real broker.

Fault specs (``mqlab real flash-sale --fault SPEC``, repeatable)::

    kill:consumer-2@40%            kill -9 consumer-2 once 40% of the submissions were dequeued
    kill:consumer-2@1.5s+2         ... 1.5 s after the load started; start a new one 2 s later
    kill:consumer-2@40%/sending    ... at the moment it is sending a voucher (ledger committed,
                                   not yet acked), so the kill never falls between the stock
                                   decrement and the commit
    stop:consumer-1@30%+1.5        SIGSTOP consumer-1, SIGCONT 1.5 s later
    broker-restart@40%+1           rabbitmqctl stop_app, 1 s down, start_app (always, in a finally)
    point:relay@relay:after-publish#20        the relay kills itself (SIGKILL) the 20th time it
    point:consumer-1@consumer:after-commit#5  reaches that crash point (see simulator.flow)

A crash point runs inside the worker: ``CrashPoints.point`` is the ``faults`` port; it records
the crash in the process's own history first, so the checker can name it, then SIGKILLs itself.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from simulator.errors import InputError
from simulator.flow import CRASH_POINTS
from simulator.ports import Done

KINDS = ("kill", "stop", "broker-restart", "point")
_TARGET = re.compile(r"^(consumer-[1-9]\d{0,3}|relay)$")
_WHEN = re.compile(r"^(?P<num>\d+(?:\.\d+)?)(?P<unit>s|%)$")
SPEC_HELP = ("kill:TARGET@WHEN[+RESTART_S][/sending], stop:TARGET@WHEN+PAUSE_S, "
             "broker-restart@WHEN[+DOWN_S] or point:TARGET@CRASH_POINT[#N]; WHEN is 1.5s or 40%; "
             "TARGET is consumer-N or relay")
RABBITMQCTL_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    target: str = "broker"
    at_s: float | None = None         # seconds after the load started
    at_share: float | None = None     # or: share of submissions dequeued (0..1)
    seconds: float | None = None      # kill: restart after; stop: pause; broker-restart: down time
    sending: bool = False             # kill: wait until the target is mid-send
    point: str | None = None
    nth: int = 1
    text: str = ""

    def due(self, elapsed_s: float, dequeued_share: float) -> bool:
        if self.at_s is not None:
            return elapsed_s >= self.at_s
        return self.at_share is not None and dequeued_share >= self.at_share


def _bad(text: str, why: str = "") -> InputError:
    return InputError("--fault", text, SPEC_HELP + (f" ({why})" if why else ""))


def _seconds(text: str, raw: str, what: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise _bad(text, f"{what} must be a number of seconds") from None
    if not 0 <= value <= 120:
        raise _bad(text, f"{what} must be 0..120 s")
    return value


def parse_fault(text: str) -> FaultSpec:
    """One ``--fault`` value; anything malformed is an ``InputError`` (one line, exit 2)."""
    if text.startswith("broker-restart"):
        kind, target, at = "broker-restart", "broker", text[len("broker-restart"):]
        if not at.startswith("@"):
            raise _bad(text)
        at = at[1:]
    else:
        kind, _, rest = text.partition(":")
        if kind not in KINDS:
            raise _bad(text, f"unknown kind {kind!r}")
        target, sep, at = rest.partition("@")
        if not sep or not _TARGET.match(target):
            raise _bad(text, "TARGET must be consumer-N or relay")
    if kind == "point":
        point, _, nth = at.partition("#")
        if point not in CRASH_POINTS or not point.startswith(("consumer:", "relay:")):
            raise _bad(text, "crash points: " + ", ".join(p for p in CRASH_POINTS
                                                         if p.startswith(("consumer:", "relay:"))))
        if point.split(":")[0] != target.split("-")[0]:
            raise _bad(text, f"{point} is not a point {target} reaches")
        if nth and (not nth.isdigit() or not 1 <= int(nth) <= 1_000_000):
            raise _bad(text, "#N must be a whole number >= 1")
        return FaultSpec("point", target, point=point, nth=int(nth or 1), text=text)
    sending = at.endswith("/sending")
    if sending:
        if kind != "kill" or not target.startswith("consumer-"):
            raise _bad(text, "/sending applies to kill:consumer-N only")
        at = at[: -len("/sending")]
    when, _, seconds = at.partition("+")
    match = _WHEN.match(when)
    if not match:
        raise _bad(text, "WHEN is seconds (1.5s) or a share of submissions dequeued (40%)")
    number = float(match["num"])
    if match["unit"] == "%" and not 0 <= number <= 100:
        raise _bad(text, "a share is 0..100%")
    if kind == "stop" and not seconds:
        raise _bad(text, "stop needs +PAUSE_S")
    return FaultSpec(kind, target,
                     at_s=number if match["unit"] == "s" else None,
                     at_share=number / 100 if match["unit"] == "%" else None,
                     seconds=_seconds(text, seconds, "+seconds") if seconds else None,
                     sending=sending, text=text)


def crash_point_arg(spec: FaultSpec) -> str:
    """How a point fault is handed to the worker on its command line."""
    return f"{spec.point}#{spec.nth}"


def parse_crash_point_arg(text: str) -> tuple[str, int]:
    point, _, nth = text.partition("#")
    if point not in CRASH_POINTS or (nth and not nth.isdigit()):
        raise InputError("--crash-point", text, "POINT[#N] with POINT one of " + ", ".join(CRASH_POINTS))
    return point, int(nth or 1)


# --------------------------------------------------------------------------- inside a worker

class CrashPoints:
    """The ``faults`` port of a worker: die with SIGKILL the ``nth`` time ``point`` is reached."""

    def __init__(self, point: str, nth: int, history: Any):
        self.point_name, self.nth, self.history = point, nth, history
        self.reached = 0

    def point(self, name: str, process: str) -> Done:
        if name == self.point_name:
            self.reached += 1
            if self.reached == self.nth:
                self.history.record("info", "crash", process, {"point": name},
                                    component=process.split("-")[0])
                die()
        return Done(None)


def die() -> None:
    """kill -9 of ourselves: no finally blocks, no flush beyond what is already written."""
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(5)  # the signal is delivered asynchronously; never run on past this point
    os._exit(137)


# --------------------------------------------------------------------------- from the runner

def signal_process(pid: int, sig: int) -> bool:
    """Send ``sig`` to one process we started; False if it is already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def rabbitmqctl(*args: str, timeout_s: float = RABBITMQCTL_TIMEOUT_S) -> None:
    """Run one rabbitmqctl command; raise RuntimeError with its last output line on failure."""
    try:
        proc = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise RuntimeError("rabbitmqctl is not installed here: a broker restart needs it") from None
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} took longer than {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({proc.returncode}): {last[0][:200]}")


def restart_broker(down_s: float, on_stop: Any = None) -> float:
    """stop_app, stay down ``down_s``, start_app - start_app runs in a finally, whatever
    happened in between - then wait for the node to serve again.  ``on_stop`` is called just
    before stop_app (the broker starts closing connections at once).  Returns the seconds from
    stop_app to the node serving again."""
    if on_stop is not None:
        on_stop()
    started = time.monotonic()
    try:
        rabbitmqctl("stop_app")
        time.sleep(down_s)
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup", "--timeout", "60")
    return time.monotonic() - started
