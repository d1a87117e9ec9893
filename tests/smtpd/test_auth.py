"""SMTP AUTH in smtpd: the dialogue, Postfix's replies and log lines, restrictions.

A submission-like service as the seeds configure it with master.cf ``-o``
overrides (``smtpd_tls_security_level=encrypt``, ``smtpd_sasl_auth_enable=yes``,
``smtpd_recipient_restrictions=permit_sasl_authenticated,reject``), its users
in a ``texthash:`` passdb, driven with raw sockets and Python's smtplib.
"""

from __future__ import annotations

import base64
import hmac
import smtplib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.config.errors import ConfigError
from mailhorn.config.load import load
from mailhorn.smtpd.auth import SmtpdSasl, mechanisms_allowed, security_options
from tests.smtpd.server_harness import HOST, Client, SmtpdServer
from tests.smtpd.tlscerts import make_cert

USER, PASSWORD = "alice@example.test", "s3cret pass"
OTHER = "bob@example.test"

#: master.cf ``submission inet n - y - - smtpd`` with the seeds' -o overrides.
SUBMISSION = {
    "smtpd_tls_security_level": "encrypt",
    "smtpd_sasl_auth_enable": "yes",
    "smtpd_recipient_restrictions": "permit_sasl_authenticated,reject",
    "smtpd_relay_restrictions": "",
}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def plain(user: str, password: str) -> str:
    return b64(f"\0{user}\0{password}")


def passdb(tmp_path: Path) -> str:
    path = tmp_path / "passdb"
    path.write_text(f"{USER} {{PLAIN}}{PASSWORD}\n{OTHER} {{PLAIN}}bobpw\n")
    return f"texthash:{path}"


def service(tmp_path: Path, extra: dict[str, str] | None = None, *, tls: bool = True) -> SmtpdServer:
    values = {
        "passdb_maps": passdb(tmp_path),
        "auth_failure_delay": "0",
        "mydestination": "example.test",
        "mynetworks": "192.0.2.0/24",
    }
    if tls:
        cert, key = make_cert(tmp_path, HOST)
        values.update({"smtpd_tls_cert_file": str(cert), "smtpd_tls_key_file": str(key)})
        values.update(SUBMISSION)
    else:
        values.update({"smtpd_sasl_auth_enable": "yes",
                       "smtpd_recipient_restrictions": "permit_sasl_authenticated,reject",
                       "smtpd_relay_restrictions": ""})
    values.update(extra or {})
    return SmtpdServer(tmp_path, values, real_checks=True)


@pytest.fixture
def plain_server(tmp_path: Path) -> Iterator[SmtpdServer]:
    """SASL without TLS (the seeds' port 25 with smtpd_sasl_auth_enable = yes)."""
    srv = service(tmp_path, tls=False)
    yield srv
    srv.stop()


def greeted(srv: SmtpdServer, source: str = "127.0.0.1") -> Client:
    c = srv.client(source)
    assert c.reply()[0].startswith("220 ")
    return c


def ehlo(c: Client) -> list[str]:
    return [line[4:] for line in c.cmd("EHLO client.example")]


# --- mechanisms and security options ------------------------------------------------


def test_security_options_select_mechanisms(confdir: Path) -> None:
    (confdir / "main.cf").write_text("smtpd_sasl_security_options = noanonymous, noplaintext\n"
                                     "smtpd_sasl_tls_security_options = noanonymous\n"
                                     "auth_mechanisms = plain login cram-md5\n"
                                     "smtpd_sasl_auth_enable = yes\npassdb_maps = static:x\n")
    sasl = SmtpdSasl.from_config(load(str(confdir)))
    assert sasl.mechanisms == ("CRAM-MD5",)
    assert sasl.tls_mechanisms == ("PLAIN", "LOGIN", "CRAM-MD5")
    every = ("PLAIN", "LOGIN", "CRAM-MD5")
    assert mechanisms_allowed(every, frozenset()) == every
    for option, left in [("noanonymous", every), ("noplaintext", ("CRAM-MD5",)),
                         ("nodictionary", ("PLAIN", "LOGIN")), ("noactive", ("PLAIN", "LOGIN")),
                         ("mutual_auth", ()), ("forward_secrecy", ())]:
        (confdir / "main.cf").write_text(f"smtpd_sasl_security_options = {option}\n")
        refused = security_options(load(str(confdir)), "smtpd_sasl_security_options")
        assert mechanisms_allowed(every, refused) == left, option


