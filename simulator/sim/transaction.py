"""One open transaction on one pooled connection of the SimPy database model.

Writes are buffered here and reach the shared tables only at commit, all at once (READ
COMMITTED as PostgreSQL runs it).  Two things can make a statement wait beyond its query time,
both as in PostgreSQL:

* the stock row lock: ``decrement_stock`` and ``write_stock`` queue FIFO behind the holder and
  then re-read the row's newly committed value (an ``UPDATE ... WHERE n > 0`` that no longer
  matches takes no lock and changes nothing);
* a unique key another *open* transaction has inserted: the insert waits for that transaction
  to end, then is a duplicate (it committed) or goes ahead (it rolled back).

Every statement is a SimPy event resolved by callbacks on a timeout (no process per
statement).  A transaction runs one statement at a time, as a connection does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import simpy

from simulator.errors import InputError, ServiceDown

if TYPE_CHECKING:
    from simulator.sim.database import Database

__all__ = ["Transaction"]

Step = Callable[[simpy.Event], None]


def fail_event(event: simpy.Event, error: BaseException) -> simpy.Event:
    # defused: a client that was killed while waiting never looks, and SimPy must not crash
    event.defused = True
    event.fail(error)
    return event


class Transaction:
    def __init__(self, db: "Database", number: int):
        self.db = db
        self.id = number
        self.finished = False
        self.outcome: str | None = None  # committed / rolled back / aborted
        self._busy: simpy.Event | None = None  # the statement in progress
        self._on_end: list[Callable[[], None]] = []  # inserts waiting on our unique keys
        # buffered writes (package-internal: ``Database`` applies them at commit)
        self.claims: list[tuple[str, str]] = []
        self.processed: list[str] = []
        self.ledger: dict[str, str] = {}
        self.submissions: dict[str, str] = {}
        self.outbox: dict[str, Any] = {}
        self.published: list[str] = []
        self.stock: int | None = None  # our new stock value; set only while we hold the row lock

    def __repr__(self) -> str:
        return f"Transaction({self.id}, {self.outcome or 'open'})"

    # ------------------------------------------------------------------ statements

    def insert_processed(self, msg_id: str) -> simpy.Event:
        """-> True, or False when the id is already processed (a unique key)."""
        return self._insert_unique("processed", msg_id, lambda: self.processed.append(msg_id))

    def insert_ledger(self, msg_id: str, user: str) -> simpy.Event:
        """-> True, or False when a voucher for this message is already in the ledger."""
        return self._insert_unique("ledger", msg_id, lambda: self.ledger.__setitem__(msg_id, user))

    def insert_submission(self, msg_id: str, user: str) -> simpy.Event:
        return self._simple(lambda: self.submissions.__setitem__(msg_id, user))

    def insert_outbox(self, msg_id: str, payload: Any) -> simpy.Event:
        return self._simple(lambda: self.outbox.__setitem__(msg_id, payload))

    def decrement_stock(self) -> simpy.Event:
        """``UPDATE stock SET n = n - 1 WHERE n > 0``: -> the new value, or None when sold out."""
        return self._after(self.db.query_time, self._statement(), self._try_decrement)

    def read_stock(self) -> simpy.Event:
        """A plain SELECT: no lock, so another transaction may change the row right after."""
        return self._simple(self._stock_now)

    def write_stock(self, n: int) -> simpy.Event:
        if isinstance(n, bool) or not isinstance(n, int):
            raise InputError(f"{self.db.name}.stock", n, "a whole number")
        return self._after(self.db.query_time, self._statement(), lambda r: self._try_write(r, n))

    def login(self, user: str) -> simpy.Event:
        """An unrelated query (a user logging in): it needs only the connection."""
        return self._simple(lambda: None)

    def commit(self) -> simpy.Event:
        # a read-only transaction has no WAL to flush, so its commit is free
        mean = self.db.commit_time if self._has_writes() else 0.0
        return self._after(mean, self._statement(), self._commit_now)

    def rollback(self) -> simpy.Event:
        return self._after(self.db.query_time, self._statement(), self._rollback_now)

    def abort(self) -> None:
        """The client died: the server notices the dropped connection and rolls back at once."""
        if self.finished:
            return
        if self._busy is not None and not self._busy.triggered:
            fail_event(self._busy, ServiceDown(self.db.name, "client connection dropped"))
        self._finish("aborted")

    # ------------------------------------------------------------------ statement machinery

    def _statement(self) -> simpy.Event:
        result = self.db.env.event()
        if self.finished:
            if self.outcome == "aborted":
                return fail_event(result, ServiceDown(self.db.name, "the connection was lost"))
            raise RuntimeError(f"transaction {self.id} is already {self.outcome}")
        if self._busy is not None and not self._busy.triggered:
            raise RuntimeError(f"transaction {self.id}: one statement at a time on a connection")
        self._busy = result
        self.db.stats["queries"] += 1
        return result

    def _after(self, mean: float, result: simpy.Event, step: Step) -> simpy.Event:
        if result.triggered:
            return result  # failed up front (the connection is gone)
        delay = self.db.sample(mean)
        self.db.env.timeout(delay).callbacks.append(lambda _e: self._run(result, step))
        return result

    def _run(self, result: simpy.Event, step: Step) -> None:
        if result.triggered or self.finished:
            return  # aborted or crashed meanwhile: the failure was already delivered
        try:
            step(result)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting flow
            result.fail(exc)

    def _simple(self, work: Callable[[], Any]) -> simpy.Event:
        return self._after(self.db.query_time, self._statement(), lambda r: r.succeed(work()))

    # ------------------------------------------------------------------ the steps

    def _stock_now(self) -> int:
        return self.stock if self.stock is not None else self.db.stock_value()

    def _try_decrement(self, result: simpy.Event) -> None:
        db = self.db
        if db.row_holder not in (None, self):
            # wait for the holder, then re-check against what it committed
            db.wait_row(self, lambda: self._run(result, self._try_decrement))
            return
        n = self._stock_now()
        if n <= 0:
            result.succeed(None)  # no row matched: nothing locked, nothing written
            return
        db.take_row(self)
        self.stock = n - 1
        result.succeed(n - 1)

    def _try_write(self, result: simpy.Event, n: int) -> None:
        db = self.db
        if db.row_holder not in (None, self):
            db.wait_row(self, lambda: self._run(result, lambda r: self._try_write(r, n)))
            return
        db.take_row(self)
        self.stock = n
        result.succeed(None)

    def _insert_unique(self, table: str, key: str, buffer: Callable[[], None]) -> simpy.Event:
        return self._after(self.db.query_time, self._statement(),
                           lambda r: self._claim(r, table, key, buffer))

    def _claim(self, result: simpy.Event, table: str, key: str, buffer: Callable[[], None]) -> None:
        db = self.db
        if db.committed_has(table, key):
            result.succeed(False)
            return
        owner = db.claims.get((table, key))
        if owner is self:
            result.succeed(False)  # the same key twice in one transaction
            return
        if owner is not None:
            db.stats["unique_waits"] += 1
            owner._on_end.append(lambda: self._run(result, lambda r: self._claim(r, table, key, buffer)))
            return
        db.claims[(table, key)] = self
        self.claims.append((table, key))
        buffer()
        result.succeed(True)

    def _mark_published(self, msg_id: str) -> simpy.Event:
        return self._simple(lambda: self.published.append(msg_id) or self.db.is_unpublished(msg_id))

    def _has_writes(self) -> bool:
        return bool(self.processed or self.ledger or self.submissions or self.outbox
                    or self.published or self.stock is not None)

    def _commit_now(self, result: simpy.Event) -> None:
        self.db.apply(self)
        self._finish("committed")
        result.succeed(None)

    def _rollback_now(self, result: simpy.Event) -> None:
        self._finish("rolled back")
        result.succeed(None)

    def _finish(self, outcome: str) -> None:
        self.finished = True
        self.outcome = outcome
        self.db.stats["commits" if outcome == "committed" else "rollbacks"] += 1
        self.db.release(self)
        waiting, self._on_end = self._on_end, []
        for wake in waiting:
            wake()

    def _kill(self, error: BaseException) -> None:
        """The server crashed: fail what we were doing; the database resets the shared state."""
        self.finished = True
        self.outcome = "aborted"
        self._on_end = []  # whoever waited on our keys dies with the server too
        if self._busy is not None and not self._busy.triggered:
            fail_event(self._busy, error)
