"""The client's name: forward-confirmed reverse DNS, as Postfix's smtpd_peer.

A client is known by name only when its address has a PTR record whose name
resolves back to the same address (FCrDNS); otherwise the verified name is
``unknown`` and the status says why: 0 found, 4 temporary failure, 5 no name
or no match (Postfix's ``client_name_status``; the unverified PTR name and
its own status are the *reverse* name, for
``reject_unknown_reverse_client_hostname``).

The lookups go through a :class:`PeerResolver`; the restrictions' DNS
resolver, which honours ``dns_servers``, is one.  With
``smtpd_peername_lookup = no`` or without a resolver, every client is
``unknown`` with status 5, as Postfix does when lookups are off.

Parameters read: ``smtpd_peername_lookup`` (by the caller).  Errors: none;
a failing resolver gives status 4.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol

__all__ = ["PeerName", "PeerResolver", "lookup_peer"]


@dataclass(frozen=True)
class PeerName:
    """The result of naming a client."""

    name: str = "unknown"
    status: int = 5
    reverse_name: str = "unknown"
    reverse_status: int = 5

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, name: str = "unknown", status: int = 5, reverse_name: str = "unknown",
                 reverse_status: int = 5) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "reverse_name", reverse_name)
        object.__setattr__(self, "reverse_status", reverse_status)


class PeerResolver(Protocol):
    """What naming a client needs from DNS."""

    async def reverse_names(self, addr: str) -> list[str]:
        """PTR names of ``addr``; raise `TimeoutError`/`OSError` on a temporary failure, [] for none."""
        ...

    async def addresses(self, name: str) -> list[str]:
        """A and AAAA addresses of ``name``; raise on a temporary failure, [] for none."""
        ...


def _same_addr(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()


async def lookup_peer(resolver: PeerResolver | None, addr: str) -> PeerName:
    """Name ``addr`` with forward confirmation."""
    if resolver is None:
        return PeerName()
    try:
        names = await resolver.reverse_names(addr)
    except (TimeoutError, OSError):
        return PeerName(status=4, reverse_status=4)
    if not names:
        return PeerName()
    reverse = names[0].rstrip(".").lower()
    temp = False
    for name in names:
        name = name.rstrip(".").lower()
        try:
            forward = await resolver.addresses(name)
        except (TimeoutError, OSError):
            temp = True
            continue
        if any(_same_addr(a, addr) for a in forward):
            return PeerName(name, 0, reverse, 0)
    return PeerName("unknown", 4 if temp else 5, reverse, 0)
