"""One client connection: bytes in and out with timeouts, and STARTTLS.

:class:`Connection` is the I/O half of the SMTP/LMTP client; the dialogue
is in :mod:`mailhorn.delivery.smtp_session`.  It owns its receive buffer so
that STARTTLS can throw away whatever plaintext the server sent after its
``220`` reply before the handshake starts (the client side of the
CVE-2011-0411 class: such bytes must never be read as replies under TLS).

Errors: :class:`ConnectionLost` (the peer closed or reset the connection),
:class:`ConnectionTimeout` (a read, write or handshake took longer than its
time limit), ``OSError`` from :func:`connect`, ``ssl.SSLError`` from
:meth:`Connection.starttls`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable
from typing import TypeVar

from mailhorn.delivery.mx import Server

__all__ = ["Connection", "ConnectionLost", "ConnectionTimeout", "connect"]


class ConnectionLost(Exception):
    """The server closed the connection."""


class ConnectionTimeout(Exception):
    """A time limit passed."""


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.closed = False
        self.transport: asyncio.BaseTransport | None = None
        self._wake: asyncio.Event = asyncio.Event()
        self.lost = asyncio.Event()
        self._can_write = asyncio.Event()
        self._can_write.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._wake.set()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost.set()
        self._wake.set()
        self._can_write.set()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def arm(self) -> None:
        """Forget earlier wake-ups; call before checking for data, then :meth:`wait_data`."""
        self._wake.clear()

    async def wait_data(self) -> None:
        # Not cleared here: under wait_for this runs as a task, one loop turn
        # late, and would forget data that arrived meanwhile.
        await self._wake.wait()

    async def wait_writable(self) -> None:
        await self._can_write.wait()


T = TypeVar("T")


async def _within(timeout: float, aw: Awaitable[T]) -> T:
    """Await ``aw`` for at most ``timeout`` seconds (0: no limit)."""
    if timeout > 0:
        try:
            return await asyncio.wait_for(aw, timeout)
        except TimeoutError:
            raise ConnectionTimeout() from None
    return await aw


class Connection:
    """A connected stream to one server."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol, server: Server) -> None:
        self.transport: asyncio.Transport = transport
        self.protocol = protocol
        self.server = server
        self.tls: ssl.SSLObject | None = None
        self._handed_off = False

    @property
    def closed(self) -> bool:
        return self.protocol.closed or self.transport.is_closing()

    def take(self) -> bytes:
        """Everything received and not yet taken."""
        data = bytes(self.protocol.buf)
        self.protocol.buf.clear()
        return data

    async def receive(self, timeout: float) -> bytes:
        """Wait for more bytes (at least one); ConnectionLost at end of stream."""
        while True:
            self.protocol.arm()
            if self.protocol.buf:
                break
            if self.protocol.closed:
                raise ConnectionLost()
            await _within(timeout, self.protocol.wait_data())
        return self.take()

    async def send(self, data: bytes, timeout: float) -> None:
        """Write and wait until the kernel buffers drain below the high-water mark."""
        if self.closed:
            raise ConnectionLost()
        self.transport.write(data)
        # A close seen after the write is left for the next read to report:
        # what was written may have arrived (the end of data, above all).
        await _within(timeout, self.protocol.wait_writable())

    def discard_input(self) -> int:
        """Drop buffered input (plaintext after the STARTTLS 220); returns its size."""
        size = len(self.protocol.buf)
        self.protocol.buf.clear()
        return size

    async def starttls(self, context: ssl.SSLContext, server_hostname: str | None, timeout: float) -> None:
        """Handshake on the open connection; what arrives afterwards is decrypted."""
        self.discard_input()
        loop = asyncio.get_running_loop()
        # From here on the socket's events go to the TLS layer; a failed
        # handshake closes the socket without telling our protocol.
        self._handed_off = True
        new = await loop.start_tls(self.transport, self.protocol, context, server_hostname=server_hostname,
                                   ssl_handshake_timeout=timeout if timeout > 0 else None)
        if new is None:
            raise ConnectionLost()
        self.transport = new
        self._handed_off = False
        obj = new.get_extra_info("ssl_object")
        self.tls = obj if isinstance(obj, ssl.SSLObject) else None
        # Anything that came between the 220 and the handshake is gone with it.
        self.discard_input()

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self.transport.abort()

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """Close (if not yet) and wait until the socket is really closed, so nothing
        is left open when the event loop ends (a TLS close needs a few loop turns)."""
        if not self.transport.is_closing():
            self.transport.close()
        if self._handed_off:
            for _ in range(3):
                await asyncio.sleep(0)
            return
        try:
            await asyncio.wait_for(self.protocol.lost.wait(), timeout)
        except TimeoutError:
            self.transport.abort()
            await asyncio.sleep(0)


async def connect(server: Server, *, timeout: float, bind4: str = "", bind6: str = "") -> Connection:
    """Open a TCP (or UNIX-domain) connection to ``server`` within ``timeout`` seconds
    (0: the system's own limit), from ``bind4``/``bind6`` when set (smtp_bind_address)."""
    loop = asyncio.get_running_loop()
    protocol = _Protocol()
    if server.unix:
        coro = loop.create_unix_connection(lambda: protocol, server.addr)
    else:
        local: tuple[str, int] | None = None
        family = socket.AF_INET6 if ":" in server.addr else socket.AF_INET
        bind = bind6 if family == socket.AF_INET6 else bind4
        if bind:
            local = (bind, 0)
        coro = loop.create_connection(lambda: protocol, server.addr, server.port, family=family, local_addr=local)
    try:
        transport, _ = await _within(timeout, coro)
    except ConnectionTimeout:
        raise TimeoutError("Connection timed out") from None
    # No isinstance() check: uvloop's transports are not asyncio.Transport
    # subclasses, though they behave as one.
    return Connection(transport, protocol, server)
