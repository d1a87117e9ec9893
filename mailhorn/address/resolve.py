"""Address resolution: trivial-rewrite's resolve side (which transport, where).

:meth:`Resolver.resolve` turns an internal-form recipient into a
:class:`Resolution` ``(address_class, transport, nexthop, recipient, flags)``
as Postfix's resolve_addr does:

1. the address is completed in the ``local`` context (rewrite.py);
2. routing is peeled off in a loop: a trailing dot goes (not ``..``/``@.``);
   with ``resolve_null_domain = yes`` a trailing ``@`` goes; a local domain
   (:meth:`LocalDomains.is_local`) is stripped, and if what is left still
   routes (``user%host``, ``host!user``) it is rewritten and resolved again;
   with ``resolve_dequoted_address = yes`` a quoted local part that holds
   ``@``, ``%`` or ``!`` is opened up and resolved again;
3. an empty local part becomes ``$empty_address_recipient``; an address
   without domain gets ``@$myhostname``;
4. the domain must be a valid hostname, a valid address literal or, with
   ``resolve_numeric_domain = yes``, a numeric address; else RESOLVE_FLAG_ERROR;
5. a local part that still holds ``@``, ``!`` (swap_bangpath) or ``%``
   (allow_percent_hack) sets RESOLVE_FLAG_ROUTED (smtpd's
   reject_unauth_destination refuses such relaying);
6. the class: local (``mydestination``, ``inet_interfaces``/``proxy_interfaces``
   literals) -> ``local_transport``; ``virtual_alias_domains`` -> ``error``
   with "5.1.1 User unknown in virtual alias table" (every address there must
   have been aliased by cleanup, virtual(5)); ``virtual_mailbox_domains`` ->
   ``virtual_transport``; ``relay_domains`` -> ``relay_transport``; else
   ``sender_dependent_default_transport_maps`` or ``default_transport``;
7. the next hop is the recipient domain, for relay and default mail
   ``sender_dependent_relayhost_maps`` or ``relayhost`` when set, and the
   ``:nexthop`` of a ``transport:nexthop`` value wins over both (postconf(5)
   default_transport);
8. ``transport_maps`` (transport(5)) override both: see :class:`TransportMaps`.

Flags are Postfix's bit values so logs and tests can compare them.

Parameters read: ``myhostname``, ``mydestination``, ``inet_interfaces``,
``inet_protocols``, ``proxy_interfaces``, ``virtual_alias_domains``,
``virtual_mailbox_domains``, ``relay_domains``, ``local_transport``,
``virtual_transport``, ``relay_transport``, ``default_transport``,
``transport_maps``, ``relayhost``, ``sender_dependent_relayhost_maps``,
``sender_dependent_default_transport_maps``,
``empty_address_relayhost_maps_lookup_key``,
``empty_address_default_transport_maps_lookup_key``, ``recipient_delimiter``,
``resolve_null_domain``, ``resolve_dequoted_address``,
``resolve_numeric_domain``, ``empty_address_recipient``, ``smtputf8_enable``,
``show_user_unknown_table_name``, ``parent_domain_matches_subdomains``,
plus the rewrite parameters of rewrite.py.

Errors: a table or match list that fails gives RESOLVE_FLAG_FAIL (the caller
defers), never an exception; a bad address gives RESOLVE_FLAG_ERROR.
"""

from __future__ import annotations

import array
import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass
from enum import Enum
from typing import Final

from mailhorn import log
from mailhorn.address.idna import valid_hostaddr, valid_utf8_hostname
from mailhorn.address.parse import check_address_literal, split_extension
from mailhorn.address.errors import AddressError
from mailhorn.address.quote import is_dot_string, split_internal
from mailhorn.address.rewrite import (
    AddressMaps,
    RewriteOptions,
    is_pattern_table,
    local_context,
    open_maps,
    rewrite_address,
)
from mailhorn.config.load import Config
from mailhorn.tables.base import Table, TableConfigError, TableRetry
from mailhorn.tables.matchlist import (
    DomainList,
    StringList,
    domain_list_from_config,
    parent_style,
    string_list_from_config,
)

