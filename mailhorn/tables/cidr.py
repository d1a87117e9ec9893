"""cidr: tables (cidr_table(5)): results by IPv4/IPv6 network.

Each logical line of the table (file or inline ``{ {rule} ... }``, read once
at open) is one of:

* ``pattern result``: the key is an address inside ``pattern``;
* ``!pattern result``: the key is an address of the same family outside it
  (Postfix 3.2); any number of ``!``, each may be followed by whitespace;
* ``if pattern`` / ``if !pattern`` ... ``endif`` (Postfix 3.2), nesting.

A pattern is ``address`` (exact match) or ``network/prefix``, optionally with
``[]`` around the address (``[2001:db8::]/32``) or around all of it. Addresses
are read as inet_pton(3) reads them: dotted quads without leading zeros,
IPv6 with hex groups (any case, up to four digits, ``::``, an embedded IPv4
tail). The first matching rule wins. A key that is not an address in that
form (brackets, a scope, a prefix, surrounding spaces) is not found; an
IPv4-mapped IPv6 key (``::ffff:1.2.3.4``) only matches IPv6 patterns, and an
IF of the other family skips its block.

Parameters read: none.

Errors: a bad rule is skipped with Postfix's warning naming the file and line
(``bad address pattern``, ``bad network value``, ``bad mask value``, ``bad
mask length``, ``non-null host address bits in "1.2.3.4/24", perhaps you
should use "1.2.3.0/24" instead``, ``no lookup result``, ``no address
pattern``, ``ENDIF without IF``, ``garbage after ENDIF``, ``IF has no
matching ENDIF``); a missing file or bad inline text raises
:class:`TableConfigError`.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from mailhorn import log
from mailhorn.config.load import Config
from mailhorn.tables.base import OpenOptions, in_memory
from mailhorn.tables.pattern_source import read_source

_SPACE = " \t\r\n\v\f"


class _Skip(Exception):
    """A rule is skipped; the message ends Postfix's warning."""


@dataclass(frozen=True)
class Network:
    """An address family, network bits and prefix length."""

    family: int
    address: int
    prefix: int

    @property
    def bits(self) -> int:
        return 32 if self.family == socket.AF_INET else 128

    def contains(self, family: int, address: int) -> bool:
        """Whether an address of ``family`` lies in this network."""
        if family != self.family:
            return False
        shift = self.bits - self.prefix
        return (address >> shift) == (self.address >> shift)


@dataclass(frozen=True)
class CidrRule:
    """One rule; ``end`` is the index past an IF block (IF rules only)."""

    line: int
    network: Network
    negate: bool
    result: str | None
    end: int = -1

    def matches(self, family: int, address: int) -> bool:
        """Same family, and inside (or, negated, outside) the network."""
        if family != self.network.family:
            return False
        return self.network.contains(family, address) != self.negate


def parse_address(text: str) -> tuple[int, int] | None:
    """(family, integer address) of an address as inet_pton() reads it, or None."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        packed = socket.inet_pton(family, text)
    except (OSError, ValueError):
        return None
    return family, int.from_bytes(packed, "big")


def format_address(family: int, address: int) -> str:
    """inet_ntop()'s text for an address (``::ffff:1.2.3.0`` style for mapped ones)."""
    size = 4 if family == socket.AF_INET else 16
    return socket.inet_ntop(family, address.to_bytes(size, "big"))


