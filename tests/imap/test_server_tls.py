"""imapd TLS: STARTTLS, LOGINDISABLED before TLS, injection after STARTTLS, imaps (TLS on connect)."""

from __future__ import annotations

import imaplib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.imap.server_util import PASSWORD, USER, ImapServer, Raw
from tests.smtpd.tlscerts import make_cert


def _client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[ImapServer]:
    cert, key = make_cert(tmp_path)
    srv = ImapServer(tmp_path, {"smtpd_tls_cert_file": str(cert), "smtpd_tls_key_file": str(key),
                                "ssl": "required"})
    try:
        yield srv
    finally:
        srv.stop()


def test_logindisabled_before_starttls(tls_server: ImapServer) -> None:
    r = tls_server.raw()
    assert r.line() == (b"* OK [CAPABILITY IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ STARTTLS "
                        b"LOGINDISABLED] mailhorn ready.")
    assert r.cmd(b"a", b"LOGIN " + USER.encode() + b' "' + PASSWORD.encode() + b'"') == [
        b"a NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."]
    assert r.cmd(b"b", b"AUTHENTICATE PLAIN AGpvYW8AeA==") == [
        b"b NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."]
    c = imaplib.IMAP4("127.0.0.1", tls_server.port, timeout=15)
    c.starttls(_client_context())
    assert "LOGINDISABLED" not in c.capabilities and "AUTH=PLAIN" in c.capabilities
    assert c.login(USER, PASSWORD)[0] == "OK"
    c.select("INBOX")
    c.logout()
    _, text = tls_server.wait_log(r"imap-login: Login: ")
    assert text.endswith(", TLS")


def test_starttls_injection_is_not_executed(tls_server: ImapServer) -> None:
    r = tls_server.raw()
    r.line()
    r.send(b"a STARTTLS\r\nb CAPABILITY\r\n")
    assert r.line() == b"a OK Begin TLS negotiation now."
    tls = _client_context().wrap_socket(r.sock, server_hostname="mx.example.test")
    t = Raw(0, sock=tls)
    # The plaintext "b CAPABILITY" was thrown away: the next answer is to our own command.
    assert t.cmd(b"c", b"NOOP") == [b"c OK NOOP completed."]
    assert t.cmd(b"d", b"STARTTLS") == [b"d BAD TLS is already active."]
    t.close()


def test_imaps_tls_on_connect(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    srv = ImapServer(tmp_path, {"ssl_cert": str(cert), "ssl_key": str(key)},
                     master_line="imaps inet n - n - - imapd -o imap_tls_wrappermode=yes")
    try:
        c = imaplib.IMAP4_SSL("127.0.0.1", srv.port, ssl_context=_client_context(), timeout=15)
        assert "STARTTLS" not in c.capabilities
        assert c.login(USER, PASSWORD)[0] == "OK"
        c.logout()
        plain = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
        plain.sendall(b"a CAPABILITY\r\n")
        assert not plain.recv(100).startswith(b"* OK")
        plain.close()
    finally:
        srv.stop()


def test_no_starttls_without_certificate(tmp_path: Path) -> None:
    srv = ImapServer(tmp_path)
    try:
        r = srv.raw()
        assert b"STARTTLS" not in r.line()
        assert r.cmd(b"a", b"STARTTLS") == [b"a BAD TLS support isn't enabled."]
    finally:
        srv.stop()
