"""Server engine transcripts; replies as the real Postfix 3.7 smtpd gave
them for the same input (hostname mx.example.test, default settings)."""

from __future__ import annotations

import random

import pytest

from mailhorn.smtp import reply as R
from mailhorn.smtp.codec import BodyChunk, BodyEnd, CommandEvent, EngineStateError, Rejected, ServerEngine
from mailhorn.smtp.commands import Bdat, Data, Mail, Rcpt
from tests.smtp.harness import EHLO_KEYWORDS, HOST, Session, replies, run

EHLO = [f"250-{HOST}"] + [f"250-{k}" for k in EHLO_KEYWORDS[:-1]] + [f"250 {EHLO_KEYWORDS[-1]}"]
TXN = b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
TXN_REPLIES = EHLO + ["250 2.1.0 Ok", "250 2.1.5 Ok"]

# (input, expected reply lines, expected messages)
TRANSCRIPTS: list[tuple[bytes, list[str], list[bytes]]] = [
    (
        b"EHLO x\r\nMAIL FROM:<a@b>\r\nMAIL FROM:<>\r\nRSET\r\nMAIL FROM: fribeiro\r\nRSET\r\n"
        b"MAIL FROM:<a@b>@c\r\nMAIL\r\nFOO\r\nVRFY x\r\nDATA\r\nRCPT TO:<x@y>\r\nDATA\r\nQUIT\r\n",
        EHLO + [
            "250 2.1.0 Ok",
            "503 5.5.1 Error: nested MAIL command",
            "250 2.0.0 Ok",
            "250 2.1.0 Ok",
            "250 2.0.0 Ok",
            "501 5.1.7 Bad sender address syntax",
            "501 5.5.4 Syntax: MAIL FROM:<address>",
            "500 5.5.2 Error: command not recognized",
            "252 2.0.0 x",
            "503 5.5.1 Error: need RCPT command",
            "503 5.5.1 Error: need MAIL command",
            "503 5.5.1 Error: need RCPT command",
            "221 2.0.0 Bye",
        ],
        [],
    ),
    (
        b"HELO\r\nEHLO\r\nHELO a b\r\nEHLO x\r\nMAIL FROM:<a@b> SIZE=99999999999\r\n"
        b"MAIL FROM:<a@b> FOO=bar\r\nMAIL FROM:<a@b> BODY=x\r\nMAIL FROM:<a@b> RET=x\r\n"
        b"MAIL FROM:<a@b> ENVID=a+2\r\nRCPT TO:<x@y> NOTIFY=x\r\nQUIT\r\n",
        ["501 Syntax: HELO hostname", "501 Syntax: EHLO hostname", f"250 {HOST}"] + EHLO + [
            "552 5.3.4 Message size exceeds fixed limit",
            "555 5.5.4 Unsupported option: FOO=bar",
            "555 5.5.4 Unsupported option: BODY=x",
            "501 5.5.4 Bad RET parameter syntax",
            "501 5.5.4 Bad ENVID parameter syntax",
            "503 5.5.1 Error: need MAIL command",
            "221 2.0.0 Bye",
        ],
        [],
    ),
    (
        TXN + b"DATA\r\nhello\r\n..dot\r\n.\r\nQUIT\r\n",
        TXN_REPLIES + ["354 End data with <CR><LF>.<CR><LF>", "250 2.0.0 Ok: queued as Q1", "221 2.0.0 Bye"],
        [b"hello\r\n.dot\r\n"],
    ),
    (
        TXN + b"DATA x\r\nQUIT x\r\n",
        TXN_REPLIES + ["501 5.5.4 Syntax: DATA", "221 2.0.0 Bye"],
        [],
    ),
    (
        TXN + b"BDAT 5\r\nhelloBDAT 0 LAST\r\nQUIT\r\n",
        TXN_REPLIES + ["250 2.0.0 Ok: 5 bytes", "250 2.0.0 Ok: 5 bytes queued as Q1", "221 2.0.0 Bye"],
        [b"hello"],
    ),
    (
        TXN + b"BDAT 5\r\nhelloDATA\r\nQUIT\r\n",
        TXN_REPLIES + ["250 2.0.0 Ok: 5 bytes", "503 5.5.1 Error: DATA after BDAT", "221 2.0.0 Bye"],
        [],
    ),
    (
        TXN + b"BDAT 05 last\r\nhelloDATA\r\nQUIT\r\n",
        TXN_REPLIES + ["250 2.0.0 Ok: 5 bytes queued as Q1", "503 5.5.1 Error: need RCPT command", "221 2.0.0 Bye"],
        [b"hello"],
    ),
    (
        TXN + b"RSET\r\nMAIL FROM:<a@b>\r\nBDAT 3 LAST\r\nabcQUIT\r\n",
        TXN_REPLIES + ["250 2.0.0 Ok", "250 2.1.0 Ok", "554 5.5.1 Error: no valid recipients", "221 2.0.0 Bye"],
        [],
    ),
    (
        b"EHLO x\r\nBDAT 3 LAST\r\nabcQUIT\r\n",
        EHLO + ["503 5.5.1 Error: need RCPT command", "221 2.0.0 Bye"],
        [],
    ),
    (
        TXN + b"BDAT -5 LAST\r\nQUIT\r\n",
        TXN_REPLIES + ["521 5.5.4 Syntax: BDAT count [LAST]"],
        [],
    ),
    (
        b"EHLO x\r\nMAIL FROM:<a@b>\r\nDATA\r\nQUIT\r\n",
        EHLO + ["250 2.1.0 Ok", "554 5.5.1 Error: no valid recipients", "221 2.0.0 Bye"],
        [],
    ),
    (
        b"EHLO x\r\n\r\n \r\nSTARTTLS x\r\nETRN\r\nETRN x\r\nHELP\r\nXFORWARD NAME=x\r\n"
        b"VRFY\r\nRSET x\r\nNOOP x\r\nLHLO x\r\nQUIT x\r\n",
        EHLO + [
            "500 5.5.2 Error: bad syntax",
            "500 5.5.2 Error: bad syntax",
            "501 5.5.4 Syntax: STARTTLS",
            "500 Syntax: ETRN domain",
            "458 Unable to queue messages",
            "500 5.5.2 Error: command not recognized",
            "550 5.7.0 Error: insufficient authorization",
            "501 5.5.4 Syntax: VRFY address [SMTPUTF8]",
            "501 5.5.4 Syntax: RSET",
            "250 2.0.0 Ok",
            "500 5.5.2 Error: command not recognized",
            "221 2.0.0 Bye",
        ],
        [],
    ),
    (
        # Bare LF commands are accepted (smtpd_forbid_bare_newline = no).
        b"EHLO x\nMAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\nx\r\n.\r\nQUIT\n",
        TXN_REPLIES + ["354 End data with <CR><LF>.<CR><LF>", "250 2.0.0 Ok: queued as Q1", "221 2.0.0 Bye"],
        [b"x\r\n"],
    ),
    (
        TXN + b"DATA\r\nx\r\n.\r\n.\r\nQUIT\r\n",
        TXN_REPLIES + [
            "354 End data with <CR><LF>.<CR><LF>", "250 2.0.0 Ok: queued as Q1",
            "221 2.7.0 Error: I can break rules, too. Goodbye.",
        ],
        [b"x\r\n"],
    ),
    (
        # Over line_length_limit: cut at 2048 octets, the rest of the line dropped.
        b"EHLO x\r\nNOOP " + b"x" * 3000 + b"\r\nMAIL FROM:<a@" + b"x" * 3000 + b">\r\n"
        b"MAIL FROM:<a@b> SIZE=1 SIZE=2\r\nRCPT TO:<x@y> ORCPT=rfc822;a+4\r\nQUIT\r\n",
        EHLO + ["250 2.0.0 Ok", "501 5.1.7 Bad sender address syntax", "250 2.1.0 Ok",
                "501 5.5.4 Error: Bad ORCPT parameter syntax", "221 2.0.0 Bye"],
        [],
    ),
    (
        b"EHLO x\r\nSubject: x\r\nQUIT\r\n",
        EHLO + ["221 2.7.0 Error: I can break rules, too. Goodbye."],
        [],
    ),
]


