"""A real imapd service on 127.0.0.1 for tests.

:class:`ImapServer` writes a main.cf into a temporary directory (a
``texthash:`` password table and a ``userdb_maps`` table that put the test
user's Maildir in the temporary directory), binds 127.0.0.1:0 and runs
``mailhorn.imap.server.serve`` in an event loop of its own thread, so
blocking clients (imaplib, raw sockets, mbsync) can talk to it. Logs go to
``maillog_file``; :meth:`ImapServer.wait_log` polls it so no test depends
on timing.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, cast

from mailhorn import log
from mailhorn.config.load import load
from mailhorn.config.mastercf import MasterWarning, parse_entry
from mailhorn.imap.server import serve
from mailhorn.runtime import Runtime

USER = "joao@example.com"
PASSWORD = "parola secreta"
_LOG_RE = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ \S+?/(\S+)\[\d+\]: (.*)$")


class ImapServer:
    """One imapd service running in a background thread."""

    def __init__(self, tmp_path: Path, main_cf: dict[str, str] | None = None, *,
                 master_line: str = "imap inet n - n - - imapd", users: int = 1,
                 maildir: Path | None = None) -> None:
        self.tmp = tmp_path
        self.maildir = maildir or tmp_path / "mail" / "Maildir"
        self.maillog = tmp_path / "maillog"
        self.clients: list[Raw] = []
        uid = 65534
        passdb = tmp_path / "passdb"
        userdb = tmp_path / "userdb"
        pw_lines, ud_lines = [], []
        self.maildirs: dict[str, Path] = {}
        for i in range(users):
            user = USER if i == 0 else f"user{i}@example.com"
            maildir = self.maildir if i == 0 else tmp_path / f"mail{i}" / "Maildir"
            self.maildirs[user] = maildir
            pw_lines.append(f"{user} {{PLAIN}}{PASSWORD}")
            ud_lines.append(f"{user} uid={uid} gid={uid} home={maildir.parent} mail=maildir:{maildir}")
        passdb.write_text("\n".join(pw_lines) + "\n")
        userdb.write_text("\n".join(ud_lines) + "\n")
        settings = {
            "maillog_file": str(self.maillog),
            "myhostname": "mail.example.test",
            "passdb_maps": f"texthash:{passdb}",
            "userdb_maps": f"texthash:{userdb}",
            "auth_failure_delay": "0s",
            "auth_mechanisms": "plain login",
        }
        settings.update(main_cf or {})
        (tmp_path / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        log.setup("imapd", maillog_file=str(self.maillog), syslog_path=None)
        warnings: list[MasterWarning] = []
        self.service = parse_entry(master_line, str(tmp_path / "master.cf"), 1, warnings)
        self.config = load(str(tmp_path)).with_overrides(self.service.overrides)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._task = asyncio.current_task()
            self._ready.set()
            await serve(self.listener, self.config, cast(Runtime, cast(Any, None)), self.service)

        try:
            self.loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass
        finally:
            self.loop.close()

    def raw(self) -> Raw:
        """A raw client connected to the service, closed by :meth:`stop`."""
        client = Raw(self.port)
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        task = self._task
        if task is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(task.cancel)
        self._thread.join(30)
        self.listener.close()

    def logs(self) -> list[tuple[str, str]]:
        """(program, text) of each log record."""
        if not self.maillog.exists():
            return []
        out = []
        for line in self.maillog.read_text(errors="replace").splitlines():
            m = _LOG_RE.match(line)
            if m:
                out.append((m.group(1), m.group(2)))
        return out

    def wait_log(self, pattern: str, timeout: float = 15.0) -> tuple[str, str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for program, text in self.logs():
                if rx.search(f"{program}: {text}"):
                    return program, text
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line matches {pattern!r}:\n"
                                     + "\n".join(f"{p}: {t}" for p, t in self.logs()))
            time.sleep(0.02)


class Raw:
    """A line-oriented raw IMAP client for transcripts."""

    def __init__(self, port: int, timeout: float = 15.0, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def until_tagged(self, tag: bytes) -> list[bytes]:
        """Lines up to and including the one starting with ``tag``."""
        out = []
        while True:
            line = self.line()
            out.append(line)
            if line.startswith(tag + b" "):
                return out

    def cmd(self, tag: bytes, text: bytes) -> list[bytes]:
        self.send(tag + b" " + text + b"\r\n")
        return self.until_tagged(tag)

    def closed(self) -> bool:
        """Whether the server closed the connection (reads to EOF)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


def chown_tree(path: Path, uid: int = 65534) -> None:
    for dirpath, _dirs, files in os.walk(path):
        os.chown(dirpath, uid, uid)
        for name in files:
            os.chown(os.path.join(dirpath, name), uid, uid)
