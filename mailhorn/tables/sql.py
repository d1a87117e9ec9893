"""SQL lookup tables: what ``mysql:``, ``pgsql:`` and ``sqlite:`` share.

A SQL table is named by a parameter file (``mysql:/etc/postfix/x.cf``) written
in main.cf syntax, as mysql_table(5), pgsql_table(5) and sqlite_table(5)
describe. A name that does not start with ``/`` or ``.`` selects the obsolete
form where the parameters live in main.cf as ``NAME_hosts``, ``NAME_query``, …

Parameters read here (every engine):

``query``
    the SQL template; without it, the legacy ``select_field``, ``table``,
    ``where_field`` and ``additional_conditions`` build
    ``SELECT f FROM t WHERE w = '%s' extra``.
``result_format`` (default ``%s``)
    applied to each returned value; the values are joined with commas.
``domain``
    a list of domain names, ``/file`` names and ``type:table`` tables; when
    set, only ``user@domain`` keys with a non-empty local part and a listed
    domain are looked up. ``!name`` excludes a domain.
``expansion_limit`` (default 0: no limit)
    more result values than this is a temporary error, as in Postfix.

Template expansions (db_common_expand in Postfix): ``%%``; ``%s`` the key;
``%u`` the local part of ``user@domain`` (the whole key without ``@``); ``%d``
the domain; ``%1``..``%9`` the domain's labels counted from the right;
``%S %U %D`` the same in a query, and the *key's* parts in result_format,
where lower-case letters apply to the returned value. A key lacking a part the
templates need is not looked up at all: the answer is "not found". The key is
split at its last ``@``; empty domain labels do not count.

Values substituted into a query are quoted for the target engine by the
driver, on the very connection that runs the query (MySQL's
NO_BACKSLASH_ESCAPES and PostgreSQL's standard_conforming_strings decide).

Connections: one :class:`ConnectionPool` per table, shared by every thread and
every user of the table (the registry caches tables by name, ``proxy:``
included). Hosts are tried in random order, UNIX-domain sockets before TCP; a
host that failed is skipped for ``retry_interval`` and connections idle for
``idle_interval`` are closed when next touched (60s each: Postfix's fixed
intervals, settable here as a mailhorn addition). A pooled connection that the
server dropped is replaced once before the host counts as failed (Postfix
would fail that lookup). ``timeout`` (default 10s; a mailhorn addition) bounds
connecting and each read, so a dead server becomes a temporary error quickly
where Postfix's client can wait indefinitely. A failed SQL statement is a
temporary error but, unlike Postfix, does not mark the host dead.

Errors: :class:`TableConfigError` (with file, line and parameter) for a
missing or malformed file, a missing query, a bad template or number;
:class:`TableRetry` when no server answers, a query fails, or the expansion
limit is exceeded. Never "not found" for a failure.
"""

from __future__ import annotations

import abc
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from mailhorn import log
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.config.maincf import Entry, last_wins, parse_main_cf, split_list
from mailhorn.tables.base import OpenOptions, TableConfigError, TableRetry

#: Postfix's fixed intervals for dead hosts and idle connections (dict_mysql.c).
RETRY_INTERVAL = 60
IDLE_INTERVAL = 60
#: Default bound on connecting and on each read from the server, in seconds.
DEFAULT_TIMEOUT = 10

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_key(key: str) -> str:
    """Lower-case ASCII letters only, as Postfix's lowercase() does."""
    return key.translate(_ASCII_LOWER)


# ---------------------------------------------------------------------------
# The parameter file


