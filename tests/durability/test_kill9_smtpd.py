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
import smtplib
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mailhorn.queue.store import QueueStore
from tests.conftest import require, run_mailhorn
from tests.durability.kill9 import SessionLoop, StartFgServer, make_body, split_message
from tests.master.util import wait_for

pytestmark = pytest.mark.skipif(os.environ.get("MAILHORN_SKIP_HEAVY") == "1", reason="MAILHORN_SKIP_HEAVY=1")

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


class Server(StartFgServer):
    """The server: master.cf holds only the smtpd, so nothing moves or delivers the queued mail."""

    def __init__(self) -> None:
        super().__init__("mailhorn-durability-")
        self.configure()
        self.store = QueueStore(root=str(self.queue))

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


class LedgerClient(SessionLoop):
    """One client session after another; records every message answered 250."""

    def __init__(self, port: int, tag: str, seed: int, stop: threading.Event) -> None:
        super().__init__(port, tag, seed, stop)
        self.acked: list[Entry] = []
        self.refused: list[tuple[int, bytes]] = []

    def send_one(self, smtp: smtplib.SMTP, message_id: bytes) -> None:
        # A random body of 1-24 KB.
        body = make_body(self.rng, 300)
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