# Postfix's resolve_clnt.h bit values.
RESOLVE_FLAG_FINAL: Final = 1 << 0
RESOLVE_FLAG_ROUTED: Final = 1 << 1
RESOLVE_FLAG_ERROR: Final = 1 << 2
RESOLVE_FLAG_FAIL: Final = 1 << 3
RESOLVE_CLASS_LOCAL: Final = 1 << 8
RESOLVE_CLASS_ALIAS: Final = 1 << 9
RESOLVE_CLASS_VIRTUAL: Final = 1 << 10
RESOLVE_CLASS_RELAY: Final = 1 << 11
RESOLVE_CLASS_DEFAULT: Final = 1 << 12
RESOLVE_CLASS_MASK: Final = 0x1F00

#: How many routing layers resolve peels off before it gives up.
PEEL_LIMIT: Final = 100

#: The transport whose empty next hop means "Address is undeliverable".
ERROR_TRANSPORT: Final = "error"


class AddressClass(Enum):
    """The address classes of ADDRESS_CLASS_README."""

    LOCAL = RESOLVE_CLASS_LOCAL
    ALIAS = RESOLVE_CLASS_ALIAS
    VIRTUAL = RESOLVE_CLASS_VIRTUAL
    RELAY = RESOLVE_CLASS_RELAY
    DEFAULT = RESOLVE_CLASS_DEFAULT


@dataclass(frozen=True)
class Resolution:
    """Where one recipient goes.

    ``transport`` and ``nexthop`` are empty when ``fail`` or ``error`` is set.
    """

    address_class: AddressClass
    transport: str
    nexthop: str
    recipient: str
    flags: int

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, address_class: AddressClass, transport: str, nexthop: str, recipient: str, flags: int) -> None:
        object.__setattr__(self, "address_class", address_class)
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "nexthop", nexthop)
        object.__setattr__(self, "recipient", recipient)
        object.__setattr__(self, "flags", flags)

    @property
    def fail(self) -> bool:
        """A table or list lookup failed: defer and try again later."""
        return bool(self.flags & RESOLVE_FLAG_FAIL)

    @property
    def error(self) -> bool:
        """The address is malformed: bounce."""
        return bool(self.flags & RESOLVE_FLAG_ERROR)

    @property
    def routed(self) -> bool:
        """The local part still holds a routing operator (``%``, ``!``, ``@``)."""
        return bool(self.flags & RESOLVE_FLAG_ROUTED)


# -- this host's addresses ------------------------------------------------------

_SIOCGIFCONF: Final = 0x8912


def _ipv4_interface_addresses() -> list[str]:
    """Every configured IPv4 address (SIOCGIFCONF)."""
    out: list[str] = []
    size = 40
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for count in (64, 1024):
            buf = array.array("B", b"\0" * (count * size))
            addr, length = buf.buffer_info()
            packed = struct.pack("iL", length, addr)
            used = struct.unpack("iL", fcntl.ioctl(sock.fileno(), _SIOCGIFCONF, packed))[0]
            if used < length:
                data = buf.tobytes()[:used]
                for off in range(0, used, size):
                    out.append(socket.inet_ntoa(data[off + 20 : off + 24]))
                break
    return out


def _ipv6_interface_addresses() -> list[str]:
    """Every configured IPv6 address (/proc/net/if_inet6)."""
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as fp:
            lines = fp.read().splitlines()
    except OSError:
        return []
    return [str(ipaddress.IPv6Address(bytes.fromhex(line.split()[0]))) for line in lines if line.split()]


