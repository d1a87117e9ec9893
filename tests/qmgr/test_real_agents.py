"""Delivery through the real smtp and virtual agents, driven by the queue manager."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from tests.conftest import require
from tests.qmgr.util import make_setup, run_incoming


def _module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_smtp_to_smtp_sink(tmp_path: Path) -> None:
    require(_module("mailhorn.delivery.smtp"), "the smtp delivery agent")
    from tests.delivery.smtp_helpers import SmtpSink

    sink = SmtpSink(tmp_path)
    try:
        table = tmp_path / "transport"
        table.write_text(f"example.com smtp:{sink.nexthop}\n")
        s = make_setup(tmp_path, f"transport_maps = texthash:{table}\nsmtp_host_lookup = native\n")
        queue_id = s.submit("one@example.com", "two@example.com")
        qm = s.manager()

        run_incoming(qm, close_agents=True)
        dumps = sink.wait_messages(1)
        assert len(dumps) == 1 and b"Subject: test" in dumps[0]
        sent = [t for t in s.tagged() if t.startswith("smtp: ")]
        assert len(sent) == 2
        assert all(f"relay=127.0.0.3[127.0.0.3]:{sink.port}, " in t and ", dsn=2.0.0, status=sent (250 " in t
                   for t in sent)
        assert s.tagged()[-1] == f"qmgr: {queue_id}: removed"
    finally:
        sink.stop()


def test_virtual_to_maildir(tmp_path: Path, shared_dir: Path) -> None:
    require(_module("mailhorn.delivery.virtual"), "the virtual delivery agent")
    maps = tmp_path / "vmailbox"
    maps.write_text("info@example.net example.net/info/\n")
    uid = 65534 if os.geteuid() == 0 else os.getuid()
    gid = 65534 if os.geteuid() == 0 else os.getgid()
    s = make_setup(tmp_path, "virtual_mailbox_domains = example.net\n"
                             f"virtual_mailbox_maps = texthash:{maps}\nvirtual_mailbox_base = {shared_dir}\n"
                             f"virtual_uid_maps = static:{uid}\nvirtual_gid_maps = static:{gid}\n"
                             "virtual_minimum_uid = 100\n")
    queue_id = s.submit("info@example.net", "nobody@example.net")
    qm = s.manager()

    from mailhorn.delivery.privs import shutdown_helpers

    try:
        run_incoming(qm, close_agents=True)
    finally:
        shutdown_helpers()
    new = list((shared_dir / "example.net" / "info" / "new").iterdir())
    assert len(new) == 1
    data = new[0].read_bytes()
    assert data.startswith(b"Return-Path: <a@example.org>\n") and b"Delivered-To: info@example.net\n" in data
    tagged = s.tagged()
    assert any(t.startswith("virtual: ") and "to=<info@example.net>" in t and "status=sent (delivered to maildir)" in t
               for t in tagged)
    assert any(t.startswith("virtual: ") and "to=<nobody@example.net>" in t and "dsn=5.1.1, status=bounced" in t
               for t in tagged)
    assert f"qmgr: {queue_id}: removed" in tagged
