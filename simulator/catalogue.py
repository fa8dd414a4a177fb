"""The bad-input catalogue: inputs MQ Lab must refuse, as data.

Each entry is one invalid input and the field its one-line error must name.  The reliability
tests iterate ``CATALOGUE`` (one test per entry) and the README can print ``markdown_table()``.
Every entry must be refused before anything runs: exit status 2 with one line
``mqlab: error: FIELD: got VALUE; allowed: ...`` on the command line, ``InputError`` through the
Python API, and never a traceback.  See reliability-reference.md §5 for why each is refused.

Kinds and what ``input`` holds:

``cli``       the argument list after ``mqlab``
``config``    ``{"scenario": name, "values": {...}}``: a scenario config built through the API
``topology``  ``{"steps": [(method, kwargs), ...]}`` on a fresh SimPy broker; the last step is
              the bad one, the ones before it set the scene and must succeed
``message``   keyword overrides for a ``simulator.messages.Message`` published to a declared
              exchange (AMQP properties the broker checks)
``payload``   a message body that breaks the submission JSON schema; it is refused by the
              schema gate (``payload_error`` returns one line naming the field; the message goes
              to the dead-letter queue, never to the business handler)
``settings``  environment variables for ``real_adapters.settings.Settings.from_env``; a
              password in a bad URL must come back masked
``store``     ``(method, kwargs)`` on the SimPy Redis model
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["BadInput", "CATALOGUE", "KINDS", "by_kind", "markdown_table"]

Kind = Literal["cli", "config", "topology", "message", "payload", "settings", "store"]
KINDS: tuple[str, ...] = ("cli", "config", "topology", "message", "payload", "settings", "store")

LONG_NAME = "x" * 256     # one byte over an AMQP shortstr
LONG_UTF8 = "é" * 128     # 128 characters but 256 bytes: the limit is in bytes
SECRET = "s3cr3t-pw"      # must never appear in an error line


@dataclass(frozen=True)
class BadInput:
    id: str       # short slug, used as the test id
    kind: Kind
    input: Any
    field: str    # the field the one-line error must name
    why: str      # what is wrong, in words


def _cli(id: str, argv: list[str], field: str, why: str) -> BadInput:
    return BadInput(id, "cli", tuple(argv), field, why)


def _cfg(id: str, scenario: str, values: dict[str, Any], field: str, why: str) -> BadInput:
    return BadInput(id, "config", {"scenario": scenario, "values": values}, field, why)


def _topo(id: str, steps: list[tuple[str, dict[str, Any]]], field: str, why: str) -> BadInput:
    return BadInput(id, "topology", {"steps": steps}, field, why)


_Q = ("declare_queue", {"name": "q"})
_DIRECT = ("declare_exchange", {"name": "ex", "exchange_type": "direct"})
_HASH = ("declare_exchange", {"name": "hx", "exchange_type": "x-consistent-hash"})
_HEADERS = ("declare_exchange", {"name": "hd", "exchange_type": "headers"})
_FS = ["run", "flash-sale"]

CATALOGUE: tuple[BadInput, ...] = (
    # ------------------------------------------------------------------ command-line flags
    _cli("cli-submissions-zero", [*_FS, "--submissions", "0"], "--submissions", "no submissions at all"),
    _cli("cli-submissions-text", [*_FS, "--submissions", "many"], "--submissions", "not a number"),
    _cli("cli-rate-negative", [*_FS, "--arrival-rate", "-5"], "--arrival-rate", "negative rate"),
    _cli("cli-rate-nan", [*_FS, "--arrival-rate", "nan"], "--arrival-rate", "NaN rate"),
    _cli("cli-max-sim-inf", [*_FS, "--max-sim-s", "inf"], "--max-sim-s", "unbounded run"),
    _cli("cli-consumers-zero", [*_FS, "--consumers", "0"], "--consumers",
         "0 consumers on an active queue: it only grows"),
    _cli("cli-prefetch-negative", [*_FS, "--prefetch", "-1"], "--prefetch", "AMQP prefetch is 0..65535"),
    _cli("cli-prefetch-huge", [*_FS, "--prefetch", "70000"], "--prefetch", "over a short int"),
    _cli("cli-stock-negative", [*_FS, "--stock", "-1"], "--stock", "negative stock"),
    _cli("cli-safety-over-stock", [*_FS, "--stock", "10", "--safety-stock", "11"], "--safety-stock",
         "safety stock larger than the stock"),
    _cli("cli-seed-negative", [*_FS, "--seed", "-1"], "--seed", "seeds are 0..2^32-1"),
    _cli("cli-seed-fraction", [*_FS, "--seed", "1.5"], "--seed", "a seed is a whole number"),
    _cli("cli-ack-unknown", [*_FS, "--ack", "sometimes"], "--ack", "ack is manual or auto"),
    _cli("cli-persistence-unknown", [*_FS, "--redis-persistence", "aof-hourly"], "--redis-persistence",
         "appendfsync is always, everysec or no"),
    _cli("cli-strategy-unknown", [*_FS, "--stock-strategy", "hope"], "--stock-strategy",
         "unknown stock strategy"),
    _cli("cli-invalid-fraction", [*_FS, "--invalid-fraction", "1.5"], "--invalid-fraction",
         "a share above 1"),
    _cli("cli-ack-loss", [*_FS, "--ack-loss", "2"], "--ack-loss", "a probability above 1"),
    _cli("cli-gateway-failure", [*_FS, "--gateway-failure", "-0.1"], "--gateway-failure",
         "a negative probability"),
    _cli("cli-fsync-zero", [*_FS, "--fsync-interval-s", "0"], "--fsync-interval-s",
         "an fsync interval of zero"),
    _cli("cli-handler-negative", [*_FS, "--handler-ms", "-1"], "--handler-ms", "negative service time"),
    _cli("cli-crash-no-time", [*_FS, "--crash", "broker"], "--crash", "a crash needs TARGET@SECONDS"),
    _cli("cli-crash-target", [*_FS, "--crash", "toaster@1"], "--crash[0].target", "no such component"),
    _cli("cli-crash-negative-time", [*_FS, "--crash", "broker@-1"], "--crash[0].at", "a crash before t=0"),
    _cli("cli-crash-restart", [*_FS, "--crash", "broker@1+soon"], "--crash[0].restart_after",
         "restart delay is seconds or 'never'"),
    _cli("cli-piecewise-syntax", [*_FS, "--piecewise", "0-100"], "--piecewise", "steps are START:RATE"),
    _cli("cli-piecewise-all-zero", [*_FS, "--arrival-profile", "piecewise", "--piecewise", "0:0"],
         "--piecewise", "a piecewise profile with no positive rate never ends"),
    _cli("cli-plot-suffix", [*_FS, "--plot", "out/plot.txt"], "--plot", "plots are .png, .svg or .pdf"),
    _cli("cli-unknown-option", [*_FS, "--turbo"], "--turbo", "no such option"),
    _cli("cli-unknown-scenario", ["run", "black-friday"], "black-friday", "no such scenario"),
    _cli("cli-mmc-unstable", ["run", "mmc", "--servers", "1", "--arrival-rate", "2", "--service-rate", "1"],
         "--arrival-rate", "rho >= 1: the line grows for ever"),
    # ------------------------------------------------------------------ scenario configs (API)
    _cfg("cfg-extra-field", "flash-sale", {"turbo": True}, "turbo", "unknown field (typo guard)"),
    _cfg("cfg-stock-text", "flash-sale", {"stock": "lots"}, "stock", "stock is a whole number"),
    _cfg("cfg-rate-inf", "flash-sale", {"arrival_rate": float("inf")}, "arrival_rate", "infinite rate"),
    _cfg("cfg-safety-over-stock", "flash-sale", {"stock": 3, "safety_stock": 5}, "safety_stock",
         "safety stock larger than the stock"),
    _cfg("cfg-piecewise-order", "flash-sale", {"piecewise": [[1, 10], [0, 5]]}, "piecewise",
         "steps must start at increasing times"),
    _cfg("cfg-fault-no-time", "flash-sale", {"faults": [{"target": "broker"}]}, "faults.0",
         "a fault needs a time or a crash point"),
    _cfg("cfg-fault-both", "flash-sale",
         {"faults": [{"target": "broker", "at": 1.0, "point": "api:after-save"}]}, "faults.0",
         "a fault has a time or a crash point, not both"),
    _cfg("cfg-fault-point", "flash-sale", {"faults": [{"target": "relay", "point": "nowhere"}]},
         "faults.0.point", "no such crash point"),
    _cfg("cfg-fault-target", "flash-sale", {"faults": [{"target": "consumer-x", "at": 1.0}]},
         "faults.0.target", "consumers are consumer-N"),
    _cfg("cfg-keep-history", "flash-sale", {"keep_history": -1}, "keep_history", "a negative count"),
    _cfg("cfg-mmc-warmup", "mmc", {"customers": 5, "warmup": 10}, "warmup",
         "discarding more customers than are simulated"),
    _cfg("cfg-mmc-servers", "mmc", {"servers": 0}, "servers", "an M/M/c queue needs c >= 1"),
    # ------------------------------------------------------------------ topology declarations
    _topo("topo-exchange-type", [("declare_exchange", {"name": "orders", "exchange_type": "x-bogus"})],
          "exchange_type", "unknown exchange type (AMQP 503)"),
    _topo("topo-exchange-amq", [("declare_exchange", {"name": "amq.orders", "exchange_type": "direct"})],
          "exchange_name", "amq. names are reserved (403)"),
    _topo("topo-exchange-long", [("declare_exchange", {"name": LONG_NAME, "exchange_type": "direct"})],
          "exchange_name", "over 255 bytes"),
    _topo("topo-exchange-long-utf8", [("declare_exchange", {"name": LONG_UTF8, "exchange_type": "fanout"})],
          "exchange_name", "128 characters but 256 bytes of UTF-8"),
    _topo("topo-exchange-empty", [("declare_exchange", {"name": "", "exchange_type": "direct"})],
          "exchange_name", "'' is the built-in default exchange"),
    _topo("topo-hash-header-and-property",
          [("declare_exchange", {"name": "hx", "exchange_type": "x-consistent-hash",
                                 "arguments": {"hash-header": "user", "hash-property": "message_id"}})],
          "exchange arguments", "hash-header and hash-property are exclusive"),
    _topo("topo-hash-property-unknown",
          [("declare_exchange", {"name": "hx", "exchange_type": "x-consistent-hash",
                                 "arguments": {"hash-property": "user_id"}})],
          "hash-property", "only message_id, correlation_id or timestamp"),
    _topo("topo-hash-arg-on-direct",
          [("declare_exchange", {"name": "ex", "exchange_type": "direct",
                                 "arguments": {"hash-header": "user"}})],
          "exchange argument", "hash-header means nothing on a direct exchange"),
    _topo("topo-redeclare-type", [_DIRECT, ("declare_exchange", {"name": "ex", "exchange_type": "fanout"})],
          "exchange", "redeclared with another type (406)"),
    _topo("topo-hash-weight-zero", [_Q, _HASH, ("bind", {"queue": "q", "exchange": "hx", "binding_key": "0"})],
          "binding_key", "consistent-hash weight 0"),
    _topo("topo-hash-weight-negative",
          [_Q, _HASH, ("bind", {"queue": "q", "exchange": "hx", "binding_key": "-3"})],
          "binding_key", "negative weight"),
    _topo("topo-hash-weight-fraction",
          [_Q, _HASH, ("bind", {"queue": "q", "exchange": "hx", "binding_key": "1.5"})],
          "binding_key", "fractional weight"),
    _topo("topo-hash-weight-word",
          [_Q, _HASH, ("bind", {"queue": "q", "exchange": "hx", "binding_key": "heavy"})],
          "binding_key", "a weight is a number written as a string"),
    _topo("topo-binding-key-long",
          [_Q, _DIRECT, ("bind", {"queue": "q", "exchange": "ex", "binding_key": LONG_NAME})],
          "binding_key", "over 255 bytes"),
    _topo("topo-headers-x-match",
          [_Q, _HEADERS, ("bind", {"queue": "q", "exchange": "hd", "binding_key": "",
                                   "arguments": {"x-match": "most"}})],
          "x-match", "x-match is all, any, all-with-x or any-with-x"),
    _topo("topo-bind-missing-queue", [_DIRECT, ("bind", {"queue": "nowhere", "exchange": "ex"})],
          "queue", "binding a queue that was never declared"),
    _topo("topo-bind-missing-exchange", [_Q, ("bind", {"queue": "q", "exchange": "nowhere"})],
          "exchange", "binding to an exchange that was never declared (404)"),
    _topo("topo-queue-amq", [("declare_queue", {"name": "amq.q"})], "queue", "amq. names are reserved"),
    _topo("topo-queue-long", [("declare_queue", {"name": LONG_NAME})], "queue", "over 255 bytes"),
    _topo("topo-queue-max-priority", [("declare_queue", {"name": "q", "arguments": {"x-max-priority": 256}})],
          "x-max-priority", "priorities are 0..255"),
    _topo("topo-queue-ttl-negative", [("declare_queue", {"name": "q", "arguments": {"x-message-ttl": -1}})],
          "x-message-ttl", "negative TTL"),
    _topo("topo-queue-overflow", [("declare_queue", {"name": "q", "arguments": {"x-overflow": "explode"}})],
          "x-overflow", "unknown overflow mode"),
    _topo("topo-queue-dlrk-alone",
          [("declare_queue", {"name": "q", "arguments": {"x-dead-letter-routing-key": "k"}})],
          "x-dead-letter-routing-key", "a dead-letter routing key without an exchange"),
    _topo("topo-queue-unmodelled-arg",
          [("declare_queue", {"name": "q", "arguments": {"x-consumer-timeout": 1000}})],
          "queue argument", "an argument the model does not implement (and < 60 s is unsupported)"),
    _topo("topo-publish-undeclared",
          [("publish", {"exchange": "nowhere", "routing_key": "k"})],
          "exchange", "publishing to an undeclared exchange (404)"),
    _topo("topo-publish-long-key", [_DIRECT, ("publish", {"exchange": "ex", "routing_key": LONG_NAME})],
          "routing_key", "routing key over 255 bytes"),
    _topo("topo-consume-prefetch", [_Q, ("consume", {"queue": "q", "consumer_tag": "c", "prefetch": -1})],
          "prefetch", "negative prefetch"),
    # ------------------------------------------------------------------ message properties
    BadInput("msg-priority-high", "message", {"priority": 256}, "priority", "priority is an octet"),
    BadInput("msg-priority-negative", "message", {"priority": -1}, "priority", "negative priority"),
    BadInput("msg-expiration-negative", "message", {"expiration": -1.0}, "expiration", "negative TTL"),
    BadInput("msg-expiration-nan", "message", {"expiration": float("nan")}, "expiration", "NaN TTL"),
    # ------------------------------------------------------------------ payloads (schema gate)
    BadInput("payload-missing-user", "payload",
             {"schema_version": 1, "submission_id": "s1", "answers": {}}, "user_id", "required field missing"),
    BadInput("payload-schema-version", "payload",
             {"schema_version": 2, "submission_id": "s1", "user_id": "u1", "answers": {}}, "schema_version",
             "a producer that drifted to a new schema"),
    BadInput("payload-empty-id", "payload",
             {"schema_version": 1, "submission_id": "", "user_id": "u1", "answers": {}}, "submission_id",
             "empty submission id"),
    BadInput("payload-seq-negative", "payload",
             {"schema_version": 1, "submission_id": "s1", "user_id": "u1", "answers": {}, "seq": -1}, "seq",
             "negative sequence number"),
    BadInput("payload-kind", "payload",
             {"schema_version": 1, "submission_id": "s1", "user_id": "u1", "answers": {}, "kind": "delete"},
             "kind", "unknown event kind"),
    BadInput("payload-extra", "payload",
             {"schema_version": 1, "submission_id": "s1", "user_id": "u1", "answers": {}, "admin": True},
             "admin", "a property the schema does not allow"),
    BadInput("payload-answers-list", "payload",
             {"schema_version": 1, "submission_id": "s1", "user_id": "u1", "answers": ["yes"]}, "answers",
             "answers must be an object"),
    BadInput("payload-not-object", "payload", "user-1 says yes", "payload", "not a JSON object"),
    # ------------------------------------------------------------------ settings (URLs from env)
    BadInput("set-amqp-scheme", "settings", {"MQLAB_AMQP_URL": f"http://guest:{SECRET}@127.0.0.1:5672/"},
             "MQLAB_AMQP_URL", "not an AMQP URL (and the password must be masked)"),
    BadInput("set-amqp-no-host", "settings", {"MQLAB_AMQP_URL": f"amqp://user:{SECRET}@:5672/%2F"},
             "MQLAB_AMQP_URL", "no host"),
    BadInput("set-amqp-port", "settings", {"MQLAB_AMQP_URL": f"amqp://user:{SECRET}@host:99999/"},
             "MQLAB_AMQP_URL", "port out of range"),
    BadInput("set-amqp-scheme-forgotten", "settings", {"MQLAB_AMQP_URL": f"guest:{SECRET}@127.0.0.1:5672/"},
             "MQLAB_AMQP_URL", "the scheme forgotten (and the password must be masked)"),
    BadInput("set-amqp-one-slash", "settings", {"MQLAB_AMQP_URL": f"amqp:/guest:{SECRET}@127.0.0.1/"},
             "MQLAB_AMQP_URL", "one slash after the scheme (and the password must be masked)"),
    BadInput("set-redis-db", "settings", {"MQLAB_REDIS_URL": "redis://127.0.0.1:6379/cache"},
             "MQLAB_REDIS_URL", "the path is a database number"),
    BadInput("set-redis-scheme", "settings", {"MQLAB_REDIS_URL": "memcached://127.0.0.1:11211"},
             "MQLAB_REDIS_URL", "not a Redis URL"),
    BadInput("set-redis-unix", "settings", {"MQLAB_REDIS_URL": "unix://"}, "MQLAB_REDIS_URL",
             "unix:// without a socket path"),
    BadInput("set-db-sqlite-netloc", "settings", {"MQLAB_DATABASE_URL": "sqlite://relative.db"},
             "MQLAB_DATABASE_URL", "two slashes make 'relative.db' a host"),
    BadInput("set-db-no-name", "settings", {"MQLAB_DATABASE_URL": f"postgresql://app:{SECRET}@127.0.0.1:5432/"},
             "MQLAB_DATABASE_URL", "no database name (and the password must be masked)"),
    BadInput("set-db-scheme", "settings", {"MQLAB_DATABASE_URL": "mysql://root@127.0.0.1/app"},
             "MQLAB_DATABASE_URL", "an unsupported database"),
    BadInput("set-offline-flag", "settings", {"MQLAB_OFFLINE": "maybe"}, "MQLAB_OFFLINE", "not a yes/no"),
    BadInput("set-timeout-zero", "settings", {"MQLAB_CONNECT_TIMEOUT_S": "0"}, "MQLAB_CONNECT_TIMEOUT_S",
             "a connect timeout of zero"),
    BadInput("set-timeout-text", "settings", {"MQLAB_CONNECT_TIMEOUT_S": "soon"}, "MQLAB_CONNECT_TIMEOUT_S",
             "not a number"),
    # ------------------------------------------------------------------ the Redis model
    BadInput("redis-decrby-zero", "store", ("decrby", {"key": "stock", "n": 0}), "decrby",
             "DECRBY by 0 (the reference Lua returns -2)"),
    BadInput("redis-value-64bit", "store", ("set", {"key": "stock", "value": 2**63}), "redis.value",
             "beyond a signed 64-bit integer"),
    BadInput("redis-value-float", "store", ("set", {"key": "stock", "value": 1.5}), "redis.value",
             "a non-integer stock value"),
    BadInput("redis-ex-negative", "store", ("set", {"key": "k", "value": 1, "ex": -5}), "redis.ex",
             "a negative expiry"),
)


def by_kind(kind: str) -> tuple[BadInput, ...]:
    return tuple(entry for entry in CATALOGUE if entry.kind == kind)


def _shown(entry: BadInput) -> str:
    if entry.kind == "cli":
        text = "mqlab " + " ".join(entry.input)
    else:
        text = repr(entry.input)
    text = text.replace(LONG_NAME, "'x'*256").replace(LONG_UTF8, "'é'*128")
    return text if len(text) <= 90 else text[:87] + "..."


def markdown_table() -> str:
    """The catalogue as a Markdown table (for the README)."""
    lines = ["| id | kind | input | field named | why it is refused |", "|---|---|---|---|---|"]
    for e in CATALOGUE:
        shown = _shown(e).replace("|", "\\|")
        lines.append(f"| {e.id} | {e.kind} | `{shown}` | `{e.field}` | {e.why} |")
    return "\n".join(lines)
