"""Headers cleanup adds, compared with what the real Postfix 3.7 adds for the same input.

A private Postfix (postfix_oracle.py) receives each message over SMTP or
through its sendmail/pickup; mailhorn's cleanup receives the same through a
CleanupSession (SMTP cases) or through ``mailhorn sendmail`` + pickup (local
cases). The stored header and body must be identical once queue IDs and
times are normalised.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhorn.cleanup.request import ClientInfo, Outcome
from mailhorn.queue.pickup import scan_once
from mailhorn.runtime import Runtime
from tests.cleanup import postfix_oracle
from tests.cleanup.util import Rig, make_rig
from tests.conftest import require

HOST = "oracle.example.org"
#: mailhorn's sendmail command, run as its own process.
SENDMAIL = [sys.executable, "-c", "import sys; from mailhorn.cli.sendmail import run; sys.exit(run(sys.argv[1:]))"]

_DATE = re.compile(r"[A-Z][a-z]{2}, [ \d]\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4} \([A-Za-z0-9+-]+\)")
_MSGID = re.compile(r"<\d{14}\.QUEUEID@")


def normalise(text: str, queue_id: str) -> str:
    text = text.replace(queue_id, "QUEUEID")
    text = _DATE.sub("DATE", text)
    return _MSGID.sub("<STAMP.QUEUEID@", text)


@pytest.fixture(scope="module")
def oracle() -> Iterator[postfix_oracle.PostfixOracle]:
    require(postfix_oracle.available(), "a private Postfix needs root and the postfix package")
    # Postfix's daemons run as the postfix user: the instance needs a
    # directory they can reach, which pytest's private 0700 tree is not.
    root = Path(tempfile.mkdtemp(prefix="mailhorn-oracle-"))
    instance = postfix_oracle.PostfixOracle(root, myhostname=HOST)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(root, ignore_errors=True)


def oracle_smtp(oracle: postfix_oracle.PostfixOracle, data: bytes, rcpts: list[str], *, esmtp: bool) -> str:
    known = set(oracle.incoming())
    with smtplib.SMTP("127.0.0.1", oracle.port) as client:
        if esmtp:
            client.ehlo("client.example")
        else:
            client.helo("client.example")
        client.sendmail("a@example.com", rcpts, data)
    queue_id = oracle.wait_for_queue_file(known)
    return normalise(oracle.postcat(queue_id, "-bh"), queue_id)


def oracle_sendmail(oracle: postfix_oracle.PostfixOracle, args: list[str], data: bytes) -> str:
    known = set(oracle.incoming())
    result = oracle.sendmail(*args, stdin=data)
    assert result.returncode == 0, result.stderr
    queue_id = oracle.wait_for_queue_file(known)
    return normalise(oracle.postcat(queue_id, "-bh"), queue_id)


def local_rig(tmp_path: Path) -> Rig:
    return make_rig(tmp_path, myhostname=HOST, mydomain="example.org")


def mailhorn_smtp(rig: Rig, data: bytes, rcpts: list[str], *, esmtp: bool) -> str:
    client = ClientInfo(name="localhost", addr="127.0.0.1", helo="client.example",
                        protocol="ESMTP" if esmtp else "SMTP")
    result = rig.submit(data.replace(b"\r\n", b"\n"), recipients=tuple(rcpts), client=client)
    assert result.outcome is Outcome.QUEUED and result.queue_id
    _qf, content = rig.read(result.queue_id)
    return normalise(content.decode(), result.queue_id)


def mailhorn_sendmail(rig: Rig, args: list[str], data: bytes) -> str:
    (rig.root / "etc").mkdir(exist_ok=True)
    (rig.root / "etc" / "main.cf").write_text(
        f"queue_directory = {rig.store.root}\nmyhostname = {HOST}\nmydomain = example.org\n")
    result = subprocess.run([*SENDMAIL, "-C", str(rig.root / "etc"), *args],
                            input=data, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    runtime = Runtime(queue=rig.store, cleanup=rig.cleanup, anvil=None,  # type: ignore[arg-type]
                      wakeup_qmgr=lambda: None)
    assert asyncio.run(scan_once(rig.store, runtime)) == 1
    (queue_id,) = list(rig.store.scan("incoming"))
    _qf, content = rig.read(queue_id)
    return normalise(content.decode(), queue_id)


SMTP_CASES = [
    ("esmtp-one-rcpt", b"Subject: hi\r\n\r\nbody\r\n", ["b@example.net"], True),
    ("smtp-two-rcpts", b"Subject: hi\r\n\r\nbody\r\n", ["b@example.net", "c@example.net"], False),
    ("own-headers", b"Message-ID: <x@y>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\nFrom: Me <a@example.com>\r\n"
                    b"Subject: s\r\n\r\nbody\r\n", ["b@example.net"], True),
    ("resent", b"Resent-To: z@example.net\r\nSubject: fw\r\nFrom: x@example.com\r\n\r\nbody\r\n",
     ["b@example.net"], True),
    ("non-header-line", b"Subject: x\r\nthis is not a header\r\nFoo: bar\r\n\r\nbody\r\n", ["b@example.net"], True),
    ("drop-headers", b"Return-Path: <q@example.com>\r\nBcc: hidden@example.net\r\nSubject: x\r\n\r\nbody\r\n",
     ["b@example.net"], True),
]


@pytest.mark.parametrize(("name", "data", "rcpts", "esmtp"), SMTP_CASES, ids=[c[0] for c in SMTP_CASES])
def test_smtp_headers_match_postfix(oracle: postfix_oracle.PostfixOracle, tmp_path: Path, name: str,
                                    data: bytes, rcpts: list[str], esmtp: bool) -> None:
    expected = oracle_smtp(oracle, data, rcpts, esmtp=esmtp)
    assert mailhorn_smtp(local_rig(tmp_path), data, rcpts, esmtp=esmtp) == expected


LOCAL_CASES = [
    ("sender-fullname", ["-f", "joe@example.com", "-F", "Joe User", "x@example.net"], b"Subject: local\n\nhello\n"),
    ("quoted-fullname", ["-f", "joe@example.com", "-F", "Joe Q. Public", "x@example.net"], b"Subject: q\n\nhi\n"),
    ("extract-recipients", ["-t"], b"To: y@example.net\nBcc: z@example.net\nSubject: t\n\nhello\n"),
    ("bare-local-sender", ["-f", "joe", "x@example.net"], b"Subject: bare\n\nhello\n"),
    ("crlf-and-from-line", ["-f", "joe@example.com", "x@example.net"],
     b"From joe Sat Nov 21 10:00:00 2026\r\nSubject: crlf\r\n\r\nline\r\n"),
]


@pytest.mark.parametrize(("name", "args", "data"), LOCAL_CASES, ids=[c[0] for c in LOCAL_CASES])
def test_local_submission_matches_postfix(oracle: postfix_oracle.PostfixOracle, tmp_path: Path, name: str,
                                          args: list[str], data: bytes) -> None:
    expected = oracle_sendmail(oracle, ["-i", *args], data)
    assert mailhorn_sendmail(local_rig(tmp_path), ["-i", *args], data) == expected
