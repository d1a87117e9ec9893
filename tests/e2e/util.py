"""The whole mail system as users run it: ``mailhorn -c DIR start`` and real peers.

:class:`Server` is one instance (master, workers, queue, log) in a fresh
world-traversable directory (:class:`tests.master.util.Instance`), with
master.cf made from Postfix's default services plus an smtpd on an
ephemeral loopback port. It runs either as root (workers as
``mail_owner``, deliveries through the privilege machinery) or, with
``user=``, as that ordinary user, who then owns the instance and every
file it delivers (design.md §3: "Run as an ordinary user, everything runs
as that user").

The command-line tools (``postqueue``, ``postsuper``, ``postmap``, ...) run
as the same user as the master, against the same configuration directory.

Helpers here wait for conditions (a log line, an empty queue, a file),
never for a fixed time.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import os
import pwd
import re
import shutil
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from mailhorn.services import DEFAULT_MASTER_CF
from tests.conftest import require
from tests.helpers.mailsystem import Observed, maildir_messages, private_dir
from tests.helpers.ports import reserve_port
from tests.master.util import ROOT, Instance, wait_for

#: Settings every instance shares: fast retries, loopback only, no DNS lookups.
BASE_MAIN_CF = """\
master_worker_count = 1
myhostname = mx.e2e.test
mydomain = e2e.test
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtp_connect_timeout = 5s
smtpd_client_restrictions =
smtpd_helo_restrictions =
smtpd_sender_restrictions =
mynetworks = 127.0.0.0/8
"""

_SMTP_LINE = re.compile(r"^smtp +inet .*$", re.M)


def master_cf(port: int, extra: str = "") -> str:
    """Postfix's default services, smtpd listening on 127.0.0.1:PORT, then ``extra``."""
    text = _SMTP_LINE.sub(f"127.0.0.1:{port} inet n - n - - smtpd", DEFAULT_MASTER_CF)
    for name in ("local", "virtual", "error", "retry", "discard", "smtp", "relay", "lmtp"):
        if not re.search(rf"^{name} +unix ", text, re.M):
            command = {"retry": "error", "relay": "smtp"}.get(name, name)
            text += f"{name} unix - - n - - {command}\n"
    return text + extra


#: Run in a child process (a failed probe may leave its loop unable to close):
#: prints "ok" when the SMTP client connects under uvloop.
_SMTP_PROBE = """
import asyncio, os, socket, sys, uvloop
from mailhorn.delivery.mx import Server
from mailhorn.delivery.smtp_conn import connect
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
async def probe():
    conn = await connect(Server("127.0.0.1", "127.0.0.1", listener.getsockname()[1]), timeout=5)
    conn.close()
try:
    uvloop.run(probe())
    print("ok")
except AssertionError:
    print("assert")
sys.stdout.flush()
os._exit(0)
"""

#: Prints "ok" when a delivery command starts under uvloop without a privilege switch.
_COMMAND_PROBE = """
import os, sys, uvloop
from mailhorn import privsep
async def probe():
    proc = await privsep.start_command(["/bin/true"], env={}, cwd="/", target=None)
    proc.stdin.close()
    await proc.wait()
try:
    uvloop.run(probe())
    print("ok")
except ValueError as exc:
    print(exc)
sys.stdout.flush()
os._exit(0)
"""


