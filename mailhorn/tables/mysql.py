"""``mysql:`` tables: MySQL/MariaDB lookups configured by a ``*.cf`` file (mysql_table(5)).

Parameters read (besides those of :mod:`mailhorn.tables.sql`):

``hosts`` (default ``localhost``)
    ``unix:/path``, ``/path``, ``inet:host[:port]`` or ``host[:port]``; as with
    the MySQL client library, the name ``localhost`` means the server's default
    UNIX-domain socket, so ``127.0.0.1`` is how to ask for TCP.
``user``, ``password``, ``dbname`` (required)
    the login and the database.
``option_file``, ``option_group`` (default ``client``)
    a my.cnf-style file whose group supplies values the ``*.cf`` leaves empty.
``tls_cert_file``, ``tls_key_file``, ``tls_CAfile``, ``tls_CApath``,
``tls_ciphers``, ``tls_verify_cert`` (default no)
    TLS to the server when any file is given.
``require_result_set`` (default yes)
    a query (or ``CALL``) that returns no result set is an error; with ``no``
    it is "not found".
``timeout``, ``retry_interval``, ``idle_interval``
    see :mod:`mailhorn.tables.sql`.

Values are read as the server sends them (text), so numbers and dates look as
Postfix shows them. Values substituted into the query are escaped like
mysql_real_escape_string(): backslash escapes for ``\\ ' "``, NUL, CR, LF and
^Z, or doubled single quotes when the session has NO_BACKSLASH_ESCAPES.

Errors: a server that refuses or does not answer, a failed query, a missing
result set → :class:`TableRetry` with a warning in Postfix's words
(``connect to mysql server HOST: …``, ``mysql:FILE: query failed: …``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, NoReturn

import pymysql  # type: ignore[import-untyped]
from pymysql.constants import SERVER_STATUS  # type: ignore[import-untyped]

from mailhorn import log
from mailhorn.config.load import Config
from mailhorn.config.maincf import split_list
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

#: Where MariaDB/MySQL servers put their socket (the C client's compiled-in default varies).
DEFAULT_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/tmp/mysql.sock")

#: Client error codes that mean the connection itself is gone (errmsg.h).
_LOST = {2006, 2013, 2014, 2055}

_ESCAPES = str.maketrans({
    "\0": "\\0", "\n": "\\n", "\r": "\\r", "\\": "\\\\", "'": "\\'", '"': '\\"', "\x1a": "\\Z",
})

def escape(conn: Any, text: str) -> str:
    """mysql_real_escape_string(): honour the session's NO_BACKSLASH_ESCAPES."""
    if conn.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES:
        return text.replace("'", "''")
    return text.translate(_ESCAPES)


def default_socket() -> str:
    """The first default socket path that exists (the first one otherwise)."""
    for path in DEFAULT_SOCKETS:
        if os.path.exists(path):
            return path
    return DEFAULT_SOCKETS[0]


class MysqlDriver:
    """Opens PyMySQL connections with the table's login, TLS and timeouts."""

    def __init__(self, params: CfParams) -> None:
        self.user = params.get_str("user")
        self.password = params.get_str("password")
        self.dbname = params.get_str("dbname", min_len=1)
        self.option_file = params.get_str("option_file")
        self.option_group = params.get_str("option_group", "client")
        self.timeout = params.get_seconds("timeout", DEFAULT_TIMEOUT)
        ssl: dict[str, Any] = {}
        for param, key in (("tls_cert_file", "cert"), ("tls_key_file", "key"),
                           ("tls_CAfile", "ca"), ("tls_CApath", "capath"), ("tls_ciphers", "cipher")):
            value = params.get_str(param)
            if value:
                ssl[key] = value
        if ssl:
            ssl["check_hostname"] = params.get_bool("tls_verify_cert", False)
        self.ssl = ssl or None

    def connect(self, host: Host) -> Any:
        args: dict[str, Any] = {}
        if host.unix:
            args["unix_socket"] = host.address
        elif host.address == "localhost":
            args["unix_socket"] = default_socket()
        else:
            args["host"] = host.address
            args["port"] = host.port or 3306
        if self.option_file:
            args["read_default_file"] = self.option_file
            args["read_default_group"] = self.option_group or "client"
        try:
            return pymysql.connect(
                user=self.user, password=self.password, database=self.dbname,
                charset="utf8mb4", conv={}, autocommit=True, ssl=self.ssl,
                connect_timeout=self.timeout, read_timeout=self.timeout, write_timeout=self.timeout,
                **args,
            )
        except pymysql.err.MySQLError as exc:
            raise ConnectError(_message(exc)) from exc
        except (OSError, ValueError) as exc:
            raise ConnectError(str(exc)) from exc

    def close(self, conn: Any) -> None:
        try:
            conn.close()
        except Exception:  # already broken: nothing to release
            pass


def _message(exc: BaseException) -> str:
    """The server's text of a PyMySQL error (its args are (code, text))."""
    args: tuple[object, ...] = exc.args
    if len(args) >= 2:
        return str(args[1])
    return str(exc)


def _code(exc: BaseException) -> int:
    args: tuple[object, ...] = exc.args
    first = args[0] if args else 0
    return first if isinstance(first, int) else 0


def _text(value: object) -> Value:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


class MysqlTable(SqlTable):
    """A ``mysql:`` table."""

    def __init__(self, name: str, config: Config, options: OpenOptions) -> None:
        params = CfParams(name, config)
        driver = MysqlDriver(params)  # reads dbname first, as Postfix does
        super().__init__("mysql", name, params, config, options)
        self.require_result_set = params.get_bool("require_result_set", True)
        hosts = [parse_host(h) for h in split_list(params.get_str("hosts"))] or [parse_host("localhost")]
        self.pool: ConnectionPool[Any] = ConnectionPool(
            "mysql", hosts, driver,
            params.get_seconds("retry_interval", RETRY_INTERVAL), params.get_seconds("idle_interval", IDLE_INTERVAL),
        )

    def fetch(self, key: str) -> Iterable[Value]:
        def work(conn: Any) -> list[Value]:
            sql = self.query.expand_query(key, lambda text: escape(conn, text))
            if sql is None:
                return []
            return self._run(conn, sql)

        result = self.pool.run(work)
        assert isinstance(result, list)
        return result

    def _run(self, conn: Any, sql: str) -> list[Value]:
        where = f"mysql:{self.name}"
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                described = cur.description is not None
                rows = cur.fetchall() if described else ()
                while cur.nextset():
                    if cur.description is not None:
                        self._fail(f"{where}: query failed: multiple result sets returning data are not supported")
        except (pymysql.err.InterfaceError, ConnectionError) as exc:
            raise ConnectionLost(_message(exc)) from exc
        except pymysql.err.OperationalError as exc:
            if _code(exc) in _LOST or _code(exc) == 0:
                raise ConnectionLost(_message(exc)) from exc
            self._fail(f"{where}: query failed: {_message(exc)}")
        except pymysql.err.MySQLError as exc:
            self._fail(f"{where}: query failed: {_message(exc)}")
        if not described:
            if self.require_result_set:
                self._fail(f"{where}: query failed: query returned no result set(require_result_set = yes)")
            return []
        return [_text(v) for row in rows for v in row]

    @staticmethod
    def _fail(text: str) -> NoReturn:
        log.warning(text)
        raise QueryError(text)

    def close(self) -> None:
        self.pool.close()


def open_mysql(name: str, config: Config, options: OpenOptions) -> MysqlTable:
    """Open ``mysql:NAME`` (registry factory)."""
    return MysqlTable(name, config, options)
