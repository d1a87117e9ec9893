"""Fixtures for the mail store tests: a private Dovecot (doveadm) on a temp Maildir.

Dovecot refuses mail access as root, so when the tests run as root the
Maildir is handed to ``nobody`` before each ``doveadm`` call; its directory is
made with :func:`tempfile.mkdtemp` (and removed afterwards) because pytest's
own temp root is not traversable by other users. ``doveadm`` only ever reads
the configuration written here (``-c FILE``): nothing of the system's Dovecot
is touched and no daemon is started.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require


@dataclass
class Dovecot:
    """A doveadm bound to one Maildir through its own configuration file."""

    base: Path
    maildir: Path
    config: Path
    uid: int
    gid: int
    user: str

    def _hand_over(self) -> None:
        if os.geteuid() != 0:
            return
        for dirpath, dirnames, filenames in os.walk(self.base):
            os.chown(dirpath, self.uid, self.gid)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), self.uid, self.gid)

    def run(self, *args: str, stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run ``doveadm -c CONFIG ARGS`` on the Maildir."""
        self._hand_over()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "USER": self.user,
               "HOME": str(self.base), "LANG": "C.UTF-8"}
        proc = subprocess.run(["doveadm", "-c", str(self.config), *args], input=stdin,
                              capture_output=True, env=env, cwd=self.base, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"doveadm {' '.join(args)} failed ({proc.returncode}): "
                                 f"{proc.stderr.decode(errors='replace')}")
        return proc

    def fetch(self, fields: str, mailbox: str = "INBOX") -> list[dict[str, str]]:
        """``doveadm -f tab fetch FIELDS mailbox M all`` as one dict per message."""
        out = self.run("-f", "tab", "fetch", fields, "mailbox", mailbox, "all").stdout.decode()
        lines = [line for line in out.split("\n") if line]
        if not lines:
            return []
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"))) for line in lines[1:]]

    def text(self, uid: int, mailbox: str = "INBOX") -> bytes:
        out = self.run("fetch", "text", "mailbox", mailbox, "uid", str(uid)).stdout
        assert out.startswith(b"text:\n"), out[:40]
        return out[len(b"text:\n"):]

    def status(self, mailbox: str = "INBOX") -> dict[str, str]:
        out = self.run("-f", "tab", "mailbox", "status", "messages uidnext uidvalidity", mailbox).stdout.decode()
        header, row = [line for line in out.split("\n") if line][:2]
        return dict(zip(header.split("\t"), row.split("\t")))


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    require(shutil.which("doveadm") is not None,
            "Dovecot's doveadm is not installed (apt-get install dovecot-core dovecot-imapd)")
    base = Path(tempfile.mkdtemp(prefix="mailhorn-dovecot-"))
    os.chmod(base, 0o755)
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        uid, gid, user = nobody.pw_uid, nobody.pw_gid, "nobody"
    else:
        uid, gid, user = os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name
    maildir = base / "Maildir"
    config = base / "dovecot.conf"
    config.write_text(
        f"base_dir = {base}/run\n"
        "log_path = /dev/stderr\n"
        f"mail_location = maildir:{maildir}\n"
        f"mail_home = {base}/home\n"
        "ssl = no\n"
        f"mail_uid = {uid}\n"
        f"mail_gid = {gid}\n"
        "first_valid_uid = 1\n"
        "first_valid_gid = 1\n"
        "mail_plugins = quota\n"
        "plugin {\n  quota = maildir:User quota\n}\n"
    )
    try:
        yield Dovecot(base, maildir, config, uid, gid, user)
    finally:
        shutil.rmtree(base, ignore_errors=True)
