"""One network service of mailhorn running in the test's process, and raw clients for it.

The smtpd, imapd and pop3d harnesses (``tests/smtpd/server_harness.py``,
``tests/imap/server_util.py``, ``tests/pop3/harness.py``) each write their
own main.cf and build what their service needs; what they share is here:

* :class:`ThreadedService` holds a listening socket on 127.0.0.1 (a port of
  the kernel's choice, held from the start: :func:`tests.helpers.ports.listening_socket`)
  and runs the service's ``serve`` coroutine on it in an event loop of its own
  thread, so blocking clients (smtplib, imaplib, poplib, swaks, mbsync, raw
  sockets) can talk to it. :meth:`ThreadedService.stop` closes the clients,
  cancels the service, and raises what ended it if that was not the
  cancellation;
* :func:`log_records` reads the records of ``maillog_file`` as
  ``(program, text)``, and :func:`wait_until` polls for one, so no test
  depends on timing;
* :class:`LineClient` is a client on a plain socket that reads CRLF lines.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tests.helpers.ports import listening_socket

__all__ = ["LineClient", "ThreadedService", "log_records", "wait_until"]

T = TypeVar("T")
C = TypeVar("C", bound="LineClient")

#: A record of ``maillog_file``: date, host, ``NAME/PROGRAM[PID]: TEXT``.
_LOG_RE = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ \S+?/(\S+)\[\d+\]: (.*)$")


def log_records(maillog: Path) -> list[tuple[str, str]]:
    """(program, text) of each record of a ``maillog_file``; the program is what
    follows the first ``/`` of the syslog name (``smtpd``, ``imap-login``)."""
    if not maillog.exists():
        return []
    return [(m.group(1), m.group(2)) for line in maillog.read_text(errors="replace").splitlines()
            if (m := _LOG_RE.match(line))]


def wait_until(items: Callable[[], list[T]], text: Callable[[T], str], pattern: str,
               timeout: float = 15.0) -> T:
    """The first of ``items()`` whose ``text`` matches the regular expression, polling for it."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        found = items()
        for item in found:
            if rx.search(text(item)):
                return item
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line matches {pattern!r}:\n" + "\n".join(text(i) for i in found))
        time.sleep(0.02)


class LineClient:
    """A client on a plain socket that reads CRLF-terminated lines."""

    def __init__(self, port: int, source: str | None = None, timeout: float = 15.0,
                 sock: socket.socket | None = None) -> None:
        if sock is None:
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                            source_address=(source, 0) if source else None)
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        """The next line, without its CRLF; EOFError when the server closed first."""
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; pending {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def close(self) -> None:
        self.sock.close()


class ThreadedService:
    """A service's ``serve`` coroutine on a loopback listener, in a thread of its own.

    ``serve`` is called with the listening socket once the loop runs; a
    subclass builds its configuration first and then calls :meth:`start`.
    """

    listener: socket.socket
    port: int

    def start(self, serve: Callable[[socket.socket], Coroutine[Any, Any, None]], backlog: int = 128) -> None:
        self.listener = listening_socket(backlog=backlog)
        self.port = self.listener.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self._serve = serve
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._clients: list[LineClient] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def track(self, client: C) -> C:
        """Remember a client so that :meth:`stop` closes it."""
        self._clients.append(client)
        return client

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._task = asyncio.current_task()
            self._ready.set()
            await self._serve(self.listener)

        try:
            self.loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # surfaced by stop()
            self._error = exc
            self._ready.set()
        finally:
            self.loop.close()

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        task = self._task
        if task is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(task.cancel)
        self._thread.join(30)
        self.listener.close()
        if self._error is not None:
            raise self._error
