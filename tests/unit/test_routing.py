"""Routing rules, checked against RabbitMQ's behaviour (see simulator/routing.py's docstring)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import InputError
from simulator.routing import (
    EXCHANGE_TYPES,
    Binding,
    consistent_hash_queue,
    headers_match,
    pattern_warning,
    route,
    topic_matches,
    validate_binding,
    validate_exchange,
    validate_routing_key,
)

ROOT = Path(__file__).resolve().parents[2]

# Words as RabbitMQ sees them: any text without a dot, including the empty word.
word = st.text(alphabet="abcxyz*#-_ ", max_size=4)
plain_word = st.text(alphabet="abcxyz-_", min_size=1, max_size=4)
routing_key = st.lists(word, max_size=6).map(".".join)


def test_exchange_types() -> None:
    assert EXCHANGE_TYPES == frozenset({"direct", "fanout", "topic", "headers", "x-consistent-hash"})


# --------------------------------------------------------------------------- direct / fanout

@pytest.mark.parametrize(("binding_key", "key", "expected"), [
    ("orders", "orders", True),
    ("orders", "Orders", False),       # case-sensitive
    ("orders", "orders ", False),
    ("", "", True),                    # empty key is legal and matches empty
    ("", "orders", False),
    ("orders.*", "orders.new", False),  # no wildcards in direct
    ("a.b", "a.b", True),
])
def test_direct(binding_key: str, key: str, expected: bool) -> None:
    got = route("direct", [Binding("q", binding_key)], key)
    assert got == (["q"] if expected else [])


def test_fanout_ignores_keys() -> None:
    bindings = [Binding("q1", "x"), Binding("q2", ""), Binding("q3", "anything.#")]
    assert route("fanout", bindings, "unrelated") == ["q1", "q2", "q3"]
    assert route("fanout", [], "k") == []


# --------------------------------------------------------------------------- topic

TOPIC_CASES = [
    # '#' alone matches everything, including the empty key (zero words)
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("#", ".", True),
    # '#' in the middle: zero or more words
    ("a.#.b", "a.b", True),
    ("a.#.b", "a.x.b", True),
    ("a.#.b", "a.x.y.b", True),
    ("a.#.b", "a.x.y", False),
    ("a.#.b", "b", False),
    # '#.#' is the same as '#'
    ("#.#", "", True),
    ("#.#", "a", True),
    ("#.#", "a.b.c", True),
    # '*' is exactly one word; the empty key has zero words
    ("*", "", False),
    ("*", "a", True),
    ("*", "a.b", False),
    ("*", ".", False),                 # two empty words
    ("*.*", "a", False),
    ("*.*", "a.b", True),
    ("*.*", ".", True),                # two empty words are still two words
    # "a." is ["a", ""]: the empty last word is a word
    ("a.*", "a.", True),
    ("a.*", "a", False),
    ("a.", "a.", True),
    ("a.", "a", False),
    # trailing '#': zero words allowed
    ("a.#", "a", True),
    ("a.#", "a.b", True),
    ("a.#", "a.b.c", True),
    ("a.#", "b", False),
    ("a.#", "ab", False),
    # leading '#'
    ("#.b", "b", True),
    ("#.b", "a.b", True),
    ("#.b", "x.y.b", True),
    ("#.b", "b.a", False),
    # several '#'
    ("#.a.#", "a", True),
    ("#.a.#", "x.a.y.z", True),
    ("#.a.#", "x.y", False),
    ("a.#.b.#.c", "a.b.c", True),
    ("a.#.b.#.c", "a.1.b.2.3.c", True),
    ("a.#.b.#.c", "a.c.b", False),
    ("#.*", "", False),                # one or more words
    ("#.*", "a", True),
    ("*.#", "a.b", True),
    # empty words in the middle and at the start
    ("a..b", "a..b", True),
    ("a..b", "a.b", False),
    ("a.*.b", "a..b", True),
    (".a", ".a", True),
    (".a", "a", False),
    # empty binding key matches only the empty routing key
    ("", "", True),
    ("", "a", False),
    ("", ".", False),
    # wildcards only as whole words: here '*' and '#' are literal characters
    ("ord*rs", "orders", False),
    ("ord*rs", "ord*rs", True),
    ("a#", "a", False),
    ("a#", "a#", True),
    ("a.b#", "a.b.c", False),
    # plain keys, case-sensitive
    ("stock.eu", "stock.eu", True),
    ("stock.eu", "stock.EU", False),
    ("stock.*.nyse", "stock.usd.nyse", True),
    ("stock.*.nyse", "stock.nyse", False),
]


@pytest.mark.parametrize(("binding_key", "key", "expected"), TOPIC_CASES)
def test_topic_matches(binding_key: str, key: str, expected: bool) -> None:
    assert topic_matches(binding_key, key) is expected
    assert route("topic", [Binding("q", binding_key)], key) == (["q"] if expected else [])


@given(routing_key)
def test_hash_alone_matches_every_key(key: str) -> None:
    assert topic_matches("#", key)
    assert topic_matches("#.#", key)


@given(st.lists(plain_word, max_size=5).map(".".join), st.lists(plain_word, max_size=5).map(".".join))
def test_topic_without_wildcards_is_direct(binding_key: str, key: str) -> None:
    assert topic_matches(binding_key, key) is (binding_key == key)
    assert route("topic", [Binding("q", binding_key)], key) == route("direct", [Binding("q", binding_key)], key)


@given(st.lists(plain_word, min_size=1, max_size=6))
def test_star_per_word_matches_exactly_that_many_words(words: list[str]) -> None:
    key = ".".join(words)
    assert topic_matches(".".join("*" for _ in words), key)
    assert not topic_matches(".".join("*" for _ in range(len(words) + 1)), key)
    assert topic_matches("#." + words[-1], key)
    assert topic_matches(words[0] + ".#", key)


def _reference_topic(pattern: list[str], words: list[str]) -> bool:
    """Plain recursive definition, used to cross-check the NFA walk."""
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_reference_topic(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and (head == "*" or head == words[0]) and _reference_topic(rest, words[1:])


@given(st.lists(st.sampled_from(["a", "b", "", "*", "#"]), max_size=6),
       st.lists(st.sampled_from(["a", "b", ""]), max_size=6))
def test_topic_agrees_with_recursive_definition(pattern: list[str], words: list[str]) -> None:
    binding_key, key = ".".join(pattern), ".".join(words)
    # Split exactly as RabbitMQ does: "" is zero words, otherwise split on every dot.
    expected = _reference_topic(binding_key.split(".") if binding_key else [],
                                key.split(".") if key else [])
    assert topic_matches(binding_key, key) is expected


@pytest.mark.parametrize(("binding_key", "needle"), [
    ("a..b", "empty word"),
    (".a", "empty word"),
    ("a.", "empty word"),
    ("ord*rs", "literal"),
    ("a#.b", "literal"),
    ("#.#", "'#.#'"),
    ("a.#.#.b", "'#.#'"),
    ("a. b", "spaces"),
    ("", "empty routing key"),
])
def test_pattern_warning_flags_likely_mistakes(binding_key: str, needle: str) -> None:
    note = pattern_warning(binding_key)
    assert note is not None and needle in note
    assert "\n" not in note


@pytest.mark.parametrize("binding_key", ["#", "*", "a.*", "a.#.b", "orders.created", "#.*", "*.#"])
def test_pattern_warning_quiet_for_good_keys(binding_key: str) -> None:
    assert pattern_warning(binding_key) is None


# --------------------------------------------------------------------------- headers

HEADER_CASES: list[tuple[dict[str, Any], dict[str, Any] | None, bool]] = [
    # x-match defaults to all
    ({"type": "gift"}, {"type": "gift"}, True),
    ({"type": "gift", "size": 1}, {"type": "gift"}, False),
    ({"type": "gift"}, {"type": "gift", "extra": 1}, True),
    ({"type": "gift"}, None, False),
    ({"type": "gift"}, {}, False),
    # all / any
    ({"x-match": "all", "a": 1, "b": 2}, {"a": 1, "b": 2}, True),
    ({"x-match": "all", "a": 1, "b": 2}, {"a": 1, "b": 3}, False),
    ({"x-match": "any", "a": 1, "b": 2}, {"a": 0, "b": 2}, True),
    ({"x-match": "any", "a": 1, "b": 2}, {"a": 0, "b": 0}, False),
    ({"x-match": "any", "a": 1}, None, False),
    # nothing left to compare: all -> every message, any -> none
    ({}, None, True),
    ({"x-match": "all"}, {"k": 1}, True),
    ({"x-match": "any"}, {"k": 1}, False),
    ({"x-match": "all", "x-tag": "v"}, None, True),
    ({"x-match": "any", "x-tag": "v"}, {"x-tag": "v"}, False),
    # x- arguments skipped by all/any ...
    ({"x-match": "all", "x-tag": "v", "a": 1}, {"a": 1}, True),
    ({"x-match": "any", "x-tag": "v"}, {"x-tag": "v", "a": 1}, False),
    # ... and compared by the -with-x forms (x-match itself never is)
    ({"x-match": "all-with-x", "x-tag": "v", "a": 1}, {"a": 1}, False),
    ({"x-match": "all-with-x", "x-tag": "v", "a": 1}, {"a": 1, "x-tag": "v"}, True),
    ({"x-match": "any-with-x", "x-tag": "v"}, {"x-tag": "v"}, True),
    ({"x-match": "any-with-x", "x-tag": "v"}, {"x-tag": "w"}, False),
    ({"x-match": "all-with-x"}, {}, True),
    ({"x-match": "any-with-x"}, {"x-match": "any-with-x"}, False),
    ({"X-Tag": "v"}, {"X-Tag": "v"}, True),            # only lowercase "x-" is special
    ({"X-Tag": "v"}, {}, False),
    # void (None) matches on presence only
    ({"a": None}, {"a": "anything"}, True),
    ({"a": None}, {"a": None}, True),
    ({"a": None}, {"b": 1}, False),
    ({"x-match": "any", "a": None, "b": 1}, {"a": 0}, True),
    ({"a": 1}, {"a": None}, False),
    # type-respecting equality
    ({"n": 1}, {"n": "1"}, False),
    ({"n": "1"}, {"n": 1}, False),
    ({"n": True}, {"n": 1}, False),
    ({"n": 1}, {"n": True}, False),
    ({"n": False}, {"n": 0}, False),
    ({"n": True}, {"n": True}, True),
    ({"n": 1}, {"n": 1.0}, True),                      # Erlang == on numbers
    ({"n": "gift"}, {"n": b"gift"}, True),             # both arrive as binaries
    ({"n": "Gift"}, {"n": "gift"}, False),
    ({"n": Decimal("1.0")}, {"n": Decimal("1.0")}, True),
    ({"n": Decimal("1.0")}, {"n": Decimal("1")}, False),
    ({"n": Decimal("1")}, {"n": 1}, False),
    ({"n": [1, "a"]}, {"n": [1, "a"]}, True),
    ({"n": [1]}, {"n": [1.0]}, False),                 # nested: field types compared too
    ({"n": [True]}, {"n": [1]}, False),
    ({"n": {"k": 1}}, {"n": {"k": 1}}, True),
    ({"n": {"k": 1}}, {"n": {"k": "1"}}, False),
    # unknown x-match behaves as "all" when routing
    ({"x-match": "most", "a": 1}, {"a": 1}, True),
    ({"x-match": "most", "a": 1, "b": 2}, {"a": 1}, False),
]


@pytest.mark.parametrize(("arguments", "headers", "expected"), HEADER_CASES)
def test_headers_match(arguments: dict[str, Any], headers: dict[str, Any] | None, expected: bool) -> None:
    assert headers_match(arguments, headers) is expected
    got = route("headers", [Binding("q", "ignored", arguments)], "any.key", headers)
    assert got == (["q"] if expected else [])


@given(st.dictionaries(st.sampled_from(["a", "b", "x-a", "x-b", "X-c"]),
                       st.one_of(st.integers(-3, 3), st.booleans(), st.text(max_size=2), st.none()),
                       max_size=4))
def test_headers_all_binding_matches_its_own_headers(table: dict[str, Any]) -> None:
    assert headers_match(table, table)
    assert headers_match({"x-match": "all-with-x", **table}, table)


# --------------------------------------------------------------------------- x-consistent-hash

def _ring(*weights: int) -> list[Binding]:
    return [Binding(f"q{i}", str(w)) for i, w in enumerate(weights)]


def test_consistent_hash_basics() -> None:
    assert consistent_hash_queue([], "k") is None
    assert route("x-consistent-hash", [], "k") == []
    assert {consistent_hash_queue(_ring(5), f"k{i}") for i in range(50)} == {"q0"}


_PICK_SCRIPT = (
    "from simulator.routing import Binding, consistent_hash_queue as c\n"
    "ring = [Binding(f'q{i}', '1') for i in range(4)]\n"
    "print(' '.join(c(ring, f'order-{i}') for i in range(40)))\n"
)


def test_consistent_hash_is_stable_across_processes() -> None:
    # Two interpreters with different hash seeds: a salted hash() would disagree.
    picks = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", _PICK_SCRIPT], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=True)
        picks.append(out.stdout.split())
    ring = _ring(1, 1, 1, 1)
    here = [consistent_hash_queue(ring, f"order-{i}") for i in range(40)]
    assert picks[0] == picks[1] == here
    assert len(set(here)) == 4
    # Pinned, so a change of hash function is a deliberate, visible decision.
    assert here[:4] == ["q3", "q3", "q1", "q0"]


@settings(max_examples=60)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=6), st.text(max_size=20))
def test_consistent_hash_sticky_and_single(weights: list[int], key: str) -> None:
    ring = _ring(*weights)
    first = route("x-consistent-hash", ring, key)
    assert len(first) == 1 and first[0] in {b.queue for b in ring}
    assert route("x-consistent-hash", ring, key) == first
    assert consistent_hash_queue(ring, key) == first[0]


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(1, 8), min_size=2, max_size=5))
def test_consistent_hash_shares_follow_weights(weights: list[int]) -> None:
    ring = _ring(*weights)
    n = 20_000
    counts = Counter(consistent_hash_queue(ring, f"key-{i}") for i in range(n))
    total = sum(weights)
    for b, w in zip(ring, weights):
        assert abs(counts[b.queue] / n - w / total) < 0.02, (counts, weights)


def test_consistent_hash_adding_a_queue_moves_keys_only_to_it() -> None:
    before, after = _ring(1, 1, 1), _ring(1, 1, 1, 1)
    moved = 0
    for i in range(5000):
        old, new = consistent_hash_queue(before, f"k{i}"), consistent_hash_queue(after, f"k{i}")
        if old != new:
            assert new == "q3"
            moved += 1
    assert 0.2 < moved / 5000 < 0.3


def test_consistent_hash_by_header() -> None:
    ring = _ring(1, 1, 1, 1, 1)
    args = {"hash-header": "user"}
    for i in range(200):
        got = route("x-consistent-hash", ring, f"rk{i}", {"user": f"u{i % 7}"}, exchange_arguments=args)
        # The routing key is ignored; a string header hashes like the same routing key.
        assert got == [consistent_hash_queue(ring, f"u{i % 7}")]


def test_consistent_hash_missing_header_or_property_goes_to_one_fixed_queue() -> None:
    ring = _ring(1, 1, 1, 1, 1, 1, 1, 1)
    header_args = {"hash-header": "user"}
    no_header = {tuple(route("x-consistent-hash", ring, f"rk{i}", h, exchange_arguments=header_args))
                 for i in range(300) for h in (None, {}, {"other": i})}
    assert len(no_header) == 1 and len(next(iter(no_header))) == 1
    prop_args = {"hash-property": "message_id"}
    no_prop = {tuple(route("x-consistent-hash", ring, f"rk{i}", properties=p, exchange_arguments=prop_args))
               for i in range(300) for p in (None, {}, {"correlation_id": str(i)}, {"message_id": None})}
    assert len(no_prop) == 1 and len(next(iter(no_prop))) == 1


@pytest.mark.parametrize("prop", ["message_id", "correlation_id"])
def test_consistent_hash_by_property(prop: str) -> None:
    ring = _ring(2, 3, 5)
    args = {"hash-property": prop}
    seen = set()
    for i in range(300):
        got = route("x-consistent-hash", ring, "same-rk", properties={prop: f"id-{i}"}, exchange_arguments=args)
        assert got == [consistent_hash_queue(ring, f"id-{i}")]
        seen.add(got[0])
    assert seen == {"q0", "q1", "q2"}


def test_consistent_hash_timestamp_hashes_its_decimal_text() -> None:
    ring = _ring(1, 1, 1)
    args = {"hash-property": "timestamp"}
    for ts in (0, 1, 1_700_000_000, 1_700_000_001):
        got = route("x-consistent-hash", ring, "rk", properties={"timestamp": ts}, exchange_arguments=args)
        assert got == [consistent_hash_queue(ring, str(ts))]


def test_consistent_hash_header_type_matters() -> None:
    # RabbitMQ hashes the header's {type, value}: 5 and "5" are different inputs.
    ring = _ring(*([1] * 64))
    args = {"hash-header": "h"}
    differ = sum(route("x-consistent-hash", ring, "", {"h": i}, exchange_arguments=args)
                 != route("x-consistent-hash", ring, "", {"h": str(i)}, exchange_arguments=args)
                 for i in range(50))
    assert differ > 40


# --------------------------------------------------------------------------- route()

def test_route_deduplicates_in_first_match_order() -> None:
    bindings = [Binding("b", "a.*"), Binding("a", "#"), Binding("b", "a.x"), Binding("c", "z"), Binding("a", "a.x")]
    assert route("topic", bindings, "a.x") == ["b", "a"]
    direct = [Binding("q2", "k"), Binding("q1", "k"), Binding("q2", "k")]
    assert route("direct", direct, "k") == ["q2", "q1"]
    assert route("fanout", [Binding("q", "1"), Binding("q", "2")], "") == ["q"]
    headers = [Binding("h", "", {"a": 1}), Binding("h", "", {"x-match": "any", "a": 1})]
    assert route("headers", headers, "", {"a": 1}) == ["h"]


def test_route_unroutable_is_empty() -> None:
    assert route("topic", [Binding("q", "a.b")], "a.c") == []
    assert route("direct", [Binding("q", "a")], "b") == []
    assert route("headers", [Binding("q", "", {"a": 1})], "", None) == []


def test_route_unknown_type_is_input_error() -> None:
    with pytest.raises(InputError) as err:
        route("match", [Binding("q")], "k")
    assert err.value.field == "exchange_type"


def test_route_rejects_both_hash_arguments() -> None:
    with pytest.raises(InputError):
        route("x-consistent-hash", _ring(1), "k",
              exchange_arguments={"hash-header": "h", "hash-property": "message_id"})


# --------------------------------------------------------------------------- validation

def _assert_one_line_error(err: InputError, field: str, value: object) -> None:
    text = str(err)
    assert err.field == field
    assert field in text and repr(value) in text
    assert "\n" not in text and "\r" not in text


@pytest.mark.parametrize(("name", "exchange_type", "arguments", "field", "value"), [
    ("orders", "match", None, "exchange_type", "match"),
    ("orders", "Topic", None, "exchange_type", "Topic"),
    ("amq.orders", "topic", None, "exchange_name", "amq.orders"),
    ("amq.", "direct", None, "exchange_name", "amq."),
    ("", "direct", None, "exchange_name", ""),
    ("x" * 256, "direct", None, "exchange_name", "x" * 256),
    ("é" * 128, "direct", None, "exchange_name", "é" * 128),    # 256 bytes in UTF-8
    ("ring", "x-consistent-hash", {"hash-property": "user_id"}, "hash-property", "user_id"),
    ("ring", "x-consistent-hash", {"hash-header": 5}, "hash-header", 5),
    ("ring", "x-consistent-hash", {"hash-header": "u", "hash-property": "message_id"},
     "exchange arguments", {"hash-header": "u", "hash-property": "message_id"}),
])
def test_validate_exchange_rejects(name: str, exchange_type: str, arguments: dict[str, Any] | None,
                                   field: str, value: object) -> None:
    with pytest.raises(InputError) as err:
        validate_exchange(name, exchange_type, arguments)
    _assert_one_line_error(err.value, field, value)


@pytest.mark.parametrize(("name", "exchange_type", "arguments"), [
    ("orders", "topic", None),
    ("AMQ.orders", "direct", None),           # the reserved prefix is lowercase "amq."
    ("my.amq.orders", "fanout", None),
    ("x" * 255, "headers", None),
    ("é" * 127, "direct", None),
    ("ring", "x-consistent-hash", None),
    ("ring", "x-consistent-hash", {"hash-header": "user"}),
    ("ring", "x-consistent-hash", {"hash-property": "timestamp"}),
    ("ring", "x-consistent-hash", {"hash-property": "correlation_id"}),
    ("orders", "topic", {"hash-property": "nonsense"}),   # only x-consistent-hash reads it
])
def test_validate_exchange_accepts(name: str, exchange_type: str, arguments: dict[str, Any] | None) -> None:
    validate_exchange(name, exchange_type, arguments)


@pytest.mark.parametrize(("exchange_type", "binding_key", "arguments", "field", "value"), [
    ("x-consistent-hash", "0", None, "binding_key", "0"),
    ("x-consistent-hash", "-1", None, "binding_key", "-1"),
    ("x-consistent-hash", "1.5", None, "binding_key", "1.5"),
    ("x-consistent-hash", "abc", None, "binding_key", "abc"),
    ("x-consistent-hash", "", None, "binding_key", ""),
    ("x-consistent-hash", " 1", None, "binding_key", " 1"),
    ("x-consistent-hash", "1_0", None, "binding_key", "1_0"),
    ("x-consistent-hash", "١", None, "binding_key", "١"),       # non-ASCII digit
    ("topic", "k" * 256, None, "binding_key", "k" * 256),
    ("direct", "€" * 86, None, "binding_key", "€" * 86),        # 258 bytes
    ("headers", "", {"x-match": "most"}, "x-match", "most"),
    ("headers", "", {"x-match": "ALL"}, "x-match", "ALL"),
    ("headers", "", {"x-match": 1}, "x-match", 1),
    ("headers", "", {"x-match": b"all"}, "x-match", b"all"),
    ("nope", "k", None, "exchange_type", "nope"),
])
def test_validate_binding_rejects(exchange_type: str, binding_key: str, arguments: dict[str, Any] | None,
                                  field: str, value: object) -> None:
    with pytest.raises(InputError) as err:
        validate_binding(exchange_type, binding_key, arguments)
    _assert_one_line_error(err.value, field, value)


@pytest.mark.parametrize(("exchange_type", "binding_key", "arguments"), [
    ("x-consistent-hash", "1", None),
    ("x-consistent-hash", "10", None),
    ("x-consistent-hash", "+3", None),        # Erlang's list_to_integer accepts a sign
    ("direct", "", None),
    ("topic", "a..b", None),                  # legal, only worth a warning
    ("topic", "k" * 255, None),
    ("headers", "", None),
    ("headers", "", {"type": "gift"}),
    *[("headers", "", {"x-match": m}) for m in ("all", "any", "all-with-x", "any-with-x")],
])
def test_validate_binding_accepts(exchange_type: str, binding_key: str, arguments: dict[str, Any] | None) -> None:
    validate_binding(exchange_type, binding_key, arguments)


def test_validate_routing_key() -> None:
    validate_routing_key("")
    validate_routing_key("a" * 255)
    for bad in ("a" * 256, "ü" * 128):
        with pytest.raises(InputError) as err:
            validate_routing_key(bad)
        _assert_one_line_error(err.value, "routing_key", bad)


def test_bad_weight_in_route_is_input_error() -> None:
    with pytest.raises(InputError) as err:
        route("x-consistent-hash", [Binding("q", "heavy")], "k")
    _assert_one_line_error(err.value, "binding_key", "heavy")
