"""The SimPy database model: row lock, unique keys, buffered writes, pool, crash, replica."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import simpy

from simulator.errors import InputError, ServiceDown
from simulator.history import History
from simulator.sim.database import Database

Q, C = 0.002, 0.003  # query and commit time


def make(**kw: Any) -> tuple[simpy.Environment, Database, History]:
    env = simpy.Environment()
    history = History(lambda: env.now, keep=None)
    kw = {"query_time": Q, "commit_time": C, **kw}
    db = Database(env, np.random.default_rng(kw.pop("seed", 1)), history=history, **kw)
    return env, db, history


def exact(**kw: Any) -> tuple[simpy.Environment, Database, History]:
    return make(jitter=False, **kw)


def run(env: simpy.Environment, gen) -> simpy.Process:
    return env.process(gen)


def buyer(db: Database, mid: str, results: list):
    """The safe flow: UPDATE ... WHERE n > 0 under the row lock, ledger row, commit."""
    tx = yield db.begin()
    left = yield tx.decrement_stock()
    if left is None:
        yield tx.rollback()
        results.append(None)
        return
    yield tx.insert_ledger(mid, f"user-{mid}")
    yield tx.commit()
    results.append(left)


def racy_buyer(db: Database, mid: str):
    """The race: read the stock, decide in the application, write it back."""
    tx = yield db.begin()
    current = yield tx.read_stock()
    if current <= 0:
        yield tx.rollback()
        return
    yield tx.write_stock(current - 1)
    yield tx.insert_ledger(mid, f"user-{mid}")
    yield tx.commit()


# -- the stock row lock -----------------------------------------------------------------------

def test_row_lock_serialises_decrements_and_stock_never_goes_negative():
    env, db, _ = make(stock=20, pool_size=50)
    results: list = []
    for i in range(50):
        run(env, buyer(db, f"m{i}", results))
    env.run()
    granted = [r for r in results if r is not None]
    assert sorted(granted) == list(range(20))  # each new value exactly once: no lost update
    assert results.count(None) == 30
    assert db.stock_value() == 0 and db.ledger_count() == 20
    assert db.stats["lock_waits"] > 0


def test_lock_wait_grows_with_concurrency():
    def total_wait(buyers: int) -> float:
        env, db, _ = make(stock=1000, pool_size=buyers)
        results: list = []
        for i in range(buyers):
            run(env, buyer(db, f"m{i}", results))
        env.run()
        assert db.stock_value() == 1000 - buyers
        return db.stats["lock_wait_time"]

    waits = [total_wait(n) for n in (1, 5, 20, 50)]
    assert waits[0] == 0
    assert waits[1] < waits[2] < waits[3]


def test_a_sold_out_update_takes_no_lock():
    env, db, _ = exact(stock=0)
    first = env.run(until=db.begin())
    assert env.run(until=first.decrement_stock()) is None
    second = env.run(until=db.begin())
    assert env.run(until=second.decrement_stock()) is None  # no wait behind the first
    assert db.stats["lock_waits"] == 0


def test_read_then_write_from_concurrent_transactions_oversells():
    env, db, _ = make(stock=10, pool_size=30)
    for i in range(30):
        run(env, racy_buyer(db, f"m{i}"))
    env.run()
    # everyone read 10 before anyone wrote: 30 vouchers for a stock of 10
    assert db.ledger_count() > 10
    assert db.stock_value() > 0  # and the stock still says some are left (lost updates)


def test_writes_are_invisible_until_commit_and_reads_take_no_lock():
    env, db, _ = exact(stock=5)
    writer = env.run(until=db.begin())
    reader = env.run(until=db.begin())
    assert env.run(until=writer.decrement_stock()) == 4
    env.run(until=writer.insert_ledger("m1", "u1"))
    assert env.run(until=reader.read_stock()) == 5  # the plain read does not wait
    assert env.run(until=writer.read_stock()) == 4  # a transaction sees its own writes
    assert db.ledger_count() == 0 and db.stock_value() == 5
    env.run(until=writer.commit())
    assert env.run(until=reader.read_stock()) == 4
    assert db.ledger_count() == 1 and db.stock_value() == 4


def test_rollback_discards_everything_and_releases_the_lock():
    env, db, _ = exact(stock=3)
    tx = env.run(until=db.begin())
    env.run(until=tx.decrement_stock())
    env.run(until=tx.insert_ledger("m1", "u1"))
    env.run(until=tx.insert_processed("m1"))
    env.run(until=tx.insert_outbox("m1", {"x": 1}))
    env.run(until=tx.rollback())
    assert (db.stock_value(), db.ledger_count(), db.processed_count()) == (3, 0, 0)
    assert db.outbox_unpublished(10) == []
    other = env.run(until=db.begin())
    start = env.now
    assert env.run(until=other.decrement_stock()) == 2
    assert env.now - start == pytest.approx(Q)  # no lock wait left behind
    assert tx.finished and tx.outcome == "rolled back"


# -- unique keys -----------------------------------------------------------------------------

def test_a_committed_duplicate_key_returns_false():
    env, db, _ = exact()
    tx = env.run(until=db.begin())
    assert env.run(until=tx.insert_processed("m1")) is True
    assert env.run(until=tx.insert_processed("m1")) is False  # twice in one transaction
    env.run(until=tx.commit())
    again = env.run(until=db.begin())
    assert env.run(until=again.insert_processed("m1")) is False
    assert env.run(until=again.insert_ledger("m1", "u")) is True  # another table, another key
    assert db.processed_count() == 1


@pytest.mark.parametrize("first_ends, second_gets", [("commit", False), ("rollback", True)])
@pytest.mark.parametrize("table", ["processed", "ledger"])
def test_insert_waits_for_an_open_transaction_with_the_same_key(first_ends, second_gets, table):
    env, db, _ = exact()

    def insert(tx):
        return tx.insert_processed("m1") if table == "processed" else tx.insert_ledger("m1", "u")

    first = env.run(until=db.begin())
    second = env.run(until=db.begin())
    assert env.run(until=insert(first)) is True
    pending = insert(second)
    env.run(until=1.0)
    assert not pending.triggered  # blocked on the first transaction's uncommitted key
    ended = getattr(first, first_ends)()
    env.run(until=ended)
    assert env.run(until=pending) is second_gets
    assert env.now == pytest.approx(1.0 + (C if first_ends == "commit" else Q))
    env.run(until=second.commit())
    count = db.processed_count() if table == "processed" else db.ledger_count()
    assert count == 1
    assert db.stats["unique_waits"] == 1


# -- the connection pool -------------------------------------------------------------------

def hold(db: Database, env: simpy.Environment, seconds: float):
    tx = yield db.begin()
    yield env.timeout(seconds)
    yield tx.commit()


def test_a_saturated_pool_makes_login_wait():
    env, db, _ = exact(pool_size=2)
    quick = db.login("alice")
    env.run(until=quick)
    assert env.now == pytest.approx(Q)  # an idle pool: one query
    for _ in range(2):
        run(env, hold(db, env, 1.0))
    env.run(until=0.1)
    slow = db.login("bob")
    env.run(until=slow)
    assert env.now == pytest.approx(Q + 1.0 + Q)  # waited for a held connection to come back
    assert db.stats["pool_waits"] == 1 and db.stats["max_waiting"] == 1
    assert db.stats["pool_wait_time"] == pytest.approx(1.0 + Q - 0.1)


def test_pool_waiters_are_served_first_come_first_served():
    env, db, _ = exact(pool_size=1)
    order: list[int] = []

    def client(i: int):
        tx = yield db.begin()
        order.append(i)
        yield tx.commit()

    for i in range(20):
        run(env, client(i))
    env.run()
    assert order == list(range(20))
    assert db.stats["max_waiting"] == 19


def test_a_client_abort_rolls_back_and_frees_its_connection():
    env, db, _ = exact(pool_size=1, stock=5)
    tx = env.run(until=db.begin())
    env.run(until=tx.decrement_stock())
    waiting = db.begin()
    tx.abort()
    nxt = env.run(until=waiting)
    assert env.run(until=nxt.decrement_stock()) == 4
    assert tx.outcome == "aborted"


# -- crash (P21) -------------------------------------------------------------------------------

def test_crash_rolls_back_open_transactions_and_keeps_committed_ones():
    env, db, history = exact(stock=10, pool_size=2)
    results: list = []
    run(env, buyer(db, "m1", results))
    env.run()
    assert results == [9]
    open_tx = env.run(until=db.begin())
    env.run(until=open_tx.decrement_stock())
    env.run(until=open_tx.insert_ledger("m2", "u2"))
    blocked_tx = env.run(until=db.begin())
    blocked = blocked_tx.decrement_stock()  # waits for the row lock
    queued = db.begin()                      # waits for a connection
    env.run(until=env.now + 0.1)
    db.crash()
    env.run()
    assert not blocked.ok and isinstance(blocked.value, ServiceDown)
    assert not queued.ok and isinstance(queued.value, ServiceDown)
    with pytest.raises(ServiceDown):
        env.run(until=open_tx.commit())
    assert (db.stock_value(), db.ledger_count()) == (9, 1)  # m1 committed, m2 gone
    crash = [op for op in history.ops if op.f == "crash"]
    assert crash[0].type == "info" and crash[0].process == "db"
    assert crash[0].value == {"rolled_back": 2}
    with pytest.raises(ServiceDown):
        env.run(until=db.begin())
    db.restart()
    assert history.ops[-1].f == "restart"
    for i in range(2):  # the whole pool is free again
        run(env, buyer(db, f"n{i}", results))
    env.run()
    assert results[-2:] == [8, 7] and db.stats["max_waiting"] == 1


def test_a_crash_during_commit_keeps_nothing_of_that_transaction():
    env, db, _ = exact(stock=5)
    tx = env.run(until=db.begin())
    env.run(until=tx.decrement_stock())
    committing = tx.commit()
    env.run(until=env.now + C / 2)
    db.crash()
    env.run()
    assert not committing.ok
    assert db.stock_value() == 5


# -- the read replica ------------------------------------------------------------------------

def test_the_replica_returns_the_value_committed_replica_lag_ago():
    env, db, _ = exact(stock=10, replica_lag=0.5)
    results: list = []
    run(env, buyer(db, "m1", results))
    env.run()
    committed_at = env.now
    assert db.stock_value() == 9
    assert env.run(until=db.replica_stock()) == 10  # read ends at committed_at + Q < lag
    env.run(until=committed_at + 0.5)
    assert env.run(until=db.replica_stock()) == 9


def test_the_replica_keeps_only_what_it_may_still_need():
    env, db, _ = exact(stock=10_000, replica_lag=0.5, pool_size=1)
    results: list = []

    def many():
        for i in range(2000):
            yield from buyer(db, f"m{i}", results)

    run(env, many())
    env.run()
    per_second = 1 / (Q + Q + C)
    assert len(db._replica) <= 0.5 * per_second + 2
    assert env.run(until=db.replica_stock()) > 10_000 - 2000  # still replaying the last 0.5 s
    env.run(until=env.now + 0.5)
    assert env.run(until=db.replica_stock()) == 10_000 - 2000


# -- outbox ----------------------------------------------------------------------------------

def test_outbox_rows_appear_at_commit_and_leave_when_marked_published():
    env, db, _ = exact()
    tx = env.run(until=db.begin())
    env.run(until=tx.insert_submission("m1", "u1"))
    env.run(until=tx.insert_outbox("m1", "payload-1"))
    assert db.outbox_unpublished(10) == []
    env.run(until=tx.commit())
    assert db.outbox_unpublished(10) == [("m1", "payload-1")]
    assert env.run(until=db.mark_published("m1")) is True
    assert env.run(until=db.mark_published("m1")) is False
    assert db.outbox_unpublished(10) == [] and db.published == 1


# -- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, field", [
    ({"pool_size": 0}, "db.pool_size"),
    ({"pool_size": 2.5}, "db.pool_size"),
    ({"query_time": -0.001}, "db.query_time"),
    ({"commit_time": float("inf")}, "db.commit_time"),
    ({"stock": -1}, "db.stock"),
    ({"replica_lag": -1}, "db.replica_lag"),
])
def test_bad_settings_are_refused_with_the_field_named(kw, field):
    with pytest.raises(InputError) as err:
        Database(simpy.Environment(), np.random.default_rng(0), **kw)
    assert err.value.field == field


def test_a_finished_transaction_refuses_more_statements():
    env, db, _ = exact()
    tx = env.run(until=db.begin())
    env.run(until=tx.commit())
    with pytest.raises(RuntimeError, match="already committed"):
        tx.read_stock()
