"""The broker port over RabbitMQ, with pika's ``BlockingConnection``.

One ``BrokerPort`` is one client: one connection, opened on first use and opened again after
it is lost.  Inside it, publishes in confirm mode go on their own channel (``confirm.select``
cannot be turned off again), plain publishes on another, and each consumer gets a channel of
its own with its ``basic.qos`` prefetch.

Port methods return ``Done``: ``publish`` -> ``Done("ack" | "returned" | "nack" | "sent")``,
``ack`` / ``nack`` / ``reject`` -> ``Done(bool)``.  A lost connection becomes
``Done(error=ServiceDown("broker"))``, a channel closed by the broker (404, 406)
``Done(error=ChannelClosed("broker"))``; the next call opens a fresh connection or channel.
Republishing what was never confirmed is the flow's job (its retry loop sees the ServiceDown).

pika's ``BlockingConnection`` is not thread-safe: one ``BrokerPort`` per thread or process.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import pika
import pika.exceptions as px
from pika.adapters.blocking_connection import BlockingChannel

from simulator.errors import ChannelClosed, ServiceDown
from simulator.flow import DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, EXCHANGE, QUEUE, ROUTING_KEY
from simulator.messages import Delivery, Message
from simulator.ports import Done

from .codec import death_reason, encode_body, message_from_amqp, properties
from .confirms import PublishReport, WindowedPublisher
from .settings import check_amqp_url

COMPONENT = "broker"
_CONNECTION_ERRORS = (px.AMQPConnectionError, OSError)  # StreamLost, ConnectionClosed*, timeouts
_CHANNEL_ERRORS = (px.ChannelClosed, px.ChannelWrongStateError)


@dataclass(frozen=True)
class Topology:
    """The flow's AMQP names, optionally prefixed (``"<namespace>."``) so runs do not collide.

    The flow always speaks the logical names (``simulator.flow.EXCHANGE`` ...); the port maps
    them to the physical ones.  ``""`` (the default exchange) and ``amq.*`` are never prefixed.
    """

    namespace: str = ""

    def physical(self, name: str) -> str:
        if not self.namespace or not name or name.startswith("amq."):
            return name
        return f"{self.namespace}.{name}"

    def logical(self, name: str) -> str:
        prefix = f"{self.namespace}." if self.namespace else ""
        return name[len(prefix):] if prefix and name.startswith(prefix) else name

    @property
    def exchange(self) -> str:
        return self.physical(EXCHANGE)

    @property
    def queue(self) -> str:
        return self.physical(QUEUE)

    @property
    def dead_letter_exchange(self) -> str:
        return self.physical(DEAD_LETTER_EXCHANGE)

    @property
    def dead_letter_queue(self) -> str:
        return self.physical(DEAD_LETTER_QUEUE)


class BrokerPort:
    def __init__(self, url: str, *, namespace: str = "", process_name: str = "mqlab",
                 connect_timeout_s: float = 2.0, heartbeat_s: int | None = None,
                 blocked_timeout_s: float = 10.0):
        check_amqp_url(url)
        self._url = url
        self.topology = Topology(namespace)
        self._params = pika.URLParameters(url)
        query = url.partition("?")[2]
        # fail fast and let the caller's bounded retry loop decide: one attempt per call
        if "connection_attempts" not in query:
            self._params.connection_attempts = 1
        if "socket_timeout" not in query:
            self._params.socket_timeout = connect_timeout_s
        if "blocked_connection_timeout" not in query:
            # a broker in a memory/disk alarm blocks publishers; turn a hang into an error
            self._params.blocked_connection_timeout = blocked_timeout_s
        if heartbeat_s is not None:
            self._params.heartbeat = heartbeat_s
        self._params.client_properties = {"connection_name": process_name}
        self.process_name = process_name
        self._heartbeat_s = heartbeat_s
        self._windowed: WindowedPublisher | None = None  # publish_many's own connection, on first use
        self._connection: pika.BlockingConnection | None = None
        self._channels: dict[str, BlockingChannel] = {}  # "confirm", "plain", "admin"
        self._consumers: dict[str, tuple[BlockingChannel, bool]] = {}  # consumer tag -> (channel, auto_ack)
        self._logical: dict[str, str] = {}  # physical exchange name -> logical, for deliveries
        self.connects = 0  # how many connections this client has opened (reconnects = connects - 1)
        # message ids returned (basic.return) to plain, unconfirmed publishes: the only trace of
        # an unroutable mandatory publish when confirms are off
        self.returned: collections.deque[str] = collections.deque(maxlen=10_000)

    # ------------------------------------------------------------------ connection and channels
    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.is_open

    def connect(self) -> pika.BlockingConnection:
        """The open connection, opening a new one if there is none (raises ServiceDown)."""
        if self._connection is not None and self._connection.is_open:
            return self._connection
        self._forget_connection()
        try:
            self._connection = pika.BlockingConnection(self._params)
        except (*_CONNECTION_ERRORS, px.AMQPError) as exc:
            raise ServiceDown(COMPONENT, _describe(exc)) from None
        self.connects += 1
        return self._connection

    def reconnect(self) -> None:
        """Drop the current connection (its unacked deliveries go back to their queues)."""
        self.close()
        self.connect()

    def close(self) -> None:
        windowed, self._windowed = self._windowed, None
        if windowed is not None:
            windowed.close()
        conn, self._connection = self._connection, None
        self._forget_connection()
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except (*_CONNECTION_ERRORS, px.AMQPError):
                pass  # already going away; nothing left to tell the broker

    def _forget_connection(self) -> None:
        self._channels.clear()
        self._consumers.clear()

    def _channel(self, kind: str) -> BlockingChannel:
        ch = self._channels.get(kind)
        if ch is not None and ch.is_open and self.connected:
            return ch
        conn = self.connect()
        try:
            ch = conn.channel()
            if kind == "confirm":
                ch.confirm_delivery()
            elif kind == "plain":
                ch.add_on_return_callback(self._on_return)
        except (*_CONNECTION_ERRORS, *_CHANNEL_ERRORS) as exc:
            raise self._down(exc) from None
        self._channels[kind] = ch
        return ch

    def _on_return(self, _ch: Any, _method: Any, props: pika.BasicProperties, _body: bytes) -> None:
        self.returned.append(props.message_id or "")

    def _down(self, exc: BaseException) -> ServiceDown:
        """Classify a pika error, forget what it broke, and say which port error it is."""
        if isinstance(exc, _CHANNEL_ERRORS) and self.connected:
            for kind, ch in list(self._channels.items()):
                if not ch.is_open:
                    del self._channels[kind]
            return ChannelClosed(COMPONENT, _describe(exc))
        self.close()
        return ServiceDown(COMPONENT, _describe(exc))

    # ------------------------------------------------------------------ topology (admin calls raise)
    def declare_topology(self, *, durable: bool = True,
                         queue_arguments: dict[str, Any] | None = None) -> Topology:
        """The flow's exchanges and queues: direct EXCHANGE -> QUEUE (dead-lettering to a fanout
        DLX -> DEAD_LETTER_QUEUE).  Declaring is idempotent if the arguments match."""
        t = self.topology
        ch = self._channel("admin")
        args = {"x-dead-letter-exchange": t.dead_letter_exchange, **(queue_arguments or {})}
        try:
            ch.exchange_declare(t.exchange, "direct", durable=durable)
            ch.exchange_declare(t.dead_letter_exchange, "fanout", durable=durable)
            ch.queue_declare(t.dead_letter_queue, durable=durable)
            ch.queue_bind(t.dead_letter_queue, t.dead_letter_exchange)
            ch.queue_declare(t.queue, durable=durable, arguments=args)
            ch.queue_bind(t.queue, t.exchange, routing_key=ROUTING_KEY)
        except (*_CONNECTION_ERRORS, *_CHANNEL_ERRORS) as exc:
            raise self._down(exc) from None
        return t

    def delete_topology(self) -> None:
        t = self.topology
        for queue in (t.queue, t.dead_letter_queue):
            self._admin("queue_delete", queue)
        for exchange in (t.exchange, t.dead_letter_exchange):
            self._admin("exchange_delete", exchange)

    def queue_declare(self, queue: str, *, durable: bool = True,
                      arguments: dict[str, Any] | None = None) -> str:
        name = self.topology.physical(queue)
        self._admin("queue_declare", name, durable=durable, arguments=arguments)
        return name

    def queue_bind(self, queue: str, exchange: str, routing_key: str | None = None) -> None:
        self._admin("queue_bind", self.topology.physical(queue), self.topology.physical(exchange),
                    routing_key=routing_key)

    def queue_delete(self, queue: str) -> None:
        self._admin("queue_delete", self.topology.physical(queue))

    def queue_depth(self, queue: str = QUEUE) -> int:
        """Messages ready in the queue (not counting delivered-but-unacked ones)."""
        ok = self._admin("queue_declare", self.topology.physical(queue), passive=True)
        return int(ok.method.message_count)

    def purge(self, queue: str = QUEUE) -> int:
        return int(self._admin("queue_purge", self.topology.physical(queue)).method.message_count)

    def _admin(self, method: str, *args: Any, **kwargs: Any) -> Any:
        ch = self._channel("admin")
        try:
            return getattr(ch, method)(*args, **kwargs)
        except (*_CONNECTION_ERRORS, *_CHANNEL_ERRORS) as exc:
            raise self._down(exc) from None

    # ------------------------------------------------------------------ port methods
    def publish(self, exchange: str, routing_key: str, message: Message, *, mandatory: bool = False,
                confirm: bool = True) -> Done:
        body, content_type = encode_body(message.body)
        # the default exchange routes by queue name, so the routing key is a (prefixed) queue name
        key = self.topology.physical(routing_key) if exchange == "" else routing_key
        try:
            ch = self._channel("confirm" if confirm else "plain")
            ch.basic_publish(self.topology.physical(exchange), key, body,
                             properties(message, content_type), mandatory=mandatory)
        except px.UnroutableError:
            return Done("returned")  # basic.return came before the basic.ack
        except px.NackError:
            return Done("nack")  # e.g. a full queue with overflow=reject-publish
        except ServiceDown as exc:
            return Done(error=exc)
        except (*_CONNECTION_ERRORS, *_CHANNEL_ERRORS) as exc:
            return Done(error=self._down(exc))
        return Done("ack" if confirm else "sent")  # "sent": written to the socket, nothing promised

    def publish_many(self, exchange: str, routing_key: str | None, messages: Sequence[Message], *,
                     window: int = 100, mandatory: bool = False, timeout_s: float = 30.0) -> Done:
        """Publish ``messages`` in order with asynchronous confirms, never more than ``window``
        unconfirmed at once, and wait (at most ``timeout_s`` in all) for every confirm.
        ``routing_key=None`` routes each message by its own ``routing_key``.

        ``Done(PublishReport)``: how many were acked, and the indices of those nacked, returned
        (``mandatory`` and unroutable), unconfirmed and unsent; ``report.error`` says why a call
        ended early.  ``Done(error=ServiceDown)`` only when nothing could be sent at all.
        Runs on a connection of its own (see ``real_adapters.confirms``): a blocking channel
        in confirm mode waits for each confirm, so it can never have a window.
        """
        if self._windowed is None:
            params = pika.URLParameters(self._url)
            for name in ("connection_attempts", "socket_timeout", "blocked_connection_timeout",
                         "heartbeat"):
                setattr(params, name, getattr(self._params, name))
            params.client_properties = {"connection_name": f"{self.process_name}.confirms"}
            self._windowed = WindowedPublisher(params, heartbeat_s=self._heartbeat_s,
                                               topology_physical=self.topology.physical)
        try:
            report: PublishReport = self._windowed.publish_many(
                exchange, routing_key, messages, window=window, mandatory=mandatory, timeout_s=timeout_s)
        except ServiceDown as exc:
            return Done(error=exc)
        return Done(report)

    def ack(self, delivery: Delivery) -> Done:
        return self._settle(delivery, "basic_ack")

    def nack(self, delivery: Delivery, requeue: bool = True) -> Done:
        return self._settle(delivery, "basic_nack", requeue=requeue)

    def reject(self, delivery: Delivery, requeue: bool = True) -> Done:
        return self._settle(delivery, "basic_reject", requeue=requeue)

    def _settle(self, delivery: Delivery, method: str, **kwargs: Any) -> Done:
        """Acks go on the channel the delivery came on; if that channel is gone, so is the ack
        (the broker has requeued the message already): answer False."""
        entry = self._consumers.get(delivery.consumer_tag)
        if entry is None:
            return Done(False)
        ch, auto_ack = entry
        if auto_ack:
            return Done(True)  # nothing to settle: the broker forgot the message on delivery
        if not ch.is_open:
            return Done(False)
        try:
            getattr(ch, method)(delivery.delivery_tag, **kwargs)
        except (*_CONNECTION_ERRORS, *_CHANNEL_ERRORS) as exc:
            self._down(exc)
            return Done(False)
        return Done(True)

    # ------------------------------------------------------------------ consuming
    def deliveries(self, queue: str = QUEUE, *, prefetch: int = 10, auto_ack: bool = False,
                   inactivity_timeout: float = 1.0, max_deliveries: int = 100_000,
                   max_seconds: float = 600.0) -> Iterator[Delivery]:
        """Consume ``queue`` on a channel of its own (``basic.qos(prefetch)``), yielding each
        delivery; stop after ``inactivity_timeout`` seconds with nothing, ``max_deliveries``
        deliveries or ``max_seconds``, whichever comes first.

        Settle each delivery (``ack``/``nack``/``reject``) before asking for the next one.  When
        the iteration ends the channel is closed, which requeues anything left unacked.
        A lost connection raises ``ServiceDown``; call again to consume on a new connection.
        """
        name = self.topology.physical(queue)
        conn = self.connect()
        try:
            ch = conn.channel()
            ch.basic_qos(prefetch_count=prefetch)
        except (*_CONNECTION_ERRORS, *_CHANNEL_ERRORS) as exc:
            raise self._down(exc) from None
        tag = f"{self.process_name}.{id(ch):x}.{self.connects}"
        self._consumers[tag] = (ch, auto_ack)
        deadline = time.monotonic() + max_seconds
        try:
            count = 0
            stream = ch.consume(name, auto_ack=auto_ack, inactivity_timeout=inactivity_timeout,
                                consumer_tag=tag)
            while count < max_deliveries and time.monotonic() < deadline:
                try:
                    method, props, body = next(stream)
                except StopIteration:
                    return  # the broker cancelled the consumer (queue deleted)
                except (*_CONNECTION_ERRORS, *_CHANNEL_ERRORS) as exc:
                    raise self._down(exc) from None
                if method is None:
                    return  # inactivity timeout: the queue has been quiet long enough
                count += 1
                yield self._delivery(method, props, body, queue)
        finally:
            self._consumers.pop(tag, None)
            if ch.is_open:
                try:
                    ch.close()
                except (*_CONNECTION_ERRORS, *_CHANNEL_ERRORS):
                    pass  # the connection is already gone, and the unacked with it

    def get(self, queue: str = QUEUE, *, auto_ack: bool = False) -> Delivery | None:
        """One message by ``basic.get`` (no prefetch), or None if the queue is empty."""
        ch = self._channel("admin")
        try:
            method, props, body = ch.basic_get(self.topology.physical(queue), auto_ack=auto_ack)
        except (*_CONNECTION_ERRORS, *_CHANNEL_ERRORS) as exc:
            raise self._down(exc) from None
        if method is None:
            return None
        tag = f"basic.get.{id(ch):x}.{self.connects}"
        self._consumers[tag] = (ch, auto_ack)
        method.consumer_tag = tag
        return self._delivery(method, props, body, queue)

    def _delivery(self, method: Any, props: pika.BasicProperties, body: bytes, queue: str) -> Delivery:
        exchange = self._logical.get(method.exchange)
        if exchange is None:  # a handful of exchanges per run: map each name once
            exchange = self._logical[method.exchange] = self.topology.logical(method.exchange)
        msg = message_from_amqp(props, body, routing_key=method.routing_key, exchange=exchange)
        return Delivery(msg, method.delivery_tag, bool(method.redelivered), queue, method.consumer_tag,
                        death_reason(msg.headers) if msg.headers else None)


def _describe(exc: BaseException) -> str:
    """A short reason without connection parameters (pika's messages carry no password, but keep
    the detail to the class name and reply text anyway)."""
    if isinstance(exc, px.ChannelClosed):
        return f"{type(exc).__name__} {exc.reply_code} {exc.reply_text}"[:200]
    if isinstance(exc, px.ConnectionClosed):
        return f"{type(exc).__name__} {exc.reply_code} {exc.reply_text}"[:200]
    return type(exc).__name__