class CfParams:
    """The parameters of one SQL table, from its ``*.cf`` file or main.cf.

    Errors name the file (and line, when a value is at fault) the way Postfix's
    cfg_parser does: ``FILE: bad string length 0 < 1: dbname = ``.
    """

    def __init__(self, name: str, config: Config) -> None:
        self.name = name
        self._config: Config | None = None
        self._entries: dict[str, Entry] = {}
        #: Values used when the parameter is not set (legacy forms).
        self.fallback: dict[str, str] = {}
        if name.startswith("/") or name.startswith("."):
            self.file: str | None = name
            try:
                with open(name, encoding="utf-8", errors="surrogateescape") as f:
                    text = f.read()
            except OSError as exc:
                raise TableConfigError(f"open {name}: {os.strerror(exc.errno or 0)}") from exc
            try:
                self._entries = last_wins(parse_main_cf(text, name))
            except ConfigError as exc:
                raise TableConfigError(exc.message, file=exc.file, line=exc.line) from exc
        else:
            # mysql_table(5) "OBSOLETE MAIN.CF PARAMETERS": NAME_param in main.cf.
            self.file = None
            self._config = config

    def _label(self, param: str) -> str:
        return param if self.file is not None else f"{self.name}_{param}"

    def raw(self, param: str) -> str | None:
        """The value as written, or None when the parameter is not set."""
        if self._config is not None:
            if self._config.raw(self._label(param)) is not None:
                return self._config.get(self._label(param))
        else:
            entry = self._entries.get(param)
            if entry is not None:
                return entry.value
        return self.fallback.get(param)

    def error(self, param: str, message: str) -> TableConfigError:
        """A configuration error about ``param``, located in the file."""
        entry = self._entries.get(param)
        return TableConfigError(
            message, file=self.file, line=entry.line if entry else None, param=self._label(param)
        )

    def get_str(self, param: str, default: str = "", min_len: int = 0) -> str:
        """A string parameter; shorter than ``min_len`` is an error (cfg_get_str)."""
        value = self.raw(param)
        value = default if value is None else value
        if len(value) < min_len:
            raise self.error(param, f"bad string length {len(value)} < {min_len}: {self._label(param)} = {value}")
        return value

    def get_int(self, param: str, default: int) -> int:
        """A whole-number parameter (cfg_get_int)."""
        value = self.raw(param)
        if value is None:
            return default
        try:
            return int(value.strip(), 10)
        except ValueError:
            raise self.error(param, f"bad numerical configuration: {self._label(param)} = {value}") from None

    def get_bool(self, param: str, default: bool) -> bool:
        """A yes/no parameter (cfg_get_bool)."""
        value = self.raw(param)
        if value is None:
            return default
        word = value.strip().lower()
        if word in ("yes", "true", "1"):
            return True
        if word in ("no", "false", "0"):
            return False
        raise self.error(param, f"bad boolean configuration: {self._label(param)} = {value}")

    def get_seconds(self, param: str, default: int) -> float:
        """A positive time value in seconds (suffix s, m or h allowed); mailhorn's own knobs."""
        value = self.raw(param)
        if value is None:
            return float(default)
        text = value.strip().lower()
        units = {"s": 1, "m": 60, "h": 3600}
        scale = 1
        if text and text[-1] in units:
            scale = units[text[-1]]
            text = text[:-1]
        try:
            number = float(text)
        except ValueError:
            raise self.error(param, f"invalid time value: {self._label(param)} = {value}") from None
        if number <= 0:
            raise self.error(param, f"invalid time value: {self._label(param)} = {value}")
        return number * scale

    def query(self) -> str:
        """``query``, or the legacy select_field/table/where_field form."""
        query = self.get_str("query")
        if query:
            return query
        table = self.get_str("table", min_len=1)
        select_field = self.get_str("select_field", min_len=1)
        where_field = self.get_str("where_field", min_len=1)
        extra = self.get_str("additional_conditions")
        return f"SELECT {select_field} FROM {table} WHERE {where_field} = '%s' {extra}"


# ---------------------------------------------------------------------------
# Templates


def split_address(text: str) -> tuple[str, str | None]:
    """(local part, domain) split at the last ``@``; domain None without ``@``."""
    at = text.rfind("@")
    if at < 0:
        return text, None
    return text[:at], text[at + 1 :]


def domain_labels(domain: str) -> list[str]:
    """The non-empty labels of a domain (``a..com`` has two)."""
    return [label for label in domain.split(".") if label]


