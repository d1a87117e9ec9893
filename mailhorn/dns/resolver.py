"""An asynchronous DNS resolver with Postfix's temporary-versus-permanent outcomes.

:class:`Resolver` asks the servers named by ``dns_servers`` (a mailhorn
parameter: a list of ``address`` or ``[address]:port``), or those of
/etc/resolv.conf when it is empty, through dnspython's asyncio stub
resolver.  Each lookup has three outcomes, as Postfix's dns_lookup():

* a list of answers (possibly reduced to what the caller asked for);
* :class:`DnsNotFound` (NXDOMAIN, or the name exists without records of
  that type): a permanent "no" (Postfix's DNS_NOTFOUND / DNS_FAIL);
* :class:`DnsRetry` (SERVFAIL, REFUSED, timeout, network error): a
  temporary failure; callers defer, never reject (design.md §5 rule 4).

It also serves smtpd's client naming (:mod:`mailhorn.smtpd.peer`):
``reverse_names`` and ``addresses`` raise ``TimeoutError`` (an ``OSError``
kind) on a temporary failure and answer ``[]`` when there is nothing.

Parameters read: ``dns_servers``.  Errors: :class:`ConfigError` for a
malformed ``dns_servers`` element.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename

from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config

__all__ = ["DnsError", "DnsNotFound", "DnsRetry", "MxRecord", "Resolver", "parse_servers"]

#: Seconds per query attempt and for the whole lookup.
QUERY_TIMEOUT = 5.0
LIFETIME = 10.0


class DnsError(Exception):
    """A lookup that produced no answer."""


class DnsNotFound(DnsError):
    """The name or the record type does not exist (permanent)."""


class DnsRetry(DnsError, TimeoutError):
    """The lookup failed for now: SERVFAIL, timeout, no server reachable."""


@dataclass(frozen=True, order=True)
class MxRecord:
    """One MX record: preference and exchange (without the trailing dot)."""

    preference: int
    exchange: str

    @property
    def is_null(self) -> bool:
        """RFC 7505 null MX: preference 0 and exchange ``.``."""
        return self.preference == 0 and self.exchange == ""


def parse_servers(values: list[str]) -> list[tuple[str, int]]:
    """Parse ``dns_servers`` elements: ``addr`` or ``[addr]:port``."""
    out: list[tuple[str, int]] = []
    for value in values:
        addr, port = value, 53
        if value.startswith("["):
            close = value.find("]")
            rest = value[close + 1 :] if close > 0 else "x"
            if close < 0 or (rest and not rest.startswith(":")):
                raise ConfigError(f"dns_servers: bad server address: {value}", param="dns_servers")
            addr = value[1:close]
            if rest:
                if not rest[1:].isdigit() or not 0 < int(rest[1:]) < 65536:
                    raise ConfigError(f"dns_servers: bad port: {value}", param="dns_servers")
                port = int(rest[1:])
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise ConfigError(f"dns_servers: not an IP address: {value}", param="dns_servers") from None
        out.append((addr, port))
    return out


class Resolver:
    """Asynchronous lookups of A, AAAA, MX, PTR and TXT records."""

    def __init__(self, servers: list[tuple[str, int]] | None = None) -> None:
        if servers:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [dns.nameserver.Do53Nameserver(addr, port) for addr, port in servers]
        else:
            self._resolver = dns.asyncresolver.Resolver()
        self._resolver.timeout = QUERY_TIMEOUT
        self._resolver.lifetime = LIFETIME
        self._resolver.retry_servfail = False

    @classmethod
    def from_config(cls, config: Config) -> Resolver:
        """The resolver ``dns_servers`` asks for (else /etc/resolv.conf's)."""
        return cls(parse_servers(config.list("dns_servers")))

    async def _query(self, name: str, rdtype: str) -> dns.resolver.Answer:
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError) as exc:
            raise DnsNotFound(f"{name}: malformed name: {exc}") from None
        try:
            return await self._resolver.resolve(qname, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise DnsNotFound(f"Host or domain name not found. Name service error for name={name} "
                              f"type={rdtype}: Host not found") from None
        except dns.resolver.NoAnswer:
            raise DnsNotFound(f"Host found but no data record of type {rdtype}: {name}") from None
        except dns.resolver.YXDOMAIN:
            raise DnsNotFound(f"{name}: name too long") from None
        except dns.exception.Timeout:
            raise DnsRetry(f"Host or domain name not found. Name service error for name={name} "
                           f"type={rdtype}: Host not found, try again") from None
        except (dns.resolver.NoNameservers, dns.exception.DNSException, OSError) as exc:
            raise DnsRetry(f"Host or domain name not found. Name service error for name={name} "
                           f"type={rdtype}: Host not found, try again ({exc})") from None

    async def a(self, name: str) -> list[str]:
        """IPv4 addresses of ``name``."""
        return [r.address for r in await self._query(name, "A")]

    async def aaaa(self, name: str) -> list[str]:
        """IPv6 addresses of ``name``."""
        return [r.address for r in await self._query(name, "AAAA")]

    async def mx(self, name: str) -> list[MxRecord]:
        """MX records of ``name``, best first."""
        answer = await self._query(name, "MX")
        records = [MxRecord(r.preference, r.exchange.to_text().rstrip(".").lower()) for r in answer]
        return sorted(records)

    async def txt(self, name: str) -> list[str]:
        """TXT strings of ``name`` (each record's strings joined)."""
        answer = await self._query(name, "TXT")
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]

    async def ptr(self, addr: str) -> list[str]:
        """PTR names of the address ``addr``."""
        try:
            rname = dns.reversename.from_address(addr)
        except (dns.exception.SyntaxError, ValueError):
            raise DnsNotFound(f"not an address: {addr}") from None
        answer = await self._query(rname.to_text(), "PTR")
        return [r.target.to_text().rstrip(".").lower() for r in answer]

    async def host_addresses(self, name: str) -> list[str]:
        """A and AAAA addresses; DnsNotFound only when both are absent.

        A temporary failure of either type makes the whole answer
        temporary unless the other type produced addresses.
        """
        found: list[str] = []
        retry: DnsRetry | None = None
        for rdtype in ("A", "AAAA"):
            try:
                found.extend(r.address for r in await self._query(name, rdtype))
            except DnsRetry as exc:
                retry = exc
            except DnsNotFound:
                pass
        if found:
            return found
        if retry is not None:
            raise retry
        raise DnsNotFound(f"{name}: no address records")

    # -- mailhorn.smtpd.peer.PeerResolver ------------------------------
    async def reverse_names(self, addr: str) -> list[str]:
        """PTR names; [] for none; TimeoutError for a temporary failure."""
        try:
            return await self.ptr(addr)
        except DnsNotFound:
            return []

    async def addresses(self, name: str) -> list[str]:
        """A and AAAA addresses; [] for none; TimeoutError for a temporary failure."""
        try:
            return await self.host_addresses(name)
        except DnsNotFound:
            return []
