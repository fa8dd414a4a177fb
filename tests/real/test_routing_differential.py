"""Differential test: ``simulator.routing.route`` against a real RabbitMQ, on random topologies.

A seeded generator builds exchanges of every type with random bindings, declares them on the
broker under unique names, publishes random messages, reads back which queues received each
one (``basic.get``) and compares with what the pure model says for the same topology.

* direct, fanout, topic, headers: the set of queues must be exactly equal, each queue must hold
  one copy, and "unroutable" (a mandatory publish returned) must agree with ``route() == []``.
* x-consistent-hash: the model hashes differently from RabbitMQ on purpose, so we check the
  properties both promise instead: one queue per message, the same hash input always lands in
  the same queue, and each queue's share follows its weight.

``MQLAB_DIFF_SEED`` replays a different (or a failing) run.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest

from simulator.routing import Binding, route

pytestmark = pytest.mark.real

SEED = int(os.environ.get("MQLAB_DIFF_SEED", "20240611"))
# 50 topologies of the exact-equality types, 12 messages each: 600 compared cases
TOPOLOGIES = {"direct": 10, "fanout": 5, "topic": 18, "headers": 17}
MESSAGES_PER_TOPOLOGY = 12
MIN_CASES = 500

CHX_KEYS = 500     # distinct hash inputs per consistent-hash topology
CHX_REPEATS = 3    # copies of each input: stickiness needs more than one
CHX_MISSING = 20   # messages without the hash header/property (they must stick together too)
CHX_SIGMAS = 5.0   # share tolerance in binomial standard deviations (no flaky failures)

PLUGIN = "rabbitmq_consistent_hash_exchange"
PLUGIN_TIMEOUT_S = 90
MAX_GETS_PER_QUEUE = 10_000

TOPIC_WORDS = ("a", "b", "c", "", "*", "#", "a*", "#b")  # "a*" and "#b" are literal words
KEY_WORDS = ("a", "b", "c", "", "a*", "#b")
DIRECT_KEYS = ("", "a", "b", "a.b", "A", "a ", "*", "#")
HEADER_NAMES = ("h1", "h2", "h3", "x-h")
# typed values that pika encodes distinctly: str 'S', int 'I' or 'l' (beyond 32 bits), bool 't';
# 1 vs True, 0 vs False and "1" vs 1 are the traps worth probing
HEADER_VALUES = ("a", "b", "1", "", 1, 0, 2, -1, 2**40, True, False)
X_MATCH = (None, "all", "any", "all-with-x", "any-with-x")


# --------------------------------------------------------------------------- broker plumbing

@pytest.fixture
def channel(amqp_url: str) -> Iterator[Any]:
    import pika

    params = pika.URLParameters(amqp_url)
    params.connection_attempts, params.socket_timeout = 1, 5
    params.blocked_connection_timeout = 10
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()  # a confirmed publish has been routed before we basic.get
    yield ch
    if conn.is_open:
        conn.close()


def _ensure_consistent_hash(amqp_url: str) -> None:
    """Enable the plugin once if the broker does not know the exchange type (bounded)."""
    import pika
    import pika.exceptions as px

    def declare_probe() -> bool:
        params = pika.URLParameters(amqp_url)
        params.connection_attempts, params.socket_timeout = 1, 5
        conn = pika.BlockingConnection(params)
        name = f"mqlab.chx-probe.{uuid.uuid4().hex[:8]}"
        try:
            ch = conn.channel()
            ch.exchange_declare(name, "x-consistent-hash", auto_delete=True)
            ch.exchange_delete(name)
            return True
        except (px.ConnectionClosed, px.ChannelClosed):
            return False  # 503 COMMAND_INVALID: unknown exchange type closes the connection
        finally:
            if conn.is_open:
                conn.close()

    if declare_probe():
        return
    try:
        subprocess.run(["rabbitmq-plugins", "enable", PLUGIN], check=True, capture_output=True,
                       timeout=PLUGIN_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"x-consistent-hash is unknown and `rabbitmq-plugins enable {PLUGIN}` failed: "
                    f"{type(exc).__name__}")
    for _ in range(10):  # the plugin registers its exchange type shortly after enabling
        if declare_probe():
            return
        time.sleep(1.0)
    pytest.fail(f"x-consistent-hash still unknown after enabling {PLUGIN}")


@dataclass
class Topology:
    exchange_type: str
    queues: list[str]
    bindings: list[Binding]
    exchange_arguments: dict[str, Any] = field(default_factory=dict)


class Declared:
    """One topology on the broker under unique names; deleted again on exit."""

    def __init__(self, ch: Any, topology: Topology, prefix: str):
        self.ch, self.t, self.prefix = ch, topology, prefix
        self.exchange = f"{prefix}.x"

    def physical(self, queue: str) -> str:
        return f"{self.prefix}.{queue}"

    def __enter__(self) -> "Declared":
        t = self.t
        self.ch.exchange_declare(self.exchange, t.exchange_type, durable=False, auto_delete=False,
                                 arguments=t.exchange_arguments or None)
        for q in t.queues:
            self.ch.queue_declare(self.physical(q), durable=False, auto_delete=False)
        for b in t.bindings:
            self.ch.queue_bind(self.physical(b.queue), self.exchange, routing_key=b.binding_key,
                               arguments=dict(b.arguments) or None)
        return self

    def __exit__(self, *exc: object) -> None:
        ch = self.ch
        if not ch.is_open:
            # a broker error (404/406) closed the channel: clean up on a fresh one, if we can
            if not ch.connection.is_open:
                return
            ch = ch.connection.channel()
        for q in self.t.queues:
            ch.queue_delete(self.physical(q))
        ch.exchange_delete(self.exchange)

    def publish(self, msg_id: str, routing_key: str, headers: dict[str, Any] | None,
                correlation_id: str | None = None) -> bool:
        """True if routed; False if the broker returned it (mandatory, no queue matched)."""
        import pika
        import pika.exceptions as px

        props = pika.BasicProperties(message_id=msg_id, headers=headers, correlation_id=correlation_id)
        try:
            self.ch.basic_publish(self.exchange, routing_key, b"", props, mandatory=True)
        except px.UnroutableError:
            return False
        return True

    def drain(self) -> dict[str, Counter]:
        """msg_id -> Counter(queue -> copies), emptying every queue (bounded per queue)."""
        got: dict[str, Counter] = defaultdict(Counter)
        for q in self.t.queues:
            for _ in range(MAX_GETS_PER_QUEUE):
                method, props, _body = self.ch.basic_get(self.physical(q), auto_ack=True)
                if method is None:
                    break
                got[props.message_id][q] += 1
            else:
                pytest.fail(f"queue {q} still not empty after {MAX_GETS_PER_QUEUE} gets")
        return got


# --------------------------------------------------------------------------- random topologies

def _topic_key(rng: random.Random, words: tuple[str, ...]) -> str:
    return ".".join(rng.choice(words) for _ in range(rng.randint(0, 4)))


def _header_table(rng: random.Random, *, allow_void: bool) -> dict[str, Any]:
    names = rng.sample(HEADER_NAMES, rng.randint(0, len(HEADER_NAMES)))
    pool = HEADER_VALUES + ((None,) if allow_void else ())
    return {n: rng.choice(pool) for n in names}


def random_topology(rng: random.Random, exchange_type: str) -> Topology:
    queues = [f"q{j}" for j in range(rng.randint(1, 5))]
    bindings = []
    for _ in range(rng.randint(0, 8)):
        q = rng.choice(queues)  # some queues stay unbound, some get several bindings
        if exchange_type == "direct":
            bindings.append(Binding(q, rng.choice(DIRECT_KEYS)))
        elif exchange_type == "fanout":
            bindings.append(Binding(q, rng.choice(DIRECT_KEYS)))  # key ignored by fanout
        elif exchange_type == "topic":
            bindings.append(Binding(q, _topic_key(rng, TOPIC_WORDS)))
        else:
            args = _header_table(rng, allow_void=True)  # void: "header present" in a binding
            kind = rng.choice(X_MATCH)
            if kind is not None:
                args["x-match"] = kind
            bindings.append(Binding(q, "", args))
    return Topology(exchange_type, queues, bindings)


def random_message(rng: random.Random, exchange_type: str) -> tuple[str, dict[str, Any] | None]:
    if exchange_type == "topic":
        key = _topic_key(rng, KEY_WORDS)
    else:
        key = rng.choice(DIRECT_KEYS + ("zz",))
    headers = None
    if exchange_type == "headers" and rng.random() > 0.1:  # now and then no headers at all
        headers = _header_table(rng, allow_void=True)
    return key, headers


# --------------------------------------------------------------------------- exact types

def test_routing_matches_the_model_on_random_topologies(channel: Any, capsys: pytest.CaptureFixture):
    rng = random.Random(SEED)
    run = uuid.uuid4().hex[:8]
    cases = mismatches = unroutable = multi = 0
    examples: list[str] = []
    per_type: Counter = Counter()
    for exchange_type, count in TOPOLOGIES.items():
        for i in range(count):
            topology = random_topology(rng, exchange_type)
            messages = [random_message(rng, exchange_type) for _ in range(MESSAGES_PER_TOPOLOGY)]
            with Declared(channel, topology, f"mqlab.diff.{run}.{exchange_type}.{i}") as d:
                routed = {}
                for n, (key, headers) in enumerate(messages):
                    routed[f"m{n}"] = d.publish(f"m{n}", key, headers)
                got = d.drain()
            for n, (key, headers) in enumerate(messages):
                mid = f"m{n}"
                want = route(exchange_type, topology.bindings, key, headers)
                copies = got.get(mid, Counter())
                problems = []
                if set(copies) != set(want):
                    problems.append(f"queues broker={sorted(copies)} model={sorted(want)}")
                if any(c != 1 for c in copies.values()):
                    problems.append(f"copies per queue {dict(copies)}")
                if routed[mid] != bool(want):
                    problems.append(f"broker {'routed' if routed[mid] else 'returned'} it")
                cases += 1
                per_type[exchange_type] += 1
                unroutable += not want
                multi += len(want) > 1
                if problems:
                    mismatches += 1
                    if len(examples) < 10:
                        examples.append(f"{exchange_type} bindings={topology.bindings} key={key!r} "
                                        f"headers={headers!r}: {'; '.join(problems)}")
    with capsys.disabled():
        print(f"\n[routing differential] seed={SEED} cases={cases} mismatches={mismatches} "
              f"by type={dict(per_type)} unroutable={unroutable} to-several-queues={multi}")
    assert cases >= MIN_CASES
    # the generator must reach both sides of every rule, or a pass would mean little
    assert unroutable > 0 and multi > 0 and cases - unroutable > 0
    assert mismatches == 0, "\n".join(examples)


# --------------------------------------------------------------------------- consistent hash

CHX_VARIANTS = {
    "routing-key": {},
    "hash-header": {"hash-header": "hk"},
    "hash-property": {"hash-property": "correlation_id"},
}


def _chx_topology(rng: random.Random, arguments: dict[str, Any]) -> Topology:
    # uneven weights, so "share follows weight" is distinguishable from "even split"
    weights = rng.sample([1, 2, 3, 5, 8], rng.randint(3, 4))
    queues = [f"q{j}" for j in range(len(weights))]
    bindings = [Binding(q, str(w)) for q, w in zip(queues, weights)]
    return Topology("x-consistent-hash", queues, bindings, dict(arguments))


def _hash_fields(variant: str, value: str | None) -> tuple[str, dict[str, Any] | None, str | None]:
    """routing key, headers, correlation id that carry ``value`` (None: leave the input out)."""
    if variant == "routing-key":
        return value or "", None, None
    if variant == "hash-header":
        return "ignored", ({"hk": value} if value is not None else {"other": "x"}), None
    return "ignored", None, value


@pytest.mark.parametrize("variant", list(CHX_VARIANTS))
def test_consistent_hash_is_sticky_and_weight_proportional(channel: Any, amqp_url: str, variant: str,
                                                           capsys: pytest.CaptureFixture):
    _ensure_consistent_hash(amqp_url)  # probes on a connection of its own
    rng = random.Random(f"{SEED}-{variant}")
    topology = _chx_topology(rng, CHX_VARIANTS[variant])
    inputs = [f"key-{rng.getrandbits(48):012x}" for _ in range(CHX_KEYS)]
    # the routing-key variant cannot leave its input out; the others test "missing" too
    missing = 0 if variant == "routing-key" else CHX_MISSING
    plan: list[tuple[str, str | None]] = []  # (msg_id, hash input)
    for r in range(CHX_REPEATS):
        plan += [(f"k{i}.{r}", v) for i, v in enumerate(inputs)]
    plan += [(f"missing.{i}", None) for i in range(missing)]
    rng.shuffle(plan)  # repeats interleaved, not back to back

    run = uuid.uuid4().hex[:8]
    with Declared(channel, topology, f"mqlab.diff.{run}.chx.{variant}") as d:
        returned = 0
        for mid, value in plan:
            key, headers, corr = _hash_fields(variant, value)
            returned += not d.publish(mid, key, headers, correlation_id=corr)
        got = d.drain()

    # exactly one copy in exactly one queue, for every message
    wrong_count = {mid: dict(c) for mid, c in got.items() if sum(c.values()) != 1}
    never = [mid for mid, _ in plan if mid not in got]
    assert returned == 0 and not wrong_count and not never, (returned, wrong_count, never[:5])

    # stickiness: every copy of one input (and every message missing its input) in one queue
    where: dict[str | None, set[str]] = defaultdict(set)
    for mid, value in plan:
        where[value] |= set(got[mid])
    split = {v: q for v, q in where.items() if len(q) != 1}
    assert not split, f"inputs spread over several queues: {list(split.items())[:5]}"

    # proportion: broker's and model's share of distinct inputs per queue vs weight / total
    total_weight = sum(int(b.binding_key) for b in topology.bindings)
    broker_share = Counter(next(iter(where[v])) for v in inputs)
    model_share = Counter(route("x-consistent-hash", topology.bindings, *_hash_fields(variant, v)[:2],
                                properties={"correlation_id": _hash_fields(variant, v)[2]},
                                exchange_arguments=topology.exchange_arguments)[0] for v in inputs)
    rows, off = [], []
    for b in topology.bindings:
        p = int(b.binding_key) / total_weight
        sigma = math.sqrt(p * (1 - p) / CHX_KEYS)
        broker, model = broker_share[b.queue] / CHX_KEYS, model_share[b.queue] / CHX_KEYS
        rows.append(f"{b.queue} w={b.binding_key} expect={p:.3f} broker={broker:.3f} model={model:.3f}")
        if abs(broker - p) > CHX_SIGMAS * sigma or abs(model - p) > CHX_SIGMAS * sigma \
                or abs(broker - model) > CHX_SIGMAS * sigma * math.sqrt(2):
            off.append(rows[-1])
    with capsys.disabled():
        print(f"\n[consistent hash {variant}] seed={SEED} messages={len(plan)} inputs={CHX_KEYS} "
              f"x{CHX_REPEATS} missing={missing} split-inputs=0 multi-copies=0; " + "; ".join(rows))
    assert not off, "shares outside tolerance: " + "; ".join(off)
