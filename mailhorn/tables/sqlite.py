"""``sqlite:`` tables: SQLite lookups configured by a ``*.cf`` file (sqlite_table(5)).

Parameters read (besides those of :mod:`mailhorn.tables.sql`):

``dbpath`` (required)
    the database file. As with Postfix, a file that does not exist is created
    (empty) when the table is opened.
``timeout``
    how long to wait for a database another process has locked.

As in Postfix's dict_sqlite, only the *first column* of each row is a result
value; values are the text SQLite gives for them (``sqlite3_column_text``:
integers in decimal, reals as SQLite prints them, blobs as their bytes); NULL
is skipped. Values put into the query have their single quotes doubled.

Errors: a database that cannot be opened, or a query SQLite cannot prepare
(no such table, syntax error) is a permanent :class:`TableConfigError`, as
Postfix stops with a fatal error there; a locked or busy database is a
:class:`TableRetry`, as is exceeding ``expansion_limit``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from mailhorn import log
from mailhorn.config.load import Config
from mailhorn.tables.base import OpenOptions, TableConfigError
from mailhorn.tables.sql import (
    DEFAULT_TIMEOUT,
    IDLE_INTERVAL,
    RETRY_INTERVAL,
    CfParams,
    ConnectionPool,
    Host,
    QueryError,
    SqlTable,
    Value,
)

#: SQLite result codes that mean "try again later" (sqlite3.h).
_TEMPORARY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED


def quote(text: str) -> str:
    """sqlite3_mprintf("%q"): double every single quote."""
    return text.replace("'", "''")


class SqliteDriver:
    """Opens the database file; one connection per concurrent user."""

    def __init__(self, dbpath: str, timeout: float, source: str) -> None:
        self.dbpath = dbpath
        self.timeout = timeout
        self.source = source

    def connect(self, host: Host) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.dbpath, timeout=self.timeout, check_same_thread=False,
                                   isolation_level=None)
        except sqlite3.Error as exc:
            raise TableConfigError(f"{self.source}: Can't open database: {exc}") from exc
        conn.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
        return conn

    def close(self, conn: sqlite3.Connection) -> None:
        conn.close()


class SqliteTable(SqlTable):
    """A ``sqlite:`` table."""

    limit_message = "Expansion limit exceeded for key '{key}'"

    def __init__(self, name: str, config: Config, options: OpenOptions) -> None:
        params = CfParams(name, config)
        dbpath = params.get_str("dbpath", min_len=1)
        super().__init__("sqlite", name, params, config, options)
        self.driver = SqliteDriver(dbpath, params.get_seconds("timeout", DEFAULT_TIMEOUT), name)
        # Postfix opens the database with the table: fail now, not at the first lookup.
        self.driver.close(self.driver.connect(Host(dbpath, True, dbpath)))
        self.pool: ConnectionPool[sqlite3.Connection] = ConnectionPool(
            "sqlite", [Host(dbpath, True, dbpath)], self.driver, RETRY_INTERVAL, IDLE_INTERVAL,
        )

    def fetch(self, key: str) -> Iterable[Value]:
        def work(conn: sqlite3.Connection) -> list[Value]:
            sql = self.query.expand_query(key, quote)
            if sql is None:
                return []
            return self._run(conn, sql)

        result = self.pool.run(work)
        assert isinstance(result, list)
        return result

    def _run(self, conn: sqlite3.Connection, sql: str) -> list[Value]:
        try:
            rows = conn.execute(sql).fetchall()
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _TEMPORARY:
                text = f"dict_sqlite_lookup: {self.name}: SQL step failed: {exc}"
                log.warning(text)
                raise QueryError(text) from exc
            raise TableConfigError(f"dict_sqlite_lookup: {self.name}: SQL prepare failed: {exc}") from exc
        except sqlite3.Error as exc:
            raise TableConfigError(f"dict_sqlite_lookup: {self.name}: SQL prepare failed: {exc}") from exc
        return [self._text(conn, row[0]) for row in rows if row]

    @staticmethod
    def _text(conn: sqlite3.Connection, value: object) -> Value:
        """The value as sqlite3_column_text() gives it."""
        if value is None:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, bytes):
            return value.decode("utf-8", "surrogateescape")
        if isinstance(value, float):
            # SQLite's own float-to-text conversion (e.g. 1.0e+301, 0.3).
            text = conn.execute("SELECT CAST(? AS TEXT)", (value,)).fetchone()[0]
            return str(text)
        return str(value)

    def close(self) -> None:
        self.pool.close()


def open_sqlite(name: str, config: Config, options: OpenOptions) -> SqliteTable:
    """Open ``sqlite:NAME`` (registry factory)."""
    return SqliteTable(name, config, options)
