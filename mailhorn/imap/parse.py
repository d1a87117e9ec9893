"""The IMAP4rev1 command grammar (RFC 3501 §9) and the extensions mailhorn offers.

What it does
    :func:`parse_command` turns one framed command (text pieces and the
    literals that the codec already read, see :class:`Piece`) into a typed
    command value: :class:`Login`, :class:`Select`, :class:`Fetch`, … (the
    ``COMMANDS`` table names each command's parser and the states it is
    allowed in). ``UID`` prefixes FETCH, SEARCH, STORE, COPY, MOVE and
    EXPUNGE (RFC 3501 §6.4.8, RFC 4315 UID EXPUNGE, RFC 6851 MOVE).

    Pieces of the grammar: atoms, quoted strings with ``\\`` escapes,
    literals (``{n}``, ``{n+}`` LITERAL+ RFC 7888, ``~{n}`` literal8 for
    APPEND, RFC 3516), astrings, nstrings, parenthesised lists, sequence sets
    with ``*`` (:class:`SeqSet`), dates, flags, FETCH attributes with
    sections and partials, and SEARCH keys (:mod:`mailhorn.imap.search`
    evaluates them). Mailbox names are decoded from modified UTF-7 (RFC 3501
    §5.1.3); ``INBOX`` is case-insensitive.

Limits
    Nesting of parentheses (SEARCH keys, lists) and chains of NOT/OR are
    bounded by :data:`MAX_DEPTH`: deeper input is a syntax error, never a
    stack overflow.

Errors
    :class:`ParseError` (answered ``BAD``) for syntax, :class:`ParseNo`
    (answered ``NO``) where Dovecot answers NO, e.g. a mailbox name that is
    not valid modified UTF-7. Messages are Dovecot's texts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Union

from mailhorn.imap.message import SectionSpec
from mailhorn.mailstore.folders import mutf7_decode

MAX_DEPTH = 100

_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0x00, 0x20)) | {0x7F}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


class ParseError(Exception):
    """A syntax error: the command is answered ``BAD``."""


class ParseNo(Exception):
    """Well-formed but refused at parse time: answered ``NO`` (Dovecot's choice)."""


@dataclass(frozen=True)
class Literal:
    """A literal's content as the codec read it; ``binary`` for literal8 ``~{n}``."""

    data: bytes
    binary: bool = False


Piece = Union[bytes, Literal]


# --- sequence sets -------------------------------------------------------------------------

@dataclass(frozen=True)
class SeqSet:
    """A sequence set (RFC 3501 §9 ``sequence-set``); None stands for ``*``."""

    ranges: tuple[tuple[int | None, int | None], ...]

    def contains(self, n: int, largest: int) -> bool:
        """Whether ``n`` is in the set when ``*`` is ``largest``."""
        for lo, hi in self.ranges:
            a = largest if lo is None else lo
            b = largest if hi is None else hi
            if a > b:
                a, b = b, a
            if a <= n <= b:
                return True
        return False

    def iter(self, largest: int, existing: list[int] | None = None) -> list[int]:
        """Members in ascending order; with ``existing`` (UIDs) only those that exist."""
        if existing is not None:
            return [n for n in existing if self.contains(n, largest)]
        out: set[int] = set()
        for lo, hi in self.ranges:
            a = largest if lo is None else lo
            b = largest if hi is None else hi
            if a > b:
                a, b = b, a
            out.update(range(max(a, 1), min(b, largest) + 1))
        return sorted(out)


def parse_seqset(text: bytes) -> SeqSet:
    ranges: list[tuple[int | None, int | None]] = []
    if not text:
        raise ParseError("Invalid messageset")
    for item in text.split(b","):
        lo, sep, hi = item.partition(b":")
        a = _seq_number(lo)
        b = _seq_number(hi) if sep else a
        ranges.append((a, b))
    return SeqSet(tuple(ranges))


def _seq_number(text: bytes) -> int | None:
    if text == b"*":
        return None
    if not text.isdigit() or text.startswith(b"0"):
        raise ParseError("Invalid messageset")
    n = int(text)
    if n > 0xFFFFFFFF:
        raise ParseError("Invalid messageset")
    return n


# --- the reader ----------------------------------------------------------------------------

class Reader:
    """Walks a command: text pieces and literals in the order they came."""

    def __init__(self, pieces: list[Piece]) -> None:
        self.pieces = pieces
        self.index = 0
        self.pos = 0
        self.depth = 0

    @property
    def text(self) -> bytes:
        piece = self.pieces[self.index] if self.index < len(self.pieces) else b""
        return piece if isinstance(piece, bytes) else b""

    def _advance_piece(self) -> None:
        while self.index < len(self.pieces):
            piece = self.pieces[self.index]
            if isinstance(piece, bytes) and self.pos >= len(piece):
                if self.index + 1 < len(self.pieces):
                    self.index += 1
                    self.pos = 0
                    continue
            return

    def at_literal(self) -> bool:
        self._advance_piece()
        return self.index < len(self.pieces) and isinstance(self.pieces[self.index], Literal)

    def peek(self) -> int:
        """The next byte, 0 at the end, -1 when a literal comes next."""
        if self.at_literal():
            return -1
        text = self.text
        return text[self.pos] if self.pos < len(text) else 0

    def at_end(self) -> bool:
        return self.peek() == 0

    def expect(self, byte: bytes) -> None:
        if self.peek() != byte[0]:
            raise ParseError("Invalid arguments")
        self.pos += 1

    def sp(self) -> None:
        self.expect(b" ")

    def maybe(self, byte: bytes) -> bool:
        if self.peek() == byte[0]:
            self.pos += 1
            return True
        return False

    def end(self) -> None:
        if not self.at_end():
            raise ParseError("Invalid arguments")

    def atom(self, extra: frozenset[int] = frozenset(), stop: frozenset[int] = frozenset()) -> bytes:
        """1*ATOM-CHAR; ``extra`` allows more (``]`` in flags), ``stop`` ends it early (``[``)."""
        if self.at_literal():
            raise ParseError("Invalid arguments")
        text = self.text
        start = self.pos
        while self.pos < len(text) and text[self.pos] not in stop and (
                text[self.pos] not in _ATOM_SPECIALS or text[self.pos] in extra):
            self.pos += 1
        if self.pos == start:
            raise ParseError("Invalid arguments")
        return text[start:self.pos]

    def literal(self) -> Literal:
        if not self.at_literal():
            raise ParseError("Invalid arguments")
        lit = self.pieces[self.index]
        assert isinstance(lit, Literal)
        self.index += 1
        self.pos = 0
        return lit

    def quoted(self) -> bytes:
        text = self.text
        self.pos += 1
        out = bytearray()
        while self.pos < len(text):
            c = text[self.pos]
            if c == 0x22:
                self.pos += 1
                return bytes(out)
            if c == 0x5C:
                self.pos += 1
                if self.pos >= len(text) or text[self.pos] not in (0x22, 0x5C):
                    raise ParseError("Invalid arguments")
                c = text[self.pos]
            elif c in (0x0D, 0x0A):
                break
            out.append(c)
            self.pos += 1
        raise ParseError("Missing '\"'")

    def string(self) -> bytes:
        if self.at_literal():
            return self.literal().data
        if self.peek() == 0x22:
            return self.quoted()
        raise ParseError("Invalid arguments")

    def astring(self) -> bytes:
        if self.at_literal() or self.peek() == 0x22:
            return self.string()
        return self.atom(extra=frozenset(b"]"))

    def nstring(self) -> bytes | None:
        if self.peek() in (0x4E, 0x6E):  # N/n: NIL
            word = self.atom()
            if word.upper() != b"NIL":
                raise ParseError("Invalid arguments")
            return None
        return self.string()

    def number(self) -> int:
        word = self.atom()
        if not word.isdigit():
            raise ParseError("Invalid arguments")
        return int(word)

    def open_list(self) -> None:
        self.expect(b"(")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("Too deep nesting")

    def close_list(self) -> bool:
        if self.maybe(b")"):
            self.depth -= 1
            return True
        return False

    def list_of(self, item: Callable[[], bytes]) -> list[bytes]:
        """``"(" [item *(SP item)] ")"``."""
        self.open_list()
        out: list[bytes] = []
        while not self.close_list():
            if out:
                self.sp()
            out.append(item())
        return out

    def mailbox(self) -> str:
        return decode_mailbox(self.astring())


def decode_mailbox(raw: bytes) -> str:
    """A mailbox name from the wire: modified UTF-7 decoded, INBOX in any case as INBOX."""
    if raw.upper() == b"INBOX":
        return "INBOX"
    try:
        return mutf7_decode(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ParseNo("Mailbox name is not valid mUTF-7") from None


def parse_date(text: bytes) -> dt.date:
    """``date`` (RFC 3501 §9): ``d-Mon-yyyy``, quoted or not."""
    try:
        day, mon, year = text.decode("ascii").split("-")
        return dt.date(int(year), _MONTHS.index(mon.upper()) + 1, int(day))
    except (ValueError, UnicodeDecodeError):
        raise ParseError("Invalid search date parameter") from None


def parse_datetime(text: bytes) -> dt.datetime:
    """``date-time`` (RFC 3501 §9): ``dd-Mon-yyyy hh:mm:ss +zzzz``."""
    try:
        date, time, zone = text.decode("ascii").strip().split(" ")
        d = parse_date(date.encode())
        hh, mm, ss = (int(x) for x in time.split(":"))
        sign = -1 if zone[0] == "-" else 1
        if zone[0] not in "+-" or len(zone) != 5:
            raise ValueError(zone)
        offset = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * sign
        return dt.datetime(d.year, d.month, d.day, hh, mm, ss, tzinfo=dt.timezone(offset))
    except (ValueError, IndexError, ParseError):
        raise ParseError("Invalid date-time") from None


# --- commands -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Capability: pass
@dataclass(frozen=True)
class Noop: pass
@dataclass(frozen=True)
class Logout: pass
@dataclass(frozen=True)
class StartTls: pass
@dataclass(frozen=True)
class Namespace: pass
@dataclass(frozen=True)
class Idle: pass
@dataclass(frozen=True)
class Check: pass
@dataclass(frozen=True)
class Close: pass
@dataclass(frozen=True)
class Unselect: pass


@dataclass(frozen=True)
class Login:
    user: bytes
    password: bytes


@dataclass(frozen=True)
class Authenticate:
    mechanism: str
    initial_response: bytes | None   # SASL-IR (RFC 4959), still base64; b"=" is empty


@dataclass(frozen=True)
class Id:
    params: tuple[tuple[bytes, bytes | None], ...] | None


@dataclass(frozen=True)
class Enable:
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class Select:
    mailbox: str
    readonly: bool   # EXAMINE


@dataclass(frozen=True)
class Create:
    mailbox: str


@dataclass(frozen=True)
class Delete:
    mailbox: str


@dataclass(frozen=True)
class Rename:
    old: str
    new: str


@dataclass(frozen=True)
class Subscribe:
    mailbox: str
    subscribe: bool   # False: UNSUBSCRIBE


@dataclass(frozen=True)
class ListCmd:
    """LIST / LSUB, with RFC 5258 selection and return options (SPECIAL-USE, CHILDREN)."""

    reference: str
    patterns: tuple[str, ...]
    lsub: bool = False
    select_options: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Status:
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class Append:
    """APPEND up to the literal: the codec asks the server before reading the message."""

    mailbox: str
    flags: tuple[str, ...]
    date: dt.datetime | None
    size: int
    synchronizing: bool
    binary: bool


@dataclass(frozen=True)
class Expunge:
    uids: SeqSet | None = None   # UID EXPUNGE (RFC 4315)


@dataclass(frozen=True)
class FetchAttr:
    """One FETCH item; ``section``/``partial`` for BODY[…]<…>."""

    name: str                       # ENVELOPE, FLAGS, BODY, BODY[], RFC822.SIZE, …
    section: SectionSpec | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False

    def response_name(self) -> bytes:
        """The name as sent back: ``BODY[1.MIME]<0>`` (RFC 3501 §7.4.2)."""
        if self.section is None:
            return self.name.encode()
        parts = [".".join(str(n) for n in self.section.path)] if self.section.path else []
        if self.section.text:
            parts.append(self.section.text)
        sec = ".".join(parts)
        if self.section.fields:
            sec += " (" + " ".join(f.decode("latin-1") for f in self.section.fields) + ")"
        out = f"BODY[{sec}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}>"
        return out.encode("latin-1")


@dataclass(frozen=True)
class Fetch:
    seqset: SeqSet
    attrs: tuple[FetchAttr, ...]
    uid: bool = False


@dataclass(frozen=True)
class Store:
    seqset: SeqSet
    mode: str            # "+", "-" or "" (replace)
    silent: bool
    flags: tuple[str, ...]
    uid: bool = False


@dataclass(frozen=True)
class Copy:
    seqset: SeqSet
    mailbox: str
    uid: bool = False
    move: bool = False


@dataclass(frozen=True)
class GetQuota:
    root: bytes


@dataclass(frozen=True)
class GetQuotaRoot:
    mailbox: str


@dataclass(frozen=True)
class SetQuota:
    root: bytes
    limits: tuple[tuple[str, int], ...]


# Search keys live here so that the command value is complete; search.py evaluates them.
@dataclass(frozen=True)
class SearchKey:
    """One key: ``op`` is the RFC 3501 name (``ALL``, ``FROM``, ``OR``, ``NOT``, ``AND`` for lists)."""

    op: str
    args: tuple[object, ...] = ()
    children: tuple[SearchKey, ...] = field(default=())


@dataclass(frozen=True)
class Search:
    charset: str | None
    key: SearchKey
    uid: bool = False


Command = Union[Capability, Noop, Logout, StartTls, Namespace, Idle, Check, Close, Unselect,
                Login, Authenticate, Id, Enable, Select, Create, Delete, Rename, Subscribe,
                ListCmd, Status, Append, Expunge, Fetch, Store, Copy, GetQuota, GetQuotaRoot,
                SetQuota, Search]
