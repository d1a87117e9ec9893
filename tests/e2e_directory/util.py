"""A running mail system whose directory is administered while it runs.

:class:`Site` is one instance in a fresh world-traversable directory under
/tmp (the services of a root master run as ``mail_owner`` and must reach the
queue, the log and the mailboxes): its configuration comes from ``mailhorn
quickstart`` or is written by the test, its ports are moved to free loopback
ports with ``known_tcp_ports`` (as an administrator would), and it is
started and stopped with ``mailhorn -c DIR start|stop``. :meth:`Site.remove`
stops it, checks that neither the master nor any of its children is left,
and deletes the directory.

The clients are Python's smtplib, imaplib and poplib; POP3 and IMAP log in
after STLS/STARTTLS with an unverified context (the certificates are
self-signed). Waiting is for conditions (a file, a log line), never for a
fixed time.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mailhorn.cli.control import children_of
from mailhorn.config.load import load
from mailhorn.master import control
from tests.helpers.ports import reserve_port
from tests.master.util import ROOT, gone, wait_for

#: Listening services of a quickstart instance, by master.cf service name.
SERVICES = ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps")


def unverified_context() -> ssl.SSLContext:
    """A client context that accepts the instance's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Site:
    """One instance under a fresh directory; see the module docstring."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="mailhorn-e2e-dir-"))
        os.chmod(self.base, 0o755)
        self.etc = self.base / "etc"
        self.queue = self.base / "queue"
        self.vmail = self.base / "vmail"
        self.maillog = self.base / "maillog"
        self.ports: dict[str, int] = {}
        self.pid: int | None = None
        self.seen_children: set[int] = set()

    # -- commands ----------------------------------------------------------------
    def mailhorn(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``mailhorn ARGS`` as the administrator types it."""
        env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        env["PYTHONPATH"] = str(ROOT)
        return subprocess.run([sys.executable, "-m", "mailhorn", *args], input=stdin, capture_output=True,
                              text=True, timeout=120, env=env, cwd=str(self.base))

    def admin(self, *args: str) -> str:
        """``mailhorn -c DIR ARGS``, which must succeed silently on standard error; its output."""
        done = self.mailhorn("-c", str(self.etc), *args)
        assert (done.returncode, done.stderr) == (0, ""), (args, done)
        return done.stdout

    def admin_fails(self, *args: str) -> str:
        """``mailhorn -c DIR ARGS``, which must fail with one fatal line; the text after ``fatal: ``."""
        done = self.mailhorn("-c", str(self.etc), *args)
        assert done.returncode == 1 and done.stdout == "", (args, done)
        prefix = f"mailhorn-{args[0]}: fatal: "
        assert done.stderr.startswith(prefix) and done.stderr.count("\n") == 1, done.stderr
        return done.stderr[len(prefix):].rstrip("\n")

    def control(self, command: str, said: str) -> None:
        """``mailhorn -c DIR start|stop``, which says what it does on standard error as Postfix does."""
        done = self.mailhorn("-c", str(self.etc), command)
        assert done.returncode == 0 and said in done.stderr, done

    def quickstart(self, address: str, *args: str) -> str:
        """``mailhorn quickstart`` with everything under the site's directory; its output."""
        done = self.mailhorn("quickstart", address, "--dir", str(self.etc), "--queue-directory", str(self.queue),
                             "--mailbox-base", str(self.vmail), *args)
        assert (done.returncode, done.stderr) == (0, ""), done
        return done.stdout

    def postconf(self, *settings: str) -> None:
        self.admin("postconf", "-e", *settings)

    # -- control -------------------------------------------------------------------
    def remap_ports(self, services: Sequence[str] = SERVICES, **settings: str) -> None:
        """Move the services to free ports on 127.0.0.1; log to a file; more ``settings``."""
        self.ports = {name: reserve_port() for name in services}
        known = ", ".join(f"{name}={port}" for name, port in self.ports.items())
        self.postconf(f"known_tcp_ports = {known}", "inet_interfaces = 127.0.0.1", "inet_protocols = ipv4",
                      "smtpd_peername_lookup = no", "master_drain_time = 2s", f"maillog_file = {self.maillog}",
                      *(f"{name} = {value}" for name, value in settings.items()))

    def start(self) -> None:
        """``mailhorn -c DIR start``; return once port 25's service greets."""
        try:
            self.control("start", "starting the mail system")
        finally:
            self.pid = control.running_pid(load(str(self.etc)))
            self.note_children()
        assert self.pid is not None
        assert wait_for(self._greets), f"no SMTP greeting on port {self.ports['smtp']}\n{self.log()}"

    def _greets(self) -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=5):
                return True
        except (OSError, smtplib.SMTPException):
            return False

    def same_master(self) -> bool:
        """Whether the master started by :meth:`start` still runs (nothing was restarted)."""
        self.note_children()
        return self.pid is not None and control.running_pid(load(str(self.etc))) == self.pid and not gone(self.pid)

    def note_children(self) -> None:
        if self.pid is not None:
            self.seen_children.update(children_of(self.pid))

    def stop(self) -> None:
        """``mailhorn -c DIR stop``; the master and every child it had are gone."""
        if self.pid is None:
            return
        self.note_children()
        pid, self.pid = self.pid, None
        try:
            self.control("stop", "stopping the mail system")
        finally:
            assert wait_for(lambda: gone(pid) and all(gone(c) for c in self.seen_children), 30), \
                [p for p in (pid, *self.seen_children) if not gone(p)]

    def kill_left_over(self) -> None:
        """SIGKILL, by process ID, whatever :meth:`stop` could not stop."""
        for target in (*self.seen_children, *([self.pid] if self.pid else [])):
            if not gone(target):
                try:
                    os.kill(target, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            self.kill_left_over()
            shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.maillog.read_text()
        except FileNotFoundError:
            return ""

    def wait_log(self, text: str, timeout: float = 30) -> str:
        """The first log line containing ``text``, once it is there."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self.log().splitlines() if text in line]
            return bool(found)

        assert wait_for(seen, timeout), f"no log line with {text!r}:\n{self.log()}"
        return found[0]

    # -- clients -------------------------------------------------------------------
    def smtp(self, source: str = "127.0.0.1") -> smtplib.SMTP:
        """A session with port 25's service, after EHLO, from ``source``."""
        client = smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=30, source_address=(source, 0))
        client.ehlo("client.example.org")
        return client

    def send(self, rcpt: str, subject: str, sender: str = "someone@example.org") -> str:
        """Send a message to ``rcpt`` on port 25; the queue ID."""
        with self.smtp() as client:
            client.mail(sender)
            code, text = client.rcpt(rcpt)
            assert code == 250, (rcpt, code, text)
            code, text = client.data(f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n\r\n"
                                     f"body of {subject}\r\n".encode())
            assert code == 250 and b"queued as " in text, text
        return text.decode().rsplit(" ", 1)[1]

    def rcpt_reply(self, rcpt: str, source: str = "127.0.0.1") -> tuple[int, str]:
        """The reply to ``RCPT TO:<rcpt>`` (after a MAIL FROM that is accepted)."""
        with self.smtp(source) as client:
            code, _ = client.mail("someone@example.org")
            assert code == 250
            code, text = client.rcpt(rcpt)
        return code, text.decode()

    def maildir_messages(self, domain: str, user: str, count: int, timeout: float = 30) -> list[bytes]:
        """The files in ``vmail/DOMAIN/USER/new``, once there are ``count`` of them."""
        new = self.vmail / domain / user / "new"

        def files() -> list[Path]:
            return sorted(new.iterdir()) if new.is_dir() else []

        assert wait_for(lambda: len(files()) >= count, timeout), (files(), self.log())
        return [p.read_bytes() for p in files()]

    def imap_subjects(self, user: str, password: str) -> list[str]:
        """Log in over IMAP after STARTTLS; the Subject lines of INBOX."""
        with imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=30) as imap:
            imap.starttls(unverified_context())
            imap.login(user, password)
            status, data = imap.select("INBOX", readonly=True)
            assert status == "OK", data
            status, items = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert status == "OK", items
            imap.logout()
        return sorted(part[1].decode().strip() for part in items if isinstance(part, tuple))

    def imap_login_refused(self, user: str, password: str) -> str:
        """Log in over IMAP after STARTTLS and insist it is refused; the server's text."""
        with imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=30) as imap:
            imap.starttls(unverified_context())
            try:
                imap.login(user, password)
            except imaplib.IMAP4.error as exc:
                return str(exc)
        raise AssertionError(f"IMAP login of {user} accepted")

    def pop3_messages(self, user: str, password: str) -> list[bytes]:
        """Log in over POP3 after STLS (USER/PASS); every message, as RETR gives it."""
        pop = poplib.POP3("127.0.0.1", self.ports["pop3"], timeout=30)
        try:
            pop.stls(unverified_context())
            pop.user(user)
            pop.pass_(password)
            count, _ = pop.stat()
            messages = [b"\r\n".join(pop.retr(i + 1)[1]) for i in range(count)]
        finally:
            pop.quit()
        return messages

