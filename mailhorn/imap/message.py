"""A message's MIME structure and the FETCH items derived from it (RFC 3501 §6.4.5, §7.4.2).

What it does
    :func:`parse_message` reads a message (``bytes`` or an ``mmap`` of the
    file: nothing is copied but header values) into a tree of :class:`Part`
    offsets, and the functions below render from it:

    * :func:`envelope` — ENVELOPE;
    * :func:`bodystructure` — BODYSTRUCTURE (``extended=True``) and BODY;
    * :func:`section` — ``BODY[section]<partial>``: ``HEADER``,
      ``HEADER.FIELDS (…)``, ``HEADER.FIELDS.NOT (…)``, ``TEXT``, ``MIME``,
      part numbers, and the whole message; RFC822, RFC822.HEADER and
      RFC822.TEXT are the sections ``""``, ``HEADER`` and ``TEXT``;
    * :func:`virtual_size` — RFC822.SIZE.

    IMAP sizes and contents are those of the message with CRLF line ends
    (RFC 3501 §2.3.4): a bare LF in the file counts and is sent as CRLF.

    Parsing follows Dovecot 2.3, which reads the same Maildir: a boundary
    line is ``--`` + boundary at a line start and may carry trailing text;
    boundaries are tried from the innermost multipart outwards, and a
    boundary of an enclosing multipart ends the inner ones; a part's body
    ends before the line end that precedes the next boundary line; a
    multipart without any part (missing or wrong boundary) shows one empty
    ``text/plain`` part; ``multipart/digest`` parts default to
    ``message/rfc822``. Names and values keep their case. A section that
    does not exist is empty, not an error.

Limits
    Nesting is bounded (:data:`MAX_NESTED_PARTS`, Dovecot's
    ``MESSAGE_PARSER_DEFAULT_MAX_NESTED_MIME_PARTS``): a deeper multipart is
    shown as ``application/octet-stream`` and not split. At most
    :data:`MAX_TOTAL_PARTS` parts are split; header values kept per part are
    capped at :data:`MAX_HEADER_VALUE` bytes each.

Errors
    None for any input bytes: a broken message gives the best reading.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field

from mailhorn.imap import quote
from mailhorn.imap.rfc822 import (
    parse_addresses,
    parse_content_type,
    parse_disposition,
    parse_mime_token,
    parse_token_list,
)

Buffer = bytes | mmap.mmap

MAX_NESTED_PARTS = 100
MAX_TOTAL_PARTS = 10000
MAX_HEADER_VALUE = 256 * 1024
#: Chunk size for scans and streaming over large bodies.
CHUNK = 1024 * 1024

#: Headers whose values the parser keeps (lower case).
_KEPT = frozenset({
    b"date", b"subject", b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc",
    b"in-reply-to", b"message-id", b"content-type", b"content-transfer-encoding",
    b"content-id", b"content-description", b"content-disposition", b"content-language",
    b"content-location", b"content-md5",
})


@dataclass
class Part:
    """One MIME part: offsets into the message and what its headers say."""

    start: int                      # first byte of the header
    body_start: int                 # first byte after the blank line
    end: int                        # one past the last body byte
    headers: dict[bytes, bytes] = field(default_factory=dict)
    type: bytes = b"text"
    subtype: bytes = b"plain"
    params: list[tuple[bytes, bytes]] = field(default_factory=list)
    has_content_type: bool = False
    multipart: bool = False
    children: list[Part] = field(default_factory=list)
    message: Part | None = None     # the encapsulated message of message/rfc822

    @property
    def is_rfc822(self) -> bool:
        return self.message is not None


@dataclass
class Message:
    data: Buffer
    root: Part


# --- byte helpers --------------------------------------------------------------------------

def _crlf_size(data: Buffer, start: int, end: int) -> tuple[int, int]:
    """(size with CRLF line ends, number of LFs) of ``data[start:end]``, read in chunks."""
    size = end - start
    lines = 0
    pos = start
    prev_cr = False
    while pos < end:
        chunk = data[pos:min(end, pos + CHUNK)]
        lf = chunk.count(b"\n")
        crlf = chunk.count(b"\r\n") + (1 if prev_cr and chunk[:1] == b"\n" else 0)
        lines += lf
        size += lf - crlf
        prev_cr = chunk[-1:] == b"\r"
        pos += len(chunk)
    return size, lines


def _to_crlf(chunk: bytes, prev_cr: bool) -> bytes:
    out = chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").replace(b"\0", b"\x80")
    if prev_cr and chunk[:1] == b"\n":
        out = out[1:]  # the CR came at the end of the previous chunk
    return out


def iter_crlf(data: Buffer, start: int, end: int) -> Iterator[bytes]:
    """``data[start:end]`` with bare LFs made CRLF, in bounded chunks.

    NUL bytes, which IMAP strings cannot carry (RFC 3501 §4.3), are sent as
    0x80 as Dovecot does; sizes do not change.
    """
    pos = start
    prev_cr = False
    while pos < end:
        chunk = data[pos:min(end, pos + CHUNK)]
        out = _to_crlf(chunk, prev_cr)
        prev_cr = chunk[-1:] == b"\r"
        pos += len(chunk)
        if out:
            yield out


def _line_end(data: Buffer, pos: int, end: int) -> int:
    """Index after the LF ending the line at ``pos`` (or ``end``)."""
    nl = data.find(b"\n", pos, end)
    return end if nl < 0 else nl + 1


# --- headers -------------------------------------------------------------------------------

#: A boundary line found: (line start, line end, level in the boundary list, closing "--").
_Found = tuple[int, int, int, bool]
_NONE: _Found = (-1, -1, -1, False)


def _match_boundary(data: Buffer, pos: int, boundaries: list[bytes], end: int) -> _Found:
    """Whether the line at ``pos`` is a boundary line; boundaries tried innermost first."""
    if data[pos:pos + 2] != b"--":
        return _NONE
    for level in range(len(boundaries) - 1, -1, -1):
        b = boundaries[level]
        if data[pos + 2:pos + 2 + len(b)] == b:
            closing = data[pos + 2 + len(b):pos + 4 + len(b)] == b"--"
            return pos, _line_end(data, pos, end), level, closing
    return _NONE


def _scan_header(data: Buffer, start: int, end: int, boundaries: list[bytes] | None = None
                 ) -> tuple[int, list[tuple[int, int, int]], _Found]:
    """Header fields of ``data[start:end]``: (body start, [(line start, colon, field end)], boundary).

    A field is its first line plus continuation lines starting with SP/HT.
    The header ends at a blank line, or at a boundary line (then returned).
    """
    fields: list[tuple[int, int, int]] = []
    pos = start
    while pos < end:
        if boundaries:
            found = _match_boundary(data, pos, boundaries, end)
            if found[2] >= 0:
                return pos, fields, found
        line_end = _line_end(data, pos, end)
        line = data[pos:min(line_end, pos + 2)]
        if line == b"\n" or data[pos:line_end] == b"\r\n":
            return line_end, fields, _NONE
        if line[:1] in (b" ", b"\t") and fields:
            s, c, _ = fields[-1]
            fields[-1] = (s, c, line_end)
        else:
            colon = data.find(b":", pos, line_end)
            fields.append((pos, colon, line_end))
        pos = line_end
    return end, fields, _NONE


def _value(data: Buffer, colon: int, field_end: int) -> bytes:
    raw = data[colon + 1:min(field_end, colon + 1 + MAX_HEADER_VALUE)]
    raw = raw.lstrip(b" \t")
    if raw.endswith(b"\n"):
        raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
    return bytes(raw)


def _field_name(data: Buffer, start: int, colon: int) -> bytes:
    return bytes(data[start:colon]).rstrip(b" \t")


# --- structure -----------------------------------------------------------------------------

class _Parser:
    """Reads parts front to back; each part finds the boundary line that ends it."""

    def __init__(self, data: Buffer) -> None:
        self.data = data
        self.total = 0

    def _find_boundary(self, pos: int, end: int, boundaries: list[bytes]) -> _Found:
        """The next boundary line at or after ``pos`` (a line start), or ``_NONE``."""
        data = self.data
        if not boundaries:
            return _NONE
        while pos < end:
            found = _match_boundary(data, pos, boundaries, end)
            if found[2] >= 0:
                return found
            nl = data.find(b"\n--", pos, end)
            if nl < 0:
                return _NONE
            pos = nl + 1
        return _NONE

    def _body_end(self, line_start: int, floor: int) -> int:
        """End of a body before a boundary line: without the line end that precedes it."""
        data = self.data
        end = line_start
        if end > floor and data[end - 1:end] == b"\n":
            end -= 1
            if end > floor and data[end - 1:end] == b"\r":
                end -= 1
        return end

    def part(self, start: int, limit: int, depth: int, default_rfc822: bool,
             boundaries: list[bytes]) -> tuple[Part, _Found]:
        """Parse the part whose header starts at ``start``; return it and the boundary that ended it."""
        data = self.data
        self.total += 1
        body_start, fields, found = _scan_header(data, start, limit, boundaries)
        part = Part(start, body_start, limit)
        for fstart, colon, fend in fields:
            if colon < 0:
                continue
            name = _field_name(data, fstart, colon).lower()
            if name in _KEPT and name not in part.headers:
                part.headers[name] = _value(data, colon, fend)
        ct = part.headers.get(b"content-type")
        parsed = parse_content_type(ct) if ct is not None else None
        if parsed is not None:
            part.has_content_type = True
            part.type, part.subtype, part.params = parsed.type, parsed.subtype, parsed.params
        elif default_rfc822:
            part.type, part.subtype = b"message", b"rfc822"
        if found[2] >= 0:
            part.end = body_start
            return part, found
        ltype = part.type.lower()
        lsub = part.subtype.lower()
        room = depth + 1 < MAX_NESTED_PARTS and self.total < MAX_TOTAL_PARTS
        if ltype == b"multipart" and room:
            part.multipart = True
            boundary = next((v for k, v in part.params if k.lower() == b"boundary"), None)
            return part, self._multipart(part, boundary, depth, lsub == b"digest", boundaries)
        if ltype == b"multipart":
            part.type, part.subtype = b"application", b"octet-stream"
        elif ltype == b"message" and lsub == b"rfc822" and room:
            inner, found = self.part(body_start, limit, depth + 1, False, boundaries)
            part.message = inner
            part.end = inner.end
            return part, found
        found = self._find_boundary(body_start, limit, boundaries)
        if found[2] >= 0:
            # The line end before a boundary line belongs to the boundary, even
            # when it is the header's blank line (an empty body).
            part.end = self._body_end(found[0], start)
            part.body_start = min(part.body_start, part.end)
        return part, found

    def _multipart(self, part: Part, boundary: bytes | None, depth: int, digest: bool,
                   outer: list[bytes]) -> _Found:
        mine = len(outer)
        inner = [*outer, boundary] if boundary is not None else list(outer)
        found = self._find_boundary(part.body_start, part.end, inner)
        while True:
            if found[2] < 0:
                return found
            if found[2] != mine:
                if not part.children:
                    part.end = self._body_end(found[0], part.body_start)
                return found
            if found[3]:
                # Closing boundary: the epilogue runs to the next enclosing boundary.
                after = found[1]
                nxt = self._find_boundary(after, part.end, outer)
                if nxt[2] >= 0:
                    part.end = self._body_end(nxt[0], after)
                return nxt
            if self.total >= MAX_TOTAL_PARTS:
                nxt = self._find_boundary(found[1], part.end, outer)
                if nxt[2] >= 0:
                    part.end = self._body_end(nxt[0], found[1])
                return nxt
            child, found = self.part(found[1], part.end, depth + 1, digest, inner)
            part.children.append(child)
            if found[2] >= 0 and found[2] != mine:
                part.end = child.end


def parse_message(data: Buffer) -> Message:
    """The MIME tree of a whole message."""
    parser = _Parser(data)
    return Message(data, parser.part(0, len(data), 0, False, [])[0])


# --- ENVELOPE ------------------------------------------------------------------------------

def _addresses(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    addrs = parse_addresses(value)
    if not addrs:
        return b"NIL"
    out = [b"("]
    for a in addrs:
        out.append(b"(" + quote.nstring_for_humans(a.name) + b" " + quote.nstring(a.route) + b" "
                   + quote.nstring(a.mailbox) + b" " + quote.nstring(a.domain) + b")")
    out.append(b")")
    return b"".join(out)


def envelope(part: Part) -> bytes:
    """ENVELOPE of a message part (RFC 3501 §7.4.2); Sender and Reply-To default to From."""
    h = part.headers
    sender = h.get(b"sender", h.get(b"from"))
    reply_to = h.get(b"reply-to", h.get(b"from"))
    items = [
        quote.nstring_nolf(h.get(b"date")),
        quote.nstring_for_humans(h.get(b"subject")),
        _addresses(h.get(b"from")),
        _addresses(sender),
        _addresses(reply_to),
        _addresses(h.get(b"to")),
        _addresses(h.get(b"cc")),
        _addresses(h.get(b"bcc")),
        quote.nstring_nolf(h.get(b"in-reply-to")),
        quote.nstring_nolf(h.get(b"message-id")),
    ]
    return b"(" + b" ".join(items) + b")"


# --- BODYSTRUCTURE / BODY ------------------------------------------------------------------

def _params(params: list[tuple[bytes, bytes]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(quote.string(k) + b" " + quote.string(v) for k, v in params) + b")"


def _extension(part: Part) -> list[bytes]:
    """body-fld-dsp, body-fld-lang, body-fld-loc (RFC 3501 §9 body-ext-*)."""
    h = part.headers
    disp = b"NIL"
    if b"content-disposition" in h:
        parsed = parse_disposition(h[b"content-disposition"])
        if parsed is not None:
            disp = b"(" + quote.string(parsed[0]) + b" " + _params(parsed[1]) + b")"
    lang = b"NIL"
    if b"content-language" in h:
        langs = parse_token_list(h[b"content-language"])
        if langs:
            lang = b"(" + b" ".join(quote.string(x) for x in langs) + b")"
    return [disp, lang, quote.nstring(h.get(b"content-location"))]


_EMPTY_TEXT = (b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0', b" NIL NIL NIL NIL)")


def bodystructure(msg: Message, part: Part | None = None, extended: bool = True) -> bytes:
    """BODYSTRUCTURE (``extended``) or BODY of a part (default: the whole message)."""
    part = msg.root if part is None else part
    data = msg.data
    h = part.headers
    if part.multipart:
        if part.children:
            kids = b"".join(bodystructure(msg, c, extended) for c in part.children)
        else:
            kids = _EMPTY_TEXT[0] + (_EMPTY_TEXT[1] if extended else b")")
        out = [b"(" + kids + b" " + quote.string(part.subtype)]
        if extended:
            out += [_params(part.params), *_extension(part)]
        return b" ".join(out) + b")"
    params = list(part.params)
    is_text = part.type.lower() == b"text"
    if is_text and not any(k.lower() == b"charset" for k, _ in params):
        params.append((b"charset", b"us-ascii"))
    cte = h.get(b"content-transfer-encoding")
    encoding = (parse_mime_token(cte) if cte is not None else None) or b"7bit"
    size, lines = _crlf_size(data, part.body_start, part.end)
    out = [quote.string(part.type), quote.string(part.subtype), _params(params),
           quote.nstring(h.get(b"content-id")), quote.nstring(h.get(b"content-description")),
           quote.string(encoding), b"%d" % size]
    if part.message is not None:
        out += [envelope(part.message), bodystructure(msg, part.message, extended), b"%d" % lines]
    elif is_text:
        out.append(b"%d" % lines)
    if extended:
        out += [quote.nstring(h.get(b"content-md5")), *_extension(part)]
    return b"(" + b" ".join(out) + b")"


def virtual_size(msg: Message) -> int:
    """RFC822.SIZE: the size with CRLF line ends."""
    return _crlf_size(msg.data, 0, len(msg.data))[0]


# --- sections ------------------------------------------------------------------------------

def find_part(msg: Message, path: tuple[int, ...]) -> Part | None:
    """The part a section number names (RFC 3501 §6.4.5), as Dovecot resolves it.

    In a multipart, N is the N-th child. A non-multipart part answers to 1
    once: the body of a non-multipart message is its part 1, and ``2.1`` is
    part 2 itself when part 2 is not multipart, but ``1.1`` of a plain
    message names nothing. A message/rfc822 part is entered when more
    numbers follow, and its message then numbers like a message.
    """
    part: Part | None = msg.root
    fresh = True
    for i, num in enumerate(path):
        assert part is not None
        if part.multipart:
            part = part.children[num - 1] if 0 < num <= len(part.children) else None
            if part is None:
                return None
            fresh = True
        elif num != 1 or not fresh:
            return None
        else:
            fresh = False
        if part.message is not None and i + 1 < len(path):
            part = part.message
            fresh = True
    return part


@dataclass(frozen=True)
class SectionSpec:
    """``section`` of BODY[…]: part numbers, then a text specifier.

    ``text`` is ``""`` (the whole part), ``HEADER``, ``HEADER.FIELDS``,
    ``HEADER.FIELDS.NOT``, ``TEXT`` or ``MIME``; ``fields`` are upper-cased
    header names for the two field lists.
    """

    path: tuple[int, ...] = ()
    text: str = ""
    fields: tuple[bytes, ...] = ()


def _header_fields(data: Buffer, start: int, end: int, names: frozenset[bytes],
                   negate: bool) -> bytes:
    body_start, fields, _found = _scan_header(data, start, end)
    out = bytearray()
    for fstart, colon, fend in fields:
        name = _field_name(data, fstart, colon).lower() if colon >= 0 else b""
        if (name in names) != negate:
            out += b"".join(iter_crlf(data, fstart, fend))
            if not out.endswith(b"\n"):
                out += b"\r\n"
    # The blank line: always after HEADER.FIELDS; after .NOT only when the
    # message has one (Dovecot's header filter keeps the original end).
    if not negate or not fields or body_start > fields[-1][2]:
        out += b"\r\n"
    return bytes(out)


def section_ranges(msg: Message, spec: SectionSpec) -> tuple[int, int] | bytes:
    """Where a section lies: a (start, end) byte range of the file, or the bytes themselves."""
    part = find_part(msg, spec.path) if spec.path else msg.root
    if part is None:
        return b""
    text = spec.text
    if text == "MIME":
        if not spec.path:
            return b""
        return (part.start, part.body_start)
    if text == "":
        if not spec.path:
            return (0, len(msg.data))
        return (part.body_start, part.end)
    target = part
    if spec.path:
        if part.message is None:
            return b""
        target = part.message
    if text == "HEADER":
        return (target.start, target.body_start)
    if text == "TEXT":
        return (target.body_start, target.end)
    names = frozenset(f.lower() for f in spec.fields)
    return _header_fields(msg.data, target.start, target.end, names, text == "HEADER.FIELDS.NOT")


def section(msg: Message, spec: SectionSpec, partial: tuple[int, int] | None = None) -> tuple[int, Iterator[bytes]]:
    """A section's (size, chunks) with CRLF line ends, cut to ``partial`` = (offset, length)."""
    where = section_ranges(msg, spec)
    if isinstance(where, bytes):
        content = where
        if partial is not None:
            content = content[partial[0]:partial[0] + partial[1]]
        return len(content), iter((content,) if content else ())
    start, end = where
    data = msg.data
    if start == end:
        return 0, iter(())
    if partial is None:
        return _crlf_size(data, start, end)[0], iter_crlf(data, start, end)
    return _partial(data, start, end, partial[0], partial[1])


def _partial(data: Buffer, start: int, end: int, offset: int, length: int) -> tuple[int, Iterator[bytes]]:
    total = _crlf_size(data, start, end)[0]
    if offset >= total:
        return 0, iter(())
    size = min(length, total - offset)

    def gen() -> Iterator[bytes]:
        skip, left = offset, size
        for chunk in iter_crlf(data, start, end):
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            piece = chunk[skip:skip + left]
            skip = 0
            left -= len(piece)
            yield piece
            if left <= 0:
                return
    return size, gen()


def section_bytes(msg: Message, spec: SectionSpec, partial: tuple[int, int] | None = None) -> bytes:
    """A section as one bytes value (for small sections and tests)."""
    return b"".join(section(msg, spec, partial)[1])


def header_fields(msg: Message, part: Part | None = None) -> Iterator[tuple[bytes, bytes]]:
    """Every header field of a part (default: the message) as (name, unfolded-raw value), in order."""
    part = msg.root if part is None else part
    data = msg.data
    _, fields, _ = _scan_header(data, part.start, part.end)
    for start, colon, end in fields:
        if colon >= 0:
            yield _field_name(data, start, colon), _value(data, colon, end)
