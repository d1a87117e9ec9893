"""kill -9 of the whole running system during delivery: every acknowledged message lands once or more, whole.

The real server (``mailhorn -c DIR start-fg`` in a session of its own) runs
smtpd, cleanup, the queue manager and virtual(8) delivery into four Maildirs
(``virtual_mailbox_domains``, a ``texthash:`` ``virtual_mailbox_maps``,
static ``virtual_uid_maps``/``virtual_gid_maps``). Run as root, the master
gives its workers to ``mail_owner`` and the Maildirs are written as uid 5000
through the spawner's helpers; run as an ordinary user, everything runs as
that user.

Ledger clients (concurrent smtplib sessions) send :data:`MESSAGES`
messages, each with its own Message-ID and a random body; every message
sent is remembered with its recipient and body hash, and the ledger keeps
those answered ``250``. Several times during the run, at a random moment,
the whole process tree (master, workers, spawner and helpers: the session's
process group plus every descendant of the master) gets SIGKILL at once;
the server is started again at once and the clients reconnect. One more
kill comes after the last ``250``, while the queue still drains, so that
one kill hits delivery alone. At the end the server drains the queue, then:

* every acknowledged Message-ID is in its recipient's Maildir (``new/`` or
  ``cur/``);
* every Maildir file is whole: its Message-ID is one the clients sent, to
  that mailbox, and its body hash is the one sent;
* duplicates (copies beyond the first of a Message-ID) are at most
  ``kills * VIRTUAL_CONCURRENCY``. The bound: the queue manager marks a
  recipient done (fsync) or removes the file (directory fsync) while the
  delivery still holds its scheduler slot, so a kill can cut off at most
  the deliveries that hold slots, and ``virtual_destination_concurrency_limit
  = VIRTUAL_CONCURRENCY`` caps those (all four mailboxes are one
  destination, ``example.net``, and each message has one recipient);
* the queue is empty.

Set ``MAILHORN_DURABILITY_SEED`` to replay the kill moments of a run (the
seed is in every failure message); ``MAILHORN_SKIP_HEAVY=1`` skips this
test.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import random
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require
from tests.durability.kill9 import SessionLoop, StartFgServer, make_body, split_message
from tests.master.util import wait_for

pytestmark = pytest.mark.skipif(os.environ.get("MAILHORN_SKIP_HEAVY") == "1", reason="MAILHORN_SKIP_HEAVY=1")

MESSAGES = 2000
KILLS = 8
SESSIONS = 4
VIRTUAL_CONCURRENCY = 8
MAILBOXES = ("a", "b", "c", "d")
SENDER = "ledger@example.org"
DOMAIN = "example.net"
VMAIL_UID = 5000


@dataclass(frozen=True)
class Sent:
    """A message a client sent (acknowledged or not)."""

    mailbox: str
    body_sha256: str


@dataclass
class Ledger:
    """What the clients sent and what the server acknowledged."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: dict[bytes, Sent] = field(default_factory=dict)
    acked: list[bytes] = field(default_factory=list)
    refused: list[tuple[int, bytes]] = field(default_factory=list)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)


class System(StartFgServer):
    """The mail system: smtpd, cleanup, the queue manager and virtual(8) into the four Maildirs."""

    def __init__(self) -> None:
        super().__init__("mailhorn-kill9-delivery-")
        self.vmail = self.base / "vmail"
        self.vmail.mkdir()
        if os.geteuid() == 0:
            uid = gid = VMAIL_UID
            os.chown(self.vmail, uid, gid)
        else:
            uid, gid = os.getuid(), os.getgid()
        (self.base / "vmailbox").write_text("".join(f"{m}@{DOMAIN} {DOMAIN}/{m}/\n" for m in MAILBOXES))
        self.configure(
            "alias_maps =\nalias_database =\n"
            f"virtual_mailbox_domains = {DOMAIN}\nvirtual_mailbox_base = {self.vmail}\n"
            f"virtual_mailbox_maps = texthash:{self.base / 'vmailbox'}\n"
            f"virtual_uid_maps = static:{uid}\nvirtual_gid_maps = static:{gid}\n"
            f"virtual_minimum_uid = {min(uid, 100)}\n"
            f"virtual_destination_concurrency_limit = {VIRTUAL_CONCURRENCY}\n"
            # A delivery deferred by a kill is retried within seconds, not minutes.
            "queue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n",
            "cleanup unix n - n - 0 cleanup\n"
            "qmgr unix n - n 300 1 qmgr\n"
            "virtual unix - n n - - virtual\n")

    # -- what is on disk ----------------------------------------------------------------
    def maildir_files(self) -> Iterator[tuple[str, Path]]:
        """(mailbox, path) of every delivered file (``new/`` and ``cur/``; ``tmp/`` is the writer's)."""
        for mailbox in MAILBOXES:
            for sub in ("new", "cur"):
                directory = self.vmail / DOMAIN / mailbox / sub
                if directory.is_dir():
                    for entry in os.scandir(directory):
                        yield mailbox, Path(entry.path)

    def delivered_count(self) -> int:
        return sum(1 for _ in self.maildir_files())

    def queued(self) -> list[str]:
        """Files left in the message queues."""
        return [str(p) for name in ("incoming", "active", "deferred", "hold", "corrupt")
                if (self.queue / name).is_dir() for p in (self.queue / name).rglob("*") if p.is_file()]


