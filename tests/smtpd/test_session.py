"""Session rules: XFORWARD, refusal at CONNECT, improper pipelining, access(5) actions."""

from __future__ import annotations

import importlib
from pathlib import Path

from tests.conftest import require
from tests.smtpd.server_harness import HOST, SmtpdServer


def need_checks() -> None:
    try:
        importlib.import_module("mailhorn.smtpd.checks")
        usable = True
    except ImportError:
        usable = False
    require(usable, "the restriction engine mailhorn.smtpd.checks is not available")


def test_xforward_replaces_the_client_for_one_transaction(tmp_path: Path) -> None:
    srv = SmtpdServer(tmp_path, {"smtpd_authorized_xforward_hosts": "127.0.0.1"})
    try:
        c = srv.client()
        c.reply()
        assert "250-XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT" in c.cmd("EHLO proxy.example")
        assert c.cmd("XFORWARD NAME=origin.example ADDR=192.0.2.7 PORT=4711") == ["250 2.0.0 Ok"]
        assert c.cmd("XFORWARD HELO=orig-helo.example PROTO=ESMTP IDENT=ABC123") == ["250 2.0.0 Ok"]
        assert c.cmd("XFORWARD FOO=bar") == ["501 5.5.4 Bad XFORWARD attribute name: FOO"]
        assert c.cmd("XFORWARD ADDR=not-an-address") == \
            ["501 5.5.4 Bad XFORWARD attribute value: ADDR=not-an-address"]
        c.cmd("MAIL FROM:<a@example.org>")
        assert c.cmd("XFORWARD NAME=x.example") == ["503 5.5.1 Error: MAIL transaction in progress"]
        c.cmd("RCPT TO:<b@example.test>")
        c.cmd("DATA")
        qid = c.cmd("Subject: fwd\r\n\r\nx\r\n.")[0].rsplit(" ", 1)[1]
        content = srv.content(qid)
        assert content.startswith(b"Received: from orig-helo.example (origin.example [192.0.2.7])\n")
        srv.wait_log(rf"^{qid}: client=unknown\[127\.0\.0\.1\], orig_queue_id=ABC123,"
                     r" orig_client=origin\.example\[192\.0\.2\.7\]$")
        # The next transaction is the proxy's own again.
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<b@example.test>")
        c.cmd("DATA")
        qid2 = c.cmd("Subject: own\r\n\r\nx\r\n.")[0].rsplit(" ", 1)[1]
        assert srv.content(qid2).startswith(b"Received: from proxy.example (unknown [127.0.0.1])\n")
    finally:
        srv.stop()


def test_client_refused_at_connect_without_delay_reject(tmp_path: Path) -> None:
    need_checks()
    srv = SmtpdServer(tmp_path, {"smtpd_delay_reject": "no", "mynetworks": "127.0.0.1/32",
                                 "smtpd_client_restrictions": "permit_mynetworks, reject"},
                      real_checks=True)
    try:
        c = srv.client("127.0.0.2")
        greeting = c.reply()
        assert greeting == ["554 5.7.1 <unknown[127.0.0.2]>: Client host rejected: Access denied"]
        assert c.cmd("EHLO x") == ["503 5.7.0 Error: access denied for unknown[127.0.0.2]"]
        assert c.cmd("QUIT") == ["221 2.0.0 Bye"]
        srv.wait_log(r"^NOQUEUE: reject: CONNECT from unknown\[127\.0\.0\.2\]: 554 5\.7\.1 <unknown\[127\.0\.0\.2\]>:"
                     r" Client host rejected: Access denied; proto=SMTP$")
        ok = srv.client("127.0.0.1")
        assert ok.reply() == [f"220 {HOST} ESMTP Postfix"]
    finally:
        srv.stop()


def test_improper_pipelining_is_logged_and_seen_by_restrictions(tmp_path: Path) -> None:
    need_checks()
    srv = SmtpdServer(tmp_path, {"smtpd_data_restrictions": "reject_unauth_pipelining"}, real_checks=True)
    try:
        c = srv.client()
        c.reply()
        c.cmd("EHLO x.example")
        c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: early\r\n")
        assert [c.reply() for _ in range(3)] == [
            ["250 2.1.0 Ok"], ["250 2.1.5 Ok"],
            ["503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining"]]
        srv.wait_log(r"^improper command pipelining after DATA from unknown\[127\.0\.0\.1\]: Subject: early$")
    finally:
        srv.stop()


def test_forbid_unauth_pipelining(tmp_path: Path) -> None:
    srv = SmtpdServer(tmp_path, {"smtpd_forbid_unauth_pipelining": "yes"})
    try:
        c = srv.client()
        c.reply()
        c.send("HELO x.example\r\nMAIL FROM:<a@example.org>\r\n")
        assert c.reply() == ["554 5.5.0 Error: SMTP protocol synchronization"]
        assert c.closed()
        srv.wait_log(r"^improper command pipelining after HELO from unknown\[127\.0\.0\.1\]:"
                     r" MAIL FROM:<a@example\.org>$")
    finally:
        srv.stop()


def test_hold_action_reaches_cleanup(tmp_path: Path) -> None:
    need_checks()
    srv = SmtpdServer(tmp_path, {"smtpd_sender_restrictions": "check_sender_access inline:{ a@example.org=HOLD }"},
                      real_checks=True)
    try:
        c = srv.client()
        c.reply()
        c.cmd("EHLO x.example")
        c.cmd("MAIL FROM:<a@example.org>")
        assert c.cmd("RCPT TO:<b@example.test>") == ["250 2.1.5 Ok"]
        c.cmd("DATA")
        qid = c.cmd("Subject: held\r\n\r\nx\r\n.")[0].rsplit(" ", 1)[1]
        assert list(srv.store.scan("hold")) == [qid]
        srv.wait_log(r"^NOQUEUE: hold: RCPT from unknown\[127\.0\.0\.1\]: <a@example\.org>: Sender address"
                     r" triggers HOLD action; from=<a@example\.org> to=<b@example\.test> proto=ESMTP"
                     r" helo=<x\.example>$")
    finally:
        srv.stop()
