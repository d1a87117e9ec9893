"""Database URLs for the mail directory (``directory_database``).

Forms accepted
    ``sqlite:///abs/path.db`` or ``sqlite:/abs/path.db``
        an SQLite file; ``sqlite:relative.db`` is relative to the
        configuration directory. The file is created when first used.
    ``mysql://user:password@host:port/dbname`` (also ``mariadb://``)
        MySQL or MariaDB over TCP (port 3306 by default); ``?unix_socket=/path``
        selects a UNIX-domain socket instead
        (``mysql://root@/vmail?unix_socket=/run/mysqld/mysqld.sock``).
    ``postgresql://user:password@host:port/dbname`` (also ``postgres://``,
        ``pgsql://``)
        PostgreSQL (port 5432 by default); ``?host=/run/postgresql`` names a
        socket directory, as libpq's own URIs do.

User, password and database name are percent-decoded (RFC 3986 §2.1), so a
password holding ``@`` or ``/`` is written ``%40`` / ``%2F``. The password is
never shown: :meth:`DatabaseURL.display` replaces it with ``***``.

:func:`from_config` decides which database a configuration uses: the
``directory_database`` parameter (mailhorn's own; Postfix and Dovecot have
none), else the SQL table behind ``virtual_mailbox_domains``.

Parameters read: ``directory_database``, ``virtual_mailbox_domains``,
``config_directory``; the ``*.cf`` file's ``hosts``, ``user``, ``password``,
``dbname`` (mysql, pgsql) or ``dbpath`` (sqlite).

Errors: :class:`URLError` naming what is wrong (unknown scheme, missing
database name, bad port, unknown query option, unreadable ``*.cf`` file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, unquote

from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.config.maincf import split_list
from mailhorn.tables.sql import CfParams, parse_host

Engine = Literal["sqlite", "mysql", "pgsql"]

#: URL scheme → engine.
SCHEMES: dict[str, Engine] = {
    "sqlite": "sqlite",
    "mysql": "mysql",
    "mariadb": "mysql",
    "postgresql": "pgsql",
    "postgres": "pgsql",
    "pgsql": "pgsql",
}

DEFAULT_PORTS: dict[Engine, int] = {"mysql": 3306, "pgsql": 5432, "sqlite": 0}

#: The query options each engine understands (socket location).
_QUERY_OPTIONS: dict[Engine, frozenset[str]] = {
    "mysql": frozenset({"unix_socket"}),
    "pgsql": frozenset({"host"}),
    "sqlite": frozenset(),
}


class URLError(ValueError):
    """A ``directory_database`` value that is not a usable URL."""


@dataclass(frozen=True)
class DatabaseURL:
    """Where the directory lives.

    ``path`` is the SQLite file; ``host``/``port`` a TCP server; ``socket``
    a MySQL socket file or a PostgreSQL socket directory (used instead of TCP).
    """

    engine: Engine
    database: str = ""
    path: str = ""
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = ""
    socket: str = ""

    def display(self) -> str:
        """The URL for messages, with the password hidden."""
        if self.engine == "sqlite":
            return f"sqlite://{self.path}" if self.path.startswith("/") else f"sqlite:{self.path}"
        scheme = "mysql" if self.engine == "mysql" else "postgresql"
        login = self.user + (":***" if self.password else "")
        where = self.host + (f":{self.port}" if self.port else "")
        text = f"{scheme}://{login + '@' if login else ''}{where}/{self.database}"
        if self.socket:
            text += ("?unix_socket=" if self.engine == "mysql" else "?host=") + self.socket
        return text


def parse_url(text: str, config_dir: str = ".") -> DatabaseURL:
    """Parse ``text``; a relative SQLite path is taken from ``config_dir``."""
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    engine = SCHEMES.get(scheme.lower()) if colon else None
    if engine is None:
        raise URLError(f"unsupported database URL {text!r}: expected sqlite:, mysql: or postgresql:")
    if engine == "sqlite":
        return _parse_sqlite(rest, text, config_dir)
    return _parse_server(engine, rest, text)


def _parse_sqlite(rest: str, text: str, config_dir: str) -> DatabaseURL:
    if rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        if authority not in ("", "localhost"):
            raise URLError(f"database URL {text!r}: an SQLite file cannot be on host {authority!r}")
        path = slash + path
    else:
        path = rest
    path = unquote(path.split("?", 1)[0])
    if not path or path == "/":
        raise URLError(f"database URL {text!r} names no SQLite file")
    if not os.path.isabs(path):
        path = os.path.join(config_dir, path)
    return DatabaseURL("sqlite", path=path)


def _parse_server(engine: Engine, rest: str, text: str) -> DatabaseURL:
    if not rest.startswith("//"):
        raise URLError(f"database URL {text!r}: expected {text.split(':', 1)[0]}://[user[:password]@]host[:port]/dbname")
    rest, _, query = rest[2:].partition("?")
    authority, slash, database = rest.partition("/")
    login, at, hostport = authority.rpartition("@")
    if not at:
        login, hostport = "", authority
    user, _, password = login.partition(":")
    host, port = _split_hostport(hostport, text)
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _QUERY_OPTIONS[engine]:
            raise URLError(f"database URL {text!r}: unknown option {name!r}")
        options[name] = value
    socket = options.get("unix_socket", options.get("host", ""))
    database = unquote(database)
    if not slash or not database:
        raise URLError(f"database URL {text!r} names no database")
    if not host and not socket:
        host = "localhost"
    return DatabaseURL(
        engine, database=database, host=host, port=port or (0 if socket and not host else DEFAULT_PORTS[engine]),
        user=unquote(user), password=unquote(password), socket=socket,
    )


def _split_hostport(hostport: str, text: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise URLError(f"database URL {text!r}: unterminated '[' in host")
        host, tail = hostport[1:end], hostport[end + 1 :]
        if tail and not tail.startswith(":"):
            raise URLError(f"database URL {text!r}: bad host {hostport!r}")
        port_text = tail[1:]
    else:
        host, _, port_text = hostport.partition(":")
    port = 0
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise URLError(f"database URL {text!r}: bad port {port_text!r}")
        port = int(port_text)
    return unquote(host), port


# ---------------------------------------------------------------------------
# Which database: main.cf, or the map files Postfix already uses

#: The SQL lookup table types a directory can be derived from.
SQL_TABLE_TYPES: dict[str, Engine] = {"mysql": "mysql", "pgsql": "pgsql", "sqlite": "sqlite"}
#: The SQLite file of a new installation, in the configuration directory.
DEFAULT_SQLITE_FILE = "directory.sqlite"


def from_config(config: Config, override: str | None = None) -> DatabaseURL:
    """The directory's database for ``config``.

    In order: ``override`` (a command's ``--database``); ``directory_database``
    when set and not empty; the first ``mysql:``/``pgsql:``/``sqlite:`` table
    of ``virtual_mailbox_domains`` (its ``*.cf`` file's hosts, user,
    password and dbname, or dbpath); else, when ``virtual_mailbox_domains``
    names no table at all, ``$config_directory/directory.sqlite``. A
    ``virtual_mailbox_domains`` of other table types (``hash:``, …) is an
    error: the directory would not be what Postfix reads.
    """
    if override:
        return parse_url(override, config.config_dir)
    raw = config.raw("directory_database")
    if raw is not None and raw.strip():
        return parse_url(config.get("directory_database"), config.config_dir)
    others: list[str] = []
    for item in config.list("virtual_mailbox_domains"):
        if ":" not in item:
            continue
        spec = item
        while spec.startswith("proxy:"):
            spec = spec[len("proxy:") :]
        kind, _, name = spec.partition(":")
        engine = SQL_TABLE_TYPES.get(kind)
        if engine is None:
            others.append(item)
            continue
        return from_cf(engine, name, config)
    if others:
        raise URLError(
            f"virtual_mailbox_domains = {' '.join(others)} is not an SQL table: set directory_database "
            "to the URL of the directory database"
        )
    return DatabaseURL("sqlite", path=os.path.join(config.config_dir, DEFAULT_SQLITE_FILE))


def from_cf(engine: Engine, name: str, config: Config) -> DatabaseURL:
    """The database a ``mysql:``/``pgsql:``/``sqlite:`` table's ``*.cf`` file connects to.

    Of several ``hosts`` the first is used: changes go to one server, the
    one listed first (lookups try them in random order).
    """
    try:
        params = CfParams(name, config)
        if engine == "sqlite":
            path = params.get_str("dbpath", min_len=1)
            return DatabaseURL("sqlite", path=path if os.path.isabs(path) else os.path.join(config.config_dir, path))
        user = params.get_str("user")
        password = params.get_str("password")
        dbname = params.get_str("dbname", min_len=1)
        hosts = split_list(params.get_str("hosts")) or ["localhost"]
    except ConfigError as exc:
        raise URLError(str(exc)) from None
    first = hosts[0]
    if engine == "pgsql" and (first.startswith("postgresql://") or first.startswith("postgres://")):
        url = parse_url(first if "/" in first.split("://", 1)[1] else first + "/" + dbname)
        return DatabaseURL("pgsql", database=dbname, host=url.host, port=url.port, socket=url.socket,
                           user=user or url.user, password=password or url.password)
    host = parse_host(first)
    if host.unix:
        return DatabaseURL(engine, database=dbname, user=user, password=password, socket=host.address)
    if engine == "mysql" and host.address == "localhost":
        # As the mysql: table (and the C client) read it: the server's default socket.
        from mailhorn.tables.mysql import default_socket

        return DatabaseURL(engine, database=dbname, user=user, password=password, socket=default_socket())
    return DatabaseURL(engine, database=dbname, user=user, password=password, host=host.address,
                       port=host.port or DEFAULT_PORTS[engine])
