"""pop3d over loopback with Python's poplib and raw sockets, on real Maildirs."""

from __future__ import annotations

import poplib
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.mailstore import uidlist
from tests.pop3.harness import Pop3Server
from tests.smtpd.tlscerts import make_cert

MSG1 = b"From: a@example.test\nSubject: one\n\nline1\n.dot\nend\n"
MSG2 = b"From: b@example.test\r\nSubject: two\r\n\r\nbody\r\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Pop3Server]:
    cert, key = make_cert(tmp_path)
    srv = Pop3Server(tmp_path, {"alice": "secret", "bob": "hunter2"},
                     {"ssl_cert": str(cert), "ssl_key": str(key)})
    try:
        yield srv
    finally:
        srv.stop()


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_poplib_transcript(server: Pop3Server) -> None:
    server.deliver("alice", MSG1)
    server.deliver("alice", MSG2)
    pop = poplib.POP3("127.0.0.1", server.port, timeout=15)
    assert pop.getwelcome() == b"+OK mailhorn ready."
    assert pop.user("alice") == b"+OK"
    assert pop.pass_("secret") == b"+OK Logged in."
    assert pop.stat() == (2, 56 + 44)
    assert pop.list() == (b"+OK 2 messages:", [b"1 56", b"2 44"], 12)
    ul = uidlist.read(server.maildirs["alice"])
    assert ul is not None
    expected = [f"{r.uid:08x}{ul.uidvalidity:08x}".encode() for r in ul.records]
    assert pop.uidl()[1] == [b"1 " + expected[0], b"2 " + expected[1]]
    assert pop.uidl(2) == b"+OK 2 " + expected[1]
    resp, lines, _ = pop.top(1, 1)
    assert resp == b"+OK" and lines == [b"From: a@example.test", b"Subject: one", b"", b"line1"]
    resp, lines, octets = pop.retr(1)
    assert resp == b"+OK 56 octets"
    assert lines == [b"From: a@example.test", b"Subject: one", b"", b"line1", b".dot", b"end"]
    assert pop.dele(1) == b"+OK Marked to be deleted."
    with pytest.raises(poplib.error_proto, match="Message is deleted"):
        pop.retr(1)
    assert pop.stat() == (1, 44)
    assert pop.rset() == b"+OK"
    assert pop.stat() == (2, 100)
    pop.retr(1)  # RSET forgot the first RETR, as Dovecot's does
    assert pop.dele(2) == b"+OK Marked to be deleted."
    with pytest.raises(poplib.error_proto, match=r"There's no message 3\."):
        pop.list(3)
    assert pop.noop() == b"+OK"
    assert pop.quit() == b"+OK Logging out, messages deleted."
    files = server.files("alice")
    assert len(files) == 1 and files[0].endswith(":2,S")  # RETR'd: seen; DELE'd: gone
    server.wait_log(r"^pop3-login: Login: user=<alice>, method=PLAIN, rip=127\.0\.0\.1, lip=127\.0\.0\.1, "
                    r"mpid=\d+, secured, session=<[A-Za-z0-9+/]{16}>$")
    server.wait_log(r"^pop3\(alice\): Disconnected: Logged out "
                    r"top=1/\d+, retr=2/\d+, del=1/2, size=100$")


def test_logout_counters_as_dovecot_counts_them(server: Pop3Server) -> None:
    # Dovecot counts the +OK line and the message, not the terminating dot line.
    server.deliver("alice", b"From: a@b\nSubject: one\n\nline1\n.dot\nend")
    c = server.client()
    c.line()
    c.command("USER alice"), c.command("PASS secret")
    c.send(b"TOP 1 1\r\n")
    assert c.multiline() == b"+OK\r\nFrom: a@b\r\nSubject: one\r\n\r\nline1\r\n.\r\n"
    c.send(b"RETR 1\r\n")
    assert c.multiline() == (b"+OK 43 octets\r\nFrom: a@b\r\nSubject: one\r\n\r\nline1\r\n..dot\r\nend\r\n"
                             b".\r\n")
    assert c.command("QUIT") == b"+OK Logging out.\r\n"
    server.wait_log(r"Logged out top=1/39, retr=1/61, del=0/1, size=43$")