def test_unknown_security_option_is_a_config_error(confdir: Path) -> None:
    (confdir / "main.cf").write_text("smtpd_sasl_security_options = noanonymous, nosuch\n")
    with pytest.raises(ConfigError, match='unknown smtpd_sasl_security_options value "nosuch"'):
        security_options(load(str(confdir)), "smtpd_sasl_security_options")


def test_tls_security_options_default_to_the_plain_ones(confdir: Path) -> None:
    (confdir / "main.cf").write_text("smtpd_sasl_security_options = noplaintext\nsmtpd_sasl_auth_enable = yes\n"
                                     "passdb_maps = static:x\n")
    sasl = SmtpdSasl.from_config(load(str(confdir)))
    assert sasl.mechanisms == sasl.tls_mechanisms == ()


# --- EHLO -----------------------------------------------------------------------------


def test_ehlo_lists_auth_after_starttls_and_before_enhancedstatuscodes(plain_server: SmtpdServer) -> None:
    c = greeted(plain_server)
    assert ehlo(c) == [HOST, "PIPELINING", "SIZE 10240000", "VRFY", "ETRN", "AUTH PLAIN LOGIN",
                       "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "CHUNKING"]


def test_broken_sasl_auth_clients_and_cram_md5(tmp_path: Path) -> None:
    srv = service(tmp_path, {"broken_sasl_auth_clients": "yes", "auth_mechanisms": "plain login cram-md5"},
                  tls=False)
    try:
        keywords = ehlo(greeted(srv))
        i = keywords.index("AUTH PLAIN LOGIN CRAM-MD5")
        assert keywords[i + 1] == "AUTH=PLAIN LOGIN CRAM-MD5"
    finally:
        srv.stop()


def test_auth_not_offered_when_disabled_or_discarded(tmp_path: Path) -> None:
    srv = service(tmp_path, {"smtpd_sasl_auth_enable": "no"}, tls=False)
    try:
        c = greeted(srv)
        assert not any(k.startswith("AUTH") for k in ehlo(c))
        assert c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)) == ["503 5.5.1 Error: authentication not enabled"]
    finally:
        srv.stop()
    second = tmp_path / "discard"
    second.mkdir()
    srv = service(second, {"smtpd_discard_ehlo_keywords": "auth, silent-discard"}, tls=False)
    try:
        c = greeted(srv)
        assert not any(k.startswith("AUTH") for k in ehlo(c))
        assert c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)) == ["503 5.5.1 Error: authentication not enabled"]
    finally:
        srv.stop()


def test_sasl_exceptions_networks_hide_auth(tmp_path: Path) -> None:
    srv = service(tmp_path, {"smtpd_sasl_exceptions_networks": "127.0.0.2"}, tls=False)
    try:
        assert "AUTH PLAIN LOGIN" in ehlo(greeted(srv, "127.0.0.1"))
        assert not any(k.startswith("AUTH") for k in ehlo(greeted(srv, "127.0.0.2")))
    finally:
        srv.stop()


# --- smtpd_tls_auth_only ----------------------------------------------------------------


def starttls(c: Client) -> ssl.SSLSocket:
    assert c.cmd("STARTTLS") == ["220 2.0.0 Ready to start TLS"]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c.sock = ctx.wrap_socket(c.sock, server_hostname=HOST)
    return c.sock


