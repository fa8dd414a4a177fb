"""A test-owned ``redis-server``: one process on a free loopback port, in a directory of its own.

The persistence lessons need to crash Redis with ``kill -9`` and start it again from the same
files.  Doing that to the shared server on 6379 would take it away from everybody else, so
the tests start their own.  This object only ever signals the pid it started itself.

    with RedisServer(tmp_path, mode="always") as server:
        client = server.client()
        ...
        server.kill()      # SIGKILL, no shutdown, no final save
        server.start()     # same port, same directory: Redis reloads whatever it persisted

Modes (the ``appendfsync`` policy, or no persistence at all):

``always``    appendonly yes, appendfsync always   (fsync before every reply)
``everysec``  appendonly yes, appendfsync everysec (fsync once a second in the background)
``no``        appendonly yes, appendfsync no       (the OS decides when to flush)
``none``      appendonly no, save ""               (nothing on disk: a restart is empty)
``rdb``       appendonly no, save "3600 1"         (snapshots only, none due during a test)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from simulator.errors import InputError

MODES: dict[str, tuple[str, ...]] = {
    "always": ("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
    "everysec": ("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
    "no": ("--appendonly", "yes", "--appendfsync", "no", "--save", ""),
    "none": ("--appendonly", "no", "--save", ""),
    "rdb": ("--appendonly", "no", "--save", "3600 1"),
}
HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
PORT_ATTEMPTS = 5  # another process may grab the free port between our probe and Redis' bind


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def free_port() -> int:
    """A port the kernel has just handed out on loopback (free now; Redis binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, directory: str | os.PathLike[str], *, mode: str = "none",
                 binary: str | None = None, start_timeout_s: float = START_TIMEOUT_S):
        if mode not in MODES:
            raise InputError("mode", mode, ", ".join(MODES))
        self.binary = binary or redis_server_binary()
        if self.binary is None:
            raise FileNotFoundError("redis-server is not on PATH")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.start_timeout_s = start_timeout_s
        self.port: int | None = None  # chosen on the first start, kept for every restart
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = self.directory / "redis.log"

    # ------------------------------------------------------------------ lifecycle
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server has not been started yet")
        return f"redis://{HOST}:{self.port}/0"

    def _command(self, port: int) -> list[str]:
        return [self.binary, "--port", str(port), "--bind", HOST, "--dir", str(self.directory),
                "--daemonize", "no",  # we need the real pid to kill; a daemon would fork away
                "--protected-mode", "yes", "--dbfilename", "dump.rdb",
                "--appendfilename", "appendonly.aof", "--logfile", "",  # log to our stdout file
                *MODES[self.mode]]

    def start(self) -> "RedisServer":
        """Start (or restart after ``kill``) and wait until it answers PING; raises on timeout."""
        if self.running:
            raise RuntimeError(f"redis-server pid {self.pid} is still running")
        # first start: try a few free ports; a restart must reuse the same port
        ports = [self.port] if self.port is not None else [free_port() for _ in range(PORT_ATTEMPTS)]
        last_error = ""
        for port in ports:
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(self._command(port), stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, cwd=self.directory)
            if self._wait_ready(port):
                self.port = port
                self.starts += 1
                return self
            last_error = self._tail_log()
            self.kill()  # alive but silent (or already dead): never leave it behind
        raise RuntimeError(f"redis-server did not answer PING within {self.start_timeout_s} s "
                           f"(mode {self.mode}); log tail: {last_error}")

    def _wait_ready(self, port: int) -> bool:
        # bounded both in time and in attempts; a crashed process ends the wait at once
        deadline = time.monotonic() + self.start_timeout_s
        for _ in range(int(self.start_timeout_s / 0.05) + 1):
            if self.process is None or self.process.poll() is not None:
                return False
            if _ping(port):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return False

    def kill(self) -> None:
        """``kill -9`` our own pid: no shutdown hook runs, nothing more is written or fsynced."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self._reap()

    def restart(self) -> "RedisServer":
        self.kill()
        return self.start()

    def stop(self) -> None:
        """Clean end of a test: SIGTERM our pid (Redis then exits), SIGKILL if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # SIGKILL cannot be ignored; this is a stuck kernel
            pass

    def _tail_log(self, chars: int = 400) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:].strip()
        except OSError:
            return ""

    # ------------------------------------------------------------------ clients
    def client(self, **kwargs: Any) -> Any:
        """A redis-py client for this server, with no silent retries (a retried DECR could
        apply twice) and short timeouts."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0, "retry": Retry(NoBackoff(), 0)}
        options.update(kwargs)
        return redis.Redis.from_url(self.url, **options)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ping(port: int, timeout_s: float = 0.5) -> bool:
    """PING in raw RESP, so the wait does not depend on a client library's retry rules."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False  # not listening yet, or still loading its files (-LOADING)


__all__ = ["MODES", "RedisServer", "free_port", "redis_server_binary"]
