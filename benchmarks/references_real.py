"""Raw client scripts: the same work as MQ Lab's adapters, written straight on pika, redis-py
and sqlite3, against the same broker and server in the same run.

Each function does ``n`` operations and returns how many it completed, and the caller times
it; ``publish_windowed`` also returns its own timing, which leaves its connection set-up out.
Messages are built the way the adapter builds them (JSON body with sorted keys, persistent,
message and correlation ids, timestamp), so both sides put the same bytes on the wire.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Callable

import pika
import redis

CHECK_AND_DECR_LUA = """
local left = tonumber(redis.call('GET', KEYS[1]))
if left == nil or left <= 0 then
  return -1
end
return redis.call('DECR', KEYS[1])
"""  # the same script the Redis adapter registers: nothing left -> -1, never below zero


def body_and_properties(body: dict[str, Any], message_id: str, correlation_id: str
                        ) -> tuple[bytes, pika.BasicProperties]:
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    props = pika.BasicProperties(content_type="application/json", message_id=message_id,
                                 correlation_id=correlation_id, delivery_mode=2,
                                 timestamp=int(time.time()))
    return raw, props


MessageFactory = Callable[[int], tuple[bytes, pika.BasicProperties]]


def _params(url: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = 5
    return params


# ---------------------------------------------------------------------------- publishing

class RawBroker:
    """One BlockingConnection kept open for the whole section, as the adapter keeps its own,
    with one cached channel per publish kind (the adapter caches "confirm" and "plain").
    A lost connection is opened again on next use, as the adapter does."""

    def __init__(self, url: str):
        self.url = url
        self.conn: Any = None
        self._channels: dict[bool, Any] = {}
        self._ensure()

    def _ensure(self) -> Any:
        if self.conn is None or not self.conn.is_open:
            self._channels.clear()
            self.conn = pika.BlockingConnection(_params(self.url))
        return self.conn

    def _channel(self, confirms: bool) -> Any:
        conn = self._ensure()
        ch = self._channels.get(confirms)
        if ch is None or not ch.is_open:
            ch = self._channels[confirms] = conn.channel()
            if confirms:
                ch.confirm_delivery()  # from now on basic_publish waits for the basic.ack
        return ch

    def publish(self, exchange: str, routing_key: str, make: MessageFactory, n: int, *, confirms: bool) -> int:
        ch = self._channel(confirms)
        for i in range(n):
            body, props = make(i)
            ch.basic_publish(exchange, routing_key, body, props)
        return n

    def consume(self, queue: str, n: int, prefetch: int,
                work: Callable[[Any, Any, dict[str, Any]], None] | None = None,
                inactivity_s: float = 5.0) -> int:
        """``n`` deliveries with manual acks on a channel of its own (the adapter's
        ``deliveries`` opens and closes one per call too); ``work`` runs before each ack."""
        ch = self._ensure().channel()
        ch.basic_qos(prefetch_count=prefetch)
        count = 0
        try:
            for method, props, body in ch.consume(queue, auto_ack=False, inactivity_timeout=inactivity_s):
                if method is None:
                    break  # the queue went quiet before n arrived
                payload = json.loads(body)  # the adapter decodes every body; so does this
                if work is not None:
                    work(method, props, payload)
                ch.basic_ack(method.delivery_tag)
                count += 1
                if count >= n:
                    break
        finally:
            if ch.is_open:
                ch.close()
        return count

    def close(self) -> None:
        conn, self.conn = self.conn, None
        self._channels.clear()
        try:
            if conn is not None and conn.is_open:
                conn.close()
        except pika.exceptions.AMQPError:
            pass  # the broker already dropped it


def publish_windowed(url: str, exchange: str, routing_key: str, make: MessageFactory, n: int,
                     window: int, timeout_s: float = 300.0) -> tuple[int, tuple[float, float]]:
    """SelectConnection with asynchronous confirms: at most ``window`` publishes unconfirmed.

    Returns the number confirmed (basic.ack) and the (wall, CPU) seconds from the channel
    being ready to the last confirm: opening the connection is left out, as it is for the
    adapter rows, whose connection is already open.  A nack or a timeout raises.
    """
    state: dict[str, Any] = {"sent": 0, "acked": 0, "failed": None, "low": 1}
    clock: list[float] = []
    pending: set[int] = set()  # delivery tags sent and not yet confirmed (tags count from 1)
    holder: dict[str, Any] = {}

    def pump() -> None:
        ch = holder["ch"]
        while state["sent"] < n and len(pending) < window:
            body, props = make(state["sent"])
            ch.basic_publish(exchange, routing_key, body, props)
            state["sent"] += 1
            pending.add(state["sent"])

    def settle(tag: int, multiple: bool) -> int:
        # tags are consecutive, so "multiple" settles the run from the lowest open tag up
        # to ``tag``: amortised O(1) per message whatever the window
        if not multiple:
            if tag not in pending:
                return 0
            pending.discard(tag)
            settled = 1
        else:
            settled = 0
            for t in range(state["low"], tag + 1):
                if t in pending:
                    pending.discard(t)
                    settled += 1
        while state["low"] <= state["sent"] and state["low"] not in pending:
            state["low"] += 1
        return settled

    def on_confirm(frame: Any) -> None:
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            state["failed"] = "nack"
        done = settle(method.delivery_tag, method.multiple)
        if state["failed"] is None:
            state["acked"] += done
        if state["acked"] >= n or state["failed"]:
            clock.extend((time.perf_counter(), time.process_time()))
            holder["conn"].close()
        else:
            pump()

    def on_channel(ch: Any) -> None:
        holder["ch"] = ch

        def start(_frame: Any) -> None:
            clock[:] = [time.perf_counter(), time.process_time()]
            pump()

        ch.confirm_delivery(on_confirm, callback=start)

    def on_open(conn: Any) -> None:
        conn.channel(on_open_callback=on_channel)

    def on_fail(_conn: Any, exc: Any) -> None:
        state["failed"] = repr(exc)
        holder["conn"].ioloop.stop()

    def give_up() -> None:
        state["failed"] = "timeout"
        holder["conn"].close()

    conn = pika.SelectConnection(_params(url), on_open_callback=on_open, on_open_error_callback=on_fail,
                                 on_close_callback=lambda c, _reason: c.ioloop.stop())
    holder["conn"] = conn
    conn.ioloop.call_later(timeout_s, give_up)
    conn.ioloop.start()
    if state["failed"] or len(clock) != 4:
        raise RuntimeError(f"windowed publish ended early: {state['failed']} after {state['acked']} acks")
    return state["acked"], (clock[2] - clock[0], clock[3] - clock[1])


# ---------------------------------------------------------------------------- consume work

class RawLedger:
    """sqlite3 with the adapter's settings: WAL, synchronous=FULL, BEGIN IMMEDIATE per transaction."""

    def __init__(self, path: str):
        self.conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS ledger (msg_id TEXT PRIMARY KEY, user_id TEXT NOT NULL)")

    def grant(self, msg_id: str, user: str) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO ledger (msg_id, user_id) VALUES (?, ?) ON CONFLICT (msg_id) DO NOTHING",
                  (msg_id, user))
        c.execute("COMMIT")

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def consume_decr_ledger_ack(broker: RawBroker, queue: str, n: int, prefetch: int, client: redis.Redis,
                            stock_key: str, ledger: RawLedger) -> int:
    def work(_method: Any, props: Any, payload: dict[str, Any]) -> None:
        client.decr(stock_key)
        ledger.grant(props.message_id, str(payload.get("user_id")))

    return broker.consume(queue, n, prefetch, work)


# ---------------------------------------------------------------------------- redis

def redis_decr(client: redis.Redis, key: str, n: int) -> int:
    for _ in range(n):
        client.decr(key)
    return n


def redis_decr_pipelined(client: redis.Redis, key: str, n: int, batch: int = 100) -> int:
    done = 0
    while done < n:
        pipe = client.pipeline(transaction=False)
        for _ in range(min(batch, n - done)):
            pipe.decr(key)
        done += len(pipe.execute())
    return done


def redis_check_and_decr(client: redis.Redis, key: str, n: int) -> int:
    script = client.register_script(CHECK_AND_DECR_LUA)
    for _ in range(n):
        script(keys=[key])
    return n
