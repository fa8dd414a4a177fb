"""Messages and the submission payload schema, shared by every world.

The property names follow AMQP's basic properties (``message_id``, ``correlation_id``,
``delivery_mode``, ``priority``, ``expiration``, ``headers``).  The payload is validated by a
JSON Schema so that producer and consumer agree on one contract (the seed's "standard
message schema" fix for format drift).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jsonschema

SCHEMA_VERSION = 1

SUBMISSION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "survey-submitted",
    "type": "object",
    "required": ["schema_version", "submission_id", "user_id", "answers"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "submission_id": {"type": "string", "minLength": 1},
        "user_id": {"type": "string", "minLength": 1},
        "answers": {"type": "object"},
        "seq": {"type": "integer", "minimum": 0},
        "kind": {"enum": ["submit", "amend", "cancel"]},
    },
    "additionalProperties": False,
}


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(SUBMISSION_SCHEMA)
    return cls(SUBMISSION_SCHEMA)


_KINDS = frozenset(SUBMISSION_SCHEMA["properties"]["kind"]["enum"])
_REQUIRED = frozenset(SUBMISSION_SCHEMA["required"])
_ALLOWED = frozenset(SUBMISSION_SCHEMA["properties"])


def _plainly_valid(body: Any) -> bool:
    """A strict subset of the schema, checked by hand: True only for a body the schema accepts.

    Every consumer validates every delivery, and jsonschema costs ~50-100 us a call; this
    costs ~1 us.  It only ever says "valid" (exact types, no bool-for-int), so anything it is
    unsure of still goes to jsonschema, and the answer and error text never change.
    """
    if type(body) is not dict:
        return False
    keys = body.keys()
    if not (_REQUIRED <= keys and keys <= _ALLOWED):
        return False
    sid, uid, version = body["submission_id"], body["user_id"], body["schema_version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        return False
    if type(sid) is not str or not sid or type(uid) is not str or not uid:
        return False
    if type(body["answers"]) is not dict:
        return False
    seq = body.get("seq", 0)
    if type(seq) is not int or seq < 0:
        return False
    kind = body.get("kind", "submit")
    return type(kind) is str and kind in _KINDS


def payload_error(body: Any) -> str | None:
    """Return ``None`` for a valid submission payload, else one line saying what is wrong."""
    if _plainly_valid(body):
        return None
    error = jsonschema.exceptions.best_match(_validator().iter_errors(body))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    return f"{where}: {error.message}"


def submission_body(submission_id: str, user_id: str, *, seq: int = 0, kind: str = "submit") -> dict:
    """A valid payload for one survey submission."""
    return {
        "schema_version": SCHEMA_VERSION,
        "submission_id": submission_id,
        "user_id": user_id,
        "answers": {"q1": "yes"},
        "seq": seq,
        "kind": kind,
    }


@dataclass(slots=True)
class Message:
    """One AMQP message as a publisher hands it to the broker."""

    message_id: str
    correlation_id: str
    routing_key: str
    body: Any
    headers: dict[str, Any] = field(default_factory=dict)
    persistent: bool = True  # delivery_mode 2
    priority: int = 0
    expiration: float | None = None  # per-message TTL in seconds (AMQP carries it as ms)
    timestamp: float = 0.0
    exchange: str = ""

    @property
    def key(self) -> str:
        """The ordering key: the user the message is about."""
        body = self.body if isinstance(self.body, dict) else {}
        return str(body.get("user_id", self.message_id))


@dataclass(slots=True)
class Delivery:
    """A message as the broker hands it to a consumer (``basic.deliver``)."""

    message: Message
    delivery_tag: int
    redelivered: bool
    queue: str
    consumer_tag: str = ""
    death_reason: str | None = None  # set on a dead-lettered copy: rejected/expired/maxlen
