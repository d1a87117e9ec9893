"""``postqueue -p`` and ``postsuper`` on the queue of the running server (seeds 000 and 002).

Three messages are placed the way a live system holds them:

* active: local delivery to a user's mbox that a dotlock keeps busy
  (``deliver_lock_attempts`` retries, one a second), so the message stays
  in ``active`` until the test removes the lock;
* deferred: remote mail under ``defer_transports = smtp``;
* held: another deferred message put on hold with ``postsuper -h ID``.

The listing is checked line by line against Postfix's showq format (the
byte-for-byte comparison with Postfix's own mailq on an equivalent queue
is tests/queuetools/test_oracle.py); then ``postsuper -h ALL``, ``-H ALL``,
``-r ALL`` and ``-d ALL deferred`` do what seed 000 describes.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import MakeServer
from tests.e2e.util import Server, private_dir
from tests.master.util import wait_for

SENDER = "owner@e2e.test"
HEADER = "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"
ENTRY = re.compile(r"^([0-9A-Z]+)([*! ]) +(\d+) (\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d)  (\S+)$")
RCPT = re.compile(r"^ {41}(\S+)$")
#: A deferral reason (right-aligned as showq prints it; exact widths: test_oracle).
REASON = re.compile(r"^ +\((.+)\)$")


@pytest.fixture
def spool(run_user: pwd.struct_passwd) -> Iterator[Path]:
    base = private_dir("mailhorn-e2e-spool-", run_user)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def listing(server: Server) -> dict[str, tuple[str, list[str], list[str]]]:
    """``postqueue -p`` parsed: queue ID -> (marker, reasons, recipients); checks the frame."""
    result = server.tool("postqueue", "-p")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == HEADER
    assert lines[-1] == ""
    footer = lines[-2]
    entries: dict[str, tuple[str, list[str], list[str]]] = {}
    current: str | None = None
    for line in lines[1:-2]:
        if not line:
            current = None
            continue
        if (m := ENTRY.match(line)) is not None:
            assert m.group(5) == SENDER
            current = m.group(1)
            entries[current] = (m.group(2), [], [])
        elif current is not None and (m := REASON.match(line)) is not None:
            entries[current][1].append(m.group(1))
        elif current is not None and (m := RCPT.match(line)) is not None:
            entries[current][2].append(m.group(1))
        else:
            raise AssertionError(f"unexpected listing line {line!r}:\n{result.stdout}")
    count = len(entries)
    assert re.fullmatch(rf"-- \d+ Kbytes in {count} Request{'s' if count != 1 else ''}\.", footer), footer
    return entries


def message(subject: str) -> str:
    return f"From: owner@e2e.test\nSubject: {subject}\n\nqueued\n"


def test_listing_and_postsuper_on_a_live_queue(make_server: MakeServer, run_user: pwd.struct_passwd,
                                               spool: Path) -> None:
    server = make_server(
        "mydestination = $myhostname, localhost, e2e.test\nalias_maps =\n"
        "local_recipient_maps = proxy:unix:passwd.byname\n"
        f"mail_spool_directory = {spool}\nhome_mailbox =\nmailbox_delivery_lock = dotlock\n"
        "deliver_lock_attempts = 120\ndeliver_lock_delay = 1s\n"
        "defer_transports = smtp\n")
    local = f"{run_user.pw_name}@e2e.test"
    lock = spool / f"{run_user.pw_name}.lock"
    lock.write_text("")
    os.chown(lock, run_user.pw_uid, run_user.pw_gid)
    server.start()

    active = server.send(SENDER, [local], message("active"))
    deferred = server.send(SENDER, ["far@remote.test"], message("deferred"))
    held = server.send(SENDER, ["other@remote.test", "third@remote.test"], message("held"))
    for queue_id in (deferred, held):
        server.wait_log(rf"{queue_id}: to=<[a-z]+@remote.test>, .*status=deferred \(deferred transport\)")
    assert wait_for(lambda: server.queue_ids("deferred") == sorted([deferred, held]))
    hold = server.tool("postsuper", "-h", held)
    assert (hold.returncode, hold.stderr) == (0, f"postsuper: {held}: placed on hold\n"
                                                 "postsuper: Placed on hold: 1 message\n")
    assert server.queue_ids("active") == [active]

    entries = listing(server)
    assert set(entries) == {active, deferred, held}
    assert entries[active] == ("*", [], [local])
    assert entries[deferred] == (" ", ["deferred transport"], ["far@remote.test"])
    marker, _reasons, rcpts = entries[held]
    assert (marker, sorted(rcpts)) == ("!", ["other@remote.test", "third@remote.test"])

    # Seed 000: everything on hold, then released.
    all_held = server.tool("postsuper", "-h", "ALL")
    assert (all_held.returncode, all_held.stderr) == (0, "postsuper: Placed on hold: 2 messages\n")
    assert server.queue_ids("hold") == sorted([active, deferred, held])
    assert {e[0] for e in listing(server).values()} == {"!"}
    released = server.tool("postsuper", "-H", "ALL")
    assert (released.returncode, released.stderr) == (0, "postsuper: Released from hold: 3 messages\n")
    assert server.queue_ids("hold") == []

    # The lock goes: the local message is delivered at its next attempt.
    lock.unlink()
    mbox = spool / run_user.pw_name
    assert wait_for(lambda: mbox.exists() and b"Subject: active" in mbox.read_bytes(), 60), server.log()
    assert wait_for(lambda: server.queue_ids("deferred") == sorted([deferred, held]), 60), server.log()

    # Requeue everything, then delete what is deferred.
    requeued = server.tool("postsuper", "-r", "ALL")
    assert (requeued.returncode, requeued.stderr) == (0, "postsuper: Requeued: 2 messages\n")
    for queue_id in (deferred, held):
        server.wait_log(rf"pickup\[\d+\]: [0-9A-Z]+: uid=\d+ from=<{SENDER}> orig_id={queue_id}")
    assert wait_for(lambda: len(server.queue_ids("deferred")) == 2 and not server.queue_ids("active")
                    and not server.queue_ids("incoming"), 60), server.log()
    new_ids = server.queue_ids("deferred")
    assert not set(new_ids) & {deferred, held}
    deleted = server.tool("postsuper", "-d", "ALL", "deferred")
    assert (deleted.returncode, deleted.stderr) == (0, "postsuper: Deleted: 2 messages\n")
    assert server.queue_ids("deferred") == []
    empty = server.tool("postqueue", "-p")
    assert (empty.returncode, empty.stdout) == (0, "Mail queue is empty\n")
