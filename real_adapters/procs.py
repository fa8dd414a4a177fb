"""The runner's worker processes: start them (``mqlab worker ...``), wait until they are ready,
find them by name, signal them, and stop them - only these, by pid, never by name.

Service URLs go to the children in their environment, never on their command line (where
``ps`` would show a password).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import journal
from .faults import signal_process
from .settings import Settings

POLL_S = 0.05
STOP_S = 10.0  # a SIGTERMed worker finishes its message and leaves within this


@dataclass
class Proc:
    role: str
    name: str
    popen: subprocess.Popen
    log: Any
    tail: journal.Tail
    generation: int = 1
    killed_by_us: bool = False
    paused_until: float | None = None
    exit_seen: bool = False

    @property
    def stem(self) -> str:
        return f"{self.name}.{self.popen.pid}"

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None


class Fleet:
    def __init__(self, run_dir: Path, namespace: str, settings: Settings, *, max_seconds: float,
                 crash_points: dict[str, str]):
        self.run_dir, self.namespace, self.settings = run_dir, namespace, settings
        self.max_seconds = max_seconds
        self.crash_points = crash_points  # process name -> "POINT#N" (first generation only)
        self.procs: list[Proc] = []

    def _env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ, MQLAB_AMQP_URL=s.amqp_url, MQLAB_REDIS_URL=s.redis_url,
                   MQLAB_DATABASE_URL=s.database_url, MQLAB_CONNECT_TIMEOUT_S=str(s.connect_timeout_s))
        env.pop("MQLAB_OFFLINE", None)
        return env

    def spawn(self, role: str, name: str) -> Proc:
        generation = 1 + sum(1 for p in self.procs if p.name == name)
        args = [sys.executable, "-m", "simulator.cli", "worker", role, "--name", name,
                "--run-dir", str(self.run_dir), "--namespace", self.namespace,
                "--config", str(self.run_dir / "config.json"), "--max-seconds", str(self.max_seconds)]
        if role == "loadgen":
            args += ["--start-file", str(self.run_dir / "GO")]
        if generation == 1 and name in self.crash_points:  # its replacement runs clean
            args += ["--crash-point", self.crash_points[name]]
        log = open(self.run_dir / f"{name}.{generation}.log", "w", encoding="utf-8")  # noqa: SIM115
        popen = subprocess.Popen(args, env=self._env(), stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
        proc = Proc(role, name, popen, log, journal.Tail(self.run_dir / f"{name}.{popen.pid}.jsonl"),
                    generation)
        self.procs.append(proc)
        return proc

    def wait_ready(self, procs: list[Proc], limit_s: float) -> None:
        limit = time.monotonic() + limit_s
        while time.monotonic() < limit:
            if all((self.run_dir / f"{p.stem}.ready").exists() for p in procs):
                return
            dead = next((p for p in procs if not p.alive), None)
            if dead is not None:
                raise RuntimeError(f"{dead.name} exited ({dead.popen.returncode}) while starting; "
                                   f"see {self.run_dir / f'{dead.name}.{dead.generation}.log'}")
            time.sleep(POLL_S)
        raise RuntimeError(f"workers not ready within {limit_s:.0f} s (see the logs in {self.run_dir})")

    def live(self, name: str) -> Proc | None:
        return next((p for p in reversed(self.procs) if p.name == name and p.alive), None)

    def any_alive(self, role: str) -> bool:
        return any(p.role == role and p.alive for p in self.procs)

    def pause(self, proc: Proc, seconds: float) -> None:
        signal_process(proc.popen.pid, signal.SIGSTOP)
        proc.paused_until = time.monotonic() + seconds

    def resume_due(self) -> list[Proc]:
        """SIGCONT every paused process whose pause is over; those resumed."""
        resumed = []
        for p in self.procs:
            if p.paused_until is not None and time.monotonic() >= p.paused_until:
                signal_process(p.popen.pid, signal.SIGCONT)
                p.paused_until = None
                resumed.append(p)
        return resumed

    def kill(self, proc: Proc) -> None:
        proc.killed_by_us = True
        signal_process(proc.popen.pid, signal.SIGKILL)

    def stop_all(self, force: bool = False) -> list[str]:
        """SIGTERM every process still running (a paused one is continued first), wait, then
        SIGKILL what is left.  Returns a note per process that had to be killed."""
        notes = []
        live = [p for p in self.procs if p.alive]
        for p in live:
            if p.paused_until is not None:
                signal_process(p.popen.pid, signal.SIGCONT)
                p.paused_until = None
            signal_process(p.popen.pid, signal.SIGKILL if force else signal.SIGTERM)
        limit = time.monotonic() + STOP_S
        for p in live:
            try:
                p.popen.wait(timeout=max(0.1, limit - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_process(p.popen.pid, signal.SIGKILL)
                p.popen.wait(timeout=5)
                notes.append(f"{p.name} did not stop on SIGTERM; killed")
        for p in self.procs:
            p.log.close()
        return notes
