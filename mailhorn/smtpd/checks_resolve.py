"""Which address class a recipient's domain falls in, as trivial-rewrite decides it for smtpd.

Postfix's smtpd asks trivial-rewrite to resolve an address before it
decides ``permit_auth_destination`` / ``reject_unauth_destination`` and
``reject_unlisted_*``.  :func:`resolve` does that part of the work here:

1. The address is taken in internal (unquoted) form, as smtpd keeps it:
   ``"user@ext"@local`` arrives as ``user@ext@local``.  A source route (``@a,@b:user@dom``)
   is dropped (RFC 5321 §4.1.1.3, appendix C).
2. An address without ``@`` gets ``@$myorigin`` (rewrite in "local" context).
3. While the domain is ours (``mydestination``, or an address literal
   ``[addr]`` naming one of our interface addresses), its local part is
   examined for sender-specified routing: an ``@`` in it, ``user%domain``
   with ``allow_percent_hack = yes`` (the rightmost ``%`` becomes ``@``),
   ``site!user`` with ``swap_bangpath = yes`` (becomes ``user@site``).  If
   found, the address becomes that inner address, marked *routed*, and the
   loop repeats (trivial-rewrite's resolve_addr loop).
4. The final domain gives the class: ``local`` (mydestination or one of
   our addresses), ``virtual`` (``virtual_alias_domains``), ``virtual_mailbox``
   (``virtual_mailbox_domains``), ``relay`` (``relay_domains``), else
   ``default``.

A destination is authorized (postconf(5) permit_auth_destination) when its
class is local, virtual alias or virtual mailbox, or relay without
sender-specified routing.

Parameters read: ``myorigin``, ``mydestination``, ``inet_interfaces``,
``proxy_interfaces``, ``virtual_alias_domains``, ``virtual_mailbox_domains``,
``relay_domains``, ``allow_percent_hack``, ``swap_bangpath``.

Errors: :class:`mailhorn.tables.matchlist.MatchListRetry` when a domain list
cannot be searched (the caller defers).
"""

from __future__ import annotations

import enum
import ipaddress
import socket
from dataclasses import dataclass
from mailhorn.config.load import Config
from mailhorn.tables.matchlist import DomainList, domain_list_from_config

__all__ = ["AddressClass", "Resolution", "Resolver", "is_local_address"]


class AddressClass(enum.Enum):
    """postconf(5) ADDRESS_CLASS_README classes."""

    LOCAL = "local"
    VIRTUAL_ALIAS = "virtual"
    VIRTUAL_MAILBOX = "virtual_mailbox"
    RELAY = "relay"
    DEFAULT = "default"


@dataclass(frozen=True)
class Resolution:
    """The resolved address (internal form), its class and whether it was routed."""

    address: str
    domain: str
    klass: AddressClass
    routed: bool

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, address: str, domain: str, klass: AddressClass, routed: bool) -> None:
        object.__setattr__(self, "address", address)
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "klass", klass)
        object.__setattr__(self, "routed", routed)

    @property
    def authorized(self) -> bool:
        """permit_auth_destination's test."""
        if self.klass in (AddressClass.LOCAL, AddressClass.VIRTUAL_ALIAS, AddressClass.VIRTUAL_MAILBOX):
            return True
        return self.klass is AddressClass.RELAY and not self.routed


def is_local_address(addr: str, interfaces: list[str]) -> bool:
    """Whether ``addr`` is one of this host's addresses (inet_interfaces/proxy_interfaces).

    With ``inet_interfaces = all`` (or loopback-only), the kernel decides:
    an address we can bind to is ours.
    """
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    for item in interfaces:
        item = item.strip("[]").lower()
        if item == "all":
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as s:
                    s.bind((str(ip), 0))
                return True
            except OSError:
                continue
        if item == "loopback-only":
            if ip.is_loopback:
                return True
            continue
        try:
            if ipaddress.ip_address(item) == ip:
                return True
        except ValueError:
            try:
                if str(ip) in {info[4][0] for info in socket.getaddrinfo(item, None)}:
                    return True
            except OSError:
                continue
    return False


