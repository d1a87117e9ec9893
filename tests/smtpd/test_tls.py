"""STARTTLS, wrappermode, security levels and the injection defence, over real sockets."""

from __future__ import annotations

import shutil
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.smtpd.server_harness import SmtpdServer
from tests.smtpd.tlscerts import make_cert


def client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_server(tmp_path: Path, **extra: str) -> SmtpdServer:
    cert, key = make_cert(tmp_path)
    settings = {"smtpd_tls_security_level": "may", "smtpd_tls_cert_file": str(cert),
                "smtpd_tls_key_file": str(key), "smtpd_tls_loglevel": "1"}
    settings.update(extra)
    return SmtpdServer(tmp_path, settings)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SmtpdServer]:
    srv = tls_server(tmp_path)
    yield srv
    srv.stop()


def test_starttls_with_smtplib(server: SmtpdServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, timeout=15) as s:
        code, text = s.ehlo("client.example")
        assert b"STARTTLS" in text.split(b"\n")
        assert s.starttls(context=client_context())[0] == 220
        code, text = s.ehlo("client.example")
        assert b"STARTTLS" not in text.split(b"\n")
        s.sendmail("a@example.org", ["b@example.test"], b"Subject: tls\r\n\r\nsecret\r\n")
    ids = server.queued()
    assert len(ids) == 1
    assert server.read(ids[0]).attributes["protocol_name"] == "ESMTPS"
    line = server.wait_log(r"^Anonymous TLS connection established from unknown\[127\.0\.0\.1\]: ")
    assert " with cipher " in line and line.endswith(" bits)")
    server.wait_log(r"^disconnect from .* ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7$")


def test_tls_already_active(server: SmtpdServer) -> None:
    c = server.client()
    c.reply()
    c.cmd("EHLO x")
    assert c.cmd("STARTTLS") == ["220 2.0.0 Ready to start TLS"]
    c.sock = client_context().wrap_socket(c.sock)
    assert c.cmd("STARTTLS") == ["554 5.5.1 Error: TLS already active"]
    assert c.cmd("QUIT") == ["221 2.0.0 Bye"]


def test_starttls_injection_gets_no_reply(server: SmtpdServer) -> None:
    """CVE-2011-0411: commands sent in plaintext behind STARTTLS are dropped."""
    c = server.client()
    c.reply()
    c.cmd("EHLO x")
    c.send("STARTTLS\r\nRSET\r\n")
    assert c.reply() == ["220 2.0.0 Ready to start TLS"]
    assert c.buf == b""
    c.sock = client_context().wrap_socket(c.sock)
    # The first reply over TLS answers NOOP: nothing answers the injected RSET.
    assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
    assert c.cmd("QUIT") == ["221 2.0.0 Bye"]
    server.wait_log(r"^disconnect from .* ehlo=1 starttls=1 noop=1 quit=1 commands=4$")


def test_session_restarts_after_starttls(server: SmtpdServer) -> None:
    c = server.client()
    c.reply()
    c.cmd("EHLO x")
    c.cmd("MAIL FROM:<a@example.org>")
    assert c.cmd("STARTTLS") == ["220 2.0.0 Ready to start TLS"]
    c.sock = client_context().wrap_socket(c.sock)
    # The transaction begun in plaintext is gone (RFC 3207 §4.2).
    assert c.cmd("RCPT TO:<b@example.test>") == ["503 5.5.1 Error: need MAIL command"]


def test_swaks_tls(server: SmtpdServer) -> None:
    swaks = shutil.which("swaks")
    require(swaks is not None, "swaks is not installed (Debian package swaks)")
    assert swaks is not None
    proc = subprocess.run(
        [swaks, "--server", "127.0.0.1", "--port", str(server.port), "--from", "a@example.org",
         "--to", "b@example.test", "--tls", "--body", "over tls"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "250 2.0.0 Ok: queued as" in proc.stdout
    assert len(server.queued()) == 1


def test_encrypt_level_requires_starttls(tmp_path: Path) -> None:
    srv = tls_server(tmp_path, smtpd_tls_security_level="encrypt")
    try:
        c = srv.client()
        c.reply()
        assert "250-STARTTLS" in c.cmd("EHLO x")
        assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
        assert c.cmd("MAIL FROM:<a@example.org>") == ["530 5.7.0 Must issue a STARTTLS command first"]
        assert c.cmd("VRFY root") == ["530 5.7.0 Must issue a STARTTLS command first"]
        c.cmd("STARTTLS")
        c.sock = client_context().wrap_socket(c.sock)
        c.cmd("EHLO x")
        assert c.cmd("MAIL FROM:<a@example.org>") == ["250 2.1.0 Ok"]
    finally:
        srv.stop()


def test_legacy_smtpd_use_tls_offers_starttls(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    srv = SmtpdServer(tmp_path, {"smtpd_use_tls": "yes", "smtpd_tls_cert_file": str(cert),
                                 "smtpd_tls_key_file": str(key)})
    try:
        c = srv.client()
        c.reply()
        assert "250-STARTTLS" in c.cmd("EHLO x")
    finally:
        srv.stop()


def test_no_certificate_means_no_starttls(tmp_path: Path) -> None:
    srv = SmtpdServer(tmp_path, {"smtpd_tls_security_level": "may"})
    try:
        c = srv.client()
        c.reply()
        assert not any("STARTTLS" in line for line in c.cmd("EHLO x"))
        assert c.cmd("STARTTLS") == ["502 5.5.1 Error: command not implemented"]
        srv.wait_log(r"^warning: No server certs available\. TLS won't be enabled$")
    finally:
        srv.stop()


def test_wrappermode_smtps(tmp_path: Path) -> None:
    srv = tls_server(tmp_path, smtpd_tls_wrappermode="yes")
    try:
        with smtplib.SMTP_SSL("127.0.0.1", srv.port, timeout=15, context=client_context()) as s:
            code, text = s.ehlo("client.example")
            assert code == 250 and b"STARTTLS" not in text.split(b"\n")
            s.sendmail("a@example.org", ["b@example.test"], b"Subject: smtps\r\n\r\nx\r\n")
        ids = srv.queued()
        assert srv.read(ids[0]).attributes["protocol_name"] == "ESMTPS"
    finally:
        srv.stop()


def test_protocols_limit_the_handshake(tmp_path: Path) -> None:
    srv = tls_server(tmp_path, smtpd_tls_protocols=">=TLSv1.3")
    try:
        ctx = client_context()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        c = srv.client()
        c.reply()
        c.cmd("EHLO x")
        assert c.cmd("STARTTLS") == ["220 2.0.0 Ready to start TLS"]
        with pytest.raises((ssl.SSLError, ConnectionError, socket.timeout)):
            c.sock = ctx.wrap_socket(c.sock)
            c.cmd("NOOP")
        srv.wait_log(r"^SSL_accept error from unknown\[127\.0\.0\.1\]: ")
    finally:
        srv.stop()