def check(session: Session, expected: list[str], messages: list[bytes]) -> None:
    assert replies(session) == expected
    assert session.messages == messages


@pytest.mark.parametrize("index", range(len(TRANSCRIPTS)))
def test_transcript_whole(index: int) -> None:
    data, expected, messages = TRANSCRIPTS[index]
    check(run(data), expected, messages)


@pytest.mark.parametrize("index", range(len(TRANSCRIPTS)))
def test_transcript_byte_at_a_time(index: int) -> None:
    data, expected, messages = TRANSCRIPTS[index]
    check(run(data, [1] * len(data)), expected, messages)


@pytest.mark.parametrize("index", range(len(TRANSCRIPTS)))
def test_transcript_every_split_point(index: int) -> None:
    data, expected, messages = TRANSCRIPTS[index]
    cuts = set(range(1, len(data)))
    if len(data) > 1000:
        # Long lines: every cut near a line end, and a sample in between.
        ends = {i for i, b in enumerate(data) if b in b"\r\n"}
        cuts = {c for c in cuts if c % 13 == 0 or any(abs(c - e) <= 2 for e in ends)}
    for cut in sorted(cuts):
        check(run(data, [cut]), expected, messages)


@pytest.mark.parametrize("index", range(len(TRANSCRIPTS)))
def test_transcript_random_chunkings(index: int) -> None:
    data, expected, messages = TRANSCRIPTS[index]
    rng = random.Random(5321 + index)
    for _ in range(50):
        sizes = [rng.randint(1, 12) for _ in range(len(data))]
        check(run(data, sizes), expected, messages)


