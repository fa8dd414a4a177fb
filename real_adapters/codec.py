"""Turning a ``Message`` into bytes and back: the AMQP body and properties, and the outbox row.

The body travels as JSON (``content_type=application/json``).  A body that is not valid JSON
on the way in (a poison message published by someone else) is handed to the flow as its raw
text, so the schema gate rejects it instead of the consumer crashing on it.
"""

from __future__ import annotations

import json
from typing import Any

import pika

from simulator.messages import Message

JSON = "application/json"



def encode_body(body: Any) -> tuple[bytes, str]:
    if isinstance(body, (bytes, bytearray)):
        return bytes(body), "application/octet-stream"
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode(), JSON


def decode_body(raw: bytes, content_type: str | None) -> Any:
    if content_type == JSON:
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            pass  # not JSON after all: fall through and let the schema gate say so
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


def properties(msg: Message, content_type: str | None = None) -> pika.BasicProperties:
    """AMQP basic properties from a Message (``delivery_mode`` 2 = persistent).

    ``content_type`` is what ``encode_body`` answered for this body: passing it saves encoding
    the body a second time just to learn it."""
    if content_type is None:
        _, content_type = encode_body(msg.body)
    expiration = None
    if msg.expiration is not None:
        # AMQP carries the per-message TTL as a string of whole milliseconds
        expiration = str(max(0, int(round(msg.expiration * 1000))))
    return pika.BasicProperties(
        content_type=content_type,
        message_id=msg.message_id,
        correlation_id=msg.correlation_id,
        delivery_mode=pika.DeliveryMode.Persistent if msg.persistent else pika.DeliveryMode.Transient,
        priority=msg.priority or None,
        expiration=expiration,
        headers=dict(msg.headers) or None,
        timestamp=int(msg.timestamp) if msg.timestamp else None,  # AMQP: whole seconds
    )


_PERSISTENT = pika.DeliveryMode.Persistent.value  # read once: an enum lookup per delivery adds up


def message_from_amqp(props: pika.BasicProperties, body: bytes, *, routing_key: str,
                      exchange: str) -> Message:
    # runs once per delivery on the consume path: positional arguments, no copies of empty
    # headers (a profile of the consume rows showed this function as the adapter's largest cost)
    headers = props.headers
    expiration = props.expiration
    return Message(
        props.message_id or "",
        props.correlation_id or "",
        routing_key,
        decode_body(body, props.content_type),
        dict(headers) if headers else {},
        props.delivery_mode == _PERSISTENT,
        props.priority or 0,
        int(expiration) / 1000.0 if expiration else None,
        float(props.timestamp or 0),
        exchange,
    )


def death_reason(headers: dict[str, Any]) -> str | None:
    """Why RabbitMQ dead-lettered this copy (rejected / expired / maxlen / delivery_limit)."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        reason = deaths[0].get("reason")
        return reason.decode() if isinstance(reason, bytes) else reason
    reason = headers.get("x-first-death-reason")
    return reason.decode() if isinstance(reason, bytes) else reason


def message_to_json(msg: Message) -> str:
    """The outbox row's payload: every field, so the relay republishes the same message."""
    return json.dumps({
        "message_id": msg.message_id, "correlation_id": msg.correlation_id,
        "routing_key": msg.routing_key, "body": msg.body, "headers": msg.headers,
        "persistent": msg.persistent, "priority": msg.priority, "expiration": msg.expiration,
        "timestamp": msg.timestamp, "exchange": msg.exchange,
    }, separators=(",", ":"), sort_keys=True)


def message_from_json(text: str) -> Message:
    d = json.loads(text)
    return Message(message_id=d["message_id"], correlation_id=d["correlation_id"],
                   routing_key=d["routing_key"], body=d["body"], headers=d.get("headers") or {},
                   persistent=d.get("persistent", True), priority=d.get("priority", 0),
                   expiration=d.get("expiration"), timestamp=d.get("timestamp", 0.0),
                   exchange=d.get("exchange", ""))
