"""RFC 5322 header tokens as an IMAP server reads them: addresses, MIME types, parameters.

What it does
    A small tokenizer over one header value (:class:`Tokenizer`: CFWS with
    nested comments, atoms, dot-atoms, quoted strings, phrases, domains) and
    on top of it:

    * :func:`parse_addresses` — an address list for ENVELOPE (RFC 3501
      §7.4.2), as Dovecot reads it, broken input included: a missing local
      part or domain is reported as ``MISSING_MAILBOX`` / ``MISSING_DOMAIN``,
      an unterminated ``<…`` as domain ``SYNTAX_ERROR``; a group gives a start
      marker ``(NIL NIL name NIL)`` and an end marker ``(NIL NIL NIL NIL)``
      (RFC 3501 §7.4.2); a trailing comment after a bare ``addr-spec`` becomes
      the display name; a bare phrase is a display name with no address.
    * :func:`parse_content_type` — ``type/subtype`` and parameters (RFC 2045
      §5.1) with RFC 2231 continuations joined: ``name*0*=…; name*1=…``
      becomes one ``name*`` parameter whose value keeps its
      ``charset'lang'`` prefix and %-encoding, as Dovecot reports it.
    * :func:`parse_token_list` and :func:`parse_mime_token` for
      Content-Language, Content-Transfer-Encoding and Content-Disposition.

    Names keep the case they were written in (Dovecot does not fold them).

Errors
    None: malformed input gives the best reading, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

_ATEXT = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
) | frozenset(range(0x80, 0x100))
#: RFC 2045 §5.1 token characters: any CHAR except SPACE, CTLs and tspecials.
_TSPECIALS = frozenset(b'()<>@,;:\\"/[]?=')
_TOKEN = frozenset(c for c in range(0x21, 0x100) if c not in _TSPECIALS and c != 0x7F)


class Tokenizer:
    """Position in one header value. Methods return 1 (more input), 0 (end) or -1 (error)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.last_comment = bytearray()

    @property
    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def peek(self) -> int:
        """The byte at the cursor, or 0 at the end (the C string terminator)."""
        return self.data[self.pos] if self.pos < len(self.data) else 0

    def _skip_comment(self) -> int:
        self.last_comment.clear()
        depth = 1
        start = self.pos + 1
        i = start
        data = self.data
        while i < len(data):
            c = data[i]
            if c == 0x5C:  # backslash: quoted pair
                self.last_comment += data[start:i]
                i += 1
                start = i
                if i >= len(data):
                    break
            elif c == 0x28:
                depth += 1
            elif c == 0x29:
                depth -= 1
                if depth == 0:
                    self.last_comment += data[start:i]
                    self.pos = i + 1
                    return 1
            i += 1
        self.pos = len(data)
        return -1

    def skip_lwsp(self) -> int:
        """Skip spaces, tabs, line ends and comments (CFWS)."""
        data = self.data
        while self.pos < len(data):
            c = data[self.pos]
            if c in (0x20, 0x09, 0x0D, 0x0A):
                self.pos += 1
            elif c == 0x28:
                if self._skip_comment() < 0:
                    return -1
            else:
                return 1
        return 0

    def quoted_string(self, out: bytearray) -> int:
        """Read ``"…"`` (the cursor is on the quote) into ``out``, unescaped, folding removed."""
        data = self.data
        i = self.pos + 1
        start = i
        while i < len(data):
            c = data[i]
            if c == 0x22:
                out += data[start:i]
                self.pos = i + 1
                return self.skip_lwsp()
            if c == 0x5C:
                out += data[start:i]
                i += 1
                start = i
                if i >= len(data):
                    break
            elif c in (0x0D, 0x0A):
                out += data[start:i]
                start = i + 1
            i += 1
        self.pos = len(data)
        return -1

    def atom_or_dot(self, out: bytearray) -> int:
        start = self.pos
        data = self.data
        while self.pos < len(data) and (data[self.pos] in _ATEXT or data[self.pos] == 0x2E):
            self.pos += 1
        out += data[start:self.pos]
        if self.pos >= len(data):
            return 0
        return self.skip_lwsp()

    def dot_atom(self, out: bytearray) -> int:
        data = self.data
        if self.pos >= len(data) or data[self.pos] not in _ATEXT:
            return -1
        start = self.pos
        self.pos += 1
        while self.pos < len(data):
            if data[self.pos] in _ATEXT:
                self.pos += 1
                continue
            out += data[start:self.pos]
            ret = self.skip_lwsp()
            if ret <= 0:
                return ret
            if data[self.pos] != 0x2E:
                return 1
            self.pos += 1
            out += b"."
            ret = self.skip_lwsp()
            if ret <= 0:
                return ret
            start = self.pos
        out += data[start:self.pos]
        return 0

    def phrase(self, out: bytearray) -> int:
        """``1*word`` joined by single spaces (obs-phrase dots allowed)."""
        if self.at_end:
            return 0
        if self.peek() == 0x2E:
            return -1
        while True:
            if self.peek() == 0x22:
                ret = self.quoted_string(out)
            else:
                ret = self.atom_or_dot(out)
            if ret <= 0:
                return ret
            c = self.peek()
            if c not in _ATEXT and c not in (0x22, 0x2E):
                break
            out += b" "
        return self.skip_lwsp()

    def domain_literal(self, out: bytearray) -> int:
        data = self.data
        start = self.pos
        end = data.find(b"]", start)
        if end < 0:
            self.pos = len(data)
            return -1
        out += bytes(c for c in data[start:end + 1] if c not in (0x0D, 0x0A, 0x09, 0x20))
        self.pos = end + 1
        return self.skip_lwsp()

    def domain(self, out: bytearray) -> int:
        """``@`` domain: the cursor is on the ``@``."""
        self.pos += 1
        if self.skip_lwsp() <= 0:
            return -1
        if self.peek() == 0x5B:
            return self.domain_literal(out)
        return self.dot_atom(out)

    def mime_token(self, out: bytearray) -> int:
        start = self.pos
        data = self.data
        while self.pos < len(data) and data[self.pos] in _TOKEN:
            self.pos += 1
        out += data[start:self.pos]
        if self.pos >= len(data):
            return 0
        return self.skip_lwsp()


