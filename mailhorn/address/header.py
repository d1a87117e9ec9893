"""Address lists in message headers (RFC 5322 §3.4, with §4.4 obsolete forms).

:func:`parse_address_list` reads the value of ``From:``, ``To:``, ``Cc:``,
``Reply-To:`` ... and returns one :class:`HeaderAddress` per mailbox, in
order, with the address in internal form (quotes removed from the local
part, comments and folding white space dropped), the display name, and the
group it belongs to. It is what cleanup uses to extract recipients
(``sendmail -t``) and to masquerade header addresses.

The input is tokenized here (the stdlib ``email.utils`` is not used: see
CVE-2023-27043): atoms, quoted strings (``"Name, X"``), nested comments
(``(a (b) c)``), domain literals (``[1.2.3.4]``) and the specials
``< > @ , ; : .``. The grammar is read with Postfix's tolerance: an
unterminated quoted string, comment, domain literal or angle address ends
at the end of the value, an empty group (``undisclosed-recipients:;``)
yields no address, obsolete routes (``<@a,@b:user@c>``) are dropped, empty
list elements (``a@b,,c@d``) are skipped, and a bare ``user`` without domain
is returned as is (cleanup appends ``@$myorigin``). When a mailbox has no
phrase, a comment is kept as its name (``c@d (Name)``, the RFC 822 habit).

Bounds (design.md §5 rule 8): a value longer than ``limit`` characters
(default 102400, Postfix's ``header_size_limit``), comments nested deeper
than ``MAX_DEPTH``, more than ``MAX_ADDRESSES`` addresses, and NUL or other
control characters (other than white space) raise :class:`AddressError`.
Parsing is linear in the length of the value.

Parameters read: none (callers pass ``header_size_limit``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from mailhorn.address.errors import AddressError
from mailhorn.address.quote import quote_local

MAX_DEPTH: Final = 32
MAX_ADDRESSES: Final = 10000
DEFAULT_LIMIT: Final = 102400

_SPECIALS: Final = frozenset('<>@,;:.[]()"\\')
_WSP: Final = frozenset(" \t\r\n")


class Kind(Enum):
    """Token kinds."""

    ATOM = "atom"
    QUOTED = "quoted"
    COMMENT = "comment"
    LITERAL = "literal"
    SPECIAL = "special"


@dataclass(frozen=True)
class Token:
    """One token: ``text`` is unquoted for QUOTED and COMMENT, bracketed for LITERAL."""

    kind: Kind
    text: str
    space_before: bool = False


@dataclass(frozen=True)
class HeaderAddress:
    """One mailbox from a header: internal-form ``address``, ``display_name``, ``group``."""

    address: str
    display_name: str = ""
    group: str | None = None

    @property
    def external(self) -> str:
        """The address quoted for output (quote_822_local); ``<>`` stays empty."""
        if not self.address:
            return ""
        if "@" not in self.address:
            return quote_local(self.address, bare=True)
        return quote_local(self.address)


def _check_char(ch: str, value: str) -> None:
    code = ord(ch)
    if (code < 32 and ch not in _WSP) or code == 127:
        raise AddressError(f"control character {code}(decimal) in header address", value)


def tokenize(value: str, *, limit: int = DEFAULT_LIMIT) -> list[Token]:
    """Split a header value into tokens; raise AddressError on hostile input."""
    if len(value) > limit:
        raise AddressError(f"header address list longer than {limit} characters", value)
    tokens: list[Token] = []
    i = 0
    n = len(value)
    space = False
    while i < n:
        ch = value[i]
        _check_char(ch, value)
        if ch in _WSP:
            space = True
            i += 1
            continue
        if ch == '"':
            text, i = _delimited(value, i + 1, '"')
            tokens.append(Token(Kind.QUOTED, text, space))
        elif ch == "(":
            text, i = _comment(value, i)
            tokens.append(Token(Kind.COMMENT, text, space))
        elif ch == "[":
            text, i = _delimited(value, i + 1, "]")
            tokens.append(Token(Kind.LITERAL, f"[{text}]", space))
        elif ch in _SPECIALS:
            tokens.append(Token(Kind.SPECIAL, ch, space))
            i += 1
        else:
            start = i
            while i < n and value[i] not in _SPECIALS and value[i] not in _WSP:
                _check_char(value[i], value)
                i += 1
            tokens.append(Token(Kind.ATOM, value[start:i], space))
        space = False
    return tokens


def _delimited(value: str, i: int, close: str) -> tuple[str, int]:
    """Text up to ``close`` (backslash escapes resolved); unterminated ends at the end."""
    out: list[str] = []
    n = len(value)
    while i < n:
        ch = value[i]
        _check_char(ch, value)
        if ch == close:
            return "".join(out), i + 1
        if ch == "\\" and i + 1 < n:
            _check_char(value[i + 1], value)
            out.append(value[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out), n


def _comment(value: str, i: int) -> tuple[str, int]:
    """A comment starting at ``(``, nesting bounded by MAX_DEPTH."""
    depth = 0
    out: list[str] = []
    n = len(value)
    while i < n:
        ch = value[i]
        _check_char(ch, value)
        if ch == "\\" and i + 1 < n:
            _check_char(value[i + 1], value)
            out.append(value[i + 1])
            i += 2
            continue
        if ch == "(":
            depth += 1
            if depth > MAX_DEPTH:
                raise AddressError(f"comments nested deeper than {MAX_DEPTH} levels", value)
            if depth > 1:
                out.append(ch)
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return "".join(out), i + 1
            out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out), n


def _phrase(tokens: list[Token]) -> str:
    """Display-name text: words joined by single spaces, quotes removed."""
    words: list[str] = []
    for tok in tokens:
        if tok.kind is Kind.COMMENT:
            continue
        if words and not tok.space_before and tok.kind is Kind.SPECIAL and tok.text == ".":
            words[-1] += "."
            continue
        if words and words[-1].endswith(".") and not tok.space_before:
            words[-1] += tok.text
            continue
        words.append(tok.text)
    return " ".join(words)


def _addr_spec(tokens: list[Token]) -> str:
    """Internal form of an addr-spec: tokens joined, local part unquoted.

    An obsolete route ``@a,@b:`` in front is dropped.
    """
    toks = [t for t in tokens if t.kind is not Kind.COMMENT]
    if toks and toks[0].kind is Kind.SPECIAL and toks[0].text == "@":
        for index, tok in enumerate(toks):
            if tok.kind is Kind.SPECIAL and tok.text == ":":
                toks = toks[index + 1 :]
                break
    return "".join(t.text for t in toks)


class _Builder:
    """Collects the tokens of one mailbox and emits HeaderAddress values."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.out: list[HeaderAddress] = []
        self.group: str | None = None
        self.reset()

    def reset(self) -> None:
        self.phrase: list[Token] = []
        self.angle: list[Token] | None = None
        self.comments: list[str] = []

    def finish(self) -> None:
        if self.angle is not None:
            name = _phrase(self.phrase)
            self._emit(_addr_spec(self.angle), name or " ".join(self.comments))
        else:
            words = [t for t in self.phrase if t.kind is not Kind.COMMENT]
            if words:
                self._emit(_addr_spec(words), " ".join(self.comments))
        self.reset()

    def _emit(self, address: str, name: str) -> None:
        if len(self.out) >= MAX_ADDRESSES:
            raise AddressError(f"more than {MAX_ADDRESSES} addresses in header", self.value)
        self.out.append(HeaderAddress(address, name, self.group))


def parse_address_list(value: str, *, limit: int = DEFAULT_LIMIT) -> list[HeaderAddress]:
    """Every mailbox in an RFC 5322 address-list, in order (see module doc)."""
    tokens = tokenize(value, limit=limit)
    b = _Builder(value)
    i = 0
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        i += 1
        if tok.kind is Kind.COMMENT:
            b.comments.append(tok.text)
            if b.angle is None:
                b.phrase.append(tok)
            continue
        if tok.kind is not Kind.SPECIAL:
            b.phrase.append(tok)
            continue
        ch = tok.text
        if ch == "<":
            angle: list[Token] = []
            while i < n and not (tokens[i].kind is Kind.SPECIAL and tokens[i].text == ">"):
                if tokens[i].kind is Kind.COMMENT:
                    b.comments.append(tokens[i].text)
                else:
                    angle.append(tokens[i])
                i += 1
            i += 1  # the '>' (or past the end)
            if b.angle is not None:
                b.finish()
            b.angle = angle
        elif ch == ",":
            b.finish()
        elif ch == ":" and b.group is None and b.angle is None and not _has_at(b.phrase):
            b.group = _phrase(b.phrase)
            b.reset()
        elif ch == ";" and b.group is not None:
            b.finish()
            b.group = None
        elif ch == ">":
            continue
        else:
            b.phrase.append(tok)
    b.finish()
    return b.out


def _has_at(tokens: list[Token]) -> bool:
    return any(t.kind is Kind.SPECIAL and t.text == "@" for t in tokens)
