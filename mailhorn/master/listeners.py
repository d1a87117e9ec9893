"""Where network services listen, and binding those sockets.

An ``inet`` entry's name is ``port``, a service name (``smtp``,
``submission``, ``smtps``), ``host:port``, ``[::1]:port`` or ``*:port``.
A port name is looked up in ``known_tcp_ports`` first (so ``smtps`` is 465
whatever /etc/services says), then in /etc/services. Without a host the
service listens on ``inet_interfaces`` (``all``, ``loopback-only``, or
addresses and host names), limited to the IP versions of ``inet_protocols``
(``ipv4``, ``ipv6``, ``all``); ``all`` means the wildcard address of each
enabled family, the IPv6 one with ``IPV6_V6ONLY`` so both can coexist.

A ``unix`` entry for a network command listens on
``queue_directory/private/NAME`` (private ``y``) or ``public/NAME``.

Every socket is identified by an :class:`Endpoint`, so that a reload keeps
the sockets whose endpoint did not change and binds only the new ones.

Errors: :class:`BindError` with Postfix's wording, e.g. ``bind 127.0.0.1
port 25: Address already in use``, or ``unknown service: NAME/tcp``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass

from mailhorn.config.derived import enabled_families
from mailhorn.config.load import Config
from mailhorn.config.maincf import split_list
from mailhorn.config.mastercf import Service

#: listen(2) backlog, as Postfix's default for inet services.
BACKLOG = 100


class BindError(Exception):
    """A listener could not be set up; the text is what Postfix logs after ``fatal:``."""


@dataclass(frozen=True)
class Endpoint:
    """One listening address: an (address, port) of a family, or a unix path."""

    family: int
    address: str
    port: int = 0

    def describe(self) -> str:
        """How Postfix names the endpoint in messages (``127.0.0.1 port 25``, a path)."""
        if self.family == socket.AF_UNIX:
            return self.address
        return f"{self.address} port {self.port}"


def known_ports(config: Config) -> dict[str, int]:
    """``known_tcp_ports`` as a name -> number table (``smtps=submissions=465``)."""
    table: dict[str, int] = {}
    for item in split_list(config.get("known_tcp_ports")):
        names = [n.strip() for n in item.split("=")]
        if len(names) < 2 or not names[-1].isdigit():
            continue
        for name in names[:-1]:
            table[name] = int(names[-1])
    return table


def resolve_port(name: str, config: Config) -> int:
    """A port number from a number or a service name."""
    if name.isdigit():
        port = int(name)
        if port > 65535:
            raise BindError(f"bad port number: {name}")
        return port
    known = known_ports(config).get(name)
    if known is not None:
        return known
    try:
        return socket.getservbyname(name, "tcp")
    except OSError:
        raise BindError(f"unknown service: {name}/tcp") from None


def _host_addresses(host: str, families: tuple[int, ...]) -> list[tuple[int, str]]:
    """The addresses of a literal or a host name, in the enabled families."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        if family not in families:
            raise BindError(f"{host}: address family not enabled in inet_protocols")
        return [(family, str(literal))]
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BindError(f"{host}: {exc.strerror}") from None
    found: list[tuple[int, str]] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        item = (int(family), str(sockaddr[0]))
        if family in families and item not in found:
            found.append(item)
    if not found:
        raise BindError(f"{host}: no address in the families of inet_protocols")
    return found


def interface_addresses(config: Config) -> list[tuple[int, str]]:
    """The addresses ``inet_interfaces`` names (wildcards for ``all``)."""
    families = enabled_families(config.get("inet_protocols"))
    interfaces = [i.lower() for i in config.list("inet_interfaces")]
    out: list[tuple[int, str]] = []
    for item in interfaces or ["all"]:
        if item == "all":
            candidates: list[tuple[int, str]] = [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]
        elif item in ("loopback-only", "localhost"):
            candidates = [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
        else:
            candidates = _host_addresses(item.strip("[]"), families)
        for family, address in candidates:
            if family in families and (family, address) not in out:
                out.append((family, address))
    return out


def endpoints(service: Service, config: Config) -> list[Endpoint]:
    """Where a network service listens (see the module docstring)."""
    if service.type == "unix":
        directory = "private" if service.private else "public"
        return [Endpoint(socket.AF_UNIX, os.path.join(config.get("queue_directory"), directory, service.name))]
    port = resolve_port(service.port, config)
    if service.host is None:
        addresses = interface_addresses(config)
    else:
        families = enabled_families(config.get("inet_protocols"))
        addresses = _host_addresses(service.host, families)
    return [Endpoint(family, address, port) for family, address in addresses]


def bind_private_unix(path: str, kind: socket.SocketKind) -> socket.socket:
    """A unix socket bound at ``path`` (a stale one removed first) whose file is
    mode 0600 from the moment it exists: the umask is 0177 around the bind, so
    no one else can connect in between. Not yet listening."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, kind)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    return sock


def bind(endpoint: Endpoint, owner: tuple[int, int] | None = None) -> socket.socket:
    """A listening, non-blocking socket for ``endpoint``.

    ``owner`` (uid, gid) is given to a unix socket's file when the master runs
    as root, so that the services can use it after dropping privileges.
    """
    sock = socket.socket(endpoint.family, socket.SOCK_STREAM)
    try:
        if endpoint.family == socket.AF_UNIX:
            try:
                os.unlink(endpoint.address)
            except FileNotFoundError:
                pass
            sock.bind(endpoint.address)
            os.chmod(endpoint.address, 0o666)
            if owner is not None:
                os.chown(endpoint.address, owner[0], owner[1])
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if endpoint.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((endpoint.address, endpoint.port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise BindError(f"bind {endpoint.describe()}: {os.strerror(exc.errno or 0)}") from None
    return sock


@dataclass
class ListenerSet:
    """The master's listening sockets, by endpoint."""

    sockets: dict[Endpoint, socket.socket]

    @classmethod
    def empty(cls) -> ListenerSet:
        return cls({})

    def rebind(self, wanted: list[Endpoint], owner: tuple[int, int] | None) -> ListenerSet:
        """A set for ``wanted``: sockets of unchanged endpoints reused, new ones bound.

        On a :class:`BindError` the sockets bound here are closed and the
        current set is untouched.
        """
        out: dict[Endpoint, socket.socket] = {}
        fresh: list[socket.socket] = []
        try:
            for endpoint in wanted:
                if endpoint in out:
                    continue
                existing = self.sockets.get(endpoint)
                if existing is not None:
                    out[endpoint] = existing
                    continue
                sock = bind(endpoint, owner)
                fresh.append(sock)
                out[endpoint] = sock
        except BindError:
            for sock in fresh:
                sock.close()
            raise
        return ListenerSet(out)

    def close_except(self, keep: ListenerSet) -> None:
        """Close the sockets not in ``keep`` (removing unix socket files)."""
        kept = {id(s) for s in keep.sockets.values()}
        for endpoint, sock in self.sockets.items():
            if id(sock) in kept:
                continue
            sock.close()
            if endpoint.family == socket.AF_UNIX:
                try:
                    os.unlink(endpoint.address)
                except OSError:
                    pass
