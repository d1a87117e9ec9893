"""The sans-I/O IMAP server engine: bytes in, typed command events out; responses to bytes.

`ImapCodec` holds no socket and runs no timer (design.md §5 rule 1). The
server feeds it what the client sent (`receive_data`) and takes events
(`next_event`, None when more input is needed or a decision is awaited):

- `CommandEvent`: a complete, well-formed command: ``tag``, ``name``,
  ``command`` (a typed value from :mod:`mailhorn.imap.parse`), ``spec``
  (its row of :data:`~mailhorn.imap.commands.COMMANDS`, with the states it
  may run in), ``uid``. The server checks the state and answers.
- `CommandError`: the engine decided the answer itself (syntax: ``BAD``;
  an over-long literal: ``[TOOBIG]``). Write ``response``; when ``close``
  is true, close the connection after it.
- `Continue`: the client announced a synchronising literal inside a
  command and the engine accepts it: write ``data`` (``+ OK``) now.
- `AppendStart`: APPEND's message literal is announced (``append`` holds
  mailbox, flags, date, size). The server checks the state and the mailbox
  and then calls `accept_append` (write the bytes it returns: ``+ OK`` for
  a synchronising literal, nothing for LITERAL+) or `reject_append` with
  its tagged ``NO``/``BAD`` response. After an accept come `AppendData`
  chunks (bounded size, never the whole message in memory: design.md §5
  rule 7) and then `AppendEnd` (``error`` set when the line after the
  literal was not empty: answer it and drop the message).
- `ContinuationLine`: after `want_line` (AUTHENTICATE exchanges, IDLE's
  ``DONE``), the next line as it came, without CRLF.

Limits (security): a command (its lines and literals other than APPEND's
message) may not pass ``max_line_length`` (Dovecot's
``imap_max_line_length``, 64 kB): a longer line is read to its end and
discarded, then answered ``BAD … Too long argument``. A literal announced
beyond what is left of that budget is refused before a byte of it is
read or allocated, with ``BAD [TOOBIG]`` (RFC 7889 §4 for APPEND:
``NO [TOOBIG]`` when beyond ``append_limit``). A synchronising literal can
be refused and the session goes on; a non-synchronising one (LITERAL+) is
already on its way, so the refusal closes the connection, as Dovecot does
(it sends ``* BYE Literal size too large``). Nesting is bounded by
:data:`mailhorn.imap.parse.MAX_DEPTH`.

STARTTLS (RFC 3501 §6.2.1; like CVE-2011-0411 in SMTP): after answering
OK, call `start_tls`, which discards every byte received after the
command line, so nothing sent before the handshake is ever executed.

Parameters (constructor): ``max_line_length`` (imap_max_line_length,
65536), ``append_limit`` (APPENDLIMIT, RFC 7889; None = no limit).

Errors: `CodecStateError` when the caller breaks this API's protocol; the
peer's input never raises.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Union

from mailhorn.imap.commands import CommandSpec, parse_append_head, parse_command
from mailhorn.mailstore.errors import (
    FolderExistsError,
    InvalidFolderName,
    MailstoreError,
    NoSuchFolder,
    QuotaExceeded,
)
from mailhorn.imap.parse import (
    Append,
    Command,
    Literal,
    ParseError,
    ParseNo,
    Piece,
    parse_datetime,
)

DEFAULT_MAX_LINE_LENGTH = 65536
#: APPEND data is handed over in chunks of at most this size.
CHUNK = 64 * 1024

_LITERAL_RE = re.compile(rb"(~?)\{(\d{1,20})(\+?)\}\r?\n\Z")
_TAG_BAD = frozenset(b'(){ %*"\\+') | frozenset(range(0x00, 0x21)) | {0x7F}


class CodecStateError(Exception):
    """The caller used the engine out of order (e.g. accept_append with no APPEND pending)."""


@dataclass(frozen=True)
class CommandEvent:
    tag: bytes
    name: str
    command: Command
    spec: CommandSpec
    uid: bool


@dataclass(frozen=True)
class CommandError:
    tag: bytes | None
    response: bytes
    close: bool = False


@dataclass(frozen=True)
class Continue:
    data: bytes


@dataclass(frozen=True)
class AppendStart:
    tag: bytes
    append: Append


@dataclass(frozen=True)
class AppendData:
    data: bytes


@dataclass(frozen=True)
class AppendEnd:
    error: bytes | None = None


@dataclass(frozen=True)
class ContinuationLine:
    data: bytes
    too_long: bool = False


Event = Union[CommandEvent, CommandError, Continue, AppendStart, AppendData, AppendEnd,
              ContinuationLine]


class _Mode(enum.Enum):
    LINE = enum.auto()
    DISCARD_LINE = enum.auto()     # a too-long line: drop to its end
    LITERAL = enum.auto()          # an argument literal
    APPEND_WAIT = enum.auto()      # AppendStart given, waiting for accept/reject
    APPEND_DATA = enum.auto()
    APPEND_TAIL = enum.auto()      # the line after APPEND's literal
    SKIP = enum.auto()             # a refused LITERAL+ message literal being discarded
    RAW_LINE = enum.auto()         # want_line()
    CLOSED = enum.auto()


# --- responses -----------------------------------------------------------------------------

def tagged(tag: bytes, status: str, text: str, code: str | None = None) -> bytes:
    """``tag OK [CODE] text`` (RFC 3501 §7.1)."""
    head = tag + b" " + status.encode()
    if code:
        head += b" [" + code.encode() + b"]"
    return head + b" " + text.encode("utf-8") + b"\r\n"


def untagged(text: str | bytes) -> bytes:
    body = text if isinstance(text, bytes) else text.encode("utf-8")
    return b"* " + body + b"\r\n"


def continuation(text: str = "OK") -> bytes:
    return b"+ " + text.encode("utf-8") + b"\r\n"


def bad_command(tag: bytes, name: str | None, reason: str, code: str | None = None) -> bytes:
    """Dovecot's wording: ``tag BAD Error in IMAP command NAME: reason``."""
    where = f"Error in IMAP command {name}" if name else "Error in IMAP command"
    return tagged(tag, "BAD", f"{where}: {reason}", code)


