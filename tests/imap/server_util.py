"""A real imapd service on 127.0.0.1 for tests.

:class:`ImapServer` writes a main.cf into a temporary directory (a
``texthash:`` password table and a ``userdb_maps`` table that put the test
user's Maildir in the temporary directory) and runs
``mailhorn.imap.server.serve`` as a :class:`tests.helpers.service.ThreadedService`
(a listener on 127.0.0.1, an event loop of its own thread), so blocking
clients (imaplib, raw sockets, mbsync) can talk to it. Logs go to
``maillog_file``; :meth:`ImapServer.wait_log` polls it so no test depends
on timing.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, cast

from mailhorn import log
from mailhorn.config.load import load
from mailhorn.config.mastercf import MasterWarning, parse_entry
from mailhorn.imap.server import serve
from mailhorn.runtime import Runtime
from tests.helpers.service import LineClient, ThreadedService, log_records, wait_until

USER = "joao@example.com"
PASSWORD = "parola secreta"


class ImapServer(ThreadedService):
    """One imapd service running in a background thread."""

    def __init__(self, tmp_path: Path, main_cf: dict[str, str] | None = None, *,
                 master_line: str = "imap inet n - n - - imapd", users: int = 1,
                 maildir: Path | None = None) -> None:
        self.tmp = tmp_path
        self.maildir = maildir or tmp_path / "mail" / "Maildir"
        self.maillog = tmp_path / "maillog"
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
        self.start(lambda listener: serve(listener, self.config, cast(Runtime, cast(Any, None)), self.service),
                   backlog=64)

    def raw(self) -> Raw:
        """A raw client connected to the service, closed by :meth:`stop`."""
        return self.track(Raw(self.port))

    def logs(self) -> list[tuple[str, str]]:
        """(program, text) of each log record."""
        return log_records(self.maillog)

    def wait_log(self, pattern: str, timeout: float = 15.0) -> tuple[str, str]:
        return wait_until(self.logs, lambda record: f"{record[0]}: {record[1]}", pattern, timeout)


class Raw(LineClient):
    """A line-oriented raw IMAP client for transcripts."""

    def __init__(self, port: int, timeout: float = 15.0, sock: socket.socket | None = None) -> None:
        super().__init__(port, timeout=timeout, sock=sock)

    def line(self) -> bytes:
        return self.read_line()

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


def chown_tree(path: Path, uid: int = 65534) -> None:
    for dirpath, _dirs, files in os.walk(path):
        os.chown(dirpath, uid, uid)
        for name in files:
            os.chown(os.path.join(dirpath, name), uid, uid)
