"""cleanup settings that belong to the submitting service, and mail re-submitted by local(8).

- ``smtpd_sasl_authenticated_header`` given with ``-o`` on a master.cf smtpd
  service (Postfix's submission example) decides the ``(Authenticated
  sender: ...)`` line, though cleanup's own main.cf value says no: smtpd
  hands the setting over in ``ClientInfo``.
- Mail that local(8) re-submits (aliases, .forward) gets Postfix's
  ``Received: by HOST (mail_name) id QID; DATE`` and keeps the original
  recipient of the first delivery (``X-Original-To:`` downstream).
"""

from __future__ import annotations

import asyncio
import base64
import io
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailhorn.cleanup.request import CleanupRequest, CleanupResult, Outcome, RecipientRequest, Source
from mailhorn.config.load import load
from mailhorn.queue.store import QueueStore
from tests.cleanup.util import make_rig
from tests.helpers.ports import reserve_port
from tests.master.util import Instance, wait_for


Maker = Callable[[str, str], Instance]


@pytest.fixture
def instance() -> Iterator[Maker]:
    made: list[Instance] = []

    def make(main_cf: str, master_cf: str) -> Instance:
        mh = Instance(main_cf, master_cf)
        made.append(mh)
        return mh

    yield make
    for mh in made:
        mh.remove()


def _reply(f: io.BufferedReader) -> list[str]:
    lines: list[str] = []
    while True:
        line = f.readline().decode().rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return lines


def test_sasl_authenticated_header_follows_the_service_override(instance: Maker) -> None:
    port = reserve_port()
    submission = (f"127.0.0.1:{port} inet n - n - - smtpd\n"
                  "  -o smtpd_sasl_auth_enable=yes\n"
                  "  -o smtpd_sasl_authenticated_header=yes\n"
                  "  -o smtpd_end_of_data_restrictions=check_client_access,static:HOLD\n")
    mh = instance("", submission)
    (mh.etc / "passdb").write_text("alice {PLAIN}secret\n")
    mh.write_main(f"myhostname = mx.example.test\nsmtpd_sasl_authenticated_header = no\n"
                  f"passdb_maps = texthash:{mh.etc}/passdb\n")
    started = mh.ctl("start")
    assert started.returncode == 0, started.stderr
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s, s.makefile("rb") as f:
        assert _reply(f)[0].startswith("220 ")
        s.sendall(b"EHLO client.example\r\n")
        assert any(line.startswith("250-AUTH ") for line in _reply(f))
        token = base64.b64encode(b"\0alice\0secret").decode()
        s.sendall(f"AUTH PLAIN {token}\r\n".encode())
        assert _reply(f) == ["235 2.7.0 Authentication successful"]
        for line, want in (("MAIL FROM:<alice@example.org>", "250"), ("RCPT TO:<bob@example.net>", "250"),
                           ("DATA", "354")):
            s.sendall(line.encode() + b"\r\n")
            assert _reply(f)[0].startswith(want)
        s.sendall(b"Subject: t\r\n\r\nbody\r\n.\r\n")
        queued = _reply(f)[0]
        assert queued.startswith("250 2.0.0 Ok: queued as "), queued
        s.sendall(b"QUIT\r\n")
        _reply(f)
    queue_id = queued.rsplit(" ", 1)[1]
    store = QueueStore.from_config(load(str(mh.etc)))
    assert wait_for(lambda: store.find(queue_id) is not None)
    where = store.find(queue_id)
    assert where is not None and where[0] == "hold"
    qf = store.read("hold", queue_id)
    content = b"".join(store.content("hold", queue_id, qf)).decode()
    assert content.startswith("Received: from client.example (unknown [127.0.0.1])\n"
                              "\t(Authenticated sender: alice)\n"
                              "\tby mx.example.test (Postfix) with ESMTPA id "), content


def test_forwarded_mail_gets_local_forward_received_and_keeps_the_original_recipient(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    request = CleanupRequest(
        Source.FORWARD, "sender@example.com",
        (RecipientRequest("hugo@mail.example.org", orcpt="rfc822;root@mail.example.org",
                          orig_rcpt="root@mail.example.org"),),
        submit_uid=0)

    async def go() -> CleanupResult:
        session = rig.cleanup.open(request)
        await session.write(b"Delivered-To: root@mail.example.org\nSubject: s\n\nbody\n")
        return await session.finish()

    result = asyncio.run(go())
    assert result.outcome is Outcome.QUEUED and result.queue_id
    qf, content = rig.read(result.queue_id)
    # local(8)'s form for re-submitted mail: no "from userid", the new queue ID.
    first, second = content.decode().split("\n")[:2]
    assert first == "Received: by mail.example.org (Postfix)"
    assert re.fullmatch(rf"\tid {result.queue_id}; \w{{3}}, [ \d]\d \w{{3}} \d{{4}} [\d:]{{8}} [+-]\d{{4}} \(\w+\)",
                        second), second
    [rcpt] = qf.recipients
    assert (rcpt.address, rcpt.orig_rcpt) == ("hugo@mail.example.org", "root@mail.example.org")