@dataclass(frozen=True)
class Template:
    """A parsed ``query`` or ``result_format`` template (db_common_parse)."""

    text: str
    pieces: tuple[str, ...]  # literal text and "%x" directives, in order
    key_user: bool = False
    key_domain: bool = False
    key_parts: int = 0

    @classmethod
    def parse(cls, text: str, what: str, source: str, for_query: bool) -> Template:
        """Parse ``text``; an unknown ``%`` sequence is a configuration error."""
        pieces: list[str] = []
        literal: list[str] = []
        key_user = key_domain = False
        key_parts = 0
        i = 0
        while i < len(text):
            ch = text[i]
            if ch != "%":
                literal.append(ch)
                i += 1
                continue
            code = text[i + 1] if i + 1 < len(text) else ""
            if code == "%":
                literal.append("%")
            elif code and code in "sudSUD123456789":
                if literal:
                    pieces.append("".join(literal))
                    literal = []
                pieces.append("%" + code)
                # In a query every directive expands the key; in result_format
                # only the upper-case and digit ones do (mysql_table(5)).
                if code in "uU" and (for_query or code == "U"):
                    key_user = True
                elif code in "dD" and (for_query or code == "D"):
                    key_domain = True
                elif code.isdigit():
                    key_parts = max(key_parts, int(code))
            else:
                raise TableConfigError(f"db_common_parse: {source}: Invalid {what} template: {text}")
            i += 2
        if literal:
            pieces.append("".join(literal))
        return cls(text, tuple(pieces), key_user, key_domain, key_parts)

    def key_ok(self, key: str) -> bool:
        """Whether ``key`` has every part this template takes from it."""
        local, domain = split_address(key)
        if self.key_user and domain is not None and not local:
            return False
        if self.key_domain and not domain:
            return False
        if self.key_parts:
            if domain is None or len(domain_labels(domain)) < self.key_parts:
                return False
        return True

    def expand_query(self, key: str, quote: Callable[[str], str]) -> str | None:
        """The query for ``key`` with quoted substitutions; None to suppress it."""
        if not key or not self.key_ok(key):
            return None
        local, domain = split_address(key)
        out: list[str] = []
        for piece in self.pieces:
            if len(piece) == 2 and piece[0] == "%":
                out.append(quote(_key_part(piece[1].lower(), key, local, domain)))
            else:
                out.append(piece)
        return "".join(out)

    def format_value(self, value: str, key: str) -> str | None:
        """``value`` through result_format; None when the value is skipped."""
        if not value:
            return None
        vlocal, vdomain = split_address(value)
        klocal, kdomain = split_address(key)
        out: list[str] = []
        for piece in self.pieces:
            if not (len(piece) == 2 and piece[0] == "%"):
                out.append(piece)
                continue
            code = piece[1]
            if code == "s":
                out.append(value)
            elif code == "u":
                if vdomain is not None and not vlocal:
                    return None
                out.append(vlocal)
            elif code == "d":
                if not vdomain:
                    return None
                out.append(vdomain)
            else:
                out.append(_key_part(code.lower(), key, klocal, kdomain))
        return "".join(out)


def _key_part(code: str, key: str, local: str, domain: str | None) -> str:
    """The part of the key a (lower-cased) directive names; key_ok() was checked."""
    if code == "s":
        return key
    if code == "u":
        return local
    if code == "d":
        return domain or ""
    labels = domain_labels(domain or "")
    return labels[-int(code)]


# ---------------------------------------------------------------------------
# The domain filter


class DomainFilter:
    """The ``domain`` parameter: which keys are eligible for a query.

    Postfix (db_common_check_domain): only ``user@domain`` keys with a
    non-empty local part; the domain is matched against the list in order,
    names case-insensitively and exactly (no subdomains), ``/file`` entries
    read as more names, ``type:table`` entries by looking the domain up;
    ``!entry`` turns a match into a refusal.
    """

    def __init__(self, value: str, config: Config, source: str) -> None:
        self._patterns: list[tuple[bool, str]] = []
        self._tables: dict[str, object] = {}
        self._config = config
        for item in split_list(value):
            self._add(item, source)
        self.active = bool(self._patterns)

    def _add(self, item: str, source: str) -> None:
        negate = False
        while item.startswith("!"):
            negate = not negate
            item = item[1:]
        if item.startswith("/"):
            try:
                with open(item, encoding="utf-8", errors="surrogateescape") as f:
                    text = f.read()
            except OSError as exc:
                raise TableConfigError(f"open file {item}: {os.strerror(exc.errno or 0)}") from exc
            for line in text.splitlines():
                line = line.split("#", 1)[0] if line.lstrip().startswith("#") else line
                for word in split_list(line):
                    self._patterns.append((negate, fold_key(word)))
            return
        if ":" in item:
            self._patterns.append((negate, item))
            return
        self._patterns.append((negate, fold_key(item)))

    def allows(self, key: str) -> bool:
        """Whether ``key`` may be looked up."""
        if not self.active:
            return True
        local, domain = split_address(key)
        if domain is None or not local:
            return False
        folded = fold_key(domain)
        for negate, pattern in self._patterns:
            if ":" in pattern:
                hit = self._table_has(pattern, folded)
            else:
                hit = pattern == folded
            if hit:
                return not negate
        return False

    def _table_has(self, spec: str, domain: str) -> bool:
        from mailhorn.tables.registry import open_table

        table = open_table(spec, self._config)
        try:
            return table.lookup(domain) is not None
        except TableRetry as exc:
            raise TableRetry(f"'domain' pattern match failed for '{domain}': {exc}") from exc