# --- addresses ---------------------------------------------------------------------------

@dataclass
class Address:
    """One ENVELOPE address; a group start has ``domain`` None, a group end everything None."""

    name: bytes | None = None
    route: bytes | None = None
    mailbox: bytes | None = None
    domain: bytes | None = None


class _AddressParser:
    def __init__(self, data: bytes) -> None:
        self.tok = Tokenizer(data)
        self.out: list[Address] = []
        self.addr = Address()

    def _add(self, fill: bool) -> None:
        addr = self.addr
        if fill:
            if not addr.mailbox:
                addr.mailbox = b"MISSING_MAILBOX"
            if not addr.domain:
                addr.domain = b"MISSING_DOMAIN"
        self.out.append(addr)
        self.addr = Address()

    def local_part(self) -> int:
        buf = bytearray()
        tok = self.tok
        if tok.at_end:
            return 0
        ret = tok.quoted_string(buf) if tok.peek() == 0x22 else tok.dot_atom(buf)
        if ret < 0:
            return -1
        self.addr.mailbox = bytes(buf)
        return ret

    def domain(self) -> int:
        buf = bytearray()
        ret = self.tok.domain(buf)
        if ret < 0:
            return -1
        self.addr.domain = bytes(buf)
        return ret

    def domain_list(self) -> int:
        """Obsolete source route ``@a,@b:`` (RFC 5322 §4.4)."""
        tok = self.tok
        route = bytearray()
        while True:
            if route:
                route += b","
            route += b"@"
            buf = bytearray()
            ret = tok.domain(buf)
            route += buf
            if ret <= 0:
                return ret
            while tok.peek() == 0x2C:
                tok.pos += 1
                if tok.skip_lwsp() <= 0:
                    return -1
            if tok.peek() != 0x40:
                break
        self.addr.route = bytes(route)
        return 1

    def angle_addr(self) -> int:
        tok = self.tok
        tok.pos += 1
        if tok.skip_lwsp() <= 0:
            return -1
        if tok.peek() == 0x40:
            if self.domain_list() > 0 and tok.peek() == 0x3A:
                tok.pos += 1
            else:
                self.addr.route = b"INVALID_ROUTE"
                if tok.at_end:
                    return -1
            if tok.skip_lwsp() <= 0:
                return -1
        if tok.peek() != 0x3E:
            if self.local_part() <= 0:
                return -1
            if tok.peek() == 0x40:
                if self.domain() <= 0:
                    return -1
        if tok.peek() != 0x3E:
            return -1
        tok.pos += 1
        return tok.skip_lwsp()

    def name_addr(self) -> int:
        tok = self.tok
        buf = bytearray()
        if tok.phrase(buf) <= 0 or tok.peek() != 0x3C:
            return -1
        self.addr.name = bytes(buf) if buf else None
        if self.angle_addr() < 0:
            self.addr.domain = b"SYNTAX_ERROR"
        return 0 if tok.at_end else 1

    def addr_spec(self) -> int:
        tok = self.tok
        tok.last_comment.clear()
        quoted_local = tok.peek() == 0x22
        ret = self.local_part()
        ret2 = -2
        if ret != 0 and not tok.at_end and tok.peek() == 0x40:
            ret2 = self.domain()
            if ret2 <= 0:
                ret = ret2
        if tok.last_comment:
            self.addr.name = bytes(tok.last_comment)
        elif ret2 == -2:
            buf = bytearray(self.addr.mailbox or b"")
            buf += b" "
            before = len(buf)
            tok.phrase(buf)
            if len(buf) != before:
                self.addr.mailbox = None
                self.addr.name = bytes(buf)
            elif not quoted_local:
                self.addr.domain = b""
        return ret

    def mailbox(self) -> int:
        tok = self.tok
        start = tok.pos
        ret = self.name_addr()
        if ret < 0:
            tok.pos = start
            self.addr = Address()
            ret = self.addr_spec()
        self._add(fill=True)
        return ret

    def group(self) -> int:
        tok = self.tok
        buf = bytearray()
        if tok.phrase(buf) <= 0 or tok.peek() != 0x3A:
            return -1
        tok.pos += 1
        ret = tok.skip_lwsp()
        if ret <= 0:
            ret = -1
        self.addr = Address(mailbox=bytes(buf))
        self._add(fill=False)
        if ret > 0 and tok.peek() == 0x3B:
            tok.pos += 1
            ret = tok.skip_lwsp()
        else:
            while ret > 0:
                ret = self.mailbox()
                if ret <= 0:
                    break
                if tok.peek() == 0x3B:
                    tok.pos += 1
                    ret = tok.skip_lwsp()
                    break
                if tok.peek() != 0x2C:
                    ret = -1
                    break
                tok.pos += 1
                ret = tok.skip_lwsp()
        self._add(fill=False)
        return ret

    def address(self) -> int:
        start = self.tok.pos
        self.addr = Address()
        ret = self.group()
        if ret < 0:
            self.tok.pos = start
            self.addr = Address()
            ret = self.mailbox()
        return ret

    def address_list(self, max_addresses: int) -> None:
        tok = self.tok
        if tok.skip_lwsp() <= 0:
            return
        while max_addresses > 0:
            max_addresses -= 1
            if self.address() == 0:
                break
            if tok.at_end or tok.peek() != 0x2C:
                break
            tok.pos += 1
            ret = tok.skip_lwsp()
            if ret <= 0:
                if ret < 0:
                    self._add(fill=True)
                break


