"""``BrokerPort.publish_many`` against a real RabbitMQ: windowed publisher confirms.

The window is checked through the report's ``max_in_flight`` counter, which the publisher
raises each time it sends; nacks come from a queue that rejects publishes when full, returns
from mandatory publishes with no binding.
"""

from __future__ import annotations

import os
import time

import pytest

from real_adapters.broker import BrokerPort
from real_adapters.confirms import PublishReport
from real_adapters.tcp_proxy import TcpProxy
from simulator.errors import ChannelClosed, ServiceDown
from simulator.flow import EXCHANGE, QUEUE, ROUTING_KEY
from simulator.messages import Message, submission_body
from simulator.ports import Done

pytestmark = pytest.mark.real


def report(done: Done) -> PublishReport:
    assert isinstance(done, Done), done
    assert done.error is None, done.error
    assert isinstance(done.value, PublishReport), done.value
    return done.value


def msgs(n: int, *, key: str = ROUTING_KEY, start: int = 0) -> list[Message]:
    return [Message(f"m{i}", f"c{i}", key, submission_body(f"s{i}", f"u{i}", seq=i))
            for i in range(start, start + n)]


def drain_ids(broker: BrokerPort, queue: str = QUEUE) -> list[str]:
    ids = []
    for d in broker.deliveries(queue, prefetch=500, inactivity_timeout=0.7, max_deliveries=100_000):
        ids.append(d.message.message_id)
        broker.ack(d)
    return ids


@pytest.mark.parametrize("window", [1, 7, 100])
def test_every_message_is_confirmed_in_order_and_the_window_holds(broker: BrokerPort, window: int):
    sent = msgs(300)
    r = report(broker.publish_many(EXCHANGE, ROUTING_KEY, sent, window=window, mandatory=True))
    assert r.ok and r.acked == 300 and r.published == 300 and r.error is None
    assert r.failed() == []
    # the counter is raised after every send: it proves no send ever exceeded the window,
    # and that the window was actually used (not one-at-a-time)
    assert r.max_in_flight == window
    assert drain_ids(broker) == [m.message_id for m in sent]


