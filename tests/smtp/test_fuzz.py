"""Seeded random-mutation fuzzing of the SMTP engine (bounded, repeatable).

Properties: the peer's input never raises (only the engine's own replies
come out), buffers stay bounded, and the outcome does not depend on how the
input was cut into reads (except after STARTTLS, where what is dropped is by
definition what had arrived).
"""

from __future__ import annotations

import random
from typing import Any

from mailhorn.smtp.client import ReplyParser, ReplySyntaxError
from mailhorn.smtp.commands import parse_command
from mailhorn.smtp.reply import SmtpReplyError
from tests.smtp.harness import run
from tests.smtp.test_engine import TRANSCRIPTS

LIMIT = 64
SEEDS = [t[0] for t in TRANSCRIPTS] + [
    b"EHLO x\r\nMAIL FROM:<a@b> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<c@d> NOTIFY=SUCCESS\r\n"
    b"BDAT 4\r\nab\r\nBDAT 3 LAST\r\nxyzRSET\r\n",
    b"LHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b>\r\nRCPT TO:<\"q q\"@b>\r\nDATA\r\n.\r\n..\r\n\r\n.\r\n",
    b"EHLO x\r\nAUTH PLAIN\r\n=\r\nSTARTTLS\r\nNOOP\r\nEHLO y\r\n",
]
TOKENS = [b"\r\n", b"\n", b"\r", b".", b"\r\n.\r\n", b"\n.\n", b"BDAT 3\r\n", b"BDAT 0 LAST\r\n",
          b"DATA\r\n", b"<", b">", b"\"", b"\x00", b"\xff", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<c@d>\r\n",
          b"BDAT 99999\r\n", b"AUTH LOGIN\r\n", b"STARTTLS\r\n", b"QUIT\r\n", b" " * 70]


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(5)
        pos = rng.randint(0, len(buf))
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = rng.choice(TOKENS)
        elif op == 2:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 3:
            end = min(len(buf), pos + rng.randint(1, 40))
            buf[pos:pos] = buf[pos:end]
        else:
            other = rng.choice(SEEDS)
            start = rng.randint(0, len(other))
            buf[pos:pos] = other[start : start + rng.randint(1, 60)]
    return bytes(buf)


def chunking(rng: random.Random, n: int) -> list[int]:
    return [rng.randint(1, 17) for _ in range(n)]


def test_engine_mutation_fuzz() -> None:
    rng = random.Random(20250411)
    for _ in range(4000):
        data = mutate(rng, rng.choice(SEEDS))
        mode = rng.choice(["no", "normalize", "reject"])
        kwargs: dict[str, Any] = {
            "line_length_limit": LIMIT, "bare_newline": mode, "message_size_limit": rng.choice([0, 16, 1000]),
            "lmtp": rng.random() < 0.2, "chunk_size": rng.randint(1, 32),
        }
        whole = run(data, **kwargs)
        pieces = run(data, chunking(rng, len(data)), **kwargs)
        # Whole input in one read: at most that read plus nothing; in small
        # reads: what a line may hold plus one read.
        assert whole.max_buffered <= len(data)
        assert pieces.max_buffered <= LIMIT + 17
        for session in (whole, pieces):
            assert session.max_chunk <= 32 + 2
        if b"STARTTLS" not in data.upper():
            assert pieces.output == whole.output, data
            assert pieces.messages == whole.messages, data


def test_command_parser_fuzz() -> None:
    rng = random.Random(5321)
    alphabet = "MAILFROMRCPTTO:<>@\"\\ ,=+;.-0123456789abcXYZ\t\x00\x01é"
    verbs = ["MAIL FROM:", "RCPT TO:", "BDAT ", "EHLO ", "VRFY ", "AUTH ", "XFORWARD ", ""]
    for _ in range(5000):
        text = rng.choice(verbs) + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        try:
            parse_command(text, lmtp=rng.random() < 0.5)
        except SmtpReplyError:
            pass


def test_reply_parser_fuzz() -> None:
    rng = random.Random(2821)
    seeds = [b"250-a\r\n250 2.0.0 b\r\n", b"550 5.7.1 x\r\n", b"354 go\n", b"220 hi\r\n"]
    for _ in range(3000):
        data = mutate(rng, rng.choice(seeds))
        parser = ReplyParser(line_length_limit=LIMIT, max_lines=8)
        try:
            for size in chunking(rng, len(data)):
                parser.feed(data[:size])
                data = data[size:]
                while parser.next_reply() is not None:
                    pass
                assert parser.buffered <= LIMIT + 17
        except ReplySyntaxError:
            pass
