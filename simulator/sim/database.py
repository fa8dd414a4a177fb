"""A SimPy model of the SQL database (PostgreSQL-like): a connection pool, transactions that
buffer their writes until commit, a stock row lock, unique keys, an outbox, a read replica
that lags, and a crash that keeps exactly what was committed (``synchronous_commit=on``,
reliability-reference.md §1 P21).

The transaction itself is ``simulator.sim.transaction``.  Both the pool and the row lock keep
their waiters in a ``deque`` (O(1) per waiter however long the line gets).
"""

from __future__ import annotations

import math
from collections import deque
from itertools import islice
from typing import Any, Callable, Generator

import numpy as np
import simpy

from simulator.compact import IdSet
from simulator.errors import InputError, ServiceDown
from simulator.flow import ROUTING_KEY
from simulator.history import History
from simulator.messages import Message, submission_body
from simulator.sim.transaction import Transaction, fail_event

__all__ = ["Database", "Transaction", "STAT_KEYS"]

STAT_KEYS = ("commits", "rollbacks", "queries", "lock_waits", "lock_wait_time", "max_lock_queue",
             "pool_waits", "pool_wait_time", "max_waiting", "unique_waits", "crashes")


def _check_time(field: str, value: Any) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0:
        raise InputError(field, value, "a finite number of seconds >= 0")
    return float(value)


