"""A small threaded TCP proxy on loopback that a test can cut and restore.

It stands between a client and one real service (PostgreSQL, Redis, RabbitMQ) so a test can
make that service unreachable for one client without stopping the shared server::

    with TcpProxy("127.0.0.1", 5432) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
        ...
        proxy.cut()       # every open connection is reset; new ones are reset on accept
        proxy.restore()   # new connections go through again

A cut resets (RST) rather than closes politely, so the client notices at its next read or
write instead of waiting for a timeout.  Every thread polls with a short timeout and checks
the stop flag, so ``close()`` ends them all within a bounded time.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time

POLL_S = 0.1
BUFFER = 65536
JOIN_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 256  # a runaway client should hit a wall, not exhaust file descriptors


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets an RST at once (a 'cable pulled' failure)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1",
                 listen_port: int = 0):
        self.target = (target_host, int(target_port))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((listen_host, listen_port))
        self._listener.listen(64)
        self._listener.settimeout(POLL_S)
        self.host, self.port = self._listener.getsockname()[:2]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._threads: list[threading.Thread] = []
        self._cut = threading.Event()
        self._stop = threading.Event()
        self.accepted = 0  # connections passed through to the target
        self.refused = 0   # connections reset because the proxy was cut
        self.cuts = 0
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"tcp-proxy-{self.port}",
                                          daemon=True)

    # ------------------------------------------------------------------ control
    def start(self) -> "TcpProxy":
        self._acceptor.start()
        return self

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def cut(self) -> int:
        """Reset every open connection and refuse new ones; returns how many were cut."""
        self._cut.set()
        self.cuts += 1
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            _reset(client)
            _reset(upstream)
        return len(pairs)

    def restore(self) -> None:
        """Let new connections through again (the cut ones stay dead, as after a real outage)."""
        self._cut.clear()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        try:
            self._listener.close()
        except OSError:
            pass
        self._acceptor.join(JOIN_TIMEOUT_S)
        with self._lock:
            threads = list(self._threads)
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ threads
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # listener closed
            if self._cut.is_set() or len(self._pairs) >= MAX_CONNECTIONS:
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT_S)
            except OSError:
                _reset(client)  # the service itself is down: pass the failure on
                continue
            with self._lock:
                if self._cut.is_set():  # cut while we were connecting
                    _reset(client)
                    _reset(upstream)
                    continue
                self._pairs.append((client, upstream))
                self.accepted += 1
                worker = threading.Thread(target=self._pump, args=(client, upstream), daemon=True,
                                          name=f"tcp-proxy-{self.port}-pump")
                self._threads = [t for t in self._threads if t.is_alive()] + [worker]
            worker.start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        """Copy bytes both ways until either side closes, the pair is cut, or we stop."""
        peer = {client: upstream, upstream: client}
        sel = selectors.DefaultSelector()
        try:
            for s in (client, upstream):
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
            while not self._stop.is_set() and not self._is_dropped(client):
                for key, _ in sel.select(POLL_S):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(BUFFER)
                    if not data:
                        return
                    dst = peer[src]
                    dst.setblocking(True)
                    dst.settimeout(CONNECT_TIMEOUT_S)  # a stuck peer must not hang the thread
                    dst.sendall(data)
                    dst.setblocking(False)
        except (OSError, ValueError, KeyError):
            return  # reset or closed under us (a cut): this pair is finished
        finally:
            sel.close()
            with self._lock:
                self._pairs = [p for p in self._pairs if p[0] is not client]
            for s in (client, upstream):
                try:
                    s.close()
                except OSError:
                    pass

    def _is_dropped(self, client: socket.socket) -> bool:
        with self._lock:
            return all(p[0] is not client for p in self._pairs)


__all__ = ["TcpProxy"]
