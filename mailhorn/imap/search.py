"""SEARCH key evaluation over one message (RFC 3501 §6.4.4).

What it does
    :func:`matches` says whether a message satisfies a parsed
    :class:`~mailhorn.imap.parse.SearchKey`. The caller (the server) gives
    a :class:`Candidate` per message: sequence number, UID, flags,
    keywords, INTERNALDATE, RFC822.SIZE, and a way to get the parsed
    message, which is only read when a key needs headers or text.

    Like Dovecot:

    * strings match as case-insensitive substrings after Unicode case
      folding; header values are searched after RFC 2047 decoding, bodies
      after Content-Transfer-Encoding (quoted-printable, base64) and
      charset decoding; ``BODY`` looks at text parts (``text/*``) and
      ``TEXT`` also at the header and every MIME part's header;
    * ``BEFORE``/``ON``/``SINCE`` compare the day of INTERNALDATE in the
      server's time zone; ``SENTBEFORE``/``SENTON``/``SENTSINCE`` compare
      the day written in the ``Date:`` header (its own time zone); a message
      without a readable Date: was sent on 1970-01-01 (Dovecot's time 0);
    * ``HEADER name ""`` matches every message that has the field;
    * ``NEW`` is RECENT and UNSEEN, ``OLD`` is not RECENT;
    * ``*`` in a set is the largest sequence number or UID of the mailbox.

    :func:`decode_search_string` applies ``CHARSET`` (any charset Python
    knows; UTF-8 when none is given).

Errors
    :class:`BadCharset` for an unknown CHARSET: answer
    ``NO [BADCHARSET (UTF-8)] Unsupported charset`` (RFC 3501 §7.1).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import datetime as dt
import email.header
import email.utils
import quopri
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mailhorn.imap.message import Message, Part, header_fields, iter_crlf
from mailhorn.imap.parse import SearchKey, SeqSet

#: Text bodies read for BODY/TEXT are capped at this many bytes per part.
MAX_SEARCH_BODY = 64 * 1024 * 1024


class BadCharset(Exception):
    """CHARSET names a character set this server cannot decode."""


def decode_search_string(value: bytes, charset: str | None) -> str:
    """A SEARCH string argument as text, decoded with CHARSET (default UTF-8)."""
    name = charset or "UTF-8"
    try:
        codecs.lookup(name)
    except LookupError:
        raise BadCharset(name) from None
    return value.decode(name, "replace")


def fold(text: str) -> str:
    """Case-insensitive comparison form (Unicode case folding)."""
    return text.casefold()


@dataclass
class Candidate:
    """One message as SEARCH sees it."""

    seq: int
    uid: int
    flags: frozenset[str]             # IMAP system flags incl. \\Recent
    keywords: frozenset[str]
    internal_date: float              # seconds since the epoch
    size: int                         # RFC822.SIZE
    load: Callable[[], Message]       # the parsed message, read on demand
    _message: Message | None = field(default=None, repr=False)

    def message(self) -> Message:
        if self._message is None:
            self._message = self.load()
        return self._message


@dataclass(frozen=True)
class Context:
    largest_seq: int
    largest_uid: int
    charset: str | None = None


def matches(key: SearchKey, cand: Candidate, ctx: Context) -> bool:
    op = key.op
    handler = _HANDLERS.get(op)
    if handler is None:
        raise ValueError(f"unknown search key {op}")
    return handler(key, cand, ctx)


# --- flags ---------------------------------------------------------------------------------

def _flag(flag: str, want: bool) -> Callable[[SearchKey, Candidate, Context], bool]:
    def check(key: SearchKey, cand: Candidate, ctx: Context) -> bool:
        return (flag in cand.flags) == want
    return check


def _keyword(want: bool) -> Callable[[SearchKey, Candidate, Context], bool]:
    def check(key: SearchKey, cand: Candidate, ctx: Context) -> bool:
        name = str(key.args[0]).lower()
        has = any(k.lower() == name for k in cand.keywords)
        return has == want
    return check


# --- dates ---------------------------------------------------------------------------------

def _internal_day(cand: Candidate) -> dt.date:
    return dt.datetime.fromtimestamp(cand.internal_date).date()


#: The sent date of a message without a readable ``Date:`` (Dovecot uses time 0).
NO_SENT_DATE = dt.date(1970, 1, 1)


def sent_day(msg: Message) -> dt.date:
    """The day written in ``Date:`` (in the header's own zone); 1970-01-01 when unreadable."""
    raw = msg.root.headers.get(b"date")
    if raw is None:
        return NO_SENT_DATE
    parsed = email.utils.parsedate_tz(raw.decode("latin-1"))
    if parsed is None:
        return NO_SENT_DATE
    try:
        return dt.date(parsed[0], parsed[1], parsed[2])
    except ValueError:
        return NO_SENT_DATE


def _date(compare: str, sent: bool) -> Callable[[SearchKey, Candidate, Context], bool]:
    def check(key: SearchKey, cand: Candidate, ctx: Context) -> bool:
        want = key.args[0]
        assert isinstance(want, dt.date)
        day = sent_day(cand.message()) if sent else _internal_day(cand)
        if compare == "BEFORE":
            return day < want
        if compare == "ON":
            return day == want
        return day >= want
    return check


# --- text ----------------------------------------------------------------------------------

def decode_header_value(raw: bytes) -> str:
    """A header value with RFC 2047 encoded words decoded and folding removed."""
    text = raw.replace(b"\r", b"").replace(b"\n", b"").decode("utf-8", "replace")
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (ValueError, LookupError, binascii.Error, UnicodeError):
        return text


def _header_values(msg: Message, name: bytes) -> Iterator[bytes]:
    """Every value of a header field of the message's top part (not only the first)."""
    lname = name.lower()
    for fname, value in header_fields(msg):
        if fname.lower() == lname:
            yield value


def _header_contains(msg: Message, name: bytes, needle: str) -> bool:
    found = False
    for value in _header_values(msg, name):
        found = True
        if not needle or needle in fold(decode_header_value(value)):
            return True
    return found and not needle


def _part_text(msg: Message, part: Part) -> str:
    data = msg.data
    end = min(part.end, part.body_start + MAX_SEARCH_BODY)
    raw = b"".join(iter_crlf(data, part.body_start, end))
    cte = (part.headers.get(b"content-transfer-encoding") or b"").strip().lower()
    if cte == b"base64":
        try:
            raw = base64.b64decode(b"".join(raw.split()), validate=False)
        except (binascii.Error, ValueError):
            pass
    elif cte == b"quoted-printable":
        raw = quopri.decodestring(raw)
    charset = next((v.decode("ascii", "replace") for k, v in part.params if k.lower() == b"charset"),
                   "utf-8")
    try:
        return raw.decode(charset, "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


def _text_parts(msg: Message, part: Part) -> Iterator[Part]:
    stack = [part]
    while stack:
        p = stack.pop()
        if p.multipart:
            stack.extend(reversed(p.children))
        elif p.message is not None:
            stack.append(p.message)
        elif p.type.lower() == b"text":
            yield p


def _body_contains(msg: Message, needle: str) -> bool:
    return any(needle in fold(_part_text(msg, p)) for p in _text_parts(msg, msg.root))


def _all_parts(part: Part) -> Iterator[Part]:
    stack = [part]
    while stack:
        p = stack.pop()
        yield p
        stack.extend(reversed(p.children))
        if p.message is not None:
            stack.append(p.message)


def _header_block_text(msg: Message) -> str:
    """Every header of the message and of its MIME parts, decoded (what TEXT searches)."""
    return "\n".join(name.decode("latin-1") + ": " + decode_header_value(value)
                     for part in _all_parts(msg.root) for name, value in header_fields(msg, part))


def _needle(key: SearchKey, ctx: Context, index: int = 0) -> str:
    arg = key.args[index]
    assert isinstance(arg, bytes)
    return fold(decode_search_string(arg, ctx.charset))


def _string_key(header: bytes) -> Callable[[SearchKey, Candidate, Context], bool]:
    def check(key: SearchKey, cand: Candidate, ctx: Context) -> bool:
        return _header_contains(cand.message(), header, _needle(key, ctx))
    return check


def _header_key(key: SearchKey, cand: Candidate, ctx: Context) -> bool:
    name = key.args[0]
    assert isinstance(name, bytes)
    return _header_contains(cand.message(), name, _needle(key, ctx, 1))


def _body_key(key: SearchKey, cand: Candidate, ctx: Context) -> bool:
    return _body_contains(cand.message(), _needle(key, ctx))


def _text_key(key: SearchKey, cand: Candidate, ctx: Context) -> bool:
    needle = _needle(key, ctx)
    msg = cand.message()
    return needle in fold(_header_block_text(msg)) or _body_contains(msg, needle)


# --- structure -----------------------------------------------------------------------------

def _and(key: SearchKey, cand: Candidate, ctx: Context) -> bool:
    return all(matches(k, cand, ctx) for k in key.children)


def _or(key: SearchKey, cand: Candidate, ctx: Context) -> bool:
    return matches(key.children[0], cand, ctx) or matches(key.children[1], cand, ctx)


def _not(key: SearchKey, cand: Candidate, ctx: Context) -> bool:
    return not matches(key.children[0], cand, ctx)


def _seqset(key: SearchKey, cand: Candidate, ctx: Context) -> bool:
    s = key.args[0]
    assert isinstance(s, SeqSet)
    return s.contains(cand.seq, ctx.largest_seq)


def _uid(key: SearchKey, cand: Candidate, ctx: Context) -> bool:
    s = key.args[0]
    assert isinstance(s, SeqSet)
    return s.contains(cand.uid, ctx.largest_uid)


def _size(larger: bool) -> Callable[[SearchKey, Candidate, Context], bool]:
    def check(key: SearchKey, cand: Candidate, ctx: Context) -> bool:
        n = key.args[0]
        assert isinstance(n, int)
        return cand.size > n if larger else cand.size < n
    return check


def _new(key: SearchKey, cand: Candidate, ctx: Context) -> bool:
    return "\\Recent" in cand.flags and "\\Seen" not in cand.flags


_HANDLERS: dict[str, Callable[[SearchKey, Candidate, Context], bool]] = {
    "ALL": lambda key, cand, ctx: True,
    "AND": _and, "OR": _or, "NOT": _not,
    "SEQSET": _seqset, "UID": _uid,
    "ANSWERED": _flag("\\Answered", True), "UNANSWERED": _flag("\\Answered", False),
    "DELETED": _flag("\\Deleted", True), "UNDELETED": _flag("\\Deleted", False),
    "DRAFT": _flag("\\Draft", True), "UNDRAFT": _flag("\\Draft", False),
    "FLAGGED": _flag("\\Flagged", True), "UNFLAGGED": _flag("\\Flagged", False),
    "SEEN": _flag("\\Seen", True), "UNSEEN": _flag("\\Seen", False),
    "RECENT": _flag("\\Recent", True), "OLD": _flag("\\Recent", False),
    "NEW": _new,
    "KEYWORD": _keyword(True), "UNKEYWORD": _keyword(False),
    "BEFORE": _date("BEFORE", False), "ON": _date("ON", False), "SINCE": _date("SINCE", False),
    "SENTBEFORE": _date("BEFORE", True), "SENTON": _date("ON", True),
    "SENTSINCE": _date("SINCE", True),
    "LARGER": _size(True), "SMALLER": _size(False),
    "FROM": _string_key(b"from"), "TO": _string_key(b"to"), "CC": _string_key(b"cc"),
    "BCC": _string_key(b"bcc"), "SUBJECT": _string_key(b"subject"),
    "HEADER": _header_key, "BODY": _body_key, "TEXT": _text_key,
}
