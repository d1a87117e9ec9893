"""net/mask semantics of match lists compared with the real Postfix.

Postfix's match_hostaddr and its cidr: tables share one CIDR matcher, so
each address pattern of a list must match exactly the addresses that the
real ``postmap -q`` finds in a cidr: table holding that pattern. The
addresses include other spellings of the same address (``0:0::1``), mapped
IPv4 (``::ffff:127.0.0.1``), upper-case hex, and the network edges.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhorn.config.load import Config
from mailhorn.tables.matchlist import AddrMatchList
from tests.conftest import run_postfix

PATTERNS = [
    "127.0.0.0/8",
    "192.168.1.0/28",
    "10.1.2.3",
    "0.0.0.0/0",
    "[::1]/128",
    "[::1]",
    "[::ffff:127.0.0.0]/104",
    "[2001:db8::]/32",
    "[fe80::1]",
    "[::]/0",
    "[2001:db8::/48]",
]

ADDRESSES = [
    "127.0.0.1", "127.255.255.255", "128.0.0.0", "126.255.255.255", "192.168.1.0", "192.168.1.15",
    "192.168.1.16", "10.1.2.3", "10.1.2.4", "0.0.0.0", "255.255.255.255", "::1", "0:0:0:0:0:0:0:1",
    "0::1", "::2", "::", "::ffff:127.0.0.1", "::ffff:128.0.0.1", "::ffff:7f00:1", "2001:db8::1",
    "2001:DB8:FFFF:FFFF::1", "2001:db9::1", "2001:db8:0:1::1", "FE80::1", "fe80:0::1", "2001:db8::",
]


@pytest.mark.oracle
@pytest.mark.parametrize("pattern", PATTERNS)
def test_address_patterns_match_like_cidr_tables(pattern: str, tmp_path: Path) -> None:
    confdir = tmp_path / "postfix"
    confdir.mkdir()
    (confdir / "main.cf").write_text("")
    table = tmp_path / "nets.cidr"
    table.write_text(f"{pattern} YES\n")
    result = run_postfix("postmap", "-c", str(confdir), "-q", "-", f"cidr:{table}", stdin="\n".join(ADDRESSES) + "\n")
    assert result.returncode in (0, 1), result.stderr
    assert result.stderr == ""
    postfix = {line.split("\t")[0] for line in result.stdout.splitlines()}
    lst = AddrMatchList("mynetworks", pattern, Config())
    mailhorn = {addr for addr in ADDRESSES if lst.match(addr)}
    assert mailhorn == postfix
    assert postfix or pattern == "[::ffff:127.0.0.0]/104"