def test_nacks_inside_a_window_are_reported_by_index(broker: BrokerPort):
    broker.queue_declare("tiny", arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    r = report(broker.publish_many("", "tiny", msgs(6), window=4))
    # the queue takes two; the broker nacks the rest (often several at once, multiple=True)
    assert r.acked == 2 and r.nacked == [2, 3, 4, 5] and not r.ok
    assert r.failed() == [2, 3, 4, 5] and r.unconfirmed == [] and r.error is None
    assert broker.queue_depth("tiny") == 2
    broker.queue_delete("tiny")


def test_returns_inside_a_window_are_reported_and_not_counted_as_acked(broker: BrokerPort):
    # routing_key=None: each message's own key; every third one has no binding
    batch = [Message(m.message_id, m.correlation_id, "no.such.key" if i % 3 == 0 else ROUTING_KEY, m.body)
             for i, m in enumerate(msgs(30))]
    r = report(broker.publish_many(EXCHANGE, None, batch, window=8, mandatory=True))
    returned = [i for i in range(30) if i % 3 == 0]
    assert r.returned == returned and r.acked == 30 - len(returned) and r.nacked == []
    assert sorted(drain_ids(broker)) == sorted(m.message_id for i, m in enumerate(batch) if i % 3)


def test_returns_with_a_repeated_message_id_are_matched_in_publish_order(broker: BrokerPort):
    # basic.return carries no delivery tag: a repeated id must still point at the right index
    same = [Message("dup", f"c{i}", ROUTING_KEY if i % 2 else "nowhere", submission_body("s", "u", seq=i))
            for i in range(6)]
    r = report(broker.publish_many(EXCHANGE, None, same, window=6, mandatory=True))
    assert r.returned == [0, 2, 4] and r.acked == 3


def test_without_mandatory_an_unroutable_publish_is_simply_acked(broker: BrokerPort):
    r = report(broker.publish_many(EXCHANGE, "no.such.key", msgs(5), window=2, mandatory=False))
    assert r.acked == 5 and r.returned == []
    assert broker.queue_depth(QUEUE) == 0


def test_a_missing_exchange_ends_the_batch_with_channel_closed_then_recovers(broker: BrokerPort):
    r = report(broker.publish_many("no-such-exchange", ROUTING_KEY, msgs(50), window=10))
    assert isinstance(r.error, ChannelClosed) and "404" in str(r.error)
    assert r.acked == 0 and r.published <= 10
    assert r.failed() == list(range(50))  # every message is accounted for, none as acked
    again = report(broker.publish_many(EXCHANGE, ROUTING_KEY, msgs(5), window=10))
    assert again.ok and broker._windowed is not None and broker._windowed.connects == 1


def test_the_deadline_bounds_the_call_and_reports_what_was_left(broker: BrokerPort):
    started = time.monotonic()
    r = report(broker.publish_many(EXCHANGE, ROUTING_KEY, msgs(20_000), window=50, timeout_s=0.05))
    assert time.monotonic() - started < 2.0
    assert not r.ok and isinstance(r.error, ServiceDown) and "still missing" in str(r.error)
    assert r.acked + len(r.unconfirmed) + len(r.unsent) + len(r.nacked) == 20_000
    assert r.max_in_flight <= 50
    # late confirms of that batch must not leak into the next one
    again = report(broker.publish_many(EXCHANGE, ROUTING_KEY, msgs(20, start=90_000), window=5))
    assert again.ok and again.acked == 20


def test_an_empty_batch_and_a_bad_window(broker: BrokerPort):
    r = report(broker.publish_many(EXCHANGE, ROUTING_KEY, [], window=5))
    assert r.ok and r.published == 0
    with pytest.raises(ValueError):
        broker.publish_many(EXCHANGE, ROUTING_KEY, msgs(1), window=0)


def test_unreachable_broker_is_service_down_quickly():
    port = BrokerPort("amqp://guest:guest@127.0.0.1:1/%2F", connect_timeout_s=0.5)
    started = time.monotonic()
    done = port.publish_many(EXCHANGE, ROUTING_KEY, msgs(3), timeout_s=5.0)
    assert isinstance(done.error, ServiceDown) and done.error.component == "broker"
    assert time.monotonic() - started < 5.0
    # each failed attempt releases its I/O loop: retrying does not leak descriptors
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(20):
        assert isinstance(port.publish_many(EXCHANGE, ROUTING_KEY, msgs(1), timeout_s=2.0).error, ServiceDown)
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) <= fds + 2
    port.close()


def test_a_cut_connection_is_service_down_then_a_new_one_is_opened(amqp_url: str, namespace: str,
                                                                     broker: BrokerPort):
    host_port = amqp_url.split("@", 1)[1].split("/", 1)[0]
    host, port_no = host_port.rsplit(":", 1) if ":" in host_port else (host_port, "5672")
    with TcpProxy(host, int(port_no)) as proxy:
        url = amqp_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        port = BrokerPort(url, namespace=namespace, process_name=f"proxied-{namespace}")
        try:
            assert report(port.publish_many(EXCHANGE, ROUTING_KEY, msgs(10), window=5)).ok
            proxy.cut()
            down = port.publish_many(EXCHANGE, ROUTING_KEY, msgs(10, start=10), window=5, timeout_s=5.0)
            # the reset is seen while opening (nothing sent) or mid-batch (reported unconfirmed)
            assert isinstance(down.error or down.value.error, ServiceDown)
            proxy.restore()
            assert report(port.publish_many(EXCHANGE, ROUTING_KEY, msgs(10, start=20), window=5)).ok
            assert port._windowed is not None and port._windowed.connects == 2
        finally:
            port.close()
