"""The classic open-relay probes, through the real restriction engine.

Sixteen recipient forms that tricked mail servers into relaying (percent
hack, quoted local parts, source routes, bang paths, doubled @, domain
literals of the server itself), sent from 127.0.0.2, outside
``mynetworks``: each must be refused with ``554 5.7.1 <...>: Relay access
denied``.  From 127.0.0.1, inside ``mynetworks``, the same are accepted
(``permit_mynetworks`` before ``reject_unauth_destination``, as in the
seeds).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.conftest import require
from tests.smtpd.server_harness import SmtpdServer

LOC = "example.test"
EXT = "relay.example"
LIT = "[127.0.0.1]"
PROBES = [
    f"r@{EXT}",
    f"r%{EXT}@{LOC}",
    f"r%{EXT}@{LIT}",
    f'"r@{EXT}"',
    f'"r%{EXT}"',
    f"r@{EXT}@{LOC}",
    f'"r@{EXT}"@{LOC}',
    f'"r@{EXT}"@{LIT}',
    f"r@{EXT}@{LIT}",
    f"@{LOC}:r@{EXT}",
    f"@{LIT}:r@{EXT}",
    f"{EXT}!r",
    f"{EXT}!r@{LOC}",
    f"{EXT}!r@{LIT}",
    f"r%{EXT}",
    f"{LOC}!{EXT}!r",
]
SETTINGS = {
    "mydomain": LOC,
    "myorigin": LOC,
    "mydestination": f"{LOC}, mx.{LOC}",
    "mynetworks": "127.0.0.1/32",
    "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
    "local_recipient_maps": "",
}


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    try:
        importlib.import_module("mailhorn.smtpd.checks")
        usable = True
    except ImportError:
        usable = False
    require(usable, "the restriction engine mailhorn.smtpd.checks is not available")
    srv = SmtpdServer(tmp_path, SETTINGS, real_checks=True)
    yield srv
    srv.stop()


def test_sixteen_distinct_probes() -> None:
    assert len(set(PROBES)) == 16


@pytest.mark.parametrize("probe", PROBES)
def test_probe_refused_outside_mynetworks(server: SmtpdServer, probe: str) -> None:
    c = server.client("127.0.0.2")
    c.reply()
    c.cmd("EHLO probe.example")
    assert c.cmd("MAIL FROM:<a@example.org>") == ["250 2.1.0 Ok"]
    reply = c.cmd(f"RCPT TO:<{probe}>")
    assert len(reply) == 1
    assert reply[0].startswith("554 5.7.1 <") and reply[0].endswith(">: Relay access denied"), reply
    assert c.cmd("DATA") == ["554 5.5.1 Error: no valid recipients"]
    server.wait_log(r"^NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.2\]: 554 5\.7\.1 <.*>: Relay access"
                    r" denied; from=<a@example\.org> to=<.*> proto=ESMTP helo=<probe\.example>$")


@pytest.mark.parametrize("probe", PROBES)
def test_probe_accepted_from_mynetworks(server: SmtpdServer, probe: str) -> None:
    c = server.client("127.0.0.1")
    c.reply()
    c.cmd("EHLO trusted.example")
    c.cmd("MAIL FROM:<a@example.org>")
    assert c.cmd(f"RCPT TO:<{probe}>") == ["250 2.1.5 Ok"]
