"""Real peers for the after-queue content filter tests.

:class:`Mailhorn` is one mail system in a fresh world-traversable directory,
run as users run it (``mailhorn -c DIR start-fg``) in a process group of
its own, stopped by its process ID.  :class:`ClamSmtp` is the filter of
seed 002: ``clamd`` (Debian ``clamav-daemon``) with a signature database
made here, so nothing is downloaded, and ``clamsmtpd`` (Debian
``clamsmtp``) in front of it; both run in the foreground as children of the
test with temporary configuration files, on a unix socket and loopback
ports, and are stopped by their process IDs.

Helpers wait for conditions (a log line, a file, a listening port), never
for a fixed time.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.conftest import require
from tests.helpers.mailsystem import Observed, maildir_messages, private_dir
from tests.helpers.procs import group_members
from tests.master.util import ROOT, wait_for

CLAMD = "/usr/sbin/clamd"
CLAMSMTPD = "/usr/sbin/clamsmtpd"

#: The test signature: any file holding this string is "infected" (a ClamAV
#: extended signature, target type 0, any offset).
SIGNATURE_TEXT = "MAILHORN-FILTER-TEST-SIGNATURE-7c1e"
SIGNATURE_NAME = "Mailhorn.Test.Signature"


def require_clamsmtp() -> None:
    require(os.path.exists(CLAMD), "clamd (Debian package clamav-daemon)")
    require(os.path.exists(CLAMSMTPD), "clamsmtpd (Debian package clamsmtp)")


def listening(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def banner(port: int) -> bool:
    """Whether an SMTP server greets on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s, s.makefile("rb") as f:
            return f.readline().startswith(b"220 ")
    except OSError:
        return False


_UVLOOP_PROBE = """
import asyncio, socket, sys
import uvloop
from mailhorn.delivery.mx import Server
from mailhorn.delivery.smtp_conn import connect
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)

async def probe() -> None:
    conn = await connect(Server("127.0.0.1", "127.0.0.1", listener.getsockname()[1]), timeout=5)
    conn.close()

uvloop.run(probe())
"""


