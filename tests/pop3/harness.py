"""A real pop3d service on 127.0.0.1 for tests, over real Maildirs.

:class:`Pop3Server` writes a main.cf into a temporary directory with a
``texthash:`` password table and a ``texthash:`` userdb table (Dovecot
fields ``uid= gid= home= mail=maildir:``) for the users given, binds a
listening socket on 127.0.0.1:0 and runs ``mailhorn.pop3.server.serve`` in
an event loop of its own thread, so blocking clients (poplib, getmail,
fetchmail) can talk to it.  Logs go to ``maillog_file``;
:meth:`Pop3Server.logs` gives each record as ``PROGRAM: TEXT`` (``pop3-login: Login: …``,
``pop3(alice): Disconnected: …``) and :meth:`Pop3Server.wait_log` polls it, so no test
depends on timing.

The service does not use the master's shared facilities, so the Runtime
handed over is empty.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import socket
import threading
import time
from pathlib import Path
from typing import cast

from mailhorn import log
from mailhorn.config.load import load
from mailhorn.config.mastercf import MasterWarning, parse_entry
from mailhorn.mailstore import deliver
from mailhorn.pop3.server import serve
from mailhorn.runtime import Runtime

_LOG_RE = re.compile(r"^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ \S+?/(\S+)\[\d+\]: (.*)$")


def mail_ids() -> tuple[int, int]:
    """A non-root uid/gid for userdb entries (the service refuses root)."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


class Pop3Server:
    """pop3d on an ephemeral port with its own users and Maildirs."""

    def __init__(self, tmp_path: Path, users: dict[str, str] | None = None,
                 main_cf: dict[str, str] | None = None, lock_wait: float = 0.2,
                 raw_main_cf: bool = False, mail_root: Path | None = None) -> None:
        self.dir = tmp_path
        conf = tmp_path / "etc"
        conf.mkdir(exist_ok=True)
        self.maillog = tmp_path / "maillog"
        self.maildirs: dict[str, Path] = {}
        uid, gid = mail_ids()
        passwd = tmp_path / "pop3-passwd"
        userdb = tmp_path / "pop3-userdb"
        plines, ulines = [], []
        for name, password in (users or {}).items():
            home = (mail_root or tmp_path / "mail") / name
            self.maildirs[name] = home / "Maildir"
            plines.append(f"{name} {{PLAIN}}{password}\n")
            ulines.append(f"{name} uid={uid} gid={gid} home={home} mail=maildir:{home}/Maildir\n")
        passwd.write_text("".join(plines))
        userdb.write_text("".join(ulines))
        values = {
            "myhostname": "pop.example.test",
            "maillog_file": str(self.maillog),
            "auth_failure_delay": "0",
        }
        if not raw_main_cf:
            values["passdb_maps"] = f"texthash:{passwd}"
            values["userdb_maps"] = f"texthash:{userdb}"
        values.update(main_cf or {})
        (conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in values.items()))
        self.config = load(str(conf))
        log.setup("pop3d", maillog_file=str(self.maillog), syslog_path=None)
        warnings: list[MasterWarning] = []
        self.service = parse_entry("pop3 inet n - n - - pop3d", "master.cf", 1, warnings)
        self.lock_wait = lock_wait
        self._clients: list[RawClient] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port: int = self.listener.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._task = asyncio.current_task()
            self._ready.set()
            await serve(self.listener, self.config, cast(Runtime, None), self.service, lock_wait=self.lock_wait)

        try:
            self.loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # surfaced by stop()
            self._error = exc
            self._ready.set()
        finally:
            self.loop.close()

    def client(self, source: str = "127.0.0.1") -> RawClient:
        """A raw client connected to the service, closed by :meth:`stop`."""
        c = RawClient(self.port, source)
        self._clients.append(c)
        return c

    def stop(self) -> None:
        for c in self._clients:
            c.close()
        task = self._task
        if task is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(task.cancel)
        self._thread.join(30)
        self.listener.close()
        if self._error is not None:
            raise self._error

    def deliver(self, user: str, message: bytes) -> Path:
        """Put a message into the user's Maildir as the delivery agents do."""
        return deliver(self.maildirs[user], [message]).path

    def files(self, user: str) -> list[str]:
        """The message files of the user's INBOX (new/ and cur/)."""
        box = self.maildirs[user]
        return sorted(p.name for sub in ("new", "cur") if (box / sub).is_dir() for p in (box / sub).iterdir())

    def logs(self) -> list[str]:
        if not self.maillog.exists():
            return []
        return [f"{m.group(1)}: {m.group(2)}" for line in self.maillog.read_text(errors="replace").splitlines()
                if (m := _LOG_RE.match(line))]

    def wait_log(self, pattern: str, timeout: float = 15.0) -> str:
        """The first log line matching the regular expression, waiting for it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.logs():
                if rx.search(line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line matches {pattern!r}:\n" + "\n".join(self.logs()))
            time.sleep(0.02)


class RawClient:
    """A POP3 client on a plain socket, for exact bytes."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = 15.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed; pending {self.buf!r}")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def multiline(self) -> bytes:
        out = b""
        while True:
            line = self.line()
            out += line
            if line == b".\r\n":
                return out

    def command(self, text: str) -> bytes:
        self.send(text.encode() + b"\r\n")
        return self.line()

    def at_eof(self) -> bool:
        while True:
            data = self.sock.recv(65536)
            if not data:
                return True
            self.buf += data

    def close(self) -> None:
        self.sock.close()
