"""Host-dependent defaults against the installed Postfix's ``postconf``.

``mydomain`` must follow a ``myhostname`` set in main.cf, and ``mynetworks``
must list this host's networks in each ``mynetworks_style`` exactly as the
real ``postconf -c DIR`` computes them on the same machine.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

from mailhorn.config import derived
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import load
from tests.conftest import require, run_postfix

pytestmark = pytest.mark.oracle


def postconf_value(confdir: Path, *args: str) -> str:
    """The value the real postconf prints for one parameter."""
    result = run_postfix("postconf", "-c", str(confdir), *args)
    require(result.returncode == 0, f"postconf failed: {result.stderr}")
    name, sep, value = result.stdout.rstrip("\n").partition(" =")
    assert sep, result.stdout
    return value[1:] if value.startswith(" ") else value


@pytest.mark.parametrize(
    "hostname",
    ["mail.example.com", "a.b.c.example.org", "single", "MX1.Example.NET"],
)
def test_mydomain_follows_myhostname(confdir: Path, hostname: str) -> None:
    (confdir / "main.cf").write_text(f"myhostname = {hostname}\n")
    expected = postconf_value(confdir, "-x", "mydomain")
    assert load(str(confdir)).get("mydomain") == expected


def test_myhostname_and_mydomain_defaults(confdir: Path) -> None:
    config = load(str(confdir))
    assert config.get("myhostname") == postconf_value(confdir, "-d", "myhostname")
    assert config.get("mydomain") == postconf_value(confdir, "-d", "mydomain")


@pytest.mark.parametrize("style", ["host", "subnet", "class"])
def test_mynetworks_for_each_style(confdir: Path, style: str) -> None:
    (confdir / "main.cf").write_text(f"mynetworks_style = {style}\n")
    expected = postconf_value(confdir, "mynetworks")
    assert load(str(confdir)).get("mynetworks") == expected


@pytest.mark.parametrize("protocols", ["ipv4", "ipv6", "all", "ipv4, ipv6"])
def test_mynetworks_follows_inet_protocols(confdir: Path, protocols: str) -> None:
    (confdir / "main.cf").write_text(f"mynetworks_style = subnet\ninet_protocols = {protocols}\n")
    expected = postconf_value(confdir, "mynetworks")
    assert load(str(confdir)).get("mynetworks") == expected


def test_mynetworks_unknown_style(confdir: Path) -> None:
    (confdir / "main.cf").write_text("mynetworks_style = bogus\n")
    real = run_postfix("postconf", "-c", str(confdir), "mynetworks")
    assert real.returncode != 0
    with pytest.raises(ConfigError) as caught:
        load(str(confdir)).get("mynetworks")
    assert caught.value.message in real.stderr


def _item(text: str, prefix: int) -> derived.InterfaceAddress:
    return derived.InterfaceAddress("x", ipaddress.ip_address(text), prefix)


BOTH = (socket.AF_INET, socket.AF_INET6)

# Addresses as Postfix 3.7 was seen to render them, with order and duplicates
# kept as the kernel lists them (an address may appear twice with two masks).
SAMPLE = [
    _item("127.0.0.1", 8),
    _item("10.1.2.3", 24),
    _item("172.20.5.6", 12),
    _item("10.1.2.3", 16),
    _item("198.51.100.7", 25),
    _item("224.1.1.1", 8),
    _item("192.168.7.7", 16),
    _item("10.1.2.4", 24),
    _item("2001:db8::6", 48),
    _item("2001:db8::5", 48),
    _item("::1", 128),
]


def test_mynetworks_styles_on_sample_addresses() -> None:
    assert derived.mynetworks_for(SAMPLE, "subnet", BOTH) == (
        "127.0.0.0/8 10.1.2.0/24 172.16.0.0/12 10.1.0.0/16 198.51.100.0/25 224.0.0.0/8 "
        "192.168.0.0/16 [2001:db8::]/48 [::1]/128"
    )
    assert derived.mynetworks_for(SAMPLE, "host", BOTH) == (
        "127.0.0.1/32 10.1.2.3/32 172.20.5.6/32 198.51.100.7/32 224.1.1.1/32 "
        "192.168.7.7/32 10.1.2.4/32 [2001:db8::6]/128 [2001:db8::5]/128 [::1]/128"
    )
    assert derived.mynetworks_for(SAMPLE, "class", BOTH) == (
        "127.0.0.0/8 10.0.0.0/8 172.20.0.0/16 198.51.100.0/24 224.0.0.0/4 192.168.7.0/24 "
        "[2001:db8::]/48 [::1]/128"
    )
    assert derived.mynetworks_for(SAMPLE, "subnet", (socket.AF_INET6,)) == "[2001:db8::]/48 [::1]/128"


def test_mynetworks_class_e_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown address class: 240.1.1.1"):
        derived.mynetworks_for([_item("240.1.1.1", 8)], "class", BOTH)


def test_interface_addresses_are_up_and_typed() -> None:
    addresses = derived.interface_addresses()
    assert any(item.address.is_loopback for item in addresses)
    for item in addresses:
        assert 0 <= item.prefixlen <= item.address.max_prefixlen
