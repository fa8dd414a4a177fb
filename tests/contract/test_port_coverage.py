"""Every port method the shared flow calls exists on the real adapters.

The flow is read as text, so a method added to it later (as ``db.login`` was) fails here, by
name, before a real-service run trips over it.
"""

from __future__ import annotations

import inspect
import re

import pytest

import simulator.flow
from real_adapters.bootstrap import WallClock
from real_adapters.broker import BrokerPort
from real_adapters.gateway import VoucherGateway
from real_adapters.redis_store import RedisPort
from real_adapters.sql import SqlDatabase, Transaction

ADAPTERS = {"broker": BrokerPort, "redis": RedisPort, "db": SqlDatabase, "gateway": VoucherGateway,
            "clock": WallClock}
SOURCE = inspect.getsource(simulator.flow)
CALLED = sorted(set(re.findall(r"ports\.(broker|redis|db|gateway|clock)\.([a-z_]+)\(", SOURCE)))
TX_CALLED = sorted(set(re.findall(r"\btx\.([a-z_]+)\(", SOURCE)))


def test_the_flow_was_read():
    assert ("redis", "reserve") in CALLED and ("redis", "release") in CALLED and "commit" in TX_CALLED


@pytest.mark.parametrize("port, method", CALLED, ids=[f"{p}.{m}" for p, m in CALLED])
def test_port_method_exists(port: str, method: str):
    assert callable(getattr(ADAPTERS[port], method, None)), f"{ADAPTERS[port].__name__} lacks {method}"


@pytest.mark.parametrize("method", TX_CALLED)
def test_transaction_method_exists(method: str):
    assert callable(getattr(Transaction, method, None)), f"Transaction lacks {method}"


# Batch methods of the real adapters only (benchmarks and throughput-minded callers use them;
# the flow does not): each must exist and be in the ports' documentation.
BATCH_METHODS = [("broker", "publish_many"), ("redis", "decr_many")]


@pytest.mark.parametrize("port, method", BATCH_METHODS, ids=[f"{p}.{m}" for p, m in BATCH_METHODS])
def test_batch_method_exists_and_is_documented(port: str, method: str):
    import simulator.ports

    assert callable(getattr(ADAPTERS[port], method, None)), f"{ADAPTERS[port].__name__} lacks {method}"
    assert f"{port}.{method}(" in (simulator.ports.__doc__ or "")
