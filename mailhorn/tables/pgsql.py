"""``pgsql:`` tables: PostgreSQL lookups configured by a ``*.cf`` file (pgsql_table(5)).

Parameters read (besides those of :mod:`mailhorn.tables.sql`):

``hosts`` (default ``localhost``)
    ``postgresql://…`` connection URIs (used as they are), ``unix:/directory``
    (the socket directory), ``inet:host[:port]`` or ``host[:port]``.
``user``, ``password``, ``dbname`` (required, even with a URI, as in Postfix)
    the login and the database.
``select_function``
    the legacy ``SELECT function('%s')`` form, below ``query`` in precedence.
``timeout``, ``retry_interval``, ``idle_interval``
    see :mod:`mailhorn.tables.sql`.

The connection speaks libpq directly (psycopg's ``pq`` layer), as Postfix
does: values arrive as the server's text, NULL as NULL, and values put into
the query are escaped by PQescapeStringConn on that connection, so the
server's standard_conforming_strings decides how backslashes are quoted. The
client encoding is UTF8 (Postfix asks for LATIN1 to pass bytes through
unchanged; mailhorn works in Unicode).

Every value, NULL included, counts as a result value; an empty one draws
Postfix's "empty lookup result" warning and is skipped.

Errors: a server that refuses or does not answer within ``timeout``, or a
failed query → :class:`TableRetry` with a warning in Postfix's words.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from psycopg import Error as PsycopgError
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from mailhorn import log
from mailhorn.config.load import Config
from mailhorn.config.maincf import split_list
from mailhorn.fdwait import readable
from mailhorn.tables.base import OpenOptions
from mailhorn.tables.sql import (
    DEFAULT_TIMEOUT,
    IDLE_INTERVAL,
    RETRY_INTERVAL,
    CfParams,
    ConnectError,
    ConnectionLost,
    ConnectionPool,
    Host,
    QueryError,
    SqlTable,
    Value,
    parse_host,
)


@dataclass
class PgConnection:
    """A libpq connection and the host it goes to (for messages)."""

    pgconn: pq.abc.PGconn
    host: Host


def _is_uri(text: str) -> bool:
    return text.startswith("postgresql://") or text.startswith("postgres://")


def _error_text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return text.rstrip("\n")


class PgsqlDriver:
    """Opens libpq connections with the table's login and timeout."""

    def __init__(self, params: CfParams) -> None:
        self.user = params.get_str("user")
        self.password = params.get_str("password")
        self.dbname = params.get_str("dbname", min_len=1)
        self.timeout = params.get_seconds("timeout", DEFAULT_TIMEOUT)

    def conninfo(self, host: Host) -> str:
        """The libpq connection string for ``host``."""
        # libpq's connect_timeout is whole seconds, at least 2.
        extra = {"connect_timeout": str(max(2, math.ceil(self.timeout))), "client_encoding": "UTF8"}
        if _is_uri(host.address):
            given = conninfo_to_dict(host.address)
            return make_conninfo(host.address, **{k: v for k, v in extra.items() if k not in given})
        args: dict[str, str] = {"host": host.address, "dbname": self.dbname, **extra}
        if host.port is not None:
            args["port"] = str(host.port)
        if self.user:
            args["user"] = self.user
        if self.password:
            args["password"] = self.password
        return make_conninfo(**args)

    def connect(self, host: Host) -> PgConnection:
        try:
            pgconn = pq.PGconn.connect(self.conninfo(host).encode("utf-8"))
        except PsycopgError as exc:
            raise ConnectError(str(exc)) from exc
        if pgconn.status != pq.ConnStatus.OK:
            message = _error_text(pgconn.error_message)
            pgconn.finish()
            raise ConnectError(message)
        pgconn.notice_handler = _ignore_notice
        return PgConnection(pgconn, host)

    def close(self, conn: PgConnection) -> None:
        conn.pgconn.finish()


def _ignore_notice(result: pq.abc.PGresult) -> None:
    """Server notices are not lookup results; libpq would print them on stderr."""


def parse_pg_host(text: str) -> Host:
    """A ``hosts`` entry; a connection URI is kept whole."""
    if _is_uri(text):
        return Host(text, False, text)
    host = parse_host(text)
    if host.unix:
        return Host(text, True, host.address)
    return host


class PgsqlTable(SqlTable):
    """A ``pgsql:`` table."""

    warn_on_null = True

    def __init__(self, name: str, config: Config, options: OpenOptions) -> None:
        params = CfParams(name, config)
        if not params.get_str("query"):
            function = params.get_str("select_function")
            if function:
                # pgsql_table(5): select_function = f means SELECT f('%s').
                params.fallback["query"] = f"SELECT {function}('%s')"
        self.driver = PgsqlDriver(params)  # reads dbname first, as Postfix does
        super().__init__("pgsql", name, params, config, options)
        hosts = [parse_pg_host(h) for h in split_list(params.get_str("hosts"))] or [parse_pg_host("localhost")]
        self.pool: ConnectionPool[PgConnection] = ConnectionPool(
            "pgsql", hosts, self.driver,
            params.get_seconds("retry_interval", RETRY_INTERVAL), params.get_seconds("idle_interval", IDLE_INTERVAL),
        )

    def fetch(self, key: str) -> Iterable[Value]:
        def work(conn: PgConnection) -> list[Value]:
            sql = self.query.expand_query(key, lambda text: self._escape(conn, text))
            if sql is None:
                return []
            return self._run(conn, sql)

        result = self.pool.run(work)
        assert isinstance(result, list)
        return result

    @staticmethod
    def _escape(conn: PgConnection, text: str) -> str:
        try:
            escaped = pq.Escaping(conn.pgconn).escape_string(text.encode("utf-8"))
        except PsycopgError as exc:
            raise ConnectionLost(str(exc)) from exc
        return bytes(escaped).decode("utf-8", "surrogateescape")

    def _run(self, conn: PgConnection, sql: str) -> list[Value]:
        pgconn = conn.pgconn
        deadline = time.monotonic() + self.driver.timeout
        results: list[pq.abc.PGresult] = []
        try:
            pgconn.send_query(sql.encode("utf-8", "surrogateescape"))
            while True:
                while pgconn.is_busy():
                    remaining = deadline - time.monotonic()
                    ready = remaining > 0 and readable(pgconn.socket, remaining)
                    if not ready:
                        raise ConnectionLost(f"no answer from host {conn.host.text} within {self.driver.timeout:g}s")
                    pgconn.consume_input()
                res = pgconn.get_result()
                if res is None:
                    break
                results.append(res)
        except PsycopgError as exc:
            raise ConnectionLost(str(exc)) from exc
        if pgconn.status != pq.ConnStatus.OK:
            raise ConnectionLost(_error_text(pgconn.error_message))
        for res in results:
            if res.status == pq.ExecStatus.FATAL_ERROR:
                text = f"pgsql query failed: fatal error from host {conn.host.text}: {_error_text(res.error_message)}"
                log.warning(text)
                raise QueryError(text)
        if not results or results[-1].status != pq.ExecStatus.TUPLES_OK:
            return []
        last = results[-1]
        values: list[Value] = []
        for row in range(last.ntuples):
            for col in range(last.nfields):
                raw = last.get_value(row, col)
                values.append(None if raw is None else bytes(raw).decode("utf-8", "surrogateescape"))
        return values

    def close(self) -> None:
        self.pool.close()


def open_pgsql(name: str, config: Config, options: OpenOptions) -> PgsqlTable:
    """Open ``pgsql:NAME`` (registry factory)."""
    return PgsqlTable(name, config, options)