@pytest.fixture
def system() -> Iterator[System]:
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postfix")
        except KeyError:
            require(False, "a root master needs its mail_owner account postfix (Debian package postfix)")
    srv = System()
    try:
        yield srv
    finally:
        srv.remove()


class LedgerClient(SessionLoop):
    """One SMTP session after another until the ledger holds MESSAGES acknowledgements."""

    timeout = 30.0

    def __init__(self, port: int, tag: str, seed: int, ledger: Ledger, stop: threading.Event) -> None:
        super().__init__(port, tag, seed, stop)
        self.ledger = ledger

    def send_one(self, smtp: smtplib.SMTP, message_id: bytes) -> None:
        mailbox = self.rng.choice(MAILBOXES)
        # A random body of 0.5-6 KB.
        body = make_body(self.rng, 80)
        with self.ledger.lock:
            self.ledger.sent[message_id] = Sent(mailbox, hashlib.sha256(body.replace(b"\r\n", b"\n")).hexdigest())
        message = (b"From: <" + SENDER.encode() + b">\r\nSubject: ledger " + message_id
                   + b"\r\nMessage-ID: " + message_id + b"\r\n\r\n" + body)
        smtp.mail(SENDER)
        smtp.rcpt(f"{mailbox}@{DOMAIN}")
        code, text = smtp.data(message)
        with self.ledger.lock:
            if code == 250:
                self.ledger.acked.append(message_id)
                if len(self.ledger.acked) >= MESSAGES:
                    self.stop.set()
            else:
                self.ledger.refused.append((code, text))


def test_kill9_during_delivery_loses_nothing_and_duplicates_at_most_the_deliveries_in_flight(
        system: System) -> None:
    seed = int(os.environ.get("MAILHORN_DURABILITY_SEED") or random.SystemRandom().randrange(1 << 32))
    rng = random.Random(seed)
    # Kill points: acknowledged-message counts spread over the run, each followed by a random pause.
    points = sorted(rng.sample(range(MESSAGES // 10, MESSAGES * 9 // 10, 10), KILLS - 1))
    ledger = Ledger()
    stop = threading.Event()
    system.start()
    clients = [LedgerClient(system.port, f"s{i}", rng.randrange(1 << 32), ledger, stop) for i in range(SESSIONS)]
    kills = 0
    try:
        for client in clients:
            client.start()
        for point in points:
            assert wait_for(lambda: ledger.count() >= point, 120), f"seed {seed}: stuck at {ledger.count()} acks"
            time.sleep(rng.uniform(0.0, 0.3))
            system.kill9()
            kills += 1
            system.start()
        assert wait_for(stop.is_set, 120), f"seed {seed}: stuck at {ledger.count()} acks"
    finally:
        stop.set()
        for client in clients:
            client.join(60)
    # One more kill while the queue drains: delivery alone.
    acked = ledger.count()
    time.sleep(rng.uniform(0.0, 0.2))
    if system.delivered_count() < acked:
        system.kill9()
        kills += 1
        system.start()
    try:
        assert wait_for(lambda: not system.queued(), 120), \
            f"seed {seed}: queue not drained: {system.queued()[:5]}"
    finally:
        system.stop()
    assert not ledger.refused, f"seed {seed}: refused {ledger.refused[:3]}"

    copies: Counter[bytes] = Counter()
    for mailbox, path in system.maildir_files():
        message_id, body = split_message(path.read_bytes())
        sent = ledger.sent.get(message_id)
        assert sent is not None, f"seed {seed}: {path} holds a message nobody sent: {message_id!r}"
        assert sent.mailbox == mailbox, f"seed {seed}: {message_id!r} in {mailbox}, sent to {sent.mailbox}"
        assert hashlib.sha256(body).hexdigest() == sent.body_sha256, f"seed {seed}: {path} is not whole"
        copies[message_id] += 1
    lost = [m for m in ledger.acked if copies[m] == 0]
    assert not lost, f"seed {seed}: {len(lost)} acknowledged messages lost, e.g. {lost[:3]}"
    duplicates = sum(n - 1 for n in copies.values())
    bound = kills * VIRTUAL_CONCURRENCY
    print(f"kill9 delivery: seed {seed}, {len(ledger.acked)} acknowledged, {len(copies)} delivered, "
          f"{kills} kills, {duplicates} duplicates (bound {bound})")
    assert duplicates <= bound, f"seed {seed}: {duplicates} duplicates after {kills} kills, bound {bound}"
