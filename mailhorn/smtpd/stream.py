"""One client connection as an asyncio protocol with explicit buffers.

smtpd does not use asyncio's StreamReader because STARTTLS must throw away
every byte that arrived in plaintext after the STARTTLS line (RFC 3207
§4.2; CVE-2011-0411): here the receive buffer is ours, so
:meth:`Connection.start_tls` can empty it before the handshake and nothing
received before the handshake is ever read as if it came through TLS.

Reading: :meth:`Connection.read` returns whatever arrived (or ``b""`` at end
of input), or raises `TimeoutError` when nothing came before the caller's
deadline; the transport is paused while more than ``HIGH_WATER`` octets
wait, so a fast client cannot make us buffer without bound (design.md §5
rule 7).  Writing: :meth:`Connection.write` then :meth:`Connection.drain`,
which waits while the transport's own buffer is full.

Deadlines cost one timer per connection, not one per read: the timer is
armed for the first deadline and, when it fires, re-armed for the latest
deadline a reader asked for if that one lies later (a session moves its
deadline forward at every command and content line, Postfix's
``smtpd_per_record_deadline``).

Parameters read: none.  Errors: `ConnectionError` from :meth:`drain` when
the peer is gone; `ssl.SSLError` or `OSError` from the TLS handshake;
`TimeoutError` when a deadline given by the caller passes.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Final, cast

__all__ = ["HIGH_WATER", "Connection", "accept_connection"]

#: Pause reading when this much received input waits to be consumed.
HIGH_WATER: Final = 256 * 1024


class Connection(asyncio.Protocol):
    """Receive buffer, flow control and TLS upgrade for one SMTP session."""

    def __init__(self, on_made: Callable[[Connection], None] | None = None) -> None:
        #: Called with this connection once the transport is there (an event
        #: loop's server starts the session so).
        self._on_made = on_made
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._buf = bytearray()
        self._eof = False
        self._lost = False
        self._paused = False
        # The reader and the writer waiting, as bare futures: a session
        # waits for input several times per message, and an asyncio.Event
        # costs a waiter list and more calls for each wait.
        self._read_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._in_tls_switch = False
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._timed_out = False
        self._reading = False

    # -- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._wake_reader()
        if len(self._buf) > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake_reader()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._in_tls_switch:
            return
        self._lost = True
        self._eof = True
        self._disarm()
        self._wake_reader()
        self._write_paused = False
        self._wake_drainer()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drainer()

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_drainer(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- reading ----------------------------------------------------------
    @property
    def at_eof(self) -> bool:
        return self._eof and not self._buf

    @property
    def pending(self) -> int:
        """Octets received and not yet read."""
        return len(self._buf)

    async def read(self, deadline: float | None = None) -> bytes:
        """Everything received so far, waiting for some; ``b""`` at end of input.

        ``deadline`` (the event loop's clock): `TimeoutError` when it passes
        while nothing has arrived.
        """
        while not self._buf and not self._eof:
            if deadline is None:
                await self._wait_readable()
                continue
            loop = self._loop
            if loop.time() >= deadline:
                raise TimeoutError
            self._deadline = deadline
            if self._timer is None or deadline < self._timer_at:
                self._arm(loop, deadline)
            self._timed_out = False
            self._reading = True
            try:
                await self._wait_readable()
            finally:
                self._reading = False
            if self._timed_out and not self._buf and not self._eof:
                self._timed_out = False
                raise TimeoutError
        data = bytes(self._buf)
        self._buf.clear()
        if self._paused and self.transport is not None and not self._lost:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def _wait_readable(self) -> None:
        waiter = self._read_waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._read_waiter = None

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        """The timer fired: wake a waiting reader whose deadline has passed,
        or wait on for a later deadline."""
        self._timer = None
        deadline = self._deadline
        if deadline is None or not self._reading:
            return  # the next read arms the timer again
        loop = self._loop
        if loop.time() < deadline:
            self._arm(loop, deadline)
            return
        self._timed_out = True
        self._wake_reader()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- writing ----------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self._lost and not self.transport.is_closing():
            self.transport.write(data)

    @property
    def write_blocked(self) -> bool:
        """Whether :meth:`drain` would wait (the transport's buffer is full)."""
        return self._write_paused

    @property
    def lost(self) -> bool:
        """Whether the connection is gone (:meth:`drain` would raise)."""
        return self._lost

    async def drain(self) -> None:
        if self._lost:
            raise ConnectionResetError("connection lost")
        while self._write_paused:
            waiter = self._drain_waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._drain_waiter = None
        if self._lost:
            raise ConnectionResetError("connection lost")

    # -- TLS ----------------------------------------------------------------
    def ssl_object(self) -> ssl.SSLObject | None:
        if self.transport is None:
            return None
        obj = self.transport.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    async def start_tls(self, context: ssl.SSLContext, timeout: float) -> int:
        """Discard unread plaintext, then do the server side of the TLS
        handshake.  Returns how many plaintext octets were thrown away."""
        assert self.transport is not None
        dropped = len(self._buf)
        self._buf.clear()
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
        loop = asyncio.get_running_loop()
        new = await loop.start_tls(self.transport, self, context, server_side=True,
                                   ssl_handshake_timeout=timeout)
        if new is None:
            raise ConnectionResetError("connection lost during the TLS handshake")
        self.transport = new
        return dropped

    def close(self) -> None:
        self._disarm()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._disarm()
        if self.transport is not None:
            self.transport.abort()


async def accept_connection(sock: socket.socket, context: ssl.SSLContext | None,
                            handshake_timeout: float) -> Connection:
    """Wrap an accepted socket; with ``context`` (wrappermode) the TLS
    handshake happens first."""
    loop = asyncio.get_running_loop()
    conn = Connection()
    if context is None:
        await loop.connect_accepted_socket(lambda: conn, sock)
    else:
        await loop.connect_accepted_socket(lambda: conn, sock, ssl=context,
                                           ssl_handshake_timeout=handshake_timeout)
    return conn
