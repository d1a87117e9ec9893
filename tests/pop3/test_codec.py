"""The sans-I/O POP3 codec and session, without sockets."""

from __future__ import annotations

import random

import pytest

from mailhorn.pop3.codec import Command, LineTooLong, MessageEncoder, Pop3Decoder
from mailhorn.pop3.session import (
    CheckLogin, Pop3Options, Pop3Session, Reply, StartTls, State, parse_msgnum, ArgError,
)

SAMPLES = [
    b"From: a\nSubject: x\n\n.one\nt\xc3\xa9\n..\n.\nend",
    b"From: a\r\nSubject: x\r\n\r\nbody\r\n.\r\nlast\r\n",
    b"H: 1\r\n\r\na\rb\r\n\r\n.\r",
    b"only: header\n",
    b"",
]


def encode(data: bytes, cut: list[int], lines: int | None = None) -> bytes:
    enc = MessageEncoder(lines)
    out = b""
    pos = 0
    for end in cut + [len(data)]:
        out += enc.feed(data[pos:end])
        pos = end
    return out + enc.finish()


def reference(data: bytes, lines: int | None = None) -> bytes:
    """Line by line: CRLF ends, dot-stuffing, TOP's header plus N body lines."""
    if not data:
        return b""
    text = data.replace(b"\r\n", b"\n").split(b"\n")
    if text[-1] == b"":
        text.pop()
    out = []
    in_body = False
    left = lines
    for line in text:
        if in_body and left is not None:
            if left <= 0:
                break
            left -= 1
        out.append((b"." + line if line.startswith(b".") else line) + b"\r\n")
        if not in_body and line == b"":
            in_body = True
    return b"".join(out)


@pytest.mark.parametrize("data", SAMPLES)
def test_message_encoder_is_independent_of_chunking(data: bytes) -> None:
    rng = random.Random(1939)
    for lines in (None, 0, 1, 2):
        whole = encode(data, [], lines)
        assert whole == reference(data, lines)
        for _ in range(50):
            cuts = sorted(rng.sample(range(len(data) + 1), min(len(data), 4)))
            assert encode(data, cuts, lines) == whole
        # One octet at a time: every boundary, including inside CRLF.
        assert encode(data, list(range(1, len(data))), lines) == whole


def test_decoder_lines_and_limits() -> None:
    dec = Pop3Decoder(max_line=16)
    dec.receive_data(b"user Alice\r\npass a b \r\nNOOP")
    assert dec.next_event() == Command("USER", "Alice", "user Alice")
    assert dec.next_event() == Command("PASS", "a b ", "pass a b ")
    assert dec.next_event() is None
    dec.receive_data(b"\nx" + b"y" * 40)
    assert dec.next_event() == Command("NOOP", "", "NOOP")
    assert dec.next_event() is None and dec.pending == 0  # the long line is being skipped, not kept
    dec.receive_data(b"zzz\r\nQUIT\r\n")
    assert dec.next_event() == LineTooLong(16)
    assert dec.next_event() == Command("QUIT", "", "QUIT")


def test_stls_discards_pipelined_input() -> None:
    dec = Pop3Decoder()
    dec.receive_data(b"STLS\r\nUSER a\r\nPASS b\r\n")
    session = Pop3Session(Pop3Options(tls_available=True))
    event = dec.next_event()
    assert isinstance(event, Command)
    assert isinstance(session.handle(event), StartTls)
    assert dec.start_tls() == len(b"USER a\r\nPASS b\r\n")
    assert dec.next_event() is None


def test_session_states() -> None:
    session = Pop3Session(Pop3Options(plaintext_allowed=True))
    assert session.greeting() == b"+OK mailhorn ready.\r\n"
    assert session.handle(Command("STAT", "", "STAT")) == Reply(b"-ERR Unknown command.\r\n")
    assert session.handle(Command("USER", "u", "USER u")) == Reply(b"+OK\r\n")
    action = session.handle(Command("PASS", "p w", "PASS p w"))
    assert isinstance(action, CheckLogin) and action.credentials.password == "p w"
    assert session.state is State.AUTHORIZATION
    with pytest.raises(ArgError, match="Noise after message number:  2"):
        parse_msgnum("1 2", True)
    assert parse_msgnum("3 10", False) == (3, "10")
