"""The sans-I/O POP3 codec: bytes in, typed line events out; replies and messages to bytes.

What it does
    :class:`Pop3Decoder` holds no socket (design.md §5 rule 1).  The server
    feeds it what the client sent (:meth:`~Pop3Decoder.receive_data`) and
    takes events (:meth:`~Pop3Decoder.next_event`, None when more input is
    needed):

    * :class:`Command`: one command line (RFC 1939 §3: a keyword of three or
      four characters, case-insensitive, then arguments separated by single
      spaces).  ``name`` is upper case; ``args`` is the rest of the line
      after the first space, as sent; ``line`` is the whole line (SASL
      responses in an AUTH exchange are whole lines, not commands);
    * :class:`LineTooLong`: a line longer than ``max_line`` octets.  Its
      octets are discarded as they arrive, never buffered; the server says
      so and closes (Dovecot disconnects on an overfull input buffer).

    Line ends: CRLF, or a bare LF (tolerated as every POP3 server does).

    :meth:`~Pop3Decoder.start_tls` throws away everything received after the
    ``STLS`` line, so plaintext pipelined behind it is never executed as if
    it came through TLS (RFC 2595 §4; the CVE-2011-0411 class of bugs).

    Replies: :func:`ok`, :func:`err` and :func:`multiline` (RFC 1939 §3:
    ``+OK``/``-ERR``, multi-line responses end with ``.`` and lines that
    start with ``.`` are byte-stuffed).

    :class:`MessageEncoder` turns a message streamed in chunks into the
    lines of a RETR or TOP answer with bounded memory: bare LF becomes CRLF,
    a leading ``.`` is doubled, the last line is ended with CRLF when the
    message lacks one, and for TOP only the header and the first N body
    lines go out (RFC 1939 §7).

Parameters
    ``max_line`` (constructor): the longest line accepted, CRLF included.
    RFC 2449 §4 allows 255 octets for commands and RFC 5034 §4 raises the
    limit for AUTH responses, so the default is :data:`MAX_LINE`.

Errors
    None: the peer's input never raises.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: The longest line accepted (CRLF included): a SASL response of smtpd_sasl_response_limit size fits.
MAX_LINE = 16384


@dataclass(frozen=True)
class Command:
    """One line from the client."""

    name: str
    args: str
    line: str


@dataclass(frozen=True)
class LineTooLong:
    """A line passed the limit; its octets were discarded."""

    limit: int


Event = Command | LineTooLong


def parse_line(raw: bytes) -> Command:
    """A line (without its end) as a command: keyword upper-cased, arguments kept.

    Octets that are not UTF-8 are kept as surrogate escapes, so a password in
    another encoding still reaches the password check unchanged.
    """
    text = raw.decode("utf-8", "surrogateescape")
    name, _sep, args = text.partition(" ")
    return Command(name.upper(), args, text)


class Pop3Decoder:
    """Splits the client's byte stream into bounded lines."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._skipping = False  # inside an over-long line: drop until its LF

    @property
    def pending(self) -> int:
        """Octets received and not yet returned as events."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        """Add what the client sent."""
        self._buf += data

    def next_event(self) -> Event | None:
        """The next complete line, or None when more input is needed."""
        while True:
            end = self._buf.find(b"\n")
            if self._skipping:
                if end < 0:
                    self._buf.clear()
                    return None
                del self._buf[: end + 1]
                self._skipping = False
                return LineTooLong(self.max_line)
            if end < 0:
                if len(self._buf) >= self.max_line:
                    self._buf.clear()
                    self._skipping = True
                    continue
                return None
            if end + 1 > self.max_line:
                del self._buf[: end + 1]
                return LineTooLong(self.max_line)
            raw = bytes(self._buf[:end])
            del self._buf[: end + 1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            return parse_line(raw)

    def take_unread(self) -> bytes:
        """Hand over the bytes received but not yet decoded, and forget them.

        Used at a command boundary (after a login) to pass what the client
        pipelined behind the command on to the process that serves the
        rest of the session.
        """
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def start_tls(self) -> int:
        """Discard unread input before the TLS handshake; return how many octets went."""
        dropped = len(self._buf)
        self._buf.clear()
        self._skipping = False
        return dropped


# --- replies ---------------------------------------------------------------------------

def _line(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape").replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"


def ok(text: str = "") -> bytes:
    """``+OK text``."""
    return _line(f"+OK {text}" if text else "+OK")


def err(text: str) -> bytes:
    """``-ERR text``."""
    return _line(f"-ERR {text}")


def stuff(line: str) -> str:
    """A line of a multi-line response, byte-stuffed (RFC 1939 §3)."""
    return "." + line if line.startswith(".") else line


def multiline(first: bytes, lines: Iterable[str]) -> bytes:
    """``first`` (an ok() line), then ``lines`` byte-stuffed, then the ``.`` terminator."""
    return first + b"".join(_line(stuff(line)) for line in lines) + b".\r\n"


#: The end of a multi-line response.
TERMINATOR = b".\r\n"


class MessageEncoder:
    """A message as the body of a RETR/TOP answer, chunk by chunk (bounded memory).

    ``body_lines`` None sends the whole message (RETR); a number sends the
    header, the blank line and that many body lines (TOP).  :meth:`feed`
    returns the octets to send for a chunk; :meth:`finish` returns the rest
    (a CRLF for an unterminated last line).  :attr:`done` turns true once
    TOP has sent all it needs, so the caller can stop reading the file.
    """

    def __init__(self, body_lines: int | None = None) -> None:
        self.body_lines = body_lines
        self.in_body = False
        self.done = body_lines is not None and body_lines < 0
        self._at_line_start = True   # nothing of the current line seen yet
        self._line_is_empty = True   # the current line has no content so far
        self._pending_cr = False     # a CR ended the previous chunk

    def _end_line(self, out: bytearray) -> None:
        out += b"\r\n"
        if not self.in_body:
            if self._line_is_empty:
                self.in_body = True
                if self.body_lines == 0:
                    self.done = True
        elif self.body_lines is not None:
            self.body_lines -= 1
            if self.body_lines <= 0:
                self.done = True
        self._at_line_start = True
        self._line_is_empty = True

    def _content(self, out: bytearray, segment: bytes) -> None:
        if segment:
            out += segment
            self._line_is_empty = False

    def feed(self, chunk: bytes) -> bytes:
        """Encode one chunk of the message file."""
        out = bytearray()
        pos = 0
        size = len(chunk)
        while pos < size and not self.done:
            if self._pending_cr:
                self._pending_cr = False
                if chunk[pos] == 0x0A:  # CRLF split across chunks
                    pos += 1
                    self._end_line(out)
                    continue
                self._content(out, b"\r")  # a lone CR is line content
            if self._at_line_start and chunk[pos] == 0x2E:
                out += b"."
            self._at_line_start = False
            end = chunk.find(b"\n", pos)
            if end < 0:
                segment = chunk[pos:]
                if segment.endswith(b"\r"):
                    segment = segment[:-1]
                    self._pending_cr = True
                self._content(out, segment)
                break
            segment = chunk[pos:end]
            self._content(out, segment[:-1] if segment.endswith(b"\r") else segment)
            pos = end + 1
            self._end_line(out)
        return bytes(out)

    def finish(self) -> bytes:
        """What remains after the last chunk: end an unterminated last line."""
        if self.done:
            return b""
        out = bytearray()
        if self._pending_cr:
            self._pending_cr = False
            out += b"\r"
        if not self._at_line_start:
            out += b"\r\n"
        return bytes(out)
