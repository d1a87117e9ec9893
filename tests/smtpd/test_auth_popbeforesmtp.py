"""Pop-before-SMTP (seed 002): a POP3 login lets its client address relay for a while.

pop3d records the login; smtpd's ``check_client_access popbeforesmtp:`` answers
OK for that address until ``pop_before_smtp_timeout`` has passed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from mailhorn.auth import popbeforesmtp
from mailhorn.config.load import load
from mailhorn.tables import registry
from mailhorn.tables.base import OpenOptions
from tests.pop3.harness import Pop3Server
from tests.smtpd.server_harness import SmtpdServer

RELAY_DENIED = "554 5.7.1 <friend@remote.example>: Relay access denied"


@pytest.fixture(autouse=True)
def _table_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``popbeforesmtp`` type as the registry names it."""
    monkeypatch.setitem(registry.TABLE_TYPES, "popbeforesmtp", "mailhorn.auth.popbeforesmtp:open_table")


def relay(srv: SmtpdServer, source: str) -> list[str]:
    c = srv.client(source)
    assert c.reply()[0].startswith("220 ")
    c.cmd("EHLO laptop.example")
    assert c.cmd("MAIL FROM:<alice@example.test>") == ["250 2.1.0 Ok"]
    reply = c.cmd("RCPT TO:<friend@remote.example>")
    c.cmd("QUIT")
    return reply


def test_pop3_login_opens_relay_for_that_address_until_it_expires(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shared = {"data_directory": str(data), "pop_before_smtp_timeout": "30m"}
    (tmp_path / "pop").mkdir()
    (tmp_path / "smtp").mkdir()
    pop = Pop3Server(tmp_path / "pop", {"alice": "wonder"}, {**shared, "disable_plaintext_auth": "no"})
    smtp = SmtpdServer(tmp_path / "smtp", {
        **shared,
        "mynetworks": "192.0.2.0/24",
        "mydestination": "example.test",
        "smtpd_relay_restrictions": "",
        "smtpd_recipient_restrictions": "permit_mynetworks, check_client_access popbeforesmtp:,"
                                        " reject_unauth_destination",
    }, real_checks=True)
    try:
        assert relay(smtp, "127.0.0.2") == [RELAY_DENIED]
        client = pop.client("127.0.0.2")
        assert client.line().startswith(b"+OK")
        assert client.command("USER alice") == b"+OK\r\n"
        assert client.command("PASS wonder") == b"+OK Logged in.\r\n"
        assert client.command("QUIT").startswith(b"+OK")
        assert relay(smtp, "127.0.0.2") == ["250 2.1.5 Ok"]
        assert relay(smtp, "127.0.0.3") == [RELAY_DENIED]
        # The window has passed (the store is backdated rather than waited on).
        db = sqlite3.connect(data / popbeforesmtp.FILE_NAME)
        with db:
            db.execute("UPDATE logins SET expires = ?", (time.time() - 1,))
        db.close()
        assert relay(smtp, "127.0.0.2") == [RELAY_DENIED]
    finally:
        pop.stop()
        smtp.stop()


def test_failed_login_and_disabled_recording_open_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    pop = Pop3Server(tmp_path, {"alice": "wonder"}, {"data_directory": str(data), "disable_plaintext_auth": "no"})
    try:
        client = pop.client("127.0.0.2")
        client.line()
        client.command("USER alice")
        assert client.command("PASS wonder") == b"+OK Logged in.\r\n"
        client.command("QUIT")
    finally:
        pop.stop()
    # pop_before_smtp_timeout defaults to 0: nothing is recorded.
    assert not (data / popbeforesmtp.FILE_NAME).exists()


def test_store_and_table(confdir: Path, tmp_path: Path) -> None:
    (confdir / "main.cf").write_text(f"data_directory = {tmp_path}\npop_before_smtp_timeout = 2h\n")
    config = load(str(confdir))
    assert popbeforesmtp.timeout(config) == 7200
    table = popbeforesmtp.open_table("", config, OpenOptions())
    assert table.lookup("127.0.0.9") is None  # no store yet
    asyncio.run(popbeforesmtp.record_login(config, "::ffff:127.0.0.9"))
    asyncio.run(popbeforesmtp.record_login(config, "2001:DB8::0:1"))
    assert table.lookup("127.0.0.9") == "OK"
    assert table.lookup("2001:db8::1") == "OK"
    assert table.lookup("127.0.0.8") is None
    assert table.lookup("client.example") is None  # names and partial networks never match
    assert table.lookup("127.0.0") is None
    later = popbeforesmtp.PopBeforeSmtpTable(table.path, clock=lambda: time.time() + 7201)
    assert later.lookup("127.0.0.9") is None
    # A new login drops expired rows.
    popbeforesmtp.record(table.path, "127.0.0.7", 60, now=time.time() + 7300)
    db = sqlite3.connect(table.path)
    try:
        assert db.execute("SELECT addr FROM logins").fetchall() == [("127.0.0.7",)]
    finally:
        db.close()
