"""The database port over SQLite (stdlib ``sqlite3``) or PostgreSQL (psycopg 3), one schema:

=========== =======================================================================
submissions msg_id PK, user_id                 the API's saved submissions
ledger      msg_id PK, user_id                 one row per voucher granted
processed   msg_id PK                          the idempotent consumer's dedupe table
outbox      msg_id PK, payload, created_ns,    events written with their row, published
            published_at NULL                  later by the relay
stock       name PK, n                         the DB-side stock counter
=========== =======================================================================

``table_prefix`` goes in front of every table name so tests can share one database.

``begin()`` -> ``Done(Transaction)``; the transaction's methods return ``Done`` too, and a lost
or locked database becomes ``Done(error=ServiceDown("db"))`` with the transaction rolled
back.  One ``SqlDatabase`` is one connection: one open transaction at a time, one thread.

SQLite runs in WAL mode with ``synchronous=FULL`` (a commit survives a power loss) and every
transaction is ``BEGIN IMMEDIATE`` (it takes the write lock first, so two processes queue on
``busy_timeout`` instead of failing when a reader later tries to write).  PostgreSQL runs at
READ COMMITTED, its default: ``UPDATE ... WHERE n > 0`` waits on the row lock and re-checks.
"""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Any, Callable

from simulator.errors import InputError, ServiceDown
from simulator.messages import Message
from simulator.ports import Done

from .codec import message_from_json, message_to_json
from .settings import check_database_url, sqlite_path

