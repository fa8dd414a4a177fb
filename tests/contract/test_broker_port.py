"""The broker port against a real RabbitMQ: confirms, returns, properties, acks, prefetch.

Every test declares its own namespaced exchanges and queues and deletes them afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import replace

import pytest

from real_adapters.broker import BrokerPort
from simulator.errors import ChannelClosed, ServiceDown
from simulator.flow import DEAD_LETTER_QUEUE, EXCHANGE, QUEUE, ROUTING_KEY
from simulator.messages import Delivery, Message, submission_body
from simulator.ports import Done

pytestmark = pytest.mark.real


def value(done: Done):
    assert isinstance(done, Done), done
    assert done.error is None, done.error
    return done.value


def msg(i: int, **kw) -> Message:
    return Message(f"m{i}", f"c{i}", ROUTING_KEY, submission_body(f"s{i}", f"u{i}", seq=i), **kw)


def drain(broker: BrokerPort, queue: str = QUEUE, *, ack: bool = True, limit: int = 1000,
          **kw) -> list[Delivery]:
    got = []
    for d in broker.deliveries(queue, inactivity_timeout=kw.pop("inactivity_timeout", 0.5),
                               max_deliveries=limit, **kw):
        got.append(d)
        if ack:
            assert value(broker.ack(d)) is True
    return got


def wait_depth(broker: BrokerPort, queue: str, expected: int, timeout_s: float = 5.0) -> int:
    deadline = time.monotonic() + timeout_s
    depth = broker.queue_depth(queue)
    while depth != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        depth = broker.queue_depth(queue)
    return depth


def test_a_routed_publish_is_confirmed(broker: BrokerPort):
    assert value(broker.publish(EXCHANGE, ROUTING_KEY, msg(1), mandatory=True, confirm=True)) == "ack"
    assert wait_depth(broker, QUEUE, 1) == 1


def test_an_unroutable_mandatory_publish_is_returned(broker: BrokerPort):
    assert value(broker.publish(EXCHANGE, "no.such.key", msg(1), mandatory=True)) == "returned"
    # without mandatory the broker confirms it and drops it: a confirm alone does not mean routed
    assert value(broker.publish(EXCHANGE, "no.such.key", msg(2), mandatory=False)) == "ack"
    assert broker.queue_depth(QUEUE) == 0


def test_unconfirmed_publish_is_only_sent(broker: BrokerPort):
    assert value(broker.publish(EXCHANGE, ROUTING_KEY, msg(1), confirm=False)) == "sent"
    assert wait_depth(broker, QUEUE, 1) == 1


def test_a_full_queue_that_rejects_publishes_nacks(broker: BrokerPort):
    name = broker.queue_declare("tiny", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    assert value(broker.publish("", "tiny", msg(1))) == "ack"
    assert value(broker.publish("", "tiny", msg(2))) == "nack"
    assert name.endswith(".tiny")
    broker.queue_delete("tiny")


def test_publishing_to_a_missing_exchange_closes_only_the_channel(broker: BrokerPort):
    done = broker.publish("no-such-exchange", ROUTING_KEY, msg(1))
    assert isinstance(done.error, ChannelClosed) and "404" in str(done.error)
    assert value(broker.publish(EXCHANGE, ROUTING_KEY, msg(2), mandatory=True)) == "ack"
    assert broker.connects == 1  # same connection, new channel


def test_persistent_properties_round_trip(broker: BrokerPort):
    sent = msg(7, headers={"trace": "abc", "n": 3}, persistent=True, priority=4, expiration=60.0,
               timestamp=1_700_000_123.0)
    assert value(broker.publish(EXCHANGE, ROUTING_KEY, sent, mandatory=True)) == "ack"
    transient = msg(8, persistent=False)
    assert value(broker.publish(EXCHANGE, ROUTING_KEY, transient, mandatory=True)) == "ack"
    got = drain(broker)
    # every field comes back; the delivery also says which exchange it came through
    assert [d.message for d in got] == [replace(sent, exchange=EXCHANGE),
                                        replace(transient, exchange=EXCHANGE)]
    assert got[0].queue == QUEUE and got[0].redelivered is False and got[0].death_reason is None


def test_a_non_json_body_arrives_as_text(broker: BrokerPort):
    raw = msg(1)
    raw.body = b"{not json"
    assert value(broker.publish(EXCHANGE, ROUTING_KEY, raw, mandatory=True)) == "ack"
    (d,) = drain(broker)
    assert d.message.body == "{not json"


def test_nack_with_requeue_redelivers_and_ack_removes(broker: BrokerPort):
    value(broker.publish(EXCHANGE, ROUTING_KEY, msg(1), mandatory=True))
    (first,) = drain(broker, ack=False, limit=1)
    # the iteration ended, but we nack on purpose only now: its channel is closed, so this
    # settle is lost (False) and the close has already requeued the message
    assert value(broker.nack(first, requeue=True)) is False
    seen = []
    for d in broker.deliveries(QUEUE, inactivity_timeout=0.5, max_deliveries=5):
        seen.append(d.redelivered)
        if len(seen) == 1:
            assert value(broker.nack(d, requeue=True)) is True
        else:
            assert value(broker.ack(d)) is True
    assert seen == [True, True]
    assert broker.queue_depth(QUEUE) == 0


def test_auto_ack_deliveries_are_gone_once_delivered(broker: BrokerPort):
    for i in range(3):
        value(broker.publish(EXCHANGE, ROUTING_KEY, msg(i), mandatory=True))
    got = drain(broker, ack=False, auto_ack=True)
    assert [d.message.message_id for d in got] == ["m0", "m1", "m2"]
    assert broker.queue_depth(QUEUE) == 0


def test_reject_without_requeue_dead_letters(broker: BrokerPort):
    value(broker.publish(EXCHANGE, ROUTING_KEY, msg(1), mandatory=True))
    for d in broker.deliveries(QUEUE, inactivity_timeout=0.5, max_deliveries=1):
        assert value(broker.reject(d, requeue=False)) is True
    (dead,) = drain(broker, DEAD_LETTER_QUEUE)
    assert dead.message.message_id == "m1" and dead.death_reason == "rejected"
    assert dead.queue == DEAD_LETTER_QUEUE


def test_prefetch_bounds_the_unacked_window(broker: BrokerPort):
    for i in range(10):
        value(broker.publish(EXCHANGE, ROUTING_KEY, msg(i), mandatory=True))
    held = []
    for d in broker.deliveries(QUEUE, prefetch=3, inactivity_timeout=0.7, max_deliveries=10):
        held.append(d)  # never acked: after 3 the broker sends nothing more
        if len(held) == 3:
            assert broker.queue_depth(QUEUE) == 7
    assert len(held) == 3
    assert wait_depth(broker, QUEUE, 10) == 10  # closing the consumer's channel requeued them
    again = drain(broker, prefetch=3)
    assert len(again) == 10 and sum(d.redelivered for d in again) == 3


def test_unreachable_broker_is_service_down():
    port = BrokerPort("amqp://guest:guest@127.0.0.1:1/%2F", connect_timeout_s=0.5)
    done = port.publish(EXCHANGE, ROUTING_KEY, msg(1))
    assert isinstance(done.error, ServiceDown) and done.error.component == "broker"
    with pytest.raises(ServiceDown):
        next(iter(port.deliveries(QUEUE)))


def _connection_pid(name: str, timeout_s: float = 10.0) -> str | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = subprocess.run(["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
                             capture_output=True, text=True, timeout=30).stdout
        for line in out.splitlines():
            if f'"{name}"' in line:
                return line.split()[0]
        time.sleep(0.5)
    return None


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl to close a connection")
def test_a_closed_connection_is_service_down_then_reconnects(broker: BrokerPort):
    value(broker.publish(EXCHANGE, ROUTING_KEY, msg(1), mandatory=True))
    pid = _connection_pid(broker.process_name)
    assert pid is not None
    subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, "mqlab contract test"],
                   check=True, capture_output=True, timeout=30)
    first = broker.publish(EXCHANGE, ROUTING_KEY, msg(2), mandatory=True)
    # the close may reach us before or during this publish: either it fails as ServiceDown, or
    # the port already noticed the dead connection and opened a new one
    assert first.error is None or isinstance(first.error, ServiceDown)
    assert value(broker.publish(EXCHANGE, ROUTING_KEY, msg(3), mandatory=True)) == "ack"
    assert broker.connects == 2
    ids = {d.message.message_id for d in drain(broker)}
    assert {"m1", "m3"} <= ids
