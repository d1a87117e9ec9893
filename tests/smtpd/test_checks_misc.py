"""TLS, SASL, bounce and backup-MX restrictions."""

from __future__ import annotations

import asyncio

from mailhorn.config.load import Config
from mailhorn.smtpd.checks import SmtpdChecks
from mailhorn.smtpd.state import SmtpdState, Stage
from tests.dns.stub import DnsStub

FP = "5D:7A:1B:3C:44:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:01:02:03:04:05:06:07:08:09:0A:0B"


def engine(**params: str) -> SmtpdChecks:
    return SmtpdChecks(Config(overrides={
        "myhostname": "mx.example.test", "mydomain": "example.test", "compatibility_level": "3.6",
        "inet_interfaces": "127.0.0.1", "mynetworks": "127.0.0.0/8", "local_recipient_maps": "",
        "alias_maps": "", "smtpd_relay_restrictions": "", "dns_servers": "[127.0.0.1]:1", **params}))


def reply(eng: SmtpdChecks, stage: Stage = Stage.RCPT, **fields: object) -> str | None:
    values: dict[str, object] = {"client_addr": "192.0.2.9", "helo_name": "client.example.com",
                                 "sender": "s@example.com", "recipient": "u@elsewhere.test", "instance": "1"}
    values.update(fields)
    result = asyncio.run(eng.check(stage, SmtpdState(**values)))  # type: ignore[arg-type]
    return str(result.reply) if result.reply else None


def test_tls_client_certificates() -> None:
    eng = engine(relay_clientcerts=f"inline:{{{FP}=ok}}",
                 smtpd_recipient_restrictions="permit_tls_clientcerts, reject_unauth_destination")
    assert reply(eng, tls_peer_fingerprint=FP) is None
    assert reply(eng, tls_peer_fingerprint="00:11") == "554 5.7.1 <u@elsewhere.test>: Relay access denied"
    assert reply(eng) == "554 5.7.1 <u@elsewhere.test>: Relay access denied"
    every = engine(smtpd_recipient_restrictions="permit_tls_all_clientcerts, reject")
    assert reply(every, tls_peer_fingerprint="00:11") is None
    ccert = engine(smtpd_recipient_restrictions=f"check_ccert_access inline:{{{FP}=REJECT}}")
    assert reply(ccert, tls_peer_fingerprint=FP) == \
        "554 5.7.1 <unknown[192.0.2.9]>: Client certificate rejected: Access denied"


def test_sasl_and_plaintext() -> None:
    eng = engine(smtpd_recipient_restrictions="check_sasl_access inline:{mallory=REJECT}, permit")
    assert reply(eng, sasl_username="mallory") == "554 5.7.1 <mallory>: SASL login name rejected: Access denied"
    assert reply(eng, sasl_username="alice") is None
    plain = engine(smtpd_recipient_restrictions="reject_plaintext_session")
    assert reply(plain) == "450 4.7.1 Session encryption is required"
    assert reply(plain, tls_protocol="TLSv1.3") is None


def test_multi_recipient_bounce() -> None:
    eng = engine(smtpd_recipient_restrictions="reject_multi_recipient_bounce",
                 smtpd_data_restrictions="reject_multi_recipient_bounce")
    assert reply(eng, sender="", recipient_count=0) is None
    assert reply(eng, sender="", recipient_count=1) == \
        "550 5.5.3 <u@elsewhere.test>: Recipient address rejected: Multi-recipient bounce"
    assert reply(eng, Stage.DATA, sender="", recipient_count=1) is None
    assert reply(eng, Stage.DATA, sender="", recipient_count=2) == \
        "550 5.5.3 <DATA>: Data command rejected: Multi-recipient bounce"


def test_permit_mx_backup() -> None:
    zone = {
        ("backup.test", "MX"): ["10 primary.backup.test.", "20 mx.example.test."],
        ("primary.backup.test", "A"): ["192.0.2.50"],
        ("mx.example.test", "A"): ["127.0.0.1"],
        ("primary.test", "MX"): ["10 mx.example.test."],
        ("other.test", "MX"): ["10 mail.other.test."],
        ("mail.other.test", "A"): ["192.0.2.60"],
    }
    with DnsStub(zone) as stub:
        eng = engine(dns_servers=stub.server, smtpd_recipient_restrictions="permit_mx_backup, reject")
        assert reply(eng, recipient="u@backup.test") is None
        assert reply(eng, recipient="u@mx.example.test") is None
        denied = "554 5.7.1 <{0}>: Recipient address rejected: Access denied"
        assert reply(eng, recipient="u@primary.test") == denied.format("u@primary.test")
        assert reply(eng, recipient="u@other.test") == denied.format("u@other.test")
        limited = engine(dns_servers=stub.server, permit_mx_backup_networks="198.51.100.0/24",
                         smtpd_recipient_restrictions="permit_mx_backup, reject")
        assert reply(limited, recipient="u@backup.test") == denied.format("u@backup.test")