def test_apop_is_refused(server: Pop3Server) -> None:
    pop = poplib.POP3("127.0.0.1", server.port, timeout=15)
    with pytest.raises(poplib.error_proto):
        pop.apop("alice", "secret")  # no timestamp in the greeting: APOP is not offered
    c = server.client()
    assert c.line() == b"+OK mailhorn ready.\r\n"
    assert c.command("APOP alice 0123456789abcdef0123456789abcdef") == b"-ERR Unknown command.\r\n"
    pop.close()
    c.close()


def test_wrong_password_and_unknown_user_look_the_same(server: Pop3Server) -> None:
    c = server.client()
    c.line()
    answers = []
    for user, password in (("alice", "wrong"), ("nobody-here", "secret")):
        assert c.command(f"USER {user}") == b"+OK\r\n"
        answers.append(c.command(f"PASS {password}"))
    assert answers == [b"-ERR [AUTH] Authentication failed.\r\n"] * 2
    assert c.command("QUIT") == b"+OK Logging out.\r\n"
    server.wait_log(r"^pop3-login: Disconnected \(auth failed, 2 attempts in \d+ secs\): "
                    r"user=<nobody-here>, method=PLAIN, rip=127\.0\.0\.1, lip=127\.0\.0\.1, secured, session=<")


def test_plaintext_refused_before_tls_then_stls_login(server: Pop3Server) -> None:
    c = server.client("127.0.0.2")
    c.line()
    c.send(b"CAPA\r\n")
    assert c.multiline() == (b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"
                             b"STLS\r\nSASL\r\n.\r\n")
    assert c.command("USER alice") == (b"-ERR [AUTH] Plaintext authentication disallowed on non-secure "
                                       b"(SSL/TLS) connections.\r\n")
    assert c.command("AUTH PLAIN") == b"-ERR [AUTH] Plaintext authentication disabled.\r\n"
    c.close()
    pop = _pop_from("127.0.0.2", server.port)
    assert pop.stls(context=tls_context()) == b"+OK Begin TLS negotiation now."
    assert pop.capa() == {"CAPA": [], "TOP": [], "UIDL": [], "RESP-CODES": [], "PIPELINING": [],
                          "AUTH-RESP-CODE": [], "USER": [], "SASL": ["PLAIN"]}
    assert pop.user("alice") == b"+OK"
    assert pop.pass_("secret") == b"+OK Logged in."
    assert pop.quit() == b"+OK Logging out."
    server.wait_log(r"^pop3-login: Login: user=<alice>, method=PLAIN, rip=127\.0\.0\.2, lip=127\.0\.0\.1, "
                    r"mpid=\d+, TLS, session=<")


def _pop_from(source: str, port: int) -> poplib.POP3:
    """poplib connected from a chosen loopback address."""

    class SourcedPOP3(poplib.POP3):
        def _create_socket(self, timeout: float) -> socket.socket:
            return socket.create_connection((self.host, self.port), timeout, source_address=(source, 0))

    return SourcedPOP3("127.0.0.1", port, timeout=15)


