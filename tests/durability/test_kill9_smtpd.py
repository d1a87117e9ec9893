"""kill -9 of the whole server under load: every message answered 250 is in the queue, intact.

Each of the twenty rounds starts the real server (``mailhorn -c DIR
start-fg`` in a process group of its own; master.cf holds only an smtpd on a
free loopback port, so nothing moves or delivers the queued mail), loads it
with Postfix's ``smtp-source`` and with ledger clients (concurrent smtplib
sessions; each message has its own Message-ID and a random body, and the
ledger keeps the queue ID and body hash of every message answered ``250``),
waits until the round has acknowledged messages, then after a random pause
sends SIGKILL to the process group: master and workers die at once. With the
server dead:

* every message acknowledged in the round is in ``incoming`` under its queue
  ID, with its Message-ID, envelope and body unchanged;
* every file under a queue-ID name validates completely (a kill leaves no
  half-written file under a queue ID; temporary files are the server's to
  remove).

After the last round the ledger of all rounds is checked again, recovery as
the server runs it at start finds nothing corrupt, and ``mailhorn postcat``
shows acknowledged messages.

The fault injection switch (``MAILHORN_FAULT_INJECT``, see
``mailhorn.queue.store``) makes every fsync, or every write, of queue files
fail in the running server: clients get ``451 4.3.0``, never ``250``, and
no queue file appears.

Set ``MAILHORN_DURABILITY_SEED`` to replay the kill moments of a run (the
seed is in every failure message); ``MAILHORN_SKIP_HEAVY=1`` skips these
tests.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailhorn.queue.store import QueueStore
from tests.conftest import require, run_mailhorn
from tests.master.util import free_port, gone, port_bound, wait_for

pytestmark = pytest.mark.skipif(os.environ.get("MAILHORN_SKIP_HEAVY") == "1", reason="MAILHORN_SKIP_HEAVY=1")

ROOT = Path(__file__).resolve().parents[2]
SMTP_SOURCE = "/usr/sbin/smtp-source"
ROUNDS = 20
LEDGER_SESSIONS = 4
SENDER = "ledger@example.org"
RECIPIENT = "rcpt@example.net"
QUEUED = re.compile(rb"^2\.0\.0 Ok: queued as ([0-9A-Za-z]+)$")


@dataclass(frozen=True)
class Entry:
    """A message the server answered 250 for."""

    message_id: bytes
    queue_id: str
    body_sha256: str


class Server:
    """A mail system under a fresh world-traversable directory, run with ``start-fg``.

    The directory is not pytest's private tmp: when the tests run as root the
    workers run as ``mail_owner`` and must reach the queue.
    """

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="mailhorn-durability-"))
        os.chmod(self.base, 0o755)
        self.etc = self.base / "etc"
        self.etc.mkdir()
        self.queue = self.base / "queue"
        self.port = free_port()
        (self.etc / "main.cf").write_text(
            f"queue_directory = {self.queue}\nmaillog_file = {self.base / 'maillog'}\n"
            "inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n"
            "myhostname = mx.example.test\nmydomain = example.test\nmydestination =\n"
            "smtpd_peername_lookup = no\n")
        (self.etc / "master.cf").write_text(f"127.0.0.1:{self.port} inet n - n - - smtpd\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.store = QueueStore(root=str(self.queue))

    def start(self, env: dict[str, str] | None = None) -> None:
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

    def group(self) -> list[int]:
        """Live processes of the server's process group."""
        assert self.proc is not None
        pgid = self.proc.pid
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            fields = text[text.rfind(")") + 2:].split()
            if fields[2] == str(pgid) and fields[0] != "Z":
                found.append(int(name))
        return found

    def kill9(self) -> None:
        """SIGKILL to master and workers at once; returns when all are gone and the port is free."""
        assert self.proc is not None
        members = self.group()
        assert len(members) >= 2, f"expected master and worker, found {members}"
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        assert wait_for(lambda: all(gone(pid) for pid in members), 30)
        assert wait_for(lambda: not port_bound(self.port), 30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)

    def remove(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        shutil.rmtree(self.base, ignore_errors=True)

    # -- the queue ----------------------------------------------------------------
    def content(self, queue_id: str) -> bytes:
        qf = self.store.read("incoming", queue_id)
        assert qf.sender in (SENDER, "load@example.org")
        return b"".join(self.store.content("incoming", queue_id, qf))


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    try:
        yield srv
    finally:
        srv.remove()


def make_body(rng: random.Random) -> bytes:
    """A random body of 1-24 KB in CRLF lines, with lines that need dot-stuffing."""
    lines = []
    for _ in range(rng.randint(10, 300)):
        kind = rng.random()
        if kind < 0.05:
            lines.append(b".")
        elif kind < 0.1:
            lines.append(b"." + rng.randbytes(20).hex().encode())
        else:
            lines.append(rng.randbytes(rng.randint(0, 38)).hex().encode())
    return b"\r\n".join(lines) + b"\r\n"


class LedgerClient(threading.Thread):
    """One client session after another; records every message answered 250."""

    def __init__(self, port: int, tag: str, seed: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.tag = tag
        self.rng = random.Random(seed)
        self.stop = stop
        self.acked: list[Entry] = []
        self.refused: list[tuple[int, bytes]] = []

    def run(self) -> None:
        seq = 0
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=15) as smtp:
                    smtp.ehlo("ledger.example")
                    while not self.stop.is_set():
                        seq += 1
                        message_id = f"<{self.tag}.{seq}@ledger.example>".encode()
                        body = make_body(self.rng)
                        message = (b"From: <" + SENDER.encode() + b">\r\nTo: <" + RECIPIENT.encode()
                                   + b">\r\nSubject: ledger " + message_id + b"\r\nMessage-ID: " + message_id
                                   + b"\r\n\r\n" + body)
                        smtp.mail(SENDER)
                        smtp.rcpt(RECIPIENT)
                        code, text = smtp.data(message)
                        found = QUEUED.match(text)
                        if code == 250 and found:
                            digest = hashlib.sha256(body.replace(b"\r\n", b"\n")).hexdigest()
                            self.acked.append(Entry(message_id, found.group(1).decode(), digest))
                        else:
                            self.refused.append((code, text))
            except (OSError, smtplib.SMTPException):
                # The server died under this session: the message in flight
                # was never acknowledged, so it may or may not be queued.
                time.sleep(0.02)


def split_message(content: bytes) -> tuple[bytes, bytes]:
    """(Message-ID, body) of queued content (LF line ends, as the queue stores it)."""
    head, sep, body = content.partition(b"\n\n")
    assert sep, "no end of headers"
    ids = [line.split(b":", 1)[1].strip() for line in head.split(b"\n") if line.lower().startswith(b"message-id:")]
    assert len(ids) == 1, head
    return ids[0], body


def check_entry(srv: Server, entry: Entry, seed: int) -> None:
    where = f"seed {seed}, queue ID {entry.queue_id}, {entry.message_id.decode()}"
    assert os.path.exists(srv.store.path("incoming", entry.queue_id)), f"acknowledged message lost ({where})"
    qf = srv.store.read("incoming", entry.queue_id)
    assert qf.sender == SENDER and [r.address for r in qf.recipients] == [RECIPIENT], where
    message_id, body = split_message(b"".join(srv.store.content("incoming", entry.queue_id, qf)))
    assert message_id == entry.message_id, where
    assert hashlib.sha256(body).hexdigest() == entry.body_sha256, f"body differs ({where})"


def test_kill9_under_load_keeps_every_acknowledged_message(server: Server) -> None:
    require(os.access(SMTP_SOURCE, os.X_OK), "Postfix's smtp-source is not installed (Debian package postfix)")
    seed = int(os.environ.get("MAILHORN_DURABILITY_SEED") or random.SystemRandom().randrange(1 << 32))
    rng = random.Random(seed)
    ledger: list[Entry] = []
    verified: set[str] = set()
    for round_number in range(ROUNDS):
        server.start()
        stop = threading.Event()
        load = subprocess.Popen(
            [SMTP_SOURCE, "-s", "3", "-m", "1000000", "-l", "4096", "-f", "load@example.org",
             "-t", RECIPIENT, f"127.0.0.1:{server.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        clients = [LedgerClient(server.port, f"r{round_number}s{i}", rng.randrange(1 << 32), stop)
                   for i in range(LEDGER_SESSIONS)]
        try:
            for client in clients:
                client.start()
            assert wait_for(lambda: sum(len(c.acked) for c in clients) >= 4, 60), f"seed {seed}: no 250s"
            time.sleep(rng.uniform(0.0, 0.5))
            server.kill9()
        finally:
            stop.set()
            for client in clients:
                client.join(30)
            load.kill()
            load.wait(30)
        for client in clients:
            assert not client.refused, f"seed {seed}: refused {client.refused[:3]}"
        acked = [entry for client in clients for entry in client.acked]
        for entry in acked:
            check_entry(server, entry, seed)
        ledger += acked
        # Whatever else is under a queue-ID name (smtp-source's mail, messages
        # whose 250 the kill cut off) must be complete and valid too.
        for queue_id in server.store.scan("incoming"):
            if queue_id not in verified:
                server.content(queue_id)
                verified.add(queue_id)
    assert len(ledger) >= 4 * ROUNDS
    for entry in ledger:
        check_entry(server, entry, seed)
    recovery = server.store.recover()
    assert recovery.corrupt == () and recovery.unknown == (), f"seed {seed}: {recovery}"
    assert not any((server.queue / "corrupt").iterdir())
    for entry in ledger[:: max(1, len(ledger) // 5)]:
        shown = run_mailhorn("postcat", "-c", str(server.etc), "-q", entry.queue_id)
        assert shown.returncode == 0, shown.stderr
        assert f"Message-ID: {entry.message_id.decode()}" in shown.stdout


@pytest.mark.parametrize("fault", ["fsync:1.0", "write:1.0"])
def test_failing_queue_writes_are_never_acknowledged(server: Server, fault: str) -> None:
    server.start({"MAILHORN_FAULT_INJECT": fault})
    try:
        for round_number in range(2):
            with smtplib.SMTP("127.0.0.1", server.port, timeout=15) as smtp:
                smtp.ehlo("ledger.example")
                for seq in range(5):
                    smtp.mail(SENDER)
                    smtp.rcpt(RECIPIENT)
                    message_id = f"<fault.{round_number}.{seq}@ledger.example>"
                    code, text = smtp.data(f"Message-ID: {message_id}\r\n\r\nbody {seq}\r\n".encode())
                    assert (code, text) == (451, b"4.3.0 Error: queue file write error")
                    # The session stays usable after a failed transaction.
                    assert smtp.noop()[0] == 250
        if os.access(SMTP_SOURCE, os.X_OK):
            done = subprocess.run([SMTP_SOURCE, "-s", "2", "-m", "10", "-l", "4096", "-f", SENDER,
                                   "-t", RECIPIENT, f"127.0.0.1:{server.port}"],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode != 0 and "451 4.3.0" in done.stdout + done.stderr
    finally:
        server.stop()
    assert list(server.store.scan("incoming")) == []
    assert not [p for p in (server.queue / "incoming").iterdir() if p.name.startswith("tmp.")]