def _smtp_client_runs_under_uvloop() -> bool:
    """Whether the SMTP client connects inside a uvloop event loop (the workers' loop when installed).

    Asked in a child process, so that the probe's loop cannot disturb the test's.
    """
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return True
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    try:
        done = subprocess.run([sys.executable, "-c", _UVLOOP_PROBE], capture_output=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


#: Starts the master as ``python -m mailhorn`` does.  When the SMTP client
#: cannot run on uvloop's transports, the workers are kept on asyncio's own
#: loop (uvloop made unimportable), so the filter path can still be shown.
_BOOT_PLAIN = "import sys; from mailhorn.cli.main import main; sys.exit(main(['mailhorn', *sys.argv[1:]]))"
_BOOT_NO_UVLOOP = "import sys; sys.modules['uvloop'] = None; " + _BOOT_PLAIN


class Mailhorn(Observed):
    """One running mail system (see the module docstring)."""

    wait_timeout = 60.0

    def __init__(self, main_cf: str, master_cf: str) -> None:
        self.base = private_dir("mailhorn-filter-")
        self.etc = self.base / "etc"
        self.etc.mkdir()
        self.queue = self.base / "queue"
        self.maillog = self.base / "maillog"
        (self.etc / "main.cf").write_text(
            f"queue_directory = {self.queue}\nmaillog_file = {self.maillog}\n"
            "inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n"
            "queue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n"
            "smtpd_peername_lookup = no\n" + main_cf)
        (self.etc / "master.cf").write_text(master_cf)
        self.proc: subprocess.Popen[bytes] | None = None

    def write(self, name: str, text: str) -> Path:
        path = self.etc / name
        path.write_text(text)
        return path

    def start(self, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        env["PYTHONPATH"] = str(ROOT)
        boot = _BOOT_PLAIN if _smtp_client_runs_under_uvloop() else _BOOT_NO_UVLOOP
        with open(self.base / "stderr", "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", boot, "-c", str(self.etc), "start-fg"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
                cwd=str(self.base), start_new_session=True)
        proc = self.proc
        assert wait_for(lambda: banner(port) or proc.poll() is not None, 60)
        assert proc.poll() is None, (self.base / "stderr").read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM to the master (it stops its workers), SIGKILL to whatever is left of its group."""
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(30)
        for pid in group_members(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert wait_for(lambda: not group_members(proc.pid), 30)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- observation -------------------------------------------------------------
    def log(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def send(port: int, sender: str, recipients: Sequence[str], message: str, *,
         helo: str = "client.filter.test") -> str:
    """One message over SMTP; its queue ID from the 250 reply."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo(helo)
        code, text = client.mail(sender)
        assert code == 250, (code, text)
        for rcpt in recipients:
            code, text = client.rcpt(rcpt)
            assert code == 250, (rcpt, code, text)
        code, text = client.data(message.encode())
        assert code == 250, (code, text)
    found = re.search(rb"queued as ([0-9A-Za-z]+)", text)
    assert found is not None, text
    return found.group(1).decode()


def vmail_owner() -> pwd.struct_passwd:
    """The account virtual deliveries run as (nobody: above virtual_minimum_uid)."""
    return pwd.getpwnam("nobody")


class ClamSmtp:
    """clamd with this module's signature and clamsmtpd in front of it (see the module docstring).

    ``listen`` is clamsmtpd's SMTP port, ``out`` where it passes clean mail
    (the reinjection smtpd), ``action`` its ``Action:`` for infected mail
    (``drop`` or ``bounce``).
    """

    def __init__(self, listen: int, out: int, action: str = "drop") -> None:
        self.base = private_dir("mailhorn-clam-")
        self.listen = listen
        self.out = out
        self.action = action
        self.socket = self.base / "clamd.sock"
        self.clamd: subprocess.Popen[bytes] | None = None
        self.clamsmtpd: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        db = self.base / "db"
        db.mkdir()
        # ClamAV extended signature (.ndb): Name:TargetType:Offset:HexSignature.
        (db / "mailhorn.ndb").write_text(f"{SIGNATURE_NAME}:0:*:{SIGNATURE_TEXT.encode().hex()}\n")
        spool = self.base / "spool"
        spool.mkdir()
        (self.base / "clamd.conf").write_text(
            f"LocalSocket {self.socket}\nDatabaseDirectory {db}\nForeground yes\n"
            f"LogFile {self.base / 'clamd.log'}\nTemporaryDirectory {spool}\nBytecode no\n")
        (self.base / "clamsmtpd.conf").write_text(
            f"Listen: 127.0.0.1:{self.listen}\nOutAddress: 127.0.0.1:{self.out}\n"
            f"ClamAddress: {self.socket}\nTempDirectory: {spool}\nAction: {self.action}\n"
            "Header: X-Virus-Scanned: ClamAV using ClamSMTP\n")
        with open(self.base / "clamd.out", "ab") as out:
            self.clamd = subprocess.Popen([CLAMD, "-c", str(self.base / "clamd.conf")],
                                          stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        clamd = self.clamd
        assert wait_for(lambda: self._clamd_answers() or clamd.poll() is not None, 120), "clamd did not start"
        assert clamd.poll() is None, (self.base / "clamd.out").read_text(errors="replace")
        with open(self.base / "clamsmtpd.out", "ab") as out:
            # -d: stay in the foreground, log to stderr.
            self.clamsmtpd = subprocess.Popen(
                [CLAMSMTPD, "-d", "1", "-f", str(self.base / "clamsmtpd.conf"), "-p", str(self.base / "cs.pid")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        smtpd = self.clamsmtpd
        assert wait_for(lambda: listening(self.listen) or smtpd.poll() is not None, 30)
        assert smtpd.poll() is None, (self.base / "clamsmtpd.out").read_text(errors="replace")

    def _clamd_answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(str(self.socket))
                s.sendall(b"PING\n")
                return s.recv(16).startswith(b"PONG")
        except OSError:
            return False

    def clamd_log(self) -> str:
        try:
            return (self.base / "clamd.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        for proc in (self.clamsmtpd, self.clamd):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(30)
        self.clamsmtpd = self.clamd = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