def test_sasl_plain_and_login(tmp_path: Path) -> None:
    srv = Pop3Server(tmp_path, {"bob": "hunter2"}, {"auth_mechanisms": "plain login"})
    try:
        srv.deliver("bob", MSG2)
        c = srv.client()
        c.line()
        c.send(b"AUTH\r\n")
        assert c.multiline() == b"+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n"
        # AUTH PLAIN with an initial response (RFC 5034 §4): \0bob\0hunter2
        assert c.command("AUTH PLAIN AGJvYgBodW50ZXIy") == b"+OK Logged in.\r\n"
        assert c.command("STAT") == b"+OK 1 44\r\n"
        assert c.command("QUIT") == b"+OK Logging out.\r\n"
        c = srv.client()
        c.line()
        assert c.command("AUTH PLAIN") == b"+ \r\n"
        assert c.command("*") == b"-ERR Authentication aborted by client.\r\n"
        assert c.command("AUTH PLAIN") == b"+ \r\n"
        assert c.command("!!!") == b"-ERR [AUTH] Invalid base64 in response\r\n"
        assert c.command("AUTH PLAIN AGJvYgB3cm9uZw==") == b"-ERR [AUTH] Authentication failed.\r\n"
        assert c.command("AUTH CRAM-MD5") == b"-ERR [AUTH] Unsupported authentication mechanism.\r\n"
        assert c.command("AUTH LOGIN") == b"+ VXNlcm5hbWU6\r\n"
        assert c.command("Ym9i") == b"+ UGFzc3dvcmQ6\r\n"
        assert c.command("aHVudGVyMg==") == b"+OK Logged in.\r\n"
        assert c.command("QUIT") == b"+OK Logging out.\r\n"
        srv.wait_log(r"^pop3-login: Login: user=<bob>, method=LOGIN, ")
    finally:
        srv.stop()