def test_tls_auth_only_hides_plain_and_login_before_tls(tmp_path: Path) -> None:
    srv = service(tmp_path, {"smtpd_tls_security_level": "may", "smtpd_tls_auth_only": "yes"})
    try:
        c = greeted(srv)
        before = ehlo(c)
        assert "STARTTLS" in before and not any(k.startswith("AUTH") for k in before)
        assert c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)) == \
            ["504 5.5.4 Encryption required for requested authentication mechanism"]
        assert c.cmd("AUTH LOGIN") == ["504 5.5.4 Encryption required for requested authentication mechanism"]
        starttls(c)
        after = ehlo(c)
        assert "AUTH PLAIN LOGIN" in after and "STARTTLS" not in after
        assert c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)) == ["235 2.7.0 Authentication successful"]
    finally:
        srv.stop()


def test_noplaintext_before_tls_and_plaintext_after(tmp_path: Path) -> None:
    srv = service(tmp_path, {"smtpd_tls_security_level": "may", "auth_mechanisms": "plain cram-md5",
                             "smtpd_sasl_security_options": "noanonymous, noplaintext",
                             "smtpd_sasl_tls_security_options": "noanonymous"})
    try:
        c = greeted(srv)
        assert "AUTH CRAM-MD5" in ehlo(c)
        assert c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)) == \
            ["535 5.7.8 Error: authentication failed: Invalid authentication mechanism"]
        starttls(c)
        assert "AUTH PLAIN LOGIN CRAM-MD5" in ehlo(c)
    finally:
        srv.stop()


# --- the exchange ---------------------------------------------------------------------


def test_plain_with_and_without_initial_response(plain_server: SmtpdServer) -> None:
    c = greeted(plain_server)
    ehlo(c)
    assert c.cmd("AUTH PLAIN") == ["334 "]
    assert c.cmd(plain(USER, PASSWORD)) == ["235 2.7.0 Authentication successful"]
    assert c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)) == ["503 5.5.1 Error: already authenticated"]
    assert c.cmd("QUIT") == ["221 2.0.0 Bye"]
    plain_server.wait_log(r"^disconnect from unknown\[127\.0\.0\.1\] ehlo=1 auth=1/2 quit=1 commands=3/4$")


def test_login_exchange_and_abort(plain_server: SmtpdServer) -> None:
    c = greeted(plain_server)
    ehlo(c)
    assert c.cmd("AUTH LOGIN") == ["334 VXNlcm5hbWU6"]
    assert c.cmd("*") == ["501 5.7.0 Authentication aborted"]
    plain_server.wait_log(r"^warning: unknown\[127\.0\.0\.1\]: SASL LOGIN authentication aborted$")
    assert c.cmd("AUTH LOGIN " + b64(USER)) == ["334 UGFzc3dvcmQ6"]
    assert c.cmd(b64(PASSWORD)) == ["235 2.7.0 Authentication successful"]


def test_bad_base64_and_unknown_mechanism(plain_server: SmtpdServer) -> None:
    c = greeted(plain_server)
    ehlo(c)
    assert c.cmd("AUTH PLAIN !!!") == \
        ["535 5.7.8 Error: authentication failed: Invalid base64 data in initial response"]
    assert c.cmd("AUTH LOGIN") == ["334 VXNlcm5hbWU6"]
    assert c.cmd("not base64") == \
        ["535 5.7.8 Error: authentication failed: Invalid base64 data in continued response"]
    assert c.cmd("AUTH GSSAPI") == ["535 5.7.8 Error: authentication failed: Invalid authentication mechanism"]
    assert c.cmd("AUTH") == ["501 5.5.4 Syntax: AUTH mechanism"]
    plain_server.wait_log(r"^warning: unknown\[127\.0\.0\.1\]: SASL GSSAPI authentication failed: "
                          r"Invalid authentication mechanism, sasl_username=\(unavailable\)$")


