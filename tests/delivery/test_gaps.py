"""local(8) re-submission of aliased mail, as Postfix's forward.c does it.

The new queue file starts with ``Received: by HOST (mail_name) id QID;
DATE`` and then ``Delivered-To:``; each recipient keeps the original
recipient of the first delivery, so the final copy says ``X-Original-To:``
with the address the client gave, not the alias target.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from mailhorn.delivery.local import make_agent
from mailhorn.delivery.privs import Identity
from mailhorn.delivery.request import Action
from tests.delivery.test_local import deliver, forwarded_id, setup
from tests.delivery.util import content_of, request_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="local delivery to system users needs root")


def test_alias_copy_keeps_the_original_recipient(tmp_path: Path, public_dir: Path, system_user: Identity) -> None:
    store, config = setup(tmp_path, public_dir, f"root: {system_user.user}\n")
    [status] = deliver(config, store, [("root@example.com", "Root@Example.com")])
    assert status.action is Action.EXPANDED, status
    new_id = forwarded_id(status)
    qf = store.read("incoming", new_id)
    [rcpt] = qf.recipients
    assert (rcpt.address, rcpt.orig_rcpt) == (f"{system_user.user}@example.com", "Root@Example.com")
    lines = content_of(store, new_id).split(b"\n")
    assert lines[0] == f"Received: by {config.get('myhostname')} (Postfix)".encode()  # type: ignore[attr-defined]
    assert lines[1].startswith(f"\tid {new_id}; ".encode())
    assert lines[2] == b"Delivered-To: root@example.com"
    agent = make_agent(config, "local")  # type: ignore[arg-type]
    [second] = asyncio.run(agent.deliver(request_for(store, new_id)))
    assert second.action is Action.DELIVERED, second
    maildir = Path(system_user.home) / "Maildir" / "new"
    [name] = os.listdir(maildir)
    head = (maildir / name).read_bytes().split(b"\n\n")[0].split(b"\n")
    assert head[:3] == [b"Return-Path: <sender@example.org>", b"X-Original-To: Root@Example.com",
                        f"Delivered-To: {system_user.user}@example.com".encode()]
