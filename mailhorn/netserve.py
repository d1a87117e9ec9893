"""The accept loop shared by the network services (smtpd, imapd, pop3d).

:func:`accept_loop` accepts connections on a listening socket the master
bound and runs one task per connection until it is cancelled; then it stops
accepting, gives the open sessions ``grace`` seconds to end by themselves,
cancels those still running and waits for them once more. A failed
``accept()`` (EMFILE, a connection reset before it was accepted) is logged
and retried after a short pause rather than ending the service.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from mailhorn import log

#: What runs one accepted connection: ``handle(sock, peer_address)``.
Handler = Callable[[socket.socket, Any], Coroutine[Any, Any, None]]


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
        if sessions:
            _done, pending = await asyncio.wait(set(sessions), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=grace)
