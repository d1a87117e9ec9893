"""Postfix's match lists: ``mydestination``, ``relay_domains``, ``mynetworks`` ...

A match list is a parameter value whose elements are separated by commas
and/or white space (``{ }`` keeps an inline table whole). Each element is:

* ``!pattern``: a match of ``pattern`` means "not in the list" and ends the
  search; ``!`` may be repeated, each one flips the sense;
* ``/file/name``: the file's patterns (several per line, ``#`` comment lines,
  continuation lines that start with white space) replace the element;
  ``!/file/name`` negates every pattern in it. A file that cannot be opened
  becomes a stand-in table whose every lookup fails (Postfix's "nofile:"
  surrogate): matching the list then reports a temporary error;
* ``type:table``: the list matches when the lookup finds the key, whatever the
  result (postconf(5) mynetworks); a table that cannot be opened is replaced
  by a stand-in whose lookups fail;
* anything else: a string, domain, address or ``net/mask``, compared without
  regard to case.

The list is searched left to right and the first pattern that matches
decides. What "matches" means depends on the list type (Postfix's
match_string, match_hostname, match_hostaddr):

* :class:`StringList` (string_list): the string equals the pattern, or a
  table has the string as a key.
* :class:`DomainList` (domain_list: ``mydestination``, ``relay_domains``,
  ``virtual_alias_domains`` ...): the name equals the pattern; a pattern
  ``.example.com`` matches every name below example.com; when the parameter
  is listed in ``parent_domain_matches_subdomains`` ("parent style"), the
  pattern ``example.com`` also matches every name below it, and a dotted
  pattern then matches only itself (postconf(5)
  parent_domain_matches_subdomains; Postfix's match_hostname). A table is
  searched for the name, then for each parent domain, as ``example.com``
  in parent style and as ``.example.com`` otherwise; regexp:, pcre: and
  cidr: tables are asked for the whole name only.
* :class:`NamadrList` (namadr_list: ``mynetworks``, ``debug_peer_list``,
  ``smtpd_client_event_limit_exceptions`` ...): each pattern is tried as a
  domain pattern against the client name, then as an address pattern against
  the client address: the same address (``1.2.3.4``, ``[::1]``), a network
  ``net/mask`` (``127.0.0.0/8``, ``[2001:db8::]/32``, ``[::1]/128``), or a
  table searched with the address (a ``cidr:`` table matches by network).
  Addresses are compared in binary form, so ``[0:0::1]`` matches ``::1``;
  an IPv4 address never matches an IPv6 pattern or the other way round.
* :class:`AddrMatchList` (addr_match_list): address patterns only.

Errors:

* :class:`MatchListError` (a :class:`ConfigError`, naming the parameter and,
  for files, the file and line): ``no pattern after '!'``, ``/file`` nesting
  too deep, a file that cannot be read. Postfix stops with a fatal error here.
* :class:`MatchListRetry` (a :class:`TableRetry`): a table lookup failed, a
  stand-in table was asked, or a ``net/mask`` pattern is bad (``bad mask
  length in "1.2.3.4/33"``, ``non-null host address bits in "127.0.0.1/8",
  perhaps you should use "127.0.0.0/8" instead``). Postfix logs
  ``warning: PARAM: ...`` and the caller defers (4xx), never "no match"
  (design.md §5 rule 4). The warning is logged here, once per failure.

Parameters read: the list's own parameter (by the ``*_from_config``
helpers) and ``parent_domain_matches_subdomains``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from mailhorn import log
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.config.maincf import parse_logical_lines, split_list
from mailhorn.tables.base import Table, TableConfigError, TableRetry
from mailhorn.tables.cidr import Network, format_address, parse_address, parse_network
from mailhorn.tables.registry import open_table, split_spec

#: Table types that match patterns rather than fixed keys (not DICT_FLAG_FIXED):
#: they are not asked for parent domains.
PATTERN_TYPES = frozenset({"regexp", "pcre", "cidr"})

#: How deep ``/file`` patterns may include further ``/file`` patterns.
MAX_FILE_DEPTH = 8

_V4_CHARS = frozenset("01234567890.")
_V6_CHARS = _V4_CHARS | frozenset("abcdefABCDEF:")
_CIDR_CHARS = _V6_CHARS | frozenset("[]/")


class MatchListError(ConfigError):
    """A match list that cannot be used at all (Postfix: fatal)."""


class MatchListRetry(TableRetry):
    """The list could not be searched: the caller must defer, not decide."""


class Matcher(Enum):
    """Which comparison a list applies (Postfix's match functions)."""

    STRING = "string"
    HOSTNAME = "hostname"
    HOSTADDR = "hostaddr"


@dataclass
class Entry:
    """One pattern of a list, after ``/file`` expansion."""

    negate: bool
    pattern: str
    table: Table | None = None
    unavailable: str | None = None
    network: Network | str | None = field(default=None, compare=False)
    is_table: bool = field(init=False, compare=False)
    """A ``type:table`` entry (opened or not), fixed at construction."""

    def __post_init__(self) -> None:
        self.is_table = self.table is not None or self.unavailable is not None


#: Answers a pattern-only list remembers before it starts over.
_MEMO_SIZE = 4096


@functools.lru_cache(maxsize=4096)
def _address_like(addr: str) -> bool:
    """Whether ``addr`` has only the characters of an IPv4/IPv6 address (clients
    repeat, so the answer is remembered)."""
    return all(ch in _V6_CHARS for ch in addr)


@functools.lru_cache(maxsize=4096)
def _parsed_address(addr: str) -> tuple[int, int] | None:
    """:func:`parse_address`, remembered per client address."""
    return parse_address(addr)


def _is_dictionary(pattern: str) -> bool:
    """Postfix's MATCH_DICTIONARY: a ``:`` outside an ``[address]``."""
    return not pattern.startswith("[") and ":" in pattern


class MatchList:
    """A parsed list; subclasses fix which comparisons apply."""

    matchers: tuple[Matcher, ...] = (Matcher.STRING,)

    def __init__(self, param: str, patterns: str, config: Config, *, parent: bool = False) -> None:
        self.param = param
        self.parent = parent
        self.config = config
        self.entries: list[Entry] = []
        self._parse(patterns, False, 0, None, None)
        by_kind: dict[Matcher, Callable[[Entry, str], bool]] = {
            Matcher.STRING: self._match_string,
            Matcher.HOSTNAME: self._match_hostname,
            Matcher.HOSTADDR: self._match_hostaddr,
        }
        #: The comparison of each argument of :meth:`_matches`, in order.
        self._funcs = tuple(by_kind[m] for m in self.matchers)
        #: Answers already given, for a list of patterns only (no tables):
        #: its answer depends on nothing but the arguments, and the same
        #: client is matched against the same list several times a session.
        self._memo: dict[tuple[str, ...], bool] | None = (
            None if any(entry.is_table for entry in self.entries) else {})

    # -- building ---------------------------------------------------------
    def _error(self, text: str, file: str | None, line: int | None) -> MatchListError:
        return MatchListError(f"{self.param}: {text}", file=file, line=line, param=self.param)

    def _parse(self, text: str, negate: bool, depth: int, file: str | None, line: int | None) -> None:
        for item in split_list(text):
            sense = negate
            while item.startswith("!"):
                sense = not sense
                item = item[1:]
            if not item:
                raise self._error("no pattern after '!'", file, line)
            if item.startswith("/"):
                self._parse_file(item, sense, depth, file, line)
            elif _is_dictionary(item):
                self.entries.append(self._open(item, sense))
            else:
                self.entries.append(Entry(sense, item.casefold()))

    def _parse_file(self, path: str, negate: bool, depth: int, file: str | None, line: int | None) -> None:
        if depth >= MAX_FILE_DEPTH:
            raise self._error(f"{path}: /file patterns nested deeper than {MAX_FILE_DEPTH} levels", file, line)
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as fp:
                text = fp.read()
        except IsADirectoryError:
            raise self._error(f"read file {path}: Is a directory", file, line) from None
        except OSError as exc:
            reason = f"open file {path}: {exc.strerror or exc}"
            log.warning(f"{self.param}: {reason}")
            self.entries.append(Entry(False, f"nofile:{path}", unavailable=reason))
            return
        for number, logical in parse_logical_lines(text):
            self._parse(logical, negate, depth + 1, path, number)

    def _open(self, spec: str, negate: bool) -> Entry:
        try:
            table = open_table(spec, self.config)
        except (TableConfigError, TableRetry, ConfigError, OSError) as exc:
            reason = str(exc)
            log.warning(f"{self.param}: {spec}: {reason}")
            return Entry(negate, spec, unavailable=reason)
        return Entry(negate, spec, table=table)

    # -- matching -----------------------------------------------------------
    def _retry(self, text: str) -> MatchListRetry:
        log.warning(f"{self.param}: {text}")
        return MatchListRetry(f"{self.param}: {text}")

    def _lookup(self, entry: Entry, key: str) -> bool:
        """Whether a table entry has ``key``; failures raise MatchListRetry."""
        if entry.unavailable is not None:
            log.warning(f"{entry.pattern} is unavailable. {entry.unavailable}")
            raise self._retry(f"{entry.pattern}: table lookup problem")
        assert entry.table is not None
        try:
            return entry.table.lookup(key) is not None
        except (TableRetry, TableConfigError) as exc:
            log.warning(f"{entry.pattern}: {exc}")
            raise self._retry(f"{entry.pattern}: table lookup problem") from exc

    def _match_string(self, entry: Entry, string: str) -> bool:
        if entry.is_table:
            return self._lookup(entry, string)
        return string == entry.pattern

    def _match_hostname(self, entry: Entry, name: str) -> bool:
        if entry.is_table:
            fixed = entry.table is None or split_spec(entry.pattern)[0] not in PATTERN_TYPES
            pos = 0
            while pos < len(name):
                if (pos == 0 or fixed) and self._lookup(entry, name[pos:]):
                    return True
                nxt = name.find(".", pos + 1)
                if nxt < 0:
                    break
                pos = nxt + 1 if self.parent else nxt
            return False
        pattern = entry.pattern
        if name == pattern:
            return True
        start = len(name) - len(pattern)
        if self.parent:
            return start > 0 and name[start - 1] == "." and name[start:] == pattern
        if pattern.startswith("."):
            return start > 0 and name[start:] == pattern
        return False

    def _match_hostaddr(self, entry: Entry, addr: str) -> bool:
        if not _address_like(addr):
            return False
        if entry.is_table:
            return self._lookup(entry, addr)
        pattern = entry.pattern
        if not pattern.startswith("["):
            if addr == pattern:
                return True
        elif pattern == f"[{addr}]":
            return True
        if (
            (":" in addr) != (":" in pattern)
            or not any(ch in ":/" for ch in pattern)
            or all(ch in _V4_CHARS for ch in pattern)
            or not all(ch in _CIDR_CHARS for ch in pattern)
        ):
            return False
        if entry.network is None:
            entry.network = parse_network(pattern)
        if isinstance(entry.network, str):
            raise self._retry(entry.network)
        parsed = _parsed_address(addr)
        return parsed is not None and entry.network.contains(*parsed)

    def _matches(self, *args: str) -> bool:
        memo = self._memo
        if memo is not None:
            known = memo.get(args)
            if known is not None:
                return known
        found = self._search(args)
        if memo is not None:
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[args] = found
        return found

    def _search(self, args: tuple[str, ...]) -> bool:
        pairs = tuple(zip(self._funcs, [arg.casefold() for arg in args]))
        for entry in self.entries:
            for func, arg in pairs:
                if func(entry, arg):
                    return not entry.negate
        return False


class StringList(MatchList):
    """string_list: exact strings and tables."""

    matchers = (Matcher.STRING,)

    def match(self, string: str) -> bool:
        """Whether ``string`` is in the list; MatchListRetry when undecidable."""
        return self._matches(string)


class DomainList(MatchList):
    """domain_list: host and domain names."""

    matchers = (Matcher.HOSTNAME,)

    def match(self, name: str) -> bool:
        """Whether the host or domain ``name`` is in the list."""
        return self._matches(name)


class NamadrList(MatchList):
    """namadr_list: a client's name, then its address."""

    matchers = (Matcher.HOSTNAME, Matcher.HOSTADDR)

    def match(self, name: str, addr: str) -> bool:
        """Whether the client ``name``/``addr`` is in the list."""
        return self._matches(name, addr)


class AddrMatchList(MatchList):
    """addr_match_list: addresses and networks only."""

    matchers = (Matcher.HOSTADDR,)

    def match(self, addr: str) -> bool:
        """Whether ``addr`` is in the list."""
        return self._matches(addr)


def parent_style(config: Config, param: str) -> bool:
    """Whether ``param`` is in ``parent_domain_matches_subdomains``."""
    features = StringList("parent_domain_matches_subdomains", config.get("parent_domain_matches_subdomains"), config)
    return features.match(param)


def string_list_from_config(config: Config, param: str) -> StringList:
    """The StringList of parameter ``param``."""
    return StringList(param, config.get(param), config)


def domain_list_from_config(config: Config, param: str) -> DomainList:
    """The DomainList of parameter ``param``, parent style as configured."""
    return DomainList(param, config.get(param), config, parent=parent_style(config, param))


def namadr_list_from_config(config: Config, param: str) -> NamadrList:
    """The NamadrList of parameter ``param``, parent style as configured."""
    return NamadrList(param, config.get(param), config, parent=parent_style(config, param))


def addr_match_list_from_config(config: Config, param: str) -> AddrMatchList:
    """The AddrMatchList of parameter ``param``."""
    return AddrMatchList(param, config.get(param), config)


__all__ = [
    "AddrMatchList",
    "DomainList",
    "MatchList",
    "MatchListError",
    "MatchListRetry",
    "NamadrList",
    "StringList",
    "addr_match_list_from_config",
    "domain_list_from_config",
    "namadr_list_from_config",
    "parent_style",
    "parse_network",
    "string_list_from_config",
]