def own_addresses(config: Config, param: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses ``inet_interfaces`` or ``proxy_interfaces`` stand for."""
    protocols = {p.lower() for p in config.list("inet_protocols")}
    v4 = bool(protocols & {"all", "ipv4"})
    v6 = bool(protocols & {"all", "ipv6"})
    out: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for item in config.list(param):
        name = item.lower()
        if name == "all":
            texts = (_ipv4_interface_addresses() if v4 else []) + (_ipv6_interface_addresses() if v6 else [])
        elif name in ("loopback-only", "localhost") and param == "inet_interfaces":
            texts = (["127.0.0.1"] if v4 else []) + (["::1"] if v6 else [])
        else:
            host = name[1:-1] if name.startswith("[") and name.endswith("]") else name
            try:
                texts = [str(ipaddress.ip_address(host))]
            except ValueError:
                try:
                    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
                except OSError:
                    log.warning(f"{param}: {host}: host not found")
                    continue
                texts = [str(info[4][0]) for info in infos]
        for text in texts:
            parsed = ipaddress.ip_address(text.split("%", 1)[0])
            if (parsed.version == 4 and v4) or (parsed.version == 6 and v6):
                out.add(parsed)
    return out


class LocalDomains:
    """Which domains are this host's (Postfix's resolve_local).

    A domain is local when ``mydestination`` lists it, or when it is an
    address literal ``[1.2.3.4]``/``[IPv6:...]`` (with ``resolve_numeric_domain``
    also a bare address) of one of this host's interfaces or
    ``proxy_interfaces``. One trailing dot is ignored.
    """

    def __init__(self, config: Config) -> None:
        self.mydestination = domain_list_from_config(config, "mydestination")
        self.numeric = config.bool("resolve_numeric_domain")
        self._config = config
        self._addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] | None = None

    def addresses(self) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        if self._addresses is None:
            self._addresses = own_addresses(self._config, "inet_interfaces") | own_addresses(
                self._config, "proxy_interfaces"
            )
        return self._addresses

    def is_local(self, domain: str) -> bool:
        """Whether ``domain`` is ours; MatchListRetry when undecidable."""
        if len(domain) > 1 and domain.endswith(".") and domain[-2] != ".":
            domain = domain[:-1]
        if not domain or domain.endswith("."):
            return False
        if self.mydestination.match(domain):
            return True
        text: str | None = None
        if domain.startswith("[") and domain.endswith("]"):
            text = domain[1:-1]
            if text[:5].lower() == "ipv6:":
                text = text[5:]
        elif self.numeric and valid_hostaddr(domain):
            text = domain
        if text is None:
            return False
        try:
            return ipaddress.ip_address(text) in self.addresses()
        except ValueError:
            return False


# -- transport_maps ---------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A transport and next hop."""

    transport: str
    nexthop: str

    # Written out: compiled, a generated __init__ would run as Python (see scripts/build_native.py).
    def __init__(self, transport: str, nexthop: str) -> None:
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "nexthop", nexthop)


def split_transport(value: str) -> tuple[str, str]:
    """``transport:nexthop`` -> (transport, nexthop); a value without ``:``
    is a transport name."""
    transport, _, nexthop = value.partition(":")
    return transport, nexthop


def apply_entry(value: str, route: Route, rcpt_domain: str) -> Route:
    """How a transport(5) result changes a route (Postfix's update_entry).

    An empty transport keeps the current one (and ``:`` changes nothing); an
    empty next hop after a named transport means the recipient domain, or
    "Address is undeliverable" for ``error``.
    """
    transport, nexthop = split_transport(value)
    if not transport:
        return Route(route.transport, nexthop) if nexthop else route
    if nexthop:
        return Route(transport, nexthop)
    if transport == ERROR_TRANSPORT:
        return Route(transport, "Address is undeliverable")
    return Route(transport, rcpt_domain)


class TransportMaps:
    """transport(5): search order and result forms.

    Keys, first match wins: the full recipient; with ``recipient_delimiter``
    the recipient without extension; the domain; then each parent as
    ``.parent`` (or ``parent`` when ``transport_maps`` is listed in
    ``parent_domain_matches_subdomains``); finally ``*``. Pattern tables are
    asked for the full recipient only. The null recipient is never looked up.
    """

    def __init__(self, config: Config, tables: list[Table]) -> None:
        self.tables = tables
        self.delimiters = config.get("recipient_delimiter")
        self.owner_request_special = config.bool("owner_request_special")
        self.double_bounce = config.get("double_bounce_sender")
        self.parent = parent_style(config, "transport_maps")

    def _find(self, key: str, *, full: bool) -> str | None:
        for table in self.tables:
            if not full and is_pattern_table(table):
                continue
            try:
                value = table.lookup(key)
            except (TableRetry, TableConfigError) as exc:
                log.warning(f"transport_maps: {table.type}:{table.name}: lookup of {key} failed: {exc}")
                raise TableRetry(f"transport_maps lookup failure: {exc}") from exc
            if value is not None:
                return value
        return None

    def lookup(self, recipient: str, rcpt_domain: str, route: Route) -> Route | None:
        """The route transport_maps give ``recipient``, or None; TableRetry on failure."""
        if not recipient:
            return None
        value = self._find(recipient, full=True)
        if value is None:
            local, domain = split_internal(recipient)
            split = split_extension(
                local,
                self.delimiters,
                owner_request_special=self.owner_request_special,
                double_bounce_sender=self.double_bounce,
            )
            if split is not None and domain is not None:
                value = self._find(f"{split.base}@{domain}", full=False)
        if value is None:
            value = self._find_domain(recipient.rpartition("@")[2])
        if value is None:
            value = self._find("*", full=False)
        if value is None:
            return None
        return apply_entry(value, route, rcpt_domain)

    def _find_domain(self, domain: str) -> str | None:
        name = domain
        while name:
            value = self._find(name, full=False)
            if value is not None:
                return value
            nxt = name.find(".", 1)
            if nxt < 0:
                break
            name = name[nxt + 1 :] if self.parent else name[nxt:]
        return None


