"""cidr: tables in-process: address forms, families, first match, IF blocks."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mailhorn.config.load import Config
from mailhorn.tables.base import TableConfigError
from mailhorn.tables.cidr import CidrTable, format_address, parse_address
from mailhorn.tables.registry import open_table


def table(tmp_path: Path, text: str) -> CidrTable:
    path = tmp_path / "t.cidr"
    path.write_text(text)
    opened = open_table(f"cidr:{path}", Config())
    assert isinstance(opened, CidrTable)
    return opened


def test_first_match_wins(tmp_path: Path) -> None:
    t = table(tmp_path, "192.168.1.1 OK\n192.168.0.0/16 REJECT\n2001:db8::1 OK6\n2001:db8::/32 REJECT6\n")
    assert t.lookup("192.168.1.1") == "OK"
    assert t.lookup("192.168.9.9") == "REJECT"
    assert t.lookup("2001:db8::1") == "OK6"
    assert t.lookup("2001:DB8::0:2") == "REJECT6"
    assert t.lookup("10.0.0.1") is None


@pytest.mark.parametrize(
    "key", ["[192.168.1.1]", "192.168.1", "010.1.1.1", "fe80::1%eth0", "host.example", "", " 10.1.1.1", "1.2.3.4/32"]
)
def test_keys_that_are_not_addresses_are_not_found(tmp_path: Path, key: str) -> None:
    t = table(tmp_path, "0.0.0.0/0 any4\n::/0 any6\n")
    assert t.lookup(key) is None


def test_families_do_not_mix(tmp_path: Path) -> None:
    t = table(tmp_path, "!10.0.0.0/8 not-ten\nif 1.0.0.0/8\n::/0 never\nendif\n")
    assert t.lookup("::ffff:10.1.1.1") is None  # IPv4-mapped is IPv6
    assert t.lookup("::1") is None
    assert t.lookup("11.1.1.1") == "not-ten"


def test_if_blocks_nest(tmp_path: Path) -> None:
    t = table(tmp_path, "if 10.0.0.0/8\nif !10.1.0.0/16\n10.0.0.0/8 ten-not-ten-one\nendif\nendif\n0.0.0.0/0 rest\n")
    assert t.lookup("10.2.0.1") == "ten-not-ten-one"
    assert t.lookup("10.1.0.1") == "rest"


def test_addresses_read_and_written_as_inet_pton_and_inet_ntop() -> None:
    assert parse_address("::ffff:1.2.3.4") == (socket.AF_INET6, 0xFFFF01020304)
    assert parse_address("1.2.3.04") is None
    assert format_address(socket.AF_INET6, 0xFFFF00000000) == "::ffff:0.0.0.0"
    assert format_address(socket.AF_INET6, 0x20010DB8000000010000000000000000) == "2001:db8:0:1::"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TableConfigError, match="No such file or directory"):
        open_table(f"cidr:{tmp_path}/none", Config())


def test_inline_cidr() -> None:
    t = open_table("cidr:{ {1.2.3.0/24 net}, {[::1] loop} }", Config())
    assert t.lookup("1.2.3.9") == "net"
    assert t.lookup("::1") == "loop"
