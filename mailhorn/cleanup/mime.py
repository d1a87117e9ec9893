"""A streaming MIME structure tracker (RFC 2045, RFC 2046) for cleanup.

Cleanup reads a message line by line and must know, for every line, whether
it belongs to a header block (and which kind: the message's own headers, the
headers of a multipart body part, or the headers of an attached
``message/rfc822``) or to a body — that choice decides which of
``header_checks``, ``mime_header_checks``, ``nested_header_checks`` and
``body_checks`` sees it. Like Postfix's mime_state, the tracker keeps only
the stack of open multipart boundaries, never the content.

Cleanup drives it: while in a header block it reports each complete logical
header (:meth:`MimeTracker.header`); at the end of the block it asks where
the content goes next (:meth:`MimeTracker.end_headers`); in a body it passes
each line to :meth:`MimeTracker.body_line`, which recognises boundary lines
(RFC 2046 §5.1.1: ``--boundary`` opens a part, ``--boundary--`` closes the
multipart; a line matching an outer boundary closes the inner ones).

Limits (design.md §5 rule 8): at most ``mime_nesting_limit`` levels are
followed — deeper structure is read as plain body, which is what Postfix 3.7
does (the message is not refused); boundaries are compared on their first
``mime_boundary_length_limit`` characters only. With
``disable_mime_input_processing = yes`` everything after the message's own
headers is body.

The tracker also notes 8-bit content transfer encodings
(``detect_8bit_encoding_header``) for the queue file's ``encoding`` attribute.

Parameters read (by the caller, passed in): ``mime_nesting_limit``,
``mime_boundary_length_limit``, ``disable_mime_input_processing``.
"""

from __future__ import annotations

import enum

from mailhorn.cleanup.headers import HeaderClass


class Next(enum.Enum):
    """What follows the end of a header block or a boundary line."""

    BODY = "body"
    PART_HEADERS = "part-headers"
    NESTED_HEADERS = "nested-headers"


def _param(value: str, name: str) -> str | None:
    """A parameter of a Content-Type value (RFC 2045 §5.1), quoted or token."""
    lower = value.lower()
    start = 0
    while True:
        at = lower.find(name, start)
        if at < 0:
            return None
        before = lower[:at].rstrip()
        start = at + len(name)
        rest = value[start:].lstrip()
        if not before.endswith(";") or not rest.startswith("="):
            continue
        rest = rest[1:].lstrip()
        if rest.startswith('"'):
            out: list[str] = []
            i = 1
            while i < len(rest) and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < len(rest):
                    i += 1
                out.append(rest[i])
                i += 1
            return "".join(out)
        end = len(rest)
        for i, c in enumerate(rest):
            if c in "; \t\r\n()<>@,:\\\"/[]?=":
                end = i
                break
        return rest[:end]


def _media_type(value: str) -> tuple[str, str]:
    """(type, subtype), lower case, of a Content-Type value; comments are dropped."""
    head = value.split(";", 1)[0]
    depth = 0
    kept: list[str] = []
    for c in head:
        if c == "(":
            depth += 1
        elif c == ")" and depth:
            depth -= 1
        elif not depth and not c.isspace():
            kept.append(c)
    main, _, sub = "".join(kept).lower().partition("/")
    return main, sub


class MimeTracker:
    """Where each line of a streamed message belongs (see module doc)."""

    def __init__(self, *, nesting_limit: int = 100, boundary_length_limit: int = 2048,
                 enabled: bool = True) -> None:
        self.nesting_limit = nesting_limit
        self.boundary_length_limit = max(boundary_length_limit, 1)
        self.enabled = enabled
        self._boundaries: list[str] = []
        self._nested_messages = 0
        self._pending_multipart: str | None = None
        self._pending_message = False
        self._encoding = ""
        self.header_class = HeaderClass.PRIMARY
        #: A Content-Transfer-Encoding of 8bit or binary was seen somewhere.
        self.saw_8bit_encoding = False

    @property
    def depth(self) -> int:
        """Open multipart levels plus attached messages entered."""
        return len(self._boundaries) + self._nested_messages

    def header(self, name: str, value: str) -> None:
        """Note one complete logical header of the current header block."""
        lower = name.lower()
        if lower == "content-type":
            main, sub = _media_type(value)
            self._pending_multipart = None
            self._pending_message = False
            if main == "multipart":
                boundary = _param(value, "boundary")
                if boundary:
                    self._pending_multipart = boundary[: self.boundary_length_limit]
            elif main == "message" and sub in ("rfc822", "global"):
                self._pending_message = True
        elif lower == "content-transfer-encoding":
            self._encoding = value.strip().lower()
            if self._encoding in ("8bit", "binary"):
                self.saw_8bit_encoding = True

    def end_headers(self) -> Next:
        """The header block ended: where does the content go now?"""
        multipart, message, encoding = self._pending_multipart, self._pending_message, self._encoding
        self._pending_multipart = None
        self._pending_message = False
        self._encoding = ""
        if not self.enabled or self.depth >= self.nesting_limit:
            return Next.BODY
        if multipart is not None:
            self._boundaries.append(multipart)
            return Next.BODY
        # RFC 2046 §5.2.1: an encoded message/rfc822 is opaque.
        if message and encoding in ("", "7bit", "8bit", "binary"):
            self._nested_messages += 1
            self.header_class = HeaderClass.NESTED
            return Next.NESTED_HEADERS
        return Next.BODY

    def body_line(self, line: str) -> Next | None:
        """Classify a body line: None for plain text, else what a boundary line opens."""
        if not self._boundaries or not line.startswith("--"):
            return None
        text = line[2:]
        for level in range(len(self._boundaries) - 1, -1, -1):
            boundary = self._boundaries[level]
            if not text.startswith(boundary):
                continue
            tail = text[len(boundary):]
            if len(boundary) >= self.boundary_length_limit:
                # Only the first characters are compared (mime_boundary_length_limit).
                closing = tail.rstrip().endswith("--")
            else:
                closing = tail.startswith("--")
                if not closing and tail.strip():
                    continue
            self._nested_messages = 0
            if closing:
                del self._boundaries[level:]
                self.header_class = HeaderClass.PRIMARY
                return Next.BODY
            del self._boundaries[level + 1:]
            self.header_class = HeaderClass.MULTIPART
            return Next.PART_HEADERS
        return None
