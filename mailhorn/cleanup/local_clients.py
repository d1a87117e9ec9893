"""Whether an SMTP client counts as local for header repair (``local_header_rewrite_clients``).

Postfix adds missing ``Message-Id:``, ``Date:``, ``From:`` and ``To:``
headers to mail from local submission always, to mail from SMTP clients only
when ``always_add_missing_headers = yes`` or the client matches
``local_header_rewrite_clients`` (its "local" rewrite context). The list
elements are (postconf(5)):

* ``permit_inet_interfaces``: the client address is one of this host's
  addresses that ``inet_interfaces`` listens on;
* ``permit_mynetworks``: the client matches ``mynetworks``;
* ``permit_sasl_authenticated``: the client authenticated;
* ``check_address_map type:table``: the client address is a key of the table.

Other elements are ignored with a warning, as an unknown element in
Postfix's list is.

Parameters read: ``local_header_rewrite_clients``, ``inet_interfaces``,
``mynetworks``.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable
from typing import Final

from mailhorn import log
from mailhorn.cleanup.request import ClientInfo
from mailhorn.config.load import Config
from mailhorn.config.maincf import split_list
from mailhorn.tables.base import Table
from mailhorn.tables.matchlist import namadr_list_from_config
from mailhorn.tables.registry import open_table

_LOOPBACK: Final = ("127.0.0.1", "::1")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


#: Answers of _is_local_address, per process: like Postfix, which learns the
#: host's addresses once at start, a process does not re-probe them per message.
_LOCAL_CACHE: dict[str, bool] = {}
_LOCAL_CACHE_MAX: Final = 4096


@functools.lru_cache(maxsize=4096)
def _client_ip(addr: str) -> IPAddress | None:
    """A client address parsed (None when it is not one); clients repeat, and
    the ipaddress module is slow to parse."""
    try:
        return ipaddress.ip_address(addr.strip("[]"))
    except ValueError:
        return None


def _is_local_address(addr: str) -> bool:
    """Whether ``addr`` belongs to this host (it can be bound)."""
    known = _LOCAL_CACHE.get(addr)
    if known is None:
        if len(_LOCAL_CACHE) >= _LOCAL_CACHE_MAX:
            _LOCAL_CACHE.clear()
        known = _LOCAL_CACHE[addr] = _bindable(addr)
    return known


def _bindable(addr: str) -> bool:
    try:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((addr, 0))
        return True
    except OSError:
        return False


def _mynetworks_test(config: Config) -> Callable[[ClientInfo], bool]:
    mynetworks = namadr_list_from_config(config, "mynetworks")

    def test(client: ClientInfo) -> bool:
        return mynetworks.match(client.name, client.addr)

    return test


def _address_map_test(table: Table) -> Callable[[ClientInfo], bool]:
    def test(client: ClientInfo) -> bool:
        return table.lookup(client.addr) is not None

    return test


class LocalClients:
    """The compiled ``local_header_rewrite_clients`` list."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._wanted: tuple[bool, frozenset[IPAddress]] | None = None
        self._tests: list[Callable[[ClientInfo], bool]] = []
        items = split_list(config.get("local_header_rewrite_clients"))
        i = 0
        while i < len(items):
            item = items[i]
            lower = item.lower()
            if lower == "permit_inet_interfaces":
                self._tests.append(self._inet_interface)
            elif lower == "permit_mynetworks":
                self._tests.append(_mynetworks_test(config))
            elif lower == "permit_sasl_authenticated":
                self._tests.append(lambda c: bool(c.sasl_username))
            elif lower == "check_address_map" and i + 1 < len(items):
                self._tests.append(_address_map_test(open_table(items[i + 1], config)))
                i += 1
            else:
                log.warning(f"unknown local_header_rewrite_clients element: {item}", program="cleanup")
            i += 1

    def _interfaces(self) -> tuple[bool, frozenset[IPAddress]]:
        """(``inet_interfaces = all``, the listed addresses), read once."""
        if self._wanted is None:
            interfaces = [x.lower() for x in split_list(self._config.get("inet_interfaces"))]
            wanted: set[IPAddress] = set()
            for name in interfaces:
                for item in _LOOPBACK if name in ("loopback-only", "localhost") else (name,):
                    try:
                        wanted.add(ipaddress.ip_address(item.strip("[]")))
                    except ValueError:
                        continue  # a host name never equals a client address
            self._wanted = ("all" in interfaces, frozenset(wanted))
        return self._wanted

    def _inet_interface(self, client: ClientInfo) -> bool:
        every, wanted = self._interfaces()
        if every:
            return _is_local_address(client.addr)
        return _client_ip(client.addr) in wanted

    def match(self, client: ClientInfo) -> bool:
        """Whether mail from ``client`` gets its missing headers added."""
        return any(test(client) for test in self._tests)
