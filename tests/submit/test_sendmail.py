"""sendmail(1) → maildrop → pickup → cleanup → queue, end to end on a real queue in tmp_path."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailhorn.cli.sendmail import UsageError, parse_args
from mailhorn.queue.pickup import run_pickup, scan_once
from mailhorn.queue.queuefile import DsnNotify, DsnRet
from mailhorn.runtime import Runtime
from tests.cleanup.util import Rig, headers_of, make_rig
from tests.conftest import require

SENDMAIL = [sys.executable, "-c", "import sys; from mailhorn.cli.sendmail import run; sys.exit(run(sys.argv[1:]))"]
MAILQ = [sys.executable, "-c", "import sys; from mailhorn.cli.sendmail import run; sys.exit(run(sys.argv[1:], 'mailq'))"]
HOST = "mail.example.org"


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    rig = make_rig(tmp_path)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "main.cf").write_text(f"queue_directory = {rig.store.root}\nmyhostname = {HOST}\n")
    return rig


def sendmail(rig: Rig, *args: str, stdin: bytes, cmd: list[str] = SENDMAIL) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "NAME"}
    env["MAIL_CONFIG"] = str(rig.root / "etc")
    return subprocess.run([*cmd, *args], input=stdin, capture_output=True, env=env, timeout=60)


def runtime(rig: Rig) -> Runtime:
    return Runtime(queue=rig.store, cleanup=rig.cleanup, anvil=None,  # type: ignore[arg-type]
                   wakeup_qmgr=lambda: None)


def pickup_one(rig: Rig) -> tuple[str, bytes]:
    assert asyncio.run(scan_once(rig.store, runtime(rig))) == 1
    assert os.listdir(Path(rig.store.root) / "maildrop") == []
    (queue_id,) = list(rig.store.scan("incoming"))
    qf, content = rig.read(queue_id)
    return queue_id, content


def test_option_parsing() -> None:
    opts = parse_args(["-oi", "-t", "-fjoe@example.com", "-F", "Joe", "-N", "success,delay", "-R", "hdrs",
                       "-oem", "-B", "8BITMIME", "--", "-odd@example.com"])
    assert (opts.extract, opts.dot_ends, opts.sender, opts.fullname) == (True, False, "joe@example.com", "Joe")
    assert opts.notify == DsnNotify.SUCCESS | DsnNotify.DELAY and opts.ret is DsnRet.HDRS
    assert opts.recipients == ["-odd@example.com"]
    assert parse_args(["-ti", "-r", "<>", "a"]).sender == ""
    assert parse_args(["-bp"]).mode == "p"
    with pytest.raises(UsageError):
        parse_args(["-N", "never,success"])
    with pytest.raises(UsageError):
        parse_args(["-bz"])


def test_extract_recipients_with_sender_and_fullname(rig: Rig) -> None:
    result = sendmail(rig, "-t", "-f", "joe@example.com", "-F", "Joe User",
                      stdin=b"To: y@example.net, Z <z@example.net>\nBcc: hidden@example.net\nSubject: t\n\nx\n")
    assert result.returncode == 0, result.stderr
    queue_id, content = pickup_one(rig)
    qf = rig.store.read("incoming", queue_id)
    assert qf.sender == "joe@example.com" and qf.fullname == "Joe User"
    assert [r.address for r in qf.recipients] == ["y@example.net", "z@example.net", "hidden@example.net"]
    heads = headers_of(content)
    assert heads[0] == f"Received: by {HOST} (Postfix, from userid {os.getuid()})\n\tid {queue_id}; " + \
        heads[0].split("; ", 1)[1]
    assert "From: Joe User <joe@example.com>" in heads
    assert not any(h.startswith("Bcc:") for h in heads)
    assert f"{queue_id}: uid={os.getuid()} from=<joe@example.com>" in rig.log_lines()


def test_single_dot_ends_input_unless_i(rig: Rig) -> None:
    assert sendmail(rig, "x@example.net", stdin=b"Subject: a\n\nline\n.\nafter\n").returncode == 0
    _qid, content = pickup_one(rig)
    assert content.endswith(b"\n\nline\n")
    rig.store.remove("incoming", _qid)
    assert sendmail(rig, "-i", "x@example.net", stdin=b"Subject: a\n\nline\n.\nafter\n").returncode == 0
    _qid, content = pickup_one(rig)
    assert content.endswith(b"\n\nline\n.\nafter\n")


def test_bare_recipient_is_qualified_and_crlf_converted(rig: Rig) -> None:
    assert sendmail(rig, "-oi", "root", stdin=b"Subject: c\r\n\r\nx\r\n").returncode == 0
    queue_id, content = pickup_one(rig)
    qf = rig.store.read("incoming", queue_id)
    assert [r.address for r in qf.recipients] == [f"root@{HOST}"]
    assert b"\r" not in content


def test_usage_errors(rig: Rig) -> None:
    result = sendmail(rig, stdin=b"x\n")
    assert result.returncode == 64
    assert b"sendmail: error: Recipient addresses must be specified on the command line or via the -t option" \
        in result.stderr
    assert sendmail(rig, "-bz", stdin=b"").returncode == 64


def test_mailq(rig: Rig) -> None:
    result = sendmail(rig, "-bp", stdin=b"")
    assert result.returncode == 0 and result.stdout == b"Mail queue is empty\n"
    assert sendmail(rig, "-f", "joe@example.com", "x@example.net", stdin=b"Subject: q\n\nx\n").returncode == 0
    queue_id, _ = pickup_one(rig)
    out = sendmail(rig, stdin=b"", cmd=MAILQ).stdout.decode().splitlines()
    assert out[0] == "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"
    qf = rig.store.read("incoming", queue_id)
    when = time.strftime("%a %b %e %H:%M:%S", time.localtime(qf.arrival_time[0]))
    # The layout of Postfix 3.7's postqueue -p for the same queue.
    assert out[1] == f"{queue_id:<11s} {qf.content_size:7d} {when}  joe@example.com"
    assert out[2] == " " * 41 + "x@example.net"
    assert out[4] == "-- 0 Kbytes in 1 Request."


def test_run_pickup_is_woken_by_sendmail(rig: Rig) -> None:
    async def go() -> str:
        task = asyncio.create_task(run_pickup(rig.config, runtime(rig), poll_interval=3600))
        try:
            socket_path = Path(rig.store.root) / "public" / "pickup"
            for _ in range(200):
                if socket_path.exists():
                    break
                await asyncio.sleep(0.05)
            proc = await asyncio.create_subprocess_exec(
                *SENDMAIL, "-C", str(rig.root / "etc"), "x@example.net", stdin=subprocess.PIPE)
            await proc.communicate(b"Subject: woken\n\nhello\n")
            assert proc.returncode == 0
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                ids = list(rig.store.scan("incoming"))
                if ids:
                    return ids[0]
                await asyncio.sleep(0.05)
            raise AssertionError("pickup did not take the message")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    queue_id = asyncio.run(go())
    qf, content = rig.read(queue_id)
    assert [r.address for r in qf.recipients] == ["x@example.net"]
    assert b"Subject: woken\n" in content
    assert not (Path(rig.store.root) / "public" / "pickup").exists()


def test_mail_command_from_the_seeds(rig: Rig, tmp_path: Path) -> None:
    mail = shutil.which("bsd-mailx")
    require(mail is not None, "Debian package bsd-mailx is not installed")
    assert mail is not None
    wrapper = tmp_path / "sendmail-wrapper"
    wrapper.write_text(f"#!/bin/sh\nexec {' '.join(SENDMAIL[:2])} '{SENDMAIL[2]}' \"$@\"\n")
    wrapper.chmod(0o755)
    mailrc = tmp_path / "mailrc"
    mailrc.write_text(f"set sendmail={wrapper}\n")
    env = {k: v for k, v in os.environ.items() if k != "NAME"}
    env.update(MAILRC=str(mailrc), MAIL_CONFIG=str(rig.root / "etc"), HOME=str(tmp_path))
    result = subprocess.run([mail, "-s", "subj", "user"], input=b"x\n", capture_output=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    queue_id, content = pickup_one(rig)
    qf = rig.store.read("incoming", queue_id)
    assert [r.address for r in qf.recipients] == [f"user@{HOST}"]
    heads = headers_of(content)
    # Local submission rewrites header addresses in the local context (Postfix's cleanup).
    assert "Subject: subj" in heads and f"To: user@{HOST}" in heads
    assert any(h.startswith("Message-Id: <") for h in heads)
    assert content.endswith(b"\n\nx\n")