SMUGGLING = [
    # (body sent after DATA, message delivered); the real end is CRLF.CRLF.
    (b"a\n.\nb\r\n.\r\n", b"a\r\n\r\nb\r\n"),
    (b"a\n.\r\nb\r\n.\r\n", b"a\r\n\r\nb\r\n"),
    (b"a\r\n.\nb\r\n.\r\n", b"a\r\n\r\nb\r\n"),
    (b"a\r.\rb\r\n.\r\n", b"a\r.\rb\r\n"),
    (b"a\r\n.\r\r\nb\r\n.\r\n", b"a\r\n\r\r\nb\r\n"),
    (b".\r\n", b""),
    (b"\r\n.\r\n", b"\r\n"),
    (b"..\r\n...\r\n.x\r\n.\r\n", b".\r\n..\r\nx\r\n"),
]


@pytest.mark.parametrize(("body", "message"), SMUGGLING)
@pytest.mark.parametrize("mode", ["no", "normalize"])
def test_smuggling_never_ends_data(body: bytes, message: bytes, mode: str) -> None:
    data = TXN + b"DATA\r\n" + body + b"MAIL FROM:<smuggled@x>\r\nQUIT\r\n"
    for sizes in (None, [1] * len(data)):
        s = run(data, sizes, bare_newline=mode)
        assert s.messages == [message]
        # The smuggled MAIL line is a command after the one real end.
        assert replies(s)[-2:] == ["250 2.1.0 Ok", "221 2.0.0 Bye"]
        assert s.commands.count("Mail") == 2


def test_smuggled_mail_stays_content() -> None:
    body = b"a\n.\nMAIL FROM:<evil@x>\nRCPT TO:<v@y>\nDATA\nevil\n.\n\r\n.\r\n"
    s = run(TXN + b"DATA\r\n" + body + b"QUIT\r\n")
    assert len(s.messages) == 1
    assert b"MAIL FROM:<evil@x>\r\n" in s.messages[0]
    assert s.commands.count("Mail") == 1


def test_bare_newline_reject_in_data() -> None:
    data = TXN + b"DATA\r\na\nb\r\n.\r\nQUIT\r\n"
    s = run(data, bare_newline="reject")
    assert replies(s)[-1] == f"521 5.5.2 {HOST} Error: bare <LF> received"
    assert s.engine.closed and s.messages == []


def test_bare_newline_reject_in_command() -> None:
    s = run(b"EHLO x\r\nNOOP\nQUIT\r\n", bare_newline="reject")
    assert replies(s)[-1] == f"521 5.5.2 {HOST} Error: bare <LF> received"
    assert s.engine.closed


def test_bare_newline_normalized_in_data() -> None:
    s = run(TXN + b"DATA\r\na\nb\rc\r\n.\r\n", bare_newline="normalize")
    assert s.messages == [b"a\r\nb\rc\r\n"]


def test_overlong_command_is_truncated_like_postfix() -> None:
    long = b"x" * 3000
    s = run(b"EHLO x\r\nNOOP " + long + b"\r\nMAIL FROM:<a@" + long + b">\r\nQUIT\r\n")
    assert replies(s)[-3:] == ["250 2.0.0 Ok", "501 5.1.7 Bad sender address syntax", "221 2.0.0 Bye"]
    assert s.max_buffered < 2048 + 4096 * 2


def test_line_length_limit_parameter() -> None:
    s = run(b"NOOP 123456789\r\nQUIT\r\n", line_length_limit=8)
    assert replies(s) == ["250 2.0.0 Ok", "221 2.0.0 Bye"]


def test_message_size_limit_reads_to_end_then_552() -> None:
    body = b"0123456789\r\n" * 20
    s = run(TXN + b"DATA\r\n" + body + b".\r\nQUIT\r\n", message_size_limit=100)
    assert replies(s)[-2:] == ["552 5.3.4 Error: message file too big", "221 2.0.0 Bye"]
    assert s.messages == []
    s = run(TXN + b"DATA\r\n" + body + b".\r\nQUIT\r\n", message_size_limit=240)
    assert s.messages == [body]


