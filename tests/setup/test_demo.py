"""The README's run command, from a fresh clone: send with swaks, read with IMAP and POP3, stop with Ctrl-C.

The repository is cloned (its committed state) into a temporary directory and
the command the README gives is run there as written, with ``VENV=`` naming the
environment the tests already run in (so nothing is installed) and
``MAILHORN_DEMO_PORTS`` choosing free ports. The printed swaks line sends a
message; imaplib and poplib read it with the printed password; SIGINT to the
process group (what Ctrl-C does) must leave no process of it behind. A second
run reuses the instance: same password, the message still there.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import queue
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.helpers.ports import reserve_port
from tests.master.util import port_bound, wait_for

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
BANNER_END = "Ctrl-C stops the demo"


def readme_run_command(readme: Path) -> list[str]:
    """The first command of the README that runs ``make run`` (the text before any ``#``)."""
    for line in readme.read_text().splitlines():
        command = line.split("#", 1)[0].strip()
        words = shlex.split(command) if command else []
        if words[:1] == ["make"] and "run" in words[1:]:
            return words
    raise AssertionError(f"no `make run` command in {readme}")


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def session_members(sid: int) -> list[int]:
    """Processes (not zombies) whose session is ``sid``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            text = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(name))
    return found


class Demo:
    """One run of the README command in the clone, its output read line by line."""

    def __init__(self, command: list[str], clone: Path, ports: dict[str, int], log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("MAIL_CONFIG", "MAKEFLAGS", "MFLAGS")}
        env["MAILHORN_DEMO_PORTS"] = ",".join(f"{k}={v}" for k, v in ports.items())
        self.log = log
        with log.open("ab") as stderr:
            self.proc = subprocess.Popen(
                [*command, f"VENV={VENV}"], cwd=clone, env=env, stdout=subprocess.PIPE, stderr=stderr,
                stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def banner(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
            if BANNER_END in line:
                return "".join(self.output)
        raise AssertionError("no banner; output:\n" + "".join(self.output) + "\nlog:\n" + self.log.read_text())

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the whole foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        assert self.proc.wait(timeout=60) is not None
        assert wait_for(lambda: not session_members(self.proc.pid), 30), session_members(self.proc.pid)

    def kill(self) -> None:
        if session_members(self.proc.pid):
            os.killpg(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def clone() -> Iterator[Path]:
    require(shutil.which("git") is not None, "git is not installed")
    require(shutil.which("make") is not None, "make is not installed")
    base = Path(tempfile.mkdtemp(prefix="mailhorn-clone-"))
    os.chmod(base, 0o755)
    target = base / "mailhorn"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True, timeout=120)
    try:
        yield target
    finally:
        shutil.rmtree(base, ignore_errors=True)


def parse(banner: str) -> tuple[dict[str, int], str, str, list[str]]:
    ports = {name: int(port) for name, port in
             re.findall(r"^  (SMTP|submission|POP3|IMAP) +127\.0\.0\.1:(\d+)", banner, re.MULTILINE)}
    user = re.search(r"^  user +(\S+)$", banner, re.MULTILINE)
    password = re.search(r"^  password +(\S+)$", banner, re.MULTILINE)
    assert user and password, banner
    swaks = [line.strip() for line in banner.splitlines() if line.strip().startswith("swaks ")]
    return ports, user.group(1), password.group(1), swaks


def imap_messages(port: int, user: str, password: str) -> list[bytes]:
    with imaplib.IMAP4("127.0.0.1", port, timeout=30) as imap:
        imap.starttls(tls_context())
        imap.login(user, password)
        imap.select("INBOX", readonly=True)
        _, data = imap.search(None, "ALL")
        messages = []
        for number in data[0].split():
            _, parts = imap.fetch(number, "(RFC822)")
            first = parts[0]
            assert isinstance(first, tuple)
            messages.append(first[1])
        imap.logout()
    return messages


def test_readme_run_command(clone: Path, tmp_path: Path) -> None:
    command = readme_run_command(clone / "README.md")
    dry = subprocess.run([*command, "-n", f"VENV={VENV}"], cwd=clone, capture_output=True, text=True, timeout=60)
    require("mailhorn.cli.demo" in dry.stdout,
            "the committed Makefile's run target does not run the demo yet (mailhorn.cli.demo)")
    probe = subprocess.run(
        [sys.executable, "-c", "from mailhorn.services import SERVICES as S; "
         "print(S['qmgr'].kind, S['imapd'].kind if 'imapd' in S else '-', S['pop3d'].kind if 'pop3d' in S else '-')"],
        cwd=clone, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(clone)})
    require(probe.stdout.split() == ["singleton", "network", "network"],
            f"the committed services table does not run qmgr, imapd and pop3d yet: {probe.stdout.strip()}")
    require(shutil.which("swaks") is not None, "swaks is not installed")

    wanted = {"smtp": reserve_port(), "submission": reserve_port(), "pop3": reserve_port(), "imap": reserve_port()}
    log = tmp_path / "demo.log"
    demo = Demo(command, clone, wanted, log)
    try:
        banner = demo.banner()
        ports, user, password, swaks = parse(banner)
        assert ports == {"SMTP": wanted["smtp"], "submission": wanted["submission"], "POP3": wanted["pop3"],
                         "IMAP": wanted["imap"]}
        assert user == "demo@example.test"
        stored = (clone / ".mailhorn-demo" / "demo-password")
        assert stored.read_text().strip() == password
        assert stored.stat().st_mode & 0o777 == 0o600

        # The printed swaks lines, as printed: one to port 25's service, one through submission with login.
        for line in swaks:
            sent = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=60)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert "250 2.0.0 Ok: queued as" in sent.stdout
        assert len(swaks) == 2

        assert wait_for(lambda: len(imap_messages(ports["IMAP"], user, password)) == 2, 60), log.read_text()
        messages = imap_messages(ports["IMAP"], user, password)
        assert all(b"This is a test mailing" in m for m in messages)

        pop = poplib.POP3("127.0.0.1", ports["POP3"], timeout=30)
        try:
            pop.stls(tls_context())
            pop.user(user)
            pop.pass_(password)
            count, _size = pop.stat()
            assert count == 2
            _, lines, _ = pop.retr(1)
            assert b"This is a test mailing" in b"\n".join(lines)
        finally:
            pop.quit()

        demo.interrupt()
        assert "mailhorn demo stopped." in "".join(demo.output) + "".join(
            line for line in iter(demo.lines.get, None))
        for port in wanted.values():
            assert not port_bound(port)

        # A second run reuses the instance.
        again = Demo(command, clone, wanted, log)
        try:
            ports2, _user, password2, _swaks = parse(again.banner())
            assert password2 == password
            assert len(imap_messages(ports2["IMAP"], user, password)) == 2
            again.interrupt()
        finally:
            again.kill()
    finally:
        demo.kill()
