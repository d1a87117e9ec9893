"""Logging writes Postfix's line format to maillog_file, syslog and stderr."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn import log


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    log.setup("mailhorn", syslog_path=None)


def test_maillog_file_line_format(tmp_path: Path) -> None:
    path = tmp_path / "maillog"
    log.setup("smtpd", syslog_name="postfix", maillog_file=str(path), syslog_path=None)
    log.info("4BCD1: client=localhost[127.0.0.1]")
    log.warning("hostname nowhere does not resolve")
    lines = path.read_text().splitlines()
    stamp = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"
    pid = os.getpid()
    assert re.fullmatch(
        rf"{stamp} \S+ postfix/smtpd\[{pid}\]: 4BCD1: client=localhost\[127\.0\.0\.1\]", lines[0]
    )
    assert re.fullmatch(rf"{stamp} \S+ postfix/smtpd\[{pid}\]: warning: hostname nowhere does not resolve", lines[1])


def test_default_syslog_name_is_mailhorn(tmp_path: Path) -> None:
    path = tmp_path / "maillog"
    log.setup("qmgr", maillog_file=str(path), syslog_path=None)
    log.info("ABC: removed")
    assert f" mailhorn/qmgr[{os.getpid()}]: ABC: removed" in path.read_text()


def test_syslog_datagram_has_mail_facility_and_tag(tmp_path: Path) -> None:
    sock_path = str(tmp_path / "log.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(sock_path)
    server.settimeout(5)
    try:
        log.setup("postmap", syslog_name="postfix", syslog_path=sock_path)
        log.warning("duplicate entry")
        log.error("something failed")
        warn = server.recv(4096).decode()
        err = server.recv(4096).decode()
    finally:
        server.close()
    # mail facility (2) * 8 + warning (4) = 20; + error (3) = 19 (RFC 5424 §6.2.1)
    assert warn.startswith("<20>")
    assert warn.endswith(f"postfix/postmap[{os.getpid()}]: warning: duplicate entry")
    assert err.startswith("<19>")


def test_syslog_socket_recreated_is_found_again(tmp_path: Path) -> None:
    # A syslog daemon that restarts makes a new /dev/log: the records sent
    # meanwhile are lost, the following ones reach the new socket.
    sock_path = str(tmp_path / "log.sock")
    first = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    first.bind(sock_path)
    first.settimeout(5)
    log.setup("pickup", syslog_path=sock_path)
    try:
        log.info("one")
        assert first.recv(4096).decode().endswith(": one")
    finally:
        first.close()
        os.unlink(sock_path)
    log.info("while there is no socket")
    second = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    second.bind(sock_path)
    second.settimeout(5)
    try:
        log.info("two")
        assert second.recv(4096).decode().endswith(": two")
    finally:
        second.close()


def test_stderr_messages_are_prefixed_with_program(capsys: pytest.CaptureFixture[str]) -> None:
    log.setup("postconf", stderr=True, syslog_path=None)
    log.warning("x: unknown parameter")
    with pytest.raises(SystemExit) as exc:
        log.fatal("open /nope/main.cf: No such file or directory")
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err == (
        "postconf: warning: x: unknown parameter\n"
        "postconf: fatal: open /nope/main.cf: No such file or directory\n"
    )


def test_unwritable_maillog_file_does_not_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log.setup("smtpd", maillog_file=str(tmp_path / "missing-dir" / "maillog"), syslog_path=None)
    log.info("still running")
    assert "warning: open" in capsys.readouterr().err


def test_program_per_call_and_per_task(tmp_path: Path) -> None:
    import asyncio

    path = tmp_path / "maillog"
    log.setup("master", maillog_file=str(path), syslog_path=None)

    async def service(name: str) -> None:
        log.set_program(name)
        await asyncio.sleep(0)
        log.info(f"from {name}")
        log.info("handed over", program="cleanup")

    async def main() -> None:
        await asyncio.gather(service("smtpd"), service("pickup"))

    asyncio.run(main())
    log.info("supervisor")
    text = path.read_text()
    pid = os.getpid()
    assert f"mailhorn/smtpd[{pid}]: from smtpd" in text
    assert f"mailhorn/pickup[{pid}]: from pickup" in text
    assert text.count(f"mailhorn/cleanup[{pid}]: handed over") == 2
    assert f"mailhorn/master[{pid}]: supervisor" in text


def test_maillog_file_reopened_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "maillog"
    log.setup("smtpd", maillog_file=str(path), syslog_path=None)
    log.info("before rotation")
    path.rename(tmp_path / "maillog.1")
    import time as _time

    _time.sleep(1.1)  # the open file is checked for rotation at most once a second
    log.info("after rotation")
    assert "before rotation" in (tmp_path / "maillog.1").read_text()
    assert "after rotation" in path.read_text()
    assert "after rotation" not in (tmp_path / "maillog.1").read_text()