def test_pop3s_tls_on_connect(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    srv = Pop3Server(tmp_path, {"alice": "secret"},
                     {"ssl_cert": f"<{cert}", "ssl_key": f"<{key}", "pop3_tls_wrappermode": "yes"})
    try:
        srv.deliver("alice", MSG2)

        class SourcedPOP3SSL(poplib.POP3_SSL):
            def _create_socket(self, timeout: float) -> socket.socket:
                sock = socket.create_connection((self.host, self.port), timeout, source_address=("127.0.0.2", 0))
                return self.context.wrap_socket(sock, server_hostname=self.host)

        pop = SourcedPOP3SSL("127.0.0.1", srv.port, timeout=15, context=tls_context())
        assert pop.getwelcome() == b"+OK mailhorn ready."
        assert "STLS" not in pop.capa() and "USER" in pop.capa()
        pop.user("alice")
        pop.pass_("secret")
        assert pop.retr(1)[1] == [b"From: b@example.test", b"Subject: two", b"", b"body"]
        pop.quit()
        srv.wait_log(r"^pop3-login: Login: user=<alice>, .*rip=127\.0\.0\.2, .*, TLS, session=<")
    finally:
        srv.stop()


def test_stls_injection_gets_no_reply(server: Pop3Server) -> None:
    c = server.client("127.0.0.2")
    c.line()
    c.send(b"STLS\r\nCAPA\r\n")
    assert c.line() == b"+OK Begin TLS negotiation now.\r\n"
    assert c.buf == b""
    tls = tls_context().wrap_socket(c.sock)
    tls.sendall(b"NOOP\r\n")
    # The injected CAPA was thrown away: the first answer over TLS is NOOP's.
    assert tls.recv(4096) == b"-ERR Unknown command.\r\n"
    tls.sendall(b"QUIT\r\n")
    assert tls.recv(4096) == b"+OK Logging out.\r\n"
    tls.close()


def test_second_session_on_a_mailbox_is_refused(server: Pop3Server) -> None:
    server.deliver("alice", MSG1)
    first = poplib.POP3("127.0.0.1", server.port, timeout=15)
    first.user("alice")
    first.pass_("secret")
    second = server.client()
    second.line()
    assert second.command("USER alice") == b"+OK\r\n"
    assert second.command("PASS secret") == b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"
    assert (server.maildirs["alice"] / "dovecot-pop3-session.lock").exists()
    assert first.quit() == b"+OK Logging out."
    assert not (server.maildirs["alice"] / "dovecot-pop3-session.lock").exists()
    assert second.command("PASS secret") == b"-ERR No username given.\r\n"
    assert second.command("USER alice") == b"+OK\r\n"
    assert second.command("PASS secret") == b"+OK Logged in.\r\n"
    second.close()
    server.wait_log(r"^pop3\(alice\): Disconnected: Couldn't lock POP3 session")


def test_dele_without_quit_keeps_the_message(server: Pop3Server) -> None:
    server.deliver("alice", MSG1)
    server.deliver("alice", MSG2)
    before = server.files("alice")
    c = server.client()
    c.line()
    c.command("USER alice")
    c.command("PASS secret")
    assert c.command("DELE 1") == b"+OK Marked to be deleted.\r\n"
    assert c.command("DELE 2") == b"+OK Marked to be deleted.\r\n"
    c.close()  # dropped: no QUIT, no UPDATE state
    server.wait_log(r"^pop3\(alice\).*: Disconnected: Connection closed top=0/0, retr=0/0, del=0/2, size=100$")
    assert server.files("alice") == before
    pop = poplib.POP3("127.0.0.1", server.port, timeout=15)
    pop.user("alice")
    pop.pass_("secret")
    assert pop.stat() == (2, 100)
    pop.quit()


def test_transaction_argument_errors_as_dovecot(server: Pop3Server) -> None:
    server.deliver("alice", MSG1)
    c = server.client()
    c.line()
    c.command("USER alice")
    c.command("PASS secret")
    answers = {cmd: c.command(cmd) for cmd in
               ("LIST 9", "LIST x", "LIST 1 2", "TOP 1", "TOP 1 -1", "RETR", "DELE 0", "LIST 4294967297",
                "LIST 00001", "FOO", "", "USER x", "NOOP x")}
    assert answers == {
        "LIST 9": b"-ERR There's no message 9.\r\n",
        "LIST x": b"-ERR Invalid message number: x\r\n",
        "LIST 1 2": b"-ERR Noise after message number:  2\r\n",
        "TOP 1": b"-ERR Noise after message number: \r\n",
        "TOP 1 -1": b"-ERR Invalid size: -1\r\n",
        "RETR": b"-ERR Invalid message number: \r\n",
        "DELE 0": b"-ERR There's no message 0.\r\n",
        "LIST 4294967297": b"-ERR Message number too large: \r\n",
        "LIST 00001": b"+OK 1 56\r\n",
        "FOO": b"-ERR Unknown command: FOO\r\n",
        "": b"-ERR Unknown command.\r\n",
        "USER x": b"-ERR Unknown command: USER\r\n",
        "NOOP x": b"+OK\r\n",
    }
    c.send(b"CAPA\r\n")
    assert c.multiline() == b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n.\r\n"


def test_too_many_bad_commands_before_login(server: Pop3Server) -> None:
    c = server.client()
    c.line()
    assert c.command("FOO") == b"-ERR Unknown command.\r\n"
    assert c.command("STAT") == b"-ERR Unknown command.\r\n"
    c.send(b"BAR\r\n")
    assert c.line() == b"-ERR Unknown command.\r\n"
    assert c.line() == b"-ERR Too many invalid bad commands.\r\n"
    assert c.at_eof()


def test_pipelined_commands_in_one_write(server: Pop3Server) -> None:
    server.deliver("alice", MSG2)
    c = server.client()
    c.line()
    c.send(b"USER alice\r\nPASS secret\r\nSTAT\r\nUIDL 1\r\nQUIT\r\n")
    replies = [c.line() for _ in range(5)]
    assert replies[:3] == [b"+OK\r\n", b"+OK Logged in.\r\n", b"+OK 1 44\r\n"]
    assert re.fullmatch(rb"\+OK 1 [0-9a-f]{16}\r\n", replies[3])
    assert replies[4] == b"+OK Logging out.\r\n"


def test_overlong_line_closes(server: Pop3Server) -> None:
    c = server.client()
    c.line()
    c.send(b"USER " + b"x" * 20000 + b"\r\n")
    assert c.line() == b"-ERR Input line too long.\r\n"
    assert c.at_eof()