def parse_addresses(value: bytes, max_addresses: int = 10000) -> list[Address]:
    """An address list as ENVELOPE reports it (see the module text)."""
    parser = _AddressParser(value)
    parser.address_list(max_addresses)
    return parser.out


# --- MIME headers --------------------------------------------------------------------------

def parse_mime_token(value: bytes) -> bytes | None:
    """The first token of a value (Content-Transfer-Encoding), comments skipped."""
    tok = Tokenizer(value)
    if tok.skip_lwsp() <= 0:
        return None
    buf = bytearray()
    tok.mime_token(buf)
    return bytes(buf) if buf else None


def parse_token_list(value: bytes) -> list[bytes]:
    """Comma-separated tokens (Content-Language, RFC 3282)."""
    tok = Tokenizer(value)
    out: list[bytes] = []
    if tok.skip_lwsp() <= 0:
        return out
    while not tok.at_end:
        buf = bytearray()
        ret = tok.mime_token(buf)
        if not buf:
            break
        out.append(bytes(buf))
        if ret <= 0 or tok.peek() != 0x2C:
            break
        tok.pos += 1
        if tok.skip_lwsp() <= 0:
            break
    return out


def _parse_params(tok: Tokenizer) -> list[tuple[bytes, bytes]]:
    """``*(";" attribute "=" value)``, stopping at the first broken one."""
    raw: list[tuple[bytes, bytes]] = []
    while tok.peek() == 0x3B:
        tok.pos += 1
        if tok.skip_lwsp() <= 0:
            break
        key = bytearray()
        if tok.mime_token(key) <= 0 or tok.peek() != 0x3D or not key:
            break
        tok.pos += 1
        if tok.skip_lwsp() <= 0:
            break
        value = bytearray()
        if tok.peek() == 0x22:
            ret = tok.quoted_string(value)
        else:
            ret = tok.mime_token(value)
        if ret < 0:
            break
        raw.append((bytes(key), bytes(value)))
        if ret == 0:
            break
    return _join_rfc2231(raw)


