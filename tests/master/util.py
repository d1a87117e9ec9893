"""A mail system instance in a temporary directory, driven by the control commands."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mailhorn.cli.control import children_of
from mailhorn.config.load import load
from mailhorn.master import control
from mailhorn.master.supervisor import worker_count

ROOT = Path(__file__).resolve().parents[2]


def port_bound(port: int) -> bool:
    """Whether something holds 127.0.0.1:port (our bind attempt fails)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def gone(pid: int) -> bool:
    """Whether a process has exited (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except FileNotFoundError:
        return True
    return text[text.rfind(")") + 2:].split()[0] == "Z"


def uid_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError("no Uid line")


class Instance:
    """Configuration, queue and log of one mail system under a fresh directory.

    The directory is world-traversable (not under pytest's private tmp) so
    that workers running as ``mail_owner`` can reach the queue and the log.
    """

    def __init__(self, main_cf: str = "", master_cf: str = "") -> None:
        self.base = Path(tempfile.mkdtemp(prefix="mailhorn-master-"))
        os.chmod(self.base, 0o755)
        self.etc = self.base / "etc"
        self.etc.mkdir()
        self.queue = self.base / "queue"
        self.maillog = self.base / "maillog"
        self.write_main(main_cf)
        self.write_master(master_cf)
        self.prefix: list[str] = []

    def write_main(self, extra: str) -> None:
        (self.etc / "main.cf").write_text(
            f"queue_directory = {self.queue}\nmaillog_file = {self.maillog}\n"
            "inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n" + extra)

    def write_master(self, text: str) -> None:
        (self.etc / "master.cf").write_text(text)

    def ctl(self, command: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        env["PYTHONPATH"] = str(ROOT)
        return subprocess.run(
            [*self.prefix, sys.executable, "-m", "mailhorn.cli.control", "-c", str(self.etc), command, *args],
            capture_output=True, text=True, timeout=timeout, env=env, cwd=str(self.base))

    def master_pid(self) -> int | None:
        return control.running_pid(load(str(self.etc)))

    def status_lines(self) -> list[str]:
        return control.request(load(str(self.etc)), "status")

    def workers(self) -> dict[int, int]:
        out = {}
        for line in self.status_lines():
            kind, *rest = line.split()
            if kind == "worker":
                out[int(rest[0])] = int(rest[1])
        return out

    def started_workers(self, count: int | None = None) -> dict[int, int]:
        """The workers, once ``count`` of them run (start returns before they are
        forked); by default as many as the configuration asks for."""
        wanted = worker_count(load(str(self.etc))) if count is None else count
        assert wait_for(lambda: len(self.workers()) == wanted)
        return self.workers()

    def listeners(self) -> list[str]:
        return [line.split(" ", 1)[1] for line in self.status_lines() if line.startswith("listener ")]

    def log(self) -> str:
        try:
            return self.maillog.read_text()
        except FileNotFoundError:
            return ""

    def kill_everything(self) -> None:
        """Stop whatever this instance left running, by process ID."""
        pid = self.master_pid()
        if pid is not None and pid > 0:
            workers = children_of(pid)
            for target in (pid, *workers):
                try:
                    os.kill(target, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            wait_for(lambda: self.master_pid() is None and all(gone(w) for w in workers), 10)

    def remove(self) -> None:
        self.kill_everything()
        shutil.rmtree(self.base, ignore_errors=True)


# -- system accounts and the spawner, for tests of a master started as root -----------------

def free_uid(start: int) -> int:
    """The first uid from ``start`` on that no account has."""
    uid = start
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


def useradd(*args: str) -> None:
    subprocess.run(["useradd", *args], check=True, capture_output=True)


def userdel(name: str) -> None:
    assert wait_for(lambda: subprocess.run(["userdel", "-r", name], capture_output=True).returncode in (0, 6, 12))


def send_mail(port: int, rcpt: str, subject: str) -> None:
    """One message over SMTP to 127.0.0.1:``port`` (body ``body SUBJECT``)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.sendmail("sender@example.org", [rcpt],
                      f"From: sender@example.org\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nbody {subject}\r\n")


def as_owner_request(mh: Instance, owner: pwd.struct_passwd, message: dict[str, object],
                     fds_wanted: int = 1) -> str:
    """Send ``message`` with ``fds_wanted`` socket ends to the spawner of ``mh``, from a
    process running as ``owner`` (mail_owner); the answer as text."""
    path = mh.base / "queue" / "pid" / "privsep" / "spawner"
    script = (
        "import os, socket, sys\n"
        f"os.setgroups([]); os.setgid({owner.pw_gid}); os.setuid({owner.pw_uid})\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
        f"s.connect({str(path)!r})\n"
        f"pairs = [socket.socketpair() for _ in range({fds_wanted})]\n"
        "socket.send_fds(s, [sys.stdin.buffer.read()], [p[1].fileno() for p in pairs])\n"
        "print(s.recv(65536).decode())\n")
    done = subprocess.run(["python3", "-c", script], input=json.dumps(message), capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
