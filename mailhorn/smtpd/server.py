"""smtpd(8): the accept loop of one SMTP service.

``serve(listener, config, runtime, service)`` runs one master.cf ``smtpd``
service on a socket the master bound and listens on: it accepts
connections and runs a :class:`~mailhorn.smtpd.session.Session` for each,
in the running event loop.  ``config`` already carries the service's ``-o``
overrides.  With ``smtpd_tls_wrappermode = yes`` (smtps) each connection
starts with the TLS handshake.

Shutdown: when the task running ``serve`` is cancelled it stops accepting
at once, gives the open sessions up to ``SHUTDOWN_GRACE`` seconds to end,
then cancels them; a cancelled session aborts its unfinished message, so
nothing half-received is queued and no 250 was given for it.  The
listening socket stays open: it belongs to the master.

The restriction engine is :class:`mailhorn.smtpd.checks.SmtpdChecks` and
the client-name lookups use :mod:`mailhorn.dns`; callers (tests) may pass
their own ``checks`` or ``resolver``.

Parameters read: those of :mod:`mailhorn.smtpd.settings`,
:mod:`mailhorn.smtpd.tls` and the restriction engine.

Errors: `ConfigError` for unusable parameters, before anything is accepted.
"""

from __future__ import annotations

import importlib
import socket
from typing import Final, cast

from mailhorn import log
from mailhorn.config.load import Config
from mailhorn.config.mastercf import Service
from mailhorn.dns.resolver import Resolver
from mailhorn.netserve import accept_loop, in_loop_capable, serve_in_loop
from mailhorn.runtime import Runtime
from mailhorn.smtpd.context import Checks, ServiceContext
from mailhorn.smtpd.peer import PeerResolver
from mailhorn.smtpd.session import Session
from mailhorn.smtpd.stream import Connection, accept_connection

__all__ = ["SHUTDOWN_GRACE", "serve"]

#: Seconds open sessions get to finish after the service is told to stop.
SHUTDOWN_GRACE: Final = 10.0


def _default_checks(config: Config, resolver: Resolver) -> Checks:
    """The restriction engine (mailhorn.smtpd.checks.SmtpdChecks)."""
    checks_module = importlib.import_module("mailhorn.smtpd.checks")
    return cast(Checks, checks_module.SmtpdChecks(config, resolver))


def _address(sockaddr: object) -> tuple[str, str]:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        addr = str(sockaddr[0])
        if addr.startswith("::ffff:") and "." in addr:
            addr = addr[7:]
        return addr, str(sockaddr[1])
    return "", ""


async def serve(listener: socket.socket, config: Config, runtime: Runtime, service: Service, *,
                checks: Checks | None = None, resolver: PeerResolver | None = None) -> None:
    """Accept SMTP clients on ``listener`` until cancelled."""
    dns = Resolver.from_config(config)
    if checks is None:
        checks = _default_checks(config, dns)
    if resolver is None:
        resolver = dns
    ctx = ServiceContext.build(config, runtime, service.name, checks, resolver)
    if not ctx.tls.wrappermode and in_loop_capable(listener):
        await serve_in_loop(listener, lambda conn: _plain_session(ctx, conn), SHUTDOWN_GRACE)
    else:
        await accept_loop(listener, lambda sock, peer: _session(ctx, sock, peer), SHUTDOWN_GRACE)


async def _plain_session(ctx: ServiceContext, conn: Connection) -> None:
    """A session on a connection the event loop accepted."""
    transport = conn.transport
    assert transport is not None
    client_addr, client_port = _address(transport.get_extra_info("peername"))
    server_addr, server_port = _address(transport.get_extra_info("sockname"))
    await Session(ctx, conn, client_addr, client_port, server_addr, server_port).run()


async def _session(ctx: ServiceContext, sock: socket.socket, peer: object) -> None:
    """A session on a socket accepted in Python (TLS wrapper mode: the handshake comes first)."""
    client_addr, client_port = _address(peer)
    try:
        server_addr, server_port = _address(sock.getsockname())
    except OSError:
        server_addr, server_port = "", ""
    sock.setblocking(False)
    context = ctx.tls.context if ctx.tls.wrappermode else None
    try:
        conn = await accept_connection(sock, context, ctx.settings.starttls_timeout)
    except (OSError, TimeoutError, ConnectionError) as exc:
        log.info(f"connect from unknown[{client_addr}]")
        log.info(f"SSL_accept error from unknown[{client_addr}]: {exc}")
        log.info(f"lost connection after CONNECT from unknown[{client_addr}]")
        sock.close()
        return
    await Session(ctx, conn, client_addr, client_port, server_addr, server_port).run()
