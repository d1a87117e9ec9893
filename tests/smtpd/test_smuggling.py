"""SMTP smuggling (CVE-2023-51764 class) over a real socket.

Each non-standard end-of-data sequence is sent with a second, smuggled
transaction behind it, then the real ``<CR><LF>.<CR><LF>``.  Whatever
``smtpd_forbid_bare_newline`` says, at most one message may come out, and
it must carry the would-be smuggled commands as content.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.smtpd.server_harness import SmtpdServer

VARIANTS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r.\r\n", b"\r\n.\r", b"\r\n\x00.\r\n"]
SMUGGLED = (b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nevil\r\n")


@pytest.mark.parametrize("mode", ["no", "normalize", "reject"])
@pytest.mark.parametrize("end", VARIANTS, ids=[repr(v) for v in VARIANTS])
def test_at_most_one_message(tmp_path: Path, end: bytes, mode: str) -> None:
    srv = SmtpdServer(tmp_path, {"smtpd_forbid_bare_newline": mode,
                                 "smtpd_forbid_bare_newline_exclusions": ""})
    try:
        c = srv.client()
        c.reply()
        c.cmd("EHLO x.example")
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<b@example.test>")
        assert c.cmd("DATA")[0].startswith("354")
        c.send(b"Subject: first\r\n\r\nhello" + end + SMUGGLED + b"\r\n.\r\nQUIT\r\n")
        replies = []
        while True:
            try:
                replies.append(c.reply()[0])
            except (EOFError, OSError):
                break
        queued = srv.queued()
        assert len(queued) <= 1, replies
        assert sum(r.startswith("250 2.0.0 Ok: queued as") for r in replies) == len(queued)
        if queued:
            content = srv.content(queued[0])
            assert b"MAIL FROM:<admin@example.test>" in content
            assert srv.read(queued[0]).sender == "a@example.org"
        if mode == "reject" and b"\n" in end.replace(b"\r\n", b""):
            assert queued == []
            assert any(r.startswith("521 5.5.2 ") and "bare <LF> received" in r for r in replies)
    finally:
        srv.stop()
