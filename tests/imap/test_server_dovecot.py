"""Dovecot as oracle: the same UIDs and flags after mailhorn's imapd changed the Maildir, and back."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.mailstore import deliver
from tests.conftest import require
from tests.imap.dovecot import DOVEADM, DovecotImap, available
from tests.imap.server_util import ImapServer, Raw

MSG = b"From: a@example.com\r\nSubject: %d\r\n\r\nbody %d\r\n"


@pytest.fixture
def dovecot() -> Iterator[DovecotImap]:
    require(available(), "Dovecot's doveadm and imap are not installed (apt-get install dovecot-imapd)")
    d = DovecotImap()
    try:
        yield d
    finally:
        d.close()


def doveadm_flags(d: DovecotImap) -> dict[int, set[str]]:
    """UID -> flags as ``doveadm fetch`` lists them (\\Recent left out: it is per session)."""
    assert DOVEADM is not None
    d._hand_over()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "USER": d.user, "HOME": str(d.base)}
    out = subprocess.run([DOVEADM, "-c", str(d.config), "-f", "tab", "fetch", "uid flags", "mailbox",
                          "INBOX", "all"], capture_output=True, env=env, cwd=d.base, timeout=60,
                         check=True).stdout.decode()
    rows = [line.split("\t") for line in out.splitlines()[1:] if line]
    return {int(uid): set(flags.split()) - {"\\Recent"} for uid, flags in rows}


def mailhorn_flags(r: Raw, tag: bytes) -> dict[int, set[str]]:
    out = r.cmd(tag, b"UID FETCH 1:* (FLAGS)")
    assert out[-1] == tag + b" OK Fetch completed."
    result: dict[int, set[str]] = {}
    for line in out[:-1]:
        head, _, rest = line.partition(b"(UID ")
        uid, _, flags = rest.partition(b" FLAGS (")
        result[int(uid)] = set(flags.rstrip(b")").decode().split()) - {"\\Recent"}
    return result


def test_dovecot_sees_mailhorn_changes_and_back(tmp_path: Path, dovecot: DovecotImap) -> None:
    for i in range(1, 5):
        deliver(dovecot.maildir, [MSG % (i, i)])
    srv = ImapServer(tmp_path, maildir=dovecot.maildir)
    try:
        r = srv.raw()
        r.line()
        r.cmd(b"l", b'LOGIN joao@example.com "parola secreta"')
        r.cmd(b"s", b"SELECT INBOX")
        r.cmd(b"a", b"STORE 1 +FLAGS (\\Seen \\Flagged $Work)")
        r.cmd(b"b", b"UID STORE 2 +FLAGS (\\Answered \\Draft)")
        r.cmd(b"c", b"STORE 3 +FLAGS (\\Deleted)")
        assert r.cmd(b"d", b"EXPUNGE")[0] == b"* 3 EXPUNGE"
        r.send(b"e APPEND INBOX (\\Seen) {12+}\r\nSubject: 5\r\n\r\n")
        assert r.until_tagged(b"e")[-1].startswith(b"e OK [APPENDUID ")
        ours = mailhorn_flags(r, b"f")
        assert ours == {1: {"\\Seen", "\\Flagged", "$Work"}, 2: {"\\Answered", "\\Draft"}, 4: set(),
                        5: {"\\Seen"}}
        assert doveadm_flags(dovecot) == ours

        # Now Dovecot changes the mailbox while mailhorn's session stays open.
        # (Dovecot runs pipelined commands in parallel: EXPUNGE goes in a session of its own.)
        dovecot.session([b"x SELECT INBOX", b"y UID STORE 1 -FLAGS (\\Flagged)",
                         b"z UID STORE 4 +FLAGS (\\Seen $Later)", b"w UID STORE 2 +FLAGS (\\Deleted)"])
        dovecot.session([b"x SELECT INBOX", b"v EXPUNGE"])
        dovecot.session([b"u APPEND INBOX {10+}", b"Subject: 6"])
        out = r.cmd(b"g", b"NOOP")
        assert b"* 2 EXPUNGE" in out and b"* 4 EXISTS" in out, out
        theirs = doveadm_flags(dovecot)
        assert theirs == {1: {"\\Seen", "$Work"}, 4: {"\\Seen", "$Later"}, 5: {"\\Seen"}, 6: set()}
        assert mailhorn_flags(r, b"h") == theirs
        r.cmd(b"o", b"LOGOUT")
    finally:
        srv.stop()
