"""What the kill -9 tests share: the server they kill, the clients that load it, the messages.

:class:`StartFgServer` is a mail system under a fresh world-traversable
directory (not pytest's private tmp: run as root, the workers run as
``mail_owner`` and must reach the queue), run with ``mailhorn -c DIR
start-fg`` in a session and process group of its own; its master.cf starts
with an smtpd on a loopback port reserved for it
(:func:`tests.helpers.ports.reserve_port`). :meth:`StartFgServer.kill9`
sends SIGKILL to every process of it at once: the process group, and every
descendant of the master should one have left the group.

:class:`SessionLoop` is a client thread that runs one SMTP session after
another, reconnecting when the server dies under it (the message in flight
was never acknowledged, so it may or may not be queued); each test says
what one message is and what it records. :func:`make_body` makes a random
body with lines that need dot-stuffing; :func:`split_message` takes the
Message-ID and the body out of what the server stored (LF line ends).
"""

from __future__ import annotations

import abc
import os
import random
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.helpers.ports import reserve_port
from tests.helpers.procs import process_tree
from tests.master.util import gone, port_bound, wait_for

ROOT = Path(__file__).resolve().parents[2]
#: main.cf lines every killed server has (the test adds its own after them).
BASE_MAIN_CF = ("inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n"
                "myhostname = mx.example.test\nmydomain = example.test\nmydestination =\n"
                "smtpd_peername_lookup = no\n")


class StartFgServer:
    """A mail system under a fresh directory, run with ``start-fg`` and killed with SIGKILL."""

    def __init__(self, prefix: str) -> None:
        self.base = Path(tempfile.mkdtemp(prefix=prefix))
        os.chmod(self.base, 0o755)
        self.etc = self.base / "etc"
        self.etc.mkdir()
        self.queue = self.base / "queue"
        self.port = reserve_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def configure(self, main_cf: str = "", master_cf: str = "") -> None:
        """Write main.cf (:data:`BASE_MAIN_CF` and ``main_cf``) and master.cf (the smtpd, then ``master_cf``)."""
        (self.etc / "main.cf").write_text(
            f"queue_directory = {self.queue}\nmaillog_file = {self.base / 'maillog'}\n" + BASE_MAIN_CF + main_cf)
        (self.etc / "master.cf").write_text(f"127.0.0.1:{self.port} inet n - n - - smtpd\n" + master_cf)

    def start(self, env: dict[str, str] | None = None) -> None:
        """Start the server; returns once its smtpd answers with a banner."""
        full_env = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
        full_env["PYTHONPATH"] = str(ROOT)
        full_env.update(env or {})
        with open(self.base / "stderr", "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailhorn", "-c", str(self.etc), "start-fg"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=full_env,
                cwd=str(self.base), start_new_session=True)
        assert wait_for(lambda: self._banner() or self.proc is None or self.proc.poll() is not None, 60)
        assert self.proc.poll() is None, (self.base / "stderr").read_text(errors="replace")

    def _banner(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                return s.recv(512).startswith(b"220 ")
        except OSError:
            return False

    def tree(self) -> list[int]:
        """Live processes of the server: its process group and every descendant of the master."""
        assert self.proc is not None
        return process_tree(self.proc.pid)

    def kill9(self) -> int:
        """SIGKILL to every process of the server at once; returns how many there were,
        once all are gone and the port is free."""
        assert self.proc is not None
        members = self.tree()
        assert len(members) >= 2, f"expected master and worker, found {members}"
        os.killpg(self.proc.pid, signal.SIGKILL)
        self._kill_each(members)
        self.proc.wait(30)
        assert wait_for(lambda: all(gone(pid) for pid in members), 30)
        assert wait_for(lambda: not port_bound(self.port), 30)
        return len(members)

    @staticmethod
    def _kill_each(pids: list[int]) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """The orderly stop (SIGTERM to the group), SIGKILL when that does not end it."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)

    def remove(self) -> None:
        """Kill what still runs and remove the directory."""
        if self.proc is not None and self.proc.poll() is None:
            self._kill_each(self.tree())
            self.proc.wait(30)
        shutil.rmtree(self.base, ignore_errors=True)


def make_body(rng: random.Random, max_lines: int) -> bytes:
    """A random body of 10 to ``max_lines`` CRLF lines (up to 38 bytes of hex
    each), with lines that need dot-stuffing."""
    lines = []
    for _ in range(rng.randint(10, max_lines)):
        kind = rng.random()
        if kind < 0.05:
            lines.append(b".")
        elif kind < 0.1:
            lines.append(b"." + rng.randbytes(20).hex().encode())
        else:
            lines.append(rng.randbytes(rng.randint(0, 38)).hex().encode())
    return b"\r\n".join(lines) + b"\r\n"


def split_message(content: bytes) -> tuple[bytes, bytes]:
    """(Message-ID, body) of stored content (LF line ends)."""
    head, sep, body = content.partition(b"\n\n")
    assert sep, "no end of headers"
    ids = [line.split(b":", 1)[1].strip() for line in head.split(b"\n") if line.lower().startswith(b"message-id:")]
    assert len(ids) == 1, head
    return ids[0], body


class SessionLoop(threading.Thread, abc.ABC):
    """One SMTP session after another until ``stop`` is set; :meth:`send_one` sends each message."""

    timeout = 15.0

    def __init__(self, port: int, tag: str, seed: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.tag = tag
        self.rng = random.Random(seed)
        self.stop = stop

    @abc.abstractmethod
    def send_one(self, smtp: smtplib.SMTP, message_id: bytes) -> None:
        ...

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=self.timeout) as smtp:
                    smtp.ehlo("ledger.example")
                    while not self.stop.is_set():
                        seq += 1
                        self.send_one(smtp, f"<{self.tag}.{seq}@ledger.example>".encode())
            except (OSError, smtplib.SMTPException):
                # The server died under this session: the message in flight
                # was never acknowledged, so it may or may not be queued.
                time.sleep(0.02)
