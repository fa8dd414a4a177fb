"""F9 / F10: what a ``kill -9`` of Redis costs under each persistence mode, and the reseed.

Each test starts its own ``redis-server`` (``real_adapters.redis_server``) on a free loopback
port in a temp directory, never the shared one on 6379.  The shared flow grants vouchers
(``grant_voucher``: atomic check-and-decrement in Redis, then a ledger row in a real SQLite
database), Redis is killed with SIGKILL right after the last reply, restarted from the same
directory, and the stock it comes back with is compared with what it had acknowledged.

Expected (reference P17, P18, F10; a *process* crash, the OS keeps its page cache):

=========  ==================================================  ================
mode       configuration                                       decrements lost
=========  ==================================================  ================
always     appendonly yes, appendfsync always                  0
everysec   appendonly yes, appendfsync everysec                <= 1
no         appendonly yes, appendfsync no                      <= 1
rdb        appendonly no, save "3600 1", one SAVE at the start all since the SAVE
none       appendonly no, save ""                              the key is gone
=========  ==================================================  ================

In every mode the reseed from the ledger (``stock = initial - ledger rows``) restores the
stock exactly; a naive re-init to the initial stock oversells, and the checker says so.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from real_adapters.bootstrap import WallClock, wall_history
from real_adapters.gateway import VoucherGateway
from real_adapters.redis_server import RedisServer
from real_adapters.redis_store import RedisPort
from real_adapters.sql import SqlDatabase
from simulator.checker import check
from simulator.errors import ServiceDown
from simulator.flow import STOCK_KEY, Policy, grant_voucher
from simulator.history import History
from simulator.messages import Message, submission_body
from simulator.ports import Ports, drive
from simulator.rng import stream

pytestmark = pytest.mark.real

INITIAL = 500
GRANTS = 150
POLICY = Policy(stock_strategy="redis-lua", dedupe="db")
# the most decrements a mode may lose to a process crash; None: the key itself is gone
ALLOWED_LOSS = {"always": 0, "everysec": 1, "no": 1, "rdb": GRANTS, "none": None}


@pytest.fixture
def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        message = "redis-server is not on PATH (apt-get install redis-server)"
        if os.environ.get("MQLAB_REQUIRE_SERVICES", "").strip() == "1":
            pytest.fail(message + " [MQLAB_REQUIRE_SERVICES=1]", pytrace=False)
        pytest.skip(message)
    return found


@dataclass
class Shop:
    server: RedisServer
    ports: Ports
    history: History

    def reconnect(self) -> None:
        # a fresh client after a restart: the old connection died with the old process
        self.ports.redis.close()
        self.ports.redis = RedisPort(self.server.client())

    def grant(self, i: int) -> str:
        msg = Message(f"sub-{i}", f"corr-{i}", "survey.submitted",
                      submission_body(f"s{i}", f"user-{i}", seq=i))
        return drive(grant_voucher(self.ports, POLICY, msg, "consumer-1"))

    def stock(self) -> int | None:
        done = self.ports.redis.get(STOCK_KEY)
        assert done.error is None, done.error
        return done.value

    def open_sale(self, stock: int) -> None:
        self.history.record("ok", "stock-init", "world", {"stock": stock, "offered": stock})
        assert self.ports.redis.set(STOCK_KEY, stock).value is True

    def reseed(self, initial: int) -> int:
        """The fix: the ledger is the truth; Redis is a cache of ``initial - granted``."""
        level = initial - self.ports.db.ledger_count()
        assert self.ports.redis.set(STOCK_KEY, level).value is True
        self.history.record("ok", "reseed", "world", {"stock": level})
        return level


@contextmanager
def make_shop(tmp_path: Path, mode: str, binary: str) -> Iterator[Shop]:
    server = RedisServer(tmp_path / f"redis-{mode}", mode=mode, binary=binary).start()
    history = wall_history(keep=None)
    db = SqlDatabase(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    ports = Ports(broker=None, redis=RedisPort(server.client()), db=db,
                  gateway=VoucherGateway(stream(0, "gateway.persistence")), clock=WallClock(),
                  history=history)
    try:
        yield Shop(server, ports, history)
    finally:
        ports.redis.close()
        db.close()
        server.stop()


@pytest.mark.parametrize("mode", list(ALLOWED_LOSS))
def test_kill_9_loses_what_the_mode_allows_and_the_ledger_reseeds(
        tmp_path: Path, redis_binary: str, mode: str, capsys: pytest.CaptureFixture):
    with make_shop(tmp_path, mode, redis_binary) as shop:
        shop.open_sale(INITIAL)
        if mode == "rdb":
            shop.ports.redis.client.save()  # the last snapshot before the crash: the sale opened
        outcomes = [shop.grant(i) for i in range(GRANTS)]
        assert outcomes == ["granted"] * GRANTS
        acknowledged = INITIAL - GRANTS  # what Redis told the consumers, one reply at a time
        killed_pid = shop.server.pid

        shop.server.kill()  # SIGKILL right after the last reply: no shutdown, no final fsync
        down = shop.ports.redis.get(STOCK_KEY)
        assert isinstance(down.error, ServiceDown)  # the port reports it, it does not hang

        shop.server.start()
        assert shop.server.pid != killed_pid
        shop.reconnect()
        after = shop.stock()
        ledger = shop.ports.db.ledger_count()
        assert ledger == GRANTS  # SQLite (synchronous=FULL) kept every committed row

        allowed = ALLOWED_LOSS[mode]
        if allowed is None:
            assert after is None  # F9: no persistence, the stock key is simply gone
            # ... and the atomic script now answers "sold out" to everyone (the key is missing)
            assert shop.ports.redis.check_and_decr(STOCK_KEY).value == -1
            lost = GRANTS
        else:
            assert after is not None
            lost = after - acknowledged
            assert 0 <= lost <= allowed, f"{mode}: {lost} decrements lost, at most {allowed} allowed"
            if mode == "rdb":
                assert lost == GRANTS  # everything since the SAVE: the stock is back to INITIAL

        reseeded = shop.reseed(INITIAL)
        assert reseeded == shop.stock() == acknowledged == INITIAL - ledger
        # the check-and-decr script is gone with the process (NOSCRIPT); the port reloads it
        assert shop.grant(GRANTS) == "granted"
        assert shop.stock() == acknowledged - 1

        with capsys.disabled():
            shown = "key gone" if after is None else f"{after} (lost {lost})"
            print(f"\n[redis persistence {mode}] initial={INITIAL} grants={GRANTS} "
                  f"acknowledged={acknowledged} after kill -9={shown} ledger={ledger} "
                  f"reseeded={reseeded}")


@pytest.mark.parametrize("recovery", ["naive re-init", "reseed from ledger"])
def test_after_losing_the_key_only_the_reseed_keeps_the_sale_from_overselling(
        tmp_path: Path, redis_binary: str, recovery: str, capsys: pytest.CaptureFixture):
    """F9 with the checker: the same crash, two recoveries, then sell until sold out."""
    with make_shop(tmp_path, "none", redis_binary) as shop:
        stock, first = 30, 20
        shop.open_sale(stock)
        assert [shop.grant(i) for i in range(first)] == ["granted"] * first
        shop.server.restart()  # kill -9 and start: nothing was persisted
        shop.reconnect()
        assert shop.stock() is None
        if recovery == "naive re-init":
            assert shop.ports.redis.set(STOCK_KEY, stock).value is True  # "the sale had 30"
        else:
            shop.reseed(stock)
        more = 0
        for i in range(first, first + 2 * stock):  # bounded: more than could ever be granted
            if shop.grant(i) != "granted":
                break
            more += 1
        result = check(shop.history.ops)
        with capsys.disabled():
            print(f"\n[redis F9 {recovery}] stock={stock} granted before={first} after={more} "
                  f"oversold={result.counts['oversold']}")
        if recovery == "naive re-init":
            assert more == stock and result.counts["oversold"] == first and not result.valid
        else:
            assert more == stock - first and result.counts["oversold"] == 0
            assert shop.ports.db.ledger_count() == stock
