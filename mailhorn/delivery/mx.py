"""Where to connect: next-hop parsing, MX lookup and server addresses.

:func:`parse_nexthop` reads the destination the resolver gave a request, in
the forms smtp(8) and lmtp(8) accept:

* ``example.com`` and ``example.com:port``: MX lookup (SMTP only);
* ``[mail.example.com]``, ``[mail.example.com]:587``, ``[192.0.2.1]:2025``,
  ``[ipv6:2001:db8::1]``: no MX lookup, the host's own addresses;
* ``inet:host``, ``inet:host:port``, ``inet:[host]:port``: as above (the
  LMTP client never looks up MX records; lmtp(8));
* ``unix:/path`` (LMTP): a UNIX-domain socket; a relative path
  (``unix:private/dovecot-lmtp``, the usual Dovecot set-up) is taken
  relative to ``queue_directory``, where Postfix's lmtp(8) runs.

:func:`find_servers` turns a next hop into an ordered list of
:class:`Server` addresses, as Postfix's smtp_addr.c does: MX records in
preference order with those of equal preference shuffled
(``smtp_randomize_addresses``), each MX host's A/AAAA records
(``inet_protocols``), and the domain's own addresses when it has no MX
records.  Outcomes follow Postfix's:

* NXDOMAIN → :class:`NotFound` (bounce ``5.4.4``, "Host or domain name not
  found. Name service error for name=... type=MX: Host not found");
* SERVFAIL or a timeout → :class:`NotFound` with ``permanent=False``
  (defer ``4.4.3``, "... Host not found, try again");
* null MX (RFC 7505) → :class:`NotFound` (bounce ``5.1.10``, "Domain ...
  does not accept mail (nullMX)").

Parameters read (``smtp_`` or ``lmtp_`` by the caller): ``inet_protocols``,
``smtp_host_lookup``, ``smtp_dns_support_level``, ``disable_dns_lookups``,
``smtp_randomize_addresses``, ``smtp_mx_address_limit``,
``smtp_tcp_port``/``lmtp_tcp_port``, ``dns_servers`` (through the resolver).
Errors: :class:`NotFound`; ``ValueError`` for a malformed next hop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass

from mailhorn.dns.resolver import DnsNotFound, DnsRetry, Resolver

__all__ = ["Nexthop", "NotFound", "Server", "find_servers", "parse_nexthop", "service_port"]


@dataclass(frozen=True)
class Nexthop:
    """A parsed destination."""

    host: str
    """Domain or host name, or IP address (no brackets); the socket path for ``unix:``."""
    port: int
    mx: bool
    """Look up MX records (a bare domain over SMTP)."""
    unix: bool = False
    text: str = ""
    """The destination as given (``[mail.example.com]:587``), for tables keyed by it."""


@dataclass(frozen=True)
class Server:
    """One address to try: the name it was found under, its address and port."""

    name: str
    addr: str
    port: int
    preference: int = 0
    unix: bool = False

    @property
    def label(self) -> str:
        """``name[addr]`` as Postfix logs a server (``name[addr]:port`` is :meth:`relay`).

        For a UNIX-domain socket the name is the local host's and the address
        the socket path (``mail.example.com[/run/dovecot/lmtp]``), as lmtp(8) logs.
        """
        return f"{self.name}[{self.addr}]"

    @property
    def relay(self) -> str:
        """The ``relay=`` log field."""
        return f"{self.name}[{self.addr}]" if self.unix else f"{self.name}[{self.addr}]:{self.port}"


class NotFound(Exception):
    """The destination has no usable server (DNS answer or its absence)."""

    def __init__(self, dsn: str, text: str) -> None:
        super().__init__(text)
        self.dsn = dsn
        self.text = text

    @property
    def permanent(self) -> bool:
        return self.dsn.startswith("5")


def service_port(text: str) -> int:
    """A port number or a service name (``smtp``, ``lmtp``, ``submission``)."""
    if text.isdigit():
        port = int(text)
        if 0 < port < 65536:
            return port
        raise ValueError(f"bad port number: {text}")
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        known = {"smtp": 25, "lmtp": 24, "submission": 587, "submissions": 465, "smtps": 465}
        if text in known:
            return known[text]
        raise ValueError(f"unknown service: {text}") from None


def parse_nexthop(nexthop: str, default_port: int, *, lmtp: bool = False, base: str = "") -> Nexthop:
    """Read a next-hop destination (see the module docstring); ``base`` is the
    directory a relative ``unix:`` socket path is taken from (queue_directory)."""
    text = nexthop.strip()
    given = text
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ValueError(f"empty socket path: {nexthop}")
        if not path.startswith("/") and base:
            path = f"{base.rstrip('/')}/{path}"
        return Nexthop(path, 0, False, True, given)
    if lmtp and text.startswith("/"):
        return Nexthop(text, 0, False, True, given)
    inet = text.startswith("inet:")
    if inet:
        text = text[5:]
    port = default_port
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"missing ']' in destination: {nexthop}")
        host = text[1:close]
        rest = text[close + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad destination: {nexthop}")
            port = service_port(rest[1:])
        if host.lower().startswith("ipv6:"):
            host = host[5:]
        mx = False
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host = text
        elif ":" in host:
            raise ValueError(f"bad destination: {nexthop}")
        else:
            port = service_port(port_text)
        mx = not (lmtp or inet)
        if _is_ip(host):
            mx = False
    if not host:
        raise ValueError(f"empty host in destination: {nexthop}")
    return Nexthop(host.rstrip(".").lower() if not _is_ip(host) else host, port, mx, False, given)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _families(inet_protocols: list[str]) -> tuple[bool, bool]:
    words = {w.lower() for w in inet_protocols}
    if not words or "all" in words:
        return True, True
    return "ipv4" in words, "ipv6" in words


def _not_found(name: str, rdtype: str, retry: bool) -> NotFound:
    text = f"Host or domain name not found. Name service error for name={name} type={rdtype}: Host not found"
    if retry:
        return NotFound("4.4.3", text + ", try again")
    return NotFound("5.4.4", text)


@dataclass
class LookupPolicy:
    """The settings that shape a lookup."""

    ipv4: bool = True
    ipv6: bool = True
    use_dns: bool = True
    randomize: bool = True
    address_limit: int = 5

    @classmethod
    def from_params(cls, get: Callable[[str], str], inet_protocols: list[str]) -> LookupPolicy:
        ipv4, ipv6 = _families(inet_protocols)
        host_lookup = {w.strip().lower() for w in get("smtp_host_lookup").replace(",", " ").split()}
        level = get("smtp_dns_support_level").strip().lower()
        use_dns = "dns" in host_lookup and level != "disabled" and get("disable_dns_lookups").lower() != "yes"
        limit_text = get("smtp_mx_address_limit").strip()
        return cls(ipv4, ipv6, use_dns, get("smtp_randomize_addresses").lower() == "yes",
                   int(limit_text) if limit_text.isdigit() else 5)


async def _host_addresses(resolver: Resolver, name: str, policy: LookupPolicy) -> list[str]:
    """The host's addresses in the families allowed; NotFound when it has none."""
    if _is_ip(name):
        version = ipaddress.ip_address(name).version
        if (version == 4 and policy.ipv4) or (version == 6 and policy.ipv6):
            return [name]
        raise NotFound("5.4.4", f"{name}: address family not enabled by inet_protocols")
    if not policy.use_dns:
        return await _native_addresses(name, policy)
    found: list[str] = []
    retry = False
    last_type = "A"
    for rdtype, wanted in (("A", policy.ipv4), ("AAAA", policy.ipv6)):
        if not wanted:
            continue
        last_type = rdtype
        try:
            found.extend(await (resolver.a(name) if rdtype == "A" else resolver.aaaa(name)))
        except DnsRetry:
            retry = True
        except DnsNotFound:
            pass
    if found:
        return found
    raise _not_found(name, last_type, retry)


