"""The real Dovecot IMAP server as an oracle, run pre-authenticated on stdin/stdout.

``doveadm -c CONFIG exec imap`` starts Dovecot's ``imap`` binary for one user
on a private configuration (``mail_location`` pointing at a temp Maildir): it
reads commands from stdin and answers on stdout, then exits. No daemon is
started and nothing of the system's Dovecot configuration is read. Dovecot
refuses to run mail processes as root, so under root the temp tree is handed
to ``nobody`` and the configuration names it in ``mail_uid``/``mail_gid``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

DOVEADM = shutil.which("doveadm")


def available() -> bool:
    return DOVEADM is not None and os.path.exists("/usr/lib/dovecot/imap")


class DovecotImap:
    """One temp Maildir and a way to talk IMAP to Dovecot about it."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="mailhorn-imap-dovecot-"))
        os.chmod(self.base, 0o755)
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            self.uid, self.gid, self.user = nobody.pw_uid, nobody.pw_gid, "nobody"
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
            self.user = pwd.getpwuid(self.uid).pw_name
        self.maildir = self.base / "Maildir"
        self.config = self.base / "dovecot.conf"
        self.config.write_text(
            f"base_dir = {self.base}/run\n"
            "log_path = /dev/null\n"
            f"mail_location = maildir:{self.maildir}\n"
            f"mail_home = {self.base}/home\n"
            "ssl = no\n"
            f"mail_uid = {self.uid}\n"
            f"mail_gid = {self.gid}\n"
            "first_valid_uid = 1\n"
            "first_valid_gid = 1\n"
        )

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def _hand_over(self) -> None:
        if os.geteuid() != 0:
            return
        for dirpath, _dirnames, filenames in os.walk(self.base):
            os.chown(dirpath, self.uid, self.gid)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), self.uid, self.gid)

    def session(self, commands: Iterable[bytes]) -> bytes:
        """Send each command line (CRLF added) and return everything Dovecot wrote."""
        assert DOVEADM is not None
        self._hand_over()
        script = b"".join(c + b"\r\n" for c in commands) + b"ZZ LOGOUT\r\n"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "USER": self.user,
               "HOME": str(self.base), "LANG": "C.UTF-8"}
        proc = subprocess.run([DOVEADM, "-c", str(self.config), "exec", "imap"], input=script,
                              capture_output=True, env=env, cwd=self.base, timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"dovecot imap failed ({proc.returncode}): "
                                 f"{proc.stderr.decode(errors='replace')}")
        return proc.stdout
