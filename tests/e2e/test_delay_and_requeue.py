"""Delay warnings and ``postsuper -r`` through the running server.

Remote mail is kept in the queue with ``defer_transports = smtp`` (each
attempt defers it with ``4.3.2 deferred transport``, no peer involved);
the sender is a local alias whose target is a Maildir (``/dir/``), where
its notices land.
"""

from __future__ import annotations

import pwd
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import MakeServer
from tests.e2e.util import Server, dsn_parts, maildir_messages, parse, private_dir, wait_messages
from tests.master.util import wait_for

LOCAL = """\
mydestination = $myhostname, localhost, e2e.test
alias_maps = hash:$config_directory/aliases
alias_database = hash:$config_directory/aliases
defer_transports = smtp
"""
SENDER = "owner@e2e.test"


@pytest.fixture
def inbox(run_user: pwd.struct_passwd) -> Iterator[Path]:
    """The Maildir of owner@e2e.test (an alias), writable by the server's user."""
    base = private_dir("mailhorn-e2e-notices-", run_user)
    try:
        yield base / "Maildir"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def local_server(make_server: MakeServer, inbox: Path, extra: str) -> Server:
    server = make_server(LOCAL + extra)
    server.write_file("aliases", f"postmaster: owner\nowner: {inbox}/\n")
    built = server.tool("postalias", str(server.etc / "aliases"))
    assert built.returncode == 0, built.stderr
    return server


def message(subject: str) -> str:
    return f"From: <owner@e2e.test>\nTo: <far@remote.test>\nSubject: {subject}\n\nplease wait\n"


def notices(maildir: Path) -> list[bytes]:
    return [p.read_bytes() for p in maildir_messages(maildir)]


def test_deferred_message_gets_exactly_one_delay_warning(make_server: MakeServer, inbox: Path) -> None:
    server = local_server(make_server, inbox, "delay_warning_time = 2s\nmaximal_queue_lifetime = 1h\n")
    server.start()
    sender = SENDER
    before = 0
    queue_id = server.send(sender, ["far@remote.test"], message("slow one"))
    server.wait_log(rf"{queue_id}: sender delay notification: [0-9A-Z]+")
    [delivered] = wait_messages(inbox, before + 1)[before:]
    # Later attempts (every second or two) must not warn again.
    attempts = len(server.wait_log(rf"{queue_id}: to=<far@remote.test>, .*status=deferred", 4, 60))
    assert attempts >= 4
    assert len(re.findall(rf"{queue_id}: sender delay notification", server.log())) == 1
    assert len(maildir_messages(inbox)) == before + 1
    assert server.queue_ids("deferred") == [queue_id] or server.queue_ids("active") == [queue_id]

    report = parse(delivered.read_bytes())
    assert report["Subject"] == "Delayed Mail (still being retried)"
    assert report["To"] == sender
    per_message, recipients = dsn_parts(report)
    assert per_message["Reporting-MTA"] == "dns; mx.e2e.test"
    assert per_message["X-Postfix-Queue-ID"] == queue_id
    [rcpt] = recipients
    assert rcpt["Final-Recipient"] == "rfc822; far@remote.test"
    assert rcpt["Action"] == "delayed"
    assert rcpt["Status"] == "4.3.2"
    assert rcpt["Diagnostic-Code"] == "X-Postfix; deferred transport"
    assert rcpt["Will-Retry-Until"] is not None


def test_no_delay_warning_when_disabled(make_server: MakeServer, inbox: Path) -> None:
    server = local_server(make_server, inbox, "delay_warning_time = 0h\n")
    server.start()
    sender = SENDER
    queue_id = server.send(sender, ["far@remote.test"], message("no warning"))
    server.wait_log(rf"{queue_id}: to=<far@remote.test>, .*status=deferred", 3, 60)
    assert "delay notification" not in server.log()


def _virtual(server: Server, text: str) -> None:
    server.write_file("virtual", text)
    built = server.tool("postmap", f"hash:{server.etc / 'virtual'}")
    assert built.returncode == 0, built.stderr


def test_requeue_applies_the_current_virtual_alias_map(make_server: MakeServer, inbox: Path) -> None:
    server = local_server(make_server, inbox, "virtual_alias_domains = virt.e2e.test\n"
                          "virtual_alias_maps = hash:$config_directory/virtual\n")
    _virtual(server, "team@virt.e2e.test far@remote.test\n")
    server.start()
    sender = SENDER
    queue_id = server.send(sender, ["team@virt.e2e.test"], message("requeue me"))
    # The first attempt: the old mapping sends it to a remote address, which defers.
    server.wait_log(rf"{queue_id}: to=<far@remote.test>, orig_to=<team@virt.e2e.test>, .*status=deferred "
                    r"\(deferred transport\)")
    assert wait_for(lambda: server.queue_ids("deferred") == [queue_id])

    # The map changes: the remote address now stands for the local user.
    _virtual(server, "team@virt.e2e.test far@remote.test\nfar@remote.test owner@e2e.test\n")
    server.reload()
    before = len(maildir_messages(inbox))
    requeued = server.tool("postsuper", "-r", "ALL")
    assert (requeued.returncode, requeued.stderr) == (0, "postsuper: Requeued: 1 message\n")

    [line] = server.wait_log(rf"pickup\[\d+\]: [0-9A-Z]+: uid=\d+ from=<{re.escape(sender)}> orig_id={queue_id}")
    new_id = re.search(r": ([0-9A-Z]+): uid=", line)
    assert new_id is not None and new_id.group(1) != queue_id
    [delivered] = wait_messages(inbox, before + 1)[before:]
    copy = parse(delivered.read_bytes())
    assert copy["Subject"] == "requeue me"
    assert copy["Delivered-To"] == "owner@e2e.test"
    assert copy["X-Original-To"] == "team@virt.e2e.test"
    # Postfix's pickup puts its own Received: first; the original ones follow.
    received = copy.get_all("Received")
    assert received is not None and len(received) == 2
    assert re.match(r"by mx\.e2e\.test \(Postfix, from userid \d+\)", received[0])
    assert "from client.e2e.test" in received[1]
    # The original recipient travels with the requeued message, as Postfix's ORCP record does.
    server.wait_log(rf"{new_id.group(1)}: to=<owner@e2e.test>, orig_to=<team@virt.e2e.test>, relay=local, "
                    r"delay=.*status=sent ")
    server.wait_queue_empty()
    # The old queue file and its logs are gone; no "removed" for it after the requeue.
    assert not any(queue_id in name for q in ("defer", "deferred", "active", "incoming")
                   for name in server.queue_ids(q))
