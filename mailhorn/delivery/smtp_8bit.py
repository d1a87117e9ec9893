"""8BITMIME downgrade: 8-bit MIME parts to quoted-printable for a 7-bit server.

When a message is stored as 8-bit (queue file attribute ``encoding=8bit``)
and the next server does not announce 8BITMIME (RFC 6152), the SMTP client
converts the message the way Postfix's smtp(8) does (postconf(5)
``disable_mime_output_conversion``):

* a leaf part whose ``Content-Transfer-Encoding`` is ``8bit`` or ``binary``
  gets ``Content-Transfer-Encoding: quoted-printable`` and its body is
  encoded per RFC 2045 §6.7 (lines of at most 76 characters, soft breaks);
* a ``multipart/*`` or ``message/rfc822`` part declared ``8bit`` becomes
  ``7bit`` and its parts are converted in turn (RFC 2045 §6.4: composite
  types only allow identity encodings);
* headers are passed through unchanged, as Postfix does.

A part that claims ``7bit`` (or says nothing) yet carries 8-bit bytes in its
body cannot be converted honestly; :func:`check_convertible` finds that
before anything is sent, so the client can bounce with ``5.6.3``
("improper use of 8-bit data in message body", Postfix's MIME error text).

The conversion streams: lines in, lines out, with a stack of multipart
boundaries; only one part's header is held at a time (bounded by
``header_size_limit``).

Parameters read: none (the caller passes ``header_size_limit``).
Errors: :class:`NotConvertible`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mailhorn.delivery.smtp_proto import lines_of

__all__ = ["NotConvertible", "check_convertible", "downgrade", "qp_encode_line"]

#: RFC 5322 header continuation and MIME parameter syntax.
_BOUNDARY_RE = re.compile(rb'boundary\s*=\s*(?:"([^"]*)"|([^\s;]+))', re.IGNORECASE)
_MAX_DEPTH = 100  # postconf(5) mime_nesting_limit


class NotConvertible(Exception):
    """The message cannot be made 7-bit clean."""


@dataclass
class _Part:
    content_type: bytes
    encoding: bytes


def qp_encode_line(line: bytes, width: int = 76) -> bytes:
    """One text line (without its line end) as quoted-printable, soft-broken at ``width``."""
    out: list[bytes] = []
    current = bytearray()
    n = len(line)
    for i, byte in enumerate(line):
        last = i == n - 1
        if byte in (0x20, 0x09) and last:
            token = b"=%02X" % byte  # RFC 2045 §6.7 rule 3: no trailing white space
        elif (33 <= byte <= 126 and byte != 0x3D) or byte in (0x20, 0x09):
            token = bytes((byte,))
        else:
            token = b"=%02X" % byte
        if len(current) + len(token) > width - 1 and not (last and len(current) + len(token) <= width):
            out.append(bytes(current) + b"=")
            current = bytearray()
        current += token
    out.append(bytes(current))
    return b"\n".join(out)


def _split_header(block: list[bytes]) -> list[list[bytes]]:
    """Physical header lines grouped into logical header fields."""
    fields: list[list[bytes]] = []
    for line in block:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    return fields


def _field(fields: list[list[bytes]], name: bytes) -> bytes | None:
    for f in fields:
        head = f[0]
        colon = head.find(b":")
        if colon > 0 and head[:colon].strip().lower() == name:
            return b" ".join(x.strip() for x in [head[colon + 1:], *f[1:]]).strip()
    return None


def _part_of(fields: list[list[bytes]], default_type: bytes) -> tuple[_Part, bytes | None]:
    ctype = _field(fields, b"content-type")
    cte = _field(fields, b"content-transfer-encoding")
    mime_type = default_type
    boundary: bytes | None = None
    if ctype:
        mime_type = ctype.split(b";", 1)[0].strip().lower()
        m = _BOUNDARY_RE.search(ctype)
        if m:
            boundary = m.group(1) if m.group(1) is not None else m.group(2)
    encoding = (cte or b"7bit").split(b"(", 1)[0].strip().lower()
    return _Part(mime_type, encoding), boundary


def _rewrite_cte(fields: list[list[bytes]], value: bytes) -> list[bytes]:
    out: list[bytes] = []
    for f in fields:
        head = f[0]
        colon = head.find(b":")
        if colon > 0 and head[:colon].strip().lower() == b"content-transfer-encoding":
            out.append(b"Content-Transfer-Encoding: " + value + b"\n")
        else:
            out.extend(f)
    return out


class _Converter:
    """The streaming state machine (one instance per pass over a message)."""

    def __init__(self, header_limit: int, check_only: bool) -> None:
        self.header_limit = header_limit
        self.check_only = check_only
        self.boundaries: list[bytes] = []
        self.in_header = True
        self.header: list[bytes] = []
        self.header_size = 0
        self.default_type = b"text/plain"
        self.encode = False
        self.strict7 = False  # the part claims 7bit: 8-bit bytes in it are an error

    def run(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        for line in lines:
            if self.in_header:
                yield from self._header_line(line)
            else:
                yield from self._body_line(line)
        if self.in_header and self.header:
            yield from self._end_header(None)

    # -- headers -----------------------------------------------------------
    def _header_line(self, line: bytes) -> Iterator[bytes]:
        if line in (b"\n", b"\r\n"):
            yield from self._end_header(line)
            return
        self.header.append(line)
        self.header_size += len(line)
        if self.header_size > self.header_limit:
            # Too large to inspect: pass it on and leave the part as it is.
            yield from self.header
            self.header = []
            self.in_header = False
            self.encode = self.strict7 = False

    def _end_header(self, blank: bytes | None) -> Iterator[bytes]:
        fields = _split_header(self.header)
        part, boundary = _part_of(fields, self.default_type)
        self.header = []
        self.header_size = 0
        self.in_header = False
        self.encode = self.strict7 = False
        major = part.content_type.split(b"/", 1)[0]
        nested_message = part.content_type in (b"message/rfc822", b"message/global")
        lines = [line for f in fields for line in f]
        if major == b"multipart" and boundary and part.encoding in (b"7bit", b"8bit", b"binary"):
            if len(self.boundaries) >= _MAX_DEPTH:
                raise NotConvertible("MIME nesting exceeds safety limit")
            if part.encoding != b"7bit":
                lines = _rewrite_cte(fields, b"7bit")
            self.boundaries.append(boundary)
            self.default_type = b"message/rfc822" if part.content_type == b"multipart/digest" else b"text/plain"
            self.strict7 = True  # preamble
        elif nested_message and part.encoding in (b"7bit", b"8bit", b"binary"):
            if part.encoding != b"7bit":
                lines = _rewrite_cte(fields, b"7bit")
            self.in_header = True
            self.default_type = b"text/plain"
        elif part.encoding in (b"8bit", b"binary"):
            lines = _rewrite_cte(fields, b"quoted-printable")
            self.encode = True
        elif part.encoding == b"7bit":
            self.strict7 = True
        yield from lines
        if blank is not None:
            yield blank

    # -- bodies ------------------------------------------------------------
    def _boundary_level(self, line: bytes) -> tuple[int, bool] | None:
        if not line.startswith(b"--") or not self.boundaries:
            return None
        text = line.rstrip()
        for level in range(len(self.boundaries) - 1, -1, -1):
            b = b"--" + self.boundaries[level]
            if text == b:
                return level, False
            if text == b + b"--":
                return level, True
        return None

    def _body_line(self, line: bytes) -> Iterator[bytes]:
        hit = self._boundary_level(line)
        if hit is not None:
            level, closing = hit
            del self.boundaries[level + 1:]
            self.encode = False
            if closing:
                self.boundaries.pop()
                self.strict7 = True  # epilogue
            else:
                self.in_header = True
                self.default_type = b"text/plain"
            yield line
            return
        if self.encode:
            if self.check_only:
                return
            eol = line.endswith(b"\n")
            text = line.rstrip(b"\n")
            if text.endswith(b"\r"):
                text = text[:-1]
            yield qp_encode_line(text) + (b"\n" if eol else b"")
            return
        if self.strict7 and any(byte > 127 for byte in line):
            raise NotConvertible("improper use of 8-bit data in message body")
        yield line


def downgrade(chunks: Iterable[bytes], header_limit: int = 102400) -> Iterator[bytes]:
    """The message (LF line ends) with 8-bit parts converted; lines out."""
    return _Converter(header_limit, check_only=False).run(lines_of(chunks))


def check_convertible(chunks: Iterable[bytes], header_limit: int = 102400) -> None:
    """Raise :class:`NotConvertible` when :func:`downgrade` would meet 8-bit data it
    cannot encode; reads the whole message without keeping it."""
    for _ in _Converter(header_limit, check_only=True).run(lines_of(chunks)):
        pass