# ---------------------------------------------------------------------------
# Hosts and the connection pool


@dataclass(frozen=True)
class Host:
    """One entry of ``hosts``: a UNIX-domain socket path or a TCP host[:port]."""

    text: str  # as written, for messages
    unix: bool
    address: str  # socket path, host name, or a connection URI
    port: int | None = None


def parse_host(text: str) -> Host:
    """Parse ``unix:/path``, ``/path``, ``inet:host[:port]`` or ``host[:port]``."""
    if text.startswith("unix:"):
        return Host(text, True, text[5:])
    if text.startswith("/"):
        return Host(text, True, text)
    rest = text[5:] if text.startswith("inet:") else text
    if rest.startswith("["):
        end = rest.find("]")
        host, tail = rest[1:end], rest[end + 1 :]
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = rest.partition(":")
    port = int(port_text) if port_text.isdigit() else None
    return Host(text, False, host, port)


class ConnectError(Exception):
    """Connecting to a host failed (the text is the server's or the system's)."""


class ConnectionLost(Exception):
    """The connection broke while in use; another connection may succeed."""


class QueryError(Exception):
    """The server refused the query (SQL error); the connection is still good."""


C = TypeVar("C")


class Driver(Protocol[C]):
    """What an engine module supplies to the pool."""

    def connect(self, host: Host) -> C:
        """A new connection; raise ConnectError."""
        ...

    def close(self, conn: C) -> None:
        """Close quietly."""
        ...


@dataclass
class _HostState:
    host: Host
    failed_until: float = 0.0
    tried: bool = False
    idle: list[tuple[Any, float]] = field(default_factory=list)


class ConnectionPool(Generic[C]):
    """Connections to a table's hosts, shared by threads (one user per connection)."""

    def __init__(self, label: str, hosts: Sequence[Host], driver: Driver[C],
                 retry_interval: float = RETRY_INTERVAL, idle_interval: float = IDLE_INTERVAL) -> None:
        self.label = label
        self._driver = driver
        self._states = [_HostState(h) for h in hosts]
        self._retry = retry_interval
        self._idle = idle_interval
        self._lock = threading.Lock()

    def _candidates(self) -> list[_HostState]:
        """Hosts in the order to try (dict_mysql_get_active): live ones first."""
        now = time.monotonic()
        live: list[_HostState] = []
        others: list[_HostState] = []
        for state in self._states:
            if state.failed_until > now:
                continue
            (live if state.tried and state.failed_until == 0.0 else others).append(state)
        random.shuffle(live)
        random.shuffle(others)
        live.sort(key=lambda s: not s.host.unix)
        others.sort(key=lambda s: not s.host.unix)
        return live + others

    def _take_idle(self, state: _HostState) -> C | None:
        now = time.monotonic()
        with self._lock:
            stale = [c for c, t in state.idle if now - t > self._idle]
            state.idle = [(c, t) for c, t in state.idle if now - t <= self._idle]
            conn = state.idle.pop()[0] if state.idle else None
        for old in stale:
            self._driver.close(old)
        return conn

    def _connect(self, state: _HostState) -> C | None:
        try:
            conn = self._driver.connect(state.host)
        except ConnectError as exc:
            log.warning(f"connect to {self.label} server {state.host.text}: {exc}")
            self._mark_failed(state)
            return None
        with self._lock:
            state.tried = True
            state.failed_until = 0.0
        return conn

    def _mark_failed(self, state: _HostState) -> None:
        with self._lock:
            state.tried = True
            state.failed_until = time.monotonic() + self._retry
            idle = [c for c, _ in state.idle]
            state.idle = []
        for conn in idle:
            self._driver.close(conn)

    def run(self, work: Callable[[C], object]) -> object:
        """Run ``work(connection)`` on the first host that answers.

        ``work`` raises ConnectionLost (try a fresh connection, then the next
        host) or QueryError (give up: TableRetry). No host → TableRetry.
        """
        last = "no available hosts"
        for state in self._candidates():
            conn: C | None = self._take_idle(state)
            reused = conn is not None
            if conn is None:
                conn = self._connect(state)
                if conn is None:
                    last = f"cannot connect to {state.host.text}"
                    continue
            for attempt in (0, 1):
                try:
                    result = work(conn)
                except ConnectionLost as exc:
                    self._driver.close(conn)
                    last = str(exc)
                    if attempt == 0 and reused:
                        # The server dropped an idle connection: reconnect once.
                        conn = self._connect(state)
                        if conn is None:
                            break
                        continue
                    log.warning(f"{self.label} query failed on host {state.host.text}: {exc}")
                    self._mark_failed(state)
                    break
                except QueryError as exc:
                    self._give_back(state, conn)
                    raise TableRetry(str(exc)) from exc
                except BaseException:
                    self._driver.close(conn)
                    raise
                self._give_back(state, conn)
                return result
        raise TableRetry(f"{self.label}: {last}")

    def _give_back(self, state: _HostState, conn: C) -> None:
        with self._lock:
            state.idle.append((conn, time.monotonic()))

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            conns = [c for s in self._states for c, _ in s.idle]
            for s in self._states:
                s.idle = []
        for conn in conns:
            self._driver.close(conn)


