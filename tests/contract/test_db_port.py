"""The database port's contract, one body for SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from real_adapters.sql import SqlDatabase, Transaction
from simulator.errors import InputError, ServiceDown
from simulator.messages import Message, submission_body
from simulator.ports import Done


def value(done: Done):
    assert isinstance(done, Done), done
    assert done.error is None, done.error
    return done.value


def begin(db: SqlDatabase) -> Transaction:
    tx = value(db.begin())
    assert isinstance(tx, Transaction) and not tx.finished
    return tx


def test_processed_ids_are_unique_within_and_across_transactions(db: SqlDatabase):
    tx = begin(db)
    assert value(tx.insert_processed("m1")) is True
    assert value(tx.insert_processed("m1")) is False  # a duplicate is an answer, not an abort
    assert value(tx.insert_processed("m2")) is True
    value(tx.commit())
    assert tx.finished
    tx = begin(db)
    assert value(tx.insert_processed("m1")) is False
    value(tx.commit())
    assert db.processed_count() == 2


def test_ledger_and_submission_keys_are_unique(db: SqlDatabase):
    tx = begin(db)
    assert value(tx.insert_ledger("m1", "alice")) is True
    assert value(tx.insert_ledger("m1", "alice")) is False
    assert value(tx.insert_submission("m1", "alice")) is True
    assert value(tx.insert_submission("m1", "bob")) is False
    value(tx.commit())
    assert db.ledger_count() == 1 and db.submission_count() == 1


def test_rollback_discards_everything_in_the_transaction(db: SqlDatabase):
    db.set_stock(5)
    tx = begin(db)
    value(tx.insert_processed("m1"))
    value(tx.insert_ledger("m1", "alice"))
    assert value(tx.decrement_stock()) == 4
    value(tx.rollback())
    assert tx.finished
    assert (db.ledger_count(), db.processed_count(), db.stock_value()) == (0, 0, 5)
    tx = begin(db)  # and the same id can be committed afterwards
    assert value(tx.insert_processed("m1")) is True
    value(tx.commit())
    assert db.processed_count() == 1


def test_abort_is_a_rollback_without_an_answer(db: SqlDatabase):
    tx = begin(db)
    value(tx.insert_ledger("m1", "alice"))
    tx.abort()
    assert tx.finished and db.ledger_count() == 0
    with pytest.raises(RuntimeError):
        tx.insert_ledger("m2", "bob")  # a finished transaction is a programming error


def test_decrement_stock_stops_at_zero(db: SqlDatabase):
    db.set_stock(3)
    tx = begin(db)
    assert [value(tx.decrement_stock()) for _ in range(5)] == [2, 1, 0, None, None]
    value(tx.commit())
    assert db.stock_value() == 0


def test_read_and_write_stock(db: SqlDatabase):
    assert db.stock_value() is None
    tx = begin(db)
    assert value(tx.read_stock()) == 0  # no row yet reads as nothing left
    value(tx.write_stock(7))
    assert value(tx.read_stock()) == 7
    value(tx.commit())
    assert db.stock_value() == 7


def test_concurrent_decrements_never_oversell(make_db):
    """Four connections race for 50 vouchers with UPDATE ... WHERE n > 0: exactly 50 win."""
    make_db().set_stock(50)
    wins: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(db: SqlDatabase) -> None:
        for _ in range(30):
            tx = value(db.begin())
            left = value(tx.decrement_stock())
            value(tx.commit())
            if left is not None:
                with lock:
                    wins.append(left)

    def guarded(db: SqlDatabase) -> None:
        try:
            worker(db)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    dbs = [make_db() for _ in range(4)]
    for d in dbs:
        d.connection()  # open (and create the schema) before the race starts
    threads = [threading.Thread(target=guarded, args=(d,)) for d in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    assert sorted(wins) == list(range(50))
    assert dbs[0].stock_value() == 0


def test_outbox_round_trip(db: SqlDatabase):
    first = Message("m1", "c1", "survey.submitted", submission_body("s1", "u1", seq=1),
                    headers={"h": "v"}, persistent=True, priority=2, expiration=30.0,
                    timestamp=1700000000.25, exchange="gift")
    second = Message("m2", "c2", "survey.submitted", submission_body("s2", "u2"), persistent=False)
    tx = begin(db)
    value(tx.insert_submission("m1", "u1"))
    assert value(tx.insert_outbox("m1", first)) is True
    assert value(tx.insert_outbox("m2", second)) is True
    assert value(tx.insert_outbox("m1", second)) is False
    value(tx.commit())
    assert db.outbox_unpublished(10) == [("m1", first), ("m2", second)]
    assert db.outbox_unpublished(1) == [("m1", first)]
    assert value(db.mark_published("m1")) is True
    assert value(db.mark_published("m1")) is False  # already marked: harmless, and it says so
    assert db.outbox_unpublished(10) == [("m2", second)]


def test_outbox_rows_vanish_with_their_rolled_back_transaction(db: SqlDatabase):
    tx = begin(db)
    value(tx.insert_submission("m1", "u1"))
    value(tx.insert_outbox("m1", Message("m1", "c1", "rk", {})))
    value(tx.rollback())
    assert db.outbox_unpublished(10) == [] and db.submission_count() == 0


def test_one_transaction_at_a_time_per_connection(db: SqlDatabase):
    begin(db)
    with pytest.raises(RuntimeError):
        db.begin()
    with pytest.raises(RuntimeError):
        db.ledger_count()
    db.abort_open()
    value(db.begin()).commit()


def test_login_is_one_round_trip(db: SqlDatabase):
    assert value(db.login("alice")) is None


def test_reset_empties_the_tables(db: SqlDatabase):
    db.set_stock(3)
    tx = begin(db)
    value(tx.insert_ledger("m1", "u"))
    value(tx.commit())
    db.reset()
    assert (db.ledger_count(), db.stock_value()) == (0, None)


def test_table_prefix_is_validated():
    with pytest.raises(InputError):
        SqlDatabase("sqlite:///:memory:", table_prefix="x; DROP TABLE ledger")


def test_an_unreachable_postgresql_gives_service_down():
    db = SqlDatabase("postgresql://postgres@127.0.0.1:1/test", connect_timeout_s=1)
    done = db.begin()
    assert isinstance(done.error, ServiceDown) and done.error.component == "db"
    assert isinstance(db.mark_published("m1").error, ServiceDown)
    with pytest.raises(ServiceDown):
        db.ledger_count()


def test_an_unopenable_sqlite_file_gives_service_down(tmp_path):
    db = SqlDatabase(f"sqlite:///{tmp_path / 'no-such-dir' / 'x.sqlite'}")
    assert isinstance(db.begin().error, ServiceDown)


@pytest.mark.real
def test_a_killed_postgresql_session_is_service_down_then_reconnects(postgres_url, namespace):
    import psycopg

    db = SqlDatabase(postgres_url, table_prefix=f"{namespace}_")
    try:
        db.set_stock(2)
        tx = begin(db)
        assert value(tx.decrement_stock()) == 1
        pid = db._conn.info.backend_pid
        with psycopg.connect(postgres_url, autocommit=True, connect_timeout=2) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        done = tx.insert_ledger("m1", "u")  # the server rolled the transaction back
        assert isinstance(done.error, ServiceDown) and tx.finished
        assert db.stock_value() == 2  # a new connection, and the decrement never happened
        tx = begin(db)
        assert value(tx.decrement_stock()) == 1
        value(tx.commit())
    finally:
        db.abort_open()
        db.drop()
        db.close()