def store_error(tag: bytes, exc: MailstoreError) -> bytes:
    """The tagged NO for a mail store error, with Dovecot's response codes and texts.

    A refused name (``../x``, ``a/b``, ``~x``: the store keeps every name
    inside the user's root) is ``NO [CANNOT] Invalid mailbox name: reason``.
    """
    if isinstance(exc, InvalidFolderName):
        reason = str(exc).rsplit(": ", 1)[-1]
        return tagged(tag, "NO", f"Invalid mailbox name: {reason}", "CANNOT")
    if isinstance(exc, NoSuchFolder):
        return tagged(tag, "NO", str(exc), "NONEXISTENT")
    if isinstance(exc, FolderExistsError):
        return tagged(tag, "NO", "Mailbox already exists", "ALREADYEXISTS")
    if isinstance(exc, QuotaExceeded):
        return tagged(tag, "NO", "Quota exceeded (mailbox for user is full)", "OVERQUOTA")
    return tagged(tag, "NO", "Internal error occurred. Refer to server log for more information.",
                  "SERVERBUG")


FetchValue = Union[bytes, tuple[int, Iterable[bytes]]]


def fetch_response(seq: int, items: list[tuple[bytes, FetchValue]]) -> Iterator[bytes]:
    """``* seq FETCH (name value …)`` in chunks; a (size, chunks) value is sent as a literal.

    Large sections stream through this without being joined in memory.
    """
    head = b"* %d FETCH (" % seq
    for i, (name, value) in enumerate(items):
        sep = b"" if i == 0 else b" "
        if isinstance(value, bytes):
            head += sep + name + b" " + value
            continue
        size, chunks = value
        yield head + sep + name + b" {%d}\r\n" % size
        head = b""
        sent = 0
        for chunk in chunks:
            sent += len(chunk)
            yield chunk
        if sent != size:
            raise CodecStateError(f"literal of {size} bytes got {sent}")
    yield head + b")\r\n"


# --- the engine ----------------------------------------------------------------------------

