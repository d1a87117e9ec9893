"""The sans-I/O SMTP/LMTP server engine: bytes in, typed events out.

`ServerEngine` holds no socket and runs no timer (design.md §5 rule 1).  The
I/O side feeds it what the client sent, takes events, and answers each one
that asks for an answer with `reply()`, which returns the bytes to write.

Events (`next_event()` gives one, or None when the engine needs more input
or is waiting for a reply):

- `CommandEvent`: a well-formed command that the session order allows.
  Answer with `reply()`, except `Bdat`, whose answer goes to its `BodyEnd`.
- `Rejected`: the engine has decided the answer itself (syntax error, or
  the session order: ``503 5.5.1 Error: need MAIL command`` ...).  Send it
  with ``reply(event.reply)``; smtpd counts it as an error and may tarpit.
  ``close`` is true for replies after which Postfix disconnects (BDAT syntax,
  bare LF under ``smtpd_forbid_bare_newline = reject``).
- `BodyChunk`: message content, unstuffed, CRLF line ends, bounded size.
- `BodyEnd`: end of DATA or of one BDAT chunk.  Answer with one reply, or in
  LMTP mode at the end of the message one reply per accepted recipient
  (RFC 2033 §4.2).  ``too_big`` means ``message_size_limit`` was passed: the
  engine read on to the end, gave no more chunks, and smtpd answers 552.
- `AuthResponse`: a line of the SASL exchange after a 334 reply.

Session state follows the replies: a 2xx to MAIL opens the transaction, to
RCPT counts a recipient, 354 to DATA starts the content, any reply to the end
of the message (DATA's end, BDAT ... LAST; or 2xx to RSET, HELO/EHLO) ends the
transaction; a refused BDAT chunk that is not the last does not.

STARTTLS (RFC 3207 §4.2; CVE-2011-0411): after the STARTTLS line the engine
interprets nothing more.  When smtpd has sent ``220`` it calls
`start_tls()`, which throws away every byte received after the STARTTLS line
(returning how many), and forgets HELO/EHLO and the transaction.

Pipelining (RFC 2920): each command says whether more input was already
buffered behind it (``pipelined``; for reject_unauth_pipelining).  Write
replies out when `next_event()` returns None: the input is then drained
(`input_drained`), which is when Postfix flushes.  Stop reading from the
socket while `wants_input` is false; the buffer then stays bounded.

Parameters (constructor): ``lmtp``, ``line_length_limit`` (line_length_limit,
2048), ``message_size_limit`` (0 = none), ``recipient_limit``
(smtpd_recipient_limit, 0 = none), ``helo_required`` (smtpd_helo_required),
``bare_newline`` (smtpd_forbid_bare_newline: no / normalize / reject; may be
changed per client before the first event), ``hostname`` (myhostname, for
the 521 text), ``binarymime``.

Errors: `EngineStateError` when the caller breaks the protocol of this API
(a reply nobody asked for); the peer's input never raises.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Union

from mypy_extensions import mypyc_attr

from mailhorn.smtp import reply as R
from mailhorn.smtp.commands import (
    Auth,
    Bdat,
    Command,
    Data,
    Hello,
    Mail,
    Quit,
    Rcpt,
    Rset,
    StartTls,
    parse_command,
    split_words,
)
from mailhorn.smtp.data import BdatReader, DataReader, DataStatus
from mailhorn.smtp.lines import Line, LineFramer
from mailhorn.smtp.reply import Reply, SmtpReplyError

__all__ = [
    "AuthResponse",
    "BodyChunk",
    "BodyEnd",
    "CommandEvent",
    "EngineStateError",
    "Event",
    "Rejected",
    "ServerEngine",
]

READ_AHEAD: Final = 256 * 1024


# A compiled class may derive from few built-in exceptions; RuntimeError is not one.
@mypyc_attr(native_class=False)
class EngineStateError(RuntimeError):
    """The caller used the engine out of order (a local bug)."""


@dataclass(frozen=True, slots=True)
class CommandEvent:
    command: Command
    line: str
    pipelined: bool
    truncated: bool

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, command: Command, line: str, pipelined: bool, truncated: bool) -> None:
        object.__setattr__(self, "command", command)
        object.__setattr__(self, "line", line)
        object.__setattr__(self, "pipelined", pipelined)
        object.__setattr__(self, "truncated", truncated)


@dataclass(frozen=True, slots=True)
class Rejected:
    reply: Reply
    line: str
    verb: str
    pipelined: bool
    close: bool = False


@dataclass(frozen=True, slots=True)
class BodyChunk:
    data: bytes

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, data: bytes) -> None:
        object.__setattr__(self, "data", data)


@dataclass(frozen=True, slots=True)
class BodyEnd:
    octets: int  # content octets of the whole message so far
    chunk_octets: int  # octets of this BDAT chunk (DATA: same as octets)
    too_big: bool
    bdat: bool
    last: bool  # end of the message (DATA end, or BDAT ... LAST)

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, octets: int, chunk_octets: int, too_big: bool, bdat: bool, last: bool) -> None:
        object.__setattr__(self, "octets", octets)
        object.__setattr__(self, "chunk_octets", chunk_octets)
        object.__setattr__(self, "too_big", too_big)
        object.__setattr__(self, "bdat", bdat)
        object.__setattr__(self, "last", last)


@dataclass(frozen=True, slots=True)
class AuthResponse:
    line: str
    truncated: bool


Event = Union[CommandEvent, Rejected, BodyChunk, BodyEnd, AuthResponse]


class _Mode(enum.Enum):
    COMMAND = "command"
    AWAIT_REPLY = "await-reply"
    DATA = "data"
    BDAT = "bdat"
    BDAT_DISCARD = "bdat-discard"
    AUTH = "auth"
    TLS_PENDING = "tls-pending"
    CLOSED = "closed"


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class ServerEngine:
    """SMTP (or LMTP) server protocol state machine."""

    def __init__(
        self,
        *,
        lmtp: bool = False,
        line_length_limit: int = 2048,
        message_size_limit: int = 10240000,
        recipient_limit: int = 0,
        helo_required: bool = False,
        bare_newline: str = "no",
        hostname: str = "localhost",
        binarymime: bool = False,
        chunk_size: int = 64 * 1024,
    ) -> None:
        self.lmtp = lmtp
        self.message_size_limit = message_size_limit
        self.recipient_limit = recipient_limit
        self.helo_required = helo_required
        self.hostname = hostname
        self.binarymime = binarymime
        self._framer = LineFramer(line_length_limit)
        self._data = DataReader(bare_newline, chunk_size)
        self._chunk_size = chunk_size
        self._bdat: BdatReader | None = None
        self._buf = bytearray()
        self._mode = _Mode.COMMAND
        self._pending: Event | None = None  # the event awaiting a reply
        self._after_discard: Rejected | None = None
        self.helo: Hello | None = None
        self.discarded_after_starttls = 0
        self._data_ended = False
        self._bdat_last = False
        self._chunk_octets = 0
        self._reset_transaction()

    # --- settings ---------------------------------------------------------

    @property
    def bare_newline(self) -> str:
        return self._data.mode

    @bare_newline.setter
    def bare_newline(self, mode: str) -> None:
        self._data = DataReader(mode, self._chunk_size)

    # --- state visible to smtpd ------------------------------------------

    @property
    def in_transaction(self) -> bool:
        """MAIL FROM accepted and the message not yet ended."""
        return self.mail is not None

    @property
    def closed(self) -> bool:
        return self._mode is _Mode.CLOSED

    @property
    def input_drained(self) -> bool:
        """No unconsumed input: time to flush replies (RFC 2920 §3.2)."""
        return not self._buf

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def wants_input(self) -> bool:
        """False while enough is buffered: stop reading (bounded memory)."""
        return self._mode is not _Mode.CLOSED and len(self._buf) < READ_AHEAD

    def _reset_transaction(self) -> None:
        self.mail: Mail | None = None
        self.recipients = 0
        self.bdat_seen = False
        self.octets = 0
        self.too_big = False

    # --- input ------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Add received bytes.  Ignored once the session is closed."""
        if self._mode is not _Mode.CLOSED:
            self._buf += data

    def next_event(self) -> Event | None:
        """The next event, or None (need input, or a reply is awaited)."""
        mode = self._mode
        if mode is _Mode.COMMAND:
            return self._next_command()
        if mode is _Mode.DATA:
            return self._next_data()
        if mode in (_Mode.BDAT, _Mode.BDAT_DISCARD):
            return self._next_bdat()
        if mode is _Mode.AUTH:
            line = self._framer.take(self._buf)
            if line is None:
                return None
            return self._await(AuthResponse(_decode(line.text), line.truncated))
        return None

    def _await(self, event: Event) -> Event:
        self._pending = event
        self._mode = _Mode.AWAIT_REPLY
        return event

    def _reject(self, reply: Reply, line: str, verb: str, pipelined: bool, close: bool = False) -> Event:
        return self._await(Rejected(reply, line, verb, pipelined, close or reply.code == 521))

    def _next_command(self) -> Event | None:
        line = self._framer.take(self._buf)
        if line is None:
            return None
        pipelined = bool(self._buf)
        text = _decode(line.text)
        words = split_words(text)
        verb = words[0].upper() if words else ""
        if line.bare_newline and self._data.mode == "reject":
            return self._reject(R.bare_newline_received(self.hostname), text, verb, pipelined, True)
        try:
            self._check_order_first(verb)
            command = parse_command(text, lmtp=self.lmtp, binarymime=self.binarymime)
            if isinstance(command, Bdat):
                return self._start_bdat(command, line, text, pipelined)
            self._check_order(command)
        except SmtpReplyError as err:
            return self._reject(err.reply, text, verb, pipelined)
        return self._await(CommandEvent(command, text, pipelined, line.truncated))

    def _check_order_first(self, verb: str) -> None:
        """Session-order checks that Postfix makes before it looks at the
        arguments (``MAIL FOO`` in a transaction is a nested MAIL)."""
        if verb == "MAIL":
            if self.helo_required and self.helo is None:
                raise SmtpReplyError(R.NEED_HELO)
            if self.mail is not None:
                raise SmtpReplyError(R.NESTED_MAIL)
        elif verb == "RCPT":
            if self.mail is None:
                raise SmtpReplyError(R.NEED_MAIL)
        elif verb == "ETRN":
            if self.helo_required and self.helo is None:
                raise SmtpReplyError(R.NEED_HELO_ETRN)

    def _check_order(self, command: Command) -> None:
        """Checks after parsing (RFC 5321 §4.1.4 order, RFC 1870 SIZE)."""
        if isinstance(command, Mail):
            size = command.params.size
            if size is not None and 0 < self.message_size_limit < size:
                raise SmtpReplyError(R.SIZE_EXCEEDS_LIMIT)
        elif isinstance(command, Rcpt):
            if 0 < self.recipient_limit <= self.recipients:
                raise SmtpReplyError(R.TOO_MANY_RECIPIENTS)
        elif isinstance(command, Data):
            if self.bdat_seen:
                raise SmtpReplyError(R.DATA_AFTER_BDAT)
            self._need_recipients()
            if command.argument:
                raise SmtpReplyError(R.SYNTAX_DATA)

    def _need_recipients(self) -> None:
        if self.recipients == 0:
            raise SmtpReplyError(R.NO_VALID_RECIPIENTS if self.mail is not None else R.NEED_RCPT)

    def _start_bdat(self, command: Bdat, line: Line, text: str, pipelined: bool) -> Event | None:
        """BDAT: the chunk follows the command line at once (RFC 3030 §2),
        so it is read even when the command is refused, and the refusal is
        reported only once the chunk is swallowed."""
        self._bdat = BdatReader(command.size, self._chunk_size)
        self._bdat_last = command.last
        self._chunk_octets = 0
        try:
            self._need_recipients()
        except SmtpReplyError as err:
            self._mode = _Mode.BDAT_DISCARD
            self._after_discard = Rejected(err.reply, text, "BDAT", pipelined)
            return self._next_bdat()
        if not self.bdat_seen:
            self.bdat_seen = True
            self.octets = 0
            self.too_big = False
        self._mode = _Mode.BDAT
        return CommandEvent(command, text, pipelined, line.truncated)

    def _next_bdat(self) -> Event | None:
        bdat = self._bdat
        assert bdat is not None
        if self._mode is _Mode.BDAT_DISCARD:
            while not bdat.done and self._buf:
                bdat.take(self._buf)
            if not bdat.done:
                return None
            rejected = self._after_discard
            assert rejected is not None
            self._after_discard = None
            self._bdat = None
            return self._await(rejected)
        while not bdat.done:
            piece = bdat.take(self._buf)
            if not piece:
                return None
            self._chunk_octets += len(piece)
            self.octets += len(piece)
            if 0 < self.message_size_limit < self.octets:
                self.too_big = True
            if not self.too_big:
                return BodyChunk(piece)
        self._bdat = None
        return self._await(BodyEnd(self.octets, self._chunk_octets, self.too_big, True, self._bdat_last))

    def _next_data(self) -> Event | None:
        if self._data_ended:
            self._data_ended = False
            return self._data_end()
        while True:
            piece, status = self._data.take(self._buf)
            self.octets += len(piece)
            if 0 < self.message_size_limit < self.octets:
                self.too_big = True
            if status is DataStatus.BARE_NEWLINE:
                return self._reject(R.bare_newline_received(self.hostname), "", "DATA", False, True)
            if status is DataStatus.END:
                if piece and not self.too_big:
                    # Hand out the last content first; the end comes next.
                    self._data_ended = True
                    return BodyChunk(piece)
                return self._data_end()
            if not piece:
                return None
            if not self.too_big:
                return BodyChunk(piece)

    def _data_end(self) -> Event:
        return self._await(BodyEnd(self.octets, self.octets, self.too_big, False, True))

    # --- output -----------------------------------------------------------

    def expected_replies(self) -> int:
        """How many replies `reply()` wants now: 0 if none is awaited; at the
        end of an LMTP message, one per accepted recipient (RFC 2033 §4.2)."""
        ev = self._pending
        if self._mode is not _Mode.AWAIT_REPLY or ev is None:
            return 0
        if isinstance(ev, BodyEnd) and ev.last and self.lmtp:
            return max(self.recipients, 1)
        return 1

    def reply(self, *replies: Reply) -> bytes:
        """Answer the pending event; returns the bytes to send."""
        want = self.expected_replies()
        if want == 0:
            raise EngineStateError("no event is waiting for a reply")
        if len(replies) != want:
            raise EngineStateError(f"{want} replies expected, {len(replies)} given")
        ev = self._pending
        self._pending = None
        self._mode = _Mode.COMMAND
        first = replies[0]
        if isinstance(ev, Rejected):
            if ev.close:
                self._mode = _Mode.CLOSED
        elif isinstance(ev, CommandEvent):
            self._after_command(ev.command, first)
        elif isinstance(ev, AuthResponse):
            if first.code == 334:
                self._mode = _Mode.AUTH
        elif isinstance(ev, BodyEnd):
            # A refused BDAT chunk leaves the transaction open until LAST, as
            # in Postfix (smtpd answers later chunks "551 ... Discarded").
            if ev.last:
                self._reset_transaction()
        if first.code == 421 or first.code == 521:
            self._mode = _Mode.CLOSED
        return first.render() if want == 1 else b"".join(r.render() for r in replies)

    def _after_command(self, command: Command, reply: Reply) -> None:
        ok = 200 <= reply.code < 300
        if isinstance(command, Hello):
            if ok:
                self.helo = command
                self._reset_transaction()
        elif isinstance(command, Mail):
            if ok:
                self._reset_transaction()
                self.mail = command
        elif isinstance(command, Rcpt):
            if ok:
                self.recipients += 1
        elif isinstance(command, Data):
            if reply.code == 354:
                self._data.reset()
                self._data_ended = False
                self.octets = 0
                self.too_big = False
                self._mode = _Mode.DATA
        elif isinstance(command, Rset):
            if ok:
                self._reset_transaction()
        elif isinstance(command, Quit):
            self._mode = _Mode.CLOSED
        elif isinstance(command, StartTls):
            if reply.code == 220:
                self._mode = _Mode.TLS_PENDING
        elif isinstance(command, Auth):
            if reply.code == 334:
                self._mode = _Mode.AUTH

    def send(self, reply: Reply) -> bytes:
        """Render a reply that answers no event (greeting, timeout); 421 and
        521 close the session (RFC 5321 §3.8, RFC 7504)."""
        if reply.code in (421, 521):
            self._mode = _Mode.CLOSED
            self._pending = None
        return reply.render()

    def close(self) -> None:
        """The I/O side gave up on the session (timeout, error)."""
        self._mode = _Mode.CLOSED
        self._pending = None
        self._buf.clear()

    # --- STARTTLS ---------------------------------------------------------

    @property
    def tls_pending(self) -> bool:
        """220 sent to STARTTLS: do the TLS handshake, then `start_tls()`."""
        return self._mode is _Mode.TLS_PENDING

    def start_tls(self) -> int:
        """Begin the session anew over TLS (RFC 3207 §4.2): drop the input
        that came after the STARTTLS line in plaintext (CVE-2011-0411) and
        forget EHLO and the transaction.  Returns the octets dropped."""
        if self._mode is not _Mode.TLS_PENDING:
            raise EngineStateError("start_tls() without an accepted STARTTLS")
        dropped = len(self._buf)
        self._buf.clear()
        self._framer.reset()
        self.helo = None
        self._reset_transaction()
        self.discarded_after_starttls = dropped
        self._mode = _Mode.COMMAND
        return dropped
