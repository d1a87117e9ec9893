"""Defaults that Postfix computes on the running host rather than compiles in.

* ``myhostname``: the host's name from gethostname(); a name without a dot
  gets ``.localdomain`` appended, as Postfix does (mail_params.c).
* ``mydomain``: ``myhostname`` minus its first label, or ``localdomain``
  when ``myhostname`` has a single label.
* ``mynetworks``: the networks of this host's active interfaces, shaped by
  ``mynetworks_style`` (postconf(5) ``mynetworks``):

  - ``host``: each address alone (``/32``, ``/128``);
  - ``subnet``: each address's subnet, from the interface netmask;
  - ``class``: for IPv4 the classful network (A ``/8``, B ``/16``, C ``/24``,
    D ``/4``; a class E address is an error, as in Postfix); IPv6 has no
    classes and uses the subnet.

  Only interfaces that are up count, in the kernel's order (getifaddrs(3)),
  IPv4 before IPv6, limited to the families ``inet_protocols`` enables. An
  entry that repeats an earlier one is left out. IPv6 networks are written
  ``[addr]/len``.
* ``process_id``, ``process_name``: the running program's process ID and name.

Each function takes a lookup of other parameters' expanded values, so a
``myhostname`` set in main.cf moves ``mydomain`` with it, and a
``mynetworks_style`` set in main.cf changes ``mynetworks``.

Errors: :class:`ConfigError` for an unknown ``mynetworks_style``, an
unknown ``inet_protocols`` value, a class E interface address under the
``class`` style, or a host without any active interface, with Postfix's
wording.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from mailhorn import log
from mailhorn.config.errors import ConfigError
from mailhorn.config.maincf import split_list

Lookup = Callable[[str], str]

#: Postfix's DEF_MYDOMAIN, used when the host name has no domain part.
DEFAULT_DOMAIN = "localdomain"


def myhostname(_lookup: Lookup) -> str:
    """The host's fully-qualified name, as Postfix derives it."""
    name = socket.gethostname()
    if "." not in name:
        name = f"{name}.{DEFAULT_DOMAIN}"
    return name.lower() if name.isascii() else name


def mydomain(lookup: Lookup) -> str:
    """The parent domain of ``myhostname``."""
    host = lookup("myhostname")
    _, dot, parent = host.partition(".")
    return parent if dot and parent else DEFAULT_DOMAIN


def process_id(_lookup: Lookup) -> str:
    """The process ID of the running program (postconf(5) ``process_id``)."""
    return str(os.getpid())


def process_name(_lookup: Lookup) -> str:
    """The name the running program logs under (postconf(5) ``process_name``)."""
    return log.program()


# -- interfaces ----------------------------------------------------------


@dataclass(frozen=True)
class InterfaceAddress:
    """One address of an active interface, with its netmask's prefix length."""

    interface: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    prefixlen: int


class _Sockaddr(ctypes.Structure):
    _fields_ = [("sa_family", ctypes.c_ushort), ("sa_data", ctypes.c_ubyte * 14)]


class _SockaddrIn(ctypes.Structure):
    _fields_ = [
        ("sin_family", ctypes.c_ushort),
        ("sin_port", ctypes.c_ushort),
        ("sin_addr", ctypes.c_ubyte * 4),
        ("sin_zero", ctypes.c_ubyte * 8),
    ]


class _SockaddrIn6(ctypes.Structure):
    _fields_ = [
        ("sin6_family", ctypes.c_ushort),
        ("sin6_port", ctypes.c_ushort),
        ("sin6_flowinfo", ctypes.c_uint32),
        ("sin6_addr", ctypes.c_ubyte * 16),
        ("sin6_scope_id", ctypes.c_uint32),
    ]


class _Ifaddrs(ctypes.Structure):
    pass


