"""Client side of the SMTP/LMTP engine: parsing the server's replies.

`ReplyParser` takes bytes in any chunking and gives whole `Reply` values.
A reply is one or more lines ``CODE-text`` ending with ``CODE text`` (or a
bare ``CODE``), RFC 5321 §4.2.1.  An enhanced status code (RFC 3463; RFC 2034
§3) at the start of the first line, whose class digit matches the reply
code, becomes ``Reply.status`` and is removed from every line that repeats
it.  Lines longer than ``line_length_limit`` are cut there and the rest is
dropped, as the Postfix client does; a reply of more than ``max_lines``
lines is an error, so memory stays bounded.

For LMTP (RFC 2033 §4.2) the caller reads one reply per accepted recipient
after the end of the message; the parser itself has no mode.

Parameters: ``line_length_limit``, ``max_lines``.
Errors: `ReplySyntaxError` for a line that is not a reply line, or
continuation lines whose codes differ.
"""

from __future__ import annotations

import re

from mailhorn.smtp.lines import LineFramer
from mailhorn.smtp.reply import Reply

__all__ = ["ReplyParser", "ReplySyntaxError"]

_LINE_RE = re.compile(r"([2-5][0-9][0-9])([ -]|\Z)(.*)\Z", re.DOTALL)
_STATUS_RE = re.compile(r"([245]\.\d{1,3}\.\d{1,3})(?: |\Z)")


class ReplySyntaxError(ValueError):
    """The server sent something that is not an SMTP reply."""


class ReplyParser:
    """Bytes from an SMTP/LMTP server in, `Reply` values out."""

    def __init__(self, line_length_limit: int = 2048, max_lines: int = 1000) -> None:
        self._framer = LineFramer(line_length_limit)
        self._buf = bytearray()
        self._code: int | None = None
        self._lines: list[str] = []
        self.max_lines = max_lines

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def partial(self) -> bool:
        """Part of a reply (lines or bytes) is held: the server has not
        finished it yet."""
        return bool(self._buf) or bool(self._lines)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None if more input is needed."""
        while True:
            line = self._framer.take(self._buf)
            if line is None:
                return None
            # A stray CR in a reply line is not ours to pass on.
            text = line.text.decode("utf-8", "surrogateescape").rstrip("\r").replace("\r", " ")
            m = _LINE_RE.match(text)
            if m is None:
                raise ReplySyntaxError(f"malformed reply line: {text[:80]!r}")
            code = int(m.group(1))
            if self._code is not None and code != self._code:
                raise ReplySyntaxError(f"reply code changed from {self._code} to {code}")
            self._code = code
            self._lines.append(m.group(3))
            if len(self._lines) > self.max_lines:
                raise ReplySyntaxError("too many reply lines")
            if m.group(2) != "-":
                lines, self._lines, self._code = self._lines, [], None
                return _make_reply(code, lines)


def _make_reply(code: int, lines: list[str]) -> Reply:
    status: str | None = None
    m = _STATUS_RE.match(lines[0])
    if m is not None and m.group(1)[0] == str(code)[0]:
        status = m.group(1)
        lines = [_strip_status(line, status) for line in lines]
    return Reply(code, status, tuple(lines))


def _strip_status(line: str, status: str) -> str:
    if line == status:
        return ""
    if line.startswith(status + " "):
        return line[len(status) + 1 :]
    return line