def parse_network(pattern: str) -> Network | str:
    """A ``[addr]/len``, ``[addr/len]``, ``addr/len`` or address pattern, or the
    complaint Postfix's cidr_match_parse makes about it, checked in its order:
    the family comes from a ``:`` in the text, then the mask value, the mask
    length, the network value and the host bits."""
    if pattern.startswith("["):
        body = pattern[1:]
        close = body.find("]")
        if close < 0:
            return f'missing \']\' character after "[{body}"'
        after = body[close + 1 :]
        inner = body[:close]
        if after and not after.startswith("/"):
            return f'garbage after "[{inner}]"'
        pattern = inner + after
    net, slash, mask = pattern.partition("/")
    if slash:
        family = socket.AF_INET6 if ":" in net else socket.AF_INET
        bits = 32 if family == socket.AF_INET else 128
        if not mask or not (mask.isascii() and mask.isdigit()):
            return f'bad mask value in "{net}/{mask}"'
        prefix = int(mask)
        if prefix > bits:
            return f'bad mask length in "{net}/{mask}"'
        parsed = parse_address(net)
        if parsed is None or parsed[0] != family:
            return f'bad network value in "{net}/{mask}"'
        host_bits = (1 << (bits - prefix)) - 1
        if parsed[1] & host_bits:
            fixed = format_address(family, parsed[1] & ~host_bits)
            return f'non-null host address bits in "{net}/{mask}", perhaps you should use "{fixed}/{prefix}" instead'
        return Network(family, parsed[1], prefix)
    parsed = parse_address(pattern)
    if parsed is None:
        return f'bad address pattern: "{pattern}"'
    return Network(parsed[0], parsed[1], 32 if parsed[0] == socket.AF_INET else 128)


def parse_pattern(text: str) -> Network:
    """A cidr table pattern; raises _Skip with Postfix's complaint."""
    parsed = parse_network(text)
    if isinstance(parsed, str):
        raise _Skip(f"{parsed}: skipping this rule")
    return parsed


def _keyword(text: str, word: str) -> bool:
    if text[: len(word)].lower() != word:
        return False
    return len(text) == len(word) or not (text[len(word)].isascii() and text[len(word)].isalnum())


def _negation(text: str) -> tuple[bool, str]:
    negate = False
    while text.startswith("!"):
        negate = not negate
        text = text[1:].lstrip(_SPACE)
    return negate, text


@in_memory
class CidrTable:
    """An opened cidr: table."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.rules: list[CidrRule] = []
        open_ifs: list[int] = []
        for number, text in read_source(name, "cidr"):
            try:
                self._parse_line(number, text, open_ifs)
            except _Skip as exc:
                self._warn(number, str(exc))
        while open_ifs:
            index = open_ifs.pop()
            self._warn(self.rules[index].line, "IF has no matching ENDIF")
            self._close(index)

    @property
    def type(self) -> str:
        return "cidr"

    @property
    def name(self) -> str:
        return self._name

    def _warn(self, line: int, text: str) -> None:
        log.warning(f"cidr map {self._name}, line {line}: {text}")

    def _close(self, index: int) -> None:
        rule = self.rules[index]
        self.rules[index] = CidrRule(rule.line, rule.network, rule.negate, None, len(self.rules))

    def _parse_line(self, number: int, text: str, open_ifs: list[int]) -> None:
        if _keyword(text, "if"):
            negate, pattern = _negation(text[2:].strip(_SPACE))
            if not pattern:
                raise _Skip("no address pattern: skipping this rule")
            network = parse_pattern(pattern)
            open_ifs.append(len(self.rules))
            self.rules.append(CidrRule(number, network, negate, None))
            return
        if _keyword(text, "endif"):
            if text[5:].strip(_SPACE):
                raise _Skip("garbage after ENDIF: skipping this rule")
            if not open_ifs:
                raise _Skip("ENDIF without IF: skipping this rule")
            self._close(open_ifs.pop())
            return
        negate, rest = _negation(text)
        end = len(rest)
        for i, c in enumerate(rest):
            if c in _SPACE:
                end = i
                break
        network = parse_pattern(rest[:end])
        result = rest[end:].lstrip(_SPACE)
        if not result:
            raise _Skip("no lookup result: skipping this rule")
        self.rules.append(CidrRule(number, network, negate, result))

    def lookup(self, key: str) -> str | None:
        """The result of the first rule matching address ``key``, or None."""
        parsed = parse_address(key)
        if parsed is None:
            return None
        family, address = parsed
        i = 0
        while i < len(self.rules):
            rule = self.rules[i]
            if rule.result is None:
                i = i + 1 if rule.matches(family, address) else rule.end
                continue
            if rule.matches(family, address):
                return rule.result
            i += 1
        return None


def open_cidr(name: str, config: Config, options: OpenOptions) -> CidrTable:
    """Open ``cidr:name``: read and check the table now."""
    return CidrTable(name)
