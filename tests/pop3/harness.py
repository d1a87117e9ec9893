"""A real pop3d service on 127.0.0.1 for tests, over real Maildirs.

:class:`Pop3Server` writes a main.cf into a temporary directory with a
``texthash:`` password table and a ``texthash:`` userdb table (Dovecot
fields ``uid= gid= home= mail=maildir:``) for the users given, and runs
``mailhorn.pop3.server.serve`` as a :class:`tests.helpers.service.ThreadedService`
(a listener on 127.0.0.1, an event loop of its own thread), so blocking
clients (poplib, getmail, fetchmail) can talk to it.  Logs go to ``maillog_file``;
:meth:`Pop3Server.logs` gives each record as ``PROGRAM: TEXT`` (``pop3-login: Login: …``,
``pop3(alice): Disconnected: …``) and :meth:`Pop3Server.wait_log` polls it, so no test
depends on timing.

The service does not use the master's shared facilities, so the Runtime
handed over is empty.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import cast

from mailhorn import log
from mailhorn.config.load import load
from mailhorn.config.mastercf import MasterWarning, parse_entry
from mailhorn.mailstore import deliver
from mailhorn.pop3.server import serve
from mailhorn.runtime import Runtime
from tests.helpers.service import LineClient, ThreadedService, log_records, wait_until


def mail_ids() -> tuple[int, int]:
    """A non-root uid/gid for userdb entries (the service refuses root)."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


class Pop3Server(ThreadedService):
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
        self.start(lambda listener: serve(listener, self.config, cast(Runtime, None), self.service,
                                          lock_wait=self.lock_wait))

    def client(self, source: str = "127.0.0.1") -> RawClient:
        """A raw client connected to the service, closed by :meth:`stop`."""
        return self.track(RawClient(self.port, source))

    def deliver(self, user: str, message: bytes) -> Path:
        """Put a message into the user's Maildir as the delivery agents do."""
        return deliver(self.maildirs[user], [message]).path

    def files(self, user: str) -> list[str]:
        """The message files of the user's INBOX (new/ and cur/)."""
        box = self.maildirs[user]
        return sorted(p.name for sub in ("new", "cur") if (box / sub).is_dir() for p in (box / sub).iterdir())

    def logs(self) -> list[str]:
        return [f"{program}: {text}" for program, text in log_records(self.maillog)]

    def wait_log(self, pattern: str, timeout: float = 15.0) -> str:
        """The first log line matching the regular expression, waiting for it."""
        return wait_until(self.logs, str, pattern, timeout)


class RawClient(LineClient):
    """A POP3 client on a plain socket, for exact bytes."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = 15.0) -> None:
        super().__init__(port, source, timeout)

    def line(self) -> bytes:
        return self.read_line() + b"\r\n"

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