class Resolver:
    """Address class decisions for one configuration."""

    # What is built at first use is kept in plain attributes, not with
    # functools.cached_property: that needs an instance __dict__, which the
    # compiled class (scripts/build_native.py) has not.

    def __init__(self, config: Config) -> None:
        self.config = config
        self._domain_lists: dict[str, DomainList] = {}
        self._interfaces: list[str] | None = None

    def _domain_list(self, param: str) -> DomainList:
        """``param``'s domain list, built at first use (the tables it names open then)."""
        found = self._domain_lists.get(param)
        if found is None:
            found = self._domain_lists[param] = domain_list_from_config(self.config, param)
        return found

    @property
    def mydestination(self) -> DomainList:
        return self._domain_list("mydestination")

    @property
    def virtual_alias_domains(self) -> DomainList:
        return self._domain_list("virtual_alias_domains")

    @property
    def virtual_mailbox_domains(self) -> DomainList:
        return self._domain_list("virtual_mailbox_domains")

    @property
    def relay_domains(self) -> DomainList:
        return self._domain_list("relay_domains")

    @property
    def interfaces(self) -> list[str]:
        if self._interfaces is None:
            self._interfaces = self.config.list("inet_interfaces") + self.config.list("proxy_interfaces")
        return self._interfaces

    def literal_is_local(self, domain: str) -> bool:
        """``[1.2.3.4]`` / ``[IPv6:...]`` naming one of our addresses."""
        if not (domain.startswith("[") and domain.endswith("]")):
            return False
        inner = domain[1:-1]
        if inner.lower().startswith("ipv6:"):
            inner = inner[5:]
        return is_local_address(inner, self.interfaces)

    def is_local_domain(self, domain: str) -> bool:
        """mydestination or one of our address literals."""
        domain = domain.rstrip(".").lower()
        return self.literal_is_local(domain) or self.mydestination.match(domain)

    def classify(self, domain: str) -> AddressClass:
        """The class of a (non-routed) domain."""
        domain = domain.rstrip(".").lower()
        if self.is_local_domain(domain):
            return AddressClass.LOCAL
        if self.virtual_alias_domains.match(domain):
            return AddressClass.VIRTUAL_ALIAS
        if self.virtual_mailbox_domains.match(domain):
            return AddressClass.VIRTUAL_MAILBOX
        if self.relay_domains.match(domain):
            return AddressClass.RELAY
        return AddressClass.DEFAULT

    def resolve(self, address: str) -> Resolution:
        """Resolve an address in internal form (as smtpd keeps it: unquoted)."""
        if address.startswith("@"):
            colon = address.find(":")
            if colon > 0:
                address = address[colon + 1 :]
        routed = False
        percent = self.config.bool("allow_percent_hack")
        bang = self.config.bool("swap_bangpath")
        for _ in range(64):
            local, at, domain = address.rpartition("@")
            if not at:
                local, domain = address, ""
                inner = self._unroute(local, percent, bang)
                if inner is not None:
                    address, routed = inner, True
                    continue
                domain = self.config.get("myorigin")
                address = f"{local}@{domain}"
            if not self.is_local_domain(domain):
                return Resolution(address, domain.lower(), self.classify(domain), routed)
            inner = self._unroute(local, percent, bang)
            if inner is None:
                return Resolution(address, domain.lower(), AddressClass.LOCAL, routed)
            address, routed = inner, True
        return Resolution(address, "", AddressClass.DEFAULT, True)

    @staticmethod
    def _unroute(local: str, percent: bool, bang: bool) -> str | None:
        """The address a local part routes to, or None for a plain local part."""
        if "@" in local:
            return local
        if percent and "%" in local:
            cut = local.rfind("%")
            return f"{local[:cut]}@{local[cut + 1:]}"
        if bang and "!" in local:
            site, _, user = local.partition("!")
            if site and user:
                return f"{user}@{site}"
        return None
