"""AMQP 0-9-1 routing as a pure function: which queues get a copy of a published message.

Shared by the SimPy broker model and the differential test against a real RabbitMQ, so the
rules follow RabbitMQ's source rather than the AMQP spec where the two differ:

* topic (``rabbit_db_topic_exchange.erl``): a key is split on every ``.``, keeping empty
  words (``"a..b"`` is ``["a", "", "b"]``, ``"a."`` is ``["a", ""]``), except that the empty
  key ``""`` is *zero* words.  ``*`` is exactly one word (an empty word counts), ``#`` is zero
  or more; both are wildcards only as a whole word.
* headers (``rabbit_exchange_type_headers.erl``): ``x-match`` defaults to ``all``; ``all`` /
  ``any`` skip binding arguments whose key starts with ``x-``; the ``-with-x`` forms keep
  them (``x-match`` itself is always skipped); a void (``None``) argument matches on presence.
  ``all`` with nothing left to compare matches every message, ``any`` matches none.
* x-consistent-hash (``rabbit_exchange_type_consistent_hash.erl``): each binding adds
  ``weight`` buckets, in binding order, and a jump consistent hash of the hash input picks a
  bucket.  We hash with BLAKE2b instead of ``erlang:phash2``, so *which* queue a given key
  lands on differs from a real broker; the differential test therefore checks stickiness
  (same input, same queue) and proportion (share ~ weight) for this type, not equality.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from simulator.errors import InputError

EXCHANGE_TYPES: frozenset[str] = frozenset({"direct", "fanout", "topic", "headers", "x-consistent-hash"})

MAX_SHORTSTR_BYTES = 255  # names and keys travel as AMQP shortstr
X_MATCH_VALUES = ("all", "any", "all-with-x", "any-with-x")
HASH_PROPERTIES = ("message_id", "correlation_id", "timestamp")
_WEIGHT_RE = re.compile(r"[+-]?[0-9]+")  # what Erlang's list_to_integer accepts


@dataclass(frozen=True, slots=True)
class Binding:
    queue: str
    binding_key: str = ""
    # headers-exchange match arguments, e.g. {"x-match": "all", "type": "gift"}
    arguments: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- topic

def _words(key: str) -> list[str]:
    # RabbitMQ: the empty key is no words at all, not one empty word.
    return key.split(".") if key else []


def topic_matches(binding_key: str, routing_key: str) -> bool:
    """True when a topic binding key matches a routing key, as RabbitMQ decides it."""
    pattern = _words(binding_key)
    last = len(pattern)

    def closure(states: set[int]) -> set[int]:
        # '#' may match zero words, so a state sitting on '#' can also step past it.
        todo, seen = list(states), set(states)
        while todo:
            p = todo.pop()
            if p < last and pattern[p] == "#" and p + 1 not in seen:
                seen.add(p + 1)
                todo.append(p + 1)
        return seen

    # NFA walk over the pattern: linear in words x pattern, no backtracking blow-up.
    states = closure({0})
    for word in _words(routing_key):
        step: set[int] = set()
        for p in states:
            if p == last:
                continue
            token = pattern[p]
            if token == "#":
                step.add(p)
            elif token == "*" or token == word:
                step.add(p + 1)
        if not step:
            return False
        states = closure(step)
    return last in states


def pattern_warning(binding_key: str) -> str | None:
    """A friendly note for a topic binding key that is legal but probably a mistake."""
    if binding_key == "":
        return "binding key '' matches only messages published with an empty routing key"
    words = binding_key.split(".")
    notes: list[str] = []
    if "" in words:
        notes.append(f"{binding_key!r} has an empty word (a dot at the start or end, or two dots "
                     "in a row); it only matches routing keys with the same empty word")
    literal = sorted({c for w in words if w not in ("*", "#") for c in "*#" if c in w})
    if literal:
        shown = " and ".join(f"'{c}'" for c in literal)
        notes.append(f"in {binding_key!r} {shown} inside a word is a literal character, not a "
                     "wildcard; wildcards must be a whole word between dots, like 'orders.*'")
    if any(a == b == "#" for a, b in zip(words, words[1:])):
        notes.append(f"{binding_key!r} has '#.#', which matches exactly what a single '#' does")
    if any(w != w.strip() for w in words):
        notes.append(f"{binding_key!r} has a word with leading or trailing spaces, which must "
                     "match literally")
    return "; ".join(notes) or None


# --------------------------------------------------------------------------- headers

def _x_match(arguments: Mapping[str, Any]) -> str:
    kind = arguments.get("x-match", "all")
    # RabbitMQ treats any unrecognised x-match as "all" when routing (validation rejects it).
    return kind if isinstance(kind, str) and kind in X_MATCH_VALUES else "all"


def _field_equal(pattern: Any, data: Any, nested: bool = False) -> bool:
    """AMQP field-value equality the way RabbitMQ compares decoded tables.

    Top-level values are compared with Erlang's ``==``: 1 equals 1.0, a str equals the same
    UTF-8 bytes, but 1 never equals "1" and True never equals 1.  Inside nested tables and
    arrays Erlang also compares the field type, so there 1 and 1.0 differ.
    """
    if isinstance(pattern, bool) or isinstance(data, bool):
        return type(pattern) is type(data) and pattern == data
    if isinstance(pattern, str | bytes) and isinstance(data, str | bytes):
        if nested and type(pattern) is not type(data):
            return False
        as_bytes = [v.encode() if isinstance(v, str) else v for v in (pattern, data)]
        return as_bytes[0] == as_bytes[1]
    if isinstance(pattern, Decimal) or isinstance(data, Decimal):
        # Sent as {scale, value}: Decimal("1.0") and Decimal("1") are different wire values.
        return (isinstance(pattern, Decimal) and isinstance(data, Decimal)
                and pattern.as_tuple() == data.as_tuple())
    if isinstance(pattern, int | float) and isinstance(data, int | float):
        if nested and type(pattern) is not type(data):
            return False
        return pattern == data
    if isinstance(pattern, Mapping) and isinstance(data, Mapping):
        return (set(pattern) == set(data)
                and all(_field_equal(pattern[k], data[k], nested=True) for k in pattern))
    if isinstance(pattern, list | tuple) and isinstance(data, list | tuple):
        return len(pattern) == len(data) and all(
            _field_equal(p, d, nested=True) for p, d in zip(pattern, data))
    if pattern is None or data is None:
        return pattern is None and data is None
    return type(pattern) is type(data) and pattern == data


def headers_match(arguments: Mapping[str, Any], headers: Mapping[str, Any] | None) -> bool:
    """True when a headers-exchange binding's arguments match a message's headers."""
    kind = _x_match(arguments)
    with_x = kind.endswith("-with-x")
    data = headers or {}
    results = []
    for key, wanted in arguments.items():
        if key == "x-match" or (key.startswith("x-") and not with_x):
            continue
        # A void (None) argument asks only that the header be present.
        results.append(key in data and (wanted is None or _field_equal(wanted, data[key])))
    return all(results) if kind.startswith("all") else any(results)


# --------------------------------------------------------------------------- consistent hash

_MISSING = b"\x00missing"  # every message without the hash header/property lands together


def _token(value: Any) -> bytes:
    # Type-tagged, as RabbitMQ hashes the {Type, Value} pair of a header: 5 and "5" differ.
    if isinstance(value, str):
        return b"s:" + value.encode()
    if isinstance(value, bytes):
        return b"x:" + value
    if value is None:
        return b"v:"
    return f"{type(value).__name__}:{value!r}".encode()


def _weight(binding: Binding) -> int:
    validate_binding("x-consistent-hash", binding.binding_key)
    return int(binding.binding_key)


def _jump_hash(key: int, buckets: int) -> int:
    """Lamping & Veach jump consistent hash: adding buckets at the end moves few keys."""
    chosen, jump = -1, 0
    while jump < buckets:
        chosen = jump
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        jump = int((chosen + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return chosen


def _pick(bindings: Sequence[Binding], token: bytes) -> str | None:
    if not bindings:
        return None
    # Bucket ranges laid end to end in binding order, as RabbitMQ's ring does.
    ends: list[int] = []
    for b in bindings:
        ends.append((ends[-1] if ends else 0) + _weight(b))
    key = int.from_bytes(hashlib.blake2b(token, digest_size=8).digest(), "big")
    bucket = _jump_hash(key, ends[-1])
    return bindings[bisect.bisect_right(ends, bucket)].queue


def consistent_hash_queue(bindings: Sequence[Binding], hash_input: str) -> str | None:
    """The one queue an x-consistent-hash exchange picks for ``hash_input`` (None: no bindings).

    Binding keys are weights.  Stable across runs and processes (BLAKE2b, not ``hash()``),
    but not the same ring position as RabbitMQ's ``erlang:phash2``.
    """
    return _pick(bindings, _token(hash_input))


def _hash_source(arguments: Mapping[str, Any] | None) -> tuple[str, str] | None:
    args = arguments or {}
    header, prop = args.get("hash-header"), args.get("hash-property")
    if header is not None and prop is not None:
        raise InputError("exchange arguments", dict(args),
                         "either hash-header or hash-property, not both")
    if header is not None:
        if not isinstance(header, str):
            raise InputError("hash-header", header, "a header name (string)")
        return ("header", header)
    if prop is not None:
        if prop not in HASH_PROPERTIES:
            raise InputError("hash-property", prop, ", ".join(HASH_PROPERTIES))
        return ("property", prop)
    return None


def _hash_token(source: tuple[str, str] | None, routing_key: str,
                headers: Mapping[str, Any] | None, properties: Mapping[str, Any] | None) -> bytes:
    if source is None:
        return _token(routing_key)
    kind, name = source
    if kind == "header":
        return _token(headers[name]) if headers is not None and name in headers else _MISSING
    value = (properties or {}).get(name)
    if value is None:
        return _MISSING
    if name == "timestamp" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # RabbitMQ hashes the timestamp's decimal text
    return _token(value)


# --------------------------------------------------------------------------- route

def route(exchange_type: str, bindings: Sequence[Binding], routing_key: str,
          headers: Mapping[str, Any] | None = None, *,
          properties: Mapping[str, Any] | None = None,
          exchange_arguments: Mapping[str, Any] | None = None) -> list[str]:
    """Distinct destination queues in first-matching-binding order; ``[]`` means unroutable.

    Pure: no state, no validation of key lengths (call the ``validate_*`` helpers for that).
    """
    _check_type(exchange_type)
    if exchange_type == "x-consistent-hash":
        source = _hash_source(exchange_arguments)
        queue = _pick(bindings, _hash_token(source, routing_key, headers, properties))
        return [] if queue is None else [queue]
    if exchange_type == "direct":
        matched = (b.queue for b in bindings if b.binding_key == routing_key)
    elif exchange_type == "fanout":
        matched = (b.queue for b in bindings)
    elif exchange_type == "topic":
        matched = (b.queue for b in bindings if topic_matches(b.binding_key, routing_key))
    else:
        matched = (b.queue for b in bindings if headers_match(b.arguments, headers))
    return list(dict.fromkeys(matched))  # one copy per queue, first-match order kept


# --------------------------------------------------------------------------- validation

def _check_type(exchange_type: str) -> None:
    if exchange_type not in EXCHANGE_TYPES:
        raise InputError("exchange_type", exchange_type, ", ".join(sorted(EXCHANGE_TYPES)))


def _check_shortstr(field_name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise InputError(field_name, value, "a string")
    size = len(value.encode())
    if size > MAX_SHORTSTR_BYTES:
        raise InputError(field_name, value,
                         f"at most {MAX_SHORTSTR_BYTES} bytes of UTF-8 (this one is {size})")


def validate_exchange(name: str, exchange_type: str, arguments: Mapping[str, Any] | None = None) -> None:
    """Reject an exchange declaration RabbitMQ would refuse."""
    _check_shortstr("exchange_name", name)
    if name == "":
        # The default exchange exists already; declaring it is 403 ACCESS_REFUSED.
        raise InputError("exchange_name", name, "a non-empty name ('' is the built-in default exchange)")
    if name.startswith("amq."):
        raise InputError("exchange_name", name, "a name not starting with 'amq.' (reserved, 403 in RabbitMQ)")
    _check_type(exchange_type)
    if exchange_type == "x-consistent-hash":
        _hash_source(arguments)


def validate_binding(exchange_type: str, binding_key: str, arguments: Mapping[str, Any] | None = None) -> None:
    """Reject a queue binding RabbitMQ would refuse."""
    _check_type(exchange_type)
    _check_shortstr("binding_key", binding_key)
    if exchange_type == "x-consistent-hash":
        if not _WEIGHT_RE.fullmatch(binding_key) or int(binding_key) < 1:
            raise InputError("binding_key", binding_key,
                             "a weight: a whole number of at least 1 written as a string, like '1' or '10'")
    if exchange_type == "headers" and arguments is not None and "x-match" in arguments:
        kind = arguments["x-match"]
        if not isinstance(kind, str) or kind not in X_MATCH_VALUES:
            raise InputError("x-match", kind, ", ".join(X_MATCH_VALUES))


def validate_routing_key(routing_key: str) -> None:
    """Reject a routing key that cannot be sent (longer than an AMQP shortstr)."""
    _check_shortstr("routing_key", routing_key)
