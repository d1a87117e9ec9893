"""smtpd over real loopback sockets: the dialogue, the queue file, the logs."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.queue.queuefile import DsnNotify, DsnRet
from tests.conftest import require
from tests.smtpd.server_harness import HOST, SmtpdServer

EHLO_37 = [
    f"250-{HOST}", "250-PIPELINING", "250-SIZE 10240000", "250-VRFY", "250-ETRN",
    "250-ENHANCEDSTATUSCODES", "250-8BITMIME", "250-DSN", "250-SMTPUTF8", "250 CHUNKING",
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SmtpdServer]:
    srv = SmtpdServer(tmp_path, {"smtputf8_enable": "yes"})
    yield srv
    srv.stop()


def test_greeting_and_ehlo_keywords_as_postfix_37(server: SmtpdServer) -> None:
    c = server.client()
    assert c.reply() == [f"220 {HOST} ESMTP Postfix"]
    assert c.cmd("EHLO client.example") == EHLO_37
    assert c.cmd("HELO client.example") == [f"250 {HOST}"]
    assert c.cmd("QUIT") == ["221 2.0.0 Bye"]
    assert c.closed()
    line = server.wait_log(r"^disconnect from ")
    assert line == "disconnect from unknown[127.0.0.1] ehlo=1 helo=1 quit=1 commands=3" or \
        line == "disconnect from unknown[127.0.0.1] helo=1 ehlo=1 quit=1 commands=3"


def test_smtplib_message_is_queued_with_its_envelope(server: SmtpdServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=15) as s:
        s.ehlo("client.example")
        refused = s.sendmail("alice@example.org", ["bob@example.test", "carol@example.test"],
                             b"Subject: hi\r\n\r\nhello\r\n.leading dot\r\n")
        assert refused == {}
        code, text = s.noop()
        assert code == 250
    ids = server.queued()
    assert len(ids) == 1
    qf = server.read(ids[0])
    assert qf.sender == "alice@example.org"
    assert [r.address for r in qf.recipients] == ["bob@example.test", "carol@example.test"]
    assert qf.attributes["client_address"] == "127.0.0.1"
    assert qf.attributes["helo_name"] == "client.example"
    assert qf.attributes["protocol_name"] == "ESMTP"
    content = server.content(ids[0])
    assert content.startswith(b"Received: from client.example (unknown [127.0.0.1])\n")
    assert b"\nSubject: hi\n" in content
    assert content.endswith(b"\n\nhello\n.leading dot\n")
    server.wait_log(rf"^{ids[0]}: client=unknown\[127\.0\.0\.1\]$")
    server.wait_log(r"^disconnect from unknown\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=2 data=1 noop=1 quit=1 commands=7$")


def test_250_only_after_the_file_is_in_the_queue(server: SmtpdServer) -> None:
    c = server.client()
    c.reply()
    c.cmd("EHLO x.example")
    assert c.cmd("MAIL FROM:<a@example.org>") == ["250 2.1.0 Ok"]
    assert c.cmd("RCPT TO:<b@example.test>") == ["250 2.1.5 Ok"]
    assert c.cmd("DATA") == ["354 End data with <CR><LF>.<CR><LF>"]
    reply = c.cmd("Subject: t\r\n\r\nbody\r\n.")
    assert reply[0].startswith("250 2.0.0 Ok: queued as ")
    queue_id = reply[0].rsplit(" ", 1)[1]
    assert queue_id in server.queued()
    c.close()


def test_pipelined_batch_gets_replies_in_one_flush(server: SmtpdServer) -> None:
    c = server.client()
    c.reply()
    c.cmd("EHLO x.example")
    c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@example.test>\r\nDATA\r\n")
    assert [c.reply() for _ in range(4)] == [
        ["250 2.1.0 Ok"], ["250 2.1.5 Ok"], ["250 2.1.5 Ok"], ["354 End data with <CR><LF>.<CR><LF>"]]
    c.send("x\r\n.\r\nQUIT\r\n")
    assert c.reply()[0].startswith("250 2.0.0 Ok: queued as ")
    assert c.reply() == ["221 2.0.0 Bye"]
    assert len(server.queued()) == 1


def test_bdat_chunks(server: SmtpdServer) -> None:
    c = server.client()
    c.reply()
    c.cmd("EHLO x.example")
    c.cmd("MAIL FROM:<a@example.org> BODY=8BITMIME")
    c.cmd("RCPT TO:<b@example.test>")
    c.send("BDAT 14\r\nSubject: s\r\n\r\n")
    assert c.reply() == ["250 2.0.0 Ok: 14 bytes"]
    c.send("BDAT 6 LAST\r\nbody\r\n")
    reply = c.reply()[0]
    assert reply.startswith("250 2.0.0 Ok: 20 bytes queued as ")
    queue_id = reply.rsplit(" ", 1)[1]
    content = server.content(queue_id)
    assert b"\nSubject: s\n" in content and content.endswith(b"\n\nbody\n")
    assert server.read(queue_id).attributes["encoding"] == "8bit"
    assert c.cmd("QUIT") == ["221 2.0.0 Bye"]
    server.wait_log(r"^disconnect from .* bdat=2 quit=1 commands=6$")


def test_dsn_and_smtputf8_parameters_reach_the_queue(server: SmtpdServer) -> None:
    c = server.client()
    c.reply()
    c.cmd("EHLO x.example")
    assert c.cmd("MAIL FROM:<ålice@exämple.org> SMTPUTF8 RET=HDRS ENVID=abc+2Bdef") == ["250 2.1.0 Ok"]
    assert c.cmd("RCPT TO:<bob@example.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;bob+40example.test") \
        == ["250 2.1.5 Ok"]
    c.cmd("DATA")
    queue_id = c.cmd("Subject: ü\r\n\r\nx\r\n.")[0].rsplit(" ", 1)[1]
    qf = server.read(queue_id)
    assert qf.sender == "ålice@exämple.org"
    assert qf.dsn_ret is DsnRet.HDRS
    assert qf.dsn_envid == "abc+def"
    assert qf.recipients[0].dsn_orcpt == "rfc822;bob@example.test"
    assert qf.recipients[0].dsn_notify == DsnNotify.SUCCESS | DsnNotify.DELAY
    assert qf.attributes["protocol_name"] == "UTF8SMTP"


def test_other_commands(server: SmtpdServer) -> None:
    c = server.client()
    c.reply()
    assert c.cmd("EHLO x.example")[0] == f"250-{HOST}"
    assert c.cmd("VRFY root") == ["252 2.0.0 root"]
    assert c.cmd("ETRN example.test") == ["250 Queuing started"]
    assert server.wakeups == 1
    assert c.cmd("HELP") == ["500 5.5.2 Error: command not recognized"]
    assert c.cmd("FOO bar") == ["500 5.5.2 Error: command not recognized"]
    assert c.cmd("AUTH PLAIN") == ["503 5.5.1 Error: authentication not enabled"]
    assert c.cmd("STARTTLS") == ["502 5.5.1 Error: command not implemented"]
    assert c.cmd("XFORWARD NAME=a.example") == ["550 5.7.0 Error: insufficient authorization"]
    assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
    assert c.cmd("RSET") == ["250 2.0.0 Ok"]
    assert c.cmd("RCPT TO:<a@b>") == ["503 5.5.1 Error: need MAIL command"]
    assert c.cmd("MAIL FROM:<a@b> FOO=1") == ["555 5.5.4 Unsupported option: FOO=1"]
    assert c.cmd("QUIT") == ["221 2.0.0 Bye"]
    server.wait_log(r"^disconnect from unknown\[127\.0\.0\.1\] ehlo=1 xforward=0/1 starttls=0/1 auth=0/1 mail=0/1"
                    r" rcpt=0/1 rset=1 noop=1 vrfy=1 etrn=1 quit=1 unknown=0/2 commands=6/13$")


def test_forbidden_command_ends_the_session(server: SmtpdServer) -> None:
    c = server.client()
    c.reply()
    assert c.cmd("GET / HTTP/1.0") == ["221 2.7.0 Error: I can break rules, too. Goodbye."]
    assert c.closed()
    server.wait_log(r"^warning: non-SMTP command from unknown\[127\.0\.0\.1\]: GET / HTTP/1\.0$")


def test_lost_connection_is_logged_with_the_stage(server: SmtpdServer) -> None:
    c = server.client()
    c.reply()
    c.cmd("EHLO x.example")
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<b@example.test>")
    c.cmd("DATA")
    c.send("Subject: x\r\n\r\npartial")
    c.close()
    server.wait_log(r"^lost connection after DATA \(21 bytes\) from unknown\[127\.0\.0\.1\]$")
    server.wait_log(r"^disconnect from unknown\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 data=0/1 commands=3/4$")
    assert server.queued() == []


def test_vrfy_disabled_and_discarded_keywords(tmp_path: Path) -> None:
    srv = SmtpdServer(tmp_path, {"disable_vrfy_command": "yes",
                                 "smtpd_discard_ehlo_keywords": "chunking, dsn",
                                 "message_size_limit": "0"})
    try:
        c = srv.client()
        c.reply()
        assert c.cmd("EHLO x") == [f"250-{HOST}", "250-PIPELINING", "250-SIZE", "250-ETRN",
                                   "250-ENHANCEDSTATUSCODES", "250 8BITMIME"]
        assert c.cmd("VRFY root") == ["502 5.5.1 VRFY command is disabled"]
        srv.wait_log(r"^discarding EHLO keywords: DSN CHUNKING$")
    finally:
        srv.stop()


def test_swaks_pipelining_session(server: SmtpdServer) -> None:
    swaks = shutil.which("swaks")
    require(swaks is not None, "swaks is not installed (Debian package swaks)")
    assert swaks is not None
    proc = subprocess.run(
        [swaks, "--server", "127.0.0.1", "--port", str(server.port), "--from", "a@example.org",
         "--to", "b@example.test", "--pipeline", "--helo", "client.example", "--body", "swaks body",
         "--h-Subject", "swaks test"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "250 2.0.0 Ok: queued as" in proc.stdout
    ids = server.queued()
    assert len(ids) == 1
    assert b"swaks body" in server.content(ids[0])


def test_swaks_bdat_session(server: SmtpdServer) -> None:
    swaks = shutil.which("swaks")
    require(swaks is not None, "swaks is not installed (Debian package swaks)")
    assert swaks is not None
    proc = subprocess.run(
        [swaks, "--server", "127.0.0.1", "--port", str(server.port), "--from", "a@example.org",
         "--to", "b@example.test", "--body", "chunked body"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(server.queued()) == 1


def test_cancelling_serve_stops_accepting(tmp_path: Path) -> None:
    srv = SmtpdServer(tmp_path)
    c = srv.client()
    assert c.reply()[0].startswith("220 ")
    c.cmd("QUIT")
    srv.stop()
    assert not srv._thread.is_alive()
