"""A throwaway real Postfix instance whose cleanup(8) output is the reference.

The instance lives entirely under a temporary directory: its own main.cf and
master.cf (smtpd on a free loopback port, pickup, cleanup, trivial-rewrite
and postlogd only — no queue manager, so every message stays in
``incoming/`` where ``postcat -q`` finds it), its own queue and data
directories, and ``maillog_file`` for its log. It needs root (Postfix's
master refuses to run otherwise) and the installed Postfix 3.7.

``stop()`` stops the master and waits until it is gone; the fixture using
this class always calls it, so nothing is left running.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers.ports import reserve_port

POSTFIX = "/usr/sbin/postfix"
POSTCAT = "/usr/sbin/postcat"
SENDMAIL = "/usr/sbin/sendmail"


def available() -> bool:
    """Whether a private Postfix can be started here (root, binaries present)."""
    return os.geteuid() == 0 and all(os.path.exists(p) for p in (POSTFIX, POSTCAT, SENDMAIL))



class PostfixOracle:
    """One private Postfix under ``root``."""

    def __init__(self, root: Path, *, myhostname: str = "oracle.example.org",
                 extra_main: str = "") -> None:
        self.root = root
        self.etc = root / "etc"
        self.spool = root / "spool"
        self.data = root / "data"
        self.maillog = root / "maillog"
        self.port = reserve_port()
        self.myhostname = myhostname
        for d in (self.etc, self.spool, self.data):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)
        shutil.chown(self.data, "postfix", "postfix")
        self.maillog.touch()
        (self.etc / "main.cf").write_text(
            f"compatibility_level = 3.6\n"
            f"queue_directory = {self.spool}\n"
            f"data_directory = {self.data}\n"
            f"mail_owner = postfix\n"
            f"setgid_group = postdrop\n"
            f"inet_interfaces = loopback-only\n"
            f"inet_protocols = ipv4\n"
            f"myhostname = {myhostname}\n"
            f"mydomain = example.org\n"
            f"myorigin = $myhostname\n"
            f"mynetworks = 127.0.0.0/8\n"
            f"maillog_file = {self.maillog}\n"
            f"maillog_file_prefixes = {root}\n"
            f"smtputf8_enable = no\n"
            f"alias_maps =\n"
            f"local_recipient_maps =\n"
            f"{extra_main}"
        )
        (self.etc / "master.cf").write_text(
            f"127.0.0.1:{self.port} inet n - n - - smtpd\n"
            "pickup    unix n - n 60 1 pickup\n"
            "cleanup   unix n - n - 0 cleanup\n"
            "rewrite   unix - - n - - trivial-rewrite\n"
            "postlog   unix-dgram n - n - 1 postlogd\n"
        )

    def _run(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        env["MAIL_CONFIG"] = str(self.etc)
        return subprocess.run(list(args), input=stdin, capture_output=True, env=env, timeout=60)

    def start(self) -> None:
        result = self._run(POSTFIX, "-c", str(self.etc), "start")
        if result.returncode != 0:
            raise RuntimeError(f"postfix start failed: {result.stderr.decode(errors='replace')}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("private postfix smtpd did not start listening")

    def stop(self) -> None:
        pid_file = self.spool / "pid" / "master.pid"
        pid = None
        if pid_file.exists():
            try:
                pid = int(pid_file.read_text().split()[0])
            except (ValueError, IndexError):
                pid = None
        self._run(POSTFIX, "-c", str(self.etc), "stop")
        if pid is None:
            return
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, 9)

    def sendmail(self, *args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
        return self._run(SENDMAIL, "-C", str(self.etc), *args, stdin=stdin)

    def incoming(self) -> list[str]:
        ids: list[str] = []
        for _dir, _sub, files in os.walk(self.spool / "incoming"):
            ids.extend(f for f in files if not f.startswith("."))
        return sorted(ids)

    def wait_for_queue_file(self, known: set[str], timeout: float = 20) -> str:
        """Wait until a new queue file appears in incoming/ and is complete."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for qid in self.incoming():
                if qid in known:
                    continue
                out = self._run(POSTCAT, "-c", str(self.etc), "-hq", qid)
                if out.returncode == 0 and out.stdout:
                    # cleanup marks an incomplete file by mode 0; postcat only reads complete ones.
                    mode = next((self.spool / "incoming").rglob(qid)).stat().st_mode
                    if mode & 0o700 == 0o700:
                        return qid
            time.sleep(0.1)
        raise RuntimeError("no queue file appeared")

    def postcat(self, queue_id: str, *options: str) -> str:
        out = self._run(POSTCAT, "-c", str(self.etc), *options, "-q", queue_id)
        return out.stdout.decode("utf-8", "replace")

    def log(self) -> str:
        return self.maillog.read_text(errors="replace")
