"""The resolver against the loopback DNS stub: answers, NXDOMAIN, SERVFAIL, null MX."""

from __future__ import annotations

import asyncio

import pytest

from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.dns.resolver import DnsNotFound, DnsRetry, MxRecord, Resolver, parse_servers
from tests.dns.stub import DnsStub

ZONE = {
    ("host.test", "A"): ["192.0.2.1"],
    ("host.test", "AAAA"): ["2001:db8::1"],
    ("mx.test", "MX"): ["20 b.mx.test.", "10 a.mx.test."],
    ("nullmx.test", "MX"): ["0 ."],
    ("txt.test", "TXT"): ['"part one " "part two"'],
    ("1.2.0.192.in-addr.arpa", "PTR"): ["host.test."],
    ("empty.test", "A"): [],
}


def resolver(stub: DnsStub) -> Resolver:
    return Resolver.from_config(Config(overrides={"dns_servers": stub.server}))


def test_lookups() -> None:
    with DnsStub(ZONE) as stub:
        r = resolver(stub)

        async def go() -> None:
            assert await r.a("host.test") == ["192.0.2.1"]
            assert await r.aaaa("host.test") == ["2001:db8::1"]
            assert sorted(await r.host_addresses("host.test")) == ["192.0.2.1", "2001:db8::1"]
            assert await r.mx("mx.test") == [MxRecord(10, "a.mx.test"), MxRecord(20, "b.mx.test")]
            assert (await r.mx("nullmx.test"))[0].is_null
            assert await r.txt("txt.test") == ["part one part two"]
            assert await r.ptr("192.0.2.1") == ["host.test"]
            assert await r.reverse_names("192.0.2.9") == []
            assert await r.addresses("nowhere.test") == []
            with pytest.raises(DnsNotFound):
                await r.a("nowhere.test")
            with pytest.raises(DnsNotFound):
                await r.mx("host.test")
            with pytest.raises(DnsNotFound):
                await r.a("empty.test")

        asyncio.run(go())


def test_servfail_is_temporary() -> None:
    with DnsStub(ZONE, servfail={"bad.test"}) as stub:
        r = resolver(stub)

        async def go() -> None:
            with pytest.raises(DnsRetry):
                await r.a("bad.test")
            with pytest.raises(TimeoutError):
                await r.addresses("bad.test")

        asyncio.run(go())


def test_parse_servers() -> None:
    assert parse_servers(["127.0.0.1", "[::1]:5353"]) == [("127.0.0.1", 53), ("::1", 5353)]
    for bad in ("[127.0.0.1", "[127.0.0.1]:x", "name.test", "[::1]:99999"):
        with pytest.raises(ConfigError):
            parse_servers([bad])
