"""Reply values, their wire form, and the client-side reply parser."""

from __future__ import annotations

import random

import pytest

from mailhorn.smtp import reply as R
from mailhorn.smtp.client import ReplyParser, ReplySyntaxError
from mailhorn.smtp.reply import Blame, Reply, SmtpReplyError


def test_render_single_and_multi_line() -> None:
    assert R.OK.render() == b"250 2.0.0 Ok\r\n"
    assert R.START_MAIL_INPUT.render() == b"354 End data with <CR><LF>.<CR><LF>\r\n"
    ehlo = R.ehlo_ok("mx.example.test", ["PIPELINING", "SIZE 10240000"])
    assert ehlo.render() == b"250-mx.example.test\r\n250-PIPELINING\r\n250 SIZE 10240000\r\n"
    multi = Reply.of(550, "5.7.1", "first", "second")
    assert multi.render() == b"550-5.7.1 first\r\n550 5.7.1 second\r\n"
    assert str(R.BYE) == "221 2.0.0 Bye"


def test_reply_validation() -> None:
    with pytest.raises(ValueError):
        Reply.of(250, "5.0.0", "class mismatch")
    with pytest.raises(ValueError):
        Reply.of(99, None, "x")
    with pytest.raises(ValueError):
        Reply.of(250, None, "a\r\nb")
    with pytest.raises(ValueError):
        Reply(250, None, ())


def test_reply_classes() -> None:
    assert R.START_MAIL_INPUT.is_intermediate and R.START_MAIL_INPUT.is_positive
    assert R.TOO_MANY_RECIPIENTS.is_transient
    assert R.NEED_MAIL.is_permanent
    assert R.OK.with_text("Ok: queued as X") == R.queued_as("X")


def test_variable_texts() -> None:
    assert R.timeout_exceeded("mx").render() == b"421 4.4.2 mx Error: timeout exceeded\r\n"
    assert R.bdat_queued_as(7, "ABC").render() == b"250 2.0.0 Ok: 7 bytes queued as ABC\r\n"
    assert R.no_smtp_service("mx").code == 521


def test_reply_error() -> None:
    err = SmtpReplyError(R.NEED_MAIL)
    assert err.reply is R.NEED_MAIL and err.blame is Blame.PEER
    assert SmtpReplyError(R.TOO_MANY_ERRORS, Blame.LOCAL).blame is Blame.LOCAL


WIRE = (
    b"220 mx.example.test ESMTP\r\n"
    b"250-mx.example.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
    b"250 2.1.0 Ok\r\n"
    b"550-5.7.1 first line\r\n550 5.7.1 second line\r\n"
    b"354 End data with <CR><LF>.<CR><LF>\r\n"
    b"250\r\n"
    b"451 4.3.0\r\n"
    b"250 2.0.0 Ok: queued as X\n"
)
PARSED = [
    Reply.of(220, None, "mx.example.test ESMTP"),
    Reply.of(250, None, "mx.example.test", "PIPELINING", "CHUNKING"),
    R.MAIL_OK,
    Reply.of(550, "5.7.1", "first line", "second line"),
    R.START_MAIL_INPUT,
    Reply.of(250, None, ""),
    Reply.of(451, "4.3.0", ""),
    R.queued_as("X"),
]


def parse_all(data: bytes, sizes: list[int]) -> list[Reply]:
    parser = ReplyParser()
    out: list[Reply] = []
    pos = 0
    for size in sizes + [len(data)]:
        parser.feed(data[pos : pos + size])
        pos += size
        while (r := parser.next_reply()) is not None:
            out.append(r)
    assert not parser.partial
    return out


def test_parser_any_chunking() -> None:
    assert parse_all(WIRE, []) == PARSED
    assert parse_all(WIRE, [1] * len(WIRE)) == PARSED
    rng = random.Random(3463)
    for _ in range(100):
        assert parse_all(WIRE, [rng.randint(1, 9) for _ in range(len(WIRE))]) == PARSED


def test_parser_round_trips_rendered_replies() -> None:
    for reply in [R.OK, R.BAD_NOTIFY_SYNTAX, R.ehlo_ok("h", ["A", "B"]), R.SYNTAX_ETRN]:
        assert parse_all(reply.render(), []) == [reply]


def test_status_class_must_match() -> None:
    # "250 5.0.0 x" is not an enhanced code for a 250: it stays text.
    assert parse_all(b"250 5.0.0 x\r\n", []) == [Reply.of(250, None, "5.0.0 x")]


@pytest.mark.parametrize("bad", [b"hello\r\n", b"25 x\r\n", b"250-a\r\n251 b\r\n", b"2500 x\r\n", b"150 x\r\n"])
def test_parser_rejects_garbage(bad: bytes) -> None:
    parser = ReplyParser()
    parser.feed(bad)
    with pytest.raises(ReplySyntaxError):
        while parser.next_reply() is not None:
            pass


def test_parser_bounds() -> None:
    parser = ReplyParser(line_length_limit=64, max_lines=5)
    parser.feed(b"250 " + b"x" * 10_000 + b"\r\n")
    r = parser.next_reply()
    assert r is not None and len(r.lines[0]) == 60
    parser.feed(b"250-a\r\n" * 6)
    with pytest.raises(ReplySyntaxError):
        parser.next_reply()