def test_cram_md5(tmp_path: Path) -> None:
    srv = service(tmp_path, {"auth_mechanisms": "plain login cram-md5"}, tls=False)
    try:
        c = greeted(srv)
        ehlo(c)
        (challenge_line,) = c.cmd("AUTH CRAM-MD5")
        assert challenge_line.startswith("334 ")
        challenge = base64.b64decode(challenge_line[4:])
        assert challenge.startswith(b"<") and challenge.endswith(f"@{HOST}>".encode())
        digest = hmac.new(PASSWORD.encode(), challenge, "md5").hexdigest()
        assert c.cmd(b64(f"{USER} {digest}")) == ["235 2.7.0 Authentication successful"]
    finally:
        srv.stop()


def test_auth_refused_inside_a_transaction_and_helo_required(tmp_path: Path) -> None:
    srv = service(tmp_path, {"smtpd_helo_required": "yes", "smtpd_recipient_restrictions": "permit"},
                  tls=False)
    try:
        c = greeted(srv)
        assert c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)) == ["503 5.5.1 Error: send HELO/EHLO first"]
        ehlo(c)
        assert c.cmd("MAIL FROM:<x@example.test>") == ["250 2.1.0 Ok"]
        assert c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)) == ["503 5.5.1 Error: MAIL transaction in progress"]
    finally:
        srv.stop()


# --- failures: indistinguishable, limited ------------------------------------------------


def test_unknown_user_and_wrong_password_are_indistinguishable(plain_server: SmtpdServer) -> None:
    c = greeted(plain_server)
    ehlo(c)
    wrong = c.cmd("AUTH PLAIN " + plain(USER, "guess"))
    unknown = c.cmd("AUTH PLAIN " + plain("nobody@example.test", "guess"))
    assert wrong == unknown == ["535 5.7.8 Error: authentication failed: authentication failure"]
    assert c.cmd("AUTH LOGIN " + b64(USER)) == ["334 UGFzc3dvcmQ6"]
    login_wrong = c.cmd(b64("guess"))
    assert c.cmd("AUTH LOGIN " + b64("nobody@example.test")) == ["334 UGFzc3dvcmQ6"]
    assert c.cmd(b64("guess")) == login_wrong == wrong
    lines = [plain_server.wait_log(rf"SASL {mech} authentication failed: .*sasl_username={user}$")
             for mech in ("PLAIN", "LOGIN") for user in (USER, "nobody@example.test")]
    assert len({line.replace("nobody@example.test", USER) for line in lines[:2]}) == 1
    assert len({line.replace("nobody@example.test", USER) for line in lines[2:]}) == 1
    assert lines[0] == ("warning: unknown[127.0.0.1]: SASL PLAIN authentication failed: "
                        f"authentication failure, sasl_username={USER}")


def test_auth_flood_ends_with_421(tmp_path: Path) -> None:
    srv = service(tmp_path, {"smtpd_hard_error_limit": "5"}, tls=False)
    try:
        c = greeted(srv)
        ehlo(c)
        for _ in range(5):
            assert c.cmd("AUTH PLAIN " + plain(USER, "guess"))[0].startswith("535 5.7.8 ")
        assert c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)) == [f"421 4.7.0 {HOST} Error: too many errors"]
        assert c.closed()
        srv.wait_log(r"^too many errors after AUTH from unknown\[127\.0\.0\.1\]$")
    finally:
        srv.stop()


def test_auth_rate_limit(tmp_path: Path) -> None:
    srv = service(tmp_path, {"smtpd_client_auth_rate_limit": "2"}, tls=False)
    try:
        c = greeted(srv, "127.0.0.3")
        ehlo(c)
        assert c.cmd("AUTH PLAIN " + plain(USER, "guess"))[0].startswith("535 ")
        assert c.cmd("AUTH PLAIN " + plain(USER, "guess"))[0].startswith("535 ")
        assert c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)) == \
            ["450 4.7.1 Error: too many AUTH commands from 127.0.0.3"]
        srv.wait_log(r"^warning: AUTH command rate limit exceeded: 3 from unknown\[127\.0\.0\.3\] "
                     r"for service smtp$")
    finally:
        srv.stop()


