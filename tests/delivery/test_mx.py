"""MX routing through a DNS stub on loopback, delivering to smtp-sink on 127.0.0.3."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.delivery.mx import LookupPolicy, Nexthop, NotFound, find_servers, parse_nexthop
from mailhorn.delivery.request import Action
from mailhorn.dns.resolver import Resolver
from tests.delivery.smtp_helpers import SmtpSink, make_config, make_request, run_agent
from tests.dns.stub import DnsStub

ZONE = {
    ("two.test", "MX"): ["10 mx1.two.test.", "20 mx2.two.test."],
    ("mx1.two.test", "A"): ["127.0.0.4"],
    ("mx2.two.test", "A"): ["127.0.0.3"],
    ("pref.test", "MX"): ["10 mx2.two.test.", "20 mx1.two.test."],
    ("null.test", "MX"): ["0 ."],
    ("three.test", "MX"): ["10 mx1.two.test.", "20 down.three.test.", "30 mx2.two.test."],
    ("down.three.test", "A"): ["127.0.0.6"],
    ("amx.test", "A"): ["127.0.0.3"],
    ("nomxaddr.test", "MX"): ["10 missing.nomxaddr.test."],
    ("nomxaddr.test", "A"): ["127.0.0.9"],
    ("equal.test", "MX"): ["10 e1.equal.test.", "10 e2.equal.test.", "10 e3.equal.test.", "20 e4.equal.test."],
    ("e1.equal.test", "A"): ["127.0.1.1"],
    ("e2.equal.test", "A"): ["127.0.1.2"],
    ("e3.equal.test", "A"): ["127.0.1.3"],
    ("e4.equal.test", "A"): ["127.0.1.4"],
}


def _stub() -> DnsStub:
    # The stub binds UDP and then TCP on the same port; another process may hold the TCP one.
    for _ in range(9):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            try:
                return DnsStub(ZONE, servfail={"servfail.test"})
            except OSError:
                gc.collect()  # the half-made stub's sockets, closed here, quietly
    return DnsStub(ZONE, servfail={"servfail.test"})


@pytest.fixture
def dns() -> Iterator[DnsStub]:
    with _stub() as stub:
        yield stub


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    s = SmtpSink(tmp_path)
    yield s
    s.stop()


def test_preferred_mx_is_used(tmp_path: Path, dns: DnsStub, sink: SmtpSink) -> None:
    config = make_config(tmp_path, dns_servers=dns.server)
    [statuses] = run_agent(config, [make_request(f"pref.test:{sink.port}", ["u@pref.test"])])
    assert statuses[0].action is Action.DELIVERED
    assert statuses[0].relay == f"mx2.two.test[127.0.0.3]:{sink.port}"
    assert ("pref.test", "MX") in dns.queries
    assert len(sink.wait_messages(1)) == 1


def test_refusing_preferred_mx_falls_back_to_the_next(tmp_path: Path, dns: DnsStub, sink: SmtpSink) -> None:
    config = make_config(tmp_path, dns_servers=dns.server)
    [statuses] = run_agent(config, [make_request(f"two.test:{sink.port}", ["u@two.test"])])
    assert statuses[0].action is Action.DELIVERED
    assert statuses[0].relay == f"mx2.two.test[127.0.0.3]:{sink.port}"
    assert len(sink.wait_messages(1)) == 1


def test_refused_connections_do_not_use_up_the_session_limit(tmp_path: Path, dns: DnsStub,
                                                             sink: SmtpSink) -> None:
    config = make_config(tmp_path, dns_servers=dns.server, smtp_mx_session_limit="1", smtp_randomize_addresses="no")
    [statuses] = run_agent(config, [make_request(f"three.test:{sink.port}", ["u@three.test"])])
    assert statuses[0].action is Action.DELIVERED
    assert statuses[0].relay == f"mx2.two.test[127.0.0.3]:{sink.port}"


def test_all_mx_refusing_defers_with_the_last_error(tmp_path: Path, dns: DnsStub, sink: SmtpSink) -> None:
    config = make_config(tmp_path, dns_servers=dns.server)
    port = sink.port + 0
    sink.stop()
    [statuses] = run_agent(config, [make_request(f"two.test:{port}", ["u@two.test"])])
    s = statuses[0]
    assert s.action is Action.DEFERRED and s.dsn == "4.4.1"
    assert s.text == f"connect to mx2.two.test[127.0.0.3]:{port}: Connection refused"


def test_no_mx_uses_the_address_record(tmp_path: Path, dns: DnsStub, sink: SmtpSink) -> None:
    config = make_config(tmp_path, dns_servers=dns.server)
    [statuses] = run_agent(config, [make_request(f"amx.test:{sink.port}", ["u@amx.test"])])
    assert statuses[0].action is Action.DELIVERED
    assert statuses[0].relay == f"amx.test[127.0.0.3]:{sink.port}"


def test_null_mx_bounces(tmp_path: Path, dns: DnsStub) -> None:
    config = make_config(tmp_path, dns_servers=dns.server)
    [statuses] = run_agent(config, [make_request("null.test", ["u@null.test"])])
    s = statuses[0]
    assert s.action is Action.BOUNCED and s.dsn == "5.1.10"
    assert s.text == "Domain null.test does not accept mail (nullMX)"
    assert s.relay == "none"


def test_nxdomain_bounces(tmp_path: Path, dns: DnsStub) -> None:
    config = make_config(tmp_path, dns_servers=dns.server)
    [statuses] = run_agent(config, [make_request("nx.test", ["u@nx.test"])])
    s = statuses[0]
    assert s.action is Action.BOUNCED and s.dsn == "5.4.4"
    assert s.text == "Host or domain name not found. Name service error for name=nx.test type=MX: Host not found"


def test_servfail_defers(tmp_path: Path, dns: DnsStub) -> None:
    config = make_config(tmp_path, dns_servers=dns.server)
    [statuses] = run_agent(config, [make_request("servfail.test", ["u@servfail.test"])])
    s = statuses[0]
    assert s.action is Action.DEFERRED and s.dsn == "4.4.3"
    assert s.text == ("Host or domain name not found. Name service error for name=servfail.test type=MX: "
                      "Host not found, try again")


def test_servfail_tries_the_fallback_relay(tmp_path: Path, dns: DnsStub, sink: SmtpSink) -> None:
    config = make_config(tmp_path, dns_servers=dns.server, smtp_fallback_relay=sink.nexthop)
    [statuses] = run_agent(config, [make_request("servfail.test", ["u@servfail.test"])])
    assert statuses[0].action is Action.DELIVERED
    assert statuses[0].relay == f"127.0.0.3[127.0.0.3]:{sink.port}"


def test_mx_host_without_address_bounces(tmp_path: Path, dns: DnsStub) -> None:
    config = make_config(tmp_path, dns_servers=dns.server, inet_protocols="ipv4")
    [statuses] = run_agent(config, [make_request("nomxaddr.test", ["u@nomxaddr.test"])])
    s = statuses[0]
    assert s.action is Action.BOUNCED and s.dsn == "5.4.4"
    assert s.text == ("Host or domain name not found. Name service error for name=missing.nomxaddr.test type=A: "
                      "Host not found")


def test_bracketed_host_skips_mx(tmp_path: Path, dns: DnsStub, sink: SmtpSink) -> None:
    config = make_config(tmp_path, dns_servers=dns.server)
    [statuses] = run_agent(config, [make_request(f"[mx2.two.test]:{sink.port}", ["u@two.test"])])
    assert statuses[0].action is Action.DELIVERED
    assert ("mx2.two.test", "MX") not in dns.queries and ("mx2.two.test", "A") in dns.queries


def test_equal_preferences_are_shuffled_and_ordered(dns: DnsStub) -> None:
    resolver = Resolver([("127.0.0.1", dns.port)])
    hop = parse_nexthop("equal.test", 25)
    seen_first: set[str] = set()
    for _ in range(40):
        servers = asyncio.run(find_servers(resolver, hop, LookupPolicy(ipv6=False, address_limit=0)))
        assert [s.preference for s in servers] == [10, 10, 10, 20]
        assert servers[-1].name == "e4.equal.test"
        seen_first.add(servers[0].name)
    assert len(seen_first) > 1
    fixed = asyncio.run(find_servers(resolver, hop, LookupPolicy(ipv6=False, randomize=False, address_limit=2)))
    assert [s.name for s in fixed] == ["e1.equal.test", "e2.equal.test"]


@pytest.mark.parametrize(("text", "expected"), [
    ("example.com", Nexthop("example.com", 25, True, False, "example.com")),
    ("example.com:2525", Nexthop("example.com", 2525, True, False, "example.com:2525")),
    ("[mail.example.com]", Nexthop("mail.example.com", 25, False, False, "[mail.example.com]")),
    ("[mail.example.com]:submission", Nexthop("mail.example.com", 587, False, False, "[mail.example.com]:submission")),
    ("[1.2.3.4]:2025", Nexthop("1.2.3.4", 2025, False, False, "[1.2.3.4]:2025")),
    ("[ipv6:2001:db8::1]:26", Nexthop("2001:db8::1", 26, False, False, "[ipv6:2001:db8::1]:26")),
    ("inet:mail.example.com:24", Nexthop("mail.example.com", 24, False, False, "inet:mail.example.com:24")),
    ("unix:/run/dovecot/lmtp", Nexthop("/run/dovecot/lmtp", 0, False, True, "unix:/run/dovecot/lmtp")),
])
def test_parse_nexthop(text: str, expected: Nexthop) -> None:
    assert parse_nexthop(text, 25) == expected


def test_lmtp_never_looks_up_mx() -> None:
    assert parse_nexthop("mail.example.com:24", 24, lmtp=True).mx is False
    with pytest.raises(ValueError):
        parse_nexthop("[mail.example.com", 25)
    assert isinstance(NotFound("5.4.4", "x"), Exception)


def test_parse_nexthop_relative_unix_path_under_base() -> None:
    hop = parse_nexthop("unix:private/dovecot-lmtp", 24, lmtp=True, base="/var/spool/postfix/")
    assert hop.unix and hop.host == "/var/spool/postfix/private/dovecot-lmtp"
    assert parse_nexthop("unix:/run/lmtp", 24, lmtp=True, base="/var/spool/postfix").host == "/run/lmtp"