_Ifaddrs._fields_ = [
    ("ifa_next", ctypes.POINTER(_Ifaddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.POINTER(_Sockaddr)),
    ("ifa_netmask", ctypes.POINTER(_Sockaddr)),
    ("ifa_ifu", ctypes.POINTER(_Sockaddr)),
    ("ifa_data", ctypes.c_void_p),
]

#: IFF_UP from <net/if.h>: the interface is administratively up.
_IFF_UP = 0x1


def _raw_address(sockaddr: ctypes._Pointer[_Sockaddr]) -> bytes | None:
    """The address bytes of an AF_INET or AF_INET6 sockaddr, else None."""
    family = sockaddr.contents.sa_family
    if family == socket.AF_INET:
        return bytes(ctypes.cast(sockaddr, ctypes.POINTER(_SockaddrIn)).contents.sin_addr)
    if family == socket.AF_INET6:
        return bytes(ctypes.cast(sockaddr, ctypes.POINTER(_SockaddrIn6)).contents.sin6_addr)
    return None


def _prefixlen(mask: bytes) -> int:
    """The length of a netmask's leading run of one bits."""
    bits = int.from_bytes(mask, "big")
    width = len(mask) * 8
    length = 0
    while length < width and bits & (1 << (width - 1 - length)):
        length += 1
    return length


def interface_addresses() -> list[InterfaceAddress]:
    """The IPv4 and IPv6 addresses of interfaces that are up, in kernel order."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    head = ctypes.POINTER(_Ifaddrs)()
    if libc.getifaddrs(ctypes.byref(head)) != 0:
        errno = ctypes.get_errno()
        raise ConfigError(f"getifaddrs: {os.strerror(errno)}")
    found: list[InterfaceAddress] = []
    try:
        node = head
        while node:
            entry = node.contents
            node = entry.ifa_next
            if not entry.ifa_flags & _IFF_UP or not entry.ifa_addr:
                continue
            raw = _raw_address(entry.ifa_addr)
            if raw is None:
                continue
            mask = _raw_address(entry.ifa_netmask) if entry.ifa_netmask else None
            prefix = _prefixlen(mask) if mask is not None else len(raw) * 8
            name = (entry.ifa_name or b"").decode("ascii", "replace")
            found.append(InterfaceAddress(name, ipaddress.ip_address(raw), prefix))
    finally:
        libc.freeifaddrs(head)
    return found


# -- mynetworks ----------------------------------------------------------


def _ipv6_supported() -> bool:
    """Whether the kernel offers IPv6 sockets (``inet_protocols = all``)."""
    if not socket.has_ipv6:
        return False
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
    except OSError:
        return False
    return True


def enabled_families(inet_protocols: str) -> tuple[int, ...]:
    """The address families ``inet_protocols`` turns on, IPv4 first."""
    wanted: set[int] = set()
    for word in split_list(inet_protocols):
        key = word.lower()
        if key == "all":
            wanted.add(socket.AF_INET)
            if _ipv6_supported():
                wanted.add(socket.AF_INET6)
        elif key == "ipv4":
            wanted.add(socket.AF_INET)
        elif key == "ipv6":
            wanted.add(socket.AF_INET6)
        else:
            raise ConfigError(f'bad inet_protocols value: "{word}"', param="inet_protocols")
    return tuple(f for f in (socket.AF_INET, socket.AF_INET6) if f in wanted)


def _ipv4_class_prefix(address: ipaddress.IPv4Address) -> int:
    """The classful prefix length of an IPv4 address (RFC 791, RFC 1112)."""
    first = int(address) >> 24
    if first < 128:
        return 8
    if first < 192:
        return 16
    if first < 224:
        return 24
    if first < 240:
        return 4
    raise ConfigError(f"mynetworks_core: unknown address class: {address}", param="mynetworks")


def _network_text(item: InterfaceAddress, style: str) -> str:
    """One mynetworks entry for an interface address under ``style``."""
    address = item.address
    prefix: int
    if style == "host":
        prefix = address.max_prefixlen
    elif style == "class" and isinstance(address, ipaddress.IPv4Address):
        prefix = _ipv4_class_prefix(address)
    else:
        prefix = item.prefixlen
    network = ipaddress.ip_network((address, prefix), strict=False)
    if network.version == 6:
        return f"[{network.network_address}]/{prefix}"
    return f"{network.network_address}/{prefix}"


def mynetworks_for(addresses: list[InterfaceAddress], style: str, families: tuple[int, ...]) -> str:
    """The mynetworks text for the given interface addresses and style."""
    key = style.strip().lower()
    if key not in ("host", "subnet", "class"):
        raise ConfigError(
            f'unknown mynetworks mask style value "{style.strip()}" in "{style.strip()}"',
            param="mynetworks_style",
        )
    entries: list[str] = []
    for family in families:
        version = 4 if family == socket.AF_INET else 6
        for item in addresses:
            if item.address.version != version:
                continue
            text = _network_text(item, key)
            if text not in entries:
                entries.append(text)
    return " ".join(entries)


def mynetworks(lookup: Lookup) -> str:
    """This host's networks as Postfix computes the ``mynetworks`` default."""
    style = lookup("mynetworks_style")
    families = enabled_families(lookup("inet_protocols"))
    addresses = [
        item
        for item in interface_addresses()
        if (socket.AF_INET if item.address.version == 4 else socket.AF_INET6) in families
    ]
    if not addresses:
        raise ConfigError("could not find any active network interfaces", param="mynetworks")
    return mynetworks_for(addresses, style, families)