def test_temporary_failure(tmp_path: Path) -> None:
    (tmp_path / "down.cf").write_text("hosts = 127.0.0.1:1\nuser = x\npassword = y\ndbname = z\n"
                                      "query = SELECT password FROM users WHERE email='%s'\n")
    srv = service(tmp_path, {"passdb_maps": f"mysql:{tmp_path / 'down.cf'}"}, tls=False)
    try:
        c = greeted(srv)
        ehlo(c)
        assert c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)) == \
            ["454 4.7.0 Temporary authentication failure: Authentication backend error"]
    finally:
        srv.stop()


# --- after the login: relay, protocol, Received:, log lines -------------------------------


def test_smtplib_login_relays_and_marks_the_message(tmp_path: Path) -> None:
    srv = service(tmp_path, {"smtpd_sasl_authenticated_header": "yes", "smtpd_tls_received_header": "no"})
    try:
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=15) as s:
            s.ehlo("laptop.example")
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s.starttls(context=ctx)
            s.ehlo("laptop.example")
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                s.sendmail(USER, ["friend@remote.example"], b"Subject: before\r\n\r\nno\r\n")
            s.login(USER, PASSWORD)
            assert s.sendmail(USER, ["friend@remote.example"], b"Subject: hi\r\n\r\nhello\r\n") == {}
        (qid,) = srv.queued()
        content = srv.content(qid).decode()
        assert "\t(Authenticated sender: alice@example.test)\n" in content
        assert " with ESMTPSA id " in content
        srv.wait_log(rf"^{qid}: client=unknown\[127\.0\.0\.1\], sasl_method=PLAIN, "
                     rf"sasl_username=alice@example\.test$")
        srv.wait_log(r"^NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 "
                     r"<friend@remote\.example>: Recipient address rejected: Access denied; "
                     r"from=<alice@example\.test> to=<friend@remote\.example> proto=ESMTPS helo=<laptop\.example>$")
    finally:
        srv.stop()


def test_esmtpa_without_tls_and_no_header_by_default(plain_server: SmtpdServer) -> None:
    c = greeted(plain_server)
    ehlo(c)
    assert c.cmd("AUTH PLAIN " + plain(USER, PASSWORD))[0].startswith("235 ")
    assert c.cmd("MAIL FROM:<alice@example.test> AUTH=alice@example.test") == ["250 2.1.0 Ok"]
    assert c.cmd("RCPT TO:<x@remote.example>") == ["250 2.1.5 Ok"]
    assert c.cmd("DATA")[0].startswith("354 ")
    reply = c.cmd("Subject: t\r\n\r\nbody\r\n.")
    assert reply[0].startswith("250 2.0.0 Ok: queued as ")
    qid = reply[0].rsplit(" ", 1)[1]
    content = plain_server.content(qid).decode()
    assert " with ESMTPA id " in content and "Authenticated sender" not in content
    plain_server.wait_log(rf"^{qid}: client=unknown\[127\.0\.0\.1\], sasl_method=PLAIN, "
                          r"sasl_username=alice@example\.test, sasl_sender=alice@example\.test$")


def test_starttls_forgets_a_login_made_before(tmp_path: Path) -> None:
    srv = service(tmp_path, {"smtpd_tls_security_level": "may"})
    try:
        c = greeted(srv)
        ehlo(c)
        assert c.cmd("AUTH PLAIN " + plain(USER, PASSWORD))[0].startswith("235 ")
        starttls(c)
        ehlo(c)
        assert c.cmd("MAIL FROM:<alice@example.test>") == ["250 2.1.0 Ok"]
        assert c.cmd("RCPT TO:<x@remote.example>")[0].startswith("554 5.7.1 ")
    finally:
        srv.stop()


