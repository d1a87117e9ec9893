"""Relay control: the open-relay probe forms, decided as Postfix decides them.

Each probe hides a remote destination (``elsewhere.test``) behind a local
one (``mx.example.test`` or ``[127.0.0.1]``) with sender-specified routing:
percent hack, quoted local parts with ``@``, source routes, bang paths.
From a client outside ``mynetworks`` every probe must be refused with
``554 5.7.1 <probe>: Relay access denied``; from inside, accepted.  With the
real Postfix available, its replies for the same probes must be the same.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile

import pytest

from mailhorn.config.load import Config, load
from mailhorn.smtpd.checks import SmtpdChecks
from mailhorn.smtpd.checks_resolve import AddressClass, Resolver
from mailhorn.smtpd.state import SmtpdState, Stage
from tests.conftest import require
from tests.smtpd.test_checks_oracle import LivePostfix, _usable, internal

PROBES = [
    "r@elsewhere.test",
    "r%elsewhere.test@mx.example.test",
    "r%elsewhere.test@[127.0.0.1]",
    '"r@elsewhere.test"',
    '"r%elsewhere.test"',
    "r%elsewhere.test",
    '"r@elsewhere.test"@mx.example.test',
    '"r@elsewhere.test"@[127.0.0.1]',
    '"r%elsewhere.test"@mx.example.test',
    "@mx.example.test:r@elsewhere.test",
    "@[127.0.0.1]:r@elsewhere.test",
    "elsewhere.test!r",
    "elsewhere.test!r@mx.example.test",
    "elsewhere.test!r@[127.0.0.1]",
    '"elsewhere.test!r"@mx.example.test',
    "r%elsewhere.test%mx.example.test@mx.example.test",
]

MAIN_CF = """\
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
local_recipient_maps =
"""


def _config() -> Config:
    return Config(overrides={
        "myhostname": "mx.example.test", "mydomain": "example.test", "inet_interfaces": "127.0.0.1",
        "mynetworks": "127.0.0.0/8", "compatibility_level": "3.6",
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
        "local_recipient_maps": "", "alias_maps": "", "dns_servers": "[127.0.0.1]:1",
    })


async def _decide(checks: SmtpdChecks, addr: str, probe: str) -> str | None:
    st = SmtpdState(client_addr=addr, helo_name="client.example.com", sender="s@example.com",
                    recipient=internal(probe), instance="1")
    result = await checks.check(Stage.RCPT, st)
    return str(result.reply) if result.reply else None


def test_probes_refused_from_outside_accepted_from_inside() -> None:
    checks = SmtpdChecks(_config())
    for probe in PROBES:
        expected = f"554 5.7.1 <{internal(probe)}>: Relay access denied"
        assert asyncio.run(_decide(checks, "192.0.2.9", probe)) == expected
        assert asyncio.run(_decide(checks, "127.0.0.2", probe)) is None
    for local in ("r@mx.example.test", "r@[127.0.0.1]", '"r x"@mx.example.test', "r"):
        assert asyncio.run(_decide(checks, "192.0.2.9", local)) is None, local


def test_routing_switches() -> None:
    """allow_percent_hack = no and swap_bangpath = no make those forms plain local parts."""
    config = _config().with_overrides({"allow_percent_hack": "no", "swap_bangpath": "no"})
    resolver = Resolver(config)
    assert resolver.resolve("r%elsewhere.test@mx.example.test").klass is AddressClass.LOCAL
    assert resolver.resolve("elsewhere.test!r@mx.example.test").klass is AddressClass.LOCAL
    assert resolver.resolve("r@elsewhere.test@mx.example.test").klass is AddressClass.DEFAULT
    routed = Resolver(_config().with_overrides({"relay_domains": "elsewhere.test"}))
    res = routed.resolve("r%elsewhere.test@mx.example.test")
    assert res.klass is AddressClass.RELAY and res.routed and not res.authorized
    assert routed.resolve("r@elsewhere.test").authorized


@pytest.mark.oracle
def test_probes_as_postfix_decides() -> None:
    reason = _usable()
    require(reason is None, reason or "")
    live = LivePostfix(MAIN_CF, {})
    conf = tempfile.mkdtemp(prefix="mailhorn-relay-conf-")
    try:
        outside = live.session(["XCLIENT ADDR=192.0.2.9 NAME=[UNAVAILABLE]", "HELO client.example.com",
                                "MAIL FROM:<s@example.com>", *[f"RCPT TO:<{p}>" for p in PROBES]])[3:]
        inside = live.session(["HELO client.example.com", "MAIL FROM:<s@example.com>",
                               *[f"RCPT TO:<{p}>" for p in PROBES]])[2:]
        shutil.copy(os.path.join(live.conf, "main.cf"), conf)
    finally:
        live.close()
    with open(os.path.join(conf, "main.cf"), "a") as f:
        f.write("dns_servers = [127.0.0.1]:1\n")
    try:
        checks = SmtpdChecks(load(conf))
        for probe, theirs_out, theirs_in in zip(PROBES, outside, inside):
            assert asyncio.run(_decide(checks, "192.0.2.9", probe)) == theirs_out, probe
            assert theirs_in.startswith("250 "), (probe, theirs_in)
            assert asyncio.run(_decide(checks, "127.0.0.1", probe)) is None
    finally:
        shutil.rmtree(conf, ignore_errors=True)