def test_bdat_size_limit() -> None:
    data = TXN + b"BDAT 10\r\n0123456789BDAT 30 LAST\r\n" + b"x" * 30 + b"QUIT\r\n"
    s = run(data, message_size_limit=20)
    assert replies(s)[-3:] == ["250 2.0.0 Ok: 10 bytes", "552 5.3.4 Chunk exceeds message size limit", "221 2.0.0 Bye"]


def test_mail_size_parameter_limits() -> None:
    s = run(b"MAIL FROM:<a@b> SIZE=10240001\r\nMAIL FROM:<a@b> SIZE=10240000\r\n"
            b"RSET\r\nMAIL FROM:<a@b> SIZE=99999999999999999999999999\r\n")
    assert replies(s) == [
        "552 5.3.4 Message size exceeds fixed limit", "250 2.1.0 Ok", "250 2.0.0 Ok",
        "552 5.3.4 Message size exceeds file system imposed limit",
    ]


def test_recipient_limit() -> None:
    s = run(TXN + b"RCPT TO:<e@f>\r\nRCPT TO:<g@h>\r\n", recipient_limit=2)
    assert replies(s)[-2:] == ["250 2.1.5 Ok", "452 4.5.3 Error: too many recipients"]


def test_helo_required() -> None:
    s = run(b"MAIL FROM:<a@b>\r\nHELO x\r\nMAIL FROM:<a@b>\r\n", helo_required=True)
    assert replies(s) == ["503 5.5.1 Error: send HELO/EHLO first", f"250 {HOST}", "250 2.1.0 Ok"]