async def _native_addresses(name: str, policy: LookupPolicy) -> list[str]:
    """getaddrinfo(3): ``smtp_host_lookup = native`` or DNS disabled."""
    family = socket.AF_UNSPEC
    if policy.ipv4 and not policy.ipv6:
        family = socket.AF_INET
    elif policy.ipv6 and not policy.ipv4:
        family = socket.AF_INET6
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(name, None, family=family, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        retry = exc.errno in (socket.EAI_AGAIN,)
        text = f"Host or domain name not found. Name service error for name={name} type=A: Host not found"
        raise NotFound("4.4.3" if retry else "5.4.4", text + (", try again" if retry else "")) from None
    out: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in out:
            out.append(addr)
    return out


def _shuffle_equal(items: list[Server], randomize: bool) -> list[Server]:
    """Stable by preference, shuffled within each preference (smtp_randomize_addresses)."""
    if not randomize:
        return items
    out: list[Server] = []
    i = 0
    while i < len(items):
        j = i
        while j < len(items) and items[j].preference == items[i].preference:
            j += 1
        group = items[i:j]
        random.shuffle(group)
        out.extend(group)
        i = j
    return out


async def find_servers(resolver: Resolver, hop: Nexthop, policy: LookupPolicy,
                       local_name: str = "localhost") -> list[Server]:
    """The addresses to try for ``hop``, best first (at most ``address_limit`` when > 0);
    a socket is named ``local_name[path]``."""
    if hop.unix:
        return [Server(local_name, hop.host, 0, 0, True)]
    if not hop.mx or not policy.use_dns:
        addrs = await _host_addresses(resolver, hop.host, policy)
        direct = [Server(hop.host, a, hop.port) for a in addrs]
        return _limit(_shuffle_equal(direct, policy.randomize), policy)
    try:
        records = await resolver.mx(hop.host)
    except DnsRetry:
        raise _not_found(hop.host, "MX", True) from None
    except DnsNotFound as exc:
        if str(exc).startswith("Host or domain name not found"):
            raise _not_found(hop.host, "MX", False) from None
        records = []
    if records and all(r.is_null for r in records):
        raise NotFound("5.1.10", f"Domain {hop.host} does not accept mail (nullMX)")
    records = [r for r in records if not r.is_null]
    if not records:
        # RFC 5321 §5.1: no MX records, the domain's own address records.
        addrs = await _host_addresses(resolver, hop.host, policy)
        return _limit(_shuffle_equal([Server(hop.host, a, hop.port) for a in addrs], policy.randomize), policy)
    hosts = [(r.preference, r.exchange) for r in sorted(records)]
    hosts = _shuffle_hosts(hosts, policy.randomize)
    servers: list[Server] = []
    failure: NotFound | None = None
    for preference, name in hosts:
        try:
            addrs = await _host_addresses(resolver, name, policy)
        except NotFound as exc:
            if failure is None or not exc.permanent:
                failure = exc
            continue
        servers.extend(Server(name, a, hop.port, preference) for a in addrs)
    if not servers:
        assert failure is not None
        raise failure
    return _limit(servers, policy)


def _shuffle_hosts(hosts: list[tuple[int, str]], randomize: bool) -> list[tuple[int, str]]:
    if not randomize:
        return hosts
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(hosts):
        j = i
        while j < len(hosts) and hosts[j][0] == hosts[i][0]:
            j += 1
        group = hosts[i:j]
        random.shuffle(group)
        out.extend(group)
        i = j
    return out


def _limit(servers: list[Server], policy: LookupPolicy) -> list[Server]:
    return servers[:policy.address_limit] if policy.address_limit > 0 else servers
