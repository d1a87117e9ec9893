"""Client names: forward-confirmed reverse DNS through the resolver and a loopback DNS stub."""

from __future__ import annotations

from pathlib import Path

from tests.dns.stub import DnsStub
from tests.smtpd.server_harness import SmtpdServer

ZONE = {
    ("1.0.0.127.in-addr.arpa", "PTR"): ["localhost."],
    ("localhost", "A"): ["127.0.0.1"],
    ("2.0.0.127.in-addr.arpa", "PTR"): ["spoofed.example."],
    ("spoofed.example", "A"): ["192.0.2.1"],
    ("4.0.0.127.in-addr.arpa", "PTR"): ["slow.example."],
}


def test_forward_confirmed_names(tmp_path: Path) -> None:
    with DnsStub(ZONE, servfail={"3.0.0.127.in-addr.arpa", "slow.example"}) as stub:
        srv = SmtpdServer(tmp_path, {"smtpd_peername_lookup": "yes", "dns_servers": stub.server})
        try:
            for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
                c = srv.client(source)
                assert c.reply()[0].startswith("220 ")
                c.cmd("QUIT")
            srv.wait_log(r"^disconnect from localhost\[127\.0\.0\.1\] quit=1 commands=1$")
            # A PTR name whose address differs is not the client's name.
            srv.wait_log(r"^connect from unknown\[127\.0\.0\.2\]$")
            srv.wait_log(r"^connect from unknown\[127\.0\.0\.3\]$")
            srv.wait_log(r"^connect from unknown\[127\.0\.0\.4\]$")
            srv.wait_log(r"^connect from unknown\[127\.0\.0\.5\]$")
        finally:
            srv.stop()
        assert ("1.0.0.127.in-addr.arpa", "PTR") in stub.queries


def test_lookups_off(tmp_path: Path) -> None:
    with DnsStub(ZONE) as stub:
        srv = SmtpdServer(tmp_path, {"smtpd_peername_lookup": "no", "dns_servers": stub.server})
        try:
            c = srv.client()
            c.reply()
            c.cmd("QUIT")
            srv.wait_log(r"^connect from unknown\[127\.0\.0\.1\]$")
        finally:
            srv.stop()
        assert stub.queries == []