def test_sender_login_maps(tmp_path: Path) -> None:
    owners = tmp_path / "senders"
    owners.write_text(f"{USER} {USER}\nshared@example.test {USER}, {OTHER}\n")
    srv = service(tmp_path, {
        "smtpd_sender_login_maps": f"texthash:{owners}",
        "smtpd_sender_restrictions": "reject_sender_login_mismatch",
        "smtpd_recipient_restrictions": "permit",
    }, tls=False)
    try:
        c = greeted(srv)
        ehlo(c)
        # smtpd_delay_reject = yes: sender restrictions answer at RCPT.
        # Not logged in: a sender that has an owner is refused.
        assert c.cmd(f"MAIL FROM:<{USER}>") == ["250 2.1.0 Ok"]
        assert c.cmd("RCPT TO:<x@remote.example>") == \
            [f"553 5.7.1 <{USER}>: Sender address rejected: not logged in"]
        c.cmd("RSET")
        assert c.cmd("MAIL FROM:<free@example.test>") == ["250 2.1.0 Ok"]
        assert c.cmd("RCPT TO:<x@remote.example>") == ["250 2.1.5 Ok"]
        c.cmd("RSET")
        assert c.cmd("AUTH PLAIN " + plain(OTHER, "bobpw"))[0].startswith("235 ")
        c.cmd(f"MAIL FROM:<{USER}>")
        assert c.cmd("RCPT TO:<x@remote.example>") == \
            [f"553 5.7.1 <{USER}>: Sender address rejected: not owned by user {OTHER}"]
        c.cmd("RSET")
        c.cmd("MAIL FROM:<shared@example.test>")
        assert c.cmd("RCPT TO:<x@remote.example>") == ["250 2.1.5 Ok"]
        srv.wait_log(rf"^NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 553 5\.7\.1 <{USER}>: "
                     rf"Sender address rejected: not owned by user {OTHER}; from=<{USER}> "
                     r"to=<x@remote\.example> proto=ESMTPA helo=<client\.example>$")
    finally:
        srv.stop()


@pytest.mark.parametrize(("restriction", "anonymous", "unknown_sender"), [
    ("reject_authenticated_sender_login_mismatch", "250", "553"),
    ("reject_unauthenticated_sender_login_mismatch", "553", "250"),
    ("reject_known_sender_login_mismatch", "553", "250"),
])
def test_login_mismatch_variants(tmp_path: Path, restriction: str, anonymous: str, unknown_sender: str) -> None:
    owners = tmp_path / "senders"
    owners.write_text(f"{USER} {USER}\n")
    srv = service(tmp_path, {
        "smtpd_sender_login_maps": f"texthash:{owners}",
        "smtpd_sender_restrictions": restriction,
        "smtpd_recipient_restrictions": "permit",
        "smtpd_delay_reject": "no",
    }, tls=False)
    try:
        c = greeted(srv)
        ehlo(c)
        assert c.cmd(f"MAIL FROM:<{USER}>")[0][:3] == anonymous
        c.cmd("RSET")
        assert c.cmd("AUTH PLAIN " + plain(OTHER, "bobpw"))[0].startswith("235 ")
        # A sender nobody owns, from a logged-in client.
        assert c.cmd("MAIL FROM:<nobody-owns@example.test>")[0][:3] == unknown_sender
        c.cmd("RSET")
        own = c.cmd(f"MAIL FROM:<{USER}>")
        expected = "250" if restriction == "reject_unauthenticated_sender_login_mismatch" else "553"
        assert own[0][:3] == expected
    finally:
        srv.stop()


def test_starttls_keeps_a_fast_client_hello(tmp_path: Path) -> None:
    """The ClientHello sent the moment the 220 arrives is never thrown away."""
    srv = service(tmp_path, {"smtpd_tls_security_level": "may"})
    try:
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=15)
            sock.recv(4096)
            sock.sendall(b"EHLO x\r\n")
            while not sock.recv(4096).endswith(b"250 CHUNKING\r\n"):
                pass
            sock.sendall(b"STARTTLS\r\n")
            assert sock.recv(4096) == b"220 2.0.0 Ready to start TLS\r\n"
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            tls = ctx.wrap_socket(sock, server_hostname=HOST)
            tls.sendall(b"NOOP\r\n")
            assert tls.recv(4096) == b"250 2.0.0 Ok\r\n"
            tls.close()
    finally:
        srv.stop()