def _uvloop_probe(code: str) -> bool:
    """Whether ``code`` prints "ok" (True as well when uvloop, the workers' loop, is absent)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return True
    env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    return result.stdout.strip() == "ok"


def require_smtp_client() -> None:
    """Outbound SMTP from the running server (its workers' loop is uvloop when installed)."""
    require(_uvloop_probe(_SMTP_PROBE),
            "mailhorn.delivery.smtp_conn.connect asserts isinstance(transport, asyncio.Transport), "
            "which uvloop's transports (the workers' loop) are not: no outbound SMTP in the running server")


def require_commands() -> None:
    """|command delivery from an unprivileged server (its workers' loop is uvloop when installed)."""
    require(_uvloop_probe(_COMMAND_PROBE),
            "mailhorn.privsep.start_command passes umask= to create_subprocess_exec, which uvloop's "
            "loop (the workers' loop) refuses: no |command delivery in an unprivileged server")


class Server(Observed):
    """One running mail system; see the module docstring."""

    def __init__(self, main_cf: str = "", *, user: pwd.struct_passwd | None = None,
                 master_extra: str = "") -> None:
        self.port = reserve_port()
        self.user = user
        self.inst = Instance(main_cf=BASE_MAIN_CF + main_cf, master_cf=master_cf(self.port, master_extra))
        self.etc = self.inst.etc
        self.queue = self.inst.queue
        self.base = self.inst.base
        if user is not None:
            for path in (self.base, self.etc, self.etc / "main.cf", self.etc / "master.cf"):
                os.chown(path, user.pw_uid, user.pw_gid)
            # The ordinary user may read (only read) the interpreter wherever it is installed.
            self.inst.prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                                "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]

    # -- configuration ---------------------------------------------------------
    def add_main(self, text: str) -> None:
        """Append settings to main.cf (read again by ``reload``)."""
        with open(self.etc / "main.cf", "a") as f:
            f.write(text)

    def write_file(self, name: str, text: str) -> Path:
        """A file in the configuration directory, owned by the instance's user."""
        path = self.etc / name
        path.write_text(text)
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)
        return path

    def give(self, path: Path) -> None:
        """Hand a file or directory tree to the instance's user."""
        if self.user is None:
            return
        os.chown(path, self.user.pw_uid, self.user.pw_gid)
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), self.user.pw_uid, self.user.pw_gid)

    # -- control -----------------------------------------------------------------
    def start(self) -> None:
        started = self.inst.ctl("start")
        assert started.returncode == 0, started.stderr
        self.inst.started_workers()
        assert wait_for(self._accepting), f"smtpd does not answer on port {self.port}\n{self.log()}"

    def _accepting(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s, s.makefile("rb") as f:
                return f.readline().startswith(b"220 ")
        except OSError:
            return False

    def reload(self) -> None:
        before = self.inst.workers().get(0)
        result = self.inst.ctl("reload")
        assert result.returncode == 0, result.stderr
        assert wait_for(lambda: self.inst.workers().get(0) not in (None, before))
        assert wait_for(self._accepting)

    def stop(self) -> None:
        if self.inst.master_pid() is not None:
            self.inst.ctl("stop")

    def remove(self) -> None:
        self.stop()
        self.inst.remove()

    def tool(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``mailhorn TOOL -c ETC ARGS`` as the instance's user."""
        env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        env["PYTHONPATH"] = str(ROOT)
        env["MAIL_CONFIG"] = str(self.etc)
        return subprocess.run([*self.inst.prefix, sys.executable, "-m", "mailhorn", *args], input=stdin,
                              capture_output=True, text=True, timeout=120, env=env, cwd=str(self.base))

    # -- mail ----------------------------------------------------------------------
    def smtp(self) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=60)
        client.ehlo("client.e2e.test")
        return client

    def send(self, sender: str, recipients: Sequence[str], message: bytes | str, *,
             rcpt_options: Sequence[str] = (), mail_options: Sequence[str] = ()) -> str:
        """One message over SMTP; returns its queue ID from the 250 reply."""
        data = message.encode() if isinstance(message, str) else message
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        with self.smtp() as client:
            code, text = client.mail(sender, list(mail_options))
            assert code == 250, (code, text)
            for rcpt in recipients:
                code, text = client.rcpt(rcpt, list(rcpt_options))
                assert code == 250, (rcpt, code, text)
            code, text = client.data(data)
            assert code == 250, (code, text)
        found = re.search(rb"queued as ([0-9A-Za-z]+)", text)
        assert found is not None, text
        return found.group(1).decode()

    # -- observation -------------------------------------------------------------------
    def log(self) -> str:
        return self.inst.log()


def wait_messages(maildir: Path, count: int, timeout: float = 30.0) -> list[Path]:
    assert wait_for(lambda: len(maildir_messages(maildir)) >= count, timeout), \
        f"{maildir}: {len(maildir_messages(maildir))} messages, expected {count}"
    return maildir_messages(maildir)


def parse(data: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def dsn_parts(report: email.message.EmailMessage) -> tuple[email.message.Message, list[email.message.Message]]:
    """An RFC 3464 report's per-message fields and per-recipient field groups."""
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    parts = list(report.iter_parts())
    status = [p for p in parts if p.get_content_type() == "message/delivery-status"]
    assert len(status) == 1
    payload = status[0].get_payload()
    assert isinstance(payload, list) and len(payload) >= 2
    groups = [group for group in payload if isinstance(group, email.message.Message)]
    assert len(groups) == len(payload)
    return groups[0], groups[1:]


def system_user(name: str, home: Path | None = None) -> Iterator[pwd.struct_passwd]:
    """A system user for one test (``useradd``), removed with its files afterwards."""
    require(os.geteuid() == 0, "creating system users needs root")
    require(shutil.which("useradd") is not None, "useradd (Debian package passwd)")
    args = ["useradd", "--shell", "/bin/sh"]
    if home is not None:
        args += ["--create-home", "--home-dir", str(home)]
    else:
        args += ["--no-create-home"]
    subprocess.run([*args, name], check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)