def test_starttls_drops_pipelined_input() -> None:
    # CVE-2011-0411: the injected commands after STARTTLS must be ignored.
    s = run(b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\n")
    assert s.tls_dropped == [len(b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\n")]
    assert replies(s) == EHLO + ["220 2.0.0 Ready to start TLS"]
    assert s.engine.helo is None
    # After the handshake the session starts again.
    s.engine.feed(b"MAIL FROM:<a@b>\r\nEHLO y\r\n")
    s.pump()
    assert replies(s)[-1 - len(EHLO) :] == ["250 2.1.0 Ok"] + EHLO


def test_starttls_refused_keeps_input() -> None:
    s = run(b"EHLO x\r\nSTARTTLS\r\nNOOP\r\n", starttls=False)
    assert replies(s)[-2:] == ["502 5.5.1 Error: command not implemented", "250 2.0.0 Ok"]
    assert s.tls_dropped == []


def test_start_tls_out_of_order() -> None:
    with pytest.raises(EngineStateError):
        ServerEngine().start_tls()


def test_pipelined_flag() -> None:
    s = run(b"EHLO x\r\n")
    s.engine.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
    s.pump()
    assert s.pipelined == [False, True, False]


def test_input_drained_and_backpressure() -> None:
    eng = ServerEngine()
    eng.feed(b"NOOP\r\nNOOP\r\n")
    ev = eng.next_event()
    assert isinstance(ev, CommandEvent) and not eng.input_drained
    assert eng.next_event() is None  # awaiting the reply
    eng.reply(R.OK)
    assert isinstance(eng.next_event(), CommandEvent) and eng.input_drained
    eng.reply(R.OK)
    eng.feed(b"x" * 300_000)
    assert not eng.wants_input


def test_reply_without_event_is_a_local_error() -> None:
    eng = ServerEngine()
    with pytest.raises(EngineStateError):
        eng.reply(R.OK)
    eng.feed(b"NOOP\r\n")
    eng.next_event()
    with pytest.raises(EngineStateError):
        eng.reply(R.OK, R.OK)


def test_events_are_typed() -> None:
    eng = ServerEngine()
    eng.feed(TXN[8:] + b"BDAT 3 LAST\r\nabc")
    got = []
    while (ev := eng.next_event()) is not None:
        got.append(ev)
        if isinstance(ev, CommandEvent) and isinstance(ev.command, (Mail, Rcpt)):
            eng.reply(R.MAIL_OK)
    assert isinstance(got[0], CommandEvent) and isinstance(got[0].command, Mail)
    assert got[0].command.path.address == "a@b"
    assert isinstance(got[2], CommandEvent) and got[2].command == Bdat(3, True)
    assert got[3] == BodyChunk(b"abc")
    assert got[4] == BodyEnd(3, 3, False, True, True)


def test_rejected_event_carries_reply() -> None:
    eng = ServerEngine()
    eng.feed(b"RCPT TO:<a@b>\r\n")
    ev = eng.next_event()
    assert ev == Rejected(R.NEED_MAIL, "RCPT TO:<a@b>", "RCPT", False)


def test_lmtp_one_reply_per_recipient() -> None:
    data = b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n"
    s = run(data, lmtp=True)
    lines = replies(s)
    assert lines[-3:] == ["250 2.0.0 Ok: queued as Q1", "250 2.0.0 Ok: queued as Q1", "221 2.0.0 Bye"]
    assert s.messages == [b"hi\r\n"]
    s = run(b"EHLO x\r\nHELO x\r\nLHLO\r\n", lmtp=True)
    assert replies(s) == ["500 5.5.2 Error: command not recognized"] * 2 + ["501 Syntax: LHLO hostname"]


def test_lmtp_bdat_last_needs_all_replies() -> None:
    eng = ServerEngine(lmtp=True)
    eng.feed(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nBDAT 2\r\nhiBDAT 0 LAST\r\n")
    for _ in range(3):
        eng.next_event()
        eng.reply(R.OK)
    assert isinstance(eng.next_event(), CommandEvent)
    assert eng.next_event() == BodyChunk(b"hi")
    assert eng.next_event() == BodyEnd(2, 2, False, True, False)
    assert eng.expected_replies() == 1
    eng.reply(R.bdat_chunk_ok(2))
    eng.next_event()
    assert eng.next_event() == BodyEnd(2, 0, False, True, True)
    assert eng.expected_replies() == 2


def test_auth_exchange() -> None:
    s = run(b"EHLO x\r\nAUTH PLAIN\r\ndGVzdA==\r\nAUTH LOGIN\r\n*\r\nNOOP\r\n")
    assert replies(s)[-5:] == [
        "334 ", "535 5.7.8 Error: authentication failed", "334 ",
        "501 5.7.0 Authentication aborted", "250 2.0.0 Ok",
    ]


def test_data_is_not_interpreted_before_354() -> None:
    eng = ServerEngine()
    eng.feed(TXN[8:] + b"DATA\r\nNOOP\r\n.\r\n")
    for _ in range(2):
        eng.next_event()
        eng.reply(R.OK)
    ev = eng.next_event()
    assert isinstance(ev, CommandEvent) and isinstance(ev.command, Data)
    # DATA refused (e.g. by a restriction): the body lines are commands.
    eng.reply(R.Reply.of(554, "5.5.1", "Error: no valid recipients"))
    ev = eng.next_event()
    assert isinstance(ev, CommandEvent) and type(ev.command).__name__ == "Noop"


def test_big_body_streams_with_bounded_memory() -> None:
    eng = ServerEngine(message_size_limit=0)
    eng.feed(TXN[8:] + b"DATA\r\n")
    for _ in range(3):
        eng.next_event()
        eng.reply(R.START_MAIL_INPUT if _ == 2 else R.OK)
    line = b"y" * 998 + b"\r\n"
    block = line * 256  # 256 000 octets per read
    total = 0
    max_buffer = 0
    for _ in range(200):  # 51 MB in all
        eng.feed(block)
        max_buffer = max(max_buffer, eng.buffered)
        while (ev := eng.next_event()) is not None:
            assert isinstance(ev, BodyChunk)
            assert len(ev.data) <= 64 * 1024 + 2
            total += len(ev.data)
    # a 10 MB line without any newline also streams
    eng.feed(b"z" * 10_000_000)
    while (ev := eng.next_event()) is not None:
        assert isinstance(ev, BodyChunk)
        total += len(ev.data)
    eng.feed(b"\r\n.\r\n")
    while (ev := eng.next_event()) is not None:
        if isinstance(ev, BodyEnd):
            assert ev.octets == total and not ev.too_big
            break
        assert isinstance(ev, BodyChunk)
        total += len(ev.data)
    assert total == 200 * len(block) + 10_000_002
    assert max_buffer <= len(block)


def test_order_checked_before_arguments() -> None:
    s = run(b"EHLO x\r\nMAIL FROM:<a@b>\r\nMAIL FOO\r\nMAIL FROM:<a@b> SIZE=abc\r\n")
    assert replies(s)[-2:] == ["503 5.5.1 Error: nested MAIL command"] * 2
    s = run(b"MAIL FOO\r\nETRN\r\nRCPT TO:<a@b> NOTIFY=x\r\nVRFY x\r\n", helo_required=True)
    assert replies(s) == [
        "503 5.5.1 Error: send HELO/EHLO first", "503 Error: send HELO/EHLO first",
        "503 5.5.1 Error: need MAIL command", "252 2.0.0 x",
    ]
