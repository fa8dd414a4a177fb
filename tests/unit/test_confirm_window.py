"""The windowed publisher's bookkeeping, driven by a fake channel (no broker needed).

A real RabbitMQ decides by itself when to send ``multiple=True``; here a seeded fake broker
sends every shape of confirm (single and multiple acks and nacks, out of order) so each path
is exercised on every run, and checks the window from the broker's side as well.
"""

from __future__ import annotations

import random

import pika
import pika.frame
import pika.spec
import pytest

from real_adapters.confirms import WindowedPublisher, _Batch
from simulator.messages import Message, submission_body


class FakeChannel:
    channel_number = 1
    is_open = True

    def __init__(self, window: int):
        self.window = window
        self.sent: list[tuple[str, str, str]] = []  # (exchange, routing key, message id)
        self.open_tags: set[int] = set()
        self.worst = 0

    def basic_publish(self, exchange, routing_key, body, properties, mandatory=False):
        self.sent.append((exchange, routing_key, properties.message_id))
        self.open_tags.add(len(self.sent))
        self.worst = max(self.worst, len(self.open_tags))
        assert len(self.open_tags) <= self.window, "the publisher overran its window"


def msgs(n: int) -> list[Message]:
    return [Message(f"m{i}", f"c{i}", "submit", submission_body(f"s{i}", f"u{i}", seq=i)) for i in range(n)]


def publisher(window: int, messages: list[Message], *, mandatory: bool = False):
    pub = WindowedPublisher(pika.URLParameters("amqp://guest:guest@127.0.0.1:1/%2F"),
                            topology_physical=lambda name: f"ns.{name}" if name else name)
    ch = FakeChannel(window)
    pub._channel = ch
    batch = _Batch(messages, window, 1, mandatory, "ns.orders", "submit")
    pub._batch = batch
    return pub, ch, batch


def confirm(pub: WindowedPublisher, ch: FakeChannel, tag: int, *, multiple: bool, ack: bool) -> None:
    method = (pika.spec.Basic.Ack if ack else pika.spec.Basic.Nack)(delivery_tag=tag, multiple=multiple)
    if multiple:
        ch.open_tags -= {t for t in ch.open_tags if t <= tag}
    else:
        ch.open_tags.discard(tag)
    pub._on_confirm(pika.frame.Method(1, method))


@pytest.mark.parametrize("seed", range(20))
def test_random_confirm_shapes_settle_every_message_exactly_once(seed: int):
    rng = random.Random(seed)
    n, window = 200, rng.choice([1, 3, 10, 64])
    pub, ch, batch = publisher(window, msgs(n))
    pub._pump(batch)
    nacked: set[int] = set()
    while ch.open_tags:
        open_tags = sorted(ch.open_tags)
        multiple = rng.random() < 0.4
        tag = rng.choice(open_tags)
        ack = rng.random() < 0.8
        covered = [t for t in open_tags if t <= tag] if multiple else [tag]
        if not ack:
            nacked |= {t - 1 for t in covered}  # tags count from 1, indices from 0
        confirm(pub, ch, tag, multiple=multiple, ack=ack)
    r = batch.report
    assert batch.done and r.published == n == len(ch.sent)
    assert r.acked + len(r.nacked) == n
    assert sorted(r.nacked) == sorted(nacked)
    assert r.max_in_flight == ch.worst <= window
    assert [s[2] for s in ch.sent] == [f"m{i}" for i in range(n)]  # in order, each once


def test_one_multiple_ack_settles_the_whole_window_and_refills_it():
    pub, ch, batch = publisher(5, msgs(12))
    pub._pump(batch)
    assert len(ch.sent) == 5
    confirm(pub, ch, 5, multiple=True, ack=True)
    assert batch.report.acked == 5 and len(ch.sent) == 10
    confirm(pub, ch, 7, multiple=True, ack=False)  # tags 6 and 7 are nacked together
    assert batch.report.nacked == [5, 6] and len(ch.sent) == 12
    confirm(pub, ch, 12, multiple=True, ack=True)
    assert batch.done and batch.report.acked == 10


def test_a_confirm_for_an_unknown_or_settled_tag_changes_nothing():
    pub, ch, batch = publisher(4, msgs(4))
    pub._pump(batch)
    confirm(pub, ch, 2, multiple=False, ack=True)
    confirm(pub, ch, 2, multiple=False, ack=False)  # a duplicate: already settled
    confirm(pub, ch, 99, multiple=False, ack=True)  # never sent
    assert batch.report.acked == 1 and batch.report.nacked == []
    assert sorted(batch.pending) == [1, 3, 4]


def test_a_returned_message_is_reported_once_and_its_ack_is_not_counted():
    pub, ch, batch = publisher(4, msgs(4), mandatory=True)
    pub._pump(batch)
    batch.on_return("m2", "submit")
    confirm(pub, ch, 4, multiple=True, ack=True)
    assert batch.report.returned == [2] and batch.report.acked == 3
    assert batch.by_id == {}  # nothing left behind for the next returns to match


def test_a_late_confirm_from_a_dropped_channel_is_ignored():
    pub, ch, batch = publisher(4, msgs(4))
    pub._pump(batch)
    method = pika.spec.Basic.Ack(delivery_tag=4, multiple=True)
    pub._on_confirm(pika.frame.Method(2, method))  # another channel number
    assert batch.report.acked == 0
