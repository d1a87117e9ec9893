"""The SMTP client's TLS: levels, certificate checks, policy table, STARTTLS injection.

Peers: mailhorn's own smtpd with STARTTLS, Postfix's smtp-sink (no TLS), and
the scripted peer of :mod:`tests.delivery.auth_peer` for the injection probe.
Certificates (a CA and server certificates it signs) are made with
``cryptography``.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailhorn.delivery.request import Action
from tests.delivery.auth_peer import AuthPeer
from tests.delivery.smtp_helpers import SmtpSink, make_config, make_request, run_agent
from tests.dns.stub import DnsStub
from tests.smtpd.server_harness import SmtpdServer


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(directory: Path, cn: str = "Test CA") -> tuple[Path, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / f"{cn.replace(' ', '_')}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, cert, key


def make_server_cert(directory: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
                     hostname: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(hostname)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path = directory / f"{hostname}.crt"
    key_path = directory / f"{hostname}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TlsSetup:
    def __init__(self, tmp_path: Path, hostname: str = "mx.example.test") -> None:
        certs = tmp_path / "certs"
        certs.mkdir()
        self.ca_file, ca, ca_key = make_ca(certs)
        self.other_ca, _, _ = make_ca(certs, "Other CA")
        cert, key = make_server_cert(certs, ca, ca_key, hostname)
        server_dir = tmp_path / "server"
        server_dir.mkdir()
        self.server = SmtpdServer(server_dir, {"smtpd_tls_security_level": "may", "smtpd_tls_cert_file": str(cert),
                                               "smtpd_tls_key_file": str(key)}, real_cleanup=False)
        self.dns = DnsStub({("mx.example.test", "A"): ["127.0.0.1"]})
        self.dns.__enter__()

    def config_dir(self, tmp_path: Path) -> Path:
        d = tmp_path / "client"
        d.mkdir(exist_ok=True)
        return d

    def stop(self) -> None:
        self.server.stop()
        self.dns.__exit__(None, None, None)


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[TlsSetup]:
    setup = TlsSetup(tmp_path)
    yield setup
    setup.stop()


def _client(tls: TlsSetup, tmp_path: Path, **params: str) -> tuple[Path, dict[str, str]]:
    d = tls.config_dir(tmp_path)
    base = {"dns_servers": tls.dns.server, "smtp_tls_loglevel": "1"}
    base.update(params)
    return d, base


def test_may_uses_starttls(tmp_path: Path, tls: TlsSetup) -> None:
    d, params = _client(tls, tmp_path, smtp_tls_security_level="may")
    config = make_config(d, **params)
    [statuses] = run_agent(config, [make_request(f"[mx.example.test]:{tls.server.port}", ["b@example.test"])])
    assert statuses[0].action is Action.DELIVERED, statuses[0].text
    # mailhorn's smtpd offers CHUNKING: the message went as BDAT.
    assert re.fullmatch(r"250 2\.0\.0 Ok: \d+ bytes queued as \w+", statuses[0].text)
    [qid] = tls.server.queued()
    assert tls.server.read(qid).attributes["protocol_name"] == "ESMTPS"
    log = (d / "maillog").read_text()
    assert re.search(rf"Untrusted TLS connection established to mx\.example\.test\[127\.0\.0\.1\]:{tls.server.port}: "
                     r"TLSv1\.3 with cipher \S+ \(\d+/\d+ bits\)", log), log


def test_verify_with_the_right_ca(tmp_path: Path, tls: TlsSetup) -> None:
    d, params = _client(tls, tmp_path, smtp_tls_security_level="verify", smtp_tls_CAfile=str(tls.ca_file))
    config = make_config(d, **params)
    [statuses] = run_agent(config, [make_request(f"[mx.example.test]:{tls.server.port}", ["b@example.test"])])
    assert statuses[0].action is Action.DELIVERED, statuses[0].text
    assert "Verified TLS connection established to mx.example.test[127.0.0.1]" in (d / "maillog").read_text()


def test_verify_with_an_unknown_ca_defers_and_sends_nothing(tmp_path: Path, tls: TlsSetup) -> None:
    d, params = _client(tls, tmp_path, smtp_tls_security_level="verify", smtp_tls_CAfile=str(tls.other_ca))
    [statuses] = run_agent(make_config(d, **params),
                           [make_request(f"[mx.example.test]:{tls.server.port}", ["b@example.test"])])
    s = statuses[0]
    assert s.action is Action.DEFERRED and s.dsn == "4.7.5" and s.text == "Server certificate not trusted"
    assert tls.server.queued() == []


def test_secure_with_a_name_mismatch_defers(tmp_path: Path, tls: TlsSetup) -> None:
    d, params = _client(tls, tmp_path, smtp_tls_security_level="secure", smtp_tls_CAfile=str(tls.ca_file),
                        smtp_tls_secure_cert_match="nexthop")
    # The next hop is the address, the certificate names mx.example.test.
    [statuses] = run_agent(make_config(d, **params),
                           [make_request(f"[127.0.0.1]:{tls.server.port}", ["b@example.test"])])
    s = statuses[0]
    assert s.action is Action.DEFERRED and s.dsn == "4.7.5" and s.text == "Server certificate not verified"
    assert tls.server.queued() == []


def test_encrypt_without_starttls_never_sends_in_plaintext(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path)
    try:
        config = make_config(tmp_path, smtp_tls_security_level="encrypt")
        [statuses] = run_agent(config, [make_request(sink.nexthop, ["b@example.net"])])
        s = statuses[0]
        assert s.action is Action.DEFERRED and s.dsn == "4.7.4"
        assert s.text == "TLS is required, but was not offered by host 127.0.0.3[127.0.0.3]"
        assert sink.messages() == []
    finally:
        sink.stop()


def test_policy_table_raises_the_level_for_one_destination(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path)
    try:
        policy = tmp_path / "tls_policy"
        policy.write_text(f"{sink.nexthop} encrypt\n")
        config = make_config(tmp_path, smtp_tls_security_level="may", smtp_tls_policy_maps=f"texthash:{policy}")
        other = SmtpSink(tmp_path)
        try:
            [[s1], [s2]] = run_agent(config, [make_request(sink.nexthop, ["b@example.net"]),
                                              make_request(other.nexthop, ["b@example.net"])])
            assert s1.action is Action.DEFERRED and s1.dsn == "4.7.4"
            assert s2.action is Action.DELIVERED
            assert sink.messages() == [] and len(other.wait_messages(1)) == 1
        finally:
            other.stop()
    finally:
        sink.stop()


def test_plaintext_injected_after_starttls_is_discarded(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    _, ca, ca_key = make_ca(certs)
    cert, key = make_server_cert(certs, ca, ca_key, "peer.example.test")
    peer = AuthPeer(cert=cert, key=key, inject=b"250-injected\r\n250 2.0.0 Ok: queued as FAKE\r\n")
    try:
        config = make_config(tmp_path, smtp_tls_security_level="encrypt")
        [statuses] = run_agent(config, [make_request(peer.nexthop, ["b@example.test"])])
        s = statuses[0]
        assert s.action is Action.DELIVERED and s.text == "250 2.0.0 Ok: queued as Q1", s.text
        after = [c for tls, c in peer.seen.commands if tls]
        assert after[0].startswith("EHLO ") and after[1].startswith("MAIL FROM:")
        assert all(not c.startswith("MAIL") for tls, c in peer.seen.commands if not tls)
    finally:
        peer.stop()