# ---------------------------------------------------------------------------
# The table


Value = str | None


class SqlTable(abc.ABC):
    """The lookup logic common to the SQL engines.

    Subclasses provide :meth:`fetch`: run the query for ``key`` (expanding the
    template with the engine's quoting) and return the values, row by row, in
    the order Postfix walks them (NULL as None).
    """

    #: Whether a NULL value draws the "empty lookup result" warning (pgsql).
    warn_on_null = False
    #: How the expansion-limit warning reads (differs per engine in Postfix).
    limit_message = "Expansion limit exceeded for key: '{key}'"

    def __init__(self, kind: str, name: str, params: CfParams, config: Config, options: OpenOptions) -> None:
        self._type = kind
        self._name = name
        self.params = params
        self.fold_case = options.fold_case
        source = params.file or name
        self.query = Template.parse(params.query(), "query", source, True)
        self.result_format = Template.parse(params.get_str("result_format", "%s", min_len=1), "result",
                                            source, False)
        self.domain = DomainFilter(params.get_str("domain"), config, source)
        self.expansion_limit = params.get_int("expansion_limit", 0)

    @property
    def type(self) -> str:
        return self._type

    @property
    def name(self) -> str:
        return self._name

    def lookup(self, key: str) -> str | None:
        """The comma-joined, formatted values for ``key``, or None."""
        if self.fold_case:
            key = fold_key(key)
        if not key or "\0" in key or not _valid_utf8(key):
            return None
        if not self.domain.allows(key):
            return None
        if not self.query.key_ok(key) or not self.result_format.key_ok(key):
            return None
        return self._format(self.fetch(key), key)

    @abc.abstractmethod
    def fetch(self, key: str) -> Iterable[Value]:
        """Run the query for ``key``: each engine (mysql, pgsql, sqlite) implements it."""

    def _format(self, values: Iterable[Value], key: str) -> str | None:
        parts: list[str] = []
        for value in values:
            if value is None and not self.warn_on_null:
                continue
            if not value:
                log.warning(f'table "{self._type}:{self._name}": empty lookup result for: "{key}" -- ignored')
                continue
            formatted = self.result_format.format_value(value, key)
            if formatted is None:
                continue
            parts.append(formatted)
            if 0 < self.expansion_limit < len(parts):
                log.warning(f"dict_{self._type}_lookup: {self._name}: " + self.limit_message.format(key=key))
                raise TableRetry(f"{self._type}:{self._name}: expansion limit exceeded for key: '{key}'")
        return ",".join(parts) if parts else None

    def close(self) -> None:
        """Release connections (engines override)."""


def _valid_utf8(text: str) -> bool:
    """Whether the key came from valid UTF-8 (no surrogate escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