def _check_count(field: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(field, value, f"a whole number >= {low}")
    return value


class Database:
    def __init__(self, env: simpy.Environment, rng: np.random.Generator, *, name: str = "db",
                 pool_size: int = 10, query_time: float = 0.002, commit_time: float = 0.003,
                 stock: int = 0, replica_lag: float = 0.5, jitter: bool = True,
                 history: History | None = None):
        self.env = env
        self.rng = rng
        self.name = name
        self.pool_size = _check_count(f"{name}.pool_size", pool_size, 1)
        self.query_time = _check_time(f"{name}.query_time", query_time)
        self.commit_time = _check_time(f"{name}.commit_time", commit_time)
        self.replica_lag = _check_time(f"{name}.replica_lag", replica_lag)
        self.jitter = bool(jitter)
        self.history = history
        self.up = True
        self.stats: dict[str, float] = dict.fromkeys(STAT_KEYS, 0)
        # committed tables
        self._stock = _check_count(f"{name}.stock", stock, 0)
        # every processed id, to the end of the run: one bit per id when ids are prefix+counter
        self._processed = IdSet()
        self._ledger: dict[str, str] = {}                       # msg_id -> user
        self._submissions: dict[str, tuple[str, float]] = {}    # msg_id -> (user, committed at)
        self._outbox: dict[str, Any] = {}                       # unpublished rows, oldest first
        self.published = 0
        # in-flight state: unique keys inserted by open transactions, the row lock, the pool
        self.claims: dict[tuple[str, str], Transaction] = {}
        self.row_holder: Transaction | None = None
        self._row_waiters: deque[tuple[Transaction, Callable[[], None], float]] = deque()
        self._free = self.pool_size
        self._pool_waiters: deque[tuple[simpy.Event, float]] = deque()
        self._open: dict[Transaction, None] = {}  # ordered, so a crash fails them reproducibly
        self._opened = 0
        # (commit time, stock) pairs the replica may still need: the newest at or before
        # now - replica_lag, and everything after it
        self._replica: deque[tuple[float, int]] = deque([(env.now, self._stock)])

    # ------------------------------------------------------------------ ports

    def begin(self) -> simpy.Event:
        """-> an event whose value is a ``Transaction`` once a pooled connection is free."""
        event = self.env.event()
        if not self.up:
            return fail_event(event, ServiceDown(self.name, "connection refused"))
        if self._free > 0:
            self._free -= 1
            event.succeed(self._new_transaction())
        else:
            self._pool_waiters.append((event, self.env.now))
            self.stats["pool_waits"] += 1
            self.stats["max_waiting"] = max(self.stats["max_waiting"], len(self._pool_waiters))
        return event

    def login(self, user: str) -> simpy.Event:
        """A login query outside the flash sale: waits for a connection like everyone else."""
        return self._autocommit(lambda tx: tx.login(user))

    def has_voucher(self, msg_id: str) -> simpy.Event:
        """``SELECT 1 FROM ledger WHERE msg_id = ?`` (committed rows): -> bool."""
        return self._autocommit(lambda tx: tx._simple(lambda: msg_id in self._ledger))

    def mark_published(self, msg_id: str) -> simpy.Event:
        """The relay's ``UPDATE outbox SET published = true``: -> True if the row was pending."""
        return self._autocommit(lambda tx: tx._mark_published(msg_id))

    def replica_stock(self) -> simpy.Event:
        """A read from the replica: the stock as committed ``replica_lag`` seconds ago.

        The replica is its own server with its own connections: it answers while the primary
        is down, with whatever it had replayed.
        """
        answer = self.env.event()
        self.env.timeout(self.sample(self.query_time)).callbacks.append(
            lambda _e: answer.succeed(self._stock_as_of(self.env.now - self.replica_lag)))
        return answer

    # ------------------------------------------------------------------ inspection (instant)

    def stock_value(self) -> int:
        return self._stock

    def ledger_count(self) -> int:
        return len(self._ledger)

    def processed_count(self) -> int:
        return len(self._processed)

    def submission_count(self) -> int:
        return len(self._submissions)

    def ledger(self) -> dict[str, str]:
        return dict(self._ledger)

    def outbox_unpublished(self, limit: int) -> list[tuple[str, Any]]:
        return list(islice(self._outbox.items(), max(limit, 0)))

    def is_unpublished(self, msg_id: str) -> bool:
        return msg_id in self._outbox

    @property
    def open_transactions(self) -> int:
        return len(self._open)

    @property
    def pool_waiting(self) -> int:
        return len(self._pool_waiters)

    # ------------------------------------------------------------------ reconciliation batch
    # Used by the world's double-check job; a plain scan is fine at a pass every few seconds.

    def saved_unprocessed(self, older_than: float) -> list[Message]:
        """Submissions committed at or before ``older_than`` with no ledger or processed row,
        rebuilt as messages to publish again (the row keeps no correlation id: the message id
        stands in for it)."""
        return [Message(message_id=mid, correlation_id=mid, routing_key=ROUTING_KEY,
                        body=submission_body(mid, user), timestamp=at)
                for mid, (user, at) in self._submissions.items()
                if at <= older_than and mid not in self._ledger and mid not in self._processed]

    def processed_unsaved(self) -> list[tuple[str, str | None, str]]:
        """Ledger rows with no submission row: ``(msg_id, correlation id (unknown), user)``."""
        return [(mid, None, user) for mid, user in self._ledger.items() if mid not in self._submissions]

    def backfill_submission(self, msg_id: str, user: str) -> None:
        self._submissions[msg_id] = (user, self.env.now)

    # ------------------------------------------------------------------ crash / restart

    def crash(self) -> None:
        """kill -9 of the server: open transactions fail and roll back; commits survive."""
        if not self.up:
            return
        self.up = False
        self.stats["crashes"] += 1
        error = ServiceDown(self.name, "crashed")
        victims = list(self._open)
        for tx in victims:
            tx._kill(error)
        self.stats["rollbacks"] += len(victims)
        self._open.clear()
        self.claims.clear()
        self.row_holder = None
        self._row_waiters.clear()
        while self._pool_waiters:
            event, _since = self._pool_waiters.popleft()
            if not event.triggered:
                fail_event(event, ServiceDown(self.name, "crashed"))
        self._free = self.pool_size
        self._record("crash", {"rolled_back": len(victims)})

    def restart(self) -> None:
        if self.up:
            return
        self.up = True
        self._record("restart", None)

    # ------------------------------------------------------------------ used by Transaction

    def sample(self, mean: float) -> float:
        return float(self.rng.exponential(mean)) if self.jitter and mean > 0 else mean

    def committed_has(self, table: str, key: str) -> bool:
        return key in (self._processed if table == "processed" else self._ledger)

    def take_row(self, tx: Transaction) -> None:
        self.row_holder = tx

    def wait_row(self, tx: Transaction, wake: Callable[[], None]) -> None:
        self._row_waiters.append((tx, wake, self.env.now))
        self.stats["lock_waits"] += 1
        self.stats["max_lock_queue"] = max(self.stats["max_lock_queue"], len(self._row_waiters))

    def apply(self, tx: Transaction) -> None:
        """Commit: every buffered write becomes visible at the same instant."""
        now = self.env.now
        self._processed.update(tx.processed)
        self._ledger.update(tx.ledger)
        for mid, user in tx.submissions.items():
            self._submissions[mid] = (user, now)
        self._outbox.update(tx.outbox)
        for mid in tx.published:
            if mid in self._outbox:
                del self._outbox[mid]
                self.published += 1
        if tx.stock is not None and tx.stock != self._stock:
            self._stock = tx.stock
            self._replica.append((now, tx.stock))
            self._trim_replica(now - self.replica_lag)

    def release(self, tx: Transaction) -> None:
        """A transaction ended: free its unique keys, the row lock and its connection."""
        self._open.pop(tx, None)
        for claim in tx.claims:
            if self.claims.get(claim) is tx:
                del self.claims[claim]
        if self.row_holder is tx:
            self._release_row()
        self._release_connection()

    # ------------------------------------------------------------------ internals

    def _new_transaction(self) -> Transaction:
        self._opened += 1
        tx = Transaction(self, self._opened)
        self._open[tx] = None
        return tx

    def _release_connection(self) -> None:
        while self._pool_waiters:
            event, since = self._pool_waiters.popleft()
            if event.triggered or event.defused:
                continue  # its client was killed while waiting: do not hand it a connection
            self.stats["pool_wait_time"] += self.env.now - since
            event.succeed(self._new_transaction())
            return
        self._free += 1

    def _release_row(self) -> None:
        # wake waiters in order until one keeps the lock (a sold-out UPDATE does not)
        self.row_holder = None
        while self._row_waiters and self.row_holder is None:
            tx, wake, since = self._row_waiters.popleft()
            if tx.finished:
                continue
            self.stats["lock_wait_time"] += self.env.now - since
            wake()

    def _autocommit(self, statement: Callable[[Transaction], simpy.Event]) -> simpy.Event:
        if not self.up:
            return fail_event(self.env.event(), ServiceDown(self.name, "connection refused"))
        return self.env.process(self._one_statement(statement))

    def _one_statement(self, statement: Callable[[Transaction], simpy.Event]) -> Generator:
        tx = yield self.begin()
        value = yield statement(tx)
        yield tx.commit()
        return value

    def _stock_as_of(self, when: float) -> int:
        self._trim_replica(when)
        return self._replica[0][1]

    def _trim_replica(self, when: float) -> None:
        replica = self._replica
        while len(replica) > 1 and replica[1][0] <= when:
            replica.popleft()

    def _record(self, f: str, value: Any) -> None:
        if self.history is not None:
            self.history.record("info", f, self.name, value)
