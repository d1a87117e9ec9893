"""DNS restrictions against the loopback DNS stub: unknown names and domains, null MX, DNSBL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.config.load import Config
from mailhorn.smtpd.checks import SmtpdChecks
from mailhorn.smtpd.checks_dns import filter_matches, rbl_query_name
from mailhorn.smtpd.state import SmtpdState, Stage
from tests.dns.stub import DnsStub

ZONE = {
    ("mx.example", "MX"): ["10 mail.mx.example."],
    ("mail.mx.example", "A"): ["192.0.2.10"],
    ("aonly.example", "A"): ["192.0.2.11"],
    ("nullmx.example", "MX"): ["0 ."],
    ("helo.example", "A"): ["192.0.2.12"],
    ("9.2.0.192.zen.test", "A"): ["127.0.0.2"],
    ("9.2.0.192.zen.test", "TXT"): ['"listed, see https://zen.test/q?192.0.2.9"'],
    ("8.2.0.192.zen.test", "A"): ["127.0.0.10"],
    ("9.2.0.192.list.test", "A"): ["127.0.0.4"],
    ("spam.example.dbl.test", "A"): ["127.0.1.2"],
    ("9.2.0.192.white.test", "A"): ["127.0.0.2"],
}


@pytest.fixture(scope="module")
def stub() -> Iterator[DnsStub]:
    with DnsStub(ZONE, servfail={"broken.example", "7.2.0.192.zen.test"}) as s:
        yield s


def engine(stub: DnsStub, **params: str) -> SmtpdChecks:
    return SmtpdChecks(Config(overrides={
        "myhostname": "mx.example.test", "mydomain": "example.test", "compatibility_level": "3.6",
        "inet_interfaces": "127.0.0.1", "mynetworks": "127.0.0.0/8", "local_recipient_maps": "",
        "alias_maps": "", "smtpd_relay_restrictions": "", "dns_servers": stub.server, **params}))


def reply(eng: SmtpdChecks, **fields: object) -> str | None:
    values: dict[str, object] = {"client_addr": "192.0.2.9", "helo_name": "helo.example",
                                 "sender": "s@mx.example", "recipient": "u@mx.example", "instance": "1"}
    values.update(fields)
    result = asyncio.run(eng.check(Stage.RCPT, SmtpdState(**values)))  # type: ignore[arg-type]
    return str(result.reply) if result.reply else None


def test_unknown_sender_domain(stub: DnsStub) -> None:
    eng = engine(stub, smtpd_sender_restrictions="reject_unknown_sender_domain")
    assert reply(eng) is None
    assert reply(eng, sender="s@aonly.example") is None
    assert reply(eng, sender="s@nowhere.example") == \
        "450 4.1.8 <s@nowhere.example>: Sender address rejected: Domain not found"
    assert reply(eng, sender="s@nullmx.example") == \
        "550 5.7.27 <s@nullmx.example>: Sender address rejected: Domain nullmx.example does not accept mail (nullMX)"
    assert reply(eng, sender="") is None
    assert reply(eng, sender="s@mx.example.test") is None
    assert reply(eng, sender="s@[192.0.2.1]") is None
    five = engine(stub, smtpd_sender_restrictions="reject_unknown_sender_domain", unknown_address_reject_code="550")
    assert reply(five, sender="s@nowhere.example") == \
        "550 5.1.8 <s@nowhere.example>: Sender address rejected: Domain not found"


def test_temporary_failure_defers_only_if_permitted(stub: DnsStub) -> None:
    permit = engine(stub, smtpd_sender_restrictions="reject_unknown_sender_domain")
    assert reply(permit, sender="s@broken.example") == \
        "450 4.1.8 <s@broken.example>: Sender address rejected: Domain not found"
    rejected = engine(stub, smtpd_sender_restrictions="reject_unknown_sender_domain",
                      smtpd_recipient_restrictions="reject")
    assert reply(rejected, sender="s@broken.example") == \
        "554 5.7.1 <u@mx.example>: Recipient address rejected: Access denied"


def test_unknown_recipient_domain(stub: DnsStub) -> None:
    eng = engine(stub, smtpd_recipient_restrictions="reject_unknown_recipient_domain")
    assert reply(eng) is None
    assert reply(eng, recipient="u@nowhere.example") == \
        "450 4.1.2 <u@nowhere.example>: Recipient address rejected: Domain not found"
    assert reply(eng, recipient="u@nullmx.example") == \
        "556 5.1.10 <u@nullmx.example>: Recipient address rejected: Domain nullmx.example does not accept mail (nullMX)"


def test_unknown_helo_and_client(stub: DnsStub) -> None:
    eng = engine(stub, smtpd_helo_restrictions="reject_unknown_helo_hostname")
    assert reply(eng) is None
    assert reply(eng, helo_name="[192.0.2.9]") is None
    assert reply(eng, helo_name="nohost.example") == \
        "450 4.7.1 <nohost.example>: Helo command rejected: Host not found"
    client = engine(stub, smtpd_client_restrictions="reject_unknown_client_hostname")
    assert reply(client, client_name="host.example", client_name_status=0) is None
    assert reply(client, client_name_status=5) == \
        "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.9]"
    reverse = engine(stub, smtpd_client_restrictions="reject_unknown_reverse_client_hostname",
                     unknown_client_reject_code="550")
    assert reply(reverse, reverse_client_name_status=5) == \
        "550 5.7.25 Client host rejected: cannot find your reverse hostname, [192.0.2.9]"
    assert reply(reverse, reverse_client_name_status=4) == \
        "450 4.7.25 Client host rejected: cannot find your reverse hostname, [192.0.2.9]"


def test_rbl(stub: DnsStub, tmp_path: Path) -> None:
    eng = engine(stub, smtpd_client_restrictions="reject_rbl_client zen.test")
    assert reply(eng) == ("554 5.7.1 Service unavailable; Client host [192.0.2.9] blocked using zen.test; "
                          "listed, see https://zen.test/q?192.0.2.9")
    assert reply(eng, client_addr="192.0.2.8") == \
        "554 5.7.1 Service unavailable; Client host [192.0.2.8] blocked using zen.test"
    assert reply(eng, client_addr="192.0.2.1") is None
    assert reply(eng, client_addr="192.0.2.7") is None
    filtered = engine(stub, smtpd_client_restrictions="reject_rbl_client zen.test=127.0.0.[2..5]")
    assert reply(filtered, client_addr="192.0.2.8") is None
    assert reply(filtered) is not None
    replies = tmp_path / "rbl_replies"
    replies.write_text("list.test 450 4.7.1 $client_address is listed at $rbl_domain\n")
    custom = engine(stub, smtpd_client_restrictions="reject_rbl_client list.test",
                    rbl_reply_maps=f"texthash:{replies}")
    assert reply(custom) == "450 4.7.1 192.0.2.9 is listed at list.test"
    code = engine(stub, smtpd_client_restrictions="reject_rbl_client list.test", maps_rbl_reject_code="550")
    assert reply(code) == "550 5.7.1 Service unavailable; Client host [192.0.2.9] blocked using list.test"


def test_rhsbl_and_dnswl(stub: DnsStub) -> None:
    eng = engine(stub, smtpd_sender_restrictions="reject_rhsbl_sender dbl.test")
    assert reply(eng, sender="x@spam.example") == \
        "554 5.7.1 Service unavailable; Sender address [spam.example] blocked using dbl.test"
    assert reply(eng) is None
    helo = engine(stub, smtpd_helo_restrictions="reject_rhsbl_helo dbl.test")
    assert reply(helo, helo_name="spam.example") == \
        "554 5.7.1 Service unavailable; Helo command [spam.example] blocked using dbl.test"
    client = engine(stub, smtpd_client_restrictions="reject_rhsbl_client dbl.test")
    assert reply(client, client_name="spam.example") == \
        "554 5.7.1 Service unavailable; Client host [spam.example] blocked using dbl.test"
    white = engine(stub, smtpd_client_restrictions="permit_dnswl_client white.test, reject_rbl_client zen.test")
    assert reply(white) is None
    assert reply(white, client_addr="192.0.2.8") is not None


def test_mx_access(stub: DnsStub) -> None:
    eng = engine(stub, smtpd_sender_restrictions="check_sender_mx_access inline:{ {192.0.2.10=REJECT bad mx} }")
    assert reply(eng) == "554 5.7.1 <s@mx.example>: Sender address rejected: bad mx"
    assert reply(eng, sender="s@aonly.example") is None


def test_helpers() -> None:
    assert rbl_query_name("192.0.2.9", "zen.test") == "9.2.0.192.zen.test"
    assert rbl_query_name("2001:db8::1", "z.test") == "1." + "0." * 23 + "8.b.d.0.1.0.0.2.z.test"
    assert filter_matches("127.0.0.2", "127.0.0.2")
    assert not filter_matches("127.0.0.2", "127.0.0.3")
    assert filter_matches("127.0.0.[2;4..6]", "127.0.0.5")
    assert not filter_matches("127.0.0.[2;4..6]", "127.0.0.3")