COMPONENT = "db"
STOCK_NAME = "gift"  # the row of the stock table the flow's stock strategies use
TABLES = ("submissions", "ledger", "processed", "outbox", "stock")
_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {p}submissions (msg_id TEXT PRIMARY KEY, user_id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {p}ledger (msg_id TEXT PRIMARY KEY, user_id TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {p}processed (msg_id TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS {p}outbox (msg_id TEXT PRIMARY KEY, payload TEXT NOT NULL,"
    " created_ns BIGINT NOT NULL, published_at DOUBLE PRECISION)",
    "CREATE TABLE IF NOT EXISTS {p}stock (name TEXT PRIMARY KEY, n BIGINT NOT NULL)",
)


# ON CONFLICT DO NOTHING: a duplicate key is an answer (False), not an error that would abort
# the whole transaction in PostgreSQL.  Written once here: building them per call showed in
# the consume-path profile.
_INSERT = {table: f"INSERT INTO {{p}}{table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
                  "ON CONFLICT (msg_id) DO NOTHING"
           for table, columns in (("submissions", ("msg_id", "user_id")), ("ledger", ("msg_id", "user_id")),
                                  ("processed", ("msg_id",)), ("outbox", ("msg_id", "payload", "created_ns")))}


def _psycopg() -> Any:
    import psycopg  # only when a PostgreSQL URL is used: SQLite needs nothing installed

    return psycopg


class SqlDatabase:
    def __init__(self, url: str, *, table_prefix: str = "", connect_timeout_s: float = 2.0,
                 busy_timeout_s: float = 5.0, create: bool = True):
        check_database_url(url)
        if table_prefix and not _PREFIX.match(table_prefix):
            raise InputError("table_prefix", table_prefix, "lower-case letters, digits and _, at most 41")
        self.url = url
        self.kind = "sqlite" if url.startswith("sqlite:") else "postgresql"
        self.prefix = table_prefix
        self.connect_timeout_s = connect_timeout_s
        self.busy_timeout_s = busy_timeout_s
        self._create = create
        self._schema_ready = False
        self._conn: Any = None
        self._tx: Transaction | None = None
        self._sql: dict[str, str] = {}  # SQL text as written -> as sent (see sql())

    # ------------------------------------------------------------------ connection
    def _errors(self) -> tuple[type[BaseException], ...]:
        """Errors that mean "the database cannot serve this now" (down, locked, deadlocked)."""
        if self.kind == "sqlite":
            return (sqlite3.OperationalError,)
        pg = _psycopg()
        return (pg.OperationalError, pg.InterfaceError)

    def _open(self) -> Any:
        if self.kind == "sqlite":
            # isolation_level=None: autocommit, we send BEGIN/COMMIT ourselves.
            # check_same_thread=False: one thread at a time, but not always the one that opened it
            conn = sqlite3.connect(sqlite_path(self.url), timeout=self.busy_timeout_s,
                                   isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            return conn
        return _psycopg().connect(self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout_s)))

    def connection(self) -> Any:
        """The open connection, opening (and creating the schema) if needed; raises ServiceDown."""
        if self._conn is not None and not self._broken():
            return self._conn
        self._drop_connection()
        try:
            self._conn = self._open()
            if self._create and not self._schema_ready:
                self.create_schema()
        except self._errors() as exc:
            self._drop_connection()
            raise ServiceDown(COMPONENT, _describe(exc)) from None
        return self._conn

    def _broken(self) -> bool:
        if self.kind == "sqlite":
            return False
        return bool(self._conn.closed or self._conn.broken)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if self._tx is not None:
            self._tx._finished = True  # a dropped connection rolls back whatever was open
            self._tx = None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail in any way
                pass

    def close(self) -> None:
        self._drop_connection()

    def sql(self, text: str) -> str:
        """One SQL text for both: ``{p}`` is the table prefix, ``?`` the parameter marker."""
        # a few dozen distinct texts, each run per message: rewrite each once
        done = self._sql.get(text)
        if done is None:
            done = text.replace("{p}", self.prefix)
            if self.kind != "sqlite":
                done = done.replace("?", "%s")
            self._sql[text] = done
        return done

    def execute(self, text: str, params: tuple = ()) -> Any:
        """Run one statement on the connection (inside the open transaction, if any)."""
        return self.connection().execute(self.sql(text), params)

    # ------------------------------------------------------------------ schema
    def create_schema(self) -> None:
        conn = self._conn
        for statement in _SCHEMA:
            try:
                conn.execute(self.sql(statement))
            except Exception as exc:
                # two PostgreSQL sessions creating one table race on the catalog; the loser's
                # table exists all the same
                if self.kind == "postgresql" and type(exc).__name__ in ("UniqueViolation", "DuplicateTable"):
                    continue
                raise
        self._schema_ready = True

    def drop(self) -> None:
        """Drop this prefix's tables (tests clean up with this)."""
        self._no_open_tx("drop")
        for table in TABLES:
            self._admin(f"DROP TABLE IF EXISTS {{p}}{table}")
        self._schema_ready = False

    def reset(self) -> None:
        """Empty every table (the schema stays)."""
        self._no_open_tx("reset")
        for table in TABLES:
            self._admin(f"DELETE FROM {{p}}{table}")

    # ------------------------------------------------------------------ the port
    def begin(self) -> Done:
        self._no_open_tx("begin")
        try:
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE" if self.kind == "sqlite" else "BEGIN")
        except ServiceDown as exc:
            return Done(error=exc)
        except self._errors() as exc:
            self._after_error()
            return Done(error=ServiceDown(COMPONENT, _describe(exc)))
        self._tx = Transaction(self)
        return Done(self._tx)

    def mark_published(self, msg_id: str) -> Done:
        """The relay's ``UPDATE outbox SET published_at``: True if the row was still pending."""
        try:
            changed = self._admin("UPDATE {p}outbox SET published_at = ? "
                                  "WHERE msg_id = ? AND published_at IS NULL", (time.time(), msg_id))
        except ServiceDown as exc:
            return Done(error=exc)
        return Done(changed == 1)

    def has_voucher(self, msg_id: str) -> Done:
        """Whether the ledger holds a committed voucher for this message."""
        try:
            rows = self._admin("SELECT 1 FROM {p}ledger WHERE msg_id = ?", (msg_id,), fetch=True)
        except ServiceDown as exc:
            return Done(error=exc)
        return Done(bool(rows))

    def login(self, user: str) -> Done:
        """An unrelated query (a member logging in): it needs only a connection and a round trip."""
        try:
            self._admin("SELECT 1", fetch=True)
        except ServiceDown as exc:
            return Done(error=exc)
        return Done(None)

    def abort_open(self) -> None:
        """Roll back a transaction its owner abandoned (a process 'killed' at a crash point)."""
        if self._tx is not None and not self._tx.finished:
            self._tx.abort()

    # ------------------------------------------------------------------ reading (raise ServiceDown)
    def ledger_count(self) -> int:
        return int(self._admin("SELECT COUNT(*) FROM {p}ledger", fetch=True)[0][0])

    def processed_count(self) -> int:
        return int(self._admin("SELECT COUNT(*) FROM {p}processed", fetch=True)[0][0])

    def submission_count(self) -> int:
        return int(self._admin("SELECT COUNT(*) FROM {p}submissions", fetch=True)[0][0])

    def stock_value(self) -> int | None:
        rows = self._admin("SELECT n FROM {p}stock WHERE name = ?", (STOCK_NAME,), fetch=True)
        return int(rows[0][0]) if rows else None

    def set_stock(self, n: int) -> None:
        self._admin("INSERT INTO {p}stock (name, n) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET n = excluded.n", (STOCK_NAME, int(n)))

    def outbox_unpublished(self, limit: int = 100) -> list[tuple[str, Message]]:
        """The oldest unpublished outbox rows, in the order they were written."""
        rows = self._admin("SELECT msg_id, payload FROM {p}outbox WHERE published_at IS NULL "
                           "ORDER BY created_ns, msg_id LIMIT ?", (int(limit),), fetch=True)
        return [(msg_id, message_from_json(payload)) for msg_id, payload in rows]

    def _admin(self, text: str, params: tuple = (), *, fetch: bool = False) -> Any:
        """One statement outside any flow transaction (autocommit); raises ServiceDown."""
        self._no_open_tx("a database-level call")
        try:
            cur = self.execute(text, params)
            return cur.fetchall() if fetch else cur.rowcount
        except self._errors() as exc:
            self._after_error()
            raise ServiceDown(COMPONENT, _describe(exc)) from None

    def _no_open_tx(self, what: str) -> None:
        if self._tx is not None and not self._tx.finished:
            # one connection, one transaction: a second one would silently join the first
            raise RuntimeError(f"{what}: a transaction is still open on this connection; "
                               "commit, roll back or abort_open() it first")

    def _after_error(self) -> None:
        """After a failed statement: the open transaction is over; roll it back on a live
        connection, forget a broken one (the server rolls back what a dead session had open)."""
        tx, self._tx = self._tx, None
        if tx is not None:
            tx._finished = True
        if self._conn is None:
            return
        if not self._broken():
            try:
                self._conn.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - SQLite may have rolled back already; or it died now
                pass
        if self._conn is not None and self._broken():
            self._drop_connection()

    def _in_tx(self, text: str, params: tuple) -> Any:
        """A statement of the open transaction: on its own connection, never on a new one (that
        would run it outside the transaction)."""
        if self._conn is None or self._broken():
            raise ServiceDown(COMPONENT, "connection lost during the transaction")
        return self._conn.execute(self.sql(text), params)


class Transaction:
    """One open transaction; every method returns ``Done``."""

    def __init__(self, db: SqlDatabase):
        self._db = db
        self._finished = False

    @property
    def finished(self) -> bool:
        return self._finished

    def _run(self, text: str, params: tuple, read: Callable[[Any], Any]) -> Done:
        if self._finished:
            raise RuntimeError("this transaction is already committed or rolled back")
        try:
            return Done(read(self._db._in_tx(text, params)))
        except ServiceDown as exc:
            self._db._after_error()
            return Done(error=exc)
        except self._db._errors() as exc:
            self._db._after_error()
            return Done(error=ServiceDown(COMPONENT, _describe(exc)))

    def insert_processed(self, msg_id: str) -> Done:
        return self._run(_INSERT["processed"], (msg_id,), _inserted)

    def insert_ledger(self, msg_id: str, user: str) -> Done:
        return self._run(_INSERT["ledger"], (msg_id, user), _inserted)

    def insert_submission(self, msg_id: str, user: str) -> Done:
        return self._run(_INSERT["submissions"], (msg_id, user), _inserted)

    def insert_outbox(self, msg_id: str, payload: Message | str) -> Done:
        text = payload if isinstance(payload, str) else message_to_json(payload)
        return self._run(_INSERT["outbox"], (msg_id, text, time.time_ns()), _inserted)

    def decrement_stock(self) -> Done:
        """``UPDATE ... SET n = n - 1 WHERE n > 0``: the new level, or None when sold out."""
        return self._run("UPDATE {p}stock SET n = n - 1 WHERE name = ? AND n > 0 RETURNING n",
                         (STOCK_NAME,), _first)

    def read_stock(self) -> Done:
        """A plain read, no lock: the read-then-write lesson's race needs exactly that."""
        return self._run("SELECT n FROM {p}stock WHERE name = ?", (STOCK_NAME,),
                         lambda cur: _first(cur) or 0)

    def write_stock(self, n: int) -> Done:
        return self._run("INSERT INTO {p}stock (name, n) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET n = excluded.n", (STOCK_NAME, int(n)),
                         _true)

    def commit(self) -> Done:
        return self._end("COMMIT")

    def rollback(self) -> Done:
        return self._end("ROLLBACK")

    def _end(self, statement: str) -> Done:
        done = self._run(statement, (), _true)
        self._finished = True
        if self._db._tx is self:
            self._db._tx = None
        return done

    def abort(self) -> None:
        """Roll back without asking for an answer, as a dropped connection does."""
        if self._finished:
            return
        self._finished = True
        if self._db._tx is self:
            self._db._tx = None
        try:
            self._db._in_tx("ROLLBACK", ())
        except Exception:  # noqa: BLE001 - if the connection is gone the rollback happened anyway
            self._db._drop_connection()


def _inserted(cur: Any) -> bool:
    return bool(cur.rowcount == 1)


def _true(_cur: Any) -> bool:
    return True


def _first(cur: Any) -> int | None:
    rows = cur.fetchall()  # fetch all: SQLite keeps a RETURNING statement open until it is stepped out
    return None if not rows else int(rows[0][0])


def _describe(exc: BaseException) -> str:
    """The error's class and first line; psycopg's messages name host and port, never a password."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:200]
