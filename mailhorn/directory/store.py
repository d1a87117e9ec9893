"""The mail directory: domains, mailboxes, forwardings and transports in SQL.

A small typed repository over one DB-API connection (no ORM, design.md §6).
It reads and writes the tables of :mod:`mailhorn.directory.schema`; every
change is committed at once, so the ``mysql:``, ``pgsql:`` and ``sqlite:``
lookup tables that Postfix-style ``*.cf`` files point at see it at their next
lookup: nothing needs a reload.

Names are checked and normalised before they are stored, because the lookup
side folds keys to lower case (Postfix's dict_mysql/dict_pgsql/dict_sqlite
do) and compares exactly:

* a domain is a host name (RFC 1123 §2.1 labels of letters, digits and
  hyphens, at most 63 octets each and 253 in all, the last label not all
  digits), stored in lower case; an internationalised name is stored as its
  A-label (IDNA2008 through ``idna``, UTS #46 mapping), as Postfix matches
  A-labels;
* an address is ``local@domain`` with a dot-atom local part (RFC 5322 §3.4.1;
  UTF-8 allowed, RFC 6531), no white space or control characters, at most
  64 octets of local part and 254 in all; ASCII letters are lowered;
* a forwarding source may be ``@domain`` (catch-all); its destination may be
  ``@domain`` too (domain to domain) when the source is one.

Values that the existing columns cannot hold are refused with the
``ALTER TABLE`` that would widen them (never truncated, whatever the server's
SQL mode).

Errors: :class:`DirectoryError` carries a message for the administrator; the
driver's errors are turned into it, with the database URL (password hidden).
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import idna

from mailhorn.directory import schema
from mailhorn.directory.schema import ColumnLimit, Connection
from mailhorn.directory.url import DatabaseURL, Engine

#: Connecting gives up after this many seconds.
CONNECT_TIMEOUT = 10


class DirectoryError(Exception):
    """A request the directory refuses, or a database that fails; the text says why."""


# ---------------------------------------------------------------------------
# Names


_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
#: RFC 5322 §3.2.3 atext, ASCII part.
_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
MAX_DOMAIN = 253
MAX_LOCAL = 64
MAX_ADDRESS = 254


def _bad_character(text: str) -> str | None:
    """The first white-space or control character in ``text``, described."""
    for ch in text:
        if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            return f"U+{ord(ch):04X}"
    return None


def normalize_domain(text: str) -> str:
    """``text`` as stored: a lower-case host name, A-labels for IDN; DirectoryError if invalid."""
    bad = _bad_character(text)
    if bad is not None:
        raise DirectoryError(f"invalid domain name {text!r}: contains {bad}")
    if not text:
        raise DirectoryError("invalid domain name '': empty")
    if text.isascii():
        name = text.translate(_ASCII_LOWER)
    else:
        try:
            name = idna.encode(text, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise DirectoryError(f"invalid domain name {text!r}: {exc}") from None
    labels = name.split(".")
    if len(name) > MAX_DOMAIN:
        raise DirectoryError(f"invalid domain name {text!r}: longer than {MAX_DOMAIN} characters")
    for label in labels:
        if not _LABEL_RE.match(label):
            raise DirectoryError(f"invalid domain name {text!r}: bad label {label!r}")
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError as exc:
                raise DirectoryError(f"invalid domain name {text!r}: bad A-label {label!r}: {exc}") from None
    if labels[-1].isdigit():
        raise DirectoryError(f"invalid domain name {text!r}: the last label is numeric")
    return name


def _check_local(local: str, text: str) -> str:
    if len(local.encode("utf-8")) > MAX_LOCAL:
        raise DirectoryError(f"invalid address {text!r}: local part longer than {MAX_LOCAL} octets")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise DirectoryError(f"invalid address {text!r}: misplaced '.' in the local part")
    for ch in local:
        if ch != "." and ch not in _ATEXT and ch.isascii():
            raise DirectoryError(f"invalid address {text!r}: character {ch!r} not allowed in the local part")
    return local.translate(_ASCII_LOWER)


def normalize_address(text: str, catchall: bool = False) -> str:
    """``text`` as stored: ``local@domain`` (``@domain`` when ``catchall``)."""
    bad = _bad_character(text)
    if bad is not None:
        raise DirectoryError(f"invalid address {text!r}: contains {bad}")
    local, at, domain = text.rpartition("@")
    if not at:
        raise DirectoryError(f"invalid address {text!r}: expected local@domain")
    if not domain:
        raise DirectoryError(f"invalid address {text!r}: no domain")
    try:
        domain = normalize_domain(domain)
    except DirectoryError as exc:
        raise DirectoryError(f"invalid address {text!r}: {exc}") from None
    if not local:
        if not catchall:
            raise DirectoryError(f"invalid address {text!r}: empty local part")
        return "@" + domain
    address = _check_local(local, text) + "@" + domain
    if len(address.encode("utf-8")) > MAX_ADDRESS:
        raise DirectoryError(f"invalid address {text!r}: longer than {MAX_ADDRESS} octets")
    return address


def address_domain(address: str) -> str:
    """The domain of a normalised address or catch-all."""
    return address.rpartition("@")[2]


def normalize_transport_key(text: str) -> str:
    """A transport(5) lookup key: ``*``, ``domain``, ``.domain`` or ``user@domain``."""
    if text == "*":
        return text
    if text.startswith("."):
        return "." + normalize_domain(text[1:])
    if "@" in text:
        return normalize_address(text)
    return normalize_domain(text)


_SERVICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def check_transport(text: str) -> str:
    """A transport(5) result ``transport:nexthop`` (either part may be empty)."""
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise DirectoryError(f"invalid transport {text!r}: contains a control character")
    if text != text.strip():
        raise DirectoryError(f"invalid transport {text!r}: leading or trailing white space")
    service, colon, nexthop = text.partition(":")
    if not colon:
        raise DirectoryError(f"invalid transport {text!r}: expected transport:nexthop (transport(5))")
    if service and not _SERVICE_RE.match(service):
        raise DirectoryError(f"invalid transport {text!r}: bad transport name {service!r}")
    if nexthop.startswith("[") and "]" not in nexthop:
        raise DirectoryError(f"invalid transport {text!r}: unterminated '[' in the next hop")
    return text


def split_destinations(values: Sequence[str]) -> list[str]:
    """Destination arguments split on commas and white space, as Postfix splits results."""
    out: list[str] = []
    for value in values:
        out.extend(part for part in re.split(r"[,\s]+", value) if part)
    return out


# ---------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class User:
    """A mailbox: its address, stored password (``{SCHEME}data``) and quota in bytes."""

    email: str
    password: str
    quota: int | None


@dataclass(frozen=True)
class Forwarding:
    """A forwardings row: source address or ``@domain``, comma-separated destinations."""

    source: str
    destination: str


@dataclass(frozen=True)
class Transport:
    """A transport row: lookup key and ``transport:nexthop``."""

    domain: str
    transport: str


# ---------------------------------------------------------------------------
# Connections


def _driver_errors(engine: Engine) -> tuple[type[BaseException], ...]:
    if engine == "sqlite":
        return (sqlite3.Error,)
    if engine == "mysql":
        import pymysql  # type: ignore[import-untyped]

        return (pymysql.err.MySQLError,)
    import psycopg

    return (psycopg.Error,)


def _error_text(exc: BaseException) -> str:
    args: tuple[object, ...] = exc.args
    if len(args) >= 2 and isinstance(args[0], int):  # PyMySQL: (code, text)
        return str(args[1])
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def connect(url: DatabaseURL) -> Connection:
    """A DB-API connection to ``url`` (transactions are committed explicitly)."""
    errors = _driver_errors(url.engine)
    try:
        if url.engine == "sqlite":
            return sqlite3.connect(url.path, timeout=CONNECT_TIMEOUT)
        if url.engine == "mysql":
            import pymysql

            args: dict[str, Any] = {"unix_socket": url.socket} if url.socket else {"host": url.host,
                                                                                   "port": url.port}
            result: Connection = pymysql.connect(
                user=url.user, password=url.password, database=url.database, charset="utf8mb4",
                autocommit=False, connect_timeout=CONNECT_TIMEOUT, **args,
            )
            return result
        import psycopg

        params: dict[str, Any] = {"dbname": url.database, "connect_timeout": CONNECT_TIMEOUT}
        if url.socket:
            params["host"] = url.socket
        else:
            params["host"] = url.host
        if url.port:
            params["port"] = url.port
        if url.user:
            params["user"] = url.user
        if url.password:
            params["password"] = url.password
        return psycopg.connect(**params)
    except errors as exc:
        raise DirectoryError(f"cannot open {url.display()}: {_error_text(exc)}") from None
    except OSError as exc:
        raise DirectoryError(f"cannot open {url.display()}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------
# The repository


class Directory:
    """Domains, users, forwardings and transports in one database.

    Each changing method runs in one transaction and commits before it
    returns; on any error the transaction is rolled back.
    """

    def __init__(self, conn: Connection, engine: Engine, label: str) -> None:
        self.conn = conn
        self.engine = engine
        self.label = label
        self._errors = _driver_errors(engine)
        self._limits: dict[tuple[str, str], ColumnLimit] | None = None

    @classmethod
    def open(cls, url: DatabaseURL, create: bool = True) -> Directory:
        """Connect to ``url`` and, with ``create``, create the missing tables."""
        directory = cls(connect(url), url.engine, url.display())
        if create:
            try:
                directory.create_schema()
            except DirectoryError:
                directory.close()
                raise
        return directory

    def close(self) -> None:
        """Close the connection."""
        try:
            self.conn.close()
        except self._errors:
            pass

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn driver errors into DirectoryError and roll back on any error."""
        try:
            yield
        except self._errors as exc:
            self._rollback()
            raise DirectoryError(f"{self.label}: {_error_text(exc)}") from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        try:
            self.conn.rollback()
        except self._errors:
            pass

    def _sql(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        return schema.execute(self.conn, self.engine, sql, params)

    def create_schema(self) -> list[str]:
        """Create the missing tables (see :func:`schema.create_schema`)."""
        with self._guard():
            return schema.create_schema(self.conn, self.engine)

    def _fits(self, table: str, column: str, value: str | int) -> None:
        """Refuse a value the existing column would truncate or reject."""
        if self._limits is None:
            self._limits = schema.column_limits(self.conn, self.engine)
        limit = self._limits.get((table, column))
        if limit is None:
            raise DirectoryError(f"{self.label}: table {table} has no column {column}")
        if isinstance(value, int):
            if limit.int_fits(value):
                return
            raise DirectoryError(
                f"{value} does not fit in column {table}.{column} ({limit.sql_type}); widen it first: "
                + schema.widen_statement(self.engine, limit, 0)
            )
        if limit.text_fits(value):
            return
        raise DirectoryError(
            f"the value for {table}.{column} is {len(value)} characters long but the column is "
            f"{limit.sql_type}; nothing was changed. Widen the column first: "
            + schema.widen_statement(self.engine, limit, len(value))
        )

    def _exists(self, sql: str, *params: object) -> bool:
        return bool(self._sql(sql, *params))

    def _domain_known(self, domain: str) -> None:
        if not self._exists("SELECT domain FROM domains WHERE domain = %s", domain):
            raise DirectoryError(f"unknown domain {domain}: add it first with 'mailhorn domain add {domain}'")

    # -- domains ---------------------------------------------------------------

    def domains(self) -> list[str]:
        """Every domain, sorted."""
        with self._guard():
            return sorted(str(row[0]) for row in self._sql("SELECT domain FROM domains"))

    def add_domain(self, domain: str) -> str:
        """Add a domain; return it as stored."""
        name = normalize_domain(domain)
        with self._guard():
            if self._exists("SELECT domain FROM domains WHERE domain = %s", name):
                raise DirectoryError(f"domain {name} already exists")
            self._fits("domains", "domain", name)
            self._sql("INSERT INTO domains (domain) VALUES (%s)", name)
            self.conn.commit()
        return name

    def delete_domain(self, domain: str, force: bool = False) -> str:
        """Delete a domain; with ``force`` its users and forwardings too."""
        name = normalize_domain(domain)
        pattern = "%@" + name
        with self._guard():
            if not self._exists("SELECT domain FROM domains WHERE domain = %s", name):
                raise DirectoryError(f"domain {name} does not exist")
            users = len(self._sql("SELECT email FROM users WHERE email LIKE %s", pattern))
            aliases = len(self._sql("SELECT source FROM forwardings WHERE source LIKE %s", pattern))
            if (users or aliases) and not force:
                raise DirectoryError(
                    f"domain {name} still has {users} user(s) and {aliases} alias(es); "
                    "delete them first or use --force"
                )
            self._sql("DELETE FROM users WHERE email LIKE %s", pattern)
            self._sql("DELETE FROM forwardings WHERE source LIKE %s", pattern)
            self._sql("DELETE FROM domains WHERE domain = %s", name)
            self.conn.commit()
        return name

    def _rows(self, select: str, address_column: str, domain: str | None) -> list[tuple[Any, ...]]:
        """The rows of ``select``, only those whose address is in ``domain`` when given."""
        with self._guard():
            if domain is None:
                return self._sql(select)
            return self._sql(f"{select} WHERE {address_column} LIKE %s", "%@" + normalize_domain(domain))

    # -- users -------------------------------------------------------------------

    def users(self, domain: str | None = None) -> list[User]:
        """Every user (of ``domain``), sorted by address."""
        rows = self._rows("SELECT email, password, quota FROM users", "email", domain)
        users = [User(str(e), str(p), None if q is None else int(q)) for e, p, q in rows]
        return sorted(users, key=lambda u: u.email)

    def user(self, email: str) -> User | None:
        """One user, or None."""
        address = normalize_address(email)
        with self._guard():
            rows = self._sql("SELECT email, password, quota FROM users WHERE email = %s", address)
        if not rows:
            return None
        e, p, q = rows[0]
        return User(str(e), str(p), None if q is None else int(q))

    def check_new_user(self, email: str) -> str:
        """Refuse now what :meth:`add_user` would refuse for the name (before a password is asked)."""
        address = normalize_address(email)
        with self._guard():
            self._domain_known(address_domain(address))
            if self._exists("SELECT email FROM users WHERE email = %s", address):
                raise DirectoryError(f"user {address} already exists")
            self._fits("users", "email", address)
            self.conn.rollback()
        return address

    def add_user(self, email: str, password: str, quota: int | None = None) -> str:
        """Add a mailbox with a stored password; ``quota`` None keeps the column default."""
        address = normalize_address(email)
        with self._guard():
            self._domain_known(address_domain(address))
            if self._exists("SELECT email FROM users WHERE email = %s", address):
                raise DirectoryError(f"user {address} already exists")
            self._fits("users", "email", address)
            self._fits("users", "password", password)
            if quota is None:
                self._sql("INSERT INTO users (email, password) VALUES (%s, %s)", address, password)
            else:
                self._fits("users", "quota", quota)
                self._sql("INSERT INTO users (email, password, quota) VALUES (%s, %s, %s)",
                          address, password, quota)
            self.conn.commit()
        return address

    def _require_user(self, address: str) -> None:
        if not self._exists("SELECT email FROM users WHERE email = %s", address):
            raise DirectoryError(f"user {address} does not exist")

    def set_password(self, email: str, password: str) -> str:
        """Replace a user's stored password."""
        address = normalize_address(email)
        with self._guard():
            self._require_user(address)
            self._fits("users", "password", password)
            self._sql("UPDATE users SET password = %s WHERE email = %s", password, address)
            self.conn.commit()
        return address

    def set_quota(self, email: str, quota: int) -> str:
        """Set a user's quota in bytes."""
        address = normalize_address(email)
        with self._guard():
            self._require_user(address)
            self._fits("users", "quota", quota)
            self._sql("UPDATE users SET quota = %s WHERE email = %s", quota, address)
            self.conn.commit()
        return address

    def delete_user(self, email: str) -> str:
        """Delete a mailbox row (the Maildir on disk is left alone)."""
        address = normalize_address(email)
        with self._guard():
            self._require_user(address)
            self._sql("DELETE FROM users WHERE email = %s", address)
            self.conn.commit()
        return address

    # -- forwardings ---------------------------------------------------------------

    def forwardings(self, domain: str | None = None) -> list[Forwarding]:
        """Every forwarding (whose source is in ``domain``), sorted by source."""
        rows = self._rows("SELECT source, destination FROM forwardings", "source", domain)
        return sorted((Forwarding(str(s), str(d)) for s, d in rows), key=lambda f: f.source)

    def add_forwarding(self, source: str, destinations: Sequence[str]) -> Forwarding:
        """Add ``source`` → ``destinations`` (catch-all and domain-to-domain forms included)."""
        src = normalize_address(source, catchall=True)
        dests = split_destinations(destinations)
        if not dests:
            raise DirectoryError(f"alias {src}: no destination given")
        normalized: list[str] = []
        for dest in dests:
            value = normalize_address(dest, catchall=src.startswith("@"))
            if value.startswith("@") and len(dests) > 1:
                raise DirectoryError(
                    f"alias {src}: a domain destination ({value}) must be the only destination")
            if value == src:
                raise DirectoryError(f"alias {src}: forwards to itself")
            if value not in normalized:
                normalized.append(value)
        destination = ",".join(normalized)
        with self._guard():
            self._domain_known(address_domain(src))
            if self._exists("SELECT source FROM forwardings WHERE source = %s", src):
                raise DirectoryError(f"alias {src} already exists")
            self._fits("forwardings", "source", src)
            self._fits("forwardings", "destination", destination)
            self._sql("INSERT INTO forwardings (source, destination) VALUES (%s, %s)", src, destination)
            self.conn.commit()
        return Forwarding(src, destination)

    def delete_forwarding(self, source: str) -> str:
        """Delete the forwarding of ``source``."""
        src = normalize_address(source, catchall=True)
        with self._guard():
            if not self._exists("SELECT source FROM forwardings WHERE source = %s", src):
                raise DirectoryError(f"alias {src} does not exist")
            self._sql("DELETE FROM forwardings WHERE source = %s", src)
            self.conn.commit()
        return src

    # -- transport -----------------------------------------------------------------

    def transports(self, domain: str | None = None) -> list[Transport]:
        """Every transport entry (for ``domain``: the domain, ``.domain`` and its addresses)."""
        with self._guard():
            rows = self._sql("SELECT domain, transport FROM transport")
        entries = [Transport(str(d), str(t)) for d, t in rows]
        if domain is not None:
            name = normalize_domain(domain)
            entries = [e for e in entries
                       if e.domain in (name, "." + name) or e.domain.endswith("@" + name)]
        return sorted(entries, key=lambda e: e.domain)

    def add_transport(self, key: str, transport: str) -> Transport:
        """Add a transport entry for ``key``."""
        name = normalize_transport_key(key)
        value = check_transport(transport)
        with self._guard():
            if self._exists("SELECT domain FROM transport WHERE domain = %s", name):
                raise DirectoryError(f"transport for {name} already exists")
            self._fits("transport", "domain", name)
            self._fits("transport", "transport", value)
            self._sql("INSERT INTO transport (domain, transport) VALUES (%s, %s)", name, value)
            self.conn.commit()
        return Transport(name, value)

    def delete_transport(self, key: str, expected: str | None = None) -> str:
        """Delete the transport entry of ``key`` (only if it is ``expected``, when given)."""
        name = normalize_transport_key(key)
        with self._guard():
            rows = self._sql("SELECT transport FROM transport WHERE domain = %s", name)
            if not rows:
                raise DirectoryError(f"transport for {name} does not exist")
            if expected is not None and str(rows[0][0]) != expected:
                raise DirectoryError(f"transport for {name} is {rows[0][0]}, not {expected}")
            self._sql("DELETE FROM transport WHERE domain = %s", name)
            self.conn.commit()
        return name
