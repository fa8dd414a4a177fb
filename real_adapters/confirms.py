"""Windowed publisher confirms: many publishes with at most ``window`` of them unconfirmed.

pika's ``BlockingConnection`` waits for each ``basic.ack`` inside ``basic_publish`` once a
channel is in confirm mode, so a blocking channel can only ever have one publish in flight.
Streaming confirms need pika's asynchronous API; this module follows pika's
``asynchronous_publisher_example``: a ``SelectConnection`` of its own, one channel in
confirm mode, delivery tags counted locally (the broker numbers publishes 1, 2, 3 ... per
channel), and ``basic.ack``/``basic.nack`` frames that may settle many tags at once
(``multiple=True``).

Unlike the example, the I/O loop does not run in a thread of its own: each ``publish_many``
call runs it until the batch is settled or its deadline passes, then stops it.  Between
calls nothing reads the socket, so heartbeats go unanswered; a connection idle for longer
than a third of the heartbeat timeout is therefore closed and opened again before use rather
than trusted.  Every wait (opening, publishing, closing) is bounded by a timer on the loop.

Not thread-safe, like the rest of the broker port: one publisher per thread.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pika
import pika.exceptions as px
import pika.spec

from simulator.errors import ChannelClosed, ServiceDown
from simulator.messages import Message

from .codec import encode_body, properties

COMPONENT = "broker"
DEFAULT_HEARTBEAT_S = 60  # RabbitMQ's default heartbeat timeout, used when none is configured
CLOSE_TIMEOUT_S = 2.0


@dataclass
class PublishReport:
    """What became of each message of one ``publish_many`` call.

    Lists hold indices into the sequence given, in publish order.  Only ``acked`` messages
    are known to be safe; ``unconfirmed`` ones were sent but the call ended (deadline, lost
    connection, closed channel) before the broker answered, so they may or may not be queued;
    ``unsent`` ones never left the client.  Republishing all but the acked is the caller's
    decision (at-least-once: the consumer must deduplicate).
    """

    total: int
    window: int
    acked: int = 0
    nacked: list[int] = field(default_factory=list)
    returned: list[int] = field(default_factory=list)  # basic.return: mandatory and unroutable
    unconfirmed: list[int] = field(default_factory=list)
    unsent: list[int] = field(default_factory=list)
    published: int = 0
    max_in_flight: int = 0  # the most publishes ever unconfirmed at once (never above window)
    error: ServiceDown | None = None  # why the call ended early, if it did

    @property
    def ok(self) -> bool:
        return self.acked == self.total

    def failed(self) -> list[int]:
        """Indices of every message not confirmed as routed: the ones to consider republishing."""
        return sorted(self.nacked + self.returned + self.unconfirmed + self.unsent)


class _Batch:
    """The bookkeeping of one call: which delivery tag carries which message."""

    def __init__(self, messages: Sequence[Message], window: int, first_tag: int, mandatory: bool,
                 exchange: str, routing_key: str | None):
        self.messages = messages
        # physical names; routing_key None: each message's own (logical) routing key
        self.exchange, self.routing_key = exchange, routing_key
        self.report = PublishReport(total=len(messages), window=window)
        self.window = window
        self.next_index = 0
        self.pending: dict[int, int] = {}  # delivery tag -> index, sent and not yet settled
        self.low = first_tag  # no tag below this is pending (tags are consecutive)
        self.tag = first_tag - 1  # the last tag used
        self.returned: set[int] = set()
        # basic.return carries no delivery tag, only the message and its exchange and routing
        # key.  Messages with the same id and routing key route alike, and returns come in
        # publish order, so a return is the oldest pending, not yet returned, index with its
        # (message id, routing key).  Kept only for mandatory publishes (nothing else returns).
        self.by_id: dict[tuple[str, str], collections.deque[int]] | None = {} if mandatory else None
        self.keys: dict[int, tuple[str, str]] = {}  # index -> its by_id key, while pending

    def settle(self, tag: int, multiple: bool, ack: bool) -> None:
        if multiple:
            tags = range(self.low, tag + 1)  # amortised O(1): each tag is passed once
        else:
            tags = range(tag, tag + 1)
        for t in tags:
            index = self.pending.pop(t, None)
            if index is None:
                continue
            if self.by_id is not None:
                self._forget(index)
            if index in self.returned:
                continue  # already reported as returned; its ack only says "handled"
            if ack:
                self.report.acked += 1
            else:
                self.report.nacked.append(index)
        while self.low <= self.tag and self.low not in self.pending:
            self.low += 1

    def sent(self, index: int, message_id: str, routing_key: str) -> None:
        self.tag += 1
        self.pending[self.tag] = index
        if self.by_id is not None:
            key = (message_id, routing_key)
            self.keys[index] = key
            self.by_id.setdefault(key, collections.deque()).append(index)

    def _forget(self, index: int) -> None:
        key = self.keys.pop(index, None)
        queue = self.by_id.get(key) if key is not None and self.by_id is not None else None
        if not queue:
            return
        if queue[0] == index:
            queue.popleft()  # the usual case: confirms come in publish order
        else:
            queue.remove(index)
        if not queue:
            del self.by_id[key]  # type: ignore[arg-type]

    def on_return(self, message_id: str, routing_key: str) -> None:
        queue = self.by_id.get((message_id, routing_key)) if self.by_id is not None else None
        for index in queue or ():
            if index not in self.returned:
                self.returned.add(index)
                self.report.returned.append(index)
                return

    @property
    def done(self) -> bool:
        return self.next_index >= len(self.messages) and not self.pending


class WindowedPublisher:
    """A confirm-mode channel on a ``SelectConnection`` of its own (see the module doc)."""

    def __init__(self, params: pika.URLParameters, *, heartbeat_s: int | None = None,
                 topology_physical: Callable[[str], str] = lambda name: name):
        self._params = params
        self._physical = topology_physical
        self._idle_limit_s = max(1.0, (heartbeat_s or DEFAULT_HEARTBEAT_S) / 3)
        self._conn: pika.SelectConnection | None = None
        self._channel: Any = None
        self._next_tag = 1  # the delivery tag the broker gives the channel's next publish
        self._last_io = 0.0
        self._confirming = False  # the current channel's confirm.select was answered
        self._batch: _Batch | None = None
        self._wait_error: ServiceDown | None = None  # set by a callback: why the loop must stop
        self._stop_when: Callable[[], bool] | None = None  # what the running loop waits for
        self.connects = 0

    # ------------------------------------------------------------------ the loop
    def _run_until(self, ready: Callable[[], bool], deadline: float) -> bool:
        """Run the I/O loop until ``ready()``, an error, or ``deadline``; True if ready."""
        conn = self._conn
        if conn is None:
            return False
        if ready():
            return True
        timer = conn.ioloop.call_later(max(0.0, deadline - time.monotonic()), conn.ioloop.stop)
        self._stop_when = ready
        try:
            conn.ioloop.start()
        finally:
            self._stop_when = None
            self._last_io = time.monotonic()
            if self._conn is conn:
                conn.ioloop.remove_timeout(timer)
        return ready()

    def _maybe_stop(self) -> None:
        if self._conn is not None and (self._stop_when is None or self._stop_when() or self._wait_error):
            self._conn.ioloop.stop()

    # ------------------------------------------------------------------ opening and closing
    def _ensure_channel(self, deadline: float) -> None:
        """An open confirm-mode channel, opening the connection if needed; raises ServiceDown."""
        if self._conn is not None and (not self._conn.is_open
                                       or time.monotonic() - self._last_io > self._idle_limit_s):
            self.close()  # closed under us, or idle so long its heartbeats went unanswered
        if self._channel is not None and self._channel.is_open:
            return
        self._wait_error = None
        if self._conn is None:
            self._conn = pika.SelectConnection(
                self._params, on_open_callback=self._on_connection_open,
                on_open_error_callback=self._on_open_error, on_close_callback=self._on_connection_closed)
            self.connects += 1
        else:
            self._open_channel(self._conn)
        ok = self._run_until(lambda: self._wait_error is not None or
                             (self._channel is not None and self._confirming), deadline)
        if self._wait_error is not None or not ok:
            error = self._wait_error or ServiceDown(COMPONENT, "timed out opening the confirm channel")
            self.close()
            raise error

    def _on_connection_open(self, conn: pika.SelectConnection) -> None:
        self._open_channel(conn)

    def _open_channel(self, conn: pika.SelectConnection) -> None:
        conn.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, ch: Any) -> None:
        self._channel, self._confirming = ch, False
        self._next_tag = 1  # a new channel numbers its publishes from 1 again
        ch.add_on_close_callback(self._on_channel_closed)
        ch.add_on_return_callback(self._on_return)

        def confirming(_frame: Any) -> None:
            if ch is self._channel:
                self._confirming = True
            self._maybe_stop()

        ch.confirm_delivery(self._on_confirm, callback=confirming)

    # On failure the connection object stays in self._conn (closed): the next call's
    # _ensure_channel, or close(), releases its I/O loop (an epoll descriptor) before a new one.
    def _on_open_error(self, conn: Any, exc: BaseException) -> None:
        if self._conn is conn:
            self._wait_error = ServiceDown(COMPONENT, _describe(exc))
            self._channel = None
        conn.ioloop.stop()

    def _on_connection_closed(self, conn: Any, reason: BaseException) -> None:
        if self._conn is conn:
            self._wait_error = self._wait_error or ServiceDown(COMPONENT, _describe(reason))
            self._channel = None
        conn.ioloop.stop()

    def _on_channel_closed(self, ch: Any, reason: BaseException) -> None:
        if ch is self._channel:
            self._channel = None
            if self._conn is not None and self._conn.is_open and isinstance(reason, px.ChannelClosedByBroker):
                # e.g. 404 on a missing exchange: only the channel is gone
                self._wait_error = ChannelClosed(COMPONENT, _describe(reason))
            else:
                self._wait_error = self._wait_error or ServiceDown(COMPONENT, _describe(reason))
        self._maybe_stop()

    def close(self) -> None:
        """Close the connection gracefully, waiting at most ``CLOSE_TIMEOUT_S``."""
        conn, self._conn, self._channel = self._conn, None, None
        if conn is None:
            return
        try:
            if not (conn.is_closing or conn.is_closed):
                conn.close()
            if not conn.is_closed:
                timer = conn.ioloop.call_later(CLOSE_TIMEOUT_S, conn.ioloop.stop)
                conn.ioloop.start()  # on_close_callback stops it once the broker answers
                conn.ioloop.remove_timeout(timer)
        except (px.AMQPError, OSError):
            pass  # already going away
        finally:
            try:
                conn.ioloop.close()
            except (px.AMQPError, OSError, AttributeError):
                pass

    # ------------------------------------------------------------------ confirms and returns
    def _on_confirm(self, frame: Any) -> None:
        batch = self._batch
        if batch is None or frame.channel_number != getattr(self._channel, "channel_number", None):
            return  # a late confirm from a batch that already ended: its channel was dropped
        method = frame.method
        batch.settle(method.delivery_tag, method.multiple, isinstance(method, pika.spec.Basic.Ack))
        self._safe_pump(batch)
        if batch.done:
            self._maybe_stop()

    def _on_return(self, _ch: Any, method: Any, props: pika.BasicProperties, _body: bytes) -> None:
        if self._batch is not None:
            self._batch.on_return(props.message_id or "", method.routing_key)

    def _safe_pump(self, batch: _Batch) -> None:
        """``_pump`` from inside the I/O loop: a pika error must end the batch, not escape
        through ``ioloop.start()`` to the caller as a raw pika exception."""
        try:
            self._pump(batch)
        except (px.AMQPError, OSError) as exc:
            self._wait_error = self._wait_error or ServiceDown(COMPONENT, _describe(exc))
            self._maybe_stop()

    def _pump(self, batch: _Batch) -> None:
        """Publish while the window has room."""
        ch = self._channel
        messages, report = batch.messages, batch.report
        while batch.next_index < len(messages) and len(batch.pending) < batch.window:
            index = batch.next_index
            msg = messages[index]
            body, content_type = encode_body(msg.body)
            key = batch.routing_key
            if key is None:
                key = self._physical(msg.routing_key) if batch.exchange == "" else msg.routing_key
            ch.basic_publish(batch.exchange, key, body, properties(msg, content_type),
                             mandatory=batch.by_id is not None)
            batch.sent(index, msg.message_id, key)
            batch.next_index += 1
            report.published += 1
            if len(batch.pending) > report.max_in_flight:
                report.max_in_flight = len(batch.pending)
        self._next_tag = batch.tag + 1

    # ------------------------------------------------------------------ the call
    def publish_many(self, exchange: str, routing_key: str | None, messages: Sequence[Message], *,
                     window: int, mandatory: bool, timeout_s: float) -> PublishReport:
        """Publish ``messages`` in order with at most ``window`` unconfirmed; wait for every
        confirm until ``timeout_s`` has passed.  Raises ServiceDown only if nothing could be
        sent (no connection); anything later is reported in the ``PublishReport``."""
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        deadline = time.monotonic() + timeout_s
        self._ensure_channel(deadline)
        # the default exchange routes by queue name, so there the routing key is a queue name too
        key = self._physical(routing_key) if exchange == "" and routing_key is not None else routing_key
        batch = _Batch(messages, window, self._next_tag, mandatory, self._physical(exchange), key)
        self._batch, self._wait_error = batch, None
        try:
            self._safe_pump(batch)
            if self._wait_error is None:
                self._run_until(lambda: batch.done or self._wait_error is not None, deadline)
        finally:
            self._batch = None
        report = batch.report
        report.nacked.sort()
        report.returned.sort()
        report.unconfirmed = sorted(batch.pending.values())
        report.unsent = list(range(batch.next_index, len(messages)))
        if self._wait_error is not None:
            report.error = self._wait_error
        elif not batch.done:
            report.error = ServiceDown(COMPONENT, f"confirms still missing after {timeout_s:g} s")
        if not batch.done:
            # confirms for this batch may still come; a fresh channel keeps them out of the next
            self._drop_channel()
        return report

    def _drop_channel(self) -> None:
        ch, self._channel = self._channel, None
        if ch is not None and ch.is_open:
            try:
                ch.close()
            except (px.AMQPError, OSError):
                self.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (px.ChannelClosed, px.ConnectionClosed)):
        return f"{type(exc).__name__} {exc.reply_code} {exc.reply_text}"[:200]
    return type(exc).__name__
