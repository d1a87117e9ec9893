"""A minimal accept-everything server around `ServerEngine`, for tests.

It answers every event the way Postfix's smtpd answers when no restriction
refuses anything, so transcripts can be compared with what the real smtpd
sent for the same input.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mailhorn.smtp import reply as R
from mailhorn.smtp.codec import (
    AuthResponse,
    BodyChunk,
    BodyEnd,
    CommandEvent,
    Rejected,
    ServerEngine,
)
from mailhorn.smtp.commands import (
    Auth,
    Bdat,
    Data,
    Etrn,
    Hello,
    Help,
    Mail,
    Noop,
    Quit,
    Rcpt,
    Rset,
    StartTls,
    Unknown,
    Vrfy,
    Xclient,
    Xforward,
    looks_like_header,
)
from mailhorn.smtp.reply import Reply

HOST = "mx.example.test"
EHLO_KEYWORDS = [
    "PIPELINING", "SIZE 10240000", "VRFY", "ETRN", "ENHANCEDSTATUSCODES",
    "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING",
]
FORBIDDEN = frozenset({"CONNECT", "GET", "POST"})


@dataclass
class Session:
    engine: ServerEngine
    output: bytearray = field(default_factory=bytearray)
    messages: list[bytes] = field(default_factory=list)
    current: bytearray = field(default_factory=bytearray)
    max_chunk: int = 0
    max_buffered: int = 0
    commands: list[str] = field(default_factory=list)
    pipelined: list[bool] = field(default_factory=list)
    tls_dropped: list[int] = field(default_factory=list)
    starttls_enabled: bool = True

    def answer(self, *replies: Reply) -> None:
        self.output += self.engine.reply(*replies)

    def pump(self) -> None:
        eng = self.engine
        while True:
            self.max_buffered = max(self.max_buffered, eng.buffered)
            ev = eng.next_event()
            if ev is None:
                if eng.tls_pending:
                    self.tls_dropped.append(eng.start_tls())
                    continue
                return
            if isinstance(ev, BodyChunk):
                self.current += ev.data
                self.max_chunk = max(self.max_chunk, len(ev.data))
            elif isinstance(ev, BodyEnd):
                self.on_body_end(ev)
            elif isinstance(ev, Rejected):
                self.commands.append(f"!{ev.verb}")
                self.pipelined.append(ev.pipelined)
                self.answer(ev.reply)
            elif isinstance(ev, AuthResponse):
                self.answer(R.Reply.of(501, "5.7.0", "Authentication aborted")
                            if ev.line == "*" else R.Reply.of(535, "5.7.8", "Error: authentication failed"))
            else:
                self.commands.append(type(ev.command).__name__)
                self.pipelined.append(ev.pipelined)
                self.on_command(ev)

    def on_body_end(self, ev: BodyEnd) -> None:
        eng = self.engine
        if ev.too_big:
            self.current.clear()
            reply = R.CHUNK_TOO_BIG if ev.bdat else R.MESSAGE_TOO_BIG
            self.answer(*([reply] * eng.expected_replies()))
            return
        if not ev.last:
            self.answer(R.bdat_chunk_ok(ev.chunk_octets))
            return
        self.messages.append(bytes(self.current))
        self.current.clear()
        qid = f"Q{len(self.messages)}"
        final = R.bdat_queued_as(ev.octets, qid) if ev.bdat else R.queued_as(qid)
        self.answer(*([final] * eng.expected_replies()))

    def on_command(self, ev: CommandEvent) -> None:
        cmd = ev.command
        if isinstance(cmd, Hello):
            self.answer(R.ehlo_ok(HOST, EHLO_KEYWORDS) if cmd.extended else R.helo_ok(HOST))
        elif isinstance(cmd, Mail):
            self.answer(R.MAIL_OK)
        elif isinstance(cmd, Rcpt):
            self.answer(R.RCPT_OK)
        elif isinstance(cmd, Data):
            self.answer(R.START_MAIL_INPUT)
        elif isinstance(cmd, Bdat):
            pass  # answered at BodyEnd
        elif isinstance(cmd, (Rset, Noop)):
            self.answer(R.OK)
        elif isinstance(cmd, Quit):
            self.answer(R.BYE)
        elif isinstance(cmd, Vrfy):
            self.answer(R.Reply.of(252, "2.0.0", R.printable(cmd.argument)))
        elif isinstance(cmd, Etrn):
            self.answer(R.ETRN_UNABLE)
        elif isinstance(cmd, StartTls):
            self.answer(R.READY_TO_START_TLS if self.starttls_enabled else R.COMMAND_NOT_IMPLEMENTED)
        elif isinstance(cmd, Auth):
            self.answer(R.Reply.of(334, None, ""))
        elif isinstance(cmd, (Xforward, Xclient)):
            self.answer(R.INSUFFICIENT_AUTHORIZATION)
        elif isinstance(cmd, Help):
            self.answer(R.COMMAND_NOT_RECOGNIZED)
        elif isinstance(cmd, Unknown):
            if cmd.verb.upper() in FORBIDDEN or not cmd.verb[:1].isalpha() or looks_like_header(cmd.line):
                self.answer(R.I_CAN_BREAK_RULES)
                self.engine.close()
            else:
                self.answer(R.COMMAND_NOT_RECOGNIZED)


def run(data: bytes, pieces: Iterable[int] | None = None, *, starttls: bool = True,
        **engine_args: Any) -> Session:
    """Feed `data` in pieces of the given sizes (one piece if None)."""
    engine_args.setdefault("hostname", HOST)
    session = Session(ServerEngine(**engine_args), starttls_enabled=starttls)
    pos = 0
    sizes = list(pieces) if pieces is not None else [len(data)]
    for size in sizes:
        if pos >= len(data):
            break
        session.engine.feed(data[pos : pos + size])
        pos += size
        session.pump()
    if pos < len(data):
        session.engine.feed(data[pos:])
        session.pump()
    return session


def replies(session: Session) -> list[str]:
    """The output as reply lines, for readable assertions."""
    return session.output.decode("utf-8", "surrogateescape").split("\r\n")[:-1]
