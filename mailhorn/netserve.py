"""Accepting connections for the network services (smtpd, imapd, pop3d).

Two ways, both serving until the task running them is cancelled; then they
stop accepting, give the open sessions ``grace`` seconds to end by
themselves, cancel those still running and wait for them once more. The
listening socket stays open: it belongs to the master.

* :func:`serve_in_loop`, for plaintext TCP listeners: the event loop
  accepts (in C, with uvloop) and hands each connection to ``handle`` as a
  :class:`~mailhorn.smtpd.stream.Connection` that is already reading. An
  accept in Python cost a socket object, several system calls and a few
  dozen calls per connection, once per message for a client that sends one
  message per session. Out of descriptors, libuv accepts and closes the
  waiting connections (their clients see the connection closed and try
  again later) instead of leaving them queued. A listener the loop gave up
  on (uvloop closes it when ``accept()`` reports another error) is started
  again after :data:`RESTART_CHECK` seconds at most, with a warning.
* :func:`accept_loop`, for everything else (TLS wrapper mode, where the
  handshake comes first; unix-domain listeners): ``handle(sock, peer)``
  gets the accepted socket. A failed ``accept()`` is logged and retried
  after a short pause rather than ending the service.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any, Final

from mailhorn import log
from mailhorn.master.listeners import BACKLOG
from mailhorn.smtpd.stream import Connection

__all__ = ["RESTART_CHECK", "accept_loop", "in_loop_capable", "serve_in_loop"]

#: What runs one accepted socket: ``handle(sock, peer_address)``.
Handler = Callable[[socket.socket, Any], Coroutine[Any, Any, None]]
#: What runs one connection the event loop accepted.
ConnectionHandler = Callable[[Connection], Coroutine[Any, Any, None]]

#: Seconds between two checks that the event loop still accepts.
RESTART_CHECK: Final = 1.0


def in_loop_capable(listener: socket.socket) -> bool:
    """Whether :func:`serve_in_loop` can serve ``listener`` (TCP over IPv4 or IPv6)."""
    return listener.family in (socket.AF_INET, socket.AF_INET6) and listener.type == socket.SOCK_STREAM


async def serve_in_loop(listener: socket.socket, handle: ConnectionHandler, grace: float) -> None:
    """Serve plaintext connections on ``listener``, accepted by the event loop (see the module doc)."""
    loop = asyncio.get_running_loop()
    sessions: set[asyncio.Task[None]] = set()

    def made(conn: Connection) -> None:
        task = loop.create_task(handle(conn))
        sessions.add(task)
        task.add_done_callback(sessions.discard)

    async def start() -> asyncio.AbstractServer:
        # A duplicate of the master's socket: closing the server closes
        # only the duplicate.
        return await loop.create_server(lambda: Connection(made), sock=listener.dup(), backlog=BACKLOG)

    server = await start()
    try:
        while True:
            await asyncio.sleep(RESTART_CHECK)
            if not server.is_serving():
                log.warning(f"accept connection on {_where(listener)}: the listener stopped; starting it again")
                server.close()
                server = await start()
    finally:
        server.close()
        await _finish(sessions, grace)


async def accept_loop(listener: socket.socket, handle: Handler, grace: float) -> None:
    """Serve connections on ``listener`` until cancelled (see the module doc)."""
    loop = asyncio.get_running_loop()
    listener.setblocking(False)
    sessions: set[asyncio.Task[None]] = set()
    try:
        while True:
            try:
                conn_sock, peer = await loop.sock_accept(listener)
            except OSError as exc:
                log.warning(f"accept connection: {exc.strerror or exc}")
                await asyncio.sleep(0.1)
                continue
            task = asyncio.create_task(handle(conn_sock, peer))
            sessions.add(task)
            task.add_done_callback(sessions.discard)
    finally:
        await _finish(sessions, grace)


async def _finish(sessions: set[asyncio.Task[None]], grace: float) -> None:
    if sessions:
        _done, pending = await asyncio.wait(set(sessions), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace)


def _where(listener: socket.socket) -> str:
    try:
        address = listener.getsockname()
    except OSError:
        return "?"
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