# -- the resolver ----------------------------------------------------------------


class Resolver:
    """trivial-rewrite's resolve request for one configuration."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.options = RewriteOptions.from_config(config)
        self.context = local_context(config)
        self.local = LocalDomains(config)
        self.myhostname = config.get("myhostname")
        self.empty_address = config.get("empty_address_recipient")
        self.null_domain = config.bool("resolve_null_domain")
        self.dequoted = config.bool("resolve_dequoted_address")
        self.numeric = config.bool("resolve_numeric_domain")
        self.smtputf8 = config.bool("smtputf8_enable")
        self.show_table = config.bool("show_user_unknown_table_name")
        # trivial-rewrite matches the virtual domains as string lists (whole
        # names only) and relay_domains as a domain list (with subdomains).
        self.alias_domains: StringList | None = self._strings("virtual_alias_domains")
        self.mailbox_domains: StringList | None = self._strings("virtual_mailbox_domains")
        self.relay_domains: DomainList | None = self._domains("relay_domains")
        self.local_transport = config.get("local_transport")
        self.virtual_transport = config.get("virtual_transport")
        self.relay_transport = config.get("relay_transport")
        self.default_transport = config.get("default_transport")
        self.relayhost = config.get("relayhost")
        self.transport_maps = TransportMaps(config, open_maps(config, "transport_maps"))
        self.sender_relayhost = AddressMaps.from_config(config, "sender_dependent_relayhost_maps", self.is_local)
        self.sender_transport = AddressMaps.from_config(
            config, "sender_dependent_default_transport_maps", self.is_local
        )
        self.relayhost_null_key = config.get("empty_address_relayhost_maps_lookup_key")
        self.transport_null_key = config.get("empty_address_default_transport_maps_lookup_key")

    def _strings(self, param: str) -> StringList | None:
        return string_list_from_config(self.config, param) if self.config.list(param) else None

    def _domains(self, param: str) -> DomainList | None:
        return domain_list_from_config(self.config, param) if self.config.list(param) else None

    def is_local(self, domain: str) -> bool:
        """resolve_local: mydestination and our interface address literals."""
        return self.local.is_local(domain)

    # -- step 1-3: peel off routing --------------------------------------------
    def _peel(self, address: str) -> tuple[str, bool]:
        """The final recipient and whether its domain was ours (or absent)."""
        saved: str | None = None
        for _ in range(PEEL_LIMIT):
            if not address:
                break
            if len(address) > 1 and address.endswith(".") and address[-2] not in ".@":
                address = address[:-1]
                continue
            if self.null_domain and address.endswith("@"):
                address = address[:-1]
                continue
            local, domain = split_internal(address)
            saved = None
            if domain is not None:
                if not self.is_local(domain):
                    break
                saved = domain
                address = local
            visible = is_dot_string(address)
            if saved is not None and address.startswith("@") and ":" in address:
                address = rewrite_address(address, self.context, self.options)
                saved = None
                continue
            if visible and (
                (self.options.swap_bangpath and "!" in address) or (self.options.percent_hack and "%" in address)
            ):
                address = rewrite_address(address, self.context, self.options)
                saved = None
                continue
            if self.dequoted and address and not visible and (
                "@" in address
                or (self.options.percent_hack and "%" in address)
                or (self.options.swap_bangpath and "!" in address)
            ):
                if "@" not in address:
                    if self.options.percent_hack and "%" in address:
                        pct = address.rindex("%")
                        address = f"{address[:pct]}@{address[pct + 1:]}"
                    else:
                        bang = address.index("!")
                        address = f"{address[bang + 1:]}@{address[:bang]}"
                address = rewrite_address(address, self.context, self.options)
                saved = None
                continue
            break
        is_local = saved is not None
        if saved is not None:
            address = f"{address or self.empty_address}@{saved}"
        elif not address:
            address = self.empty_address
        local, domain = split_internal(address)
        if domain is not None and self.numeric and valid_hostaddr(domain):
            # resolve_numeric_domain: user@1.2.3.4 is delivered as user@[1.2.3.4].
            literal = f"[IPv6:{domain}]" if ":" in domain else f"[{domain}]"
            address = f"{local}@{literal}"
        if domain is None:
            address = f"{address}@{self.myhostname}"
            is_local = True
        elif not local:
            address = f"{self.empty_address}@{domain}"
        return address, is_local

    def _valid_domain(self, domain: str) -> bool:
        if domain.startswith("["):
            try:
                check_address_literal(domain)
            except AddressError:
                return False
            return True
        if valid_utf8_hostname(domain, smtputf8=self.smtputf8):
            return True
        return self.numeric and valid_hostaddr(domain)

    @staticmethod
    def _routed(recipient: str) -> bool:
        """Postfix flags any ``@``, ``!`` or ``%`` left in the local part,
        whatever swap_bangpath and allow_percent_hack say."""
        local = recipient.rpartition("@")[0]
        return any(op in local for op in "@!%")

    def resolve(self, address: str, sender: str = "") -> Resolution:
        """Resolve one internal-form recipient; ``sender`` selects the
        sender-dependent relay host and default transport."""
        try:
            return self._resolve(address, sender)
        except TableRetry as exc:
            log.warning(f"resolve {address}: {exc}")
            return Resolution(AddressClass.DEFAULT, "", "", address, RESOLVE_FLAG_FAIL)

    def _resolve(self, address: str, sender: str) -> Resolution:
        recipient, is_local = self._peel(address)
        rcpt_domain = recipient.rpartition("@")[2]
        flags = 0
        if not is_local and not self._valid_domain(rcpt_domain):
            return Resolution(AddressClass.DEFAULT, "", "", recipient, RESOLVE_CLASS_DEFAULT | RESOLVE_FLAG_ERROR)
        if self._routed(recipient):
            flags |= RESOLVE_FLAG_ROUTED
        blame: str
        nexthop = rcpt_domain
        if is_local:
            cls = AddressClass.LOCAL
            transport, blame = self.local_transport, "local_transport"
        elif self.alias_domains is not None and self.alias_domains.match(rcpt_domain):
            cls = AddressClass.ALIAS
            transport, blame = ERROR_TRANSPORT, "virtual_alias_domains"
            nexthop = "5.1.1 User unknown" + (" in virtual alias table" if self.show_table else "")
        elif self.mailbox_domains is not None and self.mailbox_domains.match(rcpt_domain):
            cls = AddressClass.VIRTUAL
            transport, blame = self.virtual_transport, "virtual_transport"
        else:
            if self.relay_domains is not None and self.relay_domains.match(rcpt_domain):
                cls = AddressClass.RELAY
                transport, blame = self.relay_transport, "relay_transport"
            else:
                cls = AddressClass.DEFAULT
                transport, blame = self.default_transport, "default_transport"
                if self.sender_transport:
                    found = self.sender_transport.find(sender or self.transport_null_key)
                    if found is not None:
                        transport, blame = found.value, "sender_dependent_default_transport_maps"
            relay = None
            if self.sender_relayhost:
                found = self.sender_relayhost.find(sender or self.relayhost_null_key)
                if found is not None and found.value:
                    relay = found.value
            if relay is not None:
                nexthop = relay
            elif self.relayhost:
                nexthop = self.relayhost
        transport, sep, destination = transport.partition(":")
        if sep and destination:
            nexthop = destination
        flags |= cls.value
        if not transport:
            log.warning(f"parameter {blame}: null transport is not allowed")
            return Resolution(cls, "", "", recipient, flags | RESOLVE_FLAG_FAIL)
        route = Route(transport, nexthop)
        if self.transport_maps.tables:
            found_route = self.transport_maps.lookup(recipient, rcpt_domain, route)
            if found_route is not None:
                route = found_route
        return Resolution(cls, route.transport, route.nexthop, recipient, flags)