class ImapCodec:
    """See the module text."""

    def __init__(self, *, max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
                 append_limit: int | None = None) -> None:
        self.max_line_length = max_line_length
        self.append_limit = append_limit
        self._buf = bytearray()
        self._mode = _Mode.LINE
        self._pieces: list[Piece] = []
        self._used = 0                # bytes of the current command so far
        self._head = b""              # start of the current command (for tag and name)
        self._remaining = 0
        self._literal = bytearray()
        self._literal_binary = False
        self._append: AppendStart | None = None
        self._append_sync = False
        self._discard_head = b""
        self._saved_mode = _Mode.LINE
        self.closed = False

    # -- input ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if not self.closed:
            self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def wants_input(self) -> bool:
        """False while waiting for a decision (APPEND) or closed: stop reading the socket."""
        return self._mode not in (_Mode.APPEND_WAIT, _Mode.CLOSED)

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
        """Drop every byte received after the STARTTLS line; return how many."""
        dropped = len(self._buf)
        self._buf.clear()
        self._reset_command()
        return dropped

    def want_line(self) -> None:
        """The next line is a continuation response (AUTHENTICATE) or ``DONE`` (IDLE)."""
        if self._mode is not _Mode.LINE or self._pieces:
            raise CodecStateError("want_line outside a command boundary")
        self._mode = _Mode.RAW_LINE

    def accept_append(self) -> bytes:
        """Take APPEND's message; returns what to write now (``+ OK`` or nothing)."""
        if self._mode is not _Mode.APPEND_WAIT or self._append is None:
            raise CodecStateError("no APPEND waiting")
        self._mode = _Mode.APPEND_DATA if self._remaining else _Mode.APPEND_TAIL
        return continuation("OK") if self._append_sync else b""

    def reject_append(self) -> None:
        """Refuse APPEND's message (the server writes its own NO/BAD); its bytes are skipped."""
        if self._mode is not _Mode.APPEND_WAIT or self._append is None:
            raise CodecStateError("no APPEND waiting")
        sync = self._append_sync
        self._append = None
        if sync:
            self._reset_command()
        else:
            self._mode = _Mode.SKIP

    # -- events --------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        while True:
            mode = self._mode
            if mode in (_Mode.CLOSED, _Mode.APPEND_WAIT):
                return None
            if mode is _Mode.LITERAL:
                if not self._take_literal():
                    return None
                continue
            if mode is _Mode.APPEND_DATA:
                if not self._buf:
                    return None
                n = min(self._remaining, len(self._buf), CHUNK)
                chunk = bytes(self._buf[:n])
                del self._buf[:n]
                self._remaining -= n
                if not self._remaining:
                    self._mode = _Mode.APPEND_TAIL
                return AppendData(chunk)
            if mode is _Mode.SKIP:
                n = min(self._remaining, len(self._buf))
                del self._buf[:n]
                self._remaining -= n
                if self._remaining:
                    return None
                self._mode = _Mode.APPEND_TAIL
                self._append = None
                continue
            line = self._line()
            if line is None:
                return None
            if mode is _Mode.RAW_LINE:
                self._mode = _Mode.LINE
                return ContinuationLine(line[0].rstrip(b"\r\n"), line[1])
            if mode is _Mode.APPEND_TAIL:
                tail = self._append_tail(line[0], line[1])
                if tail is not None:
                    return tail
                continue
            event = self._command_line(line[0], line[1])
            if event is not None:
                return event

    # -- framing -------------------------------------------------------------------------

    def _line(self) -> tuple[bytes, bool] | None:
        """The next complete line and whether it was too long (then it is only its start)."""
        nl = self._buf.find(b"\n")
        budget = max(self.max_line_length - self._used, 0)
        if nl < 0:
            if len(self._buf) > budget:
                # Keep the start for the tag and name; drop the rest as it comes.
                if self._mode is not _Mode.DISCARD_LINE:
                    self._discard_head = bytes(self._buf[:256])
                    self._saved_mode = self._mode
                    self._mode = _Mode.DISCARD_LINE
                self._buf.clear()
            return None
        if self._mode is _Mode.DISCARD_LINE:
            del self._buf[:nl + 1]
            self._mode = self._saved_mode
            return self._discard_head, True
        line = bytes(self._buf[:nl + 1])
        del self._buf[:nl + 1]
        if len(line) > budget:
            return line[:256], True
        return line, False

    def _reset_command(self) -> None:
        self._mode = _Mode.LINE
        self._pieces = []
        self._used = 0
        self._head = b""
        self._append = None

    def _tag_and_name(self, text: bytes) -> tuple[bytes | None, str | None]:
        tag, _, rest = text.rstrip(b"\r\n").partition(b" ")
        if not tag or any(c in _TAG_BAD for c in tag):
            return None, None
        name = rest.split(b" ", 1)[0].rstrip(b"\r\n")
        if not name:
            return tag, None
        return tag, name.decode("ascii", "replace").upper()

    def _command_line(self, line: bytes, too_long: bool) -> Event | None:
        first = not self._pieces
        if first:
            self._head = line[:256]
        tag, name = self._tag_and_name(self._head)
        if too_long:
            self._reset_command()
            if tag is None:
                return CommandError(None, untagged("BAD Error in IMAP tag: Invalid tag"))
            return CommandError(tag, bad_command(tag, name, "Too long argument"))
        if first and line in (b"\r\n", b"\n"):
            return None  # an empty line between commands is ignored
        self._used += len(line)
        m = _LITERAL_RE.search(line)
        if m is None:
            self._pieces.append(line.rstrip(b"\r\n"))
            return self._complete(tag, name)
        self._pieces.append(line[:m.start()])
        size = int(m.group(2))
        sync = not m.group(3)
        binary = bool(m.group(1))
        if tag is None or name is None:
            self._reset_command()
            if tag is None:
                return CommandError(None, untagged("BAD Error in IMAP tag: Invalid tag"), close=not sync)
            return CommandError(tag, bad_command(tag, name, "Invalid command name"), close=not sync)
        if name == "APPEND":
            head = self._append_head(tag, size, sync, binary)
            if head is not None:
                return head
        if binary:
            self._reset_command()
            return CommandError(tag, bad_command(tag, name, "Invalid arguments"), close=not sync)
        if size > self.max_line_length - self._used:
            self._reset_command()
            return self._too_big(tag, "BAD", sync)
        self._mode = _Mode.LITERAL
        self._remaining = size
        self._literal = bytearray()
        self._literal_binary = binary
        return Continue(continuation("OK")) if sync else None

    def _too_big(self, tag: bytes, status: str, sync: bool) -> CommandError:
        text = tagged(tag, status, "Literal size too large", "TOOBIG")
        if sync:
            return CommandError(tag, text)
        self._mode = _Mode.CLOSED
        self.closed = True
        return CommandError(tag, text + untagged("BYE Literal size too large"), close=True)

    def _take_literal(self) -> bool:
        n = min(self._remaining, len(self._buf))
        self._literal += self._buf[:n]
        del self._buf[:n]
        self._remaining -= n
        if self._remaining:
            return False
        self._pieces.append(Literal(bytes(self._literal), self._literal_binary))
        self._used += len(self._literal)
        self._literal = bytearray()
        self._mode = _Mode.LINE
        return True

    def _append_head(self, tag: bytes, size: int, sync: bool, binary: bool) -> Event | None:
        """APPEND's message literal is announced when the head before it is complete."""
        pieces = list(self._pieces)
        first = pieces[0]
        assert isinstance(first, bytes)
        pieces[0] = first[len(tag) + 1 + len("APPEND"):]
        try:
            mailbox, flags, raw_date = parse_append_head(pieces)
            date = parse_datetime(raw_date) if raw_date is not None else None
        except ParseNo as exc:
            return self._refuse_append(tag, "NO", str(exc), None, sync, size)
        except ParseError:
            return None  # not the message literal yet (e.g. a mailbox name literal)
        if self.append_limit is not None and size > self.append_limit:
            self._reset_command()
            return self._too_big_append(tag, sync, size)
        self._append = AppendStart(tag, Append(mailbox, tuple(flags), date, size, sync, binary))
        self._append_sync = sync
        self._remaining = size
        self._mode = _Mode.APPEND_WAIT
        return self._append

    def _too_big_append(self, tag: bytes, sync: bool, size: int) -> CommandError:
        text = tagged(tag, "NO", "Mail size is larger than the maximum size allowed by server "
                      "configuration", "TOOBIG")
        if sync:
            return CommandError(tag, text)
        self._mode = _Mode.CLOSED
        self.closed = True
        return CommandError(tag, text + untagged("BYE Literal size too large"), close=True)

    def _refuse_append(self, tag: bytes, status: str, text: str, code: str | None, sync: bool,
                       size: int) -> CommandError:
        response = tagged(tag, status, text, code)
        if sync:
            self._reset_command()
            return CommandError(tag, response)
        if self.append_limit is not None and size > self.append_limit:
            self._mode = _Mode.CLOSED
            self.closed = True
            return CommandError(tag, response, close=True)
        self._pieces = []
        self._remaining = size
        self._mode = _Mode.SKIP
        return CommandError(tag, response)

    def _append_tail(self, line: bytes, too_long: bool) -> Event | None:
        accepted = self._append is not None
        tag = self._append.tag if self._append is not None else None
        self._reset_command()
        if not accepted:
            return None  # a refused message's tail: the answer was already given
        if too_long or line not in (b"\r\n", b"\n"):
            assert tag is not None
            return AppendEnd(bad_command(tag, "APPEND", "Invalid arguments"))
        return AppendEnd()

    def _complete(self, tag: bytes | None, name: str | None) -> Event:
        pieces = self._pieces
        self._reset_command()
        if tag is None:
            return CommandError(None, untagged("BAD Error in IMAP tag: Invalid tag"))
        if name is None:
            return CommandError(tag, bad_command(tag, None, "Invalid command name"))
        first = pieces[0]
        assert isinstance(first, bytes)
        rest = first[len(tag) + 1 + len(name):]
        args: list[Piece] = [rest, *pieces[1:]]
        if name == "APPEND":
            return CommandError(tag, bad_command(tag, name, "Invalid arguments"))
        try:
            command, spec, uid = parse_command(name, args)
        except ParseNo as exc:
            return CommandError(tag, tagged(tag, "NO", str(exc)))
        except ParseError as exc:
            if name == "UID":
                sub = rest.split(b" ", 2)[1:2]
                name = "UID " + (sub[0].decode("ascii", "replace").upper() if sub else "")
            return CommandError(tag, bad_command(tag, name.rstrip(), str(exc)))
        if uid:
            name = rest.split(b" ", 2)[1].decode("ascii").upper()  # UID FETCH → FETCH, uid=True
        return CommandEvent(tag, name, command, spec, uid)