def _join_rfc2231(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """RFC 2231 §3: join ``name*N`` / ``name*N*`` continuations into one parameter."""
    plain: list[tuple[bytes, bytes]] = []
    groups: dict[bytes, list[tuple[int, bool, bytes, bytes]]] = {}
    order: list[bytes] = []
    for key, value in raw:
        star = key.find(b"*")
        if star > 0:
            suffix = key[star + 1:]
            extended = suffix.endswith(b"*")
            digits = suffix[:-1] if extended else suffix
            if digits.isdigit():
                base = key[:star]
                folded = base.lower()
                if folded not in groups:
                    groups[folded] = []
                    order.append(folded)
                groups[folded].append((int(digits), extended, base, value))
                continue
        plain.append((key, value))
    for folded in order:
        segs = sorted(groups[folded], key=lambda s: s[0])
        any_ext = any(s[1] for s in segs)
        name = segs[0][2] + (b"*" if any_ext else b"")
        plain.append((name, b"".join(s[3] for s in segs)))
    return plain


@dataclass
class ContentType:
    type: bytes
    subtype: bytes
    params: list[tuple[bytes, bytes]]


def parse_content_type(value: bytes) -> ContentType | None:
    """``type/subtype *(; param)``; None when not even a type can be read."""
    tok = Tokenizer(value)
    if tok.skip_lwsp() <= 0:
        return None
    ctype = bytearray()
    ret = tok.mime_token(ctype)
    subtype = bytearray()
    if ret > 0 and tok.peek() == 0x2F:
        tok.pos += 1
        if tok.skip_lwsp() > 0:
            ret = tok.mime_token(subtype)
    if not ctype:
        return None
    while ret > 0 and tok.peek() not in (0x3B, 0):
        tok.pos += 1  # junk before the parameters: skip to the next ';'
    return ContentType(bytes(ctype), bytes(subtype), _parse_params(tok))


def parse_disposition(value: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """Content-Disposition (RFC 2183): type and parameters."""
    tok = Tokenizer(value)
    if tok.skip_lwsp() <= 0:
        return None
    dtype = bytearray()
    tok.mime_token(dtype)
    if not dtype:
        return None
    return bytes(dtype), _parse_params(tok)
