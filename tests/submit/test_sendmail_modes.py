"""sendmail -bs (stand-alone SMTP on stdin/stdout) and sendmail -q/-qR/-qI (queue flush), as Postfix's.

The -bs replies are those of Postfix 3.7's ``sendmail -bs`` fed the same
dialogue with the same main.cf (queue ID aside); the -q texts and exit
statuses are those of Postfix's sendmail and postqueue.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailhorn.cleanup.request import CleanupRequest, Outcome, RecipientRequest, Source
from mailhorn.cli.sendmail_smtp import MaildropCleanup
from mailhorn.config.load import Config
from mailhorn.queue.pickup import scan_once
from mailhorn.queue.queuefile import DsnNotify
from mailhorn.runtime import Runtime
from tests.cleanup.util import Rig, headers_of, make_rig
from tests.master.util import wait_for

SENDMAIL = [sys.executable, "-c", "import sys; from mailhorn.cli.sendmail import run; sys.exit(run(sys.argv[1:]))"]
HOST = "mail.example.org"

DIALOGUE = (b"EHLO client.example\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.com>\r\n"
            b"RCPT TO:<carol@example.com> NOTIFY=NEVER\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n..dot\r\n.\r\n"
            b"VRFY bob\r\nETRN example.com\r\nHELP\r\nRSET\r\nNOOP\r\nQUIT\r\n")
#: Postfix 3.7's replies to DIALOGUE under ``sendmail -bs`` (QUEUEID aside).
REPLIES = f"""\
220 {HOST} ESMTP Postfix
250-{HOST}
250-PIPELINING
250-SIZE 10240000
250-VRFY
250-ETRN
250-ENHANCEDSTATUSCODES
250-8BITMIME
250-DSN
250 CHUNKING
250 2.1.0 Ok
250 2.1.5 Ok
250 2.1.5 Ok
354 End data with <CR><LF>.<CR><LF>
250 2.0.0 Ok: queued as QUEUEID
252 2.0.0 bob
458 Unable to queue messages
500 5.5.2 Error: command not recognized
250 2.0.0 Ok
250 2.0.0 Ok
221 2.0.0 Bye
"""


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    rig = make_rig(tmp_path)
    (tmp_path / "etc").mkdir()
    write_main(rig, "")
    return rig


def write_main(rig: Rig, extra: str) -> None:
    (rig.root / "etc" / "main.cf").write_text(
        f"queue_directory = {rig.store.root}\nmyhostname = {HOST}\n"
        f"maillog_file = {rig.root / 'sendmail.log'}\n" + extra)


def sendmail(rig: Rig, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "NAME"}
    env["MAIL_CONFIG"] = str(rig.root / "etc")
    return subprocess.run([*SENDMAIL, *args], input=stdin, capture_output=True, env=env, timeout=60)


def pickup(rig: Rig) -> list[str]:
    runtime = Runtime(queue=rig.store, cleanup=rig.cleanup, anvil=None,  # type: ignore[arg-type]
                      wakeup_qmgr=lambda: None)
    asyncio.run(scan_once(rig.store, runtime))
    return sorted(rig.store.scan("incoming"))


def maildrop(rig: Rig) -> list[str]:
    return sorted(os.listdir(Path(rig.store.root) / "maildrop"))


# -- sendmail -bs ----------------------------------------------------------------------


def test_bs_runs_an_smtp_session_into_maildrop(rig: Rig) -> None:
    # Access controls are off in stand-alone mode: this would refuse every recipient.
    write_main(rig, "smtpd_recipient_restrictions = reject\n")
    result = sendmail(rig, "-bs", stdin=DIALOGUE)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    [name] = maildrop(rig)
    assert result.stdout == REPLIES.replace("QUEUEID", name).replace("\n", "\r\n").encode()
    qf = rig.store.read("maildrop", name)
    assert qf.sender == "alice@example.org" and qf.attributes["submit_uid"] == str(os.getuid())
    assert [(r.address, r.dsn_notify) for r in qf.recipients] == [
        ("bob@example.com", None), ("carol@example.com", DsnNotify.NEVER)]

    [queue_id] = pickup(rig)
    assert maildrop(rig) == []
    final, content = rig.read(queue_id)
    assert [r.address for r in final.recipients] == ["bob@example.com", "carol@example.com"]
    heads = headers_of(content)
    # pickup's line on top of the one smtpd wrote, as Postfix's smtpd -> postdrop -> pickup.
    assert heads[0].startswith(f"Received: by {HOST} (Postfix, from userid {os.getuid()})\n\tid {queue_id}; ")
    assert heads[1].startswith(f"Received: from client.example (localhost [127.0.0.1])\n"
                               f"\tby {HOST} (Postfix) with ESMTP id {name};\n\t")
    assert "Subject: hi" in heads
    assert content.endswith(b"\n\nbody\n.dot\n") and b"\r" not in content
    log = (rig.root / "sendmail.log").read_text()
    assert "/smtpd[" in log and "connect from localhost[127.0.0.1]" in log
    assert f"{name}: client=localhost[127.0.0.1]" in log


def test_bs_single_recipient_received_names_it(rig: Rig) -> None:
    dialogue = (b"HELO client.example\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.com>\r\n"
                b"DATA\r\nSubject: one\r\n\r\nx\r\n.\r\nQUIT\r\n")
    result = sendmail(rig, "-bs", stdin=dialogue)
    [name] = maildrop(rig)
    assert result.stdout.split(b"\r\n")[5] == f"250 2.0.0 Ok: queued as {name}".encode()
    _qf, content = rig.read(name, "maildrop")
    assert content.startswith(f"Received: from client.example (localhost [127.0.0.1])\n"
                              f"\tby {HOST} (Postfix) with SMTP id {name}\n\tfor <bob@example.com>; ".encode())


def test_bs_as_mail_owner_applies_the_restrictions(rig: Rig) -> None:
    owner = pwd.getpwuid(os.getuid()).pw_name
    write_main(rig, f"mail_owner = {owner}\nsmtpd_recipient_restrictions = reject\n")
    result = sendmail(rig, "-bs", stdin=b"HELO client.example\r\nMAIL FROM:<a@example.org>\r\n"
                                          b"RCPT TO:<bob@example.com>\r\nQUIT\r\n")
    assert result.stdout.decode().splitlines()[3] == \
        "554 5.7.1 <bob@example.com>: Recipient address rejected: Access denied"
    assert maildrop(rig) == []


def test_bs_gives_no_250_when_the_file_cannot_be_written(rig: Rig) -> None:
    (Path(rig.store.root) / "maildrop").rmdir()
    result = sendmail(rig, "-bs", stdin=b"HELO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\n"
                                          b"DATA\r\nQUIT\r\n")
    lines = result.stdout.decode().splitlines()
    assert lines[4] == "451 4.3.0 Error: queue file write error"
    assert lines[5] == "221 2.0.0 Bye"


def test_maildrop_session_converts_crlf_split_across_writes(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    config = Config(overrides={"queue_directory": rig.store.root, "myhostname": HOST})
    request = CleanupRequest(Source.SMTPD, "a@example.org", (RecipientRequest("b@example.com"),))

    async def go() -> str:
        session = MaildropCleanup(config).open(request)
        for chunk in (b"Subject: x\r", b"\n\r", b"\nbare\rcr\r", b"\n"):
            await session.write(chunk)
        result = await session.finish()
        assert result.outcome is Outcome.QUEUED and result.queue_id
        return result.queue_id

    name = asyncio.run(go())
    _qf, content = rig.read(name, "maildrop")
    assert content.split(b"\n", 3)[3] == b"Subject: x\n\nbare\rcr\n"


# -- sendmail -q -----------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "err"), [
    (["-qS", "example.com"], "sendmail: fatal: -qS is not implemented\n"),
    (["-qX"], "sendmail: fatal: -qX is not implemented\n"),
    (["-qR"], "sendmail: fatal: specify: -qRsitename\n"),
    (["-qR", "example.com"], "sendmail: fatal: specify: -qRsitename\n"),
    (["-qI"], "sendmail: fatal: specify: -qIqueueid\n"),
    (["-q", "x@example.com"], "sendmail: fatal: flush queue mode requires no recipient\n"),
    (["-qRexample.com", "x@example.com"], "sendmail: fatal: flush site requires no recipient\n"),
    (["-qIABCDE", "x@example.com"], "sendmail: fatal: flush queue_id requires no recipient\n"),
    (["-qRexample.com", "-bp"], "sendmail: fatal: -qR can be used only in delivery mode\n"),
    (["-q", "-qRexample.com"], "sendmail: fatal: -qR can be used only in delivery mode\n"),
    (["-q", "-t"], "sendmail: fatal: -t can be used only in delivery mode\n"),
    (["-bp", "-t"], "sendmail: fatal: -t can be used only in delivery mode\n"),
])
def test_q_refusals_are_postfix_fatal_errors(rig: Rig, argv: list[str], err: str) -> None:
    result = sendmail(rig, *argv)
    assert (result.returncode, result.stderr.decode()) == (75, err)


def test_q_with_the_mail_system_down_says_so_as_postqueue(rig: Rig) -> None:
    down = "postqueue: fatal: Cannot flush mail queue - mail system is down\n"
    result = sendmail(rig, "-q")
    assert (result.returncode, result.stderr.decode()) == (69, down)
    # The last of -q and -b wins: this is a flush, not a listing.
    assert sendmail(rig, "-bp", "-q").stderr.decode() == down
    result = sendmail(rig, "-qRexample.org")
    assert (result.returncode, result.stderr.decode()) == (
        69, 'postqueue: fatal: Flush service is not configured for destination "example.org"\n')


def test_q_interval_is_ignored_without_reading_input(rig: Rig) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NAME"}
    env["MAIL_CONFIG"] = str(rig.root / "etc")
    # Standard input stays open: sendmail must exit without waiting for it.
    proc = subprocess.Popen([*SENDMAIL, "-q1h", "x@example.com"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.wait(timeout=60) == 0
        assert proc.stdout is not None and proc.stderr is not None
        assert (proc.stdout.read(), proc.stderr.read()) == (b"", b"")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert maildrop(rig) == []


def test_q_qr_qi_flush_a_running_mail_system() -> None:
    """Mail held back by defer_transports leaves only when flushed (postconf(5)
    defer_transports), so each delivery below is the work of one sendmail -q."""
    from tests.e2e.util import Server

    server = Server("default_transport = discard\ndefer_transports = discard\n"
                    "fast_flush_domains = remote.test\n")
    try:
        server.start()
        for argv in (["-q"], ["-qRremote.test"], ["-qIQUEUEID"]):
            queue_id = server.send("a@e2e.test", ["far@remote.test"], "Subject: wait\n\nuntil flushed\n")
            server.wait_log(rf"{queue_id}: to=<far@remote.test>, .*status=deferred \(deferred transport\)")
            assert server.queue_ids("deferred") == [queue_id]
            argv = [arg.replace("QUEUEID", queue_id) for arg in argv]
            result = server.tool("sendmail", *argv)
            assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), argv
            server.wait_log(rf"{queue_id}: to=<far@remote.test>, .*status=sent")
            server.wait_queue_empty()
    except BaseException:
        print(server.log())
        raise
    finally:
        server.remove()
